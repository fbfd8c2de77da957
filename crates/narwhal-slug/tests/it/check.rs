//! `check` on slugs built from real host binaries relocated with patchelf,
//! with and without what they need, and on symlink corner cases.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use narwhal_slug::check::{check, Error, ProblemKind, Unresolved, MAX_SYMLINK_HOPS};
use narwhal_slug::WalkError;

use crate::{dir, file, link, run};

const GLIBC: &str = "store/11111111111111111111111111111111-glibc-2.36";
const COREUTILS: &str = "store/22222222222222222222222222222222-coreutils-9.1";
const SELINUX: &str = "store/33333333333333333333333333333333-libselinux-3.4";
const LD: &str = "/app/store/11111111111111111111111111111111-glibc-2.36/lib/ld-linux-x86-64.so.2";
const HOST_LIBS: &str = "/lib/x86_64-linux-gnu";

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

fn rt(rel: &str) -> PathBuf {
    Path::new("/app").join(rel)
}

/// Copies the host file `from` to `slug/rel` and runs patchelf on it once per
/// argument list.
fn patched(slug: &Path, rel: &str, from: &str, patches: &[&[&str]]) {
    let to = slug.join(rel);
    fs::create_dir_all(to.parent().unwrap()).unwrap();
    fs::copy(from, &to).unwrap();
    for args in patches {
        run(Command::new("patchelf").args(*args).arg(&to));
    }
}

/// A relocated `ls` with its loader, libc, libselinux and libpcre2, each
/// pointing at the others under /app/store.
fn full_slug(slug: &Path, rpath_flag: &[&str]) {
    let ls_rpath = format!("/app/{GLIBC}/lib:/app/{SELINUX}/lib");
    let mut set_rpath: Vec<&str> = rpath_flag.to_vec();
    set_rpath.extend(["--set-rpath", &ls_rpath]);
    patched(slug, &format!("{COREUTILS}/bin/ls"), "/bin/ls", &[&["--set-interpreter", LD], &set_rpath]);
    link(slug, &format!("{COREUTILS}/bin/dir"), "ls");
    patched(slug, &format!("{GLIBC}/lib/ld-linux-x86-64.so.2"), "/lib64/ld-linux-x86-64.so.2", &[]);
    patched(slug, &format!("{GLIBC}/lib/libc.so.6"), &format!("{HOST_LIBS}/libc.so.6"), &[]);
    let glibc_rpath = format!("/app/{GLIBC}/lib");
    patched(
        slug,
        &format!("{SELINUX}/lib/libselinux.so.1"),
        &format!("{HOST_LIBS}/libselinux.so.1"),
        &[&["--set-rpath", &format!("$ORIGIN:{glibc_rpath}")]],
    );
    patched(
        slug,
        &format!("{SELINUX}/lib/libpcre2-8.so.0"),
        &format!("{HOST_LIBS}/libpcre2-8.so.0"),
        &[&["--set-rpath", &glibc_rpath]],
    );
}

fn problems(slug: &Path) -> Vec<(PathBuf, ProblemKind)> {
    check(slug, "/app").unwrap().into_iter().map(|p| (p.path, p.kind)).collect()
}

fn missing_lib(library: &str, searched: &[&str]) -> ProblemKind {
    ProblemKind::MissingLibrary { library: p(library), searched: searched.iter().map(|s| rt(s)).collect() }
}

#[test]
fn complete_slug_has_no_problems() {
    let tmp = tempfile::tempdir().unwrap();
    full_slug(tmp.path(), &[]);
    assert_eq!(problems(tmp.path()), []);
}

