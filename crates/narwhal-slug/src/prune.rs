//! Removing what a `.slugexclude` excludes from a slug's store.
//!
//! [`prune`] behaves like the old buildpack's `rsync -a --exclude-from=.slugexclude`
//! copy, done in place: it walks `<slug>/store` (the directory itself first),
//! asks the [`Rules`] about every entry by its path relative to the slug
//! (`store/<hash>-<name>/...`), removes each excluded entry with everything
//! below it, and descends only into directories that were kept. Nothing else
//! in the slug is looked at. The walk uses no recursion and stops at
//! [`MAX_DEPTH`] directories.
//!
//! Symlinks are never followed: a symlink is judged as a non-directory (even
//! when it points to one) and removing it removes the link only. Store trees
//! are usually read-only; to remove an entry the parent directory is made
//! owner-writable for the moment and then given its mode back, and
//! directories being removed are made owner-writable first.

use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::filter::Rules;
use crate::layout::Layout;
use crate::tree::{apparent_len, sorted_names, Walk, WalkError, MAX_DEPTH};

/// The store directory's name inside a slug.
pub const STORE_DIR_NAME: &str = "store";

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot remove {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot change the permissions of {path}")]
    Permissions {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is nested more than {MAX_DEPTH} directories deep")]
    TooDeep { path: PathBuf },
}

/// One removed entry (a directory counts once, with everything below it).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Removed {
    /// Relative to the directory given to [`prune`]: `store/<hash>-<name>/...`.
    pub path: PathBuf,
    pub is_dir: bool,
    /// Apparent bytes removed: file lengths plus symlink target lengths.
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PruneReport {
    /// Sorted component by component, which is walk order.
    pub removed: Vec<Removed>,
    /// The sum of [`Removed::bytes`]. Apparent size, not disk blocks: a file
    /// with other hard links frees nothing on disk but still counts.
    pub bytes_freed: u64,
}

/// Removes from `slug_store_parent/store` everything `rules` exclude and
/// reports what went. `slug_store_parent` is the directory holding `store/`,
/// which is the root the rules' paths are relative to. If `store` itself is
/// excluded, it goes entirely.
pub fn prune(slug_store_parent: &Path, rules: &Rules) -> Result<PruneReport, Error> {
    prune_layout(slug_store_parent, Layout::Slug, rules)
}

/// [`prune()`] for a store laid out as `layout` in `app_dir`. In a [`Layout::Flat`] store the
/// rules see each store path as `store/<hash>-<name>`, and `store` itself is never removed
/// (it is the app directory).
pub fn prune_layout(app_dir: &Path, layout: Layout, rules: &Rules) -> Result<PruneReport, Error> {
    let mut report = PruneReport::default();
    if layout == Layout::Slug {
        let store = app_dir.join(STORE_DIR_NAME);
        let meta = fs::symlink_metadata(&store).map_err(|source| Error::Read { path: store.clone(), source })?;
        let rel = PathBuf::from(STORE_DIR_NAME);
        if rules.is_excluded(rel.as_os_str().as_bytes(), meta.is_dir()) {
            let bytes = with_writable_dir(app_dir, || remove_tree(&store, &meta))?;
            report.push(rel, meta.is_dir(), bytes);
        } else if meta.is_dir() {
            prune_dir(&store, &rel, rules, &mut report)?;
        }
    } else {
        let entries = layout.entries(app_dir).map_err(|source| Error::Read { path: app_dir.to_path_buf(), source })?;
        for entry in entries {
            let meta =
                fs::symlink_metadata(&entry.path).map_err(|source| Error::Read { path: entry.path.clone(), source })?;
            if rules.is_excluded(entry.rel.as_os_str().as_bytes(), meta.is_dir()) {
                let bytes = with_writable_dir(app_dir, || remove_tree(&entry.path, &meta))?;
                report.push(entry.rel, meta.is_dir(), bytes);
            } else if meta.is_dir() {
                prune_dir(&entry.path, &entry.rel, rules, &mut report)?;
            }
        }
    }
    // Component-wise order is walk order: a directory's contents right after it.
    report.removed.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(report)
}

impl PruneReport {
    fn push(&mut self, path: PathBuf, is_dir: bool, bytes: u64) {
        self.bytes_freed += bytes;
        self.removed.push(Removed { path, is_dir, bytes });
    }
}

/// Walks the kept directories below `store` (relative path `rel`) without
/// recursion, removing what the rules exclude.
fn prune_dir(store: &Path, rel: &Path, rules: &Rules, report: &mut PruneReport) -> Result<(), Error> {
    let mut pending = vec![(store.to_path_buf(), rel.to_path_buf(), 1)];
    while let Some((dir, rel, depth)) = pending.pop() {
        if depth > MAX_DEPTH {
            return Err(Error::TooDeep { path: dir });
        }
        let names = sorted_names(&dir).map_err(|source| Error::Read { path: dir.clone(), source })?;
        let mut doomed: Vec<(OsString, Metadata)> = Vec::new();
        for name in names {
            let path = dir.join(&name);
            let meta = fs::symlink_metadata(&path).map_err(|source| Error::Read { path: path.clone(), source })?;
            if rules.is_excluded(rel.join(&name).as_os_str().as_bytes(), meta.is_dir()) {
                doomed.push((name, meta));
            } else if meta.is_dir() {
                pending.push((path, rel.join(&name), depth + 1));
            }
        }
        if !doomed.is_empty() {
            with_writable_dir(&dir, || {
                for (name, meta) in &doomed {
                    let bytes = remove_tree(&dir.join(name), meta)?;
                    report.push(rel.join(name), meta.is_dir(), bytes);
                }
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// Runs `f`, which removes entries of `dir`, with `dir` writable and searchable
/// by its owner, then puts the mode back.
fn with_writable_dir<T>(dir: &Path, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    let perm_err = |source| Error::Permissions { path: dir.to_path_buf(), source };
    let mode = fs::metadata(dir).map_err(perm_err)?.permissions().mode();
    let needs_change = mode & 0o300 != 0o300;
    if needs_change {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o700)).map_err(perm_err)?;
    }
    let result = f();
    if needs_change {
        let restored = fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(perm_err);
        if result.is_ok() {
            restored?;
        }
    }
    result
}

/// Removes `path` (described by `meta`, never followed) and everything below
/// it; returns the apparent bytes removed.
fn remove_tree(path: &Path, meta: &Metadata) -> Result<u64, Error> {
    if !meta.is_dir() {
        fs::remove_file(path).map_err(|source| Error::Remove { path: path.to_path_buf(), source })?;
        return Ok(apparent_len(meta));
    }
    // Parents before children; deleting in reverse removes children first.
    let entries = Walk::new(path).collect::<Result<Vec<_>, _>>().map_err(|e| match e {
        WalkError::Io { path, source } => Error::Read { path, source },
        WalkError::TooDeep { path } => Error::TooDeep { path },
    })?;
    for entry in &entries {
        let mode = entry.meta.permissions().mode();
        if entry.meta.is_dir() && mode & 0o700 != 0o700 {
            fs::set_permissions(&entry.path, fs::Permissions::from_mode(mode | 0o700))
                .map_err(|source| Error::Permissions { path: entry.path.clone(), source })?;
        }
    }
    let mut bytes = 0;
    for entry in entries.iter().rev() {
        let removed = if entry.meta.is_dir() { fs::remove_dir(&entry.path) } else { fs::remove_file(&entry.path) };
        removed.map_err(|source| Error::Remove { path: entry.path.clone(), source })?;
        bytes += apparent_len(&entry.meta);
    }
    Ok(bytes)
}
