//! Where the served cache lives: one enum, three backends.
//!
//! - [`Backend::Dir`]: a cache directory. Reads go straight to files (async,
//!   with byte ranges), opened only beneath the directory ([`open_beneath`]:
//!   a symlink out of it is not followed; the directory is opened once, so a
//!   read resolves only its key, and a directory moved into its place is
//!   served after a restart); writes go through narwhal-store's atomic
//!   `FileCache`.
//! - [`Backend::Remote`]: any other [`CacheWriter`] (an S3 bucket). Its
//!   blocking calls run on tokio's blocking pool; bodies stream through a
//!   bounded channel.
//! - [`Backend::Local`]: the machine's Nix store, read-only ([`crate::local`]).

use std::io::{self, Read, SeekFrom};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use narwhal_formats::store_path::StoreDir;
use narwhal_store::{check_key, CacheWriter};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use crate::error::ApiError;
use crate::local::Local;

/// Chunks a streamed body is cut into.
pub const CHUNK: usize = 256 * 1024;

pub enum Backend {
    /// Made by [`Backend::dir`].
    Dir {
        root: Arc<Root>,
        writer: Arc<dyn CacheWriter>,
    },
    Remote(Arc<dyn CacheWriter>),
    Local(Arc<Local>),
}

/// A byte range a client asked for, already checked against the object's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    /// Inclusive.
    pub end: u64,
}

/// What `Range: bytes=…` asked for, before the length is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// `a-` or `a-b`.
    From { start: u64, end: Option<u64> },
    /// `-n`: the last n bytes.
    Suffix(u64),
}

impl RangeRequest {
    /// Parses one range; several ranges or other units are ignored (`None`: send it all).
    pub fn parse(value: &str) -> Option<Self> {
        let spec = value.trim().strip_prefix("bytes=")?;
        if spec.contains(',') {
            return None;
        }
        let (a, b) = spec.split_once('-')?;
        let (a, b) = (a.trim(), b.trim());
        if a.is_empty() {
            return b.parse().ok().map(Self::Suffix);
        }
        let start = a.parse().ok()?;
        let end = if b.is_empty() { None } else { Some(b.parse().ok()?) };
        if end.is_some_and(|e| e < start) {
            return None;
        }
        Some(Self::From { start, end })
    }

    /// The range within an object of `len` bytes, or `Err` when it cannot be satisfied.
    pub fn resolve(self, len: u64) -> Result<ByteRange, Unsatisfiable> {
        match self {
            Self::From { start, end } if start < len => {
                Ok(ByteRange { start, end: end.map_or(len - 1, |e| e.min(len - 1)) })
            }
            Self::Suffix(n) if n > 0 && len > 0 => Ok(ByteRange { start: len.saturating_sub(n), end: len - 1 }),
            _ => Err(Unsatisfiable(len)),
        }
    }
}

/// A large object on its way out.
pub struct Object {
    /// The whole object's length, when known.
    pub len: Option<u64>,
    /// Set when only part of the object is sent (206).
    pub range: Option<ByteRange>,
    pub body: Body,
}

/// A range that does not fit an object of this length (416).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsatisfiable(pub u64);

/// A cache directory, and a descriptor of it that reads resolve their keys beneath.
pub struct Root {
    path: PathBuf,
    fd: OwnedFd,
}

impl Backend {
    /// The cache directory `root`, opened now; `writer` writes to it.
    pub fn dir(root: PathBuf, writer: Arc<dyn CacheWriter>) -> io::Result<Self> {
        use rustix::fs::{Mode, OFlags};
        let fd = rustix::fs::open(&root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        Ok(Self::Dir { root: Arc::new(Root { path: root, fd }), writer })
    }

    /// The writable cache behind this backend; `None` for the local store.
    pub fn writer(&self) -> Option<&Arc<dyn CacheWriter>> {
        match self {
            Self::Dir { writer, .. } | Self::Remote(writer) => Some(writer),
            Self::Local(_) => None,
        }
    }

    /// A small object whole, `None` when absent. Not for the local store.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, ApiError> {
        match self {
            Self::Dir { root, .. } => {
                check_key(key)?;
                // Small files from a local directory: a read from the page cache costs less
                // than a trip through the blocking pool.
                let read = open_beneath(root, key).and_then(|mut f| {
                    if !f.metadata()?.is_file() {
                        return Err(io::Error::from(io::ErrorKind::NotFound));
                    }
                    let mut b = Vec::new();
                    f.read_to_end(&mut b).map(|_| b)
                });
                match read {
                    Ok(b) => Ok(Some(Bytes::from(b))),
                    Err(e) if is_absent(&e) => Ok(None),
                    Err(e) => Err(ApiError::backend("cannot read from the cache directory", &e)),
                }
            }
            Self::Remote(w) => {
                let (w, key) = (Arc::clone(w), key.to_owned());
                let got = blocking(move || w.get(&key)).await??;
                Ok(got.map(Bytes::from))
            }
            Self::Local(_) => Ok(None),
        }
    }