#[test]
fn without_glibc_the_interpreter_and_libc_are_reported() {
    for rpath_flag in [&[][..], &["--force-rpath"][..]] {
        let tmp = tempfile::tempdir().unwrap();
        let slug = tmp.path();
        full_slug(slug, rpath_flag);
        fs::remove_dir_all(slug.join(GLIBC)).unwrap();
        let glibc_lib = format!("{GLIBC}/lib");
        let selinux_lib = format!("{SELINUX}/lib");
        assert_eq!(
            problems(slug),
            [
                (
                    p(&format!("{COREUTILS}/bin/ls")),
                    ProblemKind::MissingInterpreter { interpreter: p(LD), reason: Unresolved::Missing(rt(GLIBC)) }
                ),
                (p(&format!("{COREUTILS}/bin/ls")), missing_lib("libc.so.6", &[&glibc_lib, &selinux_lib])),
                (p(&format!("{SELINUX}/lib/libpcre2-8.so.0")), missing_lib("libc.so.6", &[&glibc_lib])),
                (p(&format!("{SELINUX}/lib/libselinux.so.1")), missing_lib("libc.so.6", &[&selinux_lib, &glibc_lib])),
                (
                    p(&format!("{SELINUX}/lib/libselinux.so.1")),
                    missing_lib("ld-linux-x86-64.so.2", &[&selinux_lib, &glibc_lib])
                ),
            ],
            "{rpath_flag:?}"
        );
    }
}

#[test]
fn a_missing_library_is_reported_with_the_search_path() {
    let tmp = tempfile::tempdir().unwrap();
    let slug = tmp.path();
    full_slug(slug, &[]);
    fs::remove_file(slug.join(SELINUX).join("lib/libselinux.so.1")).unwrap();
    let found = check(slug, "/app").unwrap();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(
        found[0].to_string(),
        format!("{COREUTILS}/bin/ls: needed library libselinux.so.1 is in none of /app/{GLIBC}/lib:/app/{SELINUX}/lib")
    );
}

#[test]
fn interpreter_through_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let slug = tmp.path();
    full_slug(slug, &[]);
    let ld = slug.join(GLIBC).join("lib/ld-linux-x86-64.so.2");
    fs::rename(&ld, slug.join(GLIBC).join("lib/ld-2.36.so")).unwrap();
    link(slug, &format!("{GLIBC}/lib/ld-linux-x86-64.so.2"), "ld-2.36.so");
    assert_eq!(problems(slug), []);

    fs::remove_file(slug.join(GLIBC).join("lib/ld-2.36.so")).unwrap();
    let gone = rt(&format!("{GLIBC}/lib/ld-2.36.so"));
    let selinux_lib = format!("{SELINUX}/lib");
    assert_eq!(
        problems(slug),
        [
            (
                p(&format!("{GLIBC}/lib/ld-linux-x86-64.so.2")),
                ProblemKind::BrokenSymlink { target: p("ld-2.36.so"), reason: Unresolved::Missing(gone.clone()) }
            ),
            (
                p(&format!("{COREUTILS}/bin/ls")),
                ProblemKind::MissingInterpreter { interpreter: p(LD), reason: Unresolved::Missing(gone) }
            ),
            // libselinux needs the loader by name, and finds only the broken link.
            (
                p(&format!("{SELINUX}/lib/libselinux.so.1")),
                missing_lib("ld-linux-x86-64.so.2", &[&selinux_lib, &format!("{GLIBC}/lib")])
            ),
        ]
    );

    fs::remove_file(&ld).unwrap();
    dir(slug, &format!("{GLIBC}/lib/ld-linux-x86-64.so.2"));
    assert_eq!(
        problems(slug),
        [
            (
                p(&format!("{COREUTILS}/bin/ls")),
                ProblemKind::MissingInterpreter { interpreter: p(LD), reason: Unresolved::IsADirectory(p(LD)) }
            ),
            (
                p(&format!("{SELINUX}/lib/libselinux.so.1")),
                missing_lib("ld-linux-x86-64.so.2", &[&selinux_lib, &format!("{GLIBC}/lib")])
            ),
        ]
    );
}

