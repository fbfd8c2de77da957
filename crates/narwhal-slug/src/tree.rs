//! A depth-first walk that never follows symlinks, in byte order of names.

use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

/// The depth a NAR may hold (see there for why), so a slug walks what was deployed into it.
pub const MAX_DEPTH: usize = narwhal_formats::nar::MAX_DEPTH;

#[derive(Debug)]
pub(crate) enum WalkError {
    Io { path: PathBuf, source: io::Error },
    TooDeep { path: PathBuf },
}

pub(crate) struct Entry {
    pub path: PathBuf,
    pub meta: Metadata,
}

/// Yields `root` and everything below it, parents before children.
pub(crate) struct Walk {
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
        Some(Ok(Entry { path, meta }))
    }
}

/// The names in `dir`, sorted bytewise.
pub(crate) fn sorted_names(dir: &Path) -> io::Result<Vec<OsString>> {
    let mut names = fs::read_dir(dir)?.map(|e| e.map(|e| e.file_name())).collect::<io::Result<Vec<_>>>()?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// Bytes an entry contributes to a slug's apparent size: a file its length, a
/// symlink the length of its target, anything else nothing.
pub(crate) fn apparent_len(meta: &Metadata) -> u64 {
    if meta.is_file() || meta.is_symlink() {
        meta.len()
    } else {
        0
    }
}
