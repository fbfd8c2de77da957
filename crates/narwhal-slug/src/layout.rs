//! Where a deploy keeps its store paths inside the app directory.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use narwhal_formats::nixbase32;

use crate::prune::STORE_DIR_NAME;
use crate::tree::sorted_names;

/// The two places a store can live in an app directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `<app>/store/<hash>-<name>`: a Heroku slug, the store at `/app/store`.
    Slug,
    /// `<app>/<hash>-<name>` beside the app's own files: a Cloud Native Buildpack's app directory,
    /// the store at `/workspace` itself. Only top-level names shaped like store paths
    /// ([`is_store_path_name`]) are the store's; the app's own files are never pruned, checked
    /// or counted. `.slugexclude` rules see them as `store/<hash>-<name>`, as in a slug, so one
    /// file serves both.
    Flat,
}

/// One top-level entry of the store: its host path, and its path as `.slugexclude` rules see it
/// (`store/<hash>-<name>`).
pub(crate) struct TopEntry {
    pub name: OsString,
    pub path: PathBuf,
    pub rel: PathBuf,
}

impl Layout {
    /// The directory holding the store's entries.
    pub fn store_dir(self, app_dir: &Path) -> PathBuf {
        match self {
            Self::Slug => app_dir.join(STORE_DIR_NAME),
            Self::Flat => app_dir.to_path_buf(),
        }
    }

    /// The store's top-level entries, in byte order of names.
    pub(crate) fn entries(self, app_dir: &Path) -> io::Result<Vec<TopEntry>> {
        let dir = self.store_dir(app_dir);
        let names = sorted_names(&dir)?;
        Ok(names
            .into_iter()
            .filter(|n| self == Self::Slug || is_store_path_name(n.as_bytes()))
            .map(|name| TopEntry { path: dir.join(&name), rel: Path::new(STORE_DIR_NAME).join(&name), name })
            .collect())
    }
}

/// Whether `name` is `<32 characters of Nix's base-32>-<name>`, as a store path's base name is.
pub fn is_store_path_name(name: &[u8]) -> bool {
    name.len() > 33
        && name.get(32) == Some(&b'-')
        && name.get(..32).is_some_and(|h| h.iter().all(|b| nixbase32::ALPHABET.contains(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_path_names() {
        assert!(is_store_path_name(b"0c0sgkxs0dsm2wn6kr3cs6f4sasq3b1p-hello-2.12"));
        assert!(!is_store_path_name(b"0c0sgkxs0dsm2wn6kr3cs6f4sasq3b1p-"));
        assert!(!is_store_path_name(b"result"));
        assert!(!is_store_path_name(b"Procfile-with-a-name-that-is-long-enough"));
        assert!(!is_store_path_name("ééééééééééééééééééééééééééééééééé-x".as_bytes()));
    }
}
