//! The one walk over a directory tree on disk: depth first, parents before children, names in byte
//! order (the order a NAR lists them), never following a symlink, on an explicit stack bounded by
//! [`MAX_DEPTH`](crate::nar::MAX_DEPTH), so a deep tree is an error, never a stack overflow.

use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// How deep a walk goes: the depth a NAR may hold, so every walk sees what a NAR of the tree holds.
pub const MAX_DEPTH: usize = crate::nar::MAX_DEPTH;

#[derive(Debug, Error)]
pub enum WalkError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is nested deeper than {MAX_DEPTH} directories")]
    TooDeep { path: PathBuf },
}

/// One entry of a walk, with its metadata (of the entry itself, never of a symlink's target).
pub struct Entry {
    pub path: PathBuf,
    pub meta: Metadata,
    /// 0 for the root, 1 for its entries, and so on.
    pub depth: usize,
}

/// Yields `root` and everything below it, parents before children. An entry that cannot be read is
/// an error and the walk goes on; a directory that cannot be listed, or one too deep, ends it.
pub struct Walk {
    stack: Vec<(PathBuf, usize)>,
}

impl Walk {
    pub fn new(root: &Path) -> Self {
        Walk { stack: vec![(root.to_path_buf(), 0)] }
    }
}

impl Iterator for Walk {
    type Item = Result<Entry, WalkError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (path, depth) = self.stack.pop()?;
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(source) => return Some(Err(WalkError::Io { path, source })),
        };
        if meta.is_dir() {
            if depth >= MAX_DEPTH {
                self.stack.clear();
                return Some(Err(WalkError::TooDeep { path }));
            }
            match sorted_names(&path) {
                Ok(names) => self.stack.extend(names.into_iter().rev().map(|n| (path.join(n), depth + 1))),
                Err(source) => {
                    self.stack.clear();
                    return Some(Err(WalkError::Io { path, source }));
                }
            }
        }
        Some(Ok(Entry { path, meta, depth }))
    }
}

/// What an entry is, in the words every message of narwhal's uses.
pub fn kind(t: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if t.is_dir() {
        "directory"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_file() {
        "regular file"
    } else if t.is_fifo() {
        "named pipe"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() || t.is_char_device() {
        "device"
    } else {
        "special file"
    }
}

/// The names in `dir`, sorted bytewise.
pub fn sorted_names(dir: &Path) -> io::Result<Vec<OsString>> {
    let mut names = fs::read_dir(dir)?.map(|e| e.map(|e| e.file_name())).collect::<io::Result<Vec<_>>>()?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_parents_first_in_byte_order_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("b/c")).unwrap();
        fs::write(root.join("B"), "").unwrap();
        fs::write(root.join("b/c/f"), "").unwrap();
        std::os::unix::fs::symlink(root.join("b"), root.join("a")).unwrap();
        let seen: Vec<(String, usize)> = Walk::new(root)
            .map(|e| {
                let e = e.unwrap();
                (e.path.strip_prefix(root).unwrap().display().to_string(), e.depth)
            })
            .collect();
        let want = [("", 0), ("B", 1), ("a", 1), ("b", 1), ("b/c", 2), ("b/c/f", 3)];
        assert_eq!(seen, want.map(|(p, d)| (p.to_owned(), d)));
    }

    #[test]
    fn a_missing_root_is_one_error() {
        let mut w = Walk::new(Path::new("/nonexistent/narwhal-walk"));
        assert!(matches!(w.next(), Some(Err(WalkError::Io { .. }))));
        assert!(w.next().is_none(), "nothing follows a root that is not there");
    }
}
