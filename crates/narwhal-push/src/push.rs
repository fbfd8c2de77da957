//! Pushing a closure into a cache, committing each narinfo last.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};

use narwhal_formats::hash::{Algorithm, Encoding, HashingWriter};
use narwhal_formats::nar;
use narwhal_formats::narinfo::NarInfo;
use narwhal_formats::signature::SecretKey;
use narwhal_formats::store_path::{StoreDir, StorePath};
use narwhal_store::{BinaryCache, CacheWriter};

use crate::error::Error;
use crate::local::{LocalStore, PathInfo};

/// How NARs are compressed in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushCompression {
    None,
    Xz,
    /// zstd on all cores.
    Zstd,
}

impl PushCompression {
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Xz => "xz",
            Self::Zstd => "zstd",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Xz => ".xz",
            Self::Zstd => ".zst",
        }
    }
}

/// Receives progress; every method defaults to nothing.
pub trait PushReporter: Send + Sync {
    fn planned(&self, total: usize, missing: usize) {
        let _ = (total, missing);
    }
    fn uploaded(&self, path: &StorePath, nar_size: u64, file_size: u64) {
        let _ = (path, nar_size, file_size);
    }
}

pub struct PushOptions<'a> {
    pub compression: PushCompression,
    /// zstd level (default 3) or xz preset (default 6).
    pub level: Option<u32>,
    pub key: Option<SecretKey>,
    pub jobs: usize,
    /// Where compressed NARs wait for their upload.
    pub temp_dir: PathBuf,
    pub reporter: &'a dyn PushReporter,
}

#[derive(Debug, Default, Clone)]
pub struct PushSummary {
    pub paths: usize,
    pub already_there: usize,
    pub uploaded: usize,
    pub nar_bytes: u64,
    pub file_bytes: u64,
}

/// The paths of `closure` whose narinfo `cache` lacks, in closure order.
pub fn missing(closure: &[PathInfo], cache: &dyn BinaryCache, jobs: usize) -> Result<Vec<StorePath>, Error> {
    let paths: Vec<StorePath> = closure.iter().map(|i| i.path.clone()).collect();
    missing_paths(&paths, cache, jobs)
}

/// The `paths` whose narinfo `cache` lacks, in their order, asked `jobs` at a time.
pub(crate) fn missing_paths(
    paths: &[StorePath],
    cache: &dyn BinaryCache,
    jobs: usize,
) -> Result<Vec<StorePath>, Error> {
    let next = AtomicUsize::new(0);
    let found: Mutex<Vec<(usize, Result<bool, Error>)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, paths.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = paths.get(i) else { break };
                let key = format!("{}.narinfo", path.hash_part());
                let present = cache.get(&key).map(|b| b.is_some()).map_err(Error::from);
                found.lock().unwrap_or_else(PoisonError::into_inner).push((i, present));
            });
        }
    });
    let mut found = found.into_inner().unwrap_or_else(PoisonError::into_inner);
    found.sort_by_key(|(i, _)| *i);
    let mut out = Vec::new();
    for (i, present) in found {
        if !present? {
            out.push(paths[i].clone());
        }
    }
    Ok(out)
}

/// Runs `one` on every item of `work` on `jobs` threads, stopping early after the first failure.
pub(crate) fn run_workers<T: Sync, R: Send>(
    work: &[T],
    jobs: usize,
    commits: &Commits,
    one: impl Fn(&T) -> Result<R, Error> + Sync,
) -> Vec<Result<R, Error>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Result<R, Error>>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, work.len().max(1)) {
            scope.spawn(|| {
                while !commits.failed.load(Ordering::Relaxed) {
                    let Some(item) = work.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                    let r = one(item);
                    if r.is_err() {
                        commits.fail();
                    }
                    results.lock().unwrap_or_else(PoisonError::into_inner).push(r);
                }
            });
        }
    });
    results.into_inner().unwrap_or_else(PoisonError::into_inner)
}

