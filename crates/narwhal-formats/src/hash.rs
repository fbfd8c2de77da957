//! Hashes as Nix prints and parses them.
//!
//! Nix writes a digest in four encodings: base16 (lower-case hex), nix32
//! ([`crate::nixbase32`]), base64, and SRI (`<algo>-<base64>`). A "prefixed"
//! hash is `<algo>:<digest>` in base16, nix32 or base64, told apart by length;
//! narinfo files use `sha256:<nix32>`.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use thiserror::Error;

use crate::nixbase32;

/// Largest digest size (sha512).
pub const MAX_DIGEST_LEN: usize = 64;

/// A hash algorithm Nix accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    pub const ALL: [Algorithm; 4] = [Self::Md5, Self::Sha1, Self::Sha256, Self::Sha512];

    /// The name Nix uses (`sha256`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Md5 => "md5",
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    /// Digest size in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Self::Md5 => 16,
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL.into_iter().find(|a| a.name() == s).ok_or_else(|| Error::UnknownAlgorithm(s.to_owned()))
    }
}

/// A textual encoding of a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Base16,
    Nix32,
    Base64,
    /// `<algo>-<base64>`, always carries its algorithm.
    Sri,
}

impl FromStr for Encoding {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "base16" | "hex" => Ok(Self::Base16),
            "nix32" | "base32" => Ok(Self::Nix32),
            "base64" => Ok(Self::Base64),
            "sri" => Ok(Self::Sri),
            _ => Err(Error::UnknownEncoding(s.to_owned())),
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    #[error("unknown hash algorithm {0:?} (expected md5, sha1, sha256 or sha512)")]
    UnknownAlgorithm(String),
    #[error("unknown hash encoding {0:?} (expected sri, nix32, base16 or base64)")]
    UnknownEncoding(String),
    #[error("hash {hash:?} has no algorithm; write it as '<algo>:<digest>' or in SRI form")]
    MissingAlgorithm { hash: String },
    #[error("{algo} hash {hash:?} has the wrong length {len} (base16 {}, nix32 {}, base64 {})",
        algo.digest_len() * 2, nixbase32::encoded_len(algo.digest_len()), algo.digest_len().div_ceil(3) * 4)]
    WrongLength { algo: Algorithm, hash: String, len: usize },
    #[error("invalid base16 digest {0:?}")]
    InvalidBase16(String),
    #[error("invalid nix32 digest {hash:?}")]
    InvalidNix32 {
        hash: String,
        #[source]
        source: nixbase32::Error,
    },
    #[error("invalid base64 digest {0:?}")]
    InvalidBase64(String),
    #[error("hash {hash:?} is {found}, expected {expected}")]
    AlgorithmMismatch { hash: String, expected: Algorithm, found: Algorithm },
}

/// A digest together with its algorithm.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hash {
    algo: Algorithm,
    bytes: [u8; MAX_DIGEST_LEN],
}

impl Hash {
    /// Builds a hash from raw digest bytes; `None` when the length does not fit `algo`.
    pub fn from_digest(algo: Algorithm, digest: &[u8]) -> Option<Self> {
        if digest.len() != algo.digest_len() {
            return None;
        }
        let mut bytes = [0; MAX_DIGEST_LEN];
        bytes[..digest.len()].copy_from_slice(digest);
        Some(Self { algo, bytes })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algo
    }

    pub fn digest(&self) -> &[u8] {
        &self.bytes[..self.algo.digest_len()]
    }

    /// Hashes `data` in one go.
    pub fn of(algo: Algorithm, data: &[u8]) -> Self {
        let mut h = Hasher::new(algo);
        h.update(data);
        h.finish()
    }

    /// The digest alone, in `encoding` (SRI includes the algorithm).
    pub fn encode(&self, encoding: Encoding) -> String {
        match encoding {
            Encoding::Base16 => to_hex(self.digest()),
            Encoding::Nix32 => nixbase32::encode(self.digest()),
            Encoding::Base64 => BASE64.encode(self.digest()),
            Encoding::Sri => self.to_sri(),
        }
    }

    /// `<algo>:<digest>` (or SRI when `encoding` is SRI).
    pub fn to_prefixed(&self, encoding: Encoding) -> String {
        match encoding {
            Encoding::Sri => self.to_sri(),
            _ => format!("{}:{}", self.algo, self.encode(encoding)),
        }
    }

    pub fn to_sri(&self) -> String {
        format!("{}-{}", self.algo, BASE64.encode(self.digest()))
    }

    /// Parses any form Nix accepts: SRI, `<algo>:<digest>` in any encoding, or a
    /// bare digest when `default_algo` is given.
    pub fn parse(s: &str, default_algo: Option<Algorithm>) -> Result<Self, Error> {
        if let Some((algo, rest)) = s.split_once(':') {
            let algo: Algorithm = algo.parse()?;
            if let Some(expected) = default_algo.filter(|e| *e != algo) {
                return Err(Error::AlgorithmMismatch { hash: s.to_owned(), expected, found: algo });
            }
            return Self::parse_digest(algo, rest, s);
        }
        if let Some((algo, rest)) = s.split_once('-') {
            if let Ok(algo) = algo.parse::<Algorithm>() {
                if let Some(expected) = default_algo.filter(|e| *e != algo) {
                    return Err(Error::AlgorithmMismatch { hash: s.to_owned(), expected, found: algo });
                }
                let digest = decode_base64(rest).ok_or_else(|| Error::InvalidBase64(s.to_owned()))?;
                return Self::from_digest(algo, &digest).ok_or(Error::WrongLength {
                    algo,
                    hash: s.to_owned(),
                    len: rest.len(),
                });
            }
        }
        match default_algo {
            Some(algo) => Self::parse_digest(algo, s, s),
            None => Err(Error::MissingAlgorithm { hash: s.to_owned() }),
        }
    }

