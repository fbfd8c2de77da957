//! The window a garbage collection opens in a cache, as `narwhal gc` publishes it and every
//! `narwhal push` reads it: `gc/pending.json` ([`keys::GC_PENDING`]).
//!
//! Phase 1 of a GC lists the narinfos and NARs it found unreachable (the candidates) with the time
//! of its mark; phase 2, at least one grace period later, deletes those still unreachable and not
//! written since the mark, after setting `phase` to 2. A push that finds a window open treats the
//! candidates of its closure as missing (uploading them again, which gives them a modification time
//! after the mark, so phase 2 keeps them), and before each narinfo it commits reads the window
//! again: once phase 2 has started it waits for the window to close and starts over, so no narinfo
//! it commits can name a path phase 2 deletes.
//!
//! ```json
//! {"version":1,"markMs":1796220000000,"notBeforeMs":1796241600000,"phase":1,
//!  "owner":"host:1234","narinfos":["<hash part>",…],"nars":["nar/<file hash>.nar.zst",…]}
//! ```

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::{StoreError, StoreErrorKind};
use crate::{keys, BinaryCache};

/// The format's version; a reader refuses any other.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GcWindow {
    pub version: u32,
    /// When phase 1 listed the cache (Unix milliseconds): phase 2 deletes only objects older.
    pub mark_ms: i64,
    /// Phase 2 starts no earlier (the mark plus one grace period).
    pub not_before_ms: i64,
    /// 1 while only candidates are published, 2 once deleting has started.
    pub phase: u8,
    /// Who opened it (`host:pid`), for messages.
    pub owner: String,
    /// The hash parts of the candidate narinfos.
    pub narinfos: BTreeSet<String>,
    /// The keys of the candidate NARs.
    pub nars: BTreeSet<String>,
}

impl GcWindow {
    /// The window open in `cache`, if any.
    pub fn read(cache: &dyn BinaryCache) -> Result<Option<Self>, StoreError> {
        let Some(bytes) = cache.get(keys::GC_PENDING)? else { return Ok(None) };
        Self::parse(&bytes).map(Some).map_err(|why| {
            StoreError::new(format!("{}/{}", cache.url(), keys::GC_PENDING), StoreErrorKind::BadGcState(why))
        })
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let window: Self = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if window.version != VERSION {
            return Err(format!("version {} (this narwhal reads {VERSION})", window.version));
        }
        if !matches!(window.phase, 1 | 2) {
            return Err(format!("phase {} is neither 1 nor 2", window.phase));
        }
        Ok(window)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Whether phase 2 (deleting) has started.
    pub fn deleting(&self) -> bool {
        self.phase >= 2
    }
}

/// The lease of the one GC running (`gc/lease.json`, [`keys::GC_LEASE`]); `narwhal gc` takes and
/// renews it, and a push looks at it to tell a GC deleting now from one that died deleting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseRecord {
    pub host: String,
    pub pid: u32,
    /// Unique to one acquisition: the holder reads it back to know the lease is its own.
    pub token: String,
    pub acquired_ms: i64,
    pub expires_ms: i64,
}

impl LeaseRecord {
    /// The lease in `cache`, if there is one that parses.
    pub fn read(cache: &dyn BinaryCache) -> Result<Option<Self>, StoreError> {
        Ok(cache.get(keys::GC_LEASE)?.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Expired, or held by a process of this machine that is gone.
    pub fn is_stale(&self, now_ms: i64) -> bool {
        self.expires_ms <= now_ms
            || (self.host == hostname() && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists())
    }

    /// `process PID on HOST`, for messages.
    pub fn owner(&self) -> String {
        format!("process {} on {}", self.pid, self.host)
    }
}

/// This machine's name, as leases record it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map_or_else(|_| "unknown".to_owned(), |h| h.trim().to_owned())
}

/// Whether the window is being deleted by a GC that is alive: phase 2 and a lease not stale.
pub fn deleting_now(cache: &dyn BinaryCache, window: &GcWindow, now_ms: i64) -> Result<bool, StoreError> {
    if !window.deleting() {
        return Ok(false);
    }
    Ok(LeaseRecord::read(cache)?.is_some_and(|l| !l.is_stale(now_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let w = GcWindow {
            version: VERSION,
            mark_ms: 5,
            not_before_ms: 10,
            phase: 1,
            owner: "h:1".into(),
            narinfos: ["a".to_owned()].into(),
            nars: BTreeSet::new(),
        };
        assert_eq!(GcWindow::parse(&w.to_json()), Ok(w.clone()));
        let v2 = String::from_utf8(w.to_json()).unwrap().replace("\"version\":1", "\"version\":2");
        assert!(GcWindow::parse(v2.as_bytes()).unwrap_err().contains("version 2"));
        assert!(GcWindow::parse(b"{").is_err());
        let p3 = String::from_utf8(w.to_json()).unwrap().replace("\"phase\":1", "\"phase\":3");
        assert!(GcWindow::parse(p3.as_bytes()).is_err());
    }
}
