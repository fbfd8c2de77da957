//! Fetching a resolved closure into a directory.
//!
//! Per path, one stream: cache (or the local download cache) -> FileHash and
//! byte count (and a copy into the download cache) -> decompression -> NarHash
//! and NarSize (and the hash of the relocated NAR) -> strict NAR parser ->
//! relocating unpack under a temporary name. Only when every hash and size
//! matches the narinfo is the tree renamed to `<dest>/<hash>-<name>` and the
//! download cache entry to its final name. Paths run in parallel; memory
//! stays at a few buffers per worker whatever the closure's size.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use narwhal_formats::hash::{Algorithm, Encoding, Hash, Hasher};
use narwhal_formats::nar::{self, UnpackHook};
use narwhal_formats::narinfo::Digests;
use narwhal_relocate::Relocation;
use narwhal_store::retry::Retry;
use narwhal_store::Compression;

use crate::closure::ClosurePath;
use crate::error::Error;
use crate::manifest::{Manifest, ManifestEntry};
use crate::pipe;
use crate::report::{Reporter, Source};
use crate::substituters::Substituters;
use narwhal_store::lock::{self, DirLock};

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

/// Where the download cache keeps compressed NARs, versioned.
pub const DOWNLOAD_CACHE_DIR: &str = "nar-v1";

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

/// Saves the manifest (which lists `trees` already), then renames the trees
/// into place: a tree is never under its final name without its entry, so a
/// fetch killed at any point leaves nothing a rerun could not trust. A listed
/// path whose tree is missing is fetched again.
pub(crate) fn commit_trees(
    manifest: &Manifest,
    trees: Vec<(nar::Pending, PathBuf)>,
    opts: &FetchOptions<'_>,
) -> Result<(), Error> {
    manifest.save(&opts.dest)?;
    let mut first_error = None;
    for (tree, dest) in trees {
        if let Err(source) = tree.commit_to(&dest) {
            first_error.get_or_insert(Error::Unpack {
                path: dest.display().to_string(),
                cache: "the destination".to_owned(),
                source,
            });
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Settles the paths whose final name is already taken by a tree the
/// manifest does not list (left by a version of narwhal that renamed trees
/// before recording them, or put there by hand): such a tree is kept, and
/// recorded, when its NAR hash is the one just computed for the path (the
/// relocated hash); otherwise that path fails as [`Error::Unmanaged`] and is
/// not recorded.
pub(crate) fn reconcile(done: Vec<Done>, dest: &Path) -> (Vec<Done>, Result<(), Error>) {
    let mut kept = Vec::with_capacity(done.len());
    let mut first_error = None;
    for mut d in done {
        let target = dest.join(&d.base);
        if fs::symlink_metadata(&target).is_err() {
            kept.push(d);
            continue;
        }
        match nar::dump_to_hash(&target, Algorithm::Sha256) {
            Ok((hash, _)) if hash.to_string() == d.entry.relocated_nar_hash => {
                // The same tree: keep the one in place.
                d.tree = None;
                kept.push(d);
            }
            _ => {
                first_error.get_or_insert(Error::Unmanaged(target));
            }
        }
    }
    (kept, first_error.map_or(Ok(()), Err))
}

/// Creates the destination, locks it for this fetch alone (removing what
/// killed fetches left there) and reads its manifest, which must be for the
/// same store directory and prefix.
pub(crate) fn open_destination(opts: &FetchOptions<'_>, store_dir: &str) -> Result<(Manifest, DirLock), Error> {
    check_destination(&opts.dest)?;
    fs::create_dir_all(&opts.dest).map_err(|source| Error::Io {
        what: "cannot create",
        path: opts.dest.clone(),
        source,
    })?;
    let meta = opts.dest.join(crate::manifest::META_DIR);
    match fs::create_dir(&meta) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            return Err(Error::Io { what: "cannot create", path: meta, source: e });
        }
        _ => {}
    }
    if !fs::symlink_metadata(&meta).is_ok_and(|m| m.is_dir()) {
        return Err(Error::NotADirectory(meta));
    }
    let warn = |m: &str| opts.reporter.waiting(m);
    let lock_file = format!("{}/lock", crate::manifest::META_DIR);
    let lock =
        DirLock::exclusive(&opts.dest, &lock_file, &[&opts.dest, &meta], opts.lock_wait, "narwhal fetch", &warn)?;
    let prefix = String::from_utf8_lossy(opts.relocation.to()).into_owned();
    let manifest = Manifest::load(&opts.dest)?.unwrap_or_else(|| Manifest {
        version: 1,
        store_dir: store_dir.to_owned(),
        prefix: prefix.clone(),
        paths: std::collections::BTreeMap::new(),
    });
    if manifest.prefix != prefix || manifest.store_dir != store_dir {
        return Err(Error::Conflict {
            path: opts.dest.clone(),
            what: "prefix",
            existing: format!("{} -> {}", manifest.store_dir, manifest.prefix),
            wanted: format!("{store_dir} -> {prefix}"),
        });
    }
    Ok((manifest, lock))
}

/// Directories a fetch must never write into: the system's own. A
/// destination is a directory of its own (`./store`, `APP_DIR/store`).
const SYSTEM_DIRS: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/media",
    "/mnt",
    "/nix",
    "/nix/store",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/usr/bin",
    "/usr/lib",
    "/usr/lib64",
    "/usr/libexec",
    "/usr/local",
    "/usr/local/bin",
    "/usr/local/lib",
    "/usr/sbin",
    "/usr/share",
    "/var",
    "/var/lib",
    "/var/tmp",
];

