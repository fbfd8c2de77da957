//! A strict, streaming NAR parser.
//!
//! [`parse`] reads exactly one NAR from a reader and no byte past it, so a
//! NAR embedded in a larger stream (the export format) can be followed by
//! other data. It allocates only for names and targets, both bounded; a
//! file's contents are handed to the [`Visitor`] as a reader of exactly its
//! length, whatever length the archive claims.
//!
//! Rejected, with the byte offset of the culprit: a wrong magic, unknown or
//! out-of-place tokens, non-zero padding, names that are empty, `.`, `..`,
//! contain `/` or NUL, or are longer than [`MAX_NAME_LEN`](super::MAX_NAME_LEN),
//! entries out of order or repeated, nesting deeper than
//! [`MAX_DEPTH`](super::MAX_DEPTH), bad symlink targets, and truncation.

use std::fmt;
use std::io::{self, Read};

use thiserror::Error;

use super::{
    check_name, CLOSE, CONTENTS, DIRECTORY, ENTRY, EXECUTABLE, MAGIC, MAX_DEPTH, MAX_TARGET_LEN, MAX_TOKEN_LEN, NAME,
    NODE, OPEN, REGULAR, SYMLINK, TARGET, TYPE,
};
use crate::wire::padding;

/// Receives the contents of a NAR in order. Paths are relative to the root,
/// `/`-separated bytes; the root itself is the empty path.
pub trait Visitor {
    /// A regular file of `size` bytes whose contents start at byte `offset` of
    /// the NAR. Whatever of `contents` is left unread is skipped.
    fn regular(
        &mut self,
        path: &[u8],
        executable: bool,
        size: u64,
        offset: u64,
        contents: &mut dyn Read,
    ) -> io::Result<()>;
    fn symlink(&mut self, path: &[u8], target: &[u8]) -> io::Result<()>;
    fn enter_directory(&mut self, path: &[u8]) -> io::Result<()>;
    fn leave_directory(&mut self, _path: &[u8]) -> io::Result<()> {
        Ok(())
    }
}

/// What was wrong, where.
#[derive(Debug, Error)]
pub struct Error {
    /// Byte offset in the NAR where the offending token starts.
    pub offset: u64,
    /// The entry being read, relative to the root (empty for the root).
    pub path: Vec<u8>,
    #[source]
    pub kind: ErrorKind,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_visitor_error() {
            // The archive was fine so far: what it was being written to failed.
            write!(f, "cannot write the NAR's contents, at byte {}", self.offset)?;
        } else {
            write!(f, "invalid NAR at byte {}", self.offset)?;
        }
        if !self.path.is_empty() {
            write!(f, " (in /{})", String::from_utf8_lossy(&self.path))?;
        }
        Ok(())
    }
}

