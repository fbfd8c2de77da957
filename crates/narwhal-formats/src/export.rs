//! The `nix-store --export` format: store paths with their NARs and metadata.
//!
//! ```text
//! export = { u64(1) path } u64(0)
//! path   = <NAR> u64(0x4558494e) str(store path) u64(n) n*str(reference)
//!          str(deriver or "") u64(0)
//! ```
//!
//! Integers and strings use the [wire encoding](crate::wire). Paths come
//! references first, so an importer can register them in order. When reading,
//! a trailing `u64(1) str(signature)` (the legacy signature) is accepted.

use std::io::{self, Read, Write};

use thiserror::Error;

use crate::hash::{Algorithm, Hash, HashingWriter};
use crate::nar;
use crate::store_path::{self, StoreDir, StorePath};
use crate::tee::Tee;
use crate::wire;

/// Marks the metadata that follows each NAR ("NIXE").
pub const EXPORT_MAGIC: u64 = 0x4558_494e;
/// Longest store path string accepted.
const MAX_PATH_LEN: u64 = 4096;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    #[error("not a nix-store --export stream: expected 0 or 1 before path {index}, found {found}")]
    NotExport { index: usize, found: u64 },
    #[error("path {index}: NAR is invalid")]
    Nar {
        index: usize,
        #[source]
        source: nar::Error,
    },
    #[error("path {index}: expected the export magic 0x4558494e after the NAR, found {found:#x}")]
    BadMagic { index: usize, found: u64 },
    #[error("path {index}: invalid {what}")]
    StorePath {
        index: usize,
        what: &'static str,
        #[source]
        source: store_path::Error,
    },
    #[error("path {index}: {what} is not valid")]
    Field { index: usize, what: &'static str, source: io::Error },
    #[error("the export ends too early, in path {index}")]
    Truncated { index: usize },
    #[error("reading the export failed")]
    Io(#[source] io::Error),
}

/// The metadata of one exported path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedPath {
    pub path: StorePath,
    pub references: Vec<StorePath>,
    pub deriver: Option<StorePath>,
    /// Computed while reading.
    pub nar_hash: Hash,
    pub nar_size: u64,
}

/// Writes an export stream.
pub struct ExportWriter<W> {
    out: W,
    store_dir: StoreDir,
}

impl<W: Write> ExportWriter<W> {
    pub fn new(out: W, store_dir: StoreDir) -> Self {
        Self { out, store_dir }
    }

    /// Adds one path. `nar` writes the path's NAR to the stream.
    pub fn add(
        &mut self,
        path: &StorePath,
        references: &[StorePath],
        deriver: Option<&StorePath>,
        nar: impl FnOnce(&mut W) -> io::Result<()>,
    ) -> io::Result<()> {
        wire::write_u64(&mut self.out, 1)?;
        nar(&mut self.out)?;
        wire::write_u64(&mut self.out, EXPORT_MAGIC)?;
        wire::write_bytes(&mut self.out, self.store_dir.display(path).to_string().as_bytes())?;
        let mut refs: Vec<&StorePath> = references.iter().collect();
        refs.sort();
        refs.dedup();
        wire::write_u64(&mut self.out, refs.len() as u64)?;
        for r in refs {
            wire::write_bytes(&mut self.out, self.store_dir.display(r).to_string().as_bytes())?;
        }
        let deriver = deriver.map(|d| self.store_dir.display(d).to_string()).unwrap_or_default();
        wire::write_bytes(&mut self.out, deriver.as_bytes())?;
        wire::write_u64(&mut self.out, 0)
    }

    /// Ends the stream and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        wire::write_u64(&mut self.out, 0)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Reads an export stream path by path.
pub struct ExportReader<R> {
    r: R,
    store_dir: StoreDir,
    index: usize,
    done: bool,
}

impl<R: Read> ExportReader<R> {
    pub fn new(r: R, store_dir: StoreDir) -> Self {
        Self { r, store_dir, index: 0, done: false }
    }