/// Refuses a destination that is (or resolves to) a system directory.
fn check_destination(dest: &Path) -> Result<(), Error> {
    let absolute = std::path::absolute(dest).map_err(|source| Error::Io {
        what: "cannot resolve",
        path: dest.to_owned(),
        source,
    })?;
    // Lexically first (`/usr/../etc`), then as the file system resolves it (`/bin` -> `/usr/bin`).
    let mut lexical = PathBuf::from("/");
    for c in absolute.components() {
        match c {
            std::path::Component::ParentDir => {
                lexical.pop();
            }
            std::path::Component::Normal(n) => lexical.push(n),
            _ => {}
        }
    }
    let resolved = fs::canonicalize(&lexical).ok();
    for candidate in std::iter::once(&lexical).chain(resolved.as_ref()) {
        if SYSTEM_DIRS.iter().any(|d| candidate == Path::new(d)) {
            return Err(Error::SystemDirectory(dest.to_owned()));
        }
    }
    Ok(())
}

/// The paths not yet in the destination; the others are checked against the
/// manifest (a path written from another NAR is an error). A tree the
/// manifest does not list is fetched again and compared (see [`reconcile`]).
fn still_missing<'c>(
    closure: &'c [ClosurePath],
    manifest: &Manifest,
    opts: &FetchOptions<'_>,
    summary: &mut Summary,
) -> Result<Vec<&'c ClosurePath>, Error> {
    let mut todo = Vec::new();
    for cp in closure {
        if is_present(&opts.dest, manifest, cp.info.path.base_name(), cp.info.nar_hash)? {
            summary.present += 1;
            opts.reporter.finished(&cp.info.path, Source::Present);
        } else {
            todo.push(cp);
        }
    }
    Ok(todo)
}

/// Whether `<dest>/<base>` is already there as narwhal wrote it from a NAR
/// with `nar_hash` (per the manifest); an error if the manifest lists it from
/// another NAR. `false` for a tree the manifest does not list: it is checked
/// once the path's NAR hash is known ([`reconcile`]).
pub(crate) fn is_present(dest: &Path, manifest: &Manifest, base: &str, nar_hash: Hash) -> Result<bool, Error> {
    let target = dest.join(base);
    if fs::symlink_metadata(&target).is_err() {
        return Ok(false);
    }
    match manifest.paths.get(base) {
        Some(e) if e.nar_hash == nar_hash.to_string() => Ok(true),
        Some(e) => Err(Error::Conflict {
            path: target,
            what: "NarHash",
            existing: e.nar_hash.clone(),
            wanted: nar_hash.to_string(),
        }),
        None => Ok(false),
    }
}

/// The download cache's name for a path's compressed NAR.
fn download_key(cp: &ClosurePath) -> String {
    match &cp.info.file_hash {
        Some(h) => format!("{}-{}", h.encode(Encoding::Nix32), cp.info.compression()),
        None => format!("nar-{}-{}", cp.info.nar_hash.encode(Encoding::Nix32), cp.info.compression()),
    }
}

fn prune_download_cache(dir: &Path, used: &[String], closure: &[String]) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !used.contains(&name) && !closure.contains(&name) {
            let _ = fs::remove_file(e.path());
        }
    }
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
        let done = fetch_once(subs, cp, opts, cache_dir, key, compression, source, unpacked)?;
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

