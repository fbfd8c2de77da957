//! Same-length rewriting of one store directory into another.
//!
//! A [`Relocation`] replaces every occurrence of the bytes of `from` (such as
//! `/nix/store`) with the bytes of `to` (such as `/app/store`). Both have the
//! same length, so every offset in a rewritten file stays where it was:
//! executables, libraries and archives whose headers record positions keep
//! working. A shorter `to` may be padded at the end with `/` (`/opt/n` becomes
//! `/opt/n////`), which the kernel resolves to the same directory because
//! repeated slashes are allowed in paths. A longer `to` can never work.
//!
//! Matching is leftmost first and non-overlapping, and never looks at bytes it
//! has already written: for `from = /a/a`, the input `/a/a/a` becomes
//! `<to>/a`. [`Relocation::rewrite_in_place`] (a whole buffer),
//! [`Relocation::rewrite_target`] (a symlink target) and
//! [`RewritingWriter`] (a stream cut into arbitrary `write` calls) all give
//! the same bytes for the same input.

use std::fmt;
use std::io::{self, Write};

use memchr::memmem;
use thiserror::Error;

/// What a short target is padded with: repeated slashes resolve like one.
pub const PAD_BYTE: u8 = b'/';

/// Bytes the [`RewritingWriter`] copies and rewrites at a time (plus the at
/// most `from.len() - 1` bytes it holds back between writes). Large enough
/// that each `write` to the inner writer is big, small enough to stay in cache.
pub const WRITER_BLOCK_LEN: usize = 256 * 1024;

#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    #[error("store directory {0:?} must be absolute, longer than '/', without a trailing '/' or NUL")]
    InvalidFrom(String),
    #[error(
        "target store directory {0:?} must be an absolute, normalised path (no '//', '.' or '..' components, no \
         trailing '/') of letters, digits and / . _ - + @ , = only: a shebang line or a shell would split or \
         expand anything else"
    )]
    InvalidTo(String),
    #[error(
        "target store directory {to:?} is {to_len} bytes but {from:?} is {from_len}: a longer prefix cannot work \
         because every offset in the rewritten files must stay the same"
    )]
    TargetTooLong { from: String, to: String, from_len: usize, to_len: usize },
    #[error(
        "target store directory {to:?} is {to_len} bytes but {from:?} is {from_len}: it must be padded with '/' \
         to the same length, and padding was not allowed"
    )]
    TargetTooShort { from: String, to: String, from_len: usize, to_len: usize },
}

/// A same-length rewrite of the store directory `from` into `to`.
#[derive(Clone)]
pub struct Relocation {
    from: String,
    /// `to`, padded with [`PAD_BYTE`] to `from.len()` bytes.
    to: Vec<u8>,
    finder: memmem::Finder<'static>,
}

impl fmt::Debug for Relocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relocation")
            .field("from", &self.from)
            .field("to", &String::from_utf8_lossy(&self.to))
            .finish_non_exhaustive()
    }
}

impl PartialEq for Relocation {
    fn eq(&self, other: &Self) -> bool {
        self.from == other.from && self.to == other.to
    }
}

impl Eq for Relocation {}

/// Whether `dir` is an absolute, normalised path that scripts can hold
/// unquoted: a relocated store directory ends up in shebang lines (which
/// split at whitespace), in `PATH` (split at `:`) and in shell scripts.
pub fn is_plain_dir(dir: &str) -> bool {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"/._-+@,=".contains(&b);
    match dir.strip_prefix('/') {
        Some("") => true,
        Some(rest) => rest.bytes().all(plain) && rest.split('/').all(|c| !c.is_empty() && c != "." && c != ".."),
        None => false,
    }
}

