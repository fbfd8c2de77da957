//! The one scheme for narwhal's temporary files and trees.
//!
//! Everything narwhal writes under a final name is first written beside it as
//! `.<name>.tmp-<pid>-<random>` and renamed into place: unpacked trees, cache
//! files, the manifest, keys, links, uploads, blobs. The files and directories
//! are `tempfile`'s ([`NamedTempFile`], [`TempDir`]): created exclusively,
//! removed when dropped unless persisted, so every error path cleans up. A
//! writer that is killed leaves such names behind; whoever next holds the
//! directory's lock removes them (`narwhal_store::lock::sweep`), and nothing
//! counts or ships them. [`is_temp`] also knows the names earlier versions
//! used (`.tmp-<pid>-<key>` in the download cache, `.narwhal-push-<pid>-<hash>`
//! (and `-copy-`, `-import-`), `.narwhal-export-<pid>…`, `.<name>.tmp-<pid>`),
//! so their leftovers go too.

use std::ffi::{OsStr, OsString};
use std::fs::Permissions;
use std::io::{self, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

pub use tempfile::{NamedTempFile, TempDir, TempPath};

/// What follows the final name in a temporary one.
const MARK: &[u8] = b".tmp-";

/// Random characters after the pid: enough that two writers never meet.
const RANDOM: usize = 8;

/// Runs `f` with a builder of temporary names for the final name `name`,
/// creating files with `mode` (less the umask).
fn with_builder<R>(name: &OsStr, mode: u32, f: impl FnOnce(&tempfile::Builder<'_, '_>) -> R) -> R {
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(format!(".tmp-{}-", std::process::id()));
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).rand_bytes(RANDOM).permissions(Permissions::from_mode(mode));
    f(&builder)
}

/// A new empty file in `dir` named for the final name `dir/name`, as
/// `File::create` would make it (mode 0666 less the umask); removed on drop
/// unless persisted.
pub fn file_in(dir: &Path, name: impl AsRef<OsStr>) -> io::Result<NamedTempFile> {
    file_with_mode(dir, name.as_ref(), 0o666)
}

/// [`file_in`] with the file's mode.
pub fn file_with_mode(dir: &Path, name: &OsStr, mode: u32) -> io::Result<NamedTempFile> {
    with_builder(name, mode, |b| b.tempfile_in(dir))
}

/// A new empty file beside `path`, named after it, for a rename to `path`.
pub fn file_for(path: &Path) -> io::Result<NamedTempFile> {
    let (dir, name) = split(path)?;
    file_in(dir, name)
}

/// Something `make` creates in `dir` under a temporary name for `dir/name`
/// (a symlink, a hard link), removed on drop unless persisted; a name taken
/// already (`AlreadyExists`) makes it try another.
pub fn make_in<R>(
    dir: &Path,
    name: impl AsRef<OsStr>,
    make: impl FnMut(&Path) -> io::Result<R>,
) -> io::Result<NamedTempFile<R>> {
    with_builder(name.as_ref(), 0o666, |b| b.make_in(dir, make))
}

/// A new directory in `dir` named for the final name `dir/name` (mode 0777
/// less the umask), removed with its contents on drop unless kept.
pub fn dir_in(dir: &Path, name: impl AsRef<OsStr>) -> io::Result<TempDir> {
    with_builder(name.as_ref(), 0o777, |b| b.tempdir_in(dir))
}

/// Writes `contents` to `path` through a temporary file beside it (mode
/// `mode`, less the umask), synced, then renamed, so `path` never holds a
/// partial file. With `overwrite` false an existing `path` is an error
/// (`AlreadyExists`), also when it appears meanwhile.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32, overwrite: bool) -> io::Result<()> {
    if !overwrite && std::fs::symlink_metadata(path).is_ok() {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} already exists", path.display())));
    }
    let (dir, name) = split(path)?;
    let mut tmp = file_with_mode(dir, name, mode)?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    let persisted = if overwrite { tmp.persist(path) } else { tmp.persist_noclobber(path) };
    persisted.map(drop).map_err(|e| e.error)
}

/// `path`'s directory (`.` for a bare name) and file name.
fn split(path: &Path) -> io::Result<(&Path, &OsStr)> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{} is not a file name", path.display())))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((dir, name))
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
    // `.<name>.tmp-<pid>-<random>` (earlier `.<name>.tmp-<pid>-<n>`), or `.<name>.tmp-<pid>`.
    let Some(at) = memchr::memmem::rfind(rest, MARK) else { return false };
    let mut parts = rest[at + MARK.len()..].split(|&b| b == b'-');
    let random = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_alphanumeric);
    at > 0 && parts.next().is_some_and(digits) && parts.next().is_none_or(random) && parts.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siblings_are_temporary_and_unique() {
        let dir = tempfile::tempdir().unwrap();
        let a = file_for(&dir.path().join("abc-hello")).unwrap();
        let b = file_for(&dir.path().join("abc-hello")).unwrap();
        assert_ne!(a.path(), b.path());
        assert_eq!(a.path().parent(), Some(dir.path()));
        assert!(is_temp(a.path().file_name().unwrap()), "{a:?}");
        assert!(file_for(Path::new("/")).is_err());
        let d = dir_in(dir.path(), "abc-tree").unwrap();
        assert!(is_temp(d.path().file_name().unwrap()), "{d:?}");
        let (a_path, d_path) = (a.path().to_owned(), d.path().to_owned());
        drop((a, d));
        assert!(!a_path.exists() && !d_path.exists());
    }

    #[test]
    fn atomic_writes_replace_or_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        write_atomic(&path, b"one", 0o600, false).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let err = write_atomic(&path, b"two", 0o600, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        write_atomic(&path, b"three", 0o644, true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"three");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "a temporary file was left");
    }

    #[test]
    fn only_narwhal_temporary_names_are_temporary() {
        for name in [
            ".abc-hello.tmp-12-0",
            ".abc-hello.tmp-12-x7Yq0bZ3",
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
            ".x.tmp-1-",
            ".x.tmp-1-a.b",
            ".tmp-12",
            ".narwhal-push-x-1",
            ".slugexclude",
            "nar",
        ] {
            assert!(!is_temp(OsStr::new(name)), "{name}");
        }
    }
}
