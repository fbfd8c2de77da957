//! A repository laid out from a cache: every file planned first, then written under a temporary
//! name beside OUT and renamed into place, so OUT appears whole or not at all.
//!
//! The layout depends only on the files' names and contents: files are copied (never linked) with
//! mode 0644, directories 0755, in byte order, so two captures of the same dependencies give the
//! same NAR, whatever the cache's timestamps, owners or inode order.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use narwhal_formats::hash::{Algorithm, Encoding, Hash, HashingWriter};

use crate::Error;

/// What a layout wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// Files in OUT.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Cache files that held the same bytes as another under the same name (written once).
    pub duplicates: u64,
    /// Cache files left out: the tools' own volatile files (locks, indexes, timestamps).
    pub left_out: u64,
}

/// The SHA-1 a cached file must have, and who says so.
#[derive(Debug, Clone)]
pub(crate) enum Expected {
    /// Nothing to check against.
    Nothing,
    /// The name of the folder the file is in: Gradle's `<sha1>` (hex, leading zeros dropped).
    Folder(String),
    /// A `.sha1` file beside it (Maven), as read.
    Sidecar(String),
}

#[derive(Debug)]
struct Source {
    path: PathBuf,
    expected: Expected,
}

/// The files of a layout, by their path inside OUT.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    files: BTreeMap<PathBuf, Vec<Source>>,
    pub left_out: u64,
}

impl Plan {
    pub fn add(&mut self, target: PathBuf, path: PathBuf, expected: Expected) {
        self.files.entry(target).or_default().push(Source { path, expected });
    }

    /// Writes the planned files into a new directory `out`.
    pub fn write(self, out: &Path) -> Result<Summary, Error> {
        let bad = || Error::BadOut { path: out.to_path_buf() };
        let (Some(parent), Some(name)) = (out.parent(), out.file_name()) else { return Err(bad()) };
        let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
        // The staging directory beside OUT (narwhal_formats::temp) is removed as it drops, whatever happens.
        let staging = narwhal_formats::temp::dir_in(parent, name)
            .map_err(|source| Error::Write { path: parent.to_path_buf(), source })?;
        let tmp = staging.path().join(name);
        let mut summary = Summary { left_out: self.left_out, ..Summary::default() };
        let result = self.write_into(&tmp, &mut summary).and_then(|()| {
            if fs::symlink_metadata(out).is_ok() {
                return Err(Error::OutExists { path: out.to_path_buf() });
            }
            fs::rename(&tmp, out).map_err(|source| Error::Write { path: out.to_path_buf(), source })
        });
        result.map(|()| summary)
    }

    fn write_into(self, tmp: &Path, summary: &mut Summary) -> Result<(), Error> {
        let mut dirs = fs::DirBuilder::new();
        dirs.mode(0o755);
        dirs.create(tmp).map_err(|source| Error::Write { path: tmp.to_path_buf(), source })?;
        dirs.recursive(true);
        for (target, sources) in self.files {
            let dest = tmp.join(&target);
            if let Some(parent) = dest.parent() {
                dirs.create(parent).map_err(|source| Error::Write { path: parent.to_path_buf(), source })?;
            }
            let mut sources = sources.into_iter();
            let Some(first) = sources.next() else { continue };
            let (sha1, len) = copy_checked(&first, &dest)?;
            summary.files += 1;
            summary.bytes += len;
            for other in sources {
                let (other_sha1, _) = hash_checked(&other)?;
                if other_sha1 != sha1 {
                    return Err(Error::Conflict { target, first: first.path, second: other.path });
                }
                summary.duplicates += 1;
            }
        }
        Ok(())
    }
}

/// Copies `source` to `dest` (mode 0644), checking its SHA-1; returns it and the length.
fn copy_checked(source: &Source, dest: &Path) -> Result<(Hash, u64), Error> {
    let mut from = open_regular(&source.path)?;
    let to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(dest)
        .map_err(|e| Error::Write { path: dest.to_path_buf(), source: e })?;
    // The mode asked for went through the umask: set it as it must be.
    to.set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(|e| Error::Write { path: dest.to_path_buf(), source: e })?;
    let mut writer = HashingWriter::new(Algorithm::Sha1, to);
    copy(&mut from, &mut writer, &source.path, dest)?;
    let (hash, len, _) = writer.finish();
    check(source, &hash)?;
    Ok((hash, len))
}

/// The SHA-1 of `source`, checked as [`copy_checked`] does, and its length.
fn hash_checked(source: &Source) -> Result<(Hash, u64), Error> {
    let mut from = open_regular(&source.path)?;
    let mut writer = HashingWriter::new(Algorithm::Sha1, io::sink());
    copy(&mut from, &mut writer, &source.path, Path::new("/dev/null"))?;
    let (hash, len, _) = writer.finish();
    check(source, &hash)?;
    Ok((hash, len))
}

/// `io::copy`, with the read or the write side named in its error.
fn copy(from: &mut File, to: &mut impl io::Write, from_path: &Path, to_path: &Path) -> Result<(), Error> {
    let mut buf = vec![0; 256 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(Error::Read { path: from_path.to_path_buf(), source }),
        };
        let chunk = buf.get(..n).unwrap_or_default();
        to.write_all(chunk).map_err(|source| Error::Write { path: to_path.to_path_buf(), source })?;
    }
}

