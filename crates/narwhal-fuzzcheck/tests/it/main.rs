//! Replays every committed fuzz input through the check of its target, so CI
//! keeps what fuzzing found without cargo-fuzz: the seeds in
//! `fuzz/corpus/<target>/` and the crashes kept in `fuzz/regressions/<target>/`
//! (each named after what broke).

#![allow(clippy::unwrap_used)]

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use narwhal_fuzzcheck::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

/// Runs every committed input of `target` through its check; panics naming each input that fails.
fn replay(target: &str) {
    let check = narwhal_fuzzcheck::check(target).unwrap();
    let seeds = files_in(&fuzz_dir().join("corpus").join(target));
    assert!(!seeds.is_empty(), "fuzz/corpus/{target}/ has no seeds");
    let regressions = files_in(&fuzz_dir().join("regressions").join(target));
    let mut failed = Vec::new();
    for file in seeds.iter().chain(&regressions) {
        let data = fs::read(file).unwrap();
        if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            failed.push(file.strip_prefix(fuzz_dir()).unwrap_or(file).display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs fail: {failed:#?}",
        failed.len(),
        seeds.len() + regressions.len()
    );
}

macro_rules! replay_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                replay(stringify!($name));
            }
        )*

        #[test]
        fn every_target_is_replayed() {
            let mut replayed = vec![$(stringify!($name)),*];
            let mut targets: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
            replayed.sort_unstable();
            targets.sort_unstable();
            assert_eq!(replayed, targets);
        }
    };
}

replay_tests!(nar, narinfo, store_path, hash, export, cache_url, cache_info, pin, slug_filter, elf, scan, router);

/// Each check has its cargo-fuzz target, declared in fuzz/Cargo.toml, and no target lacks a check.
#[test]
fn every_check_has_a_fuzz_target() {
    let manifest = fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    let mut files: Vec<String> = files_in(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut names: Vec<String> = TARGETS.iter().map(|(n, _)| (*n).to_owned()).collect();
    names.sort();
    assert_eq!(files, names);
    for name in &names {
        let source = fs::read_to_string(fuzz_dir().join(format!("fuzz_targets/{name}.rs"))).unwrap();
        assert!(source.contains(&format!("check(\"{name}\")")), "fuzz_targets/{name}.rs runs another check");
        assert!(
            manifest.contains(&format!("name = \"{name}\"\npath = \"fuzz_targets/{name}.rs\"")),
            "{name} is not a [[bin]]"
        );
    }
    assert!(narwhal_fuzzcheck::check("no-such-target").is_none());
}

/// Every regression directory belongs to a target (a typo would silently replay nothing).
#[test]
fn regressions_belong_to_targets() {
    let Ok(entries) = fs::read_dir(fuzz_dir().join("regressions")) else { return };
    for e in entries {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(narwhal_fuzzcheck::check(&name).is_some(), "fuzz/regressions/{name} is not a target");
    }
}