impl Relocation {
    /// Rewrites `from` into `to`, both absolute directories without a
    /// trailing `/`. A `to` shorter than `from` is an error unless `pad`, in
    /// which case it is padded at the end with `/`; a longer one is always an
    /// error.
    pub fn new(from: &str, to: &str, pad: bool) -> Result<Self, Error> {
        let well_formed =
            |dir: &str| dir.starts_with('/') && !dir.contains('\0') && (dir == "/" || !dir.ends_with('/'));
        if !well_formed(from) || from == "/" {
            return Err(Error::InvalidFrom(from.to_owned()));
        }
        if !well_formed(to) || !is_plain_dir(to) {
            return Err(Error::InvalidTo(to.to_owned()));
        }
        let (from_len, to_len) = (from.len(), to.len());
        let sizes = || (from.to_owned(), to.to_owned());
        if to_len > from_len {
            let (from, to) = sizes();
            return Err(Error::TargetTooLong { from, to, from_len, to_len });
        }
        if to_len < from_len && !pad {
            let (from, to) = sizes();
            return Err(Error::TargetTooShort { from, to, from_len, to_len });
        }
        let mut padded = to.as_bytes().to_vec();
        padded.resize(from_len, PAD_BYTE);
        Ok(Self { from: from.to_owned(), to: padded, finder: memmem::Finder::new(from.as_bytes()).into_owned() })
    }

    /// The store directory being replaced.
    pub fn from(&self) -> &str {
        &self.from
    }

    /// The replacement, padded to `from().len()` bytes.
    pub fn to(&self) -> &[u8] {
        &self.to
    }

    /// Whether rewriting changes nothing (`to` equals `from`).
    pub fn is_identity(&self) -> bool {
        self.from.as_bytes() == self.to.as_slice()
    }

    /// Replaces every occurrence of `from` in `buf`; returns how many.
    pub fn rewrite_in_place(&self, buf: &mut [u8]) -> usize {
        let (replacements, _) = self.rewrite_block(buf);
        replacements
    }

    /// A symlink target with every occurrence of `from` replaced.
    pub fn rewrite_target(&self, target: &[u8]) -> Vec<u8> {
        let mut out = target.to_vec();
        self.rewrite_in_place(&mut out);
        out
    }

    /// A writer that passes everything written to it on to `inner`, rewritten.
    pub fn writer<W: Write>(&self, inner: W) -> RewritingWriter<W> {
        RewritingWriter {
            relocation: self.clone(),
            inner,
            pending: Vec::with_capacity(WRITER_BLOCK_LEN + self.from.len()),
            replacements: 0,
        }
    }

    /// Rewrites `buf` and returns the number of replacements and how many
    /// leading bytes are final: no later byte can complete an occurrence that
    /// starts in them. The rest (fewer than `from.len()` bytes, after the last
    /// replacement) is untouched.
    fn rewrite_block(&self, buf: &mut [u8]) -> (usize, usize) {
        let n = self.from.len();
        let mut replacements = 0;
        let mut pos = 0;
        while let Some(i) = self.finder.find(&buf[pos..]) {
            let start = pos + i;
            buf[start..start + n].copy_from_slice(&self.to);
            pos = start + n;
            replacements += 1;
        }
        (replacements, pos.max(buf.len().saturating_sub(n - 1)))
    }
}

/// Rewrites a stream as it passes through to an inner writer.
///
/// An occurrence may straddle two `write` calls, so the last `from.len() - 1`
/// bytes are held back until more data arrives; [`Self::finish`] writes them.
/// `flush` flushes the inner writer but cannot release those bytes. Dropping
/// the writer without calling `finish` loses them. The output has exactly as
/// many bytes as the input. After an error the output is unspecified.
#[must_use = "call finish() to write the bytes held back"]
pub struct RewritingWriter<W: Write> {
    relocation: Relocation,
    inner: W,
    /// Bytes taken but not yet passed on; the first few may be held back.
    pending: Vec<u8>,
    replacements: u64,
}

impl<W: Write> fmt::Debug for RewritingWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RewritingWriter")
            .field("relocation", &self.relocation)
            .field("held_back", &self.pending.len())
            .field("replacements", &self.replacements)
            .finish_non_exhaustive()
    }
}

impl<W: Write> RewritingWriter<W> {
    /// Replacements made in the bytes passed on so far.
    pub fn replacements(&self) -> u64 {
        self.replacements
    }

    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// Writes the bytes held back, flushes, and returns the inner writer and
    /// the number of replacements.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        // Fewer than `from.len()` bytes: no occurrence can be among them.
        self.inner.write_all(&self.pending)?;
        self.inner.flush()?;
        Ok((self.inner, self.replacements))
    }
}

