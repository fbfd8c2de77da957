//! Fetching a resolved closure into a directory.
//!
//! Per path, one stream: cache (or the local download cache) -> FileHash and
//! byte count (and a copy into the download cache) -> decompression -> NarHash
//! and NarSize (and the hash of the relocated NAR) -> strict NAR parser ->
//! relocating unpack under a temporary name. Only when every hash and size
//! matches the narinfo is the tree renamed to `<dest>/<hash>-<name>` and the
//! download cache entry to its final name. Paths run in parallel; memory
//! stays at a few buffers per worker whatever the closure's size.
//!
//! This module orchestrates; one module per concern: [`destination`] (lock,
//! manifest, commit), [`attempt`] (one path from one source, once),
//! [`pipeline`] (the four threads of one NAR), [`relocate_hook`] (rewriting
//! and scanning), [`verify`] (hashes and the check), [`download_cache`].

mod attempt;
mod destination;
mod download_cache;
mod pipeline;
mod relocate_hook;
mod verify;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use narwhal_formats::hash::Algorithm;
use narwhal_formats::nar;
use narwhal_relocate::Relocation;
use narwhal_store::lock::{self, DirLock};
use narwhal_store::retry::Retry;
use narwhal_store::Compression;

use crate::closure::ClosurePath;
use crate::error::Error;
use crate::manifest::ManifestEntry;
use crate::report::{Reporter, Source};
use crate::substituters::Substituters;
use attempt::Attempt;
use destination::still_missing;
pub(crate) use destination::{commit_trees, is_present, open_destination, reconcile};
pub use download_cache::DOWNLOAD_CACHE_DIR;
use download_cache::{download_key, prune_download_cache};
pub(crate) use pipeline::unpack_relocated;
pub(crate) use relocate_hook::scan_all;

/// The niceness of every worker but the one fetching the largest path (on
/// Linux a thread's own, inherited by the threads it starts). The largest
/// path is the critical one: its threads get a core whenever they can run, and
/// the other paths fill the moments they wait on each other, instead of
/// sharing the cores equally and leaving the largest path to finish alone on
/// a partly idle machine (2.45 s against 2.37 s for the benchmark closure on
/// 2 cores, all cores busy to the end). With more cores than runnable
/// threads, niceness changes nothing. Once raised it cannot be lowered again
/// without privileges, so such a worker stays nice for its later paths.
const YIELDING_NICE: i32 = 10;

pub struct FetchOptions<'a> {
    /// Where store paths go, as `<dest>/<hash>-<name>`.
    pub dest: PathBuf,
    /// Store dir -> prefix; the identity when not relocating.
    pub relocation: Relocation,
    /// Keeps compressed NARs between runs, keyed by their hash.
    pub cache_dir: Option<PathBuf>,
    /// Paths fetched at once.
    pub jobs: usize,
    /// Attempts per path for transient failures.
    pub attempts: u32,
    /// Remove download-cache entries this run did not use.
    pub prune_cache: bool,
    /// How long to wait for another writer of the destination or the download cache.
    pub lock_wait: Duration,
    pub reporter: &'a dyn Reporter,
}

#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub paths: usize,
    pub downloaded: usize,
    pub from_cache: usize,
    pub present: usize,
    /// Compressed bytes read from caches over the network or disk.
    pub downloaded_bytes: u64,
    /// Uncompressed NAR bytes unpacked.
    pub unpacked_bytes: u64,
    pub warnings: Vec<String>,
}

pub(crate) struct Done {
    pub base: String,
    /// The tree under its temporary name, until it is renamed into place
    /// (after the manifest lists it); `None` once it is there.
    pub tree: Option<nar::Pending>,
    pub entry: ManifestEntry,
    pub source: Source,
    pub read_bytes: u64,
    /// Compressed files the scanning thread did not take (it had stopped;
    /// relative to the path, numbered in unpacking order), to scan from disk
    /// once everything is in.
    pub compressed: Vec<(usize, Vec<u8>)>,
    /// What scanning compressed files found, with the same numbers.
    pub warnings: Vec<ScanNote>,
}

/// What scanning a compressed file found.
pub(crate) type Scanned = Result<Option<narwhal_relocate::Finding>, narwhal_relocate::ScanError>;
/// A compressed file's number in unpacking order, its path inside the store path, and what its scan found.
pub(crate) type ScanNote = (usize, Vec<u8>, Scanned);

