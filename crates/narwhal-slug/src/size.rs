//! How big a slug's store is, per store path.
//!
//! Sizes are apparent sizes: the sum of regular files' lengths plus the length
//! of each symlink's target; directories count nothing. They are neither disk
//! usage (blocks, hard links counted once) nor the compressed size Heroku
//! limits. Compressing to find out would cost as much as building the slug,
//! so this module does not estimate the compressed size. What it offers
//! instead is cheap and sound: [`SizeReport::tar_gz_upper_bound`], a size
//! the store's part of a gzipped tarball cannot exceed, so a bound under
//! [`HEROKU_SLUG_LIMIT`] proves the store fits, while a bound over it proves
//! nothing.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use crate::layout::Layout;
use crate::prune::STORE_DIR_NAME;
use crate::tree::{apparent_len, Walk};

/// Heroku's limit on a compressed slug: "1GB" as Heroku writes it (raised from 500MB in 2026), taken
/// as 10^9 bytes, the stricter reading, in the decimal units narwhal prints everything in.
pub const HEROKU_SLUG_LIMIT: u64 = 1_000_000_000;

/// A tar block.
const BLOCK: u64 = 512;
/// Per entry, in the bound: its header, plus a header for a GNU long name and
/// one for a long link target or a pax extended header.
const TAR_HEADERS_PER_ENTRY: u64 = 3 * BLOCK;
/// Slack for a prefix the archiver puts before slug-relative names (`./app/`).
const TAR_NAME_PREFIX: u64 = 64;
/// A tarball ends with two zero blocks and is padded to 20-block records.
const TAR_END: u64 = 2 * BLOCK;
const TAR_RECORD: u64 = 20 * BLOCK;
/// gzip's header and trailer, generously.
const GZIP_WRAPPER: u64 = 32;

/// What measuring can fail on: reading the tree (walking it is the only thing it does).
pub use narwhal_formats::tree::WalkError as Error;

/// One top-level entry of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StorePathSize {
    /// The entry's name in `store/`, normally `<hash>-<name>`.
    pub name: OsString,
    /// Apparent bytes of the entry and everything below it.
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SizeReport {
    /// Largest first; equal sizes by name.
    pub paths: Vec<StorePathSize>,
    /// Sum of all apparent bytes: the uncompressed size, not what Heroku limits.
    pub total: u64,
    /// Bytes a tar of the store takes at most, before compression.
    tar_bytes: u64,
}

/// Measures every top-level entry of `slug_dir/store`, never following symlinks.
pub fn size_report(slug_dir: &Path) -> Result<SizeReport, Error> {
    size_report_layout(slug_dir, Layout::Slug)
}

/// [`size_report`] of a store laid out as `layout` in `slug_dir`: its store paths only, never the
/// app's own files.
pub fn size_report_layout(slug_dir: &Path, layout: Layout) -> Result<SizeReport, Error> {
    let store = layout.store_dir(slug_dir);
    let entries = layout.entries(slug_dir).map_err(|source| Error::Io { path: store.clone(), source })?;
    let mut report =
        SizeReport { tar_bytes: tar_entry_bytes(STORE_DIR_NAME.len() as u64, 0, 0), ..SizeReport::default() };
    for crate::layout::TopEntry { name, path, .. } in entries {
        let mut bytes = 0;
        for entry in Walk::new(&path) {
            let entry = entry?;
            let len = apparent_len(&entry.meta);
            bytes += len;
            let name_len = entry.path.strip_prefix(slug_dir).map_or(0, |p| p.as_os_str().as_bytes().len()) as u64;
            let (data, link) = if entry.meta.is_symlink() { (0, len) } else { (len, 0) };
            report.tar_bytes += tar_entry_bytes(name_len, data, link);
        }
        report.total += bytes;
        // narwhal's `.narwhal` manifest directory counts in the total but is not a store path.
        if !name.as_bytes().starts_with(b".") {
            report.paths.push(StorePathSize { name, bytes });
        }
    }
    report.paths.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.as_bytes().cmp(b.name.as_bytes())));
    Ok(report)
}

/// What one entry can take in a tar: headers, long name and link target
/// records, and the data padded to whole blocks.
fn tar_entry_bytes(name_len: u64, data: u64, link_len: u64) -> u64 {
    TAR_HEADERS_PER_ENTRY
        + (name_len + TAR_NAME_PREFIX + 1).next_multiple_of(BLOCK)
        + (link_len + 1).next_multiple_of(BLOCK)
        + data.next_multiple_of(BLOCK)
}

impl SizeReport {
    /// A size the store's part of a `tar | gzip` slug cannot exceed: the tar
    /// framing (a header block per entry plus long-name, long-link or pax
    /// blocks, data padded to 512 bytes, end blocks, 10 KiB records) plus
    /// deflate's worst-case expansion at zlib's and gzip's default settings
    /// (stored blocks when nothing compresses). It is far above the real
    /// compressed size for ordinary store contents, which this crate does
    /// not estimate; the app outside `store/` is not counted.
    pub fn tar_gz_upper_bound(&self) -> u64 {
        let tar = (self.tar_bytes + TAR_END).next_multiple_of(TAR_RECORD);
        // zlib's deflateBound() for the default window and memory level.
        tar + (tar >> 12) + (tar >> 14) + (tar >> 25) + 7 + GZIP_WRAPPER
    }

    /// Whether [`Self::tar_gz_upper_bound`] is within [`HEROKU_SLUG_LIMIT`],
    /// that is, whether the store provably fits. `false` means "not proved",
    /// not "too big": compression usually shrinks store paths severalfold.
    pub fn provably_within_heroku_limit(&self) -> bool {
        self.tar_gz_upper_bound() <= HEROKU_SLUG_LIMIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_bound_grows_with_content_and_names() {
        assert_eq!(tar_entry_bytes(10, 0, 0), 3 * 512 + 512 + 512);
        assert_eq!(tar_entry_bytes(10, 1, 0), 3 * 512 + 512 + 512 + 512);
        assert_eq!(tar_entry_bytes(500, 0, 600), 3 * 512 + 1024 + 1024);
        let empty = SizeReport::default();
        assert_eq!(empty.tar_gz_upper_bound(), 10240 + 2 + 7 + GZIP_WRAPPER);
        assert!(empty.provably_within_heroku_limit());
        let big = SizeReport { tar_bytes: HEROKU_SLUG_LIMIT, ..SizeReport::default() };
        assert!(!big.provably_within_heroku_limit());
    }
}
