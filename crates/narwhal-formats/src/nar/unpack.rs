//! Restoring a NAR into a directory, safely.
//!
//! The archive is unpacked under a temporary name beside the destination and
//! renamed into place only once it parsed completely; on any error the
//! temporary tree is removed, so the destination either holds the whole
//! archive or does not exist. Every entry is created fresh (`O_EXCL`,
//! `mkdir`, `symlink`) from names the parser validated, inside directories
//! this call created, so nothing is followed through a symlink and nothing
//! lands outside the destination.

use std::borrow::Cow;
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
    let pending = unpack_pending(r, dest, &mut Verbatim)?;
    let size = pending.nar_size();
    pending.commit()?;
    Ok(size)
}

/// Changes what is written while unpacking (narwhal relocates store paths
/// this way). Names and structure are never changed.
pub trait UnpackHook {
    /// Copies a regular file's contents to `out`; by default verbatim.
    fn contents(&mut self, path: &[u8], contents: &mut dyn Read, out: &mut dyn Write) -> io::Result<()> {
        let _ = path;
        // On the stack: a heap buffer per file would cost an allocation for every file unpacked.
        #[allow(clippy::large_stack_arrays)]
        let mut buf = [0u8; 64 * 1024];
        copy_through(contents, out, &mut buf)
    }

    /// Called once a regular file's contents are written and the file is
    /// closed; `full` is where it is now, under the temporary name.
    fn written(&mut self, path: &[u8], full: &Path) {
        let _ = (path, full);
    }

    /// The target to give a symlink; by default `target` itself.
    fn symlink_target<'t>(&mut self, path: &[u8], target: &'t [u8]) -> Cow<'t, [u8]> {
        let _ = path;
        Cow::Borrowed(target)
    }
}

/// The hook that changes nothing.
pub struct Verbatim;

impl UnpackHook for Verbatim {}

/// Copies everything from `from` to `to` through `buf` (a file's contents,
/// in an [`UnpackHook`]), so a hook can reuse one buffer for every file.
pub fn copy_through<W: Write + ?Sized>(from: &mut dyn Read, to: &mut W, buf: &mut [u8]) -> io::Result<()> {
    loop {
        match from.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => to.write_all(&buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// An unpacked tree under its temporary name, waiting for [`Pending::commit`].
/// Dropping it removes the tree.
#[derive(Debug)]
pub struct Pending {
    tmp: PathBuf,
    dest: PathBuf,
    nar_size: u64,
    done: bool,
}

impl Pending {
    /// Where the tree is now.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    pub fn nar_size(&self) -> u64 {
        self.nar_size
    }

    /// Renames the tree to its destination, which must still not exist.
    pub fn commit(self) -> Result<(), UnpackError> {
        let dest = self.dest.clone();
        self.commit_to(&dest)
    }

    /// Renames the tree to `dest` instead, for a tree whose name was learnt
    /// only after its NAR (as in an export, where the store path follows the
    /// NAR). `dest` must not exist and must be on the same file system.
    pub fn commit_to(mut self, dest: &Path) -> Result<(), UnpackError> {
        if fs::symlink_metadata(dest).is_ok() {
            return Err(UnpackError::Exists(dest.to_owned()));
        }
        fs::rename(&self.tmp, dest).map_err(|source| UnpackError::Rename { path: dest.to_owned(), source })?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            remove_any(&self.tmp);
        }
    }
}

/// Unpacks under a temporary name beside `dest`, passing contents and
/// targets through `hook`; the caller checks what it must and then commits.
pub fn unpack_pending(r: &mut impl Read, dest: &Path, hook: &mut dyn UnpackHook) -> Result<Pending, UnpackError> {
    if fs::symlink_metadata(dest).is_ok() {
        return Err(UnpackError::Exists(dest.to_owned()));
    }
    let tmp = temp_sibling(dest).ok_or_else(|| UnpackError::BadDestination(dest.to_owned()))?;
    let mut v = Unpacker { root: tmp.clone(), hook, created_root: false };
    match parse_to_end(r, &mut v) {
        Ok(nar_size) => Ok(Pending { tmp, dest: dest.to_owned(), nar_size, done: false }),
        Err(e) => {
            if v.created_root {
                remove_any(&tmp);
            }
            Err(e.into())
        }
    }
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

struct Unpacker<'h> {
    root: PathBuf,
    hook: &'h mut dyn UnpackHook,
    created_root: bool,
}

fn context(path: &Path, e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

impl Unpacker<'_> {
    fn full(&mut self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.created_root = true;
            self.root.clone()
        } else {
            self.root.join(OsStr::from_bytes(rel))
        }
    }
}

impl Visitor for Unpacker<'_> {
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
        let mut out = ContextWriter { inner: &mut file, path: &full };
        self.hook.contents(path, contents, &mut out)?;
        drop(file);
        self.hook.written(path, &full);
        Ok(())
    }

    fn symlink(&mut self, path: &[u8], target: &[u8]) -> io::Result<()> {
        let full = self.full(path);
        let target = self.hook.symlink_target(path, target);
        std::os::unix::fs::symlink(OsStr::from_bytes(&target), &full).map_err(|e| context(&full, &e))
    }

    fn enter_directory(&mut self, path: &[u8]) -> io::Result<()> {
        let full = self.full(path);
        fs::create_dir(&full).map_err(|e| context(&full, &e))
    }
}

/// Names the file in write errors.
struct ContextWriter<'a, W> {
    inner: W,
    path: &'a Path,
}

impl<W: Write> Write for ContextWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).map_err(|e| context(self.path, &e))
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf).map_err(|e| context(self.path, &e))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
