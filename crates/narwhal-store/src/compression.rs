//! NAR compression as named in narinfo files.

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    Xz,
    Zstd,
    Bzip2,
    Brotli,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("unsupported compression {0:?} (narwhal reads none, xz, zstd, bzip2 and br)")]
pub struct UnknownCompression(pub String);

impl FromStr for Compression {
    type Err = UnknownCompression;
    fn from_str(s: &str) -> Result<Self, UnknownCompression> {
        match s {
            "none" | "" => Ok(Self::None),
            "xz" => Ok(Self::Xz),
            "zstd" => Ok(Self::Zstd),
            "bzip2" => Ok(Self::Bzip2),
            "br" => Ok(Self::Brotli),
            other => Err(UnknownCompression(other.to_owned())),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Xz => "xz",
            Self::Zstd => "zstd",
            Self::Bzip2 => "bzip2",
            Self::Brotli => "br",
        })
    }
}

impl Compression {
    /// The file extension Nix gives NARs compressed this way (`.nar.xz`).
    pub fn extension(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Xz => ".xz",
            Self::Zstd => ".zst",
            Self::Bzip2 => ".bz2",
            Self::Brotli => ".br",
        }
    }

    /// A reader that decompresses `r`.
    pub fn decoder<'a>(self, r: impl Read + Send + 'a) -> io::Result<Box<dyn Read + Send + 'a>> {
        Ok(match self {
            Self::None => Box::new(r),
            Self::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(r)),
            Self::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
            Self::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(r)),
            Self::Brotli => Box::new(brotli_decompressor::Decompressor::new(r, 64 * 1024)),
        })
    }
}
