//! Progress, reported by the library and drawn by the binary.

use narwhal_formats::store_path::StorePath;

/// Where a path's NAR came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Downloaded from a cache.
    Download,
    /// Read from the local download cache.
    LocalCache,
    /// Already present in the destination, checked against the manifest.
    Present,
}

/// Receives progress. Every method has a default that does nothing.
pub trait Reporter: Send + Sync {
    /// The closure is known: `paths` paths, `download_bytes` compressed bytes to read.
    fn planned(&self, paths: usize, download_bytes: u64) {
        let _ = (paths, download_bytes);
    }
    /// An export stream of `bytes` bytes (when known) is being read; its paths are learnt as they come.
    fn reading_export(&self, what: &str, bytes: Option<u64>) {
        let _ = (what, bytes);
    }
    fn started(&self, path: &StorePath, source: Source) {
        let _ = (path, source);
    }
    /// `n` more compressed bytes were read.
    fn progress(&self, n: u64) {
        let _ = n;
    }
    fn finished(&self, path: &StorePath, source: Source) {
        let _ = (path, source);
    }
    fn retrying(&self, path: &StorePath, attempt: u32, why: &str) {
        let _ = (path, attempt, why);
    }
    fn warning(&self, message: &str) {
        let _ = message;
    }
    /// Another process holds the destination or the download cache; this one waits for it.
    fn waiting(&self, message: &str) {
        let _ = message;
    }
}

/// Reports nothing.
pub struct Quiet;

impl Reporter for Quiet {}