// One linear pipeline, read top to bottom; splitting it would scatter its cleanup.
#[allow(clippy::too_many_arguments, clippy::too_many_lines)]
fn fetch_once(
    subs: &Substituters,
    cp: &ClosurePath,
    opts: &FetchOptions<'_>,
    cache_dir: Option<&Path>,
    key: &str,
    compression: Compression,
    source: Source,
    unpacked: &AtomicU64,
) -> Result<Done, Error> {
    let sub = &subs.list[cp.substituter];
    let info = &cp.info;
    let path_str = subs.store_dir.display(&info.path).to_string();
    let cache_name =
        if source == Source::LocalCache { "the local download cache".to_owned() } else { sub.url.to_string() };
    let download_err =
        |source: io::Error| Error::Download { path: path_str.clone(), cache: cache_name.clone(), source };

    let input: Box<dyn Read + Send> = match source {
        Source::LocalCache => {
            let p = cache_dir.map(|d| d.join(key)).unwrap_or_default();
            Box::new(File::open(&p).map_err(&download_err)?)
        }
        _ => sub.cache.open(&info.url)?,
    };
    // Copy into the download cache while reading, under a temporary name.
    let mut copy = None;
    if let (Some(dir), Source::Download) = (cache_dir, source) {
        let tmp = narwhal_formats::temp::beside(dir, key);
        match File::create(&tmp) {
            Ok(f) => copy = Some((tmp, f)),
            Err(e) => opts.reporter.warning(&format!("cannot write to the download cache {}: {e}", dir.display())),
        }
    }
    let mut tee = FileTee {
        inner: input,
        hasher: Hasher::new(Algorithm::Sha256),
        size: 0,
        copy: copy.as_mut().map(|(_, f)| io::BufWriter::with_capacity(256 * 1024, f)),
        reporter: opts.reporter,
    };
    let base = info.path.base_name();
    // A tree already there that the manifest does not list is unpacked beside
    // it only to be compared ([`reconcile`]), never renamed over it.
    let mut dest = opts.dest.join(base);
    if fs::symlink_metadata(&dest).is_ok() {
        dest = opts.dest.join(format!(".{base}.recheck"));
    }
    let reading = &mut tee;
    let run = unpack_relocated(&dest, &opts.relocation, move |feed| -> io::Result<()> {
        let mut decoder = compression.decoder(&mut *reading)?;
        feed.read_from(&mut decoder)?;
        drop(decoder);
        feed.finish()?;
        // The decompressor may stop before the end of the file: the FileHash covers all of it.
        io::copy(reading, &mut io::sink()).map(drop)
    });
    let result = match (run.tree, run.produced) {
        (Ok(pending), Ok(())) => Ok(pending),
        // A stream cut short shows as a truncated NAR; the cause is the download.
        (_, Err(e)) if !pipe::is_receiver_gone(&e) => Err(download_err(e)),
        (Err(source), _) => Err(Error::Unpack { path: path_str.clone(), cache: cache_name.clone(), source }),
        (Ok(_), Err(e)) => Err(download_err(e)),
    };
    let (nar_hash, nar_size, relocated) = (run.nar_hash, run.nar_size, run.relocated);
    let pending = match result {
        Ok(r) => r,
        Err(e) => {
            let e = file_hash_mismatch(&mut tee, info, &path_str, &cache_name).unwrap_or(e);
            drop(tee);
            if let Some((tmp, _)) = copy {
                let _ = fs::remove_file(tmp);
            }
            return Err(e);
        }
    };
    let file_size = tee.size;
    let flushed = tee.copy.take().map_or(Ok(()), |mut w| w.flush());
    let file_hash = tee.hasher.clone().finish();
    drop(tee);
    let cleanup = |copy: Option<(PathBuf, File)>| {
        if let Some((tmp, _)) = copy {
            let _ = fs::remove_file(tmp);
        }
    };
    let check = check_hashes(info, &path_str, &cache_name, file_hash, file_size, nar_hash, nar_size);
    if let Err(e) = check {
        cleanup(copy);
        return Err(e);
    }
    let relocated_hash = relocated;
    unpacked.fetch_add(nar_size, Ordering::Relaxed);
    if let Some((tmp, file)) = copy {
        drop(file);
        if flushed.is_ok() {
            let _ = fs::rename(&tmp, tmp.with_file_name(key));
        } else {
            let _ = fs::remove_file(tmp);
        }
    }

    Ok(Done {
        base: info.path.base_name().to_owned(),
        tree: Some(pending),
        entry: ManifestEntry {
            nar_hash: nar_hash.to_string(),
            nar_size,
            relocated_nar_hash: relocated_hash.to_string(),
            references: info.references().iter().map(ToString::to_string).collect(),
            warnings: Vec::new(),
        },
        source,
        read_bytes: file_size,
        compressed: run.compressed,
        warnings: run.warnings,
    })
}

