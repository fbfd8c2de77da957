//! The filter rules against the real rsync. For each rule set, rsync copies a
//! sample slug (`rsync -a --filter='merge RULES' src/ dst/`, and again with
//! `--exclude-from=RULES` as the old buildpack did) and `prune` trims an
//! identical slug in place: all three must hold exactly the same entries.

use std::fs;
use std::path::Path;
use std::process::Command;

use narwhal_slug::{prune, Rules};
use proptest::prelude::*;

use crate::{dir, file, link, listing, run};

const GLIBC: &str = "store/0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a-glibc-2.38";
const GCC: &str = "store/1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b-gcc-12.3.0";
const GCC_LIB: &str = "store/2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c-gcc-12.3.0-lib";
const APP: &str = "store/3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d-my-awesome-app-1.0";
const ENV: &str = "store/4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f-user-environment";
const NIX: &str = "store/5g5g5g5g5g5g5g5g5g5g5g5g5g5g5g5g-nix-1.11.16";
const DEEP: &str = "store/6h6h6h6h6h6h6h6h6h6h6h6h6h6h6h6h-deep";
const ODD: &str = "store/ajajajajajajajajajajajajajajajaj-odd";

/// A slug store with shared libraries, static archives, headers, docs,
/// symlinks to files and directories, a single-file store path, a top-level
/// symlink, empty directories, and names with brackets and spaces.
pub fn sample_slug(root: &Path) {
    for (rel, len) in [
        ("lib/ld-linux-x86-64.so.2", 200),
        ("lib/libc.so.6", 2000),
        ("lib/libc.a", 5000),
        ("lib/libc_nonshared.a", 300),
        ("lib/libm.so.6", 900),
        ("lib/crt1.o", 40),
        ("lib/gconv/UTF-16.so", 70),
        ("lib/gconv/gconv-modules", 10),
        ("include/stdio.h", 33),
        ("include/bits/types.h", 44),
        ("share/doc/glibc/README", 12),
        ("share/locale/de/LC_MESSAGES/libc.mo", 77),
        ("bin/ldd", 5),
    ] {
        file(root, &format!("{GLIBC}/{rel}"), &vec![b'g'; len]);
    }
    link(root, &format!("{GLIBC}/lib/libc.so"), "libc.so.6");
    dir(root, &format!("{GLIBC}/share/i18n"));
    for rel in [
        "bin/gcc",
        "lib/gcc/x86_64-unknown-linux-gnu/12.3.0/crtbegin.o",
        "lib/gcc/x86_64-unknown-linux-gnu/12.3.0/libgcc.a",
        "libexec/gcc/x86_64-unknown-linux-gnu/12.3.0/liblto_plugin.so",
        "share/doc/gcc/manual.html",
    ] {
        file(root, &format!("{GCC}/{rel}"), rel.as_bytes());
    }
    link(root, &format!("{GCC}/bin/cc"), "gcc");
    for rel in ["lib/libstdc++.so.6.0.30", "lib/libgcc_s.so.1", "share/gcc-12.3.0/python/libstdcxx/__init__.py"] {
        file(root, &format!("{GCC_LIB}/{rel}"), rel.as_bytes());
    }
    link(root, &format!("{GCC_LIB}/lib/libstdc++.so.6"), "libstdc++.so.6.0.30");
    for rel in [
        "bin/app",
        "bin/.app-wrapped",
        "lib/python3.11/site-packages/_so_helper.py",
        "lib/python3.11/site-packages/ext.cpython-311-x86_64-linux-gnu.so",
        "lib/python3.11/site-packages/ext.so.d/data.txt",
        "share/doc",
        "share/man/man1/app.1.gz",
        "etc/[x]config",
        "etc/with space",
        "etc/7.2.txt",
    ] {
        file(root, &format!("{APP}/{rel}"), rel.as_bytes());
    }
    link(root, &format!("{APP}/etc/lib"), "../lib");
    link(root, &format!("{ENV}/bin"), &format!("/app/{APP}/bin"));
    link(root, &format!("{ENV}/share"), &format!("/app/{APP}/share"));
    file(root, &format!("{ENV}/manifest.nix"), b"[ ]");
    for rel in ["bin/nix-store", "lib/libnixstore.so", "share/doc/nix/manual/index.html"] {
        file(root, &format!("{NIX}/{rel}"), rel.as_bytes());
    }
    file(root, &format!("{DEEP}/a/b/c/d/e/lib/deep.so"), b"deep");
    file(root, &format!("{DEEP}/a/b/c/d/e/include/deep.h"), b"deep");
    file(root, "store/7i7i7i7i7i7i7i7i7i7i7i7i7i7i7i7i-hello.sh", b"#!/bin/sh\necho hello\n");
    link(root, "store/8j8j8j8j8j8j8j8j8j8j8j8j8j8j8j8j-hello-link", "7i7i7i7i7i7i7i7i7i7i7i7i7i7i7i7i-hello.sh");
    dir(root, "store/9k9k9k9k9k9k9k9k9k9k9k9k9k9k9k9k-empty");
    file(root, &format!("{ODD}/lib"), b"a file named lib");
    file(root, &format!("{ODD}/sub/lib/x.so"), b"x");
    file(root, &format!("{ODD}/sub/so"), b"so");
    file(root, &format!("{ODD}/doc/lib"), b"lib");
}

