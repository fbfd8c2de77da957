//! Finding store references that a byte rewrite cannot reach.
//!
//! [`crate::Relocation`] rewrites the bytes of a file as they are. A store
//! path inside compressed data (a gzipped man page, an xz'd kernel module, a
//! class file inside a jar) is not among those bytes, so it stays pointing at
//! the old store directory. [`scan_compressed`] decompresses a file as a
//! stream and reports the first occurrence of a needle (the old store
//! directory) so the caller can warn about it.
//!
//! Formats, told apart by their first bytes ([`sniff`], [`SNIFF_LEN`]):
//!
//! | format | magic | what is scanned |
//! |---|---|---|
//! | gzip | `1f 8b 08` | every member of a (possibly multi-member) stream |
//! | xz | `fd 37 7a 58 5a 00` | every concatenated stream |
//! | zip, jar | `50 4b 03 04` | every entry listed in the central directory: stored entries as they are, deflated ones inflated |
//!
//! Nested archives (a jar inside a zip) are scanned as the bytes of their
//! entry only. Memory stays bounded: a gzip file in memory or a zip entry
//! whose inflated size is at most [`WHOLE_INFLATE_MAX`] is inflated in one
//! call (libdeflate, buffers reused from file to file); anything larger flows
//! through a [`SCAN_CHUNK_LEN`] window plus the needle's length, never a whole
//! file, and xz's decoder may use at most [`XZ_MEMORY_LIMIT`]. At most
//! [`MAX_DECOMPRESSED_BYTES`] decompressed bytes are looked at per file (a
//! defence against decompression bombs); reaching that limit without a hit
//! is [`ScanError::LimitReached`], since the rest was not checked.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use memchr::memmem;
use thiserror::Error;

mod zip;

/// How many leading bytes [`sniff`] needs to recognise every format.
pub const SNIFF_LEN: usize = 6;
/// Decompressed bytes scanned per file before giving up (1 GiB).
pub const MAX_DECOMPRESSED_BYTES: u64 = 1 << 30;
/// Longest needle accepted; store directories are far shorter.
pub const MAX_NEEDLE_LEN: usize = 4096;
/// Memory the xz decoder may use (xz -9 needs 65 MiB).
pub const XZ_MEMORY_LIMIT: u64 = 256 << 20;
/// Decompressed bytes searched at a time.
pub const SCAN_CHUNK_LEN: usize = 64 * 1024;
/// Decompressed sizes up to which a gzip member in memory or a zip entry is
/// inflated in one call (libdeflate) rather than streamed: about twice as fast
/// on the many small files of a closure (man pages, class files), with buffers
/// reused from file to file.
pub const WHOLE_INFLATE_MAX: usize = 2 << 20;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b, 0x08];
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

