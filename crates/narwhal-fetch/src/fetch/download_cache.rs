//! The download cache: compressed NARs kept between runs under
//! `<cache>/nar-v1/<FileHash>-<compression>`, shared by concurrent fetches
//! (entries appear by rename, content-addressed, and only once checked).

use std::fs::{self, File};
use std::path::Path;

use narwhal_formats::hash::Encoding;
use narwhal_formats::temp::NamedTempFile;

use crate::closure::ClosurePath;
use crate::report::Reporter;

/// Where the download cache keeps compressed NARs, versioned.
pub const DOWNLOAD_CACHE_DIR: &str = "nar-v1";

/// The download cache's name for a path's compressed NAR.
pub(super) fn download_key(cp: &ClosurePath) -> String {
    match &cp.info.file_hash {
        Some(h) => format!("{}-{}", h.encode(Encoding::Nix32), cp.info.compression()),
        None => format!("nar-{}-{}", cp.info.nar_hash.encode(Encoding::Nix32), cp.info.compression()),
    }
}

pub(super) fn prune_download_cache(dir: &Path, used: &[String], closure: &[String]) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !used.contains(&name) && !closure.contains(&name) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// A compressed file on its way into the download cache: under a temporary
/// name ([`narwhal_formats::temp`]) until [`DownloadCopy::keep`], removed if
/// dropped before.
pub(super) struct DownloadCopy(NamedTempFile);

impl DownloadCopy {
    /// A new copy in `dir` for `key`; `None` (with a warning: the download cache is an
    /// optimisation) when it cannot be created.
    pub(super) fn new(dir: &Path, key: &str, reporter: &dyn Reporter) -> Option<Self> {
        match narwhal_formats::temp::file_in(dir, key) {
            Ok(f) => Some(Self(f)),
            Err(e) => {
                reporter.warning(&format!("cannot write to the download cache {}: {e}", dir.display()));
                None
            }
        }
    }

    pub(super) fn file(&mut self) -> &mut File {
        self.0.as_file_mut()
    }

    /// Puts the copy under `key`, best effort.
    pub(super) fn keep(self, key: &str) {
        let name = self.0.path().with_file_name(key);
        let _ = self.0.persist(name);
    }
}
