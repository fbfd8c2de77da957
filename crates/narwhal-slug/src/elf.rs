//! Just enough ELF to see what a dynamically linked file needs at run time.
//!
//! Only ELF64 little-endian is read (x86-64 and aarch64 Linux, where slugs
//! run). From the file header we take the program headers; from those,
//! `PT_INTERP` (the interpreter path), `PT_DYNAMIC` (the dynamic section) and
//! the `PT_LOAD` segments, through which the dynamic section's `DT_STRTAB`
//! address is mapped to a file offset. From the dynamic section we take
//! `DT_NEEDED` (in order), `DT_RUNPATH` and `DT_RPATH` (the last of each, as
//! glibc does), reading entries up to `DT_NULL`.
//!
//! Section headers are never read. Every read is bounded by a constant below,
//! offsets are checked arithmetic, and garbage yields an [`enum@Error`], never a
//! panic or a huge allocation. A file is read with positioned reads of the
//! parts needed, never whole.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;

use thiserror::Error;

/// Linux refuses program header tables larger than 64 KiB.
pub const MAX_PHDRS_BYTES: u64 = 64 * 1024;
/// Linux refuses interpreter paths longer than PATH_MAX.
pub const MAX_INTERP_LEN: u64 = 4096;
/// 65536 dynamic entries; real files have well under a hundred.
pub const MAX_DYNAMIC_BYTES: u64 = 1 << 20;
/// The longest string read from the dynamic string table (Nix run paths can
/// list dozens of store paths, so this is generous).
pub const MAX_STRING_LEN: usize = 1 << 16;

const EHDR_LEN: usize = 64;
const PHDR_LEN: u64 = 56;
const DYN_LEN: usize = 16;
const PN_XNUM: u16 = 0xffff;

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;