/// Pushes `closure` (references first, as [`LocalStore::closure`] returns it) into `dest`.
pub fn push(
    local: &LocalStore,
    closure: &[PathInfo],
    dest: &dyn CacheWriter,
    opts: &PushOptions<'_>,
) -> Result<PushSummary, Error> {
    if !dest.exists("nix-cache-info")? {
        let info = format!("StoreDir: {}\n", local.store_dir());
        dest.put("nix-cache-info", info.as_bytes(), "text/x-nix-cache-info")?;
    }
    let todo = missing(closure, dest, opts.jobs.max(8))?;
    opts.reporter.planned(closure.len(), todo.len());
    let todo_set: BTreeSet<StorePath> = todo.iter().cloned().collect();
    // The database connection stays on this thread; workers get what they need.
    let work: Vec<(&PathInfo, PathBuf)> =
        closure.iter().filter(|i| todo_set.contains(&i.path)).map(|i| (i, local.real_path(&i.path))).collect();
    let store_dir = local.store_dir().clone();

    let committed = Commits::default();
    let results = run_workers(&work, opts.jobs, &committed, |(info, real)| {
        push_one(&store_dir, info, real, dest, opts, &todo_set, &committed)
    });
    summarize(closure.len(), work.len(), results)
}

/// The summary of a push of `total` paths, `uploading` of them missing, from the workers' results
/// (the first failure, if any, is the push's error).
pub(crate) fn summarize(
    total: usize,
    uploading: usize,
    results: Vec<Result<(u64, u64), Error>>,
) -> Result<PushSummary, Error> {
    let mut summary = PushSummary { paths: total, already_there: total - uploading, ..PushSummary::default() };
    for r in results {
        let (nar, file) = r?;
        summary.uploaded += 1;
        summary.nar_bytes += nar;
        summary.file_bytes += file;
    }
    Ok(summary)
}

/// Which narinfos this push has written, so a path's narinfo waits for its references'.
#[derive(Default)]
pub(crate) struct Commits {
    done: Mutex<BTreeSet<StorePath>>,
    changed: Condvar,
    failed: AtomicBool,
}

impl Commits {
    pub(crate) fn fail(&self) {
        self.failed.store(true, Ordering::Relaxed);
        self.changed.notify_all();
    }

    /// Waits until every reference that this push must write is written; false if the push failed meanwhile.
    pub(crate) fn wait_for(&self, refs: &[StorePath], pending: &BTreeSet<StorePath>, own: &StorePath) -> bool {
        let mut done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if self.failed.load(Ordering::Relaxed) {
                return false;
            }
            if refs.iter().all(|r| r == own || !pending.contains(r) || done.contains(r)) {
                return true;
            }
            done = self.changed.wait(done).unwrap_or_else(PoisonError::into_inner);
        }
    }

    pub(crate) fn mark(&self, path: &StorePath) {
        self.done.lock().unwrap_or_else(PoisonError::into_inner).insert(path.clone());
        self.changed.notify_all();
    }
}

fn push_one(
    store_dir: &StoreDir,
    info: &PathInfo,
    real: &Path,
    dest: &dyn CacheWriter,
    opts: &PushOptions<'_>,
    pending: &BTreeSet<StorePath>,
    commits: &Commits,
) -> Result<(u64, u64), Error> {
    let full = store_dir.display(&info.path).to_string();
    let tmp = opts.temp_dir.join(format!(".narwhal-push-{}-{}", std::process::id(), info.path.hash_part()));
    let guard = TempFile(tmp.clone());
    let (nar_hash, nar_size, file_hash, file_size) = compress_nar(real, &tmp, opts, &full)?;
    if nar_hash != info.nar_hash || nar_size != info.nar_size {
        return Err(Error::Modified { path: full, expected: info.nar_hash.to_string(), actual: nar_hash.to_string() });
    }
    let url = format!("nar/{}.nar{}", file_hash.encode(Encoding::Nix32), opts.compression.extension());
    if !dest.exists(&url)? {
        dest.put_file(&url, &tmp, "application/x-nix-nar")?;
    }
    drop(guard);

    let mut narinfo = NarInfo::new(store_dir.clone(), info.path.clone(), url, nar_hash, nar_size);
    narinfo.compression = Some(opts.compression.name().to_owned());
    narinfo.file_hash = Some(file_hash);
    narinfo.file_size = Some(file_size);
    narinfo.references = Some(info.references.clone());
    narinfo.deriver.clone_from(&info.deriver);
    narinfo.sigs.clone_from(&info.sigs);
    narinfo.sigs.sort();
    narinfo.ca.clone_from(&info.ca);
    if let Some(key) = &opts.key {
        narinfo.sign(key).map_err(|source| Error::Sign { path: full.clone(), source })?;
    }
    // The commit point: only once every reference's narinfo is in the cache.
    if !commits.wait_for(&info.references, pending, &info.path) {
        return Ok((0, 0));
    }
    dest.put(&format!("{}.narinfo", info.path.hash_part()), narinfo.to_string().as_bytes(), "text/x-nix-narinfo")?;
    commits.mark(&info.path);
    opts.reporter.uploaded(&info.path, nar_size, file_size);
    Ok((nar_size, file_size))
}

