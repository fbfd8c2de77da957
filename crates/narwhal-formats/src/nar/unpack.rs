//! Restoring a NAR into a directory, safely.
//!
//! The archive is unpacked under a temporary name beside the destination and
//! renamed into place only once it parsed completely; on any error the
//! temporary tree is removed, so the destination either holds the whole
//! archive or does not exist. Every entry is created fresh (`O_EXCL`,
//! `mkdir`, `symlink`) from names the parser validated, inside directories
//! this call created, so nothing is followed through a symlink and nothing
//! lands outside the destination.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use thiserror::Error;

use super::read::{parse_to_end, Error, Visitor};

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum UnpackError {
    #[error("{0} already exists; narwhal does not overwrite (remove it or pick another destination)")]
    Exists(PathBuf),
    #[error("destination {0} has no parent directory or file name")]
    BadDestination(PathBuf),
    #[error(transparent)]
    Nar(#[from] Error),
    #[error("cannot move the unpacked tree into place at {path}")]
    Rename {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temporary sibling of `dest`, unique within this machine at this moment.
pub(crate) fn temp_sibling(dest: &Path) -> Option<PathBuf> {
    let parent = dest.parent()?;
    let name = dest.file_name()?;
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".tmp-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    Some(parent.join(tmp))
}

/// Unpacks the NAR read from `r` (which must end with it) to `dest`, which
/// must not exist. Returns the NAR's size.
pub fn unpack(r: &mut impl Read, dest: &Path) -> Result<u64, UnpackError> {
    if fs::symlink_metadata(dest).is_ok() {
        return Err(UnpackError::Exists(dest.to_owned()));
    }
    let tmp = temp_sibling(dest).ok_or_else(|| UnpackError::BadDestination(dest.to_owned()))?;
    let mut v = Unpacker { root: tmp.clone(), buf: vec![0; 256 * 1024], created_root: false };
    let result = parse_to_end(r, &mut v);
    let result = result.map_err(UnpackError::from).and_then(|size| {
        if fs::symlink_metadata(dest).is_ok() {
            return Err(UnpackError::Exists(dest.to_owned()));
        }
        fs::rename(&tmp, dest).map_err(|source| UnpackError::Rename { path: dest.to_owned(), source })?;
        Ok(size)
    });
    if result.is_err() && v.created_root {
        remove_any(&tmp);
    }
    result
}

/// Removes a file, symlink or directory tree, best effort.
pub(crate) fn remove_any(path: &Path) {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            let _ = fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = fs::remove_file(path);
        }
        Err(_) => {}
    }
}

struct Unpacker {
    root: PathBuf,
    buf: Vec<u8>,
    created_root: bool,
}

fn context(path: &Path, e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

impl Unpacker {
    fn full(&mut self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.created_root = true;
            self.root.clone()
        } else {
            self.root.join(OsStr::from_bytes(rel))
        }
    }
}

impl Visitor for Unpacker {
    fn regular(
        &mut self,
        path: &[u8],
        executable: bool,
        _size: u64,
        _offset: u64,
        contents: &mut dyn Read,
    ) -> io::Result<()> {
        let full = self.full(path);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if executable { 0o755 } else { 0o644 })
            .open(&full)
            .map_err(|e| context(&full, &e))?;
        loop {
            let n = match contents.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            file.write_all(&self.buf[..n]).map_err(|e| context(&full, &e))?;
        }
        Ok(())
    }

    fn symlink(&mut self, path: &[u8], target: &[u8]) -> io::Result<()> {
        let full = self.full(path);
        std::os::unix::fs::symlink(OsStr::from_bytes(target), &full).map_err(|e| context(&full, &e))
    }

    fn enter_directory(&mut self, path: &[u8]) -> io::Result<()> {
        let full = self.full(path);
        fs::create_dir(&full).map_err(|e| context(&full, &e))
    }
}
