//! The text formats of narwhal-formats: narinfo, store paths, hashes, `nix-cache-info`.

use std::sync::OnceLock;

use narwhal_formats::cache_info::CacheInfo;
use narwhal_formats::hash::{Algorithm, Encoding, Hash};
use narwhal_formats::narinfo::NarInfo;
use narwhal_formats::nixbase32;
use narwhal_formats::signature::SecretKey;
use narwhal_formats::store_path::{self, StoreDir, StorePath, HASH_BYTES};

const ENCODINGS: [Encoding; 4] = [Encoding::Base16, Encoding::Nix32, Encoding::Base64, Encoding::Sri];

fn signing_key() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(|| match SecretKey::generate("fuzz-1") {
        Ok(k) => k,
        Err(e) => panic!("cannot generate a key (not the input's fault): {e}"),
    })
}

/// A narinfo that parses prints back to text that parses to the same value
/// (layout included) and prints the same again; signing it gives a signature
/// that verifies and survives printing.
pub fn narinfo(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let dir = StoreDir::default();
    let Ok(info) = NarInfo::parse(text, &dir) else { return };
    let printed = info.to_string();
    let again = match NarInfo::parse(&printed, &dir) {
        Ok(again) => again,
        Err(e) => panic!("a printed narinfo does not parse: {e}\n{printed}"),
    };
    assert_eq!(again, info, "print -> parse changed the narinfo:\n{printed}");
    assert_eq!(again.to_string(), printed, "printing is not stable");
    let _ = info.compression();
    let _ = info.references();

    let key = signing_key();
    let trusted = [key.public_key()];
    // Signatures from the input are not by this key.
    assert!(info.valid_signers(&trusted).is_empty(), "a signature in the input verifies with a fresh key");
    let mut signed = info.clone();
    if signed.sign(key).is_ok() {
        assert_eq!(signed.valid_signers(&trusted), ["fuzz-1"], "a fresh signature does not verify");
        let printed = signed.to_string();
        match NarInfo::parse(&printed, &dir) {
            Ok(back) => {
                assert_eq!(back, signed, "print -> parse changed a signed narinfo");
                assert_eq!(back.valid_signers(&trusted), ["fuzz-1"], "the signature did not survive printing");
            }
            Err(e) => panic!("a signed narinfo does not parse back: {e}\n{printed}"),
        }
    }
}

/// Store paths and store directories: what parses prints back as it was
/// written, and its parts rebuild it.
pub fn store_path(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(p) = StorePath::from_base_name(s) {
        assert_eq!(p.base_name(), s);
        assert_eq!(p.to_string(), s);
        assert!(store_path::is_hash_part(p.hash_part()), "hash part {:?} is not one", p.hash_part());
        assert!(store_path::validate_name(p.name()).is_ok(), "name {:?} is not valid", p.name());
        assert_eq!(format!("{}-{}", p.hash_part(), p.name()), s);
        let digest = match nixbase32::decode(p.hash_part()) {
            Ok(d) => d,
            Err(e) => panic!("the hash part of an accepted path does not decode: {e}"),
        };
        let Ok(digest) = <[u8; HASH_BYTES]>::try_from(digest.as_slice()) else {
            panic!("the hash part decodes to {} bytes", digest.len())
        };
        assert_eq!(StorePath::from_parts(&digest, p.name()).ok(), Some(p.clone()), "from_parts differs");
        assert_eq!(p.is_derivation(), s.as_bytes().ends_with(b".drv"));
    }
    if store_path::validate_name(s).is_ok() {
        let p = StorePath::from_parts(&[0; HASH_BYTES], s);
        assert!(p.as_ref().is_ok_and(|p| p.name() == s), "a valid name makes no store path: {p:?}");
    }
    if store_path::is_hash_part(s) {
        assert!(nixbase32::decode(s).is_ok_and(|d| d.len() == HASH_BYTES) || nixbase32::decode(s).is_err());
    }
    if let Ok(dir) = StoreDir::new(s) {
        assert_eq!(dir.as_str(), s);
        assert_eq!(dir.to_string(), s);
    }
    // `<store dir>\n<path>`: a path inside another store directory.
    let (dir, path) = match s.split_once('\n') {
        Some((d, p)) => match StoreDir::new(d) {
            Ok(dir) => (dir, p),
            Err(_) => return,
        },
        None => (StoreDir::default(), s),
    };
    if let Ok(p) = dir.parse_path(path) {
        assert_eq!(dir.display(&p).to_string(), path);
    }
    if let Ok((p, rest)) = dir.split_path(path) {
        assert_eq!(format!("{}{rest}", dir.display(&p)), path);
        assert!(rest.is_empty() || rest.starts_with('/'), "split_path left {rest:?}");
    }
}

/// Hashes in every encoding: what parses re-encodes in each encoding and
/// parses back to itself; nix32 decodes and encodes back exactly.
pub fn hash(data: &[u8]) {
    // Raw digests of every length that fits.
    for algo in Algorithm::ALL {
        if let Some(digest) = data.get(..algo.digest_len()) {
            match Hash::from_digest(algo, digest) {
                Some(h) => round_trip(&h),
                None => panic!("from_digest refused a {}-byte {algo} digest", digest.len()),
            }
        }
    }
    let encoded = nixbase32::encode(data);
    assert_eq!(encoded.len(), nixbase32::encoded_len(data.len()));
    assert_eq!(nixbase32::decode(&encoded).as_deref(), Ok(data), "nix32 does not round-trip");

    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(bytes) = nixbase32::decode(s) {
        assert_eq!(nixbase32::encode(&bytes), s, "nix32 decoding is not one-to-one");
    }
    let _ = s.parse::<Algorithm>();
    let _ = s.parse::<Encoding>();
    let _ = Hash::detect_encoding(s);
    let prefixed = Hash::parse_prefixed(s);
    assert_eq!(prefixed, s.parse::<Hash>(), "parse_prefixed and FromStr disagree");
    if let Ok(h) = &prefixed {
        round_trip(h);
        assert!(Hash::detect_encoding(s).is_some(), "no encoding detected for the hash {s:?}");
    }
    for algo in Algorithm::ALL {
        if let Ok(h) = Hash::parse(s, Some(algo)) {
            assert_eq!(h.algorithm(), algo, "{s:?} parsed as another algorithm");
            round_trip(&h);
        }
        let _ = Hash::parse_digest(algo, s, s);
    }
}

fn round_trip(h: &Hash) {
    let algo = h.algorithm();
    assert_eq!(h.digest().len(), algo.digest_len());
    for e in ENCODINGS {
        let prefixed = h.to_prefixed(e);
        assert_eq!(Hash::parse_prefixed(&prefixed).as_ref(), Ok(h), "{prefixed:?} does not parse back");
        assert_eq!(Hash::detect_encoding(&prefixed), Some(e), "{prefixed:?} is not detected as {e:?}");
        let bare = h.encode(e);
        assert_eq!(Hash::parse(&bare, Some(algo)).as_ref(), Ok(h), "{bare:?} does not parse back as {algo}");
    }
    assert_eq!(h.to_string().parse::<Hash>().as_ref(), Ok(h));
    assert_eq!(h.to_sri(), h.to_prefixed(Encoding::Sri));
}

/// `nix-cache-info` that parses prints back to text that parses the same.
pub fn cache_info(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(info) = CacheInfo::parse(text) else { return };
    let printed = info.to_string();
    assert_eq!(CacheInfo::parse(&printed).as_ref(), Ok(&info), "print -> parse changed it:\n{printed}");
}
