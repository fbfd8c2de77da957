//! The zip walk behind [`super::scan_compressed`].
//!
//! The central directory, found through the end-of-central-directory record
//! (and its zip64 form), is the authority on where each entry's data is and
//! how long it is: local headers of streamed archives (jar tools, `zip -`)
//! leave the sizes zero and put them in a data descriptor after the data. For
//! each entry, the local header only gives the lengths of the name and extra
//! field in front of the data. Data is read with positional reads, so one file
//! handle serves both the directory walk and the entries.
//!
//! Layouts (all integers little-endian), from PKWARE's APPNOTE.TXT:
//!
//! ```text
//! end of central directory   sig 50 4b 05 06, .., entries u16 @10, cd size u32 @12, cd offset u32 @16,
//!                            comment length u16 @20, comment           (22 bytes + comment)
//! zip64 locator              sig 50 4b 06 07, .., zip64 end offset u64 @8 (20 bytes, right before the end record)
//! zip64 end of cd            sig 50 4b 06 06, .., cd size u64 @40, cd offset u64 @48 (56 bytes)
//! central directory entry    sig 50 4b 01 02, .., flags u16 @8, method u16 @10, compressed size u32 @20,
//!                            uncompressed size u32 @24, name length u16 @28, extra length u16 @30,
//!                            comment length u16 @32, local header offset u32 @42, name, extra, comment
//! local file header          sig 50 4b 03 04, .., name length u16 @26, extra length u16 @28, name, extra, data
//! zip64 extra field          id 0x0001, then only the fields that were 0xffffffff: uncompressed size u64,
//!                            compressed size u64, local header offset u64
//! ```

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{Compression, Outcome, ScanError, Search, WHOLE_INFLATE_MAX};

const EOCD_SIG: u32 = 0x0605_4b50;
const EOCD_LEN: usize = 22;
const MAX_COMMENT_LEN: usize = 0xffff;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_LOCATOR_LEN: usize = 20;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const ZIP64_EOCD_LEN: usize = 56;
const CD_ENTRY_SIG: u32 = 0x0201_4b50;
const CD_ENTRY_LEN: usize = 46;
const LOCAL_HEADER_SIG: u32 = 0x0403_4b50;
const LOCAL_HEADER_LEN: usize = 30;
const ZIP64_EXTRA_ID: u16 = 0x0001;
/// Marks a 32-bit field whose value is in the zip64 extra field.
const ZIP64_MARKER: u32 = 0xffff_ffff;
const FLAG_ENCRYPTED: u16 = 1;
const METHOD_STORED: u16 = 0;
const METHOD_DEFLATED: u16 = 8;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | (u64::from(u32_at(b, at + 4)) << 32)
}

/// Entries the walk skipped; reported only if nothing was found elsewhere.
enum Skipped {
    Encrypted(String),
    Method(String, u16),
}

/// Where an archive's bytes are read from, by offset: a file or memory.
pub(super) trait Positional {
    /// Reads at most `buf.len()` bytes at `offset`; 0 at the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

impl Positional for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }
}

impl Positional for &[u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let start = usize::try_from(offset).map_or(self.len(), |o| o.min(self.len()));
        let n = buf.len().min(self.len() - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
}

struct Archive<'a> {
    path: &'a Path,
    file: &'a dyn Positional,
    len: u64,
}

