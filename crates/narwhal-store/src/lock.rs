//! Locks on the directories narwhal writes, and the removal of what killed
//! writers left there.
//!
//! A lock is `flock(2)` on a lock file inside the directory (a fetch
//! destination's `.narwhal/lock`, a cache's or download cache's
//! [`LOCK_FILE`]); the kernel releases it when its holder exits, however it
//! exits, so a lock is never stale. Whoever holds it exclusively writes
//! `process <pid> (<command>)` into the file, which a waiting writer names.
//!
//! - A fetch destination or a slug is written by one process at a time:
//!   [`DirLock::exclusive`]. A second one waits (bounded) and then fails.
//! - A cache directory or a download cache takes only atomic, content-addressed
//!   writes, which may interleave: writers share the lock ([`DirLock::shared`]).
//!
//! Temporary names ([`narwhal_formats::temp`]) in a directory belong to a
//! writer that holds its lock. So whoever holds the lock exclusively removes
//! them ([`sweep`]): their writers are gone. A shared writer sweeps first when
//! nobody else holds the lock, then shares it.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, Mode, OFlags};
use thiserror::Error;

/// The lock file in a cache directory or a download cache.
pub const LOCK_FILE: &str = ".narwhal-lock";

/// How long a writer waits for a lock unless `NARWHAL_LOCK_WAIT` says otherwise.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(600);

/// The variable that sets how long a writer waits, in seconds.
pub const WAIT_VAR: &str = "NARWHAL_LOCK_WAIT";

/// How long a writer waits for a lock: `value` (of [`WAIT_VAR`]) seconds, else [`DEFAULT_WAIT`].
pub fn parse_wait(value: Option<&str>) -> Result<Duration, LockError> {
    match value {
        None => Ok(DEFAULT_WAIT),
        Some(v) => {
            v.trim().parse::<u32>().map(|s| Duration::from_secs(s.into())).map_err(|_| LockError::BadWait(v.to_owned()))
        }
    }
}

/// How often a waiting writer tries again.
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LockError {
    #[error(
        "{dir} is in use by {holder} (waited {waited} s); run again once it has finished, or set NARWHAL_LOCK_WAIT=SECONDS to wait longer"
    )]
    Busy { dir: PathBuf, holder: String, waited: u64 },
    #[error("NARWHAL_LOCK_WAIT={0:?} is not a number of seconds; set it to one, such as 600")]
    BadWait(String),
    #[error("cannot lock {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct DirLock {
    file: File,
    /// The lock file.
    path: PathBuf,
    /// The directory it guards, for messages.
    dir: PathBuf,
}

impl DirLock {
    /// Locks `dir` for this writer alone (the lock file `dir/lock_file`),
    /// waiting at most `wait`, then removes the temporary names in `sweep_dirs`
    /// (their writers are gone). `what` names this writer (`narwhal fetch`)
    /// for the next one; `waiting` is told once, if this one has to wait.
    pub fn exclusive(
        dir: &Path,
        lock_file: &str,
        sweep_dirs: &[&Path],
        wait: Duration,
        what: &str,
        waiting: &dyn Fn(&str),
    ) -> Result<Self, LockError> {
        let lock = Self::open(dir, lock_file)?;
        lock.wait_for(FlockOperation::NonBlockingLockExclusive, wait, waiting)?;
        lock.claim(what)?;
        for dir in sweep_dirs {
            sweep(dir);
        }
        Ok(lock)
    }

    /// Locks `dir` shared with other writers of the same kind. When nobody
    /// else holds it, first sweeps `sweep_dirs` as [`Self::exclusive`] does.
    pub fn shared(
        dir: &Path,
        lock_file: &str,
        sweep_dirs: &[&Path],
        wait: Duration,
        what: &str,
        waiting: &dyn Fn(&str),
    ) -> Result<Self, LockError> {
        let lock = Self::open(dir, lock_file)?;
        if lock.attempt(FlockOperation::NonBlockingLockExclusive)? {
            lock.claim(what)?;
            for dir in sweep_dirs {
                sweep(dir);
            }
        }
        // Converting releases the exclusive lock first: another writer may
        // take it meanwhile (to sweep, briefly); then this one waits.
        lock.wait_for(FlockOperation::NonBlockingLockShared, wait, waiting)?;
        Ok(lock)
    }

    /// This shared lock made exclusive if nobody else holds it now; `None`
    /// (and the lock released) otherwise. For work done last, such as
    /// pruning a download cache other fetches may be reading.
    pub fn exclusive_now(self, what: &str) -> Result<Option<Self>, LockError> {
        if self.attempt(FlockOperation::NonBlockingLockExclusive)? {
            self.claim(what)?;
            Ok(Some(self))
        } else {
            Ok(None)
        }
    }

