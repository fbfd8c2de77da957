//! Where the NARs of an image come from: the local Nix store (dumped on the fly) or binary caches
//! (downloaded and decompressed). Either way the stream is checked as it is read: it fails instead
//! of ending when its bytes are not the NarHash and NarSize promised (by the Nix database, or by
//! the narinfo whose signature the closure walk checked), so no layer is stored from bytes that
//! did not verify.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::PathBuf;

use narwhal_formats::export::{CheckOnly, ExportReader, ExportedPath};
use narwhal_formats::hash::{Hash, Hasher};
use narwhal_formats::narinfo::NarInfo;
use narwhal_formats::store_path::{StoreDir, StorePath};
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

/// The paths of a `nix-store --export` stream. The stream is read once, in order, so each NAR
/// is spooled to a file of its own (in a temporary directory, removed on drop) as the export's
/// strict parser reads it, with its NarHash and NarSize computed on the way; layers then read the
/// spooled NARs, checked against those hashes again. An export has no signatures: its trust is
/// whoever wrote it (hence `--no-verify`), and its closure is checked by the caller.
pub struct ExportSource {
    /// Holds the spooled NARs; removed with the source.
    _dir: narwhal_formats::temp::TempDir,
    nars: BTreeMap<StorePath, PathBuf>,
}

impl ExportSource {
    /// Reads the export `input` (named `what` in messages) to its end; returns the source and
    /// every path of the stream in its order (a path repeated with the same NAR once).
    pub fn read(input: &mut dyn Read, what: &str, store_dir: &StoreDir) -> Result<(Self, Vec<ExportedPath>), Error> {
        let dir = narwhal_formats::temp::dir_in(&std::env::temp_dir(), "narwhal-export").map_err(|source| {
            Error::Io { what: "cannot create a temporary directory in", path: std::env::temp_dir(), source }
        })?;
        let mut reader = ExportReader::new(io::BufReader::with_capacity(256 * 1024, input), store_dir.clone());
        let mut nars = BTreeMap::new();
        let mut paths: Vec<ExportedPath> = Vec::new();
        for index in 0.. {
            let file = dir.path().join(format!("{index}.nar"));
            let export_err = |source| Error::Export { what: what.to_owned(), source };
            let io_err = |source| Error::Io { what: "cannot spool the export to", path: file.clone(), source };
            let mut out = io::BufWriter::new(std::fs::File::create(&file).map_err(io_err)?);
            let Some(exported) = reader.next_path_copying(&mut CheckOnly, &mut out).map_err(export_err)? else {
                let _ = std::fs::remove_file(&file);
                break;
            };
            std::io::Write::flush(&mut out).map_err(io_err)?;
            if let Some(earlier) = paths.iter().find(|p| p.path == exported.path) {
                if earlier.nar_hash != exported.nar_hash {
                    return Err(Error::ExportConflict {
                        what: what.to_owned(),
                        path: store_dir.display(&exported.path).to_string(),
                    });
                }
                let _ = std::fs::remove_file(&file);
                continue;
            }
            nars.insert(exported.path.clone(), file);
            paths.push(exported);
        }
        Ok((Self { _dir: dir, nars }, paths))
    }
}

impl NarSource for ExportSource {
    fn open(&self, entry: &PathEntry) -> Result<Box<dyn Read + Send + '_>, Error> {
        let file = self.nars.get(&entry.path).ok_or_else(|| Error::NoSource { path: entry.path.to_string() })?;
        let f = std::fs::File::open(file).map_err(|source| Error::Io {
            what: "cannot read the spooled NAR",
            path: file.clone(),
            source,
        })?;
        Ok(Box::new(Verifying::new(io::BufReader::with_capacity(256 * 1024, f), entry)))
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