    /// Parses a `<algo>:<digest>` or SRI hash, requiring the algorithm to be present.
    pub fn parse_prefixed(s: &str) -> Result<Self, Error> {
        Self::parse(s, None)
    }

    /// Parses a digest of a known algorithm; the encoding is told by its length.
    pub fn parse_digest(algo: Algorithm, digest: &str, whole: &str) -> Result<Self, Error> {
        let n = algo.digest_len();
        let len = digest.len();
        let bytes = if len == n * 2 {
            from_hex(digest).ok_or_else(|| Error::InvalidBase16(whole.to_owned()))?
        } else if len == nixbase32::encoded_len(n) {
            nixbase32::decode(digest).map_err(|source| Error::InvalidNix32 { hash: whole.to_owned(), source })?
        } else if len == n.div_ceil(3) * 4 {
            decode_base64(digest).ok_or_else(|| Error::InvalidBase64(whole.to_owned()))?
        } else {
            return Err(Error::WrongLength { algo, hash: whole.to_owned(), len });
        };
        Self::from_digest(algo, &bytes).ok_or(Error::WrongLength { algo, hash: whole.to_owned(), len })
    }

    /// Which encoding a prefixed or bare digest string used (for printing it back).
    pub fn detect_encoding(s: &str) -> Option<Encoding> {
        let Some((algo, digest)) = s.split_once(':') else {
            let (a, _) = s.split_once('-')?;
            a.parse::<Algorithm>().ok()?;
            return Some(Encoding::Sri);
        };
        let algo = algo.parse::<Algorithm>().ok()?;
        let n = algo.digest_len();
        if digest.len() == n * 2 {
            Some(Encoding::Base16)
        } else if digest.len() == nixbase32::encoded_len(n) {
            Some(Encoding::Nix32)
        } else {
            Some(Encoding::Base64)
        }
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_sri())
    }
}

/// Displays as `<algo>:<nix32>`, the form narinfo files use.
impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_prefixed(Encoding::Nix32))
    }
}

impl FromStr for Hash {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s, None)
    }
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    BASE64.decode(s).ok()
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    s
}

pub(crate) fn from_hex(s: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let s = s.as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks_exact(2).map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?)).collect()
}

/// An incremental hasher for any [`Algorithm`]; also an [`std::io::Write`] sink.
#[derive(Clone)]
pub enum Hasher {
    Md5(md5::Md5),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn new(algo: Algorithm) -> Self {
        use sha2::Digest as _;
        match algo {
            Algorithm::Md5 => Self::Md5(md5::Md5::new()),
            Algorithm::Sha1 => Self::Sha1(sha1::Sha1::new()),
            Algorithm::Sha256 => Self::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Self::Sha512(sha2::Sha512::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        use sha2::Digest as _;
        match self {
            Self::Md5(h) => h.update(data),
            Self::Sha1(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Hash {
        use sha2::Digest as _;
        let (algo, digest): (Algorithm, Vec<u8>) = match self {
            Self::Md5(h) => (Algorithm::Md5, h.finalize().to_vec()),
            Self::Sha1(h) => (Algorithm::Sha1, h.finalize().to_vec()),
            Self::Sha256(h) => (Algorithm::Sha256, h.finalize().to_vec()),
            Self::Sha512(h) => (Algorithm::Sha512, h.finalize().to_vec()),
        };
        Hash::from_digest(algo, &digest).expect("digest length matches its algorithm")
    }
}

impl std::io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A writer that hashes and counts what passes through it to an inner writer.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
    len: u64,
}

impl<W: std::io::Write> HashingWriter<W> {
    pub fn new(algo: Algorithm, inner: W) -> Self {
        Self { inner, hasher: Hasher::new(algo), len: 0 }
    }

    /// The bytes written so far.
    pub fn written(&self) -> u64 {
        self.len
    }

    /// The hash of the bytes written so far.
    pub fn hash(&self) -> Hash {
        self.hasher.clone().finish()
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// The hash and byte count so far, and the inner writer.
    pub fn finish(self) -> (Hash, u64, W) {
        (self.hasher.finish(), self.len, self.inner)
    }
}

impl<W: std::io::Write> std::io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let h = Hash::of(Algorithm::Sha256, b"");
        for enc in [Encoding::Base16, Encoding::Nix32, Encoding::Base64, Encoding::Sri] {
            let s = h.to_prefixed(enc);
            assert_eq!(s.parse::<Hash>().unwrap(), h, "{s}");
            assert_eq!(Hash::detect_encoding(&s), Some(enc), "{s}");
            if enc != Encoding::Sri {
                assert_eq!(Hash::parse(&h.encode(enc), Some(Algorithm::Sha256)).unwrap(), h);
            }
        }
        assert_eq!(h.to_sri(), "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
        assert_eq!(h.to_string(), "sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73");
    }

    #[test]
    fn rejects_with_culprit() {
        assert!(matches!("sha256:abc".parse::<Hash>(), Err(Error::WrongLength { len: 3, .. })));
        assert!(matches!("abc".parse::<Hash>(), Err(Error::MissingAlgorithm { .. })));
        assert!(matches!("sha3:abc".parse::<Hash>(), Err(Error::UnknownAlgorithm(_))));
        assert!(matches!(
            Hash::parse("sha1:0000000000000000000000000000000000000000", Some(Algorithm::Sha256)),
            Err(Error::AlgorithmMismatch { .. })
        ));
    }
}
