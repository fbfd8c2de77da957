//! Binary caches as narwhal reads them.
//!
//! A cache is a tree of keys (`nix-cache-info`, `<hash>.narinfo`,
//! `nar/<file hash>.nar.xz`, `pins/<name>`, all named in [`keys`]) behind two
//! traits, [`BinaryCache`] (read) and [`CacheWriter`] (atomic writes), over a
//! directory ([`file`]), S3 ([`s3`]) and HTTP ([`http`], [`http_writer`]).
//! [`open_cache`] and [`open_writer`] turn a cache URL in Nix's syntax
//! ([`url`]) into one. Beside them, what fetch, push, serve and image share:
//! [`Compression`] (NAR decoders), [`pin`] (named pointers to store paths),
//! [`hydra`], the one worker pool ([`parallel`]), closure walk ([`closure`]) and
//! retry loop ([`retry`]), and the directory locks with the sweep of what
//! killed writers left ([`lock`]).

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod closure;
pub mod compression;
pub mod error;
pub mod file;
pub mod gc_window;
pub mod http;
pub mod http_writer;
pub mod hydra;
pub mod keys;
pub mod lock;
pub mod nar_check;
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

    /// Every object whose key starts with `prefix` (`""`: the whole cache), at any depth, in no
    /// particular order, given to `each` as the listing shows it (size, modification time, ETag):
    /// no request per object, and no list of them all in memory. Temporary names of writes in
    /// progress are left out. Returns the number of requests made.
    fn list_objects(&self, prefix: &str, each: &mut dyn FnMut(Listed)) -> Result<u64, StoreError> {
        let _ = (prefix, each);
        Err(StoreError::new(
            self.url(),
            StoreErrorKind::Unsupported("this cache cannot be listed with modification times"),
        ))
    }

    /// Stores `data` as `key` only if `key` does not exist (a conditional PUT, `If-None-Match: *`,
    /// or an exclusive link); `Ok(false)` when it exists.
    fn put_new(&self, key: &str, data: &[u8], content_type: &str) -> Result<bool, StoreError> {
        let _ = (key, data, content_type);
        Err(StoreError::new(self.url(), StoreErrorKind::Unsupported("this cache has no conditional writes")))
    }

    /// Replaces `key` with `data` only if it still is the object `etag` names (`If-Match`);
    /// `Ok(false)` when it changed or is gone.
    fn replace_if(&self, key: &str, data: &[u8], content_type: &str, etag: &str) -> Result<bool, StoreError> {
        let _ = (key, data, content_type, etag);
        Err(StoreError::new(self.url(), StoreErrorKind::Unsupported("this cache has no conditional writes")))
    }

    /// Aborts the incomplete multipart uploads started before `before_ms` (Unix milliseconds);
    /// returns their keys. Backends without multipart uploads have none.
    fn abort_uploads(&self, before_ms: i64) -> Result<Vec<String>, StoreError> {
        let _ = before_ms;
        Ok(Vec::new())
    }
}

/// One object as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    /// Last modification, Unix milliseconds.
    pub modified_ms: i64,
    /// What changes whenever the object does (S3's ETag; size, mtime and inode for a directory).
    pub etag: String,
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
