//! One attempt at one path ([`Attempt::run`]): its compressed file from a
//! cache (or the download cache), through the pipeline into a temporary tree,
//! then the checks. What it leaves on any error path goes as it drops: the
//! temporary tree ([`nar::Pending`]) and the download cache's copy
//! ([`DownloadCopy`]), which is kept only once every check passed.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use narwhal_formats::nar;
use narwhal_formats::pipe;
use narwhal_store::Compression;

use super::download_cache::DownloadCopy;
use super::pipeline::{unpack_relocated, OnePath};
use super::verify::{self, check_hashes, file_hash_mismatch};
use super::{Done, FetchOptions};
use crate::closure::ClosurePath;
use crate::error::Error;
use crate::manifest::ManifestEntry;
use crate::report::Source;
use crate::substituters::Substituters;

/// One path, from one source, once.
pub(super) struct Attempt<'a, 'r> {
    pub subs: &'a Substituters,
    pub cp: &'a ClosurePath,
    pub opts: &'a FetchOptions<'r>,
    /// The download cache's directory, if there is one.
    pub cache_dir: Option<&'a Path>,
    /// The path's name in the download cache.
    pub key: &'a str,
    pub compression: Compression,
    pub source: Source,
}

impl Attempt<'_, '_> {
    /// The store path, for messages.
    fn path_name(&self) -> String {
        self.subs.store_dir.display(&self.cp.info.path).to_string()
    }

    /// Where the bytes come from, for messages.
    fn cache_name(&self) -> String {
        if self.source == Source::LocalCache {
            "the local download cache".to_owned()
        } else {
            self.subs.list[self.cp.substituter].url.to_string()
        }
    }

    fn download_err(&self, source: io::Error) -> Error {
        Error::Download { path: self.path_name(), cache: self.cache_name(), source }
    }

    /// The compressed file.
    fn open(&self) -> Result<Box<dyn Read + Send>, Error> {
        match self.source {
            Source::LocalCache => {
                let p = self.cache_dir.map(|d| d.join(self.key)).unwrap_or_default();
                Ok(Box::new(File::open(&p).map_err(|e| self.download_err(e))?))
            }
            _ => Ok(self.subs.list[self.cp.substituter].cache.open(&self.cp.info.url)?),
        }
    }

    /// Where the tree is unpacked: its final name, or, for a tree already there that the
    /// manifest does not list, beside it, only to be compared ([`super::reconcile`]), never
    /// renamed over it.
    fn unpack_dest(&self) -> PathBuf {
        let base = self.cp.info.path.base_name();
        let dest = self.opts.dest.join(base);
        if fs::symlink_metadata(&dest).is_ok() {
            self.opts.dest.join(format!(".{base}.recheck"))
        } else {
            dest
        }
    }

    /// The tree, or why there is none.
    fn outcome(
        &self,
        tree: Result<nar::Pending, nar::UnpackError>,
        produced: io::Result<()>,
    ) -> Result<nar::Pending, Error> {
        match (tree, produced) {
            (Ok(pending), Ok(())) => Ok(pending),
            // A stream cut short shows as a truncated NAR; the cause is the download.
            (_, Err(e)) if !pipe::is_receiver_gone(&e) => Err(self.download_err(e)),
            (Err(source), _) => Err(Error::Unpack { path: self.path_name(), cache: self.cache_name(), source }),
            (Ok(_), Err(e)) => Err(self.download_err(e)),
        }
    }

    /// Fetches the path into a temporary tree and checks it; `unpacked` counts NAR bytes.
    pub(super) fn run(&self, unpacked: &AtomicU64) -> Result<Done, Error> {
        let info = &self.cp.info;
        let input = self.open()?;
        // Copied into the download cache while reading, under a temporary name.
        let mut copy = match (self.cache_dir, self.source) {
            (Some(dir), Source::Download) => DownloadCopy::new(dir, self.key, self.opts.reporter),
            _ => None,
        };
        let mut tee = verify::file_tee(input, copy.as_mut().map(DownloadCopy::file), self.opts.reporter);
        let reading = &mut tee;
        let compression = self.compression;
        let run: OnePath<io::Result<()>> =
            unpack_relocated(&self.unpack_dest(), &self.opts.relocation, move |feed| -> io::Result<()> {
                let mut decoder = compression.decoder(&mut *reading)?;
                feed.read_from(&mut decoder)?;
                drop(decoder);
                feed.finish()?;
                // The decompressor may stop before the end of the file: the FileHash covers all of it.
                io::copy(reading, &mut io::sink()).map(drop)
            });
        let (path, cache) = (self.path_name(), self.cache_name());
        let pending = match self.outcome(run.tree, run.produced) {
            Ok(pending) => pending,
            Err(e) => return Err(file_hash_mismatch(&mut tee, info, &path, &cache).unwrap_or(e)),
        };
        let (file_hash, file_size, copied) = verify::finish(tee);
        check_hashes(info, &path, &cache, file_hash, file_size, run.nar_hash, run.nar_size)?;
        unpacked.fetch_add(run.nar_size, Ordering::Relaxed);
        // Verified: the download cache's copy goes in under its name (unless writing it failed).
        if let (Some(copy), true) = (copy, copied) {
            copy.keep(self.key);
        }
        Ok(Done {
            base: info.path.base_name().to_owned(),
            tree: Some(pending),
            entry: ManifestEntry {
                nar_hash: run.nar_hash.to_string(),
                nar_size: run.nar_size,
                relocated_nar_hash: run.relocated.to_string(),
                references: info.references().iter().map(ToString::to_string).collect(),
                warnings: Vec::new(),
            },
            source: self.source,
            read_bytes: file_size,
            compressed: run.compressed,
            warnings: run.warnings,
        })
    }
}
