//! Ed25519 signing keys, public keys and signatures in Nix's text form.
//!
//! Every one is `<name>:<base64>`: a secret key holds 64 bytes (the 32-byte
//! seed, then the public key, as libsodium stores it), a public key 32 bytes,
//! a signature 64 bytes. A narinfo signature signs its [fingerprint](fingerprint).

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{SigningKey, VerifyingKey};
use thiserror::Error;

use crate::hash::{Algorithm, Encoding, Hash};
use crate::store_path::{StoreDir, StorePath};

#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    #[error("{what} {value:?} is not '<name>:<base64>'")]
    MissingName { what: &'static str, value: String },
    #[error("{what} named {name:?} is not valid base64")]
    InvalidBase64 { what: &'static str, name: String },
    #[error("{what} named {name:?} holds {found} bytes, expected {expected}")]
    WrongLength { what: &'static str, name: String, expected: usize, found: usize },
    #[error("secret key named {0:?} is corrupt: its public half does not match its seed")]
    Inconsistent(String),
    #[error("public key named {0:?} is not a valid ed25519 point")]
    InvalidPoint(String),
    #[error("a narinfo fingerprint needs a sha256 NarHash, got {0}")]
    NotSha256(Algorithm),
    #[error("cannot get randomness from the operating system: {0}")]
    Random(String),
}

fn split<'a>(what: &'static str, s: &'a str) -> Result<(&'a str, Vec<u8>), Error> {
    let s = s.trim();
    let (name, data) = s
        .split_once(':')
        .filter(|(n, _)| !n.is_empty())
        .ok_or_else(|| Error::MissingName { what, value: s.chars().take(80).collect() })?;
    let bytes = BASE64.decode(data).map_err(|_| Error::InvalidBase64 { what, name: name.to_owned() })?;
    Ok((name, bytes))
}

fn exact<const N: usize>(what: &'static str, name: &str, bytes: &[u8]) -> Result<[u8; N], Error> {
    bytes.try_into().map_err(|_| Error::WrongLength { what, name: name.to_owned(), expected: N, found: bytes.len() })
}

/// A signing key (`nix-store --generate-binary-cache-key`'s secret file).
#[derive(Clone)]
pub struct SecretKey {
    name: String,
    key: SigningKey,
}

impl SecretKey {
    pub fn parse(s: &str) -> Result<Self, Error> {
        let (name, bytes) = split("secret key", s)?;
        let bytes: [u8; 64] = exact("secret key", name, &bytes)?;
        let seed: [u8; 32] = bytes[..32].try_into().expect("32 of 64 bytes");
        let key = SigningKey::from_bytes(&seed);
        if key.verifying_key().to_bytes() != bytes[32..] {
            return Err(Error::Inconsistent(name.to_owned()));
        }
        Ok(Self { name: name.to_owned(), key })
    }

    /// A new random key.
    pub fn generate(name: &str) -> Result<Self, Error> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| Error::Random(e.to_string()))?;
        Ok(Self { name: name.to_owned(), key: SigningKey::from_bytes(&seed) })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey { name: self.name.clone(), key: self.key.verifying_key() }
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        use ed25519_dalek::Signer as _;
        Signature { name: self.name.clone(), bytes: self.key.sign(message).to_bytes() }
    }
}

/// Prints the secret key file's contents. Beware: this is the secret.
impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&self.key.to_bytes());
        bytes[32..].copy_from_slice(&self.key.verifying_key().to_bytes());
        write!(f, "{}:{}", self.name, BASE64.encode(bytes))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({}:…)", self.name)
    }
}

/// A public key, as in `trusted-public-keys`.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    name: String,
    key: VerifyingKey,
}

impl PublicKey {
    pub fn parse(s: &str) -> Result<Self, Error> {
        let (name, bytes) = split("public key", s)?;
        let bytes: [u8; 32] = exact("public key", name, &bytes)?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| Error::InvalidPoint(name.to_owned()))?;
        Ok(Self { name: name.to_owned(), key })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `sig` was made by this key over `message` (names must match too).
    pub fn verify(&self, message: &[u8], sig: &Signature) -> bool {
        if sig.name != self.name {
            return false;
        }
        let sig = ed25519_dalek::Signature::from_bytes(&sig.bytes);
        self.key.verify_strict(message, &sig).is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, BASE64.encode(self.key.to_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

/// A detached signature with the name of the key that made it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Signature {
    name: String,
    bytes: [u8; 64],
}

impl Signature {
    pub fn parse(s: &str) -> Result<Self, Error> {
        let (name, bytes) = split("signature", s)?;
        let bytes: [u8; 64] = exact("signature", name, &bytes)?;
        Ok(Self { name: name.to_owned(), bytes })
    }

    pub fn key_name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, BASE64.encode(self.bytes))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

/// What a store path's signature signs:
/// `1;<path>;<sha256:nix32 NarHash>;<NarSize>;<comma-separated sorted reference paths>`.
pub fn fingerprint<'a>(
    store_dir: &StoreDir,
    path: &StorePath,
    nar_hash: &Hash,
    nar_size: u64,
    references: impl IntoIterator<Item = &'a StorePath>,
) -> Result<String, Error> {
    if nar_hash.algorithm() != Algorithm::Sha256 {
        return Err(Error::NotSha256(nar_hash.algorithm()));
    }
    let mut refs: Vec<&StorePath> = references.into_iter().collect();
    refs.sort();
    refs.dedup();
    let refs: Vec<String> = refs.iter().map(|r| store_dir.display(r).to_string()).collect();
    Ok(format!(
        "1;{};{};{};{}",
        store_dir.display(path),
        nar_hash.to_prefixed(Encoding::Nix32),
        nar_size,
        refs.join(",")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sign() {
        let sk = SecretKey::generate("test-1").unwrap();
        let again = SecretKey::parse(&sk.to_string()).unwrap();
        assert_eq!(again.to_string(), sk.to_string());
        let pk = PublicKey::parse(&sk.public_key().to_string()).unwrap();
        let sig = sk.sign(b"hello");
        let sig = Signature::parse(&sig.to_string()).unwrap();
        assert!(pk.verify(b"hello", &sig));
        assert!(!pk.verify(b"hellp", &sig));
        let other = SecretKey::generate("test-2").unwrap().public_key();
        assert!(!other.verify(b"hello", &sig));
    }

    #[test]
    fn errors_name_the_key() {
        assert!(matches!(PublicKey::parse("abc"), Err(Error::MissingName { .. })));
        assert!(matches!(PublicKey::parse("k:!!!"), Err(Error::InvalidBase64 { .. })));
        assert!(matches!(PublicKey::parse("k:AAAA"), Err(Error::WrongLength { found: 3, .. })));
        let sk = SecretKey::generate("k").unwrap().to_string();
        let mut bytes = BASE64.decode(&sk[2..]).unwrap();
        bytes[40] ^= 1;
        assert_eq!(
            SecretKey::parse(&format!("k:{}", BASE64.encode(bytes))).unwrap_err(),
            Error::Inconsistent("k".into())
        );
    }
}
