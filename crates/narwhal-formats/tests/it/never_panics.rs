//! Every parser of narwhal-formats, fed arbitrary bytes and arbitrary UTF-8,
//! answers Ok or Err and never panics. The fuzz targets (fuzz/, checks in
//! narwhal-fuzzcheck) go deeper; these run on every `cargo nextest run`.

use std::io;

use narwhal_formats::cache_info::CacheInfo;
use narwhal_formats::export::{CheckOnly, ExportReader};
use narwhal_formats::hash::{Algorithm, Encoding, Hash};
use narwhal_formats::nar::{self, Listing};
use narwhal_formats::narinfo::NarInfo;
use narwhal_formats::nixbase32;
use narwhal_formats::signature::{PublicKey, SecretKey, Signature};
use narwhal_formats::store_path::{self, StoreDir, StorePath, HASH_BYTES};
use narwhal_formats::wire;
use proptest::prelude::*;

/// Text that looks enough like the formats to get past their first checks:
/// nix32 characters, separators and multi-byte characters, mixed.
fn near_text() -> impl Strategy<Value = String> {
    "([0-9a-z]{1,40}|-|:|/|\\.|\n|: |é|ü€|💥|sha256|md5|/nix/store/|[A-Za-z+/=]{1,8}|include |!include | = |#|\t){0,24}"
}

/// Text in any of the formats' shapes, or anything at all.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), near_text()]
}

fn text_parsers(s: &str) {
    let mut include = |_: &std::path::Path| Ok(Some(s.to_owned()));
    if let Ok(settings) = narwhal_formats::nix_conf::parse(s, "/etc/nix/nix.conf", &mut include) {
        narwhal_formats::nix_conf::NixConf::default().apply(&settings);
    }
    let _ = nixbase32::decode(s);
    for algo in [None, Some(Algorithm::Md5), Some(Algorithm::Sha1), Some(Algorithm::Sha256), Some(Algorithm::Sha512)] {
        let _ = Hash::parse(s, algo);
    }
    let _ = Hash::parse_prefixed(s);
    for algo in Algorithm::ALL {
        let _ = Hash::parse_digest(algo, s, s);
    }
    let _ = Hash::detect_encoding(s);
    let _ = s.parse::<Hash>();
    let _ = s.parse::<Algorithm>();
    let _ = s.parse::<Encoding>();
    let _ = StorePath::from_base_name(s);
    let _ = StorePath::from_parts(&[7; HASH_BYTES], s);
    let _ = store_path::validate_name(s);
    let _ = store_path::is_hash_part(s);
    let _ = StoreDir::new(s);
    let dir = StoreDir::default();
    let _ = dir.parse_path(s);
    let _ = dir.split_path(s);
    let _ = NarInfo::parse(s, &dir);
    let _ = CacheInfo::parse(s);
    let _ = SecretKey::parse(s);
    let _ = PublicKey::parse(s);
    let _ = s.parse::<PublicKey>();
    let _ = Signature::parse(s);
}

fn byte_parsers(b: &[u8]) {
    let _ = nar::parse(&mut &b[..], &mut CheckOnly);
    let _ = nar::parse_to_end(&mut &b[..], &mut CheckOnly);
    let _ = Listing::read(&mut &b[..]);
    let _ = nar::cat(&mut &b[..], "a/b", &mut io::sink());
    let _ = nar::cat(&mut &b[..], "", &mut io::sink());
    let _ = nar::check_name(b);
    let _ = wire::read_u64(&mut &b[..]);
    let _ = wire::read_bytes(&mut &b[..], 4096);
    let mut reader = ExportReader::new(b, StoreDir::default());
    while let Ok(Some(_)) = reader.next_path(&mut CheckOnly) {}
    for algo in Algorithm::ALL {
        let _ = Hash::from_digest(algo, b);
    }
    if let Ok(s) = std::str::from_utf8(b) {
        text_parsers(s);
    }
}

proptest! {
    #[test]
    fn text_parsers_never_panic(s in text()) {
        text_parsers(&s);
    }

    #[test]
    fn store_paths_and_narinfos_never_panic(hash in "[0-9a-z]{28,33}", multibyte in "(é|€|💥)", name in "[a-z.-]{0,6}") {
        // Base names whose 32-byte hash part ends inside a multi-byte character.
        let base = format!("{hash}{multibyte}{name}");
        text_parsers(&base);
        let narinfo = format!("StorePath: /nix/store/{base}\nURL: nar/x.nar\nNarHash: sha256:{hash}\nNarSize: 1\nReferences: {base}\nDeriver: {base}\n");
        text_parsers(&narinfo);
    }

    #[test]
    fn byte_parsers_never_panic(b in proptest::collection::vec(any::<u8>(), 0..1024)) {
        byte_parsers(&b);
    }

    #[test]
    fn truncated_and_mutated_nars_never_panic(cut in 0usize..200, flip in 0usize..200, bit in 0u8..8) {
        // A small real NAR (a directory, a file, a symlink), cut short or with one bit flipped.
        let mut nar = Vec::new();
        let mut dir = nar::Writer::new(&mut nar as &mut dyn io::Write).unwrap().directory().unwrap();
        dir.entry(b"a", |n| n.regular_bytes(true, b"hello")).unwrap();
        dir.entry(b"l", |n| n.symlink(b"a")).unwrap();
        let _ = dir.close().unwrap();
        byte_parsers(&nar[..cut.min(nar.len())]);
        let mut flipped = nar.clone();
        let at = flip % flipped.len();
        flipped[at] ^= 1 << bit;
        byte_parsers(&flipped);
    }
}
