//! Binary caches as narwhal reads them.
//!
//! A cache is a tree of keys (`nix-cache-info`, `<hash>.narinfo`,
//! `nar/<file hash>.nar.xz`, `pins/<name>`) behind one trait, [`BinaryCache`],
//! with a directory backend and an HTTP backend. [`open_cache`] turns a cache
//! URL in Nix's syntax into one. [`Compression`] decodes NARs; [`pin`] is the
//! format of named pointers to store paths, written by `push` and read by `fetch`.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod closure;
pub mod compression;
pub mod error;
pub mod file;
pub mod http;
pub mod http_writer;
pub mod hydra;
pub mod keys;
pub mod lock;
pub mod parallel;
pub mod pin;
pub mod retry;
pub mod s3;
pub mod settings;
pub mod url;

use std::io::Read;

pub use compression::Compression;
pub use error::{HydraProblem, StoreError, StoreErrorKind};
pub use settings::Settings;
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

/// A binary cache, write side. Every write is atomic: a reader sees an
/// object whole or not at all, never part of it.
pub trait CacheWriter: BinaryCache {
    /// Whether `key` exists.
    fn exists(&self, key: &str) -> Result<bool, StoreError>;

    /// Stores a small object (narinfo, pin, `nix-cache-info`) whole.
    fn put(&self, key: &str, data: &[u8], content_type: &str) -> Result<(), StoreError>;

    /// Stores a large object (a compressed NAR) from a finished local file.
    fn put_file(&self, key: &str, file: &std::path::Path, content_type: &str) -> Result<(), StoreError>;

    /// Removes `key`; absent is fine.
    fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// The keys directly under the directory-like `prefix` (such as `pins/`), sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
}

/// Opens the cache at `url` for writing (`file:///dir`, `/dir`, `s3://bucket[/prefix]`,
/// `http(s)://host/path` with credentials from [`http_writer::HttpAuth::resolve`]).
pub fn open_writer(url: &CacheUrl, settings: &Settings) -> Result<Box<dyn CacheWriter>, StoreError> {
    open_writer_with_token(url, None, settings)
}

/// As [`open_writer`]; an HTTP cache gets `token` (the token and where it came from, for
/// messages) as its Bearer token, before the settings' push token and netrc files.
pub fn open_writer_with_token(
    url: &CacheUrl,
    token: Option<(String, String)>,
    settings: &Settings,
) -> Result<Box<dyn CacheWriter>, StoreError> {
    match &url.location {
        Location::File(dir) => {
            Ok(Box::new(file::FileCache::writer(dir.clone(), url.to_string(), "narwhal push", settings.lock_wait)?))
        }
        Location::Http(base) => {
            let auth = http_writer::HttpAuth::resolve(base, token, settings)?;
            Ok(Box::new(http::HttpCache::new(base, &http::HttpOptions::default())?.with_auth(auth)))
        }
        Location::S3 { .. } => Ok(Box::new(s3::S3Cache::from_url(url, &http::HttpOptions::default(), settings)?)),
    }
}

/// Opens the cache at `url` (`file:///dir`, `/dir`, `http(s)://host/path`, `s3://bucket[/prefix]`)
/// for reading. An HTTP cache gets the host's login and password from the settings' netrc files, as
/// Nix's substituters do ([`http_writer::HttpAuth::resolve_netrc`]).
pub fn open_cache(
    url: &CacheUrl,
    options: &http::HttpOptions,
    settings: &Settings,
) -> Result<Box<dyn BinaryCache>, StoreError> {
    Ok(match &url.location {
        Location::File(dir) => Box::new(file::FileCache::new(dir.clone(), url.to_string())),
        Location::Http(base) => Box::new(
            http::HttpCache::new(base, options)?
                .with_auth(http_writer::HttpAuth::resolve_netrc(base, &settings.netrc_files)),
        ),
        Location::S3 { .. } => Box::new(s3::S3Cache::from_url(url, options, settings)?),
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
