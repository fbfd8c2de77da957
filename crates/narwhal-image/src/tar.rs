//! Reproducible tar (POSIX ustar with PAX extended headers), written from NAR events.
//!
//! Every entry has mode from the NAR alone (directories and executables 0555, files 0444, links
//! 0777, as in the Nix store), uid and gid 0, no user or group names, and one fixed mtime; there
//! are no atime or ctime records. A name or link target longer than ustar's 100 bytes, or a size of
//! 8 GiB or more, goes in a PAX `x` header before its entry. NAR entries come sorted by bytes, so
//! the same NAR always gives the same tar, byte for byte.
//!
//! ```text
//! block    = 512 bytes
//! entry    = [pax-header pax-records padding] header contents padding
//! archive  = entry* block-of-zeros block-of-zeros
//! ```

use std::io::{self, Read, Write};

use narwhal_formats::nar::Visitor;

/// The mtime of every entry: Nix's own for store files (1 second after the epoch).
pub const MTIME: u64 = 1;
const BLOCK: usize = 512;
/// ustar's numeric size field holds 11 octal digits.
const MAX_USTAR_SIZE: u64 = 0o77_777_777_777;

/// Writes tar entries to `out`; [`Self::finish`] writes the end-of-archive blocks.
pub struct TarWriter<W> {
    out: W,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        Self { out }
    }

    pub fn directory(&mut self, name: &[u8]) -> io::Result<()> {
        let mut name = name.to_vec();
        if !name.ends_with(b"/") {
            name.push(b'/');
        }
        self.header(&name, 0o555, 0, b'5', b"")
    }

    /// A regular file of `size` bytes read from `contents`, which must hold exactly that many.
    pub fn file(&mut self, name: &[u8], executable: bool, size: u64, contents: &mut dyn Read) -> io::Result<()> {
        self.header(name, if executable { 0o555 } else { 0o444 }, size, b'0', b"")?;
        let copied = io::copy(&mut contents.take(size), &mut self.out)?;
        if copied != size {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file contents ended early"));
        }
        self.pad(size)
    }

    pub fn symlink(&mut self, name: &[u8], target: &[u8]) -> io::Result<()> {
        self.header(name, 0o777, 0, b'2', target)
    }

    /// The end-of-archive marker; returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0; 2 * BLOCK])?;
        Ok(self.out)
    }

    fn pad(&mut self, len: u64) -> io::Result<()> {
        let rem = (len % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    fn header(&mut self, name: &[u8], mode: u32, size: u64, kind: u8, link: &[u8]) -> io::Result<()> {
        let mut pax = Vec::new();
        if name.len() > 100 {
            pax_record(&mut pax, b"path", name);
        }
        if link.len() > 100 {
            pax_record(&mut pax, b"linkpath", link);
        }
        if size > MAX_USTAR_SIZE {
            pax_record(&mut pax, b"size", size.to_string().as_bytes());
        }
        if !pax.is_empty() {
            let block = ustar_header(b"././@PaxHeader", 0o644, pax.len() as u64, b'x', b"");
            self.out.write_all(&block)?;
            self.out.write_all(&pax)?;
            self.pad(pax.len() as u64)?;
        }
        let block = ustar_header(name, mode, size, kind, link);
        self.out.write_all(&block)
    }
}

/// One PAX record: `<length> <key>=<value>\n`, where the length counts itself.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    while len.to_string().len() + rest != len {
        len += 1;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// A ustar header block; names and links past 100 bytes are cut here (their PAX record holds them
/// whole), sizes past ustar's range are written as 0 (likewise).
fn ustar_header(name: &[u8], mode: u32, size: u64, kind: u8, link: &[u8]) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    let copy = |h: &mut [u8; BLOCK], at: usize, len: usize, value: &[u8]| {
        let n = value.len().min(len);
        h[at..at + n].copy_from_slice(&value[..n]);
    };
    copy(&mut h, 0, 100, name);
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], if size > MAX_USTAR_SIZE { 0 } else { size });
    octal(&mut h[136..148], MTIME);
    h[156] = kind;
    copy(&mut h, 157, 100, link);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field as spaces.
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let digits = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(digits.as_bytes());
    h
}

/// Zero-padded octal, NUL-terminated, filling `field`.
fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let digits = format!("{value:0width$o}");
    let bytes = digits.as_bytes();
    let start = bytes.len().saturating_sub(width);
    field[..width].copy_from_slice(&bytes[start..]);
    field[width] = 0;
}

/// Turns the NAR of one store path into tar entries under `prefix` (`nix/store/<hash>-<name>`).
pub struct NarToTar<'t, W> {
    pub tar: &'t mut TarWriter<W>,
    pub prefix: Vec<u8>,
    /// Every entry's path relative to the store path (the root is empty), for checks such as
    /// "the entrypoint exists".
    pub seen: Vec<Vec<u8>>,
}

impl<W: Write> NarToTar<'_, W> {
    fn name(&self, path: &[u8]) -> Vec<u8> {
        let mut name = self.prefix.clone();
        if !path.is_empty() {
            name.push(b'/');
            name.extend_from_slice(path);
        }
        name
    }
}

impl<W: Write> Visitor for NarToTar<'_, W> {
    fn regular(&mut self, path: &[u8], executable: bool, size: u64, _: u64, contents: &mut dyn Read) -> io::Result<()> {
        let name = self.name(path);
        self.seen.push(path.to_vec());
        self.tar.file(&name, executable, size, contents)
    }

    fn symlink(&mut self, path: &[u8], target: &[u8]) -> io::Result<()> {
        let name = self.name(path);
        self.seen.push(path.to_vec());
        self.tar.symlink(&name, target)
    }

    fn enter_directory(&mut self, path: &[u8]) -> io::Result<()> {
        let name = self.name(path);
        self.seen.push(path.to_vec());
        self.tar.directory(&name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_lengths_count_themselves() {
        for value_len in [1, 80, 86, 87, 88, 990, 9990] {
            let mut out = Vec::new();
            pax_record(&mut out, b"path", &vec![b'a'; value_len]);
            let (len, _) = std::str::from_utf8(&out).unwrap().split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), out.len(), "{value_len}");
        }
    }

    #[test]
    fn headers_checksum_and_long_names() {
        let mut tar = TarWriter::new(Vec::new());
        tar.directory(b"nix").unwrap();
        let long = [b'x'; 150];
        tar.file(&long, true, 3, &mut &b"abc"[..]).unwrap();
        let out = tar.finish().unwrap();
        assert_eq!(out.len() % BLOCK, 0);
        // Directory header, PAX header + one block of records, file header + one block, two zero blocks.
        assert_eq!(out.len(), BLOCK * 7);
        let h = &out[..BLOCK];
        let mut copy = h.to_vec();
        copy[148..156].fill(b' ');
        let sum: u32 = copy.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(std::str::from_utf8(&h[148..154]).unwrap(), format!("{sum:06o}"));
        assert_eq!(&h[..4], b"nix/");
        assert_eq!(out[BLOCK + 156], b'x');
    }
}