/// Apparent bytes below `root`: file lengths plus symlink target lengths.
pub fn apparent(root: &Path) -> u64 {
    let mut total = 0;
    for entry in fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        let meta = fs::symlink_metadata(&path).unwrap();
        total += if meta.is_dir() { apparent(&path) } else { meta.len() };
    }
    total
}

/// A sample slug for rsync to copy from, built once and never modified.
struct Oracle {
    tmp: tempfile::TempDir,
    runs: std::cell::Cell<usize>,
}

impl Oracle {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        sample_slug(&tmp.path().join("src"));
        Oracle { tmp, runs: std::cell::Cell::new(0) }
    }

    /// rsync and `prune` agree on `rules`; returns the kept listing. With
    /// `exclude_from`, rsync also runs with `--exclude-from` (the old
    /// buildpack's way), which must agree too.
    fn agree(&self, rules: &str, exclude_from: bool) -> std::collections::BTreeSet<String> {
        let n = self.runs.get();
        self.runs.set(n + 1);
        let t = self.tmp.path();
        let case = t.join(n.to_string());
        let (pruned, dst) = (case.join("pruned"), case.join("dst"));
        sample_slug(&pruned);
        fs::write(case.join("rules"), rules).unwrap();
        let filter = format!("--filter=merge {}", case.join("rules").display());
        run(Command::new("rsync").current_dir(t).args(["-a", &filter, "src/"]).arg(&dst));

        let parsed = Rules::parse(rules.as_bytes()).unwrap();
        let report = prune(&pruned, &parsed).unwrap();

        let expected = listing(&dst);
        assert_eq!(listing(&pruned), expected, "prune and rsync --filter=merge disagree on:\n{rules}");
        if exclude_from {
            let exclude = format!("--exclude-from={}", case.join("rules").display());
            let dst2 = case.join("dst-exclude-from");
            run(Command::new("rsync").current_dir(t).args(["-a", &exclude, "src/"]).arg(&dst2));
            assert_eq!(listing(&dst2), expected, "rsync --exclude-from and --filter=merge disagree on:\n{rules}");
        }

        // The report names exactly what went, with the right byte counts.
        let src = t.join("src");
        assert_eq!(report.bytes_freed, apparent(&src) - apparent(&pruned), "{rules}");
        assert_eq!(report.removed.iter().map(|r| r.bytes).sum::<u64>(), report.bytes_freed);
        for removed in &report.removed {
            assert!(fs::symlink_metadata(src.join(&removed.path)).is_ok());
            assert!(fs::symlink_metadata(pruned.join(&removed.path)).is_err());
            let parent = removed.path.parent().unwrap();
            assert!(parent.as_os_str().is_empty() || pruned.join(parent).is_dir());
        }
        fs::remove_dir_all(&case).unwrap();
        expected
    }
}

fn agree(rules: &str) -> std::collections::BTreeSet<String> {
    Oracle::new().agree(rules, true)
}

#[test]
fn old_buildpack_example() {
    let kept = agree(
        "+ store/**/\n+ store/*-user-environment/**\n+ store/*-nix-1*/**\n+ *[._]so*\n+ store/*my-awesome-app*/**\n\n- store/**\n",
    );
    // Spot checks that the comparison is not vacuous.
    assert!(kept.contains(&format!("{GLIBC}/lib/libc.so.6 (2000 bytes)")));
    assert!(kept.contains(&format!("{GLIBC}/include/")));
    assert!(!kept.iter().any(|k| k.starts_with(&format!("{GLIBC}/lib/libc.a"))));
    assert!(kept.contains(&format!("{APP}/etc/[x]config (13 bytes)")));
}

#[test]
fn keep_dirs_and_shared_libraries_only() {
    let kept = agree("+ store/**/\n+ *[._]so*\n- store/**\n");
    assert!(kept.contains(&format!("{GCC_LIB}/lib/libstdc++.so.6 -> libstdc++.so.6.0.30")));
    assert!(!kept.iter().any(|k| k.contains("README")));
}

