//! The one naming of narwhal's temporary files and trees.
//!
//! Everything narwhal writes under a final name is first written beside it as
//! `.<name>.tmp-<pid>-<n>` and renamed into place: unpacked trees, cache
//! files, the manifest, keys, links. A writer that is killed leaves such names
//! behind; whoever next holds the directory's lock removes them
//! (`narwhal_store::lock`), and nothing counts or ships them. [`is_temp`]
//! also knows the names earlier versions used (`.tmp-<pid>-<key>` in the
//! download cache, `.narwhal-push-<pid>-<hash>` (and `-copy-`, `-import-`), `.narwhal-export-<pid>…`,
//! `.<name>.tmp-<pid>`), so their leftovers go too.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// What follows the final name in a temporary one.
const MARK: &[u8] = b".tmp-";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temporary sibling of `path` (`.<name>.tmp-<pid>-<n>`), unique within
/// this machine at this moment; `None` when `path` has no file name.
pub fn sibling(path: &Path) -> Option<PathBuf> {
    Some(beside(path.parent()?, path.file_name()?))
}

/// The temporary name in `dir` for the final name `dir/name`.
pub fn beside(dir: &Path, name: impl AsRef<OsStr>) -> PathBuf {
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".tmp-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    dir.join(tmp)
}

/// Whether `name` is a temporary name narwhal writes (or wrote in earlier
/// versions). Store paths, cache keys and the files narwhal keeps never start
/// with a dot, so none of them is mistaken for one.
pub fn is_temp(name: &OsStr) -> bool {
    let name = name.as_bytes();
    let Some(rest) = name.strip_prefix(b".") else { return false };
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    // `.tmp-<pid>-<key>` (the download cache), `.narwhal-push-<pid>-…`, `.narwhal-export-<pid>…`.
    for old in [&b"tmp-"[..], b"narwhal-push-", b"narwhal-export-", b"narwhal-copy-", b"narwhal-import-"] {
        if let Some(tail) = rest.strip_prefix(old) {
            let mut parts = tail.splitn(2, |&b| b == b'-');
            if parts.next().is_some_and(digits) && parts.next().is_some() {
                return true;
            }
        }
    }
    // `.<name>.tmp-<pid>-<n>`, or `.<name>.tmp-<pid>`.
    let Some(at) = memchr::memmem::rfind(rest, MARK) else { return false };
    let tail = &rest[at + MARK.len()..];
    at > 0 && tail.split(|&b| b == b'-').take(3).count() <= 2 && tail.split(|&b| b == b'-').all(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siblings_are_temporary_and_unique() {
        let a = sibling(Path::new("/d/abc-hello")).unwrap();
        let b = sibling(Path::new("/d/abc-hello")).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.parent(), Some(Path::new("/d")));
        assert!(is_temp(a.file_name().unwrap()), "{a:?}");
        assert!(sibling(Path::new("/")).is_none());
    }

    #[test]
    fn only_narwhal_temporary_names_are_temporary() {
        for name in [
            ".abc-hello.tmp-12-0",
            ".manifest.json.tmp-7",
            ".tmp-12-0abc-zstd",
            ".narwhal-push-12-0abc",
            ".narwhal-export-12-3",
            ".narwhal-copy-12-0abc",
            ".narwhal-import-12-3",
            "..narwhal-export-12-3.tmp-12-4",
        ] {
            assert!(is_temp(OsStr::new(name)), "{name}");
        }
        for name in [
            "abc-hello",
            "abc-hello.tmp-12-0",
            ".profile.d",
            ".narwhal",
            ".tmp-",
            ".x.tmp-",
            ".x.tmp-1-2-3",
            ".x.tmp-a",
            ".tmp-12",
            ".narwhal-push-x-1",
            ".slugexclude",
            "nar",
        ] {
            assert!(!is_temp(OsStr::new(name)), "{name}");
        }
    }
}
