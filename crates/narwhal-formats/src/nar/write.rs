//! A NAR writer whose types only allow complete, canonical archives.
//!
//! Each step consumes its writer: a node is written exactly once, a directory
//! is closed exactly once, and [`DirectoryWriter::entry`] needs the closure
//! to hand back the [`Finished`] proof that its node was written. Entry
//! names are checked and must come in strictly increasing byte order.
//! Entries are written through `&mut dyn Write`, so recursive writers do not
//! nest their types.

use std::io::{self, Read, Write};

use super::{
    check_name, CLOSE, CONTENTS, DIRECTORY, ENTRY, EXECUTABLE, MAGIC, NAME, NODE, OPEN, REGULAR, SYMLINK, TARGET, TYPE,
};
use crate::wire::{padding, write_bytes, write_u64};

/// Entry point: writes the magic and returns the root node.
pub struct Writer;

impl Writer {
    #[allow(clippy::new_ret_no_self)]
    pub fn new<W: Write>(mut out: W) -> io::Result<NodeWriter<W>> {
        write_bytes(&mut out, MAGIC)?;
        Ok(NodeWriter { out })
    }
}

/// A node still to be written.
#[must_use = "a NAR node must be written"]
pub struct NodeWriter<W> {
    out: W,
}

/// Proof that a node was written completely; gives the output back.
#[must_use]
pub struct Finished<W>(W);

impl<W> Finished<W> {
    pub fn into_inner(self) -> W {
        self.0
    }
}

impl<W: Write> NodeWriter<W> {
    /// A regular file of `size` bytes read from `contents`, which must hold at least that many.
    pub fn regular(mut self, executable: bool, size: u64, contents: impl Read) -> io::Result<Finished<W>> {
        regular_node(&mut self.out, executable, size, contents)?;
        Ok(Finished(self.out))
    }

    /// A regular file held in memory.
    pub fn regular_bytes(self, executable: bool, contents: &[u8]) -> io::Result<Finished<W>> {
        self.regular(executable, contents.len() as u64, contents)
    }

    pub fn symlink(mut self, target: &[u8]) -> io::Result<Finished<W>> {
        symlink_node(&mut self.out, target)?;
        Ok(Finished(self.out))
    }

    pub fn directory(mut self) -> io::Result<DirectoryWriter<W>> {
        directory_open(&mut self.out)?;
        Ok(DirectoryWriter { out: self.out, previous: None })
    }
}

/// An open directory: add entries in order, then [`close`](Self::close) it.
#[must_use = "a NAR directory must be closed"]
pub struct DirectoryWriter<W> {
    out: W,
    previous: Option<Vec<u8>>,
}

impl<W: Write> DirectoryWriter<W> {
    /// Writes the entry `name`; `node` writes its contents.
    pub fn entry<F>(&mut self, name: &[u8], node: F) -> io::Result<()>
    where
        F: for<'n> FnOnce(NodeWriter<&'n mut dyn Write>) -> io::Result<Finished<&'n mut dyn Write>>,
    {
        if let Some(prev) = &self.previous {
            if prev.as_slice() >= name {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "entry {:?} does not sort after {:?}",
                        String::from_utf8_lossy(name),
                        String::from_utf8_lossy(prev)
                    ),
                ));
            }
        }
        entry_open(&mut self.out, name)?;
        let _ = node(NodeWriter { out: &mut self.out as &mut dyn Write })?;
        close(&mut self.out)?;
        match &mut self.previous {
            Some(prev) => {
                prev.clear();
                prev.extend_from_slice(name);
            }
            None => self.previous = Some(name.to_vec()),
        }
        Ok(())
    }

    pub fn close(mut self) -> io::Result<Finished<W>> {
        close(&mut self.out)?;
        Ok(Finished(self.out))
    }
}

// The tokens of each node, shared by the typed writer above and the iterative dumper (which walks
// trees too deep for recursion and so cannot nest closures).

fn header(out: &mut impl Write, kind: &[u8]) -> io::Result<()> {
    write_bytes(out, OPEN)?;
    write_bytes(out, TYPE)?;
    write_bytes(out, kind)
}

/// A whole regular-file node.
pub(crate) fn regular_node(out: &mut impl Write, executable: bool, size: u64, contents: impl Read) -> io::Result<()> {
    header(out, REGULAR)?;
    if executable {
        write_bytes(out, EXECUTABLE)?;
        write_bytes(out, b"")?;
    }
    write_bytes(out, CONTENTS)?;
    write_u64(out, size)?;
    let copied = copy_exact(contents, out, size)?;
    if copied != size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("file ended after {copied} of {size} bytes (did it change while being read?)"),
        ));
    }
    out.write_all(&[0; 8][..padding(size)])?;
    write_bytes(out, CLOSE)
}

/// A whole symlink node.
pub(crate) fn symlink_node(out: &mut impl Write, target: &[u8]) -> io::Result<()> {
    if target.is_empty() || target.contains(&0) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "symlink target is empty or contains NUL"));
    }
    header(out, SYMLINK)?;
    write_bytes(out, TARGET)?;
    write_bytes(out, target)?;
    write_bytes(out, CLOSE)
}

/// The start of a directory node; its entries follow, then [`close`].
pub(crate) fn directory_open(out: &mut impl Write) -> io::Result<()> {
    header(out, DIRECTORY)
}

/// The start of an entry, up to its node; the node follows, then [`close`]. Order is the caller's to keep.
pub(crate) fn entry_open(out: &mut impl Write, name: &[u8]) -> io::Result<()> {
    if let Err(reason) = check_name(name) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("entry name {:?} {reason}", String::from_utf8_lossy(name)),
        ));
    }
    write_bytes(out, ENTRY)?;
    write_bytes(out, OPEN)?;
    write_bytes(out, NAME)?;
    write_bytes(out, name)?;
    write_bytes(out, NODE)
}

/// The end of a directory or an entry.
pub(crate) fn close(out: &mut impl Write) -> io::Result<()> {
    write_bytes(out, CLOSE)
}

/// Copies up to `size` bytes through a 64 KiB buffer (std's `io::copy` uses
/// 8 KiB, which costs eight times the system calls on large files).
fn copy_exact(mut from: impl Read, to: &mut impl Write, size: u64) -> io::Result<u64> {
    // On the stack: a heap buffer per file costs more than it saves on small files.
    #[allow(clippy::large_stack_arrays)]
    let mut buf = [0u8; 64 * 1024];
    let mut done = 0;
    while done < size {
        let want = buf.len().min(usize::try_from(size - done).unwrap_or(usize::MAX));
        let n = match from.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        done += n as u64;
    }
    Ok(done)
}