/// What [`unpack_relocated`] produced.
pub(crate) struct OnePath<T> {
    /// The tree under its temporary name.
    pub tree: Result<nar::Pending, nar::UnpackError>,
    /// What the producer returned.
    pub produced: T,
    pub nar_hash: Hash,
    pub nar_size: u64,
    /// The hash of the NAR as relocated (its NarHash when nothing was rewritten).
    pub relocated: Hash,
    /// Compressed files left to scan from disk, and what the scans done while unpacking found.
    pub compressed: Vec<(usize, Vec<u8>)>,
    pub warnings: Vec<ScanNote>,
}

/// One path's NAR on four threads: `produce` (on its own thread) writes the
/// NAR's bytes into the feed, cut into shared 1 MiB chunks; this thread
/// parses them and writes files under a temporary name beside `dest`,
/// relocating; another computes NarHash, NarSize and the relocated NAR's
/// hash; a fourth scans the compressed files written for references the
/// rewrite cannot reach (copies of their bytes, at most [`SCAN_QUEUE`]
/// waiting; files larger than the unpacking buffer read back from the tree).
/// So the largest path of a closure does not run on one core alone, and no
/// byte of the NAR is copied between them. The feed is closed when `produce` returns.
pub(crate) fn unpack_relocated<T: Send>(
    dest: &Path,
    reloc: &Relocation,
    produce: impl FnOnce(&mut pipe::Feed) -> T + Send,
) -> OnePath<T> {
    let (scan_tx, scan_rx) = std::sync::mpsc::sync_channel::<Vec<ToScan>>(SCAN_QUEUE);
    let mut hook = RelocateHook {
        reloc,
        seen: 0,
        compressed: Vec::new(),
        scans: Some(scan_tx),
        batch: Vec::new(),
        batch_bytes: 0,
        from_disk: None,
        buf: vec![0; 256 * 1024],
    };
    let (tree, produced, (nar_hash, nar_size, relocated), warnings) = std::thread::scope(|scope| {
        let (mut feed, mut chunks) = pipe::channel(2);
        let (to_hash, to_unpack) = (chunks.remove(0), chunks.remove(0));
        let hashing = scope.spawn(move || nar_hashes(to_hash, reloc));
        let producing = scope.spawn(move || {
            let r = produce(&mut feed);
            drop(feed);
            r
        });
        let scanning = scope.spawn(move || {
            let mut scanner = narwhal_relocate::BytesScanner::new(reloc.from().as_bytes())
                .expect("a store directory is a valid needle");
            let mut found = Vec::new();
            // Files to read back from the tree wait until no copy does: the
            // unpacking thread waits whenever the copies' queue is full.
            let mut later = std::collections::VecDeque::new();
            loop {
                let batch = match scan_rx.try_recv() {
                    Ok(batch) => batch,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
                    Err(std::sync::mpsc::TryRecvError::Empty) => {
                        if let Some(item) = later.pop_front() {
                            found.extend(scan_one(&mut scanner, dest, item));
                            continue;
                        }
                        match scan_rx.recv() {
                            Ok(batch) => batch,
                            Err(_) => break,
                        }
                    }
                };
                for item in batch {
                    match item {
                        ToScan::Written { .. } => later.push_back(item),
                        ToScan::Copy { .. } => found.extend(scan_one(&mut scanner, dest, item)),
                    }
                }
            }
            found.extend(later.into_iter().filter_map(|item| scan_one(&mut scanner, dest, item)));
            found
        });
        let unpacked = nar::unpack_pending(&mut to_unpack.reader(), dest, &mut hook);
        hook.send_batch();
        drop(hook.scans.take());
        let produced = producing.join().expect("the producing thread does not panic");
        let hashes = hashing.join().expect("the hashing thread does not panic");
        let warnings = scanning.join().expect("the scanning thread does not panic");
        (unpacked, produced, hashes, warnings)
    });
    OnePath { tree, produced, nar_hash, nar_size, relocated, compressed: hook.compressed, warnings }
}

