//! Nix's byte formats, written from their specifications.
//!
//! No network, no async, no global state: everything reads from [`std::io::Read`]
//! and writes to [`std::io::Write`] (the NAR dumper and unpacker, and [`temp`],
//! also touch the file system they are pointed at). The store directory is always a value
//! ([`store_path::StoreDir`]) so callers can relocate it.
//!
//! | module | format |
//! |---|---|
//! | [`nixbase32`] | Nix's base-32 |
//! | [`hash`] | digests in base16 / nix32 / base64 / SRI |
//! | [`store_path`] | `<store dir>/<hash>-<name>` |
//! | [`nar`] | NAR archives: dump, parse, unpack, list, cat |
//! | [`narinfo`] | `.narinfo` files |
//! | [`signature`] | ed25519 keys and signatures, fingerprints |
//! | [`cache_info`] | `nix-cache-info` |
//! | [`export`] | `nix-store --export` streams |
//! | [`nix_conf`] | `nix.conf` (the settings narwhal uses) |
//! | [`pipe`] | byte streams handed to other threads in shared, recycled chunks |
//! | [`tee`] | the one reader that hashes, copies or reports a stream as it reads it |
//! | [`temp`] | narwhal's temporary files and trees (`.<name>.tmp-<pid>-<random>`, tempfile's), `write_atomic` |
//! | [`tree`] | the one walk over a directory tree on disk |
//! | [`wire`] | integers and padded strings |

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod cache_info;
pub mod export;
pub mod hash;
pub mod nar;
pub mod narinfo;
pub mod nix_conf;
pub mod nixbase32;
pub mod pipe;
pub mod signature;
pub mod store_path;
pub mod tee;
pub mod temp;
pub mod tree;
pub mod wire;
