//! A stream read while something else sees every byte of it.
//!
//! [`Tee`] is the one reader that measures, copies or reports a stream as it goes: what it reads
//! is written to a writer beside it, a [`HashingWriter`](crate::hash::HashingWriter) to hash and
//! count it, a file to copy it, [`Progress`] to report it.

use std::io::{self, Read, Write};

/// A reader that writes what it reads to `out` before handing it on; an error writing is an
/// error reading.
pub struct Tee<R, W> {
    inner: R,
    out: W,
}

impl<R, W> Tee<R, W> {
    pub fn new(inner: R, out: W) -> Self {
        Self { inner, out }
    }

    /// The writer beside the stream.
    pub fn out(&self) -> &W {
        &self.out
    }

    pub fn out_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// The writer, for what it measured.
    pub fn into_out(self) -> W {
        self.out
    }
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        // A reader that claims more than the buffer holds breaks `Read`'s contract: an error, not a panic.
        let read =
            buf.get(..n).ok_or_else(|| io::Error::other(format!("a reader returned {n} bytes into {}", buf.len())))?;
        self.out.write_all(read)?;
        Ok(n)
    }
}

/// A writer that keeps nothing: it counts the bytes and tells `report` of each write.
pub struct Progress<F> {
    report: F,
    bytes: u64,
}

impl<F: FnMut(u64)> Progress<F> {
    pub fn new(report: F) -> Self {
        Self { report, bytes: 0 }
    }

    /// The bytes written so far.
    pub fn written(&self) -> u64 {
        self.bytes
    }
}

impl<F: FnMut(u64)> Write for Progress<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len() as u64;
        self.bytes += n;
        (self.report)(n);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{Algorithm, Hash, HashingWriter};

    /// Hands out at most three bytes a read, and fails once when `fail_at` bytes are out.
    struct Stutter<'a> {
        data: &'a [u8],
        out: usize,
        fail_at: Option<usize>,
    }

    impl Read for Stutter<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.fail_at.is_some_and(|at| self.out >= at) {
                self.fail_at = None;
                return Err(io::Error::other("once"));
            }
            let n = buf.len().min(3).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            self.out += n;
            Ok(n)
        }
    }

    #[test]
    fn what_is_read_is_what_the_writer_sees_across_short_reads_and_errors() {
        let data = b"the quick brown fox";
        let mut tee =
            Tee::new(Stutter { data, out: 0, fail_at: Some(10) }, HashingWriter::new(Algorithm::Sha256, Vec::new()));
        let mut read = Vec::new();
        let err = tee.read_to_end(&mut read).unwrap_err();
        assert_eq!(err.to_string(), "once");
        tee.read_to_end(&mut read).unwrap();
        assert_eq!(read, data);
        let (hash, len, copy) = tee.into_out().finish();
        assert_eq!((hash, len, copy.as_slice()), (Hash::of(Algorithm::Sha256, data), data.len() as u64, &data[..]));
    }

    #[test]
    fn a_failing_writer_fails_the_read() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::StorageFull, "full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let err = Tee::new(&b"abc"[..], Full).read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    }

    #[test]
    fn a_reader_claiming_more_than_its_buffer_is_an_error() {
        struct Liar;
        impl Read for Liar {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                Ok(buf.len() + 1)
            }
        }
        let err = Tee::new(Liar, io::sink()).read(&mut [0; 4]).unwrap_err();
        assert_eq!(err.to_string(), "a reader returned 5 bytes into 4");
    }

    #[test]
    fn progress_counts_and_reports_every_read() {
        let mut reports = Vec::new();
        let mut tee = Tee::new(Stutter { data: b"abcdefg", out: 0, fail_at: None }, Progress::new(|n| reports.push(n)));
        io::copy(&mut tee, &mut io::sink()).unwrap();
        assert_eq!(tee.out().written(), 7);
        assert_eq!(reports, [3, 3, 1]);
    }
}