#[test]
fn what_relies_on_the_system_is_not_judged() {
    let tmp = tempfile::tempdir().unwrap();
    let slug = tmp.path();
    let missing = "/app/store/44444444444444444444444444444444-gone/lib";
    // The host's own binary: system interpreter, no run path.
    patched(slug, "store/55555555555555555555555555555555-a/bin/ls", "/bin/ls", &[]);
    // A run path into the slug, but the system's loader also searches the system.
    patched(slug, "store/66666666666666666666666666666666-b/bin/ls", "/bin/ls", &[&["--set-rpath", missing]]);
    // A run path with a system directory in it.
    patched(
        slug,
        "store/77777777777777777777777777777777-c/bin/ls",
        "/bin/ls",
        &[&["--set-interpreter", "/lib64/ld-linux-x86-64.so.2"], &["--set-rpath", &format!("{missing}:/usr/lib")]],
    );
    // A library with "$LIB" or a relative entry in its run path.
    for (name, rpath) in [("d", "/app/store/x/$LIB"), ("e", "lib"), ("f", "")] {
        patched(
            slug,
            &format!("store/88888888888888888888888888888888-{name}/lib/libselinux.so.1"),
            &format!("{HOST_LIBS}/libselinux.so.1"),
            &[&["--set-rpath", rpath]],
        );
    }
    // Symlinks leaving the slug.
    link(slug, "store/99999999999999999999999999999999-g/passwd", "/etc/passwd");
    link(slug, "store/99999999999999999999999999999999-g/nix", "/nix/store/whatever");
    link(slug, "store/99999999999999999999999999999999-g/up", "../../../etc/nothing-here");
    assert_eq!(problems(slug), []);
}

#[test]
fn a_prefix_interpreter_makes_libraries_judged_even_with_a_system_entry_missing() {
    // Same binary as above, but with the interpreter in the slug: libraries
    // are judged against the run path and the loader's directory.
    let tmp = tempfile::tempdir().unwrap();
    let slug = tmp.path();
    full_slug(slug, &[]);
    let ls = format!("{COREUTILS}/bin/ls");
    run(Command::new("patchelf").args(["--set-rpath", "$ORIGIN/../lib"]).arg(slug.join(&ls)));
    // libselinux.so.1 is in neither $ORIGIN/../lib nor the loader's directory.
    assert_eq!(
        problems(slug),
        [(p(&ls), missing_lib("libselinux.so.1", &[&format!("{COREUTILS}/bin/../lib"), &format!("{GLIBC}/lib")]))]
    );
}

#[test]
fn symlinks_resolve_as_at_run_time() {
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path();
    let a = "store/aaaa-a";
    file(s, &format!("{a}/file"), b"f");
    file(s, "store/bbbb-b/sub/real", b"r");
    file(s, "store/bbbb-b/file", b"physical");
    file(s, "app.txt", b"outside the store but inside the slug");
    let ok = [
        ("abs", "/app/store/aaaa-a/file"),
        ("rel", "file"),
        ("dotdot", "../aaaa-a/./file"),
        ("dir", "/app/store/bbbb-b/sub"),
        ("dir-slash", "/app/store/bbbb-b/sub/"),
        ("chain1", "chain2"),
        ("chain2", "abs"),
        // ".." after a symlink to a directory is taken physically: b's file.
        ("physical", "dir/../file"),
        ("slug-root", "/app/app.txt"),
        ("out-and-back", "../../../app/store/aaaa-a/file"),
        ("root", "/app"),
    ];
    for (name, target) in ok {
        link(s, &format!("{a}/{name}"), target);
    }
    let bad: [(&str, &str, Unresolved); 8] = [
        ("gone-abs", "/app/store/cccc-c/bin/x", Unresolved::Missing(rt("store/cccc-c"))),
        ("gone-rel", "../aaaa-a/nope", Unresolved::Missing(rt("store/aaaa-a/nope"))),
        ("gone-chain", "gone-abs", Unresolved::Missing(rt("store/cccc-c"))),
        ("through-file", "file/x", Unresolved::NotADirectory(rt("store/aaaa-a/file"))),
        ("file-slash", "file/", Unresolved::NotADirectory(rt("store/aaaa-a/file"))),
        // Lexically this would be a's file, which exists; physically it is not there.
        ("lexical", "dir/../sub/../nothing", Unresolved::Missing(rt("store/bbbb-b/nothing"))),
        ("loop1", "loop2", Unresolved::TooManyLinks),
        ("loop2", "loop1", Unresolved::TooManyLinks),
    ];
    for (name, target, _) in &bad {
        link(s, &format!("{a}/{name}"), target);
    }
    link(s, &format!("{a}/self"), "self");
    // A chain of exactly MAX_SYMLINK_HOPS links resolves; one more does not.
    file(s, "store/dddd-d/end", b"e");
    for i in 0..=MAX_SYMLINK_HOPS {
        let target = if i == 0 { "end".to_owned() } else { format!("l{}", i - 1) };
        link(s, &format!("store/dddd-d/l{i}"), &target);
    }
    let mut expected: Vec<(PathBuf, ProblemKind)> = bad
        .into_iter()
        .map(|(name, target, reason)| {
            (p(&format!("{a}/{name}")), ProblemKind::BrokenSymlink { target: p(target), reason })
        })
        .collect();
    expected.push((
        p(&format!("{a}/self")),
        ProblemKind::BrokenSymlink { target: p("self"), reason: Unresolved::TooManyLinks },
    ));
    expected.push((
        p(&format!("store/dddd-d/l{MAX_SYMLINK_HOPS}")),
        ProblemKind::BrokenSymlink {
            target: p(&format!("l{}", MAX_SYMLINK_HOPS - 1)),
            reason: Unresolved::TooManyLinks,
        },
    ));
    expected.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(problems(s), expected);
}

