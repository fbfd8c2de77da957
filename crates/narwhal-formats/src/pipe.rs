//! The one way narwhal hands a byte stream to other threads: in chunks
//! (1 MiB unless asked otherwise). Every receiver gets the same chunk (shared,
//! not copied), and a chunk's buffer goes back to the sender once the last
//! receiver is done with it, so a few chunks are in flight whatever the
//! stream's size. Receivers are threads ([`channel`]: fetch's unpacking and
//! hashing threads, [`crate::nar::dump_to_hash`]) or anything a chunk can be
//! sent to ([`to`]: the server's response bodies).

use std::io::{self, Read};
use std::ops::Deref;
use std::sync::{mpsc, Arc};

/// The chunk size of [`channel`].
pub const CHUNK: usize = 1 << 20;
/// Chunks waiting for a receiver of [`channel`] before the feed blocks.
const DEPTH: usize = 4;

/// One chunk of the stream, shared by every receiver.
pub struct Chunk {
    data: Option<Arc<Vec<u8>>>,
    recycle: mpsc::SyncSender<Vec<u8>>,
}

impl Deref for Chunk {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.data.as_deref().map_or(&[], Vec::as_slice)
    }
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Clone for Chunk {
    fn clone(&self) -> Self {
        Self { data: self.data.clone(), recycle: self.recycle.clone() }
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // The last holder hands the buffer back for the next chunk.
        if let Some(buf) = self.data.take().and_then(Arc::into_inner) {
            let _ = self.recycle.try_send(buf);
        }
    }
}

/// Where a [`Feed`] sends its chunks; `false` means the receiver is gone.
type Out = Box<dyn FnMut(Chunk) -> bool + Send>;

/// The sending end.
pub struct Feed {
    /// The chunk being filled: `size` bytes long, the first `filled` of them data.
    buf: Vec<u8>,
    filled: usize,
    size: usize,
    outs: Vec<Out>,
    empty: mpsc::Receiver<Vec<u8>>,
    recycle: mpsc::SyncSender<Vec<u8>>,
}

/// A receiving end.
pub struct Chunks {
    full: mpsc::Receiver<Chunk>,
}

/// A feed and `receivers` receiving ends, each getting every chunk.
pub fn channel(receivers: usize) -> (Feed, Vec<Chunks>) {
    let (outs, chunks) = (0..receivers)
        .map(|_| {
            let (tx, rx) = mpsc::sync_channel(DEPTH);
            let out: Out = Box::new(move |chunk| tx.send(chunk).is_ok());
            (out, Chunks { full: rx })
        })
        .unzip();
    (feed(CHUNK, outs), chunks)
}

/// A feed of `size`-byte chunks that hands each one to `send` (which blocks
/// as long as it likes, and answers `false` once its receiver is gone): a
/// channel of another kind, such as an async one.
pub fn to(size: usize, send: impl FnMut(Chunk) -> bool + Send + 'static) -> Feed {
    feed(size.max(1), vec![Box::new(send)])
}

fn feed(size: usize, outs: Vec<Out>) -> Feed {
    let (recycle, empty) = mpsc::sync_channel(2 * DEPTH + 2);
    Feed { buf: Vec::new(), filled: 0, size, outs, empty, recycle }
}

/// Whether `e` is [`Feed`]'s error for a receiver that stopped listening.
pub fn is_receiver_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