const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_STRSZ: u64 = 10;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    #[error("not an ELF file")]
    NotElf,
    #[error("ELF class {class} / data encoding {data} is not supported (only ELF64 little-endian)")]
    Unsupported { class: u8, data: u8 },
    #[error("{what} at offset {offset} runs past the end of the file")]
    Truncated { what: &'static str, offset: u64 },
    #[error("{what} is {len} bytes, more than the limit of {limit}")]
    TooLarge { what: &'static str, len: u64, limit: u64 },
    #[error("malformed ELF: {0}")]
    Malformed(&'static str),
    #[error("cannot read the file")]
    Io(#[source] io::Error),
}

/// What the dynamic loader would look at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DynamicInfo {
    /// `PT_INTERP`, without its terminating NUL.
    pub interpreter: Option<Vec<u8>>,
    /// `DT_NEEDED`, in order.
    pub needed: Vec<Vec<u8>>,
    /// `DT_RUNPATH`, as written (colon-separated, `$ORIGIN` unexpanded).
    pub runpath: Option<Vec<u8>>,
    /// `DT_RPATH`, as written. glibc ignores it when `DT_RUNPATH` is present.
    pub rpath: Option<Vec<u8>>,
}

/// Parses ELF bytes held in memory.
pub fn parse_bytes(data: &[u8]) -> Result<DynamicInfo, Error> {
    parse(&data)
}

/// Parses an open file with positioned reads (the file offset is untouched).
pub fn parse_file(file: &File) -> Result<DynamicInfo, Error> {
    parse(&file)
}

/// Positioned reads: fills as much of `buf` as the source has at `offset`.
trait Source {
    fn read_some(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
}

impl Source for &[u8] {
    fn read_some(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let Ok(start) = usize::try_from(offset) else { return Ok(0) };
        let available = self.get(start..).unwrap_or_default();
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        Ok(n)
    }
}

impl Source for &File {
    fn read_some(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            // pread rejects (EINVAL) a range that ends past i64::MAX; there is nothing there anyway.
            let rest = (buf.len() - filled) as u64;
            let Some(at) = offset
                .checked_add(filled as u64)
                .filter(|&at| at.checked_add(rest).is_some_and(|end| i64::try_from(end).is_ok()))
            else {
                break;
            };
            match self.read_at(&mut buf[filled..], at) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }
}

fn read_exact(src: &impl Source, offset: u64, len: u64, what: &'static str) -> Result<Vec<u8>, Error> {
    // Callers bound `len` by one of the limits above, so this never allocates much.
    let len = usize::try_from(len).map_err(|_| Error::Malformed(what))?;
    let mut buf = vec![0; len];
    let got = src.read_some(offset, &mut buf).map_err(Error::Io)?;
    if got < len {
        return Err(Error::Truncated { what, offset });
    }
    Ok(buf)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

#[derive(Debug, Clone, Copy)]
struct Phdr {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

fn parse(src: &impl Source) -> Result<DynamicInfo, Error> {
    let mut ehdr = [0; EHDR_LEN];
    let got = src.read_some(0, &mut ehdr).map_err(Error::Io)?;
    if got < 4 || ehdr[..4] != *b"\x7fELF" {
        return Err(Error::NotElf);
    }
    if got < 6 || ehdr[4] != 2 || ehdr[5] != 1 {
        return Err(Error::Unsupported { class: ehdr[4], data: ehdr[5] });
    }
    if got < EHDR_LEN {
        return Err(Error::Truncated { what: "ELF header", offset: 0 });
    }
    let phoff = u64_at(&ehdr, 0x20);
    let phentsize = u64::from(u16_at(&ehdr, 0x36));
    let phnum = u16_at(&ehdr, 0x38);
    let mut info = DynamicInfo::default();
    if phnum == 0 {
        return Ok(info);
    }
    if phnum == PN_XNUM {
        return Err(Error::Malformed("extended program header count (PN_XNUM)"));
    }
    if phentsize < PHDR_LEN {
        return Err(Error::Malformed("program header entries shorter than 56 bytes"));
    }
    let table_len = phentsize * u64::from(phnum);
    if table_len > MAX_PHDRS_BYTES {
        return Err(Error::TooLarge { what: "program header table", len: table_len, limit: MAX_PHDRS_BYTES });
    }
    let table = read_exact(src, phoff, table_len, "program header table")?;
    let phdrs: Vec<Phdr> = table
        .chunks_exact(phentsize as usize)
        .map(|p| Phdr { kind: u32_at(p, 0), offset: u64_at(p, 8), vaddr: u64_at(p, 16), filesz: u64_at(p, 32) })
        .collect();

    if let Some(interp) = phdrs.iter().find(|p| p.kind == PT_INTERP) {
        if interp.filesz > MAX_INTERP_LEN {
            return Err(Error::TooLarge { what: "PT_INTERP", len: interp.filesz, limit: MAX_INTERP_LEN });
        }
        let mut path = read_exact(src, interp.offset, interp.filesz, "PT_INTERP")?;
        if let Some(nul) = memchr::memchr(0, &path) {
            path.truncate(nul);
        }
        info.interpreter = Some(path);
    }

    let Some(dynamic) = phdrs.iter().find(|p| p.kind == PT_DYNAMIC) else { return Ok(info) };
    if dynamic.filesz > MAX_DYNAMIC_BYTES {
        return Err(Error::TooLarge { what: "PT_DYNAMIC", len: dynamic.filesz, limit: MAX_DYNAMIC_BYTES });
    }
    let entries = read_exact(src, dynamic.offset, dynamic.filesz, "PT_DYNAMIC")?;
    let (mut needed, mut runpath, mut rpath, mut strtab, mut strsz) = (Vec::new(), None, None, None, None);
    for entry in entries.chunks_exact(DYN_LEN) {
        let (tag, val) = (u64_at(entry, 0), u64_at(entry, 8));
        match tag {
            DT_NULL => break,
            DT_NEEDED => needed.push(val),
            DT_RUNPATH => runpath = Some(val),
            DT_RPATH => rpath = Some(val),
            DT_STRTAB => strtab = Some(val),
            DT_STRSZ => strsz = Some(val),
            _ => {}
        }
    }
    if needed.is_empty() && runpath.is_none() && rpath.is_none() {
        return Ok(info);
    }
    let strtab = strtab.ok_or(Error::Malformed("DT_STRTAB missing"))?;
    let table = Strings { offset: file_offset(&phdrs, strtab)?, size: strsz };
    info.needed = needed.into_iter().map(|at| table.get(src, at)).collect::<Result<_, _>>()?;
    info.runpath = runpath.map(|at| table.get(src, at)).transpose()?;
    info.rpath = rpath.map(|at| table.get(src, at)).transpose()?;
    Ok(info)
}

/// Maps a virtual address to a file offset through the `PT_LOAD` segments.
fn file_offset(phdrs: &[Phdr], addr: u64) -> Result<u64, Error> {
    phdrs
        .iter()
        .filter(|p| p.kind == PT_LOAD)
        .find(|p| addr >= p.vaddr && addr - p.vaddr < p.filesz)
        .and_then(|p| p.offset.checked_add(addr - p.vaddr))
        .ok_or(Error::Malformed("DT_STRTAB is not inside any PT_LOAD segment"))
}

/// The dynamic string table.
struct Strings {
    offset: u64,
    size: Option<u64>,
}

impl Strings {
    /// The NUL-terminated string at `at`, read in growing chunks.
    fn get(&self, src: &impl Source, at: u64) -> Result<Vec<u8>, Error> {
        let mut limit = MAX_STRING_LEN as u64 + 1;
        if let Some(size) = self.size {
            if at >= size {
                return Err(Error::Malformed("string offset beyond DT_STRSZ"));
            }
            limit = limit.min(size - at);
        }
        let start = self.offset.checked_add(at).ok_or(Error::Malformed("string offset overflows"))?;
        let mut out = Vec::new();
        let mut chunk = 256u64;
        loop {
            let want = chunk.min(limit - out.len() as u64);
            let mut buf = vec![0; want as usize];
            let got = src.read_some(start.saturating_add(out.len() as u64), &mut buf).map_err(Error::Io)?;
            if let Some(nul) = memchr::memchr(0, &buf[..got]) {
                out.extend_from_slice(&buf[..nul]);
                return Ok(out);
            }
            out.extend_from_slice(&buf[..got]);
            if got < buf.len() {
                return Err(Error::Truncated { what: "dynamic string", offset: start });
            }
            if out.len() as u64 >= limit {
                return Err(Error::Malformed("unterminated dynamic string"));
            }
            chunk = chunk.saturating_mul(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_foreign_inputs() {
        assert!(matches!(parse_bytes(b""), Err(Error::NotElf)));
        assert!(matches!(parse_bytes(b"\x7fEL"), Err(Error::NotElf)));
        assert!(matches!(parse_bytes(b"#!/bin/sh\n"), Err(Error::NotElf)));
        assert!(matches!(parse_bytes(b"\x7fELF\x01\x01"), Err(Error::Unsupported { class: 1, data: 1 })));
        assert!(matches!(parse_bytes(b"\x7fELF\x02\x02"), Err(Error::Unsupported { class: 2, data: 2 })));
        assert!(matches!(parse_bytes(b"\x7fELF\x02\x01\x01"), Err(Error::Truncated { .. })));
    }

    #[test]
    fn header_without_program_headers() {
        let mut ehdr = [0u8; 64];
        ehdr[..6].copy_from_slice(b"\x7fELF\x02\x01");
        assert_eq!(parse_bytes(&ehdr).unwrap(), DynamicInfo::default());
        ehdr[0x38] = 1; // one program header, of size 0
        assert!(matches!(parse_bytes(&ehdr), Err(Error::Malformed(_))));
        ehdr[0x36] = 56;
        ehdr[0x20] = 0xff; // table at offset 255: past the end
        assert!(matches!(parse_bytes(&ehdr), Err(Error::Truncated { .. })));
        ehdr[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(parse_bytes(&ehdr), Err(Error::Truncated { .. })));
        ehdr[0x38..0x3a].copy_from_slice(&0xffffu16.to_le_bytes());
        assert!(matches!(parse_bytes(&ehdr), Err(Error::Malformed(_))));
        ehdr[0x38..0x3a].copy_from_slice(&0xfffeu16.to_le_bytes());
        assert!(matches!(parse_bytes(&ehdr), Err(Error::TooLarge { .. })));
    }
}
