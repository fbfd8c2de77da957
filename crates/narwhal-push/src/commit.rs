//! The one way a path goes into a cache, for every push (from the local store, from another cache,
//! from an export): its NAR first, then its narinfo, signed, once the narinfos of its references
//! are in (the caller waits for that: [`crate::push::Commits`] or the export's own order).

use std::path::Path;
use std::time::Duration;

use narwhal_formats::narinfo::NarInfo;
use narwhal_formats::signature::SecretKey;
use narwhal_formats::store_path::StoreDir;
use narwhal_store::gc_window::{deleting_now, GcWindow};
use narwhal_store::{keys, CacheWriter};

use crate::error::Error;

/// Writes a `nix-cache-info` naming `store_dir` into a cache that has none.
pub(crate) fn ensure_cache_info(dest: &dyn CacheWriter, store_dir: &StoreDir) -> Result<(), Error> {
    if !dest.exists(keys::CACHE_INFO)? {
        dest.put(keys::CACHE_INFO, keys::cache_info_for(store_dir).as_bytes(), keys::CACHE_INFO_TYPE)?;
    }
    Ok(())
}

/// Uploads the compressed NAR at `file` as `url`, unless the cache has it (NARs are named by their
/// FileHash, so one there is the same bytes) and no GC window lists it as a candidate.
pub(crate) fn store_nar(dest: &dyn CacheWriter, url: &str, file: &Path, gc: &GcGuard) -> Result<(), Error> {
    if gc.nar_is_candidate(url) || !dest.exists(url)? {
        dest.put_file(url, file, keys::NAR_TYPE)?;
    }
    Ok(())
}

/// Signs `narinfo` with each of `keys` (keeping the signatures it has, sorted, as Nix does).
pub(crate) fn sign(narinfo: &mut NarInfo, keys: &[SecretKey]) -> Result<(), Error> {
    narinfo.sigs.sort();
    for key in keys {
        let path = narinfo.store_dir.display(&narinfo.path).to_string();
        narinfo.sign(key).map_err(|source| Error::Sign { path, source })?;
    }
    Ok(())
}

/// The commit point: writes `narinfo`. Its NAR and its references' narinfos must be in already.
pub(crate) fn commit(dest: &dyn CacheWriter, narinfo: &NarInfo) -> Result<(), Error> {
    dest.put(&keys::narinfo(&narinfo.path), narinfo.to_string().as_bytes(), keys::NARINFO_TYPE)?;
    Ok(())
}

/// What a push knows of a garbage collection's window ([`narwhal_store::gc_window`]): candidates
/// of the closure are uploaded again, and each commit first checks that the window has not moved.
#[derive(Debug, Default)]
pub(crate) struct GcGuard {
    /// The window open when the push started (phase 1), if any.
    window: Option<GcWindow>,
}

/// The variable that sets [`crate::PushOptions::gc_wait`], in seconds.
pub const GC_WAIT_VAR: &str = "NARWHAL_GC_WAIT";
/// How long a push waits for a GC's phase 2 unless told: an hour.
pub const DEFAULT_GC_WAIT: Duration = Duration::from_secs(3600);

/// The wait `value` (of [`GC_WAIT_VAR`]) names in seconds, else [`DEFAULT_GC_WAIT`].
pub fn parse_gc_wait(value: Option<&str>) -> Result<Duration, Error> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(DEFAULT_GC_WAIT),
        Some(v) => v.parse::<u32>().map(|s| Duration::from_secs(s.into())).map_err(|_| Error::BadGcWait(v.to_owned())),
    }
}

/// Runs `attempt` (one push over a fresh [`GcGuard`]) and starts it over when a GC moved on meanwhile,
/// at most three times: the next attempt's [`GcGuard::open`] waits out the GC's phase 2, and uploads
/// again what the GC may have deleted.
pub(crate) fn restart_when_gc_moves<T>(mut attempt: impl FnMut() -> Result<T, Error>) -> Result<T, Error> {
    let mut moved = 0;
    loop {
        match attempt() {
            Err(Error::GcMoved { .. }) if moved < 3 => moved += 1,
            other => return other,
        }
    }
}

impl GcGuard {
    /// Reads the window of `dest`; while one is deleting (phase 2), waits for it to close.
    pub(crate) fn open(dest: &dyn CacheWriter, wait: Duration) -> Result<Self, Error> {
        let started = std::time::Instant::now();
        loop {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            match GcWindow::read(dest)? {
                // A GC that died deleting left its window: it stands as candidates, as in phase 1.
                Some(w) if deleting_now(dest, &w, now)? => {
                    if started.elapsed() >= wait {
                        let waited = started.elapsed().as_secs();
                        return Err(Error::GcBusy { cache: dest.url().to_owned(), owner: w.owner, waited });
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
                window => return Ok(Self { window }),
            }
        }
    }

    /// Whether the window lists the narinfo of `hash_part` (the push then uploads it again).
    pub(crate) fn path_is_candidate(&self, hash_part: &str) -> bool {
        self.window.as_ref().is_some_and(|w| w.narinfos.contains(hash_part))
    }

    pub(crate) fn nar_is_candidate(&self, url: &str) -> bool {
        self.window.as_ref().is_some_and(|w| w.nars.contains(url))
    }

    /// Before a commit: with a window open at the start, it must still be the same, in the same
    /// phase, written by the same GC; otherwise the push starts over (after phase 2 is done), as
    /// what it skipped may be gone.
    pub(crate) fn check(&self, dest: &dyn CacheWriter) -> Result<(), Error> {
        let Some(open) = &self.window else { return Ok(()) };
        match GcWindow::read(dest)? {
            Some(now) if now.mark_ms == open.mark_ms && now.phase == open.phase && now.owner == open.owner => Ok(()),
            _ => Err(Error::GcMoved { cache: dest.url().to_owned(), owner: open.owner.clone() }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_gc_wait_is_whole_seconds_or_an_hour() {
        assert_eq!(parse_gc_wait(None).unwrap(), DEFAULT_GC_WAIT);
        assert_eq!(parse_gc_wait(Some(" ")).unwrap(), DEFAULT_GC_WAIT);
        assert_eq!(parse_gc_wait(Some("0")).unwrap(), Duration::ZERO);
        assert_eq!(parse_gc_wait(Some(" 600 ")).unwrap(), Duration::from_secs(600));
        for bad in ["1.5", "-1", "10m", "99999999999"] {
            let err = parse_gc_wait(Some(bad)).unwrap_err();
            assert_eq!(err.to_string(), format!("NARWHAL_GC_WAIT={bad:?} is not a number of seconds"));
        }
    }
}