/// A compressed format [`scan_compressed`] looks inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Compression {
    Gzip,
    Xz,
    /// Zip archives, including jar files.
    Zip,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Xz => "xz",
            Self::Zip => "zip",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The first place a needle was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub path: PathBuf,
    pub format: Compression,
    /// The zip entry it is in (names that are not UTF-8 are converted lossily).
    pub member: Option<String>,
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ScanError {
    #[error("the needle is {0} bytes; it must be 1 to {MAX_NEEDLE_LEN}")]
    InvalidNeedle(usize),
    #[error("cannot read {}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}{}: cannot decompress its {format} data", .path.display(), entry(.member.as_deref()))]
    Decode {
        path: PathBuf,
        format: Compression,
        member: Option<String>,
        #[source]
        source: io::Error,
    },
    #[error("{}: malformed zip archive at byte {offset}: {reason}", .path.display())]
    MalformedZip { path: PathBuf, offset: u64, reason: &'static str },
    #[error("{}{}: the entry is encrypted and cannot be scanned", .path.display(), entry(Some(.member)))]
    EncryptedZipEntry { path: PathBuf, member: String },
    #[error("{}{}: compression method {method} is not supported, the entry was not scanned", .path.display(), entry(Some(.member)))]
    UnsupportedZipMethod { path: PathBuf, member: String, method: u16 },
    #[error("{}: stopped after {limit} decompressed bytes without a match; the rest was not scanned", .path.display())]
    LimitReached { path: PathBuf, limit: u64 },
}

fn entry(member: Option<&str>) -> String {
    member.map(|m| format!(" (entry {m:?})")).unwrap_or_default()
}

/// The compressed format `first_bytes` (the first [`SNIFF_LEN`] bytes of a
/// file, or fewer if the file is shorter) starts with, if any.
pub fn sniff(first_bytes: &[u8]) -> Option<Compression> {
    if first_bytes.starts_with(GZIP_MAGIC) {
        Some(Compression::Gzip)
    } else if first_bytes.starts_with(XZ_MAGIC) {
        Some(Compression::Xz)
    } else if first_bytes.starts_with(ZIP_MAGIC) {
        Some(Compression::Zip)
    } else {
        None
    }
}

/// Looks for `needle` inside the compressed data of the file at `path`,
/// scanning at most [`MAX_DECOMPRESSED_BYTES`]. A file in none of the
/// supported formats gives `Ok(None)`; so does one that decompresses fully
/// without containing the needle. An occurrence found before a corruption is
/// still reported as found.
pub fn scan_compressed(path: &Path, needle: &[u8]) -> Result<Option<Finding>, ScanError> {
    scan_compressed_with_limit(path, needle, MAX_DECOMPRESSED_BYTES)
}

/// [`scan_compressed`] with a different limit on decompressed bytes.
pub fn scan_compressed_with_limit(path: &Path, needle: &[u8], limit: u64) -> Result<Option<Finding>, ScanError> {
    check_needle(needle)?;
    let file = File::open(path).map_err(|source| ScanError::Io { path: path.to_owned(), source })?;
    scan_file(file, path, &mut Search::new(needle, limit))
}

/// Scans an open file; `path` names it in findings and errors.
fn scan_file(mut file: File, path: &Path, search: &mut Search<'_>) -> Result<Option<Finding>, ScanError> {
    let io_error = |source| ScanError::Io { path: path.to_owned(), source };
    let mut magic = [0; SNIFF_LEN];
    let magic_len = read_full(&mut file, &mut magic).map_err(io_error)?;
    let Some(format) = sniff(&magic[..magic_len]) else {
        return Ok(None);
    };
    search.remaining = search.limit;
    if format == Compression::Zip {
        let len = file.metadata().map_err(io_error)?.len();
        let member = zip::scan(path, &file, len, search)?;
        return Ok(member.map(|m| Finding { path: path.to_owned(), format, member: Some(m) }));
    }
    let input = Prefixed::new(&magic[..magic_len], BufReader::with_capacity(SCAN_CHUNK_LEN, file));
    scan_stream(path, format, input, search)
}

/// [`scan_compressed`] for a file whose contents are already in memory (as
/// they are while unpacking); `path` only names the file in findings and errors.
pub fn scan_compressed_bytes(path: &Path, data: &[u8], needle: &[u8]) -> Result<Option<Finding>, ScanError> {
    BytesScanner::new(needle)?.scan(path, data)
}

/// [`scan_compressed_bytes`] for many files one after another, reusing one
/// search window instead of allocating and zeroing it for every file.
pub struct BytesScanner<'n> {
    search: Search<'n>,
}

impl fmt::Debug for BytesScanner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BytesScanner").field("needle", &self.search.finder.needle()).finish_non_exhaustive()
    }
}

impl<'n> BytesScanner<'n> {
    pub fn new(needle: &'n [u8]) -> Result<Self, ScanError> {
        check_needle(needle)?;
        Ok(Self { search: Search::new(needle, MAX_DECOMPRESSED_BYTES) })
    }

    /// Scans the file at `read_from` (a file not yet under its final name);
    /// `path` names it in findings and errors.
    pub fn scan_file(&mut self, read_from: &Path, path: &Path) -> Result<Option<Finding>, ScanError> {
        let file = File::open(read_from).map_err(|source| ScanError::Io { path: path.to_owned(), source })?;
        scan_file(file, path, &mut self.search)
    }

    /// Scans one file's contents; `path` only names it in findings and errors.
    pub fn scan(&mut self, path: &Path, data: &[u8]) -> Result<Option<Finding>, ScanError> {
        let Some(format) = sniff(&data[..data.len().min(SNIFF_LEN)]) else {
            return Ok(None);
        };
        let search = &mut self.search;
        search.remaining = search.limit;
        if format == Compression::Zip {
            let member = zip::scan(path, &data, data.len() as u64, search)?;
            return Ok(member.map(|m| Finding { path: path.to_owned(), format, member: Some(m) }));
        }
        if format == Compression::Gzip {
            match search.gzip_whole(data) {
                Some(Outcome::Found) => return Ok(Some(Finding { path: path.to_owned(), format, member: None })),
                Some(_) => return Ok(None),
                None => {}
            }
        }
        scan_stream(path, format, data, search)
    }
}

fn check_needle(needle: &[u8]) -> Result<(), ScanError> {
    if needle.is_empty() || needle.len() > MAX_NEEDLE_LEN {
        return Err(ScanError::InvalidNeedle(needle.len()));
    }
    Ok(())
}