impl<W: Write> Write for RewritingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            let take = rest.len().min(WRITER_BLOCK_LEN);
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            let (replacements, done) = self.relocation.rewrite_block(&mut self.pending);
            self.replacements += replacements as u64;
            self.inner.write_all(&self.pending[..done])?;
            self.pending.drain(..done);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reloc(from: &str, to: &str) -> Relocation {
        Relocation::new(from, to, true).unwrap()
    }

    #[test]
    fn equal_length_is_used_as_is() {
        let r = Relocation::new("/nix/store", "/app/store", false).unwrap();
        assert_eq!(r.from(), "/nix/store");
        assert_eq!(r.to(), b"/app/store");
        assert!(!r.is_identity());
        assert!(Relocation::new("/nix/store", "/nix/store", false).unwrap().is_identity());
    }

    #[test]
    fn shorter_target_is_padded_only_when_allowed() {
        assert_eq!(reloc("/nix/store", "/opt/n").to(), b"/opt/n////");
        let err = Relocation::new("/nix/store", "/opt/n", false).unwrap_err();
        assert_eq!(
            err,
            Error::TargetTooShort { from: "/nix/store".into(), to: "/opt/n".into(), from_len: 10, to_len: 6 }
        );
        assert!(err.to_string().contains("padded"), "{err}");
    }

    #[test]
    fn longer_target_names_both_lengths() {
        let err = Relocation::new("/nix/store", "/app/stores", true).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("11 bytes") && msg.contains("is 10"), "{msg}");
        assert!(msg.contains("offset"), "{msg}");
    }

    #[test]
    fn malformed_directories_are_rejected() {
        for to in ["", "app/store", "/app/\0tore", "/app/sto/"] {
            assert_eq!(Relocation::new("/nix/store", to, true), Err(Error::InvalidTo(to.into())), "{to:?}");
        }
        for from in ["", "/", "nix/store", "/nix/store/", "/nix\0store"] {
            assert_eq!(Relocation::new(from, "/a", true), Err(Error::InvalidFrom(from.into())), "{from:?}");
        }
        // The root pads to slashes only, which still resolves.
        assert_eq!(reloc("/nix/store", "/").to(), b"//////////");
    }

    #[test]
    fn rewrites_every_occurrence_in_place() {
        let r = reloc("/nix/store", "/app/store");
        let mut buf = b"/nix/store/abc:/nix/store/def /nix/stor /nix/store".to_vec();
        assert_eq!(r.rewrite_in_place(&mut buf), 3);
        assert_eq!(buf, b"/app/store/abc:/app/store/def /nix/stor /app/store");
    }

    #[test]
    fn overlapping_occurrences_match_leftmost_first() {
        let r = reloc("/a/a", "/b/b");
        let mut buf = b"/a/a/a/a/a".to_vec();
        assert_eq!(r.rewrite_in_place(&mut buf), 2);
        assert_eq!(buf, b"/b/b/b/b/a");
    }

    #[test]
    fn symlink_targets() {
        let r = reloc("/nix/store", "/opt/n");
        assert_eq!(r.rewrite_target(b"/nix/store/abc-foo/bin/foo"), b"/opt/n/////abc-foo/bin/foo");
        assert_eq!(r.rewrite_target(b"../lib"), b"../lib");
    }

    #[test]
    fn writer_holds_back_a_possible_prefix_until_finish() {
        let r = reloc("/nix/store", "/app/store");
        let mut w = r.writer(Vec::new());
        w.write_all(b"xx/nix/st").unwrap();
        assert_eq!(w.get_ref(), b"");
        w.write_all(b"ore/yy/nix").unwrap();
        assert_eq!(w.get_ref(), b"xx/app/store", "\"/yy/nix\" could still begin an occurrence");
        assert_eq!(w.replacements(), 1);
        let (out, n) = w.finish().unwrap();
        assert_eq!(out, b"xx/app/store/yy/nix");
        assert_eq!(n, 1);
    }

    #[test]
    fn writer_with_one_byte_writes() {
        let r = reloc("/a/a", "/b/b");
        let input = b"/a/a/a/a/a//a/a";
        let mut w = r.writer(Vec::new());
        for b in input {
            w.write_all(std::slice::from_ref(b)).unwrap();
        }
        let (out, n) = w.finish().unwrap();
        let mut expected = input.to_vec();
        assert_eq!(r.rewrite_in_place(&mut expected) as u64, n);
        assert_eq!(out, expected);
    }
}