#[test]
fn other_runtime_roots_and_bad_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path();
    link(s, "store/aaaa-a/ok", "/srv/app/store/aaaa-a");
    link(s, "store/aaaa-a/bad", "/srv/app/store/bbbb-b");
    let found = check(s, "/srv/app/").unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].to_string(),
        "store/aaaa-a/bad: symlink to /srv/app/store/bbbb-b does not resolve: /srv/app/store/bbbb-b does not exist"
    );
    for root in ["app", "/app/../etc", ""] {
        assert!(matches!(check(s, root), Err(Error::InvalidRuntimeRoot(_))), "{root:?}");
    }
}

#[test]
fn garbage_elf_files_are_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path();
    let ls = fs::read("/bin/ls").unwrap();
    for cut in [64, 100, 1000, 4000, ls.len() / 2] {
        file(s, &format!("store/aaaa-a/cut-{cut}"), &ls[..cut]);
    }
    let mut garbage = b"\x7fELF\x02\x01".to_vec();
    garbage.resize(200, 0xff);
    file(s, "store/aaaa-a/garbage", &garbage);
    file(
        s,
        "store/aaaa-a/elf32",
        b"\x7fELF\x01\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x03\0 and then some more bytes....................",
    );
    // Executable, so that each is read.
    for entry in fs::read_dir(s.join("store/aaaa-a")).unwrap() {
        fs::set_permissions(entry.unwrap().path(), fs::Permissions::from_mode(0o755)).unwrap();
    }
    assert_eq!(problems(s), []);
}

/// Only what the loader runs or loads is read: executables and files named like shared objects.
#[test]
fn only_programs_and_shared_objects_are_read() {
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path();
    let needs_missing = |rel: &str, mode: u32| {
        patched(s, rel, "/bin/ls", &[&["--set-interpreter", "/app/store/gone/ld.so"]]);
        fs::set_permissions(s.join(rel), fs::Permissions::from_mode(mode)).unwrap();
    };
    needs_missing("store/aaaa-a/bin/prog", 0o555);
    needs_missing("store/aaaa-a/lib/libx.so", 0o444);
    needs_missing("store/aaaa-a/lib/libx.so.1.2", 0o444);
    needs_missing("store/aaaa-a/lib/ext.cpython-311-x86_64-linux-gnu.so", 0o444);
    needs_missing("store/aaaa-a/share/data.bin", 0o444);
    needs_missing("store/aaaa-a/share/also.sock", 0o444);
    let read: Vec<PathBuf> = problems(s).into_iter().map(|(path, _)| path).collect();
    assert_eq!(
        read,
        [
            p("store/aaaa-a/bin/prog"),
            p("store/aaaa-a/lib/ext.cpython-311-x86_64-linux-gnu.so"),
            p("store/aaaa-a/lib/libx.so"),
            p("store/aaaa-a/lib/libx.so.1.2"),
        ]
    );
}

#[test]
fn missing_store_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = check(tmp.path(), "/app").unwrap_err();
    assert!(matches!(err, Error::Walk(WalkError::Io { .. })), "{err:?}");
    assert_eq!(err.to_string(), format!("cannot read {}", tmp.path().join("store").display()));
}
