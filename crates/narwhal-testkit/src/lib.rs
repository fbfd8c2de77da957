//! Helpers for narwhal's tests: real Nix as the oracle.
//!
//! Tests that need Nix fail (never skip) when it is missing: `.ci/run`
//! installs it. Nix runs as root without a daemon and without a sandbox;
//! [`nix`] sets that configuration on every command it builds.

#![allow(clippy::missing_panics_doc, clippy::unwrap_used, clippy::print_stderr)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub use tempfile::TempDir;

pub mod cnb;
pub mod garage;
pub mod http;
pub mod isolate;
pub mod nginx;
pub mod registry;

/// The configuration every Nix command in the tests runs with.
pub const NIX_CONFIG: &str =
    "experimental-features = nix-command\nsandbox = false\nbuild-users-group =\nsubstituters =";

/// Names of the store paths in `fixtures/formats.nix`, one per NAR corner case.
pub const FORMAT_FIXTURES: &[&str] = &[
    "empty-file",
    "empty-dir",
    "executable",
    "symlink-root",
    "symlinks",
    "deep",
    "very-deep",
    "sorting",
    "non-utf8",
    "big",
    "mixed",
    "app",
];

/// A Nix command (`nix`, `nix-store`, `nix-build`, …) with the test configuration.
pub fn nix(program: &str) -> Command {
    let mut c = Command::new(program);
    c.env("NIX_CONFIG", NIX_CONFIG).stdin(Stdio::null());
    c
}

/// Runs `cmd`, panicking with its stderr if it fails; returns stdout.
pub fn run(cmd: &mut Command) -> Vec<u8> {
    let out = output(cmd);
    assert!(out.status.success(), "{cmd:?} failed with {}:\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Runs `cmd` and returns its output, whatever its status.
pub fn output(cmd: &mut Command) -> Output {
    match cmd.output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run {cmd:?}: {e} (is Nix installed? `bash .ci/run` installs it)"),
    }
}

/// Runs `cmd` and returns trimmed stdout as text.
pub fn run_text(cmd: &mut Command) -> String {
    String::from_utf8(run(cmd)).unwrap().trim_end().to_owned()
}

fn fixtures_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/formats.nix")
}

/// Builds (or finds, when already built) the fixture `name` with real Nix and returns its store path.
pub fn fixture(name: &str) -> PathBuf {
    let path = run_text(nix("nix-build").arg(fixtures_file()).args(["-A", name, "--no-out-link", "--quiet"]));
    assert!(path.starts_with("/nix/store/"), "nix-build printed {path:?}");
    PathBuf::from(path)
}

/// Builds (or finds) the attribute `attr` of `fixtures/gc.nix` (closures sharing paths, for the
/// garbage-collection tests) with real Nix; returns its store path.
pub fn gc_fixture(attr: &str) -> PathBuf {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/gc.nix");
    let path = run_text(nix("nix-build").arg(file).args(["-A", attr, "--no-out-link", "--quiet"]));
    assert!(path.starts_with("/nix/store/"), "nix-build printed {path:?}");
    PathBuf::from(path)
}

/// All fixtures, by name.
pub fn format_fixtures() -> Vec<(&'static str, PathBuf)> {
    // One nix-build for all: Nix locks and builds them once even when tests run in parallel.
    let mut cmd = nix("nix-build");
    cmd.arg(fixtures_file()).args(["--no-out-link", "--quiet"]);
    for n in FORMAT_FIXTURES {
        cmd.args(["-A", n]);
    }
    let out = run_text(&mut cmd);
    let paths: Vec<PathBuf> = out.lines().map(PathBuf::from).collect();
    assert_eq!(paths.len(), FORMAT_FIXTURES.len(), "nix-build printed {out}");
    FORMAT_FIXTURES.iter().copied().zip(paths).collect()
}

/// The closure of `path` (itself included), as `nix-store -qR` prints it.
pub fn closure(path: &Path) -> Vec<PathBuf> {
    run_text(nix("nix-store").arg("-qR").arg(path)).lines().map(PathBuf::from).collect()
}

/// Options that keep Nix from answering from narinfos it remembers for a cache URL (test servers
/// on loopback reuse ports, so an earlier test's answers would be taken for this one's).
const NO_NARINFO_CACHE: [&str; 6] =
    ["--option", "narinfo-cache-positive-ttl", "0", "--option", "narinfo-cache-negative-ttl", "0"];

/// `nix copy --from CACHE --to ROOT PATH` as a strict client: signatures required, only
/// `trusted_key` trusted, and no narinfo remembered from an earlier run against the same URL.
pub fn nix_copy_from(cache: &str, root: &Path, trusted_key: &str, path: &Path) -> Command {
    let mut c = nix("nix");
    c.args(["copy", "--from", cache, "--to"])
        .arg(root)
        .args(["--option", "require-sigs", "true", "--option", "trusted-public-keys", trusted_key])
        .args(NO_NARINFO_CACHE)
        .arg(path);
    c
}

/// `nix copy --to CACHE`, remembering no narinfo from an earlier run against the same URL (Nix
/// would otherwise take the paths as already there and copy nothing). Paths and options follow.
pub fn nix_copy_to(cache: &str) -> Command {
    let mut c = nix("nix");
    c.args(["copy", "--to", cache]).args(NO_NARINFO_CACHE);
    c
}

/// `nix-store --dump PATH`.
pub fn nix_dump(path: &Path) -> Vec<u8> {
    run(nix("nix-store").arg("--dump").arg(path))
}

/// A fresh temporary directory (removed on drop).
pub fn tempdir() -> TempDir {
    tempfile::Builder::new().prefix("narwhal-test-").tempdir().unwrap()
}

/// A `file://` URL for a directory, with query parameters.
pub fn file_url(dir: &Path, query: &str) -> String {
    if query.is_empty() {
        format!("file://{}", dir.display())
    } else {
        format!("file://{}?{query}", dir.display())
    }
}

/// Every file under `dir` whose name ends with `suffix`, sorted.
pub fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().and_then(OsStr::to_str).is_some_and(|n| n.ends_with(suffix)))
        .collect();
    v.sort();
    v
}
