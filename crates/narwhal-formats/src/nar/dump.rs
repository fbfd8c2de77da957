//! Serialising a file system tree as a NAR, byte-identical to `nix-store --dump`.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::write::{close, directory_open, entry_open, regular_node, symlink_node};
use super::MAGIC;
use crate::hash::{Algorithm, Hash, Hasher};
use crate::wire::write_bytes;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DumpError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is a {kind}, which a NAR cannot hold (only files, directories and symlinks)")]
    UnsupportedType { path: PathBuf, kind: &'static str },
    #[error("cannot write the NAR")]
    Write(#[source] io::Error),
    #[error("{path} is nested deeper than {} directories, more than a NAR may hold", super::MAX_DEPTH)]
    TooDeep { path: PathBuf },
}

/// Writes the NAR of `path` to `out` and returns the number of bytes written.
///
/// The tree is walked on an explicit stack of open directories, so its depth is bounded by
/// [`MAX_DEPTH`](super::MAX_DEPTH) (what the reader accepts), not by the thread's stack. A root
/// that a NAR cannot hold (a device, a socket) is refused before anything is written.
pub fn dump(path: &Path, out: impl Write) -> Result<u64, DumpError> {
    let root = Node::stat(path)?;
    let mut counter = Counting { inner: out, count: 0 };
    write_bytes(&mut counter, MAGIC).map_err(DumpError::Write)?;
    dump_tree(root, path.to_path_buf(), &mut counter)?;
    counter.flush().map_err(DumpError::Write)?;
    Ok(counter.count)
}

/// The NAR hash and size of `path`, as `nix hash path` and `nix path-info` compute them.
///
/// Reading the tree and hashing run on two threads: the dumper fills 1 MiB
/// chunks that a second thread hashes ([`crate::pipe`]), and the buffers are
/// recycled, so at most a few MiB are in flight whatever the tree's size.
pub fn dump_to_hash(path: &Path, algo: Algorithm) -> Result<(Hash, u64), DumpError> {
    let (mut feed, mut chunks) = crate::pipe::channel(1);
    let chunks = chunks.pop().ok_or_else(|| DumpError::Write(io::Error::other("no hashing thread")))?;
    std::thread::scope(|scope| {
        let hasher = scope.spawn(move || {
            let mut h = Hasher::new(algo);
            chunks.for_each(|chunk| h.update(&chunk));
            h.finish()
        });
        let dumped = dump(path, &mut feed);
        let flushed = feed.finish();
        drop(feed);
        let hash = hasher.join().expect("hashing thread panicked");
        let size = dumped?;
        flushed.map_err(DumpError::Write)?;
        Ok((hash, size))
    })
}

/// A file system object as a NAR sees it.
#[derive(Clone, Copy)]
enum Node {
    Regular { executable: bool, size: u64 },
    Symlink,
    Directory,
}

impl Node {
    fn stat(path: &Path) -> Result<Self, DumpError> {
        let meta = fs::symlink_metadata(path).map_err(|source| DumpError::Read { path: path.to_owned(), source })?;
        let ft = meta.file_type();
        if ft.is_file() {
            Ok(Self::Regular { executable: meta.permissions().mode() & 0o100 != 0, size: meta.len() })
        } else if ft.is_symlink() {
            Ok(Self::Symlink)
        } else if ft.is_dir() {
            Ok(Self::Directory)
        } else {
            let kind = crate::tree::kind(ft);
            Err(DumpError::UnsupportedType { path: path.to_owned(), kind })
        }
    }
}

/// Writes `root` (already stat'ed) at `path`; `path` is the walk's cursor, one component per open directory.
fn dump_tree(root: Node, mut path: PathBuf, out: &mut impl Write) -> Result<(), DumpError> {
    // The entries still to write of each open directory, sorted by bytes as a NAR requires.
    let mut open: Vec<std::vec::IntoIter<OsString>> = Vec::new();
    if let Some(names) = write_node(root, &path, out)? {
        open.push(names);
    }
    while let Some(names) = open.last_mut() {
        if let Some(name) = names.next() {
            if open.len() > super::MAX_DEPTH {
                path.push(&name);
                return Err(DumpError::TooDeep { path });
            }
            entry_open(out, name.as_bytes()).map_err(DumpError::Write)?;
            path.push(&name);
            let node = Node::stat(&path)?;
            if let Some(children) = write_node(node, &path, out)? {
                open.push(children);
            } else {
                close(out).map_err(DumpError::Write)?;
                path.pop();
            }
        } else {
            close(out).map_err(DumpError::Write)?;
            open.pop();
            if !open.is_empty() {
                // The entry that held the directory just closed.
                close(out).map_err(DumpError::Write)?;
                path.pop();
            }
        }
    }
    Ok(())
}

/// Writes a file or symlink whole, or opens a directory and returns its sorted entry names.
fn write_node(
    node: Node,
    path: &Path,
    out: &mut impl Write,
) -> Result<Option<std::vec::IntoIter<OsString>>, DumpError> {
    let read_err = |source| DumpError::Read { path: path.to_owned(), source };
    match node {
        Node::Regular { executable, size } => {
            let mut file = Tracked { inner: File::open(path).map_err(read_err)?, failed: false };
            match regular_node(out, executable, size, &mut file) {
                Ok(()) => Ok(None),
                Err(e) if file.failed || e.kind() == io::ErrorKind::UnexpectedEof => Err(read_err(e)),
                Err(e) => Err(DumpError::Write(e)),
            }
        }
        Node::Symlink => {
            let target = fs::read_link(path).map_err(read_err)?;
            symlink_node(out, target.as_os_str().as_bytes()).map_err(DumpError::Write)?;
            Ok(None)
        }
        Node::Directory => {
            let mut names: Vec<OsString> = fs::read_dir(path)
                .map_err(read_err)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()
                .map_err(read_err)?;
            names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            directory_open(out).map_err(DumpError::Write)?;
            Ok(Some(names.into_iter()))
        }
    }
}

struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf)?;
        self.count += buf.len() as u64;
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Remembers whether reading failed, to tell read errors from write errors.
struct Tracked<R> {
    inner: R,
    failed: bool,
}

impl<R: io::Read> io::Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.inner.read(buf);
        self.failed |= r.is_err();
        r
    }
}
