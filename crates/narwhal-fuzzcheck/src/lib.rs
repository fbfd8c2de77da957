//! The checks the fuzz targets run, in one place.
//!
//! Each check takes arbitrary bytes, feeds them to one of narwhal's parsers
//! (or to the server's router) and panics when an invariant breaks: a parser
//! that panics, a printer whose output does not parse back to the same value,
//! an unpack that leaves something behind, a response that shows a file system
//! path. `fuzz/fuzz_targets/<name>.rs` (cargo-fuzz, libFuzzer) calls the check
//! named in [`TARGETS`]; `tests/it` replays every committed input under
//! `fuzz/corpus/<name>/` and `fuzz/regressions/<name>/` through the same check,
//! so CI keeps what fuzzing found without running a fuzzer.
//!
//! Checks return early on inputs their parser rejects: rejecting is fine,
//! panicking is not. They panic on purpose (that is what a fuzzer detects);
//! the library crates they call never should.

mod elf;
mod export;
mod formats;
mod nar;
mod router;
mod scan;
mod slug_filter;
mod store;

/// A check: panics when `data` breaks an invariant.
pub type Check = fn(&[u8]);

/// Every fuzz target, by name (the file `fuzz/fuzz_targets/<name>.rs` and the
/// corpus directory `fuzz/corpus/<name>/`), with its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("nar", nar::check),
    ("narinfo", formats::narinfo),
    ("store_path", formats::store_path),
    ("hash", formats::hash),
    ("export", export::check),
    ("cache_url", store::cache_url),
    ("cache_info", formats::cache_info),
    ("pin", store::pin),
    ("slug_filter", slug_filter::check),
    ("elf", elf::check),
    ("scan", scan::check),
    ("router", router::check),
];

/// The check of the target `name`.
pub fn check(name: &str) -> Option<Check> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|&(_, c)| c)
}

/// Creates a temporary directory for a check, under `$TMPDIR` (the fuzz script points it at
/// a tmpfs). Failing to create one is the machine's fault, not the input's: it panics too,
/// with a message that says so.
fn temp_dir() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("cannot create a temporary directory (not the input's fault): {e}"),
    }
}

/// The names in `dir`, sorted.
fn names_in(dir: &std::path::Path) -> Vec<String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => panic!("cannot list {}: {e}", dir.display()),
    };
    let mut names: Vec<String> =
        entries.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}
