//! Reading a cache's NAR against its narinfo: FileHash and FileSize of the file as stored, and
//! NarHash and NarSize after decompression, for `narwhal verify` and its repair, `push --from`
//! and the server's PUT. The comparison is [`Digests::check`], the one check of a NAR against its
//! narinfo.

use std::io::{self, Write};

use narwhal_formats::hash::{Algorithm, Hash, HashingWriter};
use narwhal_formats::narinfo::{Digests, Mismatch, NarInfo};
use narwhal_formats::tee::Tee;

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

/// What [`measure`] read.
#[derive(Debug)]
pub struct Measured {
    pub nar_hash: Hash,
    pub nar_size: u64,
    pub file_hash: Hash,
    pub file_size: u64,
    /// Why the file did not decompress, when it did not (the NAR's digests are then those of what
    /// did, so a check names the field that differs).
    pub not_decoded: Option<io::Error>,
}

impl Measured {
    pub fn digests(&self) -> Digests {
        Digests {
            nar_hash: self.nar_hash,
            nar_size: self.nar_size,
            file_hash: Some(self.file_hash),
            file_size: Some(self.file_size),
        }
    }

    /// FileHash and FileSize alone: checked before the rest, since a file that does not
    /// decompress is most likely not the one that was signed.
    pub fn check_file(&self, info: &NarInfo) -> Result<(), Mismatch> {
        Digests { nar_hash: info.nar_hash, nar_size: info.nar_size, ..self.digests() }.check(info)
    }
}

/// Reads `key` from `cache` (the NAR of `info`), copying its bytes into `copy`, hashed in the
/// algorithms the narinfo names. FileHash and FileSize are always measured; NarHash and NarSize
/// only with `contents` (else they are the narinfo's own, so [`Digests::check`] compares only
/// what was measured).
pub fn measure(
    cache: &dyn BinaryCache,
    key: &str,
    info: &NarInfo,
    contents: bool,
    copy: &mut (dyn Write + Send),
) -> Result<Measured, MeasureError> {
    let compression: Compression = info.compression().parse()?;
    let url = format!("{}/{key}", cache.url());
    let read_err = |source| MeasureError::Read { url: url.clone(), source };
    let mut reader = cache.open(key)?;
    let file_algorithm = info.file_hash.map_or(Algorithm::Sha256, |h| h.algorithm());
    let mut file = HashingWriter::new(file_algorithm, copy);
    let mut not_decoded = None;
    let (nar_hash, nar_size) = if contents {
        let mut nar = HashingWriter::new(info.nar_hash.algorithm(), io::sink());
        let decoded = {
            let tee = Tee::new(&mut reader, &mut file);
            compression.decoder(tee).and_then(|mut decoder| io::copy(&mut decoder, &mut nar))
        };
        let (hash, size, _) = nar.finish();
        // What follows the compressed stream (or what did not decode) is part of the file too: a
        // file that does not decode is read to its end, so that the FileHash it has is what the
        // check reports, and a read that keeps failing is an error here.
        io::copy(&mut reader, &mut file).map_err(read_err)?;
        not_decoded = decoded.err();
        (hash, size)
    } else {
        io::copy(&mut reader, &mut file).map_err(read_err)?;
        (info.nar_hash, info.nar_size)
    };
    let (file_hash, file_size, _) = file.finish();
    Ok(Measured { nar_hash, nar_size, file_hash, file_size, not_decoded })
}
