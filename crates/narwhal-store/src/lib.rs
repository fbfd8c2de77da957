//! Binary caches as narwhal reads them.
//!
//! A cache is a tree of keys (`nix-cache-info`, `<hash>.narinfo`,
//! `nar/<file hash>.nar.xz`, `pins/<name>`) behind one trait, [`BinaryCache`],
//! with a directory backend and an HTTP backend. [`open_cache`] turns a cache
//! URL in Nix's syntax into one. [`Compression`] decodes NARs; [`pin`] is the
//! format of named pointers to store paths, written by `push` and read by `fetch`.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod compression;
pub mod error;
pub mod file;
pub mod http;
pub mod hydra;
pub mod pin;
pub mod url;

use std::io::Read;

pub use compression::Compression;
pub use error::{StoreError, StoreErrorKind};
pub use url::{CacheUrl, Location};

/// A binary cache, read side.
pub trait BinaryCache: Send + Sync {
    /// The cache's URL, for messages (never with credentials).
    fn url(&self) -> &str;

    /// A small object (`nix-cache-info`, a narinfo, a pin), whole; `None` when absent.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// A large object (a NAR) as a stream. Absent is an error.
    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>, StoreError>;
}

/// Opens the cache at `url` (`file:///dir`, `/dir`, `http(s)://host/path`).
pub fn open_cache(url: &CacheUrl, options: &http::HttpOptions) -> Result<Box<dyn BinaryCache>, StoreError> {
    Ok(match &url.location {
        Location::File(dir) => Box::new(file::FileCache::new(dir.clone(), url.to_string())),
        Location::Http(base) => Box::new(http::HttpCache::new(base, options)?),
    })
}

/// Checks that a key taken from remote data (a narinfo's `URL`) stays inside
/// the cache: relative, no `.` or `..` components, no empty components, no
/// NUL, no backslash, no query or fragment.
pub fn check_key(key: &str) -> Result<(), StoreError> {
    let ok = !key.is_empty()
        && !key.starts_with('/')
        && key.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        && !key.bytes().any(|b| b == 0 || b == b'\\' || b == b'?' || b == b'#' || b.is_ascii_control())
        && !key.contains("://");
    if ok {
        Ok(())
    } else {
        Err(StoreError::new(key, StoreErrorKind::InvalidKey))
    }
}