/// Opens a cached file, refusing anything but a regular file (a symlink is not followed).
pub(crate) fn open_regular(path: &Path) -> Result<File, Error> {
    let meta = fs::symlink_metadata(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
    if !meta.is_file() {
        return Err(Error::Unexpected { path: path.to_path_buf(), found: kind_of(&meta), expected: "regular files" });
    }
    File::open(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })
}

fn check(source: &Source, actual: &Hash) -> Result<(), Error> {
    let hex = actual.encode(Encoding::Base16);
    let (expected, said_by) = match &source.expected {
        Expected::Nothing => return Ok(()),
        Expected::Folder(name) => (name, "its folder name"),
        Expected::Sidecar(s) => (s, "the .sha1 file beside it"),
    };
    // Gradle names the folder with BigInteger.toString(16), which drops leading zeros.
    if hex.trim_start_matches('0') == expected.to_ascii_lowercase().trim_start_matches('0') {
        Ok(())
    } else {
        Err(Error::Checksum {
            path: source.path.clone(),
            expected: expected.clone(),
            actual: hex,
            source_of_expected: said_by,
        })
    }
}

/// Whether `name` can be a SHA-1 as Gradle names folders (1 to 40 lowercase hex digits).
pub(crate) fn is_sha1_name(name: &str) -> bool {
    (1..=40).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What a file system entry is, in words.
pub(crate) fn kind_of(meta: &fs::Metadata) -> &'static str {
    narwhal_formats::tree::kind(meta.file_type())
}

/// Checks one name taken from the cache for use as a path component in OUT.
pub(crate) fn component<'a>(name: &'a std::ffi::OsStr, path: &Path, what: &'static str) -> Result<&'a str, Error> {
    let bad = |why| Error::BadName { path: path.to_path_buf(), what, why };
    let s = name.to_str().ok_or_else(|| bad("it is not UTF-8"))?;
    if s.is_empty() {
        return Err(bad("it is empty"));
    }
    if s == "." || s == ".." || s.starts_with('.') {
        return Err(bad("it starts with a dot"));
    }
    if s.bytes().any(|b| b == b'/' || b == b'\\' || b.is_ascii_control()) {
        return Err(bad("it holds a slash, a backslash or a control character"));
    }
    Ok(s)
}

/// Refuses an OUT that exists, or that lies inside the cache `from` (it would be read back).
pub(crate) fn check_out(out: &Path, from: &Path) -> Result<(), Error> {
    if fs::symlink_metadata(out).is_ok() {
        return Err(Error::OutExists { path: out.to_path_buf() });
    }
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if out.file_name().is_none() {
        return Err(Error::BadOut { path: out.to_path_buf() });
    }
    let parent = fs::canonicalize(parent).map_err(|source| Error::Write { path: parent.to_path_buf(), source })?;
    let from_real = fs::canonicalize(from).map_err(|source| Error::Read { path: from.to_path_buf(), source })?;
    if parent.starts_with(&from_real) {
        return Err(Error::OutInsideSource { out: out.to_path_buf(), from: from.to_path_buf() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(path: &Path, expected: Expected) -> Source {
        Source { path: path.to_path_buf(), expected }
    }

    #[test]
    fn folder_sha1_without_leading_zeros_matches() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        // A content whose digest starts with a zero digit, which Gradle's folder name drops.
        let content = (0u32..1000)
            .map(|i| i.to_string())
            .find(|c| Hash::of(Algorithm::Sha1, c.as_bytes()).encode(Encoding::Base16).starts_with('0'))
            .unwrap();
        fs::write(&f, &content).unwrap();
        let hex = Hash::of(Algorithm::Sha1, content.as_bytes()).encode(Encoding::Base16);
        let short = hex.trim_start_matches('0').to_owned();
        assert!(hash_checked(&source(&f, Expected::Folder(short))).is_ok());
        assert!(hash_checked(&source(&f, Expected::Folder(hex))).is_ok());
        let err = hash_checked(&source(&f, Expected::Folder("abc".into()))).unwrap_err();
        assert!(matches!(err, Error::Checksum { .. }), "{err}");
    }

    #[test]
    fn a_failed_layout_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a"), "one").unwrap();
        fs::write(dir.path().join("b"), "two").unwrap();
        let out = dir.path().join("out");
        let mut plan = Plan::default();
        plan.add("x/f".into(), dir.path().join("a"), Expected::Nothing);
        plan.add("x/f".into(), dir.path().join("b"), Expected::Nothing);
        let err = plan.write(&out).unwrap_err();
        assert!(matches!(err, Error::Conflict { .. }), "{err}");
        let mut names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["a", "b"], "no OUT and no temporary tree");
    }

    #[test]
    fn names_that_could_escape_are_refused() {
        for bad in ["", ".", "..", ".hidden", "a/b", "a\\b", "a\nb"] {
            assert!(component(std::ffi::OsStr::new(bad), Path::new("p"), "version").is_err(), "{bad:?}");
        }
        assert_eq!(component(std::ffi::OsStr::new("1.0-SNAPSHOT"), Path::new("p"), "version").unwrap(), "1.0-SNAPSHOT");
    }
}