/// NAR of `src` -> NarHash -> compression -> FileHash -> `out`.
fn compress_nar(src: &Path, out: &Path, opts: &PushOptions<'_>, full: &str) -> Result<Compressed, Error> {
    compress_with(out, opts, full, &mut |w| {
        nar::dump(src, w).map(drop).map_err(|source| Error::Dump { path: full.to_owned(), source })
    })
}

/// What [`compress_with`] produced.
pub(crate) type Compressed = (narwhal_formats::hash::Hash, u64, narwhal_formats::hash::Hash, u64);

/// `produce` writes a NAR; it is hashed, compressed, hashed again and written to `out`.
/// Returns NarHash, NarSize, FileHash, FileSize.
pub(crate) fn compress_with(
    out: &Path,
    opts: &PushOptions<'_>,
    full: &str,
    produce: &mut dyn FnMut(&mut dyn Write) -> Result<(), Error>,
) -> Result<Compressed, Error> {
    let temp_err = |source| Error::Temp { path: out.to_owned(), source };
    let compress_err = |source| Error::Compress { path: full.to_owned(), source };
    let file = File::create(out).map_err(temp_err)?;
    let file_hashing = HashingWriter::new(Algorithm::Sha256, BufWriter::with_capacity(1 << 20, file));
    let compressor = Compressor::new(opts.compression, opts.level, file_hashing).map_err(compress_err)?;
    let mut nar = HashingWriter::new(Algorithm::Sha256, compressor);
    produce(&mut nar)?;
    let (nar_hash, nar_size, compressor) = nar.finish();
    let (file_hash, file_size, mut buffered) = compressor.finish().map_err(compress_err)?.finish();
    buffered.flush().map_err(temp_err)?;
    buffered.get_ref().sync_all().map_err(temp_err)?;
    Ok((nar_hash, nar_size, file_hash, file_size))
}

/// A compressing writer that must be finished.
enum Compressor<W: Write> {
    None(W),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Xz(liblzma::write::XzEncoder<W>),
}

impl<W: Write> Compressor<W> {
    fn new(compression: PushCompression, level: Option<u32>, inner: W) -> std::io::Result<Self> {
        Ok(match compression {
            PushCompression::None => Self::None(inner),
            PushCompression::Zstd => {
                let level = level.map_or(3, |l| i32::try_from(l).unwrap_or(3));
                let mut enc = zstd::stream::write::Encoder::new(inner, level)?;
                let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
                enc.multithread(u32::try_from(threads).unwrap_or(1))?;
                Self::Zstd(enc)
            }
            PushCompression::Xz => Self::Xz(liblzma::write::XzEncoder::new(inner, level.unwrap_or(6))),
        })
    }

    fn finish(self) -> std::io::Result<W> {
        match self {
            Self::None(w) => Ok(w),
            Self::Zstd(e) => e.finish(),
            Self::Xz(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::None(w) => w.write(buf),
            Self::Zstd(e) => e.write(buf),
            Self::Xz(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::None(w) => w.flush(),
            Self::Zstd(e) => e.flush(),
            Self::Xz(e) => e.flush(),
        }
    }
}

/// Removes a temporary file when dropped.
pub(crate) struct TempFile(pub(crate) PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