impl Archive<'_> {
    fn malformed(&self, offset: u64, reason: &'static str) -> ScanError {
        ScanError::MalformedZip { path: self.path.to_owned(), offset, reason }
    }

    /// Reads `buf.len()` bytes at `offset`, which the caller has checked lie
    /// inside the file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), ScanError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.file.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => {
                    let source = io::ErrorKind::UnexpectedEof.into();
                    return Err(ScanError::Io { path: self.path.to_owned(), source });
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(ScanError::Io { path: self.path.to_owned(), source }),
            }
        }
        Ok(())
    }

    /// `len` bytes at `offset`, or an error if they run past the end.
    fn check_span(&self, offset: u64, len: u64, reason: &'static str) -> Result<(), ScanError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(self.malformed(offset, reason)),
        }
    }

    /// The offset and size of the central directory.
    fn central_directory(&self) -> Result<(u64, u64), ScanError> {
        let tail_len = self.len.min((EOCD_LEN + MAX_COMMENT_LEN) as u64);
        let tail_start = self.len - tail_len;
        let mut tail = vec![0; tail_len as usize];
        self.read_at(&mut tail, tail_start)?;
        // The last record whose comment fits in the file.
        let at = (0..=tail.len().saturating_sub(EOCD_LEN))
            .rev()
            .find(|&i| {
                tail.len() >= i + EOCD_LEN
                    && u32_at(&tail, i) == EOCD_SIG
                    && i + EOCD_LEN + usize::from(u16_at(&tail, i + 20)) <= tail.len()
            })
            .ok_or_else(|| self.malformed(self.len, "no end of central directory record"))?;
        let eocd = &tail[at..at + EOCD_LEN];
        let eocd_offset = tail_start + at as u64;
        let (mut cd_size, mut cd_offset) = (u64::from(u32_at(eocd, 12)), u64::from(u32_at(eocd, 16)));
        if at >= ZIP64_LOCATOR_LEN && u32_at(&tail, at - ZIP64_LOCATOR_LEN) == ZIP64_LOCATOR_SIG {
            let zip64_offset = u64_at(&tail, at - ZIP64_LOCATOR_LEN + 8);
            self.check_span(zip64_offset, ZIP64_EOCD_LEN as u64, "zip64 end of central directory past the end")?;
            let mut record = [0; ZIP64_EOCD_LEN];
            self.read_at(&mut record, zip64_offset)?;
            if u32_at(&record, 0) != ZIP64_EOCD_SIG {
                return Err(self.malformed(zip64_offset, "bad zip64 end of central directory signature"));
            }
            (cd_size, cd_offset) = (u64_at(&record, 40), u64_at(&record, 48));
        }
        match cd_offset.checked_add(cd_size) {
            Some(end) if end <= eocd_offset => Ok((cd_offset, cd_size)),
            _ => Err(self.malformed(eocd_offset, "central directory lies outside the file")),
        }
    }
}

