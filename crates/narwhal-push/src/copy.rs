//! Pushing closures from another cache (`narwhal push --from URL`): the closure is walked through
//! the source's narinfos, each missing NAR is copied as it is (its compressed file checked against
//! FileHash and FileSize, its NAR against NarHash and NarSize on the way) or recompressed when the
//! destination asks for another compression, and narinfos are committed references first, keeping
//! the source's signatures and adding the push key's.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::str::FromStr as _;

use narwhal_formats::narinfo::{Digests, Mismatch, NarInfo};
use narwhal_formats::store_path::{StoreDir, StorePath};
use narwhal_store::keys;
use narwhal_store::nar_check::{self, MeasureError};
use narwhal_store::{BinaryCache, CacheWriter, Compression};

use crate::commit::{self, GcGuard};
use crate::error::Error;
use crate::push::{compress_with, missing_paths, run_workers, summarize, temp_nar, Commits, PushOptions, PushSummary};

/// The closure of `roots` in `source`, references first, from its narinfos (fetched `jobs` at a time).
pub fn closure_in_cache(
    source: &dyn BinaryCache,
    store_dir: &StoreDir,
    roots: &[StorePath],
    jobs: usize,
) -> Result<Vec<NarInfo>, Error> {
    narwhal_store::closure::walk(roots, jobs, |p| read_narinfo(source, store_dir, p), NarInfo::references)
}

fn read_narinfo(source: &dyn BinaryCache, store_dir: &StoreDir, path: &StorePath) -> Result<NarInfo, Error> {
    let key = keys::narinfo(path);
    let full = store_dir.display(path).to_string();
    let Some(bytes) = source.get(&key)? else {
        return Err(Error::NotInSource { path: full, cache: source.url().to_owned() });
    };
    let info = NarInfo::parse(&String::from_utf8_lossy(&bytes), store_dir)
        .map_err(|e| Error::SourceNarInfo { key: format!("{}/{key}", source.url()), source: e })?;
    if info.path != *path {
        return Err(Error::SourceMismatch { key: format!("{}/{key}", source.url()), path: full });
    }
    Ok(info)
}

/// Copies `closure` (references first, as [`closure_in_cache`] returns it) from `source` into `dest`.
/// With `keep_compression`, every NAR keeps the source's compression; otherwise NARs compressed
/// differently from `opts.compression` are recompressed.
pub fn push_from_cache(
    source: &dyn BinaryCache,
    closure: &[NarInfo],
    dest: &dyn CacheWriter,
    opts: &PushOptions<'_>,
    keep_compression: bool,
) -> Result<PushSummary, Error> {
    let Some(store_dir) = closure.first().map(|i| i.store_dir.clone()) else {
        return Ok(PushSummary::default());
    };
    commit::ensure_cache_info(dest, &store_dir)?;
    commit::restart_when_gc_moves(|| copy_once(source, closure, dest, opts, keep_compression))
}

fn copy_once(
    source: &dyn BinaryCache,
    closure: &[NarInfo],
    dest: &dyn CacheWriter,
    opts: &PushOptions<'_>,
    keep_compression: bool,
) -> Result<PushSummary, Error> {
    let gc = GcGuard::open(dest, opts.gc_wait)?;
    let paths: Vec<StorePath> = closure.iter().map(|i| i.path.clone()).collect();
    let mut todo: BTreeSet<StorePath> = missing_paths(&paths, dest, opts.jobs.max(8))?.into_iter().collect();
    todo.extend(paths.into_iter().filter(|p| gc.path_is_candidate(p.hash_part())));
    opts.reporter.planned(closure.len(), todo.len());
    let work: Vec<&NarInfo> = closure.iter().filter(|i| todo.contains(&i.path)).collect();
    let commits = Commits::default();
    let results = run_workers(&work, opts.jobs, &commits, |info| {
        copy_one(source, info, dest, opts, keep_compression, &todo, &commits, &gc)
    });
    summarize(closure.len(), work.len(), results)
}

#[allow(clippy::too_many_arguments)]
fn copy_one(
    source: &dyn BinaryCache,
    info: &NarInfo,
    dest: &dyn CacheWriter,
    opts: &PushOptions<'_>,
    keep_compression: bool,
    pending: &BTreeSet<StorePath>,
    commits: &Commits,
    gc: &GcGuard,
) -> Result<(u64, u64), Error> {
    let full = info.store_dir.display(&info.path).to_string();
    let from = Compression::from_str(info.compression())
        .map_err(|e| Error::SourceCompression { path: full.clone(), source: e })?;
    let tmp = temp_nar(opts, &format!("narwhal-copy-{}", info.path.hash_part()))?;
    let read_err = |source| Error::SourceRead { path: full.clone(), source };
    let mismatch = |m: Mismatch| Error::SourceHash {
        path: full.clone(),
        cache: source.url().to_owned(),
        what: m.field,
        expected: m.expected,
        actual: m.actual,
    };
    let as_is = keep_compression || from.to_string() == opts.compression.name();
    let (nar_hash, nar_size, file_hash, file_size, url, compression) = if as_is {
        // One pass: the compressed bytes go to the file (hashed) and through the decoder (hashed).
        let temp_err = |source| Error::Temp { path: tmp.to_path_buf(), source };
        let mut file = BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(temp_err)?);
        let measured = match nar_check::measure(source, &info.url, info, true, &mut file) {
            Ok(m) => m,
            Err(MeasureError::Store(e)) => return Err(e.into()),
            Err(MeasureError::Read { source, .. }) => return Err(read_err(source)),
            Err(MeasureError::Compression(e)) => return Err(Error::SourceCompression { path: full, source: e }),
            Err(e) => return Err(read_err(io::Error::other(e))),
        };
        file.flush().map_err(temp_err)?;
        measured.check_file(info).map_err(&mismatch)?;
        if let Some(e) = measured.not_decoded {
            return Err(read_err(e));
        }
        let m = measured;
        (m.nar_hash, m.nar_size, m.file_hash, m.file_size, info.url.clone(), info.compression().to_owned())
    } else {
        let mut reader = source.open(&info.url)?;
        let mut decoder = from.decoder(&mut reader).map_err(read_err)?;
        let (nar_hash, nar_size, file_hash, file_size) =
            compress_with(&tmp, opts, &full, Some(info.nar_size), &mut |w| {
                io::copy(&mut decoder, w).map(drop).map_err(|source| Error::SourceRead { path: full.clone(), source })
            })?;
        let url = keys::nar(&file_hash, opts.compression.extension());
        (nar_hash, nar_size, file_hash, file_size, url, opts.compression.name().to_owned())
    };
    Digests { nar_hash, nar_size, file_hash: None, file_size: None }.check(info).map_err(&mismatch)?;
    commit::store_nar(dest, &url, &tmp, gc)?;
    drop(tmp);

    let mut narinfo = NarInfo::new(info.store_dir.clone(), info.path.clone(), url, nar_hash, nar_size);
    narinfo.compression = Some(compression);
    narinfo.file_hash = Some(file_hash);
    narinfo.file_size = Some(file_size);
    narinfo.references.clone_from(&info.references);
    narinfo.deriver.clone_from(&info.deriver);
    narinfo.system.clone_from(&info.system);
    narinfo.sigs.clone_from(&info.sigs);
    narinfo.ca.clone_from(&info.ca);
    commits.publish(dest, narinfo, opts, pending, gc)
}