    /// Reads the next path, handing its NAR to `visitor`. `None` at the end.
    pub fn next_path(&mut self, visitor: &mut dyn nar::Visitor) -> Result<Option<ExportedPath>, Error> {
        self.next_path_inner(visitor, None)
    }

    /// Like [`Self::next_path`], also copying the NAR's bytes to `raw` as they are read.
    pub fn next_path_copying(
        &mut self,
        visitor: &mut dyn nar::Visitor,
        raw: &mut dyn Write,
    ) -> Result<Option<ExportedPath>, Error> {
        self.next_path_inner(visitor, Some(raw))
    }

    fn next_path_inner(
        &mut self,
        visitor: &mut dyn nar::Visitor,
        raw: Option<&mut dyn Write>,
    ) -> Result<Option<ExportedPath>, Error> {
        if self.done {
            return Ok(None);
        }
        let index = self.index;
        let io_err = |e: io::Error| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                Error::Truncated { index }
            } else {
                Error::Io(e)
            }
        };
        match wire::read_u64(&mut self.r).map_err(io_err)? {
            0 => {
                self.done = true;
                return Ok(None);
            }
            1 => {}
            found => return Err(Error::NotExport { index, found }),
        }
        let mut sink = io::sink();
        let copy: &mut dyn Write = match raw {
            Some(raw) => raw,
            None => &mut sink,
        };
        let mut hashing = Tee::new(&mut self.r, HashingWriter::new(Algorithm::Sha256, copy));
        let nar_size = nar::parse(&mut hashing, visitor).map_err(|source| Error::Nar { index, source })?;
        let (nar_hash, _, _) = hashing.into_out().finish();
        let magic = wire::read_u64(&mut self.r).map_err(io_err)?;
        if magic != EXPORT_MAGIC {
            return Err(Error::BadMagic { index, found: magic });
        }
        let path = self.read_path(index, "store path")?;
        let count = wire::read_u64(&mut self.r).map_err(io_err)?;
        let mut references = Vec::new();
        for _ in 0..count {
            references.push(self.read_path(index, "reference")?);
        }
        let deriver = self.read_string(index, "deriver")?;
        let deriver = if deriver.is_empty() {
            None
        } else {
            Some(self.store_dir.parse_path(&deriver).map_err(|source| Error::StorePath {
                index,
                what: "deriver",
                source,
            })?)
        };
        if wire::read_u64(&mut self.r).map_err(io_err)? == 1 {
            self.read_string(index, "legacy signature")?;
        }
        self.index += 1;
        Ok(Some(ExportedPath { path, references, deriver, nar_hash, nar_size }))
    }

    fn read_string(&mut self, index: usize, what: &'static str) -> Result<String, Error> {
        let bytes = wire::read_bytes(&mut self.r, MAX_PATH_LEN).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                Error::Truncated { index }
            } else {
                Error::Field { index, what, source: e }
            }
        })?;
        String::from_utf8(bytes).map_err(|_| Error::Field {
            index,
            what,
            source: io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"),
        })
    }

    fn read_path(&mut self, index: usize, what: &'static str) -> Result<StorePath, Error> {
        let s = self.read_string(index, what)?;
        self.store_dir.parse_path(&s).map_err(|source| Error::StorePath { index, what, source })
    }
}

/// A visitor that only lets the parser check the archive.
pub struct CheckOnly;

impl nar::Visitor for CheckOnly {
    fn regular(&mut self, _: &[u8], _: bool, _: u64, _: u64, _: &mut dyn Read) -> io::Result<()> {
        Ok(())
    }
    fn symlink(&mut self, _: &[u8], _: &[u8]) -> io::Result<()> {
        Ok(())
    }
    fn enter_directory(&mut self, _: &[u8]) -> io::Result<()> {
        Ok(())
    }
}