    /// A large object as a stream, `None` when absent. Not for the local store.
    pub async fn open(
        &self,
        key: &str,
        range: Option<RangeRequest>,
        head: bool,
    ) -> Result<Option<Result<Object, Unsatisfiable>>, ApiError> {
        match self {
            Self::Dir { root, .. } => {
                check_key(key)?;
                let (root, name) = (Arc::clone(root), key.to_owned());
                let opened = blocking(move || open_beneath(&root, &name)).await?;
                let mut file = match opened {
                    Ok(f) => tokio::fs::File::from_std(f),
                    Err(e) if is_absent(&e) => return Ok(None),
                    Err(e) => return Err(ApiError::backend("cannot open a file of the cache directory", &e)),
                };
                let meta = file.metadata().await.map_err(|e| ApiError::backend("cannot stat a cache file", &e))?;
                if !meta.is_file() {
                    return Ok(None);
                }
                let len = meta.len();
                let range = match range.map(|r| r.resolve(len)) {
                    Some(Ok(r)) => Some(r),
                    Some(Err(e)) => return Ok(Some(Err(e))),
                    None => None,
                };
                if head {
                    return Ok(Some(Ok(Object { len: Some(len), range, body: Body::empty() })));
                }
                let body = match range {
                    Some(r) => {
                        file.seek(SeekFrom::Start(r.start))
                            .await
                            .map_err(|e| ApiError::backend("cannot seek in a cache file", &e))?;
                        file_body(file.take(r.end - r.start + 1))
                    }
                    None => file_body(file),
                };
                Ok(Some(Ok(Object { len: Some(len), range, body })))
            }
            Self::Remote(w) if head => {
                let (w, key) = (Arc::clone(w), key.to_owned());
                let found = blocking(move || w.exists(&key)).await??;
                Ok(found.then(|| Ok(Object { len: None, range: None, body: Body::empty() })))
            }
            Self::Remote(w) => {
                let (w, key) = (Arc::clone(w), key.to_owned());
                // Ranges are ignored here (a server may send the whole object).
                let opened = blocking(move || match w.open(&key) {
                    Ok(r) => Ok(Some(r)),
                    Err(e) if matches!(e.kind, narwhal_store::StoreErrorKind::NotFound) => Ok(None),
                    Err(e) => Err(e),
                })
                .await??;
                Ok(opened.map(|r| Ok(Object { len: None, range: None, body: blocking_body(r) })))
            }
            Self::Local(_) => Ok(None),
        }
    }
}

/// Opens `root/key` for reading without leaving `root`: no `..` above it, no
/// absolute symlink, no symlink that resolves outside it (`openat2` with
/// `RESOLVE_BENEATH`; where the kernel lacks it, the resolved path must be
/// inside the resolved root).
fn open_beneath(root: &Root, key: &str) -> io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    // Non-blocking: opening a FIFO someone put there must not hang (regular files ignore it).
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    let beneath = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    match rustix::fs::openat2(&root.fd, key, flags, Mode::empty(), beneath) {
        Ok(fd) => Ok(std::fs::File::from(fd)),
        Err(rustix::io::Errno::NOSYS) => {
            let root: &Path = &root.path;
            let path = std::fs::canonicalize(root.join(key))?;
            if path.starts_with(std::fs::canonicalize(root)?) {
                std::fs::File::open(path)
            } else {
                Err(io::Error::from(io::ErrorKind::NotFound))
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether an error opening a cache file means there is no such object
/// (absent, or a path that would leave the cache directory).
fn is_absent(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
        || e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error())
        || e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
}

/// Runs a blocking storage call on tokio's blocking pool. A panic there (a bug) is resumed in the
/// request's task, where the router's `access_and_log` answers 500 and counts it like any other.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => Ok(value),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(ApiError::internal("a storage task was cancelled")),
    }
}

fn file_body(r: impl tokio::io::AsyncRead + Send + 'static) -> Body {
    Body::from_stream(tokio_util::io::ReaderStream::with_capacity(r, CHUNK))
}

/// Streams a blocking reader from a thread of the blocking pool. The reader
/// stops as soon as the client goes away (the channel closes).
pub fn blocking_body(mut r: Box<dyn Read + Send>) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || loop {
        let mut buf = vec![0; CHUNK];
        match r.read(&mut buf) {
            Ok(0) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(n) => {
                buf.truncate(n);
                if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                    break;
                }
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                break;
            }
        }
    });
    channel_body(rx)
}

/// A body fed by a channel.
pub fn channel_body(rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>) -> Body {
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
}

/// The store directory a cache declares in its `nix-cache-info` (Nix's default when it has none).
pub fn store_dir_of(cache_info: Option<&[u8]>) -> Result<StoreDir, String> {
    match cache_info {
        None => Ok(StoreDir::default()),
        Some(bytes) => {
            let text = std::str::from_utf8(bytes).map_err(|_| "nix-cache-info is not UTF-8".to_owned())?;
            narwhal_formats::cache_info::CacheInfo::parse(text)
                .map(|i| i.store_dir)
                .map_err(|e| format!("invalid nix-cache-info: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = |s: &str| RangeRequest::parse(s);
        assert_eq!(r("bytes=0-9").unwrap().resolve(100), Ok(ByteRange { start: 0, end: 9 }));
        assert_eq!(r("bytes=90-").unwrap().resolve(100), Ok(ByteRange { start: 90, end: 99 }));
        assert_eq!(r("bytes=90-200").unwrap().resolve(100), Ok(ByteRange { start: 90, end: 99 }));
        assert_eq!(r("bytes=-10").unwrap().resolve(100), Ok(ByteRange { start: 90, end: 99 }));
        assert_eq!(r("bytes=-1000").unwrap().resolve(100), Ok(ByteRange { start: 0, end: 99 }));
        assert_eq!(r("bytes=100-").unwrap().resolve(100), Err(Unsatisfiable(100)));
        assert_eq!(r("bytes=-0").unwrap().resolve(100), Err(Unsatisfiable(100)));
        assert_eq!(r("bytes=5-1"), None);
        assert_eq!(r("bytes=0-1,3-4"), None);
        assert_eq!(r("items=0-1"), None);
        assert_eq!(r("bytes=x-1"), None);
    }
}
