//! Nix's base-32 encoding ("nix32").
//!
//! The alphabet omits `e`, `o`, `u` and `t`. Unlike RFC 4648, Nix encodes the
//! byte string *backwards*: the first character holds the most significant
//! bits of the last bytes. An encoded string of `n` bytes has
//! `ceil(n * 8 / 5)` characters; leftover high bits must be zero.

use thiserror::Error;

/// The 32 symbols, in value order.
pub const ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

const INVALID: u8 = 0xff;

const fn reverse_alphabet() -> [u8; 256] {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
}

const REVERSE: [u8; 256] = reverse_alphabet();

#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid nix32 character {} at position {pos}", show_byte(*.0), pos = .1)]
    InvalidChar(u8, usize),
    #[error("nix32 string of {0} characters does not encode a whole number of bytes")]
    InvalidLength(usize),
    #[error("nix32 string has non-zero padding bits")]
    NonZeroPadding,
}

/// Length in characters of the encoding of `len` bytes.
pub const fn encoded_len(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        (len * 8 - 1) / 5 + 1
    }
}

/// Length in bytes of a string of `len` nix32 characters, if it is a valid length.
pub const fn decoded_len(len: usize) -> Option<usize> {
    let bytes = len * 5 / 8;
    if encoded_len(bytes) == len {
        Some(bytes)
    } else {
        None
    }
}

/// Encodes `input` as nix32.
pub fn encode(input: &[u8]) -> String {
    let len = encoded_len(input.len());
    let mut out = Vec::with_capacity(len);
    for n in (0..len).rev() {
        let b = n * 5;
        let i = b / 8;
        let j = b % 8;
        let low = u16::from(input[i]) >> j;
        let high = if i + 1 < input.len() { u16::from(input[i + 1]) << (8 - j) } else { 0 };
        out.push(ALPHABET[usize::from((low | high) & 0x1f)]);
    }
    // Every byte pushed comes from ALPHABET, which is ASCII.
    out.into_iter().map(char::from).collect()
}

/// A byte of untrusted input as a message shows it: `'x'` when printable ASCII, `0xNN` otherwise.
fn show_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("{:?}", char::from(b))
    } else {
        format!("{b:#04x}")
    }
}

/// Decodes a nix32 string (bytes, so that a slice of untrusted text need not end on a character boundary).
pub fn decode(input: impl AsRef<[u8]>) -> Result<Vec<u8>, Error> {
    let input = input.as_ref();
    let len = decoded_len(input.len()).ok_or(Error::InvalidLength(input.len()))?;
    let mut out = vec![0u8; len];
    for (n, &c) in input.iter().rev().enumerate() {
        let digit = REVERSE[usize::from(c)];
        if digit == INVALID {
            return Err(Error::InvalidChar(c, input.len() - 1 - n));
        }
        let b = n * 5;
        let i = b / 8;
        let j = b % 8;
        let value = u16::from(digit) << j;
        out[i] |= value as u8;
        let carry = (value >> 8) as u8;
        if i + 1 < len {
            out[i + 1] |= carry;
        } else if carry != 0 {
            return Err(Error::NonZeroPadding);
        }
    }
    Ok(out)
}

/// Whether `c` is a nix32 character.
pub fn is_valid_char(c: u8) -> bool {
    REVERSE[usize::from(c)] != INVALID
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // sha256("") as Nix prints it.
        let digest = [
            0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae,
            0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
        ];
        let s = "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73";
        assert_eq!(encode(&digest), s);
        assert_eq!(decode(s).unwrap(), digest);
        assert_eq!(encode(&[]), "");
        assert_eq!(decode("").unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(decode("e").unwrap_err(), Error::InvalidLength(1));
        assert_eq!(decode("0e").unwrap_err(), Error::InvalidChar(b'e', 1));
        // one byte is two characters; the top character may only use 3 bits.
        assert_eq!(decode("z0").unwrap_err(), Error::NonZeroPadding);
        assert_eq!(decode("70").unwrap(), vec![0xe0]);
    }

    proptest::proptest! {
        #[test]
        fn round_trip(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            proptest::prop_assert_eq!(decode(encode(&bytes)).unwrap(), bytes);
        }
    }
}