impl Feed {
    fn send(&mut self) -> io::Result<()> {
        if self.filled == 0 {
            return Ok(());
        }
        let next = self.empty.try_recv().unwrap_or_default();
        let mut data = std::mem::replace(&mut self.buf, next);
        data.truncate(self.filled);
        self.filled = 0;
        let chunk = Chunk { data: Some(Arc::new(data)), recycle: self.recycle.clone() };
        if self.outs.is_empty() {
            return Err(io::Error::other("the feed is finished"));
        }
        for out in &mut self.outs {
            if !out(chunk.clone()) {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "a receiver stopped"));
            }
        }
        Ok(())
    }

    /// Reads `r` to its end straight into the chunks, sending each one as it fills.
    pub fn read_from(&mut self, r: &mut dyn Read) -> io::Result<u64> {
        let mut total = 0;
        loop {
            // Zeroes only what a buffer never held (a new one, or after a short last chunk).
            self.buf.resize(self.size, 0);
            let n = match r.read(&mut self.buf[self.filled..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.filled += n;
            total += n as u64;
            if n == 0 {
                return Ok(total);
            }
            if self.filled == self.size {
                self.send()?;
            }
        }
    }

    /// Sends what is buffered and closes the stream.
    pub fn finish(&mut self) -> io::Result<()> {
        let sent = self.send();
        self.outs.clear();
        sent
    }
}

/// Copies bytes into the chunks, for producers that write rather than read.
impl io::Write for Feed {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.resize(self.size, 0);
        let n = data.len().min(self.size - self.filled);
        self.buf[self.filled..self.filled + n].copy_from_slice(&data[..n]);
        self.filled += n;
        if self.filled == self.size {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Chunks {
    /// Calls `f` on every chunk, in order, until the feed is finished or dropped.
    pub fn for_each(self, f: impl FnMut(Chunk)) {
        self.full.into_iter().for_each(f);
    }

    /// The stream as a reader; it ends where the feed was finished or dropped.
    pub fn reader(self) -> ChunkReader {
        ChunkReader { chunks: self, current: None, pos: 0 }
    }
}

/// Reads the chunks of a [`Chunks`] in order.
pub struct ChunkReader {
    chunks: Chunks,
    current: Option<Chunk>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(chunk) = &self.current {
                if self.pos < chunk.len() {
                    let n = buf.len().min(chunk.len() - self.pos);
                    buf[..n].copy_from_slice(&chunk[self.pos..self.pos + n]);
                    self.pos += n;
                    return Ok(n);
                }
            }
            // Dropping the chunk read to its end lets its buffer be reused.
            self.current = None;
            match self.chunks.full.recv() {
                Ok(chunk) => {
                    self.current = Some(chunk);
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_receiver_gets_every_byte_in_order() {
        let data: Vec<u8> = (0..3 * CHUNK + 12345).map(|i| (i % 251) as u8).collect();
        let (mut feed, mut chunks) = channel(2);
        let second = chunks.pop().unwrap();
        let first = chunks.pop().unwrap();
        std::thread::scope(|s| {
            let a = s.spawn(|| {
                let mut out = Vec::new();
                first.reader().read_to_end(&mut out).unwrap();
                out
            });
            let b = s.spawn(|| {
                let mut out = Vec::new();
                second.for_each(|c| out.extend_from_slice(&c));
                out
            });
            assert_eq!(feed.read_from(&mut &data[..]).unwrap(), data.len() as u64);
            feed.finish().unwrap();
            assert_eq!(a.join().unwrap(), data);
            assert_eq!(b.join().unwrap(), data);
        });
    }

    #[test]
    fn written_bytes_arrive_in_order_across_chunks() {
        use std::io::Write as _;
        let data: Vec<u8> = (0..2 * CHUNK + 777).map(|i| (i % 253) as u8).collect();
        let (mut feed, mut chunks) = channel(1);
        let only = chunks.pop().unwrap();
        std::thread::scope(|s| {
            let r = s.spawn(|| {
                let mut out = Vec::new();
                only.reader().read_to_end(&mut out).unwrap();
                out
            });
            // Uneven writes, so chunk boundaries fall inside them.
            for piece in data.chunks(100_003) {
                feed.write_all(piece).unwrap();
            }
            feed.finish().unwrap();
            assert_eq!(r.join().unwrap(), data);
        });
    }

    #[test]
    fn a_sink_gets_chunks_of_its_size_and_its_buffers_come_back() {
        use std::io::Write as _;
        let got = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (into, held) = (Arc::clone(&got), Arc::new(std::sync::Mutex::new(Vec::new())));
        let keep = Arc::clone(&held);
        let mut feed = to(1000, move |c: Chunk| {
            into.lock().unwrap().push(c.len());
            keep.lock().unwrap().push(c);
            true
        });
        feed.write_all(&[1u8; 2500]).unwrap();
        feed.finish().unwrap();
        assert_eq!(*got.lock().unwrap(), [1000, 1000, 500]);
        assert!(held.lock().unwrap().iter().all(|c| c.iter().all(|&b| b == 1)));
        held.lock().unwrap().clear();
        assert_eq!(feed.empty.try_iter().count(), 3, "dropped chunks give their buffers back");
        let mut gone = to(10, |_| false);
        let err = gone.write_all(&[0u8; 10]).unwrap_err();
        assert!(is_receiver_gone(&err), "{err}");
    }

    #[test]
    fn a_receiver_that_stops_stops_the_feed() {
        let (mut feed, mut chunks) = channel(2);
        drop(chunks.pop());
        let data = vec![7u8; 2 * CHUNK];
        let err = feed.read_from(&mut &data[..]).unwrap_err();
        assert!(is_receiver_gone(&err), "{err}");
    }
}