/// A compressed file for the scanning thread: its number in unpacking order
/// and its path in the tree, with a copy of its contents as written, or where
/// it is on disk (a file larger than the unpacking buffer).
enum ToScan {
    Copy { seq: usize, rel: Vec<u8>, data: Vec<u8> },
    Written { seq: usize, rel: Vec<u8>, now: PathBuf },
}

/// What scanning one file found, if anything; `dest` is the tree's final
/// name, which messages give.
fn scan_one(scanner: &mut narwhal_relocate::BytesScanner<'_>, dest: &Path, item: ToScan) -> Option<ScanNote> {
    let (seq, rel, scanned) = match item {
        ToScan::Copy { seq, rel, data } => {
            let scanned = scanner.scan(&dest.join(OsStr::from_bytes(&rel)), &data);
            (seq, rel, scanned)
        }
        ToScan::Written { seq, rel, now } => {
            let scanned = scanner.scan_file(&now, &dest.join(OsStr::from_bytes(&rel)));
            (seq, rel, scanned)
        }
    };
    (!matches!(scanned, Ok(None))).then_some((seq, rel, scanned))
}

/// Batches of compressed files waiting for the scanning thread, at most.
/// Files go in batches of [`SCAN_BATCH_BYTES`] (plus one file of at most the
/// 256 KiB unpacking buffer) or [`SCAN_BATCH_FILES`], so the unpacking thread
/// hands over a few hundred man pages at once rather than waking the scanning
/// thread for each, and does not wait while it works on a large one.
const SCAN_QUEUE: usize = 8;
const SCAN_BATCH_BYTES: usize = 128 * 1024;
const SCAN_BATCH_FILES: usize = 512;

/// Hashes and counts the compressed bytes, copies them into the download cache, reports progress.
struct FileTee<'a, 'f> {
    inner: Box<dyn Read + Send>,
    hasher: Hasher,
    size: u64,
    copy: Option<io::BufWriter<&'f mut File>>,
    reporter: &'a dyn Reporter,
}

impl Read for FileTee<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        if let Some(w) = &mut self.copy {
            if w.write_all(&buf[..n]).is_err() {
                // The download cache is an optimisation: stop copying, keep going.
                self.copy = None;
            }
        }
        self.reporter.progress(n as u64);
        Ok(n)
    }
}

/// NarHash, NarSize, and the hash of the NAR as relocated.
///
/// Until the old store directory first occurs, the relocated NAR is the NAR
/// itself, so only one hash runs; at the chunk where an occurrence may start,
/// the relocated hash forks from a copy of the NAR hash's state and follows
/// the rewritten bytes from there. A path without the store directory in it
/// (documentation, data) is hashed once, and its relocated hash is its NarHash.
fn nar_hashes(chunks: pipe::Chunks, reloc: &Relocation) -> (Hash, u64, Hash) {
    let needle = reloc.from().as_bytes();
    let finder = memchr::memmem::Finder::new(needle);
    let mut hasher = Hasher::new(Algorithm::Sha256);
    let mut relocated: Option<narwhal_relocate::RewritingWriter<Hasher>> = None;
    let mut size = 0;
    // The previous chunk (kept, not copied) and the hash state before it, for
    // an occurrence that straddles two chunks.
    let mut previous: Option<pipe::Chunk> = None;
    let mut before_previous = hasher.clone();
    chunks.for_each(|chunk| {
        if relocated.is_none() && !reloc.is_identity() {
            let prev: &[u8] = previous.as_deref().unwrap_or_default();
            let mut seam = prev[prev.len().saturating_sub(needle.len() - 1)..].to_vec();
            seam.extend_from_slice(&chunk[..chunk.len().min(needle.len() - 1)]);
            if finder.find(&seam).is_some() {
                let mut w = reloc.writer(before_previous.clone());
                let _ = w.write_all(prev);
                relocated = Some(w);
            } else if finder.find(&chunk).is_some() {
                relocated = Some(reloc.writer(hasher.clone()));
            }
        }
        size += chunk.len() as u64;
        if let Some(w) = &mut relocated {
            // Writing into a hasher cannot fail.
            let _ = w.write_all(&chunk);
            hasher.update(&chunk);
            previous = None;
        } else {
            before_previous = hasher.clone();
            hasher.update(&chunk);
            previous = Some(chunk);
        }
    });
    let nar_hash = hasher.finish();
    let relocated = relocated.and_then(|w| w.finish().ok()).map_or(nar_hash, |(h, _)| h.finish());
    (nar_hash, size, relocated)
}

