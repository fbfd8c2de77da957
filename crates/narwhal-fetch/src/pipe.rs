//! Bytes handed to another thread in 1 MiB chunks, with the buffers recycled,
//! so a few MiB are in flight whatever the stream's size.

use std::io;
use std::sync::mpsc;

const CHUNK: usize = 1 << 20;
const DEPTH: usize = 4;

/// The writing end.
pub struct Feed {
    buf: Vec<u8>,
    full: Option<mpsc::SyncSender<Vec<u8>>>,
    empty: mpsc::Receiver<Vec<u8>>,
}

/// The reading end.
pub struct Chunks {
    full: mpsc::Receiver<Vec<u8>>,
    empty: mpsc::SyncSender<Vec<u8>>,
}

pub fn channel() -> (Feed, Chunks) {
    let (full_tx, full_rx) = mpsc::sync_channel(DEPTH);
    let (empty_tx, empty_rx) = mpsc::sync_channel(DEPTH + 1);
    (
        Feed { buf: Vec::with_capacity(CHUNK), full: Some(full_tx), empty: empty_rx },
        Chunks { full: full_rx, empty: empty_tx },
    )
}

impl Feed {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = self.empty.try_recv().unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        let chunk = std::mem::replace(&mut self.buf, next);
        self.buf.clear();
        match &self.full {
            Some(tx) => tx.send(chunk).map_err(|_| io::Error::other("the receiving thread stopped")),
            None => Err(io::Error::other("the feed is finished")),
        }
    }

    pub fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = data.len().min(CHUNK - self.buf.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == CHUNK {
                self.send()?;
            }
        }
        Ok(())
    }

    /// Sends what is buffered and closes the stream.
    pub fn finish(&mut self) -> io::Result<()> {
        let sent = self.send();
        self.full = None;
        sent
    }
}

impl Chunks {
    /// Calls `f` on every chunk, in order, until the feed is finished or dropped.
    pub fn for_each(self, mut f: impl FnMut(&[u8])) {
        for chunk in &self.full {
            f(&chunk);
            let _ = self.empty.try_send(chunk);
        }
    }
}
