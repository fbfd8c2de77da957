//! Verification: the compressed file's FileHash and FileSize measured as it
//! is read ([`FileTee`], a `Tee`), the NAR's NarHash, NarSize and relocated hash on
//! their own thread ([`nar_hashes`]), and the one check against the signed
//! narinfo ([`check_hashes`], through `Digests::check`).

use std::fs::File;
use std::io::{self, Read, Write};

use narwhal_formats::hash::{Algorithm, Hash, Hasher, HashingWriter};
use narwhal_formats::narinfo::Digests;
use narwhal_formats::pipe;
use narwhal_formats::tee::Tee;
use narwhal_relocate::Relocation;

use crate::error::Error;
use crate::report::Reporter;

/// The compressed bytes as they are read: hashed and counted (FileHash, FileSize), copied into
/// the download cache, reported as progress.
pub(super) type FileTee<'a, 'f> = Tee<Box<dyn Read + Send>, HashingWriter<FileCopy<'a, 'f>>>;

pub(super) fn file_tee<'a, 'f>(
    inner: Box<dyn Read + Send>,
    copy: Option<&'f mut File>,
    reporter: &'a dyn Reporter,
) -> FileTee<'a, 'f> {
    let copy = copy.map(|f| io::BufWriter::with_capacity(256 * 1024, f));
    Tee::new(inner, HashingWriter::new(Algorithm::Sha256, FileCopy { copy, reporter }))
}

/// FileHash and FileSize of what was read, and whether the copy holds all of it (no writer left
/// means a write to it failed).
pub(super) fn finish(tee: FileTee<'_, '_>) -> (Hash, u64, bool) {
    let (hash, size, out) = tee.into_out().finish();
    (hash, size, out.copy.is_some_and(|mut w| w.flush().is_ok()))
}

/// The download cache's copy and the progress report, beside the decoder.
pub(super) struct FileCopy<'a, 'f> {
    copy: Option<io::BufWriter<&'f mut File>>,
    reporter: &'a dyn Reporter,
}

impl Write for FileCopy<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(w) = &mut self.copy {
            if w.write_all(buf).is_err() {
                // The download cache is an optimisation: stop copying, keep going.
                self.copy = None;
            }
        }
        self.reporter.progress(buf.len() as u64);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// NarHash, NarSize, and the hash of the NAR as relocated.
///
/// Until the old store directory first occurs, the relocated NAR is the NAR
/// itself, so only one hash runs; at the chunk where an occurrence may start,
/// the relocated hash forks from a copy of the NAR hash's state and follows
/// the rewritten bytes from there. A path without the store directory in it
/// (documentation, data) is hashed once, and its relocated hash is its NarHash.
pub(super) fn nar_hashes(chunks: pipe::Chunks, reloc: &Relocation) -> (Hash, u64, Hash) {
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

/// After a NAR failed to decompress or parse: when the whole compressed file arrived (FileSize
/// bytes) but is not the one its narinfo's FileHash names, that is the error to report (the bytes
/// are not the ones signed: a verification failure, not worth retrying), rather than the decoder's
/// complaint about them. A file that ends short (a truncated download) or cannot be read further
/// keeps the original error, which is retried.
pub(super) fn file_hash_mismatch(
    tee: &mut FileTee<'_, '_>,
    info: &narwhal_formats::narinfo::NarInfo,
    path: &str,
    cache: &str,
) -> Option<Error> {
    let (expected, size) = (info.file_hash?, info.file_size?);
    tee.out_mut().get_mut().copy = None;
    let rest = size.checked_sub(tee.out().written())?;
    // One byte more than promised, to tell a longer file from a complete one.
    io::copy(&mut (&mut *tee).take(rest.saturating_add(1)), &mut io::sink()).ok()?;
    let actual = tee.out().hash();
    (tee.out().written() == size && actual != expected).then(|| Error::HashMismatch {
        path: path.to_owned(),
        cache: cache.to_owned(),
        what: "FileHash",
        expected: expected.to_string(),
        actual: actual.to_string(),
    })
}

/// Compares what was read with what the (signed) narinfo promised.
pub(super) fn check_hashes(
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
