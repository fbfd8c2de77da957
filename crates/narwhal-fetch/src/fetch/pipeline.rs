//! The pipeline of one path's NAR on four threads ([`unpack_relocated`]).

use std::path::Path;

use narwhal_formats::hash::Hash;
use narwhal_formats::nar;
use narwhal_formats::pipe;
use narwhal_relocate::Relocation;

use super::relocate_hook::{scan_one, RelocateHook, ToScan, SCAN_QUEUE};
use super::verify::nar_hashes;
use super::ScanNote;

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
