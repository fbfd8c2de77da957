//! Cache lifecycle: garbage collection that never breaks a closure, and verification (and repair)
//! of caches and deployed trees. A library: it never prints; progress goes to [`GcReporter`].
//!
//! # GC ([`gc::gc`])
//!
//! - Roots: every pin (after the keep rules drop superseded revision pins), every narinfo written
//!   within `keep_since`, every path given, and everything written within the grace period (so a
//!   push in flight is never collected). An unreadable narinfo is kept and reported.
//! - Mark: one listing of the cache ([`narwhal_store::CacheWriter::list_objects`]: sizes,
//!   modification times and ETags from the listing, no request per object), the narinfos the
//!   local index does not know with the same ETag read in parallel ([`scan`]), then the closure
//!   of the roots over References. A reference the cache already lacks is reported, never "fixed".
//! - Phase 1 publishes the candidates (unreachable narinfos; NARs older than the grace period that
//!   no reachable narinfo names) with the mark time in `gc/pending.json`
//!   ([`narwhal_store::gc_window`]), which every `narwhal push` reads.
//! - Phase 2, no earlier than one grace period later, marks again and deletes the candidates still
//!   unreachable and not written since the mark: narinfos referrers first (wave by wave, so no
//!   remaining narinfo ever names a missing one), their `.ls` listings and logs (a log only when no
//!   remaining narinfo has its deriver), then the candidate NARs no remaining narinfo names, once
//!   they have been unreferenced for `nar_delay` (`gc/orphans.json` remembers since when), and
//!   incomplete multipart uploads older than the grace period.
//! - One GC at a time: [`lease`].
//!
//! # Verify ([`verify`])
//!
//! Each narinfo's signatures, its NAR (FileSize and FileHash; NarSize and NarHash with
//! `contents`), and its references' narinfos; a repair fetches a NAR again from another cache,
//! checks it against the narinfo and stores it atomically. [`verify::verify_tree`] checks a
//! deployed tree against its manifest.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod duration;
pub mod error;
pub mod gc;
pub mod lease;
pub mod scan;
pub mod verify;

pub use error::Error;
pub use gc::{gc, GcOptions, Phase, Summary};

/// Progress of a GC or a verification; every method defaults to nothing.
pub trait GcReporter: Send + Sync {
    /// A new stage starts (`listing the cache`, `reading narinfos`, …).
    fn stage(&self, what: &str) {
        let _ = what;
    }
    /// Objects listed so far.
    fn listed(&self, objects: u64) {
        let _ = objects;
    }
    /// `total` objects are about to be read.
    fn reading(&self, total: usize) {
        let _ = total;
    }
    fn read_one(&self) {}
    /// `total` objects are about to be deleted.
    fn deleting(&self, total: usize) {
        let _ = total;
    }
    fn deleted_one(&self) {}
    /// Waiting for the grace period to pass, until `until_ms` (Unix ms).
    fn waiting(&self, until_ms: i64) {
        let _ = until_ms;
    }
}

/// A reporter that reports nothing.
pub struct Quiet;
impl GcReporter for Quiet {}

/// The time now, Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
