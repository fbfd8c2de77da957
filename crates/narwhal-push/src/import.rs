//! `nix-store --export` streams into a cache, and the local store out as one.

use std::collections::BTreeSet;
use std::io::{Read, Write};

use narwhal_formats::export::{CheckOnly, ExportReader, ExportWriter};
use narwhal_formats::nar;
use narwhal_formats::narinfo::NarInfo;
use narwhal_formats::store_path::{StoreDir, StorePath};
use narwhal_store::keys;
use narwhal_store::CacheWriter;

use crate::commit::{self, GcGuard};
use crate::error::Error;
use crate::local::{LocalStore, PathInfo};
use crate::push::{compress_with, temp_nar, PushOptions, PushSummary};

/// Writes the closure (references first) as a `nix-store --export` stream.
pub fn export(local: &LocalStore, closure: &[PathInfo], out: &mut dyn Write) -> Result<(), Error> {
    let mut w = ExportWriter::new(out, local.store_dir().clone());
    for info in closure {
        let full = local.store_dir().display(&info.path).to_string();
        let real = local.real_path(&info.path);
        w.add(&info.path, &info.references, info.deriver.as_ref(), |out| {
            nar::dump(&real, out).map(drop).map_err(std::io::Error::other)
        })
        .map_err(|source| Error::Export { path: full, source })?;
    }
    w.finish().map_err(|source| Error::Export { path: "the end of the stream".to_owned(), source })?;
    Ok(())
}

/// Puts every path of an export stream into `dest`: NAR, then narinfo once
/// the narinfos of its references are in the cache (from earlier in the
/// stream or from before). Paths the cache has are skipped.
pub fn import(
    input: &mut dyn Read,
    store_dir: &StoreDir,
    dest: &dyn CacheWriter,
    opts: &PushOptions<'_>,
) -> Result<PushSummary, Error> {
    commit::ensure_cache_info(dest, store_dir)?;
    // A stream cannot start over: a GC that moves on during the import fails it (run it again).
    let gc = GcGuard::open(dest, opts.gc_wait)?;
    let mut reader = ExportReader::new(input, store_dir.clone());
    let mut summary = PushSummary::default();
    let mut committed: BTreeSet<StorePath> = BTreeSet::new();
    let mut waiting: Vec<NarInfo> = Vec::new();
    let mut index = 0usize;
    loop {
        let tmp = temp_nar(opts, &format!("narwhal-import-{index}"))?;
        index += 1;
        let mut exported = None;
        let compressed = compress_with(&tmp, opts, "the export stream", None, &mut |w| {
            exported = reader.next_path_copying(&mut CheckOnly, w).map_err(Error::Import)?;
            Ok(())
        })?;
        let Some(path) = exported else { break };
        summary.paths += 1;
        let (nar_hash, nar_size, file_hash, file_size) = compressed;
        let key = keys::narinfo(&path.path);
        if !gc.path_is_candidate(path.path.hash_part()) && dest.exists(&key)? {
            summary.already_there += 1;
            committed.insert(path.path.clone());
            continue;
        }
        let url = keys::nar(&file_hash, opts.compression.extension());
        commit::store_nar(dest, &url, &tmp, &gc)?;
        drop(tmp);
        let mut info = NarInfo::new(store_dir.clone(), path.path.clone(), url, nar_hash, nar_size);
        info.compression = Some(opts.compression.name().to_owned());
        info.file_hash = Some(file_hash);
        info.file_size = Some(file_size);
        let mut refs = path.references.clone();
        refs.sort();
        refs.dedup();
        info.references = Some(refs);
        info.deriver.clone_from(&path.deriver);
        commit::sign(&mut info, &opts.keys)?;
        summary.uploaded += 1;
        summary.nar_bytes += nar_size;
        summary.file_bytes += file_size;
        waiting.push(info);
        commit_ready(dest, &mut waiting, &mut committed, &gc)?;
    }
    commit_ready(dest, &mut waiting, &mut committed, &gc)?;
    if let Some(stuck) = waiting.first() {
        let missing = stuck
            .references()
            .iter()
            .find(|r| **r != stuck.path && !committed.contains(*r))
            .map(|r| store_dir.display(r).to_string())
            .unwrap_or_default();
        return Err(Error::IncompleteExport { path: store_dir.display(&stuck.path).to_string(), missing });
    }
    Ok(summary)
}

/// Writes every waiting narinfo whose references are all committed (or in the cache already).
fn commit_ready(
    dest: &dyn CacheWriter,
    waiting: &mut Vec<NarInfo>,
    committed: &mut BTreeSet<StorePath>,
    gc: &GcGuard,
) -> Result<(), Error> {
    loop {
        let mut progressed = false;
        let mut i = 0;
        while i < waiting.len() {
            let info = &waiting[i];
            let mut ready = true;
            for r in info.references() {
                if *r == info.path || committed.contains(r) {
                    continue;
                }
                if dest.exists(&keys::narinfo(r))? {
                    committed.insert(r.clone());
                } else {
                    ready = false;
                    break;
                }
            }
            if ready {
                let info = waiting.remove(i);
                gc.check(dest)?;
                commit::commit(dest, &info)?;
                committed.insert(info.path);
                progressed = true;
            } else {
                i += 1;
            }
        }
        if !progressed {
            return Ok(());
        }
    }
}
