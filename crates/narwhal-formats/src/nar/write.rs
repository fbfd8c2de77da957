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
    fn header(&mut self, kind: &[u8]) -> io::Result<()> {
        write_bytes(&mut self.out, OPEN)?;
        write_bytes(&mut self.out, TYPE)?;
        write_bytes(&mut self.out, kind)
    }

    /// A regular file of `size` bytes read from `contents`, which must hold at least that many.
    pub fn regular(mut self, executable: bool, size: u64, contents: impl Read) -> io::Result<Finished<W>> {
        self.header(REGULAR)?;
        if executable {
            write_bytes(&mut self.out, EXECUTABLE)?;
            write_bytes(&mut self.out, b"")?;
        }
        write_bytes(&mut self.out, CONTENTS)?;
        write_u64(&mut self.out, size)?;
        let copied = copy_exact(contents, &mut self.out, size)?;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("file ended after {copied} of {size} bytes (did it change while being read?)"),
            ));
        }
        self.out.write_all(&[0; 8][..padding(size)])?;
        write_bytes(&mut self.out, CLOSE)?;
        Ok(Finished(self.out))
    }

    /// A regular file held in memory.
    pub fn regular_bytes(self, executable: bool, contents: &[u8]) -> io::Result<Finished<W>> {
        self.regular(executable, contents.len() as u64, contents)
    }

    pub fn symlink(mut self, target: &[u8]) -> io::Result<Finished<W>> {
        if target.is_empty() || target.contains(&0) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "symlink target is empty or contains NUL"));
        }
        self.header(SYMLINK)?;
        write_bytes(&mut self.out, TARGET)?;
        write_bytes(&mut self.out, target)?;
        write_bytes(&mut self.out, CLOSE)?;
        Ok(Finished(self.out))
    }

    pub fn directory(mut self) -> io::Result<DirectoryWriter<W>> {
        self.header(DIRECTORY)?;
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
        if let Err(reason) = check_name(name) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("entry name {:?} {reason}", String::from_utf8_lossy(name)),
            ));
        }
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
        write_bytes(&mut self.out, ENTRY)?;
        write_bytes(&mut self.out, OPEN)?;
        write_bytes(&mut self.out, NAME)?;
        write_bytes(&mut self.out, name)?;
        write_bytes(&mut self.out, NODE)?;
        let _ = node(NodeWriter { out: &mut self.out as &mut dyn Write })?;
        write_bytes(&mut self.out, CLOSE)?;
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
        write_bytes(&mut self.out, CLOSE)?;
        Ok(Finished(self.out))
    }
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