impl Error {
    /// Whether the cause was the visitor (e.g. writing files), not the archive.
    pub fn is_visitor_error(&self) -> bool {
        matches!(self.kind, ErrorKind::Visitor(_))
    }
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ErrorKind {
    #[error("the archive ends too early (truncated)")]
    Truncated,
    #[error("reading the archive failed")]
    Io(#[source] io::Error),
    #[error("not a NAR: it does not start with 'nix-archive-1'")]
    BadMagic,
    #[error("expected {expected}, found {found}")]
    UnexpectedToken { expected: &'static str, found: String },
    #[error("padding bytes are not zero")]
    NonZeroPadding,
    #[error("entry name {name:?} {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("entry {name:?} does not sort after {previous:?} (entries must be in strictly increasing byte order)")]
    NotSorted { previous: String, name: String },
    #[error("entry {0:?} appears twice")]
    Duplicate(String),
    #[error("directories nest deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("symlink target of {0} bytes is longer than {MAX_TARGET_LEN}")]
    TargetTooLong(u64),
    #[error("symlink target {0}")]
    InvalidTarget(&'static str),
    #[error("unexpected data after the end of the archive")]
    TrailingData,
    #[error("processing the archive failed")]
    Visitor(#[source] io::Error),
}

/// Parses one NAR from `r`, reporting it to `v`; returns its size in bytes.
pub fn parse<R: Read, V: Visitor + ?Sized>(r: &mut R, v: &mut V) -> Result<u64, Error> {
    let mut p = Parser { r, v, pos: 0, path: Vec::new() };
    p.expect_magic()?;
    p.archive()?;
    Ok(p.pos)
}

/// Like [`parse`], then requires the reader to be at its end.
pub fn parse_to_end<R: Read, V: Visitor + ?Sized>(r: &mut R, v: &mut V) -> Result<u64, Error> {
    let size = parse(r, v)?;
    let mut byte = [0u8; 1];
    loop {
        match r.read(&mut byte) {
            Ok(0) => return Ok(size),
            Ok(_) => return Err(Error { offset: size, path: Vec::new(), kind: ErrorKind::TrailingData }),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error { offset: size, path: Vec::new(), kind: ErrorKind::Io(e) }),
        }
    }
}

struct Parser<'a, R: ?Sized, V: ?Sized> {
    r: &'a mut R,
    v: &'a mut V,
    pos: u64,
    path: Vec<u8>,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl<R: Read + ?Sized, V: Visitor + ?Sized> Parser<'_, R, V> {
    fn err(&self, offset: u64, kind: ErrorKind) -> Error {
        Error { offset, path: self.path.clone(), kind }
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        match self.r.read_exact(buf) {
            Ok(()) => {
                self.pos += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(self.err(self.pos, ErrorKind::Truncated)),
            Err(e) => Err(self.err(self.pos, ErrorKind::Io(e))),
        }
    }

    fn u64(&mut self) -> Result<u64, Error> {
        let mut b = [0; 8];
        self.read_exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn padding(&mut self, len: u64) -> Result<(), Error> {
        let mut pad = [0u8; 8];
        let pad = &mut pad[..padding(len)];
        let start = self.pos;
        self.read_exact(pad)?;
        if pad.iter().any(|&b| b != 0) {
            return Err(self.err(start, ErrorKind::NonZeroPadding));
        }
        Ok(())
    }

    /// Reads a string of at most `max` bytes; `too_long` builds the error for longer ones.
    fn string(&mut self, max: u64, too_long: impl FnOnce(u64) -> ErrorKind) -> Result<(u64, Vec<u8>), Error> {
        let start = self.pos;
        let len = self.u64()?;
        if len > max {
            return Err(self.err(start, too_long(len)));
        }
        let mut buf = vec![0; len as usize];
        self.read_exact(&mut buf)?;
        self.padding(len)?;
        Ok((start, buf))
    }

    /// Reads a keyword and returns it with its offset.
    fn keyword(&mut self, expected: &'static str) -> Result<(u64, Vec<u8>), Error> {
        self.string(MAX_TOKEN_LEN, |len| ErrorKind::UnexpectedToken {
            expected,
            found: format!("a string of {len} bytes"),
        })
    }

    fn expect(&mut self, token: &'static [u8], expected: &'static str) -> Result<(), Error> {
        let (start, found) = self.keyword(expected)?;
        if found != token {
            return Err(self.err(start, ErrorKind::UnexpectedToken { expected, found: format!("{:?}", lossy(&found)) }));
        }
        Ok(())
    }

    fn expect_magic(&mut self) -> Result<(), Error> {
        let start = self.pos;
        let len = self.u64()?;
        if len != MAGIC.len() as u64 {
            return Err(self.err(start, ErrorKind::BadMagic));
        }
        let mut buf = [0u8; 13];
        self.read_exact(&mut buf)?;
        if buf != MAGIC {
            return Err(self.err(start, ErrorKind::BadMagic));
        }
        self.padding(len)
    }

    /// The whole archive after its magic, on an explicit stack of open directories (no recursion:
    /// the depth is bounded by [`MAX_DEPTH`], a limit on the input, not by the thread's stack).
    fn archive(&mut self) -> Result<(), Error> {
        let mut open: Vec<OpenDir> = Vec::new();
        self.node(&mut open, 0)?;
        loop {
            let depth = open.len();
            let Some(dir) = open.last_mut() else { break };
            let (start, tok) = self.keyword("'entry' or ')'")?;
            match tok.as_slice() {
                CLOSE => {
                    let here = self.pos;
                    self.v.leave_directory(&self.path).map_err(|e| self.err(here, ErrorKind::Visitor(e)))?;
                    let parent_len = dir.parent_len;
                    open.pop();
                    self.path.truncate(parent_len);
                    if !open.is_empty() {
                        // The `)` of the entry that held this directory.
                        self.expect(CLOSE, "')'")?;
                    }
                    continue;
                }
                ENTRY => {}
                other => {
                    return Err(self.err(
                        start,
                        ErrorKind::UnexpectedToken { expected: "'entry' or ')'", found: format!("{:?}", lossy(other)) },
                    ))
                }
            }
            self.expect(OPEN, "'('")?;
            self.expect(NAME, "'name'")?;
            let (name_at, name) = self.string(super::MAX_NAME_LEN, |len| ErrorKind::InvalidName {
                name: format!("<{len} bytes>"),
                reason: "is longer than 255 bytes",
            })?;
            if let Err(reason) = check_name(&name) {
                return Err(self.err(name_at, ErrorKind::InvalidName { name: lossy(&name), reason }));
            }
            if let Some(prev) = &dir.previous {
                if *prev == name {
                    return Err(self.err(name_at, ErrorKind::Duplicate(lossy(&name))));
                }
                if *prev > name {
                    return Err(self.err(name_at, ErrorKind::NotSorted { previous: lossy(prev), name: lossy(&name) }));
                }
            }
            // The entry's node is `depth` directories below the root.
            if depth > MAX_DEPTH {
                return Err(self.err(name_at, ErrorKind::TooDeep));
            }
            self.expect(NODE, "'node'")?;
            let parent_len = self.path.len();
            if parent_len > 0 {
                self.path.push(b'/');
            }
            self.path.extend_from_slice(&name);
            dir.previous = Some(name);
            if !self.node(&mut open, parent_len)? {
                // A file or symlink is complete: close its entry here; a directory's entry closes
                // when the directory does.
                self.path.truncate(parent_len);
                self.expect(CLOSE, "')'")?;
            }
        }
        Ok(())
    }

    /// Reads a node's header; a file or symlink whole (returns false), a directory only opened,
    /// pushed on `open` for [`Self::archive`] to read its entries (returns true).
    fn node(&mut self, open: &mut Vec<OpenDir>, parent_len: usize) -> Result<bool, Error> {
        self.expect(OPEN, "'('")?;
        self.expect(TYPE, "'type'")?;
        let (start, kind) = self.keyword("a node type ('regular', 'symlink' or 'directory')")?;
        match kind.as_slice() {
            REGULAR => self.regular()?,
            SYMLINK => self.symlink()?,
            DIRECTORY => {
                let here = self.pos;
                self.v.enter_directory(&self.path).map_err(|e| self.err(here, ErrorKind::Visitor(e)))?;
                // A directory ends at its own ')', which the entry loop reads.
                open.push(OpenDir { previous: None, parent_len });
                return Ok(true);
            }
            other => {
                return Err(self.err(
                    start,
                    ErrorKind::UnexpectedToken {
                        expected: "a node type ('regular', 'symlink' or 'directory')",
                        found: format!("{:?}", lossy(other)),
                    },
                ))
            }
        }
        self.expect(CLOSE, "')'")?;
        Ok(false)
    }

    fn regular(&mut self) -> Result<(), Error> {
        let (start, tok) = self.keyword("'executable' or 'contents'")?;
        let executable = match tok.as_slice() {
            EXECUTABLE => {
                let (s, empty) = self.keyword("an empty string after 'executable'")?;
                if !empty.is_empty() {
                    return Err(self.err(
                        s,
                        ErrorKind::UnexpectedToken {
                            expected: "an empty string after 'executable'",
                            found: format!("{:?}", lossy(&empty)),
                        },
                    ));
                }
                self.expect(CONTENTS, "'contents'")?;
                true
            }
            CONTENTS => false,
            other => {
                return Err(self.err(
                    start,
                    ErrorKind::UnexpectedToken {
                        expected: "'executable' or 'contents'",
                        found: format!("{:?}", lossy(other)),
                    },
                ))
            }
        };
        let size = self.u64()?;
        let offset = self.pos;
        let mut contents = Contents { r: &mut *self.r, remaining: size, error: None };
        let visited = self.v.regular(&self.path, executable, size, offset, &mut contents);
        // Skip what the visitor did not read.
        let drained = if visited.is_ok() && contents.error.is_none() {
            io::copy(&mut contents, &mut io::sink()).map(|_| ())
        } else {
            Ok(())
        };
        let read_so_far = size - contents.remaining;
        if let Some(e) = contents.error.take() {
            let at = offset + read_so_far;
            self.pos = at;
            return Err(if e.kind() == io::ErrorKind::UnexpectedEof {
                self.err(at, ErrorKind::Truncated)
            } else {
                self.err(at, ErrorKind::Io(e))
            });
        }
        visited.map_err(|e| self.err(offset, ErrorKind::Visitor(e)))?;
        drained.map_err(|e| self.err(offset, ErrorKind::Io(e)))?;
        self.pos = offset + size;
        self.padding(size)
    }

    fn symlink(&mut self) -> Result<(), Error> {
        self.expect(TARGET, "'target'")?;
        let (start, target) = self.string(MAX_TARGET_LEN, ErrorKind::TargetTooLong)?;
        if target.is_empty() {
            return Err(self.err(start, ErrorKind::InvalidTarget("is empty")));
        }
        if target.contains(&0) {
            return Err(self.err(start, ErrorKind::InvalidTarget("contains NUL")));
        }
        self.v.symlink(&self.path, &target).map_err(|e| self.err(start, ErrorKind::Visitor(e)))
    }
}

/// A directory whose entries are being read.
struct OpenDir {
    /// The name of its last entry so far, which the next must sort after.
    previous: Option<Vec<u8>>,
    /// The length of the parser's path before this directory's name was added.
    parent_len: usize,
}

/// Exactly `remaining` bytes of a file's contents.
struct Contents<'a, R: ?Sized> {
    r: &'a mut R,
    remaining: u64,
    /// The first error from the underlying reader, to tell it apart from the visitor's own.
    error: Option<io::Error>,
}

impl<R: Read + ?Sized> Read for Contents<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        match self.r.read(&mut buf[..want]) {
            Ok(0) => {
                let e = io::Error::new(io::ErrorKind::UnexpectedEof, "archive truncated inside a file");
                self.error = Some(io::Error::new(io::ErrorKind::UnexpectedEof, "archive truncated inside a file"));
                Err(e)
            }
            Ok(n) => {
                self.remaining -= n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                self.error = Some(e);
                Err(copy)
            }
        }
    }
}