/// Rewrites contents and symlink targets. When relocating, compressed files
/// go to the scanning thread for references the rewrite cannot reach: a copy
/// when they fit the buffer (most do), otherwise their place in the tree once written.
struct RelocateHook<'r> {
    reloc: &'r Relocation,
    /// Compressed files seen so far.
    seen: usize,
    compressed: Vec<(usize, Vec<u8>)>,
    /// To the scanning thread, in batches.
    scans: Option<std::sync::mpsc::SyncSender<Vec<ToScan>>>,
    batch: Vec<ToScan>,
    /// Bytes of copies in `batch`.
    batch_bytes: usize,
    /// The number of the file being written, when it is compressed and too
    /// large to copy: it is scanned from disk once written.
    from_disk: Option<usize>,
    buf: Vec<u8>,
}

impl RelocateHook<'_> {
    /// Adds a file to the batch for the scanning thread.
    fn queue_scan(&mut self, item: ToScan) {
        if let ToScan::Copy { data, .. } = &item {
            self.batch_bytes += data.len();
        }
        self.batch.push(item);
        if self.batch_bytes >= SCAN_BATCH_BYTES || self.batch.len() >= SCAN_BATCH_FILES {
            self.send_batch();
        }
    }

    /// Hands the batch to the scanning thread; if it is gone, its files are
    /// scanned from disk once the tree is in place.
    fn send_batch(&mut self) {
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        if batch.is_empty() {
            return;
        }
        let unsent = match &self.scans {
            Some(tx) => tx.send(batch).err().map(|std::sync::mpsc::SendError(batch)| batch),
            None => Some(batch),
        };
        if let Some(batch) = unsent {
            self.scans = None;
            self.compressed.extend(batch.into_iter().map(|item| match item {
                ToScan::Copy { seq, rel, .. } | ToScan::Written { seq, rel, .. } => (seq, rel),
            }));
        }
    }
}