    fn open(dir: &Path, lock_file: &str) -> Result<Self, LockError> {
        let path = dir.join(lock_file);
        // Never through a symlink someone put in its place.
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::open(&path, flags, Mode::from_raw_mode(0o644))
            .map_err(|e| LockError::Io { path: path.clone(), source: e.into() })?;
        let file = File::from(fd);
        Ok(Self { file, path, dir: dir.to_owned() })
    }

    /// One non-blocking try; `false` when someone else holds it.
    fn attempt(&self, op: FlockOperation) -> Result<bool, LockError> {
        loop {
            match rustix::fs::flock(&self.file, op) {
                Ok(()) => return Ok(true),
                Err(rustix::io::Errno::WOULDBLOCK) => return Ok(false),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(LockError::Io { path: self.path.clone(), source: e.into() }),
            }
        }
    }

    /// Tries until `wait` has passed, telling `waiting` who holds the lock once.
    fn wait_for(&self, op: FlockOperation, wait: Duration, waiting: &dyn Fn(&str)) -> Result<(), LockError> {
        let started = Instant::now();
        let mut told = false;
        loop {
            if self.attempt(op)? {
                return Ok(());
            }
            let holder = self.holder();
            if started.elapsed() >= wait {
                return Err(LockError::Busy { dir: self.dir.clone(), holder, waited: wait.as_secs() });
            }
            if !told {
                waiting(&format!(
                    "waiting for {} (in use by {holder}), at most {} s",
                    self.dir.display(),
                    wait.saturating_sub(started.elapsed()).as_secs()
                ));
                told = true;
            }
            std::thread::sleep(POLL.min(wait.saturating_sub(started.elapsed())));
        }
    }

    /// Records this process as the holder.
    fn claim(&self, what: &str) -> Result<(), LockError> {
        let line = format!("process {} ({what})\n", std::process::id());
        let written = self.file.set_len(0).and_then(|()| self.file.write_all_at(line.as_bytes(), 0));
        written.map_err(|source| LockError::Io { path: self.path.clone(), source })
    }

    /// Who holds the lock, as its exclusive holder last wrote it.
    fn holder(&self) -> String {
        let mut buf = [0u8; 200];
        let n = self.file.read_at(&mut buf, 0).unwrap_or(0);
        let text = String::from_utf8_lossy(buf.get(..n).unwrap_or_default());
        match text.lines().next().map(str::trim) {
            Some(line) if !line.is_empty() => line.to_owned(),
            _ => "another narwhal process".to_owned(),
        }
    }
}

/// Removes the temporary names ([`narwhal_formats::temp::is_temp`]) directly
/// in `dir`, best effort; returns how many went. Only for a directory whose
/// lock this process holds exclusively.
pub fn sweep(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        if !narwhal_formats::temp::is_temp(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        let gone = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        if gone.is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet(_: &str) {}

    #[test]
    fn a_second_writer_waits_bounded_and_names_the_holder() {
        let dir = std::env::temp_dir().join(format!("narwhal-lock-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = DirLock::exclusive(&dir, LOCK_FILE, &[], Duration::ZERO, "narwhal fetch", &quiet).unwrap();
        let told = std::cell::RefCell::new(Vec::new());
        let err = DirLock::exclusive(&dir, LOCK_FILE, &[], Duration::from_millis(300), "narwhal fetch", &|m: &str| {
            told.borrow_mut().push(m.to_owned());
        })
        .unwrap_err();
        let holder = format!("process {} (narwhal fetch)", std::process::id());
        assert!(err.to_string().contains(&holder), "{err}");
        assert_eq!(told.borrow().len(), 1, "{told:?}");
        assert!(told.borrow()[0].contains(&holder), "{told:?}");
        // Shared writers cannot come in either; once it is gone, two share it.
        assert!(DirLock::shared(&dir, LOCK_FILE, &[], Duration::ZERO, "narwhal push", &quiet).is_err());
        drop(first);
        let a = DirLock::shared(&dir, LOCK_FILE, &[], Duration::ZERO, "narwhal push", &quiet).unwrap();
        let b = DirLock::shared(&dir, LOCK_FILE, &[], Duration::ZERO, "narwhal push", &quiet).unwrap();
        assert!(DirLock::exclusive(&dir, LOCK_FILE, &[], Duration::ZERO, "narwhal fetch", &quiet).is_err());
        assert!(a.exclusive_now("narwhal fetch").unwrap().is_none(), "b still shares it");
        assert!(b.exclusive_now("narwhal fetch").unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sweeping_removes_only_temporary_names() {
        let dir = std::env::temp_dir().join(format!("narwhal-sweep-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join(".abc-x.tmp-1-2/sub")).unwrap();
        std::fs::write(dir.join(".narwhal-push-1-abc"), "").unwrap();
        std::fs::write(dir.join("abc.narinfo"), "").unwrap();
        std::fs::create_dir_all(dir.join("abc-x")).unwrap();
        assert_eq!(sweep(&dir), 2);
        let mut left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        left.sort();
        assert_eq!(left, ["abc-x", "abc.narinfo"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