#[test]
fn exclude_archives_compilers_and_docs() {
    let kept = agree("- *.a\n- store/*-gcc-*/\n- share/doc/\n");
    assert!(!kept.iter().any(|k| k.starts_with(GCC)));
    assert!(!kept.iter().any(|k| k.starts_with(GCC_LIB)), "gcc-12.3.0-lib matches *-gcc-* too");
    assert!(kept.contains(&format!("{APP}/share/doc (9 bytes)")), "a file named doc is not a directory");
}

/// Each rule set agrees with rsync, both through `--filter=merge` and `--exclude-from`.
fn all_agree(rule_sets: &[&str]) {
    let oracle = Oracle::new();
    for rules in rule_sets {
        oracle.agree(rules, true);
    }
}

#[test]
fn examples_from_the_rsync_manual() {
    all_agree(&[
        "+ */\n+ *.so*\n- *",
        "- *.o",
        "- /store",
        "- doc/",
        "- lib/gcc/*/12.3.0",
        "- /store/**/include",
        "- /store/*/share/**/README",
    ]);
}

#[test]
fn anchoring_and_directory_only_rules() {
    all_agree(&[
        "- /store/*-gcc-12.3.0/lib\n+ /store/*-glibc-*/***\n- /store/*",
        "- /store/*-glibc-2.38/lib/",
        "- lib/",
        "- lib",
        "- doc",
        "- share/doc",
        "- store/*/share",
        "- */share/",
        // Literal patterns matching symlinks; a symlink to a directory is not a directory.
        "- libc.so",
        "- etc/lib/",
        "- store/*-user-environment/bin/",
        "- bin",
    ]);
}

#[test]
fn double_and_triple_stars() {
    all_agree(&[
        "- **/include",
        "- **.h",
        "- **/",
        "- **",
        "- share/**/README",
        "- store/**/lib/***",
        "- gcc/***",
        "- lib/**.so",
        "- store/**/e/lib",
    ]);
}

#[test]
fn classes_escapes_and_question_marks() {
    all_agree(&[
        "- [0-3]*",
        "- [!0-3]*-*/",
        "- *[[:digit:]].[[:digit:]]*",
        "- *[[:upper:]]*",
        "- *[]]*",
        "- *\\[x\\]*",
        "- [[]x]config",
        "- ????",
        "- with space",
        "- *.so.?",
    ]);
}

#[test]
fn first_match_wins_and_file_syntax() {
    all_agree(&[
        "+ libc.a\n- *.a",
        "- *.a\n+ libc.a",
        "+ store/*-glibc-*/lib/libc.so*\n- store/*-glibc-*/lib/*",
        "+ store/\n+ store/*-my-awesome-app-1.0/\n+ store/*-my-awesome-app-1.0/**\n- *",
        // Trailing whitespace is part of the pattern, as in rsync.
        "- libc.a ",
        // Comments, blank lines, CRLF and lone CR line ends.
        "# keep libraries\n; and nothing else\n\n+ */\r\n+ *.so*\r- *\r\n",
    ]);
    // Forms only the filter syntax (not --exclude-from) accepts.
    let oracle = Oracle::new();
    for rules in ["include libc.a\nexclude *.a", "-_*.a", "+_*/\n+_*.so*\n-_*"] {
        oracle.agree(rules, false);
    }
}

fn token() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "*",
        "**",
        "***",
        "?",
        "/",
        "/",
        "lib",
        "so",
        ".",
        "-",
        "_",
        "store",
        "[0-3]",
        "[!l]",
        "[[:digit:]]",
        "[._]",
        "doc",
        "share",
        "gcc",
        "a",
        "e",
        "\\*",
        "bin",
        "12.3.0",
    ])
}

fn pattern() -> impl Strategy<Value = String> {
    (any::<bool>(), prop::collection::vec(token(), 1..5), any::<bool>()).prop_map(|(anchor, tokens, dir_only)| {
        let mut p = String::new();
        if anchor {
            p.push('/');
        }
        p.push_str(&tokens.concat());
        if dir_only {
            p.push('/');
        }
        p
    })
}

fn rule_set() -> impl Strategy<Value = String> {
    prop::collection::vec((any::<bool>(), pattern()), 1..4).prop_map(|rules| {
        rules.into_iter().map(|(include, p)| [if include { "+ " } else { "- " }, &p, "\n"].concat()).collect()
    })
}

/// Random rule sets built from wildcard tokens: rsync and prune agree.
#[test]
fn random_rule_sets_agree_with_rsync() {
    let oracle = Oracle::new();
    let config = ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() };
    proptest::test_runner::TestRunner::new(config)
        .run(&rule_set(), |rules| {
            oracle.agree(&rules, false);
            Ok(())
        })
        .unwrap();
}