impl UnpackHook for RelocateHook<'_> {
    fn contents(&mut self, path: &[u8], contents: &mut dyn Read, out: &mut dyn Write) -> io::Result<()> {
        // Most files fit the buffer: read whole, rewrite in place, write once.
        let (filled, eof) = fill(contents, &mut self.buf)?;
        let relocating = !self.reloc.is_identity();
        let head = &self.buf[..filled.min(narwhal_relocate::scan::SNIFF_LEN)];
        let compressed = relocating && narwhal_relocate::sniff(head).is_some();
        if eof {
            if relocating {
                self.reloc.rewrite_in_place(&mut self.buf[..filled]);
            }
            out.write_all(&self.buf[..filled])?;
            if compressed {
                // The bytes just written, as they are on disk; if the scanner is gone, from disk later.
                let copy = ToScan::Copy { seq: self.seen, rel: path.to_vec(), data: self.buf[..filled].to_vec() };
                self.queue_scan(copy);
                self.seen += 1;
            }
            return Ok(());
        }
        if compressed {
            self.from_disk = Some(self.seen);
            self.seen += 1;
        }
        // Larger ones stream, through the rewriting writer when relocating.
        if relocating {
            let mut w = self.reloc.writer(out);
            w.write_all(&self.buf[..filled])?;
            nar::copy_through(contents, &mut w, &mut self.buf)?;
            w.finish().map(|_| ())
        } else {
            out.write_all(&self.buf[..filled])?;
            nar::copy_through(contents, out, &mut self.buf)
        }
    }

    fn written(&mut self, path: &[u8], root: &Path) {
        let Some(seq) = self.from_disk.take() else { return };
        let now = root.join(OsStr::from_bytes(path));
        self.queue_scan(ToScan::Written { seq, rel: path.to_vec(), now });
    }

    fn symlink_target<'t>(&mut self, _path: &[u8], target: &'t [u8]) -> Cow<'t, [u8]> {
        if self.reloc.is_identity() {
            Cow::Borrowed(target)
        } else {
            Cow::Owned(self.reloc.rewrite_target(target))
        }
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read and whether it ended.
fn fill(from: &mut dyn Read, buf: &mut [u8]) -> io::Result<(usize, bool)> {
    let mut filled = 0;
    while filled < buf.len() {
        match from.read(&mut buf[filled..]) {
            Ok(0) => return Ok((filled, true)),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((filled, false))
}

/// Scans the compressed files no scanning thread took, from disk, shared out
/// to `opts.jobs` threads; then puts every path's warnings into its manifest
/// entry, in file order.
pub(crate) fn scan_all(done: &mut [Done], opts: &FetchOptions<'_>) {
    let files: Vec<(usize, usize)> =
        done.iter().enumerate().flat_map(|(d, p)| (0..p.compressed.len()).map(move |f| (d, f))).collect();
    let done_ref = &*done;
    let scanned = narwhal_store::parallel::try_map(&files, opts.jobs, |&(d, f)| {
        let p = &done_ref[d];
        let (seq, rel) = &p.compressed[f];
        let root = p.tree.as_ref().map_or_else(|| opts.dest.join(&p.base), |t| t.path().to_owned());
        let file = root.join(OsStr::from_bytes(rel));
        let scanned = narwhal_relocate::scan_compressed(&file, opts.relocation.from().as_bytes());
        Ok::<_, std::convert::Infallible>((!matches!(scanned, Ok(None))).then(|| (d, (*seq, rel.clone(), scanned))))
    });
    for (d, note) in scanned.into_iter().flatten().flatten() {
        done[d].warnings.push(note);
    }
    for p in done {
        p.warnings.sort_by_key(|w| w.0);
        for (_, rel, scanned) in p.warnings.drain(..) {
            if let Some(w) = warning(&p.base, &rel, &opts.relocation, scanned) {
                opts.reporter.warning(&w);
                p.entry.warnings.push(w);
            }
        }
    }
}

/// The warning for a scanned file `rel` of the store path `base`, if any.
fn warning(
    base: &str,
    rel: &[u8],
    relocation: &Relocation,
    scanned: Result<Option<narwhal_relocate::Finding>, narwhal_relocate::ScanError>,
) -> Option<String> {
    let shown = String::from_utf8_lossy(rel);
    match scanned {
        Ok(Some(f)) => Some(format!(
            "{base}/{shown}{} holds {} inside its {} data, which relocation cannot rewrite",
            f.member.map(|m| format!(" (entry {m})")).unwrap_or_default(),
            relocation.from(),
            f.format
        )),
        Ok(None) => None,
        Err(e) => Some(format!("could not scan {base}/{shown}: {e}")),
    }
}

/// After a NAR failed to decompress or parse: when the whole compressed file arrived (FileSize
/// bytes) but is not the one its narinfo's FileHash names, that is the error to report (the bytes
/// are not the ones signed: a verification failure, not worth retrying), rather than the decoder's
/// complaint about them. A file that ends short (a truncated download) or cannot be read further
/// keeps the original error, which is retried.
fn file_hash_mismatch(
    tee: &mut FileTee<'_, '_>,
    info: &narwhal_formats::narinfo::NarInfo,
    path: &str,
    cache: &str,
) -> Option<Error> {
    let (expected, size) = (info.file_hash?, info.file_size?);
    tee.copy = None;
    let rest = size.checked_sub(tee.size)?;
    // One byte more than promised, to tell a longer file from a complete one.
    io::copy(&mut (&mut *tee).take(rest.saturating_add(1)), &mut io::sink()).ok()?;
    let actual = tee.hasher.clone().finish();
    (tee.size == size && actual != expected).then(|| Error::HashMismatch {
        path: path.to_owned(),
        cache: cache.to_owned(),
        what: "FileHash",
        expected: expected.to_string(),
        actual: actual.to_string(),
    })
}

/// Compares what was read with what the (signed) narinfo promised.
fn check_hashes(
    info: &narwhal_formats::narinfo::NarInfo,
    path: &str,
    cache: &str,
    file_hash: narwhal_formats::hash::Hash,
    file_size: u64,
    nar_hash: narwhal_formats::hash::Hash,
    nar_size: u64,
) -> Result<(), Error> {
    let read = Digests { nar_hash, nar_size, file_hash: Some(file_hash), file_size: Some(file_size) };
    read.check(info).map_err(|m| Error::HashMismatch {
        path: path.to_owned(),
        cache: cache.to_owned(),
        what: m.field,
        expected: m.expected,
        actual: m.actual,
    })
}