/// Searches the decompressed data of a gzip or xz stream (`format` is one of those).
fn scan_stream(
    path: &Path,
    format: Compression,
    input: impl io::BufRead,
    search: &mut Search<'_>,
) -> Result<Option<Finding>, ScanError> {
    let decode_error = |source| ScanError::Decode { path: path.to_owned(), format, member: None, source };
    let outcome = if format == Compression::Gzip {
        search.search(flate2::bufread::MultiGzDecoder::new(input))
    } else {
        let stream = liblzma::stream::Stream::new_stream_decoder(XZ_MEMORY_LIMIT, liblzma::stream::CONCATENATED)
            .map_err(|e| decode_error(e.into()))?;
        search.search(liblzma::bufread::XzDecoder::new_stream(input, stream))
    };
    match outcome.map_err(decode_error)? {
        Outcome::Found => Ok(Some(Finding { path: path.to_owned(), format, member: None })),
        Outcome::NotFound => Ok(None),
        Outcome::LimitReached => Err(ScanError::LimitReached { path: path.to_owned(), limit: search.limit }),
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(mut reader: impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The magic bytes already read, then the rest of the file, as one `BufRead`.
struct Prefixed<'a, R> {
    prefix: &'a [u8],
    rest: R,
}

impl<'a, R> Prefixed<'a, R> {
    fn new(prefix: &'a [u8], rest: R) -> Self {
        Self { prefix, rest }
    }
}

impl<R: io::BufRead> Read for Prefixed<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.prefix.is_empty() {
            return self.rest.read(buf);
        }
        self.prefix.read(buf)
    }
}

impl<R: io::BufRead> io::BufRead for Prefixed<'_, R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.prefix.is_empty() {
            self.rest.fill_buf()
        } else {
            Ok(self.prefix)
        }
    }

    fn consume(&mut self, amount: usize) {
        if self.prefix.is_empty() {
            self.rest.consume(amount);
        } else {
            self.prefix = &self.prefix[amount.min(self.prefix.len())..];
        }
    }
}

enum Outcome {
    Found,
    NotFound,
    LimitReached,
}

/// A needle search over decompressed streams, sharing one window and one
/// byte budget across all the streams of a file.
struct Search<'n> {
    finder: memmem::Finder<'n>,
    window: Vec<u8>,
    /// The budget for the whole file, and what is left of it.
    limit: u64,
    remaining: u64,
    /// Whole-buffer inflating ([`WHOLE_INFLATE_MAX`]) and its buffers.
    inflater: libdeflater::Decompressor,
    /// Compressed bytes read for [`Search::deflate_whole`].
    input: Vec<u8>,
    inflated: Vec<u8>,
}

impl<'n> Search<'n> {
    fn new(needle: &'n [u8], limit: u64) -> Self {
        Self {
            finder: memmem::Finder::new(needle),
            window: vec![0; SCAN_CHUNK_LEN + needle.len() - 1],
            limit,
            remaining: limit,
            inflater: libdeflater::Decompressor::new(),
            input: Vec::new(),
            inflated: Vec::new(),
        }
    }

    /// Room for `size` inflated bytes, if that is within [`WHOLE_INFLATE_MAX`] and the budget.
    fn room(inflated: &mut Vec<u8>, size: u64, remaining: u64) -> Option<&mut [u8]> {
        let size = usize::try_from(size).ok().filter(|&s| s <= WHOLE_INFLATE_MAX && s as u64 <= remaining)?;
        if inflated.len() < size {
            inflated.resize(size, 0);
        }
        Some(&mut inflated[..size])
    }

    /// Searches the first `n` inflated bytes, charging them to the budget.
    fn search_inflated(&mut self, n: usize) -> Outcome {
        self.remaining -= n as u64;
        if self.finder.find(&self.inflated[..n]).is_some() {
            Outcome::Found
        } else {
            Outcome::NotFound
        }
    }

    /// Searches a whole gzip file in one call when its trailer says it is
    /// small enough. `None` when the streaming decoder must do it: too large,
    /// damaged (the streaming decoder names the error), or possibly more than
    /// one member. libdeflate reads only the first member, so the gzip magic
    /// must not occur after the first header (a later member would start with
    /// it; by chance it occurs in about one man page in ten thousand), and the
    /// data must have the size the file's trailer gives.
    fn gzip_whole(&mut self, data: &[u8]) -> Option<Outcome> {
        let trailer = data.get(data.len().checked_sub(8)?..)?;
        let size = u32::from_le_bytes(trailer[4..].try_into().ok()?);
        if memmem::find(data.get(GZIP_MAGIC.len()..)?, GZIP_MAGIC).is_some() {
            return None;
        }
        let room = Self::room(&mut self.inflated, u64::from(size), self.remaining)?;
        let n = self.inflater.gzip_decompress(data, room).ok()?;
        if n != size as usize {
            return None;
        }
        Some(self.search_inflated(n))
    }

