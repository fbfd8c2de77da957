//! The relocation hook: contents and symlink targets rewritten while
//! unpacking ([`RelocateHook`]), and the scan of compressed files for store
//! paths the rewrite cannot reach, on the pipeline's fourth thread while
//! unpacking and from disk afterwards ([`scan_all`]), with its warnings.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use narwhal_formats::nar::{self, UnpackHook};
use narwhal_relocate::Relocation;

use super::{Done, FetchOptions, ScanNote};

/// A compressed file for the scanning thread: its number in unpacking order
/// and its path in the tree, with a copy of its contents as written, or where
/// it is on disk (a file larger than the unpacking buffer).
pub(super) enum ToScan {
    Copy { seq: usize, rel: Vec<u8>, data: Vec<u8> },
    Written { seq: usize, rel: Vec<u8>, now: PathBuf },
}

/// What scanning one file found, if anything; `dest` is the tree's final
/// name, which messages give.
pub(super) fn scan_one(
    scanner: &mut narwhal_relocate::BytesScanner<'_>,
    dest: &Path,
    item: ToScan,
) -> Option<ScanNote> {
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
pub(super) const SCAN_QUEUE: usize = 8;
const SCAN_BATCH_BYTES: usize = 128 * 1024;
const SCAN_BATCH_FILES: usize = 512;

/// Rewrites contents and symlink targets. When relocating, compressed files
/// go to the scanning thread for references the rewrite cannot reach: a copy
/// when they fit the buffer (most do), otherwise their place in the tree once written.
pub(super) struct RelocateHook<'r> {
    pub(super) reloc: &'r Relocation,
    /// Compressed files seen so far.
    pub(super) seen: usize,
    pub(super) compressed: Vec<(usize, Vec<u8>)>,
    /// To the scanning thread, in batches.
    pub(super) scans: Option<std::sync::mpsc::SyncSender<Vec<ToScan>>>,
    pub(super) batch: Vec<ToScan>,
    /// Bytes of copies in `batch`.
    pub(super) batch_bytes: usize,
    /// The number of the file being written, when it is compressed and too
    /// large to copy: it is scanned from disk once written.
    pub(super) from_disk: Option<usize>,
    pub(super) buf: Vec<u8>,
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
    pub(super) fn send_batch(&mut self) {
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