/// Fetches every path of `closure` into `opts.dest`.
pub fn fetch(subs: &Substituters, closure: &[ClosurePath], opts: &FetchOptions<'_>) -> Result<Summary, Error> {
    let (mut manifest, _lock) = open_destination(opts, &subs.store_dir.to_string())?;

    let mut summary = Summary { paths: closure.len(), ..Summary::default() };
    let mut todo = still_missing(closure, &manifest, opts, &mut summary)?;
    // Largest first, so the longest path does not start last.
    todo.sort_by_key(|cp| std::cmp::Reverse(cp.info.nar_size));
    let planned: u64 = todo.iter().map(|cp| cp.info.file_size.unwrap_or(cp.info.nar_size)).sum();
    opts.reporter.planned(closure.len(), planned);

    let cache_dir = opts.cache_dir.as_ref().map(|d| d.join(DOWNLOAD_CACHE_DIR));
    let mut cache_lock = None;
    if let (Some(root), Some(d)) = (&opts.cache_dir, &cache_dir) {
        fs::create_dir_all(d).map_err(|source| Error::Io { what: "cannot create", path: d.clone(), source })?;
        // Other fetches may share the download cache: entries appear by rename, keyed by their hash.
        let warn = |m: &str| opts.reporter.waiting(m);
        cache_lock = Some(DirLock::shared(root, lock::LOCK_FILE, &[d], opts.lock_wait, "narwhal fetch", &warn)?);
    }

    let unpacked = AtomicU64::new(0);
    let ran = narwhal_store::parallel::run(&todo, opts.jobs, &AtomicBool::new(false), |i, cp| {
        if i > 0 {
            // Every worker but the one on the largest path yields (the threads it starts inherit
            // this). Best effort: if refused, the priority stays as it was.
            let _ = rustix::process::setpriority_process(None, YIELDING_NICE);
        }
        fetch_path(subs, cp, opts, cache_dir.as_deref(), &download_key(cp), &unpacked)
    });
    // The download-cache entries of every path that was started, fetched or not.
    let used_cache_keys: Vec<String> = ran.iter().map(|(i, _)| download_key(todo[*i])).collect();

    let mut first_error = None;
    let mut done_paths: Vec<Done> = Vec::new();
    for (_, r) in ran {
        match r {
            Ok(done) => done_paths.push(done),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    // What the scanning threads found goes into the manifest entries (and any
    // file they did not take is scanned now).
    scan_all(&mut done_paths, opts);
    let (done_paths, reconciled) = reconcile(done_paths, &opts.dest);
    if let Err(e) = reconciled {
        first_error.get_or_insert(e);
    }
    let mut trees = Vec::new();
    for mut done in done_paths {
        trees.extend(done.tree.take().map(|t| (t, opts.dest.join(&done.base))));
        match done.source {
            Source::Download => summary.downloaded += 1,
            Source::LocalCache => summary.from_cache += 1,
            Source::Present => summary.present += 1,
        }
        summary.downloaded_bytes += done.read_bytes;
        summary.warnings.extend(done.entry.warnings.iter().cloned());
        manifest.paths.insert(done.base, done.entry);
    }
    summary.unpacked_bytes = unpacked.into_inner();
    // Record what did arrive even when something failed, so a rerun skips it.
    commit_trees(&manifest, trees, opts)?;
    if let Some(e) = first_error {
        return Err(e);
    }
    if let (Some(dir), true, Some(lock)) = (&cache_dir, opts.prune_cache, cache_lock) {
        // Only when no other fetch is using the download cache.
        if lock.exclusive_now("narwhal fetch")?.is_some() {
            let keep = used_cache_keys;
            let present_keys: Vec<String> = closure.iter().map(download_key).collect();
            prune_download_cache(dir, &keep, &present_keys);
        } else {
            opts.reporter.warning(&format!("{} is in use by another fetch; not pruned this time", dir.display()));
        }
    }
    Ok(summary)
}

fn fetch_path(
    subs: &Substituters,
    cp: &ClosurePath,
    opts: &FetchOptions<'_>,
    cache_dir: Option<&Path>,
    key: &str,
    unpacked: &AtomicU64,
) -> Result<Done, Error> {
    let sub = &subs.list[cp.substituter];
    let path_str = subs.store_dir.display(&cp.info.path).to_string();
    if cp.info.nar_hash.algorithm() != Algorithm::Sha256 {
        return Err(Error::NotSha256 { path: path_str, hash: cp.info.nar_hash });
    }
    let compression: Compression =
        cp.info.compression().parse().map_err(|source| Error::Compression { path: path_str.clone(), source })?;
    let once = |source| {
        opts.reporter.started(&cp.info.path, source);
        let done = Attempt { subs, cp, opts, cache_dir, key, compression, source }.run(unpacked)?;
        opts.reporter.finished(&cp.info.path, source);
        Ok(done)
    };
    let mut cached = cache_dir.map(|d| d.join(key)).filter(|p| p.is_file());
    let retry = Retry { attempts: opts.attempts, initial_backoff: Duration::from_millis(500) };
    // A file:// cache's NAR reads the same bytes every time: a corrupt one is not worth retrying.
    let local = matches!(sub.url.location, narwhal_store::Location::File(_));
    retry.run(
        |e: &Error| e.is_transient() && !local,
        |next, e, delay| {
            let why = format!("{e} ({}); next try in {:.1} s", sub.url, delay.as_secs_f64());
            opts.reporter.retrying(&cp.info.path, next, &why);
        },
        |_| {
            if let Some(entry) = cached.take() {
                match once(Source::LocalCache) {
                    Ok(done) => return Ok(done),
                    Err(e) => {
                        // A damaged download-cache entry: forget it and download.
                        let _ = fs::remove_file(&entry);
                        let why = format!("local cache entry unusable ({e}); downloading");
                        opts.reporter.retrying(&cp.info.path, 1, &why);
                    }
                }
            }
            once(Source::Download)
        },
    )
}