    /// Searches the raw deflate data in `self.input` (a zip entry's), which
    /// should inflate to `size` bytes, in one call. `None` when the streaming
    /// decoder must do it: too large, damaged, or larger than `size` says.
    fn deflate_whole(&mut self, size: u64) -> Option<Outcome> {
        let room = Self::room(&mut self.inflated, size, self.remaining)?;
        let n = self.inflater.deflate_decompress(&self.input, room).ok()?;
        Some(self.search_inflated(n))
    }

    /// Searches `reader` to its end, the budget, or the first occurrence.
    /// The last `needle.len() - 1` bytes of each read stay in the window so an
    /// occurrence split between reads is still found.
    fn search(&mut self, mut reader: impl Read) -> io::Result<Outcome> {
        let keep = self.finder.needle().len() - 1;
        let mut kept = 0;
        loop {
            let want = usize::try_from(self.remaining).map_or(SCAN_CHUNK_LEN, |r| r.min(SCAN_CHUNK_LEN));
            if want == 0 {
                let mut probe = [0; 1];
                return Ok(if read_full(&mut reader, &mut probe)? == 0 {
                    Outcome::NotFound
                } else {
                    Outcome::LimitReached
                });
            }
            let n = match reader.read(&mut self.window[kept..kept + want]) {
                Ok(0) => return Ok(Outcome::NotFound),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.remaining -= n as u64;
            let end = kept + n;
            if self.finder.find(&self.window[..end]).is_some() {
                return Ok(Outcome::Found);
            }
            kept = keep.min(end);
            self.window.copy_within(end - kept..end, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out its data in reads of the given sizes, cycling.
    struct Chunked<'a> {
        data: &'a [u8],
        sizes: &'a [usize],
        next: usize,
    }

    impl Read for Chunked<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let size = self.sizes[self.next % self.sizes.len()];
            self.next += 1;
            let n = size.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn search(data: &[u8], sizes: &[usize], limit: u64) -> Outcome {
        Search::new(b"/nix/store", limit).search(Chunked { data, sizes, next: 0 }).unwrap()
    }

    #[test]
    fn sniffs_magic_numbers() {
        assert_eq!(sniff(b"\x1f\x8b\x08\x00\x00\x00"), Some(Compression::Gzip));
        assert_eq!(sniff(b"\xfd7zXZ\x00"), Some(Compression::Xz));
        assert_eq!(sniff(b"PK\x03\x04\x14\x00"), Some(Compression::Zip));
        assert_eq!(sniff(b"\x7fELF\x02\x01"), None);
        assert_eq!(sniff(b"\xfd7zXZ"), None);
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"PK\x05\x06"), None, "an empty zip has nothing to scan");
    }

    #[test]
    fn finds_needles_split_between_reads() {
        let mut data = vec![b'x'; 3 * SCAN_CHUNK_LEN];
        for at in [0, 5, SCAN_CHUNK_LEN - 4, SCAN_CHUNK_LEN - 1, 2 * SCAN_CHUNK_LEN - 9, 3 * SCAN_CHUNK_LEN - 10] {
            data.fill(b'x');
            data[at..at + 10].copy_from_slice(b"/nix/store");
            for sizes in [&[SCAN_CHUNK_LEN][..], &[1], &[3, 7, 1000], &[SCAN_CHUNK_LEN - 3, 5]] {
                assert!(matches!(search(&data, sizes, u64::MAX), Outcome::Found), "at {at}, sizes {sizes:?}");
            }
        }
        data.fill(b'x');
        data[100..109].copy_from_slice(b"/nix/stor");
        assert!(matches!(search(&data, &[1, 9, 99], u64::MAX), Outcome::NotFound));
    }

    #[test]
    fn stops_at_the_limit() {
        let mut data = vec![b'x'; 1000];
        data[500..510].copy_from_slice(b"/nix/store");
        assert!(matches!(search(&data, &[64], 510), Outcome::Found));
        assert!(matches!(search(&data, &[64], 509), Outcome::LimitReached));
        assert!(matches!(search(&data[..509], &[64], 509), Outcome::NotFound), "ending exactly at the limit");
    }

    #[test]
    fn prefixed_reader_replays_the_magic() {
        let mut r = Prefixed::new(b"abc", &b"defg"[..]);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abcdefg");
    }
}
