//! Extracting one file from a NAR, streaming.

use std::io::{self, Read, Write};

use thiserror::Error;

use super::read::{parse, Error, Visitor};

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CatError {
    #[error(transparent)]
    Nar(#[from] Error),
    #[error("{0:?} is not in the archive")]
    NotFound(String),
    #[error("{path:?} is a {kind}, not a regular file")]
    NotAFile { path: String, kind: &'static str },
}

/// Copies the contents of the regular file at `path` (leading `/` optional;
/// empty for a NAR whose root is a file) to `out`. Returns its size.
pub fn cat(r: &mut impl Read, path: &str, out: &mut dyn Write) -> Result<u64, CatError> {
    let want: Vec<u8> = path.trim_start_matches('/').trim_end_matches('/').as_bytes().to_vec();
    let mut v = Cat { want, out, found: None };
    parse(r, &mut v)?;
    match v.found {
        Some(Found::File(size)) => Ok(size),
        Some(Found::Other(kind)) => Err(CatError::NotAFile { path: path.to_owned(), kind }),
        None => Err(CatError::NotFound(path.to_owned())),
    }
}

enum Found {
    File(u64),
    Other(&'static str),
}

struct Cat<'a> {
    want: Vec<u8>,
    out: &'a mut dyn Write,
    found: Option<Found>,
}

impl Visitor for Cat<'_> {
    fn regular(&mut self, path: &[u8], _: bool, size: u64, _: u64, contents: &mut dyn Read) -> io::Result<()> {
        if path == self.want {
            io::copy(contents, self.out)?;
            self.found = Some(Found::File(size));
        }
        Ok(())
    }

    fn symlink(&mut self, path: &[u8], _: &[u8]) -> io::Result<()> {
        if path == self.want {
            self.found = Some(Found::Other("symlink"));
        }
        Ok(())
    }

    fn enter_directory(&mut self, path: &[u8]) -> io::Result<()> {
        if path == self.want {
            self.found = Some(Found::Other("directory"));
        }
        Ok(())
    }
}
