//! Where the NARs of an image come from: the local Nix store (dumped on the fly) or binary caches
//! (downloaded and decompressed). Either way the stream is checked as it is read: it fails instead
//! of ending when its bytes are not the NarHash and NarSize promised (by the Nix database, or by
//! the narinfo whose signature the closure walk checked), so no layer is stored from bytes that
//! did not verify.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::PathBuf;

use narwhal_formats::hash::{Hash, Hasher};
use narwhal_formats::narinfo::NarInfo;
use narwhal_formats::store_path::StorePath;
use narwhal_store::{BinaryCache, Compression};

use crate::{Error, PathEntry};

/// Gives the NAR of a closure's path, checked against `entry`'s NarHash and NarSize as it is read.
pub trait NarSource: Sync {
    fn open(&self, entry: &PathEntry) -> Result<Box<dyn Read + Send + '_>, Error>;
}

/// The local Nix store's files, read through `real_dir` (`/nix/store` or a chroot store's).
pub struct LocalSource {
    pub real_dir: PathBuf,
}

impl NarSource for LocalSource {
    fn open(&self, entry: &PathEntry) -> Result<Box<dyn Read + Send + '_>, Error> {
        let path = self.real_dir.join(entry.path.base_name());
        let (reader, mut writer) =
            io::pipe().map_err(|source| Error::Io { what: "cannot open a pipe for", path: path.clone(), source })?;
        // The dump runs beside the parser; it stops when the parser drops its end of the pipe.
        std::thread::spawn(move || {
            let _ = narwhal_formats::nar::dump(&path, &mut writer);
        });
        Ok(Box::new(Verifying::new(reader, entry)))
    }
}

/// Binary caches: each path's narinfo (its signature already checked) and the cache it came from.
pub struct CacheSource<'c> {
    pub caches: Vec<&'c dyn BinaryCache>,
    /// For each path: the index into `caches` and its narinfo.
    pub infos: BTreeMap<StorePath, (usize, NarInfo)>,
}

impl NarSource for CacheSource<'_> {
    fn open(&self, entry: &PathEntry) -> Result<Box<dyn Read + Send + '_>, Error> {
        let no_source = || Error::NoSource { path: entry.path.to_string() };
        let (cache, info) = self.infos.get(&entry.path).ok_or_else(no_source)?;
        let cache = self.caches.get(*cache).ok_or_else(no_source)?;
        let compression: Compression =
            info.compression().parse().map_err(|e: narwhal_store::compression::UnknownCompression| Error::Layer {
                path: entry.path.to_string(),
                source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
            })?;
        let raw = cache.open(&info.url)?;
        let decoded =
            compression.decoder(raw).map_err(|source| Error::Layer { path: entry.path.to_string(), source })?;
        Ok(Box::new(Verifying::new(decoded, entry)))
    }
}

/// A NAR stream that fails at its end (or as soon as it runs long) unless it hashed to what was promised.
struct Verifying<R> {
    inner: R,
    hasher: Hasher,
    read: u64,
    expected: Hash,
    size: u64,
    path: String,
}

impl<R: Read> Verifying<R> {
    fn new(inner: R, entry: &PathEntry) -> Self {
        Self {
            inner,
            hasher: Hasher::new(entry.nar_hash.algorithm()),
            read: 0,
            expected: entry.nar_hash,
            size: entry.nar_size,
            path: entry.path.to_string(),
        }
    }

    fn fail(&self, what: &str) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, format!("the NAR of {} {what}", self.path))
    }
}

impl<R: Read> Read for Verifying<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.size {
            return Err(self.fail(&format!("is longer than its NarSize {}", self.size)));
        }
        self.hasher.update(&buf[..n]);
        if n == 0 && !buf.is_empty() {
            if self.read != self.size {
                return Err(self.fail(&format!("ended after {} of its NarSize {} bytes", self.read, self.size)));
            }
            let actual = self.hasher.clone().finish();
            if actual != self.expected {
                return Err(self.fail(&format!("has NarHash {actual}, not {}", self.expected)));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use narwhal_formats::hash::Algorithm;

    use super::*;

    #[test]
    fn a_stream_that_does_not_hash_as_promised_fails_at_its_end() {
        let path = StorePath::from_base_name(&format!("{}-x", "a".repeat(32))).unwrap();
        let good = PathEntry { path: path.clone(), nar_hash: Hash::of(Algorithm::Sha256, b"abc"), nar_size: 3 };
        let mut out = Vec::new();
        Verifying::new(&b"abc"[..], &good).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abc");
        for bad in [&b"abd"[..], b"ab", b"abcd"] {
            let err = Verifying::new(bad, &good).read_to_end(&mut Vec::new()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{bad:?}");
        }
    }
}