/// Scans every entry; returns the name of the first that holds the needle.
pub(super) fn scan(
    path: &Path,
    file: &dyn Positional,
    len: u64,
    search: &mut Search<'_>,
) -> Result<Option<String>, ScanError> {
    let archive = Archive { path, file, len };
    let (cd_offset, cd_size) = archive.central_directory()?;
    let cd_end = cd_offset + cd_size;
    let mut skipped = None;
    let mut pos = cd_offset;
    let mut fixed = [0; CD_ENTRY_LEN];
    let mut name_extra = Vec::new();
    while pos < cd_end {
        if cd_end - pos < CD_ENTRY_LEN as u64 {
            return Err(archive.malformed(pos, "central directory entry cut short"));
        }
        archive.read_at(&mut fixed, pos)?;
        if u32_at(&fixed, 0) != CD_ENTRY_SIG {
            return Err(archive.malformed(pos, "bad central directory entry signature"));
        }
        let (flags, method) = (u16_at(&fixed, 8), u16_at(&fixed, 10));
        let name_len = usize::from(u16_at(&fixed, 28));
        let extra_len = usize::from(u16_at(&fixed, 30));
        let comment_len = u64::from(u16_at(&fixed, 32));
        let variable_len = (name_len + extra_len) as u64;
        let entry_end = pos + CD_ENTRY_LEN as u64 + variable_len + comment_len;
        if entry_end > cd_end {
            return Err(archive.malformed(pos, "central directory entry runs past the directory"));
        }
        name_extra.resize(name_len + extra_len, 0);
        archive.read_at(&mut name_extra, pos + CD_ENTRY_LEN as u64)?;
        let (name, extra) = name_extra.split_at(name_len);
        let name = String::from_utf8_lossy(name).into_owned();
        let mut compressed = u64::from(u32_at(&fixed, 20));
        let mut uncompressed = u64::from(u32_at(&fixed, 24));
        let mut header = u64::from(u32_at(&fixed, 42));
        apply_zip64_extra(extra, &mut uncompressed, &mut compressed, &mut header)
            .ok_or_else(|| archive.malformed(pos, "zip64 extra field too short"))?;
        pos = entry_end;

        if flags & FLAG_ENCRYPTED != 0 {
            skipped.get_or_insert(Skipped::Encrypted(name));
            continue;
        }
        if method != METHOD_STORED && method != METHOD_DEFLATED {
            skipped.get_or_insert(Skipped::Method(name, method));
            continue;
        }
        archive.check_span(header, LOCAL_HEADER_LEN as u64, "local header past the end of the file")?;
        let mut local = [0; LOCAL_HEADER_LEN];
        archive.read_at(&mut local, header)?;
        if u32_at(&local, 0) != LOCAL_HEADER_SIG {
            return Err(archive.malformed(header, "bad local file header signature"));
        }
        let data = header + LOCAL_HEADER_LEN as u64 + u64::from(u16_at(&local, 26)) + u64::from(u16_at(&local, 28));
        archive.check_span(data, compressed, "entry data runs past the end of the file")?;
        let raw = Section { file, pos: data, end: data + compressed };
        let small = compressed <= WHOLE_INFLATE_MAX as u64 && uncompressed <= WHOLE_INFLATE_MAX as u64;
        let whole = if method == METHOD_DEFLATED && small {
            search.input.resize(compressed as usize, 0);
            archive.read_at(&mut search.input, data)?;
            search.deflate_whole(uncompressed)
        } else {
            None
        };
        let outcome = match whole {
            Some(outcome) => Ok(outcome),
            None if method == METHOD_STORED => search.search(raw),
            None => search.search(flate2::read::DeflateDecoder::new(raw)),
        };
        let outcome = outcome.map_err(|source| ScanError::Decode {
            path: path.to_owned(),
            format: Compression::Zip,
            member: Some(name.clone()),
            source,
        })?;
        match outcome {
            Outcome::Found => return Ok(Some(name)),
            Outcome::NotFound => {}
            Outcome::LimitReached => {
                return Err(ScanError::LimitReached { path: path.to_owned(), limit: search.limit })
            }
        }
    }
    match skipped {
        None => Ok(None),
        Some(Skipped::Encrypted(member)) => Err(ScanError::EncryptedZipEntry { path: path.to_owned(), member }),
        Some(Skipped::Method(member, method)) => {
            Err(ScanError::UnsupportedZipMethod { path: path.to_owned(), member, method })
        }
    }
}

/// Replaces the 32-bit fields that are [`ZIP64_MARKER`] with their values
/// from the zip64 extra field. `None` if that field is missing or too short.
fn apply_zip64_extra(mut extra: &[u8], uncompressed: &mut u64, compressed: &mut u64, header: &mut u64) -> Option<()> {
    let marker = u64::from(ZIP64_MARKER);
    let wanted = [*uncompressed == marker, *compressed == marker, *header == marker];
    if !wanted.contains(&true) {
        return Some(());
    }
    while extra.len() >= 4 {
        let (id, size) = (u16_at(extra, 0), usize::from(u16_at(extra, 2)));
        let body = extra.get(4..4 + size)?;
        if id == ZIP64_EXTRA_ID {
            let mut fields = body.chunks_exact(8).map(|f| u64_at(f, 0));
            if wanted[0] {
                *uncompressed = fields.next()?;
            }
            if wanted[1] {
                *compressed = fields.next()?;
            }
            if wanted[2] {
                *header = fields.next()?;
            }
            return Some(());
        }
        extra = &extra[4 + size..];
    }
    None
}

/// A byte range of a file, read with positional reads.
struct Section<'a> {
    file: &'a dyn Positional,
    pos: u64,
    end: u64,
}

impl Read for Section<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end - self.pos).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.pos += n as u64;
        Ok(n)
    }
}
