//! The object keys of a binary cache and their content types, named once: every reader, writer
//! and the server spell them through here.

use narwhal_formats::hash::{Encoding, Hash};
use narwhal_formats::store_path::StorePath;

/// The cache's description (`StoreDir`, `WantMassQuery`, `Priority`).
pub const CACHE_INFO: &str = "nix-cache-info";
pub const CACHE_INFO_TYPE: &str = "text/x-nix-cache-info";
pub const NARINFO_TYPE: &str = "text/x-nix-narinfo";
pub const NAR_TYPE: &str = "application/x-nix-nar";
/// The window an unfinished garbage collection opened ([`crate::gc_window`]).
pub const GC_PENDING: &str = "gc/pending.json";
/// The lease of the one garbage collection running.
pub const GC_LEASE: &str = "gc/lease.json";
/// NARs no narinfo names any more, and since when (a NAR goes only after `--nar-delay`).
pub const GC_ORPHANS: &str = "gc/orphans.json";
pub const JSON_TYPE: &str = "application/json";

/// `<hash>.narinfo`, the commit point of `path`.
pub fn narinfo(path: &StorePath) -> String {
    narinfo_of_hash(path.hash_part())
}

/// `<hash>.narinfo` for a hash part already checked.
pub fn narinfo_of_hash(hash_part: &str) -> String {
    format!("{hash_part}.narinfo")
}

/// `nar/<FileHash in nix32>.nar<extension>`, as Nix names a compressed NAR (`.xz`, `.zst`, or none).
pub fn nar(file_hash: &Hash, extension: &str) -> String {
    format!("nar/{}.nar{extension}", file_hash.encode(Encoding::Nix32))
}

/// The `nix-cache-info` narwhal writes into a cache that has none.
pub fn cache_info_for(store_dir: &narwhal_formats::store_path::StoreDir) -> String {
    format!("StoreDir: {store_dir}\n")
}
