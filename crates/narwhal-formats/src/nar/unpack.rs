//! Restoring a NAR into a directory, safely.
//!
//! The archive is unpacked under a temporary name beside the destination and
//! renamed into place only once it parsed completely; on any error the
//! temporary tree is removed, so the destination either holds the whole
//! archive or does not exist. Every entry is created fresh (`O_EXCL`,
//! `mkdirat`, `symlinkat`) from names the parser validated, relative to the
//! open directory it goes in, which this call created (and opened with
//! `O_NOFOLLOW`), so nothing is followed through a symlink and nothing lands
//! outside the destination.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use thiserror::Error;

use super::read::{parse_to_end, Error, Visitor};

/// Linux's limit on a path handed to a system call, its terminating NUL included.
pub const PATH_MAX: usize = 4096;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum UnpackError {
    #[error("{0} already exists; narwhal does not overwrite (remove it or pick another destination)")]
    Exists(PathBuf),
    #[error("destination {0} has no parent directory or file name")]
    BadDestination(PathBuf),
    #[error(transparent)]
    Nar(#[from] Error),
    /// A path in the archive would be too long for Linux under the destination: its
    /// tree could be made (entries are created relative to their parent) but no
    /// program could open it by name, and `nar dump` could not read it back. Nix's
    /// restore refuses such an archive too.
    #[error(
        "{path}… would be {len} bytes long, more than Linux's PATH_MAX ({PATH_MAX} with its NUL) allows; \
         unpack it to a shorter destination"
    )]
    PathTooLong { path: PathBuf, len: usize },
    #[error("cannot create a temporary directory in {dir}")]
    Temp {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot move the unpacked tree into place at {path}")]
    Rename {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
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
    /// closed; `root` is where the tree is now (its temporary name).
    fn written(&mut self, path: &[u8], root: &Path) {
        let _ = (path, root);
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
    /// The temporary directory beside the destination (`.<name>.tmp-…`,
    /// [`crate::temp`]) that holds the tree, its drop guard.
    _staging: crate::temp::TempDir,
    /// The tree's root inside it, under the destination's name.
    tmp: PathBuf,
    dest: PathBuf,
    nar_size: u64,
    /// Length of the longest path in the tree, relative to its root.
    longest: usize,
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
    pub fn commit_to(self, dest: &Path) -> Result<(), UnpackError> {
        if fs::symlink_metadata(dest).is_ok() {
            return Err(UnpackError::Exists(dest.to_owned()));
        }
        let len = full_len(dest, self.longest);
        if len >= PATH_MAX {
            return Err(UnpackError::PathTooLong { path: dest.to_owned(), len });
        }
        fs::rename(&self.tmp, dest).map_err(|source| UnpackError::Rename { path: dest.to_owned(), source })?;
        // What is left is the empty staging directory, removed as `self._staging` drops.
        Ok(())
    }
}

/// Unpacks under a temporary name beside `dest`, passing contents and
/// targets through `hook`; the caller checks what it must and then commits.
/// On error nothing is left.
pub fn unpack_pending(r: &mut impl Read, dest: &Path, hook: &mut dyn UnpackHook) -> Result<Pending, UnpackError> {
    if fs::symlink_metadata(dest).is_ok() {
        return Err(UnpackError::Exists(dest.to_owned()));
    }
    let bad = || UnpackError::BadDestination(dest.to_owned());
    let (Some(dir), Some(name)) = (dest.parent(), dest.file_name()) else { return Err(bad()) };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let staging = crate::temp::dir_in(dir, name).map_err(|source| UnpackError::Temp { dir: dir.to_owned(), source })?;
    let tmp = staging.path().join(name);
    let room = PATH_MAX.saturating_sub(full_len(dest, 0) + 1);
    let mut v = Unpacker { root: tmp.clone(), hook, dirs: Vec::new(), room, longest: 0, too_long: None };
    match parse_to_end(r, &mut v) {
        Ok(nar_size) => Ok(Pending { _staging: staging, tmp, dest: dest.to_owned(), nar_size, longest: v.longest }),
        Err(e) => match v.too_long {
            Some(rel) => {
                let len = full_len(dest, rel.len());
                Err(UnpackError::PathTooLong { path: full_path(dest, &rel[..rel.len().min(200)]), len })
            }
            None => Err(e.into()),
        },
    }
}

/// Length of `dest` (made absolute, as programs will open it) with a relative path of `rel`
/// bytes below it; it must stay under [`PATH_MAX`], which counts the NUL.
fn full_len(dest: &Path, rel: usize) -> usize {
    let base = std::path::absolute(dest).map_or(dest.as_os_str().len(), |p| p.as_os_str().len());
    base + if rel == 0 { 0 } else { 1 + rel }
}

struct Unpacker<'h> {
    root: PathBuf,
    hook: &'h mut dyn UnpackHook,
    /// The directories from the root down to the one being filled, open, so
    /// each entry is created relative to its parent instead of by walking its
    /// whole path again (a tenth of the kernel's work per file).
    dirs: Vec<OwnedFd>,
    /// Longest relative path that still fits under the destination within PATH_MAX.
    room: usize,
    longest: usize,
    /// The first path that did not fit.
    too_long: Option<Vec<u8>>,
}

fn context(path: &Path, e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Where `rel` is under `root`, for messages.
fn full_path(root: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        root.to_owned()
    } else {
        root.join(OsStr::from_bytes(rel))
    }
}

/// Flags for entries created inside a directory this unpacking created.
const NEW_FILE: OFlags = OFlags::WRONLY.union(OFlags::CREATE).union(OFlags::EXCL).union(OFlags::CLOEXEC);
const OPEN_DIR: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

impl Unpacker<'_> {
    /// The open directory `rel` (not the root) goes in, and its name there.
    fn parent<'p>(&self, rel: &'p [u8]) -> io::Result<(BorrowedFd<'_>, &'p OsStr)> {
        let name = rel.rsplit(|&b| b == b'/').next().unwrap_or(rel);
        let dir = self.dirs.last().ok_or_else(|| io::Error::other("an entry outside any directory"))?;
        Ok((dir.as_fd(), OsStr::from_bytes(name)))
    }

    fn context(&self, rel: &[u8], e: impl Into<io::Error>) -> io::Error {
        context(&full_path(&self.root, rel), &e.into())
    }

    /// Refuses a path that would not fit under the destination (checked before anything is
    /// created for it).
    fn fits(&mut self, rel: &[u8]) -> io::Result<()> {
        if rel.len() >= self.room {
            self.too_long = Some(rel.to_vec());
            return Err(io::Error::new(io::ErrorKind::InvalidFilename, "path longer than PATH_MAX"));
        }
        self.longest = self.longest.max(rel.len());
        Ok(())
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
        self.fits(path)?;
        let mode = if executable { 0o755 } else { 0o644 };
        let mut file = if path.is_empty() {
            let opened = OpenOptions::new().write(true).create_new(true).mode(mode).open(&self.root);
            opened.map_err(|e| self.context(path, e))?
        } else {
            let (dir, name) = self.parent(path)?;
            let opened = rustix::fs::openat(dir, name, NEW_FILE, Mode::from_raw_mode(mode));
            File::from(opened.map_err(|e| self.context(path, e))?)
        };
        let mut out = ContextWriter { inner: &mut file, root: &self.root, rel: path };
        self.hook.contents(path, contents, &mut out)?;
        drop(file);
        self.hook.written(path, &self.root);
        Ok(())
    }

    fn symlink(&mut self, path: &[u8], target: &[u8]) -> io::Result<()> {
        self.fits(path)?;
        let target = self.hook.symlink_target(path, target);
        let target = OsStr::from_bytes(&target);
        if path.is_empty() {
            std::os::unix::fs::symlink(target, &self.root).map_err(|e| self.context(path, e))
        } else {
            let (dir, name) = self.parent(path)?;
            rustix::fs::symlinkat(target, dir, name).map_err(|e| self.context(path, e))
        }
    }

    fn enter_directory(&mut self, path: &[u8]) -> io::Result<()> {
        self.fits(path)?;
        let opened = if path.is_empty() {
            fs::create_dir(&self.root).map_err(|e| self.context(path, e))?;
            rustix::fs::open(&self.root, OPEN_DIR, Mode::empty())
        } else {
            let (dir, name) = self.parent(path)?;
            rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o777)).map_err(|e| self.context(path, e))?;
            rustix::fs::openat(dir, name, OPEN_DIR, Mode::empty())
        };
        let fd = opened.map_err(|e| self.context(path, e))?;
        self.dirs.push(fd);
        Ok(())
    }

    fn leave_directory(&mut self, _path: &[u8]) -> io::Result<()> {
        self.dirs.pop();
        Ok(())
    }
}

/// Names the file in write errors.
struct ContextWriter<'a, W> {
    inner: W,
    root: &'a Path,
    rel: &'a [u8],
}

impl<W: Write> ContextWriter<'_, W> {
    fn context(&self, e: &io::Error) -> io::Error {
        context(&full_path(self.root, self.rel), e)
    }
}

impl<W: Write> Write for ContextWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).map_err(|e| self.context(&e))
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf).map_err(|e| self.context(&e))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
