//! Nix's wire encoding, shared by NAR and the export format.
//!
//! An integer is 8 bytes little-endian. A string is its length as an integer,
//! its bytes, then zero bytes up to the next multiple of 8.

use std::io::{self, Read, Write};

/// Zero bytes needed after `len` bytes to reach a multiple of 8.
pub const fn padding(len: u64) -> usize {
    ((8 - len % 8) % 8) as usize
}

pub fn write_u64(w: &mut impl Write, n: u64) -> io::Result<()> {
    w.write_all(&n.to_le_bytes())
}

pub fn write_bytes(w: &mut impl Write, s: &[u8]) -> io::Result<()> {
    write_u64(w, s.len() as u64)?;
    w.write_all(s)?;
    w.write_all(&[0; 8][..padding(s.len() as u64)])
}

pub fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// Reads a string of at most `max` bytes. Longer ones are an
/// `InvalidData` error before anything is allocated; padding must be zero.
pub fn read_bytes(r: &mut impl Read, max: u64) -> io::Result<Vec<u8>> {
    let len = read_u64(r)?;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("string of {len} bytes is longer than the limit of {max}"),
        ));
    }
    let mut buf = vec![0; len as usize];
    r.read_exact(&mut buf)?;
    let mut pad = [0; 8];
    let pad = &mut pad[..padding(len)];
    r.read_exact(pad)?;
    if pad.iter().any(|&b| b != 0) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "non-zero padding after a string"));
    }
    Ok(buf)
}
