//! Reading a cache's NAR against its narinfo: FileHash and FileSize of the file as stored, and
//! NarHash and NarSize after decompression, for `narwhal verify` and its repair. The comparison
//! is [`Digests::check`], the one check of a NAR against its narinfo.

use std::io::{self, Read, Write};

use narwhal_formats::hash::{Algorithm, HashingWriter};
use narwhal_formats::narinfo::{Digests, NarInfo};

use crate::{BinaryCache, Compression, StoreError};

/// Why a NAR could not be measured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MeasureError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Compression(#[from] crate::compression::UnknownCompression),
    /// Reading the file, or writing its copy, failed.
    #[error("reading {url}")]
    Read {
        url: String,
        #[source]
        source: io::Error,
    },
}

/// Reads `key` from `cache` (the NAR of `info`), copying its bytes into `copy`. FileHash and
/// FileSize are always measured; NarHash and NarSize only with `contents` (else they are the
/// narinfo's own, so [`Digests::check`] compares only what was measured). A file that does not
/// decompress gives the NarHash of what did, so the check names the field that differs.
pub fn measure(
    cache: &dyn BinaryCache,
    key: &str,
    info: &NarInfo,
    contents: bool,
    copy: &mut (dyn Write + Send),
) -> Result<Digests, MeasureError> {
    let compression: Compression = info.compression().parse()?;
    let url = format!("{}/{key}", cache.url());
    let read_err = |source| MeasureError::Read { url: url.clone(), source };
    let mut reader = cache.open(key)?;
    let mut file = HashingWriter::new(Algorithm::Sha256, copy);
    let (nar_hash, nar_size) = if contents {
        let mut nar = HashingWriter::new(Algorithm::Sha256, io::sink());
        let decoded = {
            let tee = Tee { inner: &mut reader, copy: &mut file };
            compression.decoder(tee).and_then(|mut decoder| io::copy(&mut decoder, &mut nar))
        };
        let (hash, size, _) = nar.finish();
        // What follows the compressed stream (or what did not decode) is part of the file too: a
        // file that does not decode is read to its end, so that the FileHash it has is what the
        // check reports, and a read that keeps failing is an error here.
        io::copy(&mut reader, &mut file).map_err(read_err)?;
        drop(decoded);
        (hash, size)
    } else {
        io::copy(&mut reader, &mut file).map_err(read_err)?;
        (info.nar_hash, info.nar_size)
    };
    let (file_hash, file_size, _) = file.finish();
    Ok(Digests { nar_hash, nar_size, file_hash: Some(file_hash), file_size: Some(file_size) })
}

/// A reader that copies what it reads into `copy`.
struct Tee<'a, R: Read + ?Sized, W: Write> {
    inner: &'a mut R,
    copy: &'a mut W,
}

impl<R: Read + ?Sized, W: Write> Read for Tee<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}
