//! narwhal-slug on real files in temporary directories.
//!
//! Oracles: the real `rsync` for the filter rules (`rsync.rs`), real host ELF
//! files rewritten by the real `patchelf` for the checks (`check.rs`,
//! `elf.rs`). Both programs must be on PATH (Debian: `apt-get install rsync
//! patchelf`); tests that need them fail, never skip.

#![allow(clippy::unwrap_used)]

mod check;
mod elf;
mod prune;
mod rsync;
mod size;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

/// Writes `contents` at `root/rel`, creating parent directories.
pub fn file(root: &Path, rel: &str, contents: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, contents).unwrap();
}

/// Creates the symlink `root/rel -> target`, creating parent directories.
pub fn link(root: &Path, rel: &str, target: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    symlink(target, path).unwrap();
}

pub fn dir(root: &Path, rel: &str) {
    fs::create_dir_all(root.join(rel)).unwrap();
}

/// Every entry below `root`: `path/` for directories, `path -> target` for
/// symlinks, `path (N bytes)` for files.
pub fn listing(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    list_into(root, root, &mut out);
    out
}

fn list_into(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let meta = fs::symlink_metadata(&path).unwrap();
        if meta.is_symlink() {
            let target = fs::read_link(&path).unwrap();
            out.insert(format!("{rel} -> {}", String::from_utf8_lossy(target.as_os_str().as_bytes())));
        } else if meta.is_dir() {
            out.insert(format!("{rel}/"));
            list_into(root, &path, out);
        } else {
            out.insert(format!("{rel} ({} bytes)", meta.len()));
        }
    }
}

/// Runs a test dependency, panicking with its stderr when it fails.
pub fn run(cmd: &mut Command) {
    let out =
        cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (Debian: apt-get install rsync patchelf)"));
    assert!(out.status.success(), "{cmd:?} failed with {}:\n{}", out.status, String::from_utf8_lossy(&out.stderr));
}
