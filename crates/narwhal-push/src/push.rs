//! Pushing a closure into a cache, committing each narinfo last.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use narwhal_formats::hash::{Algorithm, HashingWriter};
use narwhal_formats::nar;
use narwhal_formats::narinfo::NarInfo;
use narwhal_formats::signature::SecretKey;
use narwhal_formats::store_path::{StoreDir, StorePath};
use narwhal_formats::temp::{NamedTempFile, TempPath};
use narwhal_store::keys;
use narwhal_store::{BinaryCache, CacheWriter};

use crate::commit::{self, GcGuard};
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

    /// The levels this compression takes: zstd 1 to 22 (above 19 needs much more memory), xz presets 0
    /// to 9, and none for `none`.
    pub fn levels(self) -> Option<std::ops::RangeInclusive<u32>> {
        match self {
            Self::None => None,
            Self::Xz => Some(0..=9),
            Self::Zstd => Some(1..=22),
        }
    }

    /// Refuses a level this compression does not take (liblzma panics on a preset over 9).
    pub fn check_level(self, level: Option<u32>) -> Result<(), Error> {
        match (level, self.levels()) {
            (None, _) => Ok(()),
            (Some(level), Some(range)) if range.contains(&level) => Ok(()),
            (Some(level), levels) => Err(Error::Level { compression: self.name(), level, levels }),
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
    /// Every narinfo written is signed with each of these.
    pub keys: Vec<SecretKey>,
    pub jobs: usize,
    /// Where compressed NARs wait for their upload.
    pub temp_dir: PathBuf,
    pub reporter: &'a dyn PushReporter,
    /// How long to wait for a garbage collection that is deleting (its phase 2) before giving up.
    pub gc_wait: Duration,
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
    let present = narwhal_store::parallel::try_map(paths, jobs, |path| {
        cache.get(&keys::narinfo(path)).map(|b| b.is_some()).map_err(Error::from)
    })?;
    Ok(paths.iter().zip(present).filter(|(_, present)| !present).map(|(p, _)| p.clone()).collect())
}

/// Runs `one` on every item of `work` on `jobs` threads, stopping early after the first failure.
pub(crate) fn run_workers<T: Sync, R: Send>(
    work: &[T],
    jobs: usize,
    commits: &Commits,
    one: impl Fn(&T) -> Result<R, Error> + Sync,
) -> Vec<Result<R, Error>> {
    let ran = narwhal_store::parallel::run(work, jobs, &commits.failed, |_, item| {
        let r = one(item);
        if r.is_err() {
            // Also wakes the paths waiting for a commit that will now never come.
            commits.fail();
        }
        r
    });
    ran.into_iter().map(|(_, r)| r).collect()
}

/// Pushes `closure` (references first, as [`LocalStore::closure`] returns it) into `dest`.
pub fn push(
    local: &LocalStore,
    closure: &[PathInfo],
    dest: &dyn CacheWriter,
    opts: &PushOptions<'_>,
) -> Result<PushSummary, Error> {
    commit::ensure_cache_info(dest, local.store_dir())?;
    commit::restart_when_gc_moves(|| push_once(local, closure, dest, opts))
}

fn push_once(
    local: &LocalStore,
    closure: &[PathInfo],
    dest: &dyn CacheWriter,
    opts: &PushOptions<'_>,
) -> Result<PushSummary, Error> {
    let gc = GcGuard::open(dest, opts.gc_wait)?;
    let mut todo = missing(closure, dest, opts.jobs.max(8))?;
    // Candidates of a GC window count as missing: uploaded again, they are newer than its mark.
    let again: Vec<StorePath> = closure
        .iter()
        .filter(|i| gc.path_is_candidate(i.path.hash_part()) && !todo.contains(&i.path))
        .map(|i| i.path.clone())
        .collect();
    todo.extend(again);
    opts.reporter.planned(closure.len(), todo.len());
    let todo_set: BTreeSet<StorePath> = todo.iter().cloned().collect();
    // The database connection stays on this thread; workers get what they need.
    let mut work: Vec<(&PathInfo, PathBuf)> =
        closure.iter().filter(|i| todo_set.contains(&i.path)).map(|i| (i, local.real_path(&i.path))).collect();
    largest_first_by_layer(&mut work);
    let store_dir = local.store_dir().clone();

    let committed = Commits::default();
    let results = run_workers(&work, opts.jobs, &committed, |(info, real)| {
        push_one(&store_dir, info, real, dest, opts, &todo_set, &committed, &gc)
    });
    summarize(closure.len(), work.len(), results)
}

/// Reorders `work` (references first) so that each path still comes after its references, and
/// among the paths of one layer (those whose references are all in earlier layers) the largest
/// come first: the longest compression starts early instead of running alone at the end, and it
/// gets the multithreaded xz encoder.
fn largest_first_by_layer(work: &mut [(&PathInfo, PathBuf)]) {
    let mut layer: std::collections::BTreeMap<StorePath, usize> = std::collections::BTreeMap::new();
    for (info, _) in work.iter() {
        let below = info.references.iter().filter(|r| **r != info.path).filter_map(|r| layer.get(r)).max();
        layer.insert(info.path.clone(), below.map_or(0, |l| l + 1));
    }
    work.sort_by_key(|(info, _)| (layer[&info.path], std::cmp::Reverse(info.nar_size)));
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

    /// The commit point of a path this push uploaded, its NAR already in the cache: signs
    /// `narinfo` with the push's keys and, once every reference's narinfo is in the cache and the GC
    /// window has not moved, writes it and reports the upload. Returns its NAR and file sizes,
    /// (0, 0) if the push failed meanwhile.
    pub(crate) fn publish(
        &self,
        dest: &dyn CacheWriter,
        mut narinfo: NarInfo,
        opts: &PushOptions<'_>,
        pending: &BTreeSet<StorePath>,
        gc: &GcGuard,
    ) -> Result<(u64, u64), Error> {
        commit::sign(&mut narinfo, &opts.keys)?;
        if !self.wait_for(narinfo.references(), pending, &narinfo.path) {
            return Ok((0, 0));
        }
        gc.check(dest)?;
        commit::commit(dest, &narinfo)?;
        self.mark(&narinfo.path);
        let file_size = narinfo.file_size.unwrap_or(narinfo.nar_size);
        opts.reporter.uploaded(&narinfo.path, narinfo.nar_size, file_size);
        Ok((narinfo.nar_size, file_size))
    }
}

#[allow(clippy::too_many_arguments)]
fn push_one(
    store_dir: &StoreDir,
    info: &PathInfo,
    real: &Path,
    dest: &dyn CacheWriter,
    opts: &PushOptions<'_>,
    pending: &BTreeSet<StorePath>,
    commits: &Commits,
    gc: &GcGuard,
) -> Result<(u64, u64), Error> {
    let full = store_dir.display(&info.path).to_string();
    let tmp = temp_nar(opts, &format!("narwhal-push-{}", info.path.hash_part()))?;
    let (nar_hash, nar_size, file_hash, file_size) = compress_nar(real, &tmp, opts, &full, info.nar_size)?;
    if nar_hash != info.nar_hash || nar_size != info.nar_size {
        return Err(Error::Modified { path: full, expected: info.nar_hash.to_string(), actual: nar_hash.to_string() });
    }
    let url = keys::nar(&file_hash, opts.compression.extension());
    commit::store_nar(dest, &url, &tmp, gc)?;
    drop(tmp);

    let mut narinfo = NarInfo::new(store_dir.clone(), info.path.clone(), url, nar_hash, nar_size);
    narinfo.compression = Some(opts.compression.name().to_owned());
    narinfo.file_hash = Some(file_hash);
    narinfo.file_size = Some(file_size);
    narinfo.references = Some(info.references.clone());
    narinfo.deriver.clone_from(&info.deriver);
    narinfo.sigs.clone_from(&info.sigs);
    narinfo.ca.clone_from(&info.ca);
    commits.publish(dest, narinfo, opts, pending, gc)
}

/// NAR of `src` -> NarHash -> compression -> FileHash -> `out`.
fn compress_nar(
    src: &Path,
    out: &Path,
    opts: &PushOptions<'_>,
    full: &str,
    nar_size: u64,
) -> Result<Compressed, Error> {
    compress_with(out, opts, full, Some(nar_size), &mut |w| {
        nar::dump(src, w).map(drop).map_err(|source| Error::Dump { path: full.to_owned(), source })
    })
}

/// What [`compress_with`] produced.
pub(crate) type Compressed = (narwhal_formats::hash::Hash, u64, narwhal_formats::hash::Hash, u64);

/// `produce` writes a NAR (of `nar_size` bytes, when known); it is hashed, compressed, hashed
/// again and written to `out`. Returns NarHash, NarSize, FileHash, FileSize.
pub(crate) fn compress_with(
    out: &Path,
    opts: &PushOptions<'_>,
    full: &str,
    nar_size: Option<u64>,
    produce: &mut dyn FnMut(&mut dyn Write) -> Result<(), Error>,
) -> Result<Compressed, Error> {
    let temp_err = |source| Error::Temp { path: out.to_owned(), source };
    let compress_err = |source| Error::Compress { path: full.to_owned(), source };
    let file = File::create(out).map_err(temp_err)?;
    let file_hashing = HashingWriter::new(Algorithm::Sha256, BufWriter::with_capacity(1 << 20, file));
    let compressor = Compressor::new(opts.compression, opts.level, nar_size, file_hashing).map_err(compress_err)?;
    let mut nar = HashingWriter::new(Algorithm::Sha256, compressor);
    produce(&mut nar)?;
    let (nar_hash, nar_size, compressor) = nar.finish();
    let (file_hash, file_size, mut buffered) = compressor.finish().map_err(compress_err)?.finish();
    // A temporary file: not synced; the cache makes its own copy durable.
    buffered.flush().map_err(temp_err)?;
    Ok((nar_hash, nar_size, file_hash, file_size))
}

/// The size of one multithreaded zstd job.
const ZSTD_JOB_SIZE: u32 = 2 << 20;

/// A compressing writer that must be finished.
enum Compressor<W: Write> {
    None(W),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    /// With the multithreaded encoder's turn, when it is one.
    Xz(liblzma::write::XzEncoder<W>, Option<MutexGuard<'static, ()>>),
}

/// Held by the one multithreaded xz encoder running: each takes all cores and about 130 MiB per
/// thread at preset 6, so a second large path waits for its turn (the cores are busy meanwhile)
/// instead of doubling the memory; smaller paths keep going beside it with one thread each.
static XZ_MT_TURN: Mutex<()> = Mutex::new(());

/// A NAR this large is split into independent xz blocks compressed on every core (multi-block xz,
/// which every xz reader, Nix included, decodes); smaller ones get one thread each, several paths
/// at once. Twice liblzma's default block size at preset 6 (three times the 8 MiB dictionary).
const XZ_MT_MIN_SIZE: u64 = 48 << 20;

impl<W: Write> Compressor<W> {
    fn new(compression: PushCompression, level: Option<u32>, nar_size: Option<u64>, inner: W) -> std::io::Result<Self> {
        compression
            .check_level(level)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Ok(match compression {
            PushCompression::None => Self::None(inner),
            PushCompression::Zstd => {
                let level = level.map_or(3, |l| i32::try_from(l).unwrap_or(3));
                let mut enc = zstd::stream::write::Encoder::new(inner, level)?;
                enc.multithread(u32::try_from(threads).unwrap_or(1))?;
                // Jobs of 2 MiB (the default at level 3 is 8 MiB): the buffers of the jobs in flight
                // were most of push's memory (peak 116 -> 47 MiB on bench/closure.nix, two paths in
                // flight), for 1.3 % larger output and no loss of speed.
                enc.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))?;
                Self::Zstd(enc)
            }
            PushCompression::Xz => {
                let preset = level.unwrap_or(6);
                let large = threads > 1 && nar_size.is_none_or(|n| n >= XZ_MT_MIN_SIZE);
                match large.then(|| XZ_MT_TURN.lock().unwrap_or_else(PoisonError::into_inner)) {
                    Some(turn) => {
                        let stream = liblzma::stream::MtStreamBuilder::new()
                            .threads(u32::try_from(threads).unwrap_or(2))
                            .preset(preset)
                            .check(liblzma::stream::Check::Crc64)
                            .encoder()
                            .map_err(std::io::Error::other)?;
                        Self::Xz(liblzma::write::XzEncoder::new_stream(inner, stream), Some(turn))
                    }
                    None => Self::Xz(liblzma::write::XzEncoder::new(inner, preset), None),
                }
            }
        })
    }

    fn finish(self) -> std::io::Result<W> {
        match self {
            Self::None(w) => Ok(w),
            Self::Zstd(e) => e.finish(),
            Self::Xz(e, _turn) => e.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::None(w) => w.write(buf),
            Self::Zstd(e) => e.write(buf),
            Self::Xz(e, _) => e.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::None(w) => w.flush(),
            Self::Zstd(e) => e.flush(),
            Self::Xz(e, _) => e.flush(),
        }
    }
}

/// A temporary file in `opts.temp_dir` for a NAR on its way to the cache, named after `name`
/// ([`narwhal_formats::temp`]); removed when dropped.
pub(crate) fn temp_nar(opts: &PushOptions<'_>, name: &str) -> Result<TempPath, Error> {
    narwhal_formats::temp::file_in(&opts.temp_dir, name)
        .map(NamedTempFile::into_temp_path)
        .map_err(|source| Error::Temp { path: opts.temp_dir.clone(), source })
}
