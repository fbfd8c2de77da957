//! The deploy fixture and the isolated root: `fixtures/deploy.nix`'s `app` runs from the real store, its
//! closure alone runs as `nobody` in a root without anything from the host, and it still runs after a
//! naive same-length rewrite of `/nix/store` into `/app/store`, in a root where `/nix` does not exist.
//! So the fixture is self-contained, and relocation by byte rewrite is all it needs (except the store
//! paths hidden inside `data/share/paths.gz`).

#![allow(clippy::unwrap_used)]

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{symlink, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use narwhal_testkit::isolate::{deploy_fixture, mode, Isolated, Mode, DEPLOY_APP_OUTPUT, DEPLOY_FIXTURES, NOBODY};
use narwhal_testkit::{closure, run, run_text, tempdir};

const NIX_STORE: &[u8] = b"/nix/store";
const APP_STORE: &[u8] = b"/app/store";

fn name(path: &Path) -> &str {
    path.file_name().and_then(OsStr::to_str).unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every store path of the fixture, by attribute (Nix locks, so parallel tests build each once).
fn fixtures() -> Vec<(&'static str, PathBuf)> {
    DEPLOY_FIXTURES.iter().map(|a| (*a, deploy_fixture(a))).collect()
}

fn fixture_of(all: &[(&str, PathBuf)], attr: &str) -> PathBuf {
    all.iter().find(|(a, _)| *a == attr).unwrap().1.clone()
}

/// Runs `path` on the host with an empty environment.
fn run_on_host(path: &Path) -> String {
    String::from_utf8(run(Command::new(path).env_clear())).unwrap()
}

// ---------------------------------------------------------------------------------------------------------
// The fixture itself.

#[test]
fn app_runs_from_the_nix_store() {
    let app = deploy_fixture("app");
    assert_eq!(run_on_host(&app.join("bin/app")), DEPLOY_APP_OUTPUT);
    // The absolute symlink to the program runs it too.
    let hello = run_on_host(&app.join("bin/hello"));
    assert_eq!(hello, "greet: hello, narwhal\nhello: the message lives in the data path\n");
    assert!(DEPLOY_APP_OUTPUT.starts_with(&hello));
}

#[test]
fn closure_is_exactly_the_fixtures() {
    let all = fixtures();
    let mut expected: Vec<PathBuf> = all.iter().map(|(_, p)| p.clone()).collect();
    let mut got = closure(&fixture_of(&all, "app"));
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
}

#[test]
fn hello_interpreter_and_runpath_point_into_the_store() {
    let all = fixtures();
    let (glibc, greet, data, hello) =
        (fixture_of(&all, "glibc"), fixture_of(&all, "greet"), fixture_of(&all, "data"), fixture_of(&all, "hello"));
    let bin = hello.join("bin/hello");
    let headers = run_text(Command::new("readelf").args(["-lW"]).arg(&bin));
    let interp = format!("[Requesting program interpreter: {}/lib/ld-linux-x86-64.so.2]", glibc.display());
    assert!(headers.contains(&interp), "{headers}");
    let dynamic = run_text(Command::new("readelf").args(["-dW"]).arg(&bin));
    let runpath = format!("Library runpath: [{}/lib:{}/lib]", greet.display(), glibc.display());
    assert!(dynamic.contains(&runpath), "{dynamic}");
    assert!(!dynamic.contains("(RPATH)"), "{dynamic}");
    // The message's store path is compiled in as a string.
    let bytes = fs::read(&bin).unwrap();
    assert!(contains(&bytes, format!("{}/share/message\0", data.display()).as_bytes()));
    // libgreet.so finds libc in the store on its own.
    let dynamic = run_text(Command::new("readelf").args(["-dW"]).arg(greet.join("lib/libgreet.so")));
    assert!(dynamic.contains(&format!("Library runpath: [{}/lib]", glibc.display())), "{dynamic}");
}

#[test]
fn busybox_is_static_with_relative_applet_links() {
    let busybox = deploy_fixture("busybox");
    let headers = run_text(Command::new("readelf").args(["-lW"]).arg(busybox.join("bin/busybox")));
    assert!(!headers.contains("INTERP"), "{headers}");
    for applet in ["sh", "cat", "echo", "ls", "readlink", "wc", "zcat"] {
        assert_eq!(fs::read_link(busybox.join("bin").join(applet)).unwrap(), Path::new("busybox"));
    }
}

#[test]
fn app_links_and_shebang() {
    let all = fixtures();
    let (app, busybox, data, hello) =
        (fixture_of(&all, "app"), fixture_of(&all, "busybox"), fixture_of(&all, "data"), fixture_of(&all, "hello"));
    let script = fs::read_to_string(app.join("bin/app")).unwrap();
    assert_eq!(script.lines().next().unwrap(), format!("#!{}/bin/sh", busybox.display()));
    assert_eq!(fs::read_link(app.join("bin/hello")).unwrap(), hello.join("bin/hello"));
    assert_eq!(fs::read_link(app.join("share/abs-link")).unwrap(), data.join("share/message"));
    assert_eq!(fs::read_link(app.join("share/rel-link")).unwrap(), Path::new("../etc/note"));
}

#[test]
fn paths_gz_hides_store_paths_from_a_byte_rewrite() {
    let all = fixtures();
    let (data, glibc, greet) = (fixture_of(&all, "data"), fixture_of(&all, "glibc"), fixture_of(&all, "greet"));
    let gz = data.join("share/paths.gz");
    assert!(!contains(&fs::read(&gz).unwrap(), NIX_STORE));
    let text = run_text(Command::new("gzip").arg("-dc").arg(&gz));
    assert_eq!(text, format!("{}/lib/libgreet.so\n{}/lib/libc.so.6", greet.display(), glibc.display()));
}

// ---------------------------------------------------------------------------------------------------------
// The closure in an isolated root.

/// Copies `src` to `dest`, replacing every `/nix/store` by `/app/store` in regular files and symlink
/// targets: a stand-in for narwhal's relocation.
fn copy_relocated(src: &Path, dest: &Path) {
    fn rewrite(bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        let mut i = 0;
        while i + NIX_STORE.len() <= out.len() {
            if &out[i..i + NIX_STORE.len()] == NIX_STORE {
                out[i..i + NIX_STORE.len()].copy_from_slice(APP_STORE);
                i += NIX_STORE.len();
            } else {
                i += 1;
            }
        }
        out
    }
    let meta = fs::symlink_metadata(src).unwrap();
    let mode = fs::Permissions::from_mode(meta.mode() & 0o7777);
    if meta.file_type().is_symlink() {
        let target = rewrite(fs::read_link(src).unwrap().as_os_str().as_bytes());
        symlink(OsStr::from_bytes(&target), dest).unwrap();
    } else if meta.is_dir() {
        fs::create_dir(dest).unwrap();
        for entry in fs::read_dir(src).unwrap() {
            let entry = entry.unwrap();
            copy_relocated(&entry.path(), &dest.join(entry.file_name()));
        }
        fs::set_permissions(dest, mode).unwrap();
    } else {
        fs::write(dest, rewrite(&fs::read(src).unwrap())).unwrap();
        fs::set_permissions(dest, mode).unwrap();
    }
}

/// Every regular file and symlink under `dir` whose bytes (or target) contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let meta = fs::symlink_metadata(dir).unwrap();
    if meta.file_type().is_symlink() {
        if contains(fs::read_link(dir).unwrap().as_os_str().as_bytes(), needle) {
            found.push(dir.to_path_buf());
        }
    } else if meta.is_dir() {
        for entry in fs::read_dir(dir).unwrap() {
            found.extend(files_containing(&entry.unwrap().path(), needle));
        }
    } else if contains(&fs::read(dir).unwrap(), needle) {
        found.push(dir.to_path_buf());
    }
    found
}

fn sorted_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    v.sort();
    v
}

#[test]
fn closure_alone_runs_as_nobody_at_nix_store() {
    let app = deploy_fixture("app");
    let paths = closure(&app);
    let iso = Isolated::new();
    for p in &paths {
        iso.add_dir(p, p.to_str().unwrap());
    }
    let mut names: Vec<String> = paths.iter().map(|p| name(p).to_owned()).collect();
    names.sort();
    assert_eq!(sorted_entries(&iso.host_path("/nix/store")), names);
    assert_eq!(sorted_entries(iso.root()), ["dev", "nix", "proc"]);

    let out = iso.run_ok(&[app.join("bin/app").to_str().unwrap()], &[]);
    assert_eq!(out, DEPLOY_APP_OUTPUT);
}

#[test]
fn relocated_closure_runs_as_nobody_at_app_store_without_nix() {
    let all = fixtures();
    let app = fixture_of(&all, "app");
    let staging = tempdir();
    let iso = Isolated::new();
    for p in closure(&app) {
        let dest = staging.path().join(name(&p));
        copy_relocated(&p, &dest);
        iso.add_dir(&dest, &format!("/app/store/{}", name(&p)));
    }
    assert!(fs::symlink_metadata(iso.root().join("nix")).is_err());
    assert_eq!(sorted_entries(iso.root()), ["app", "dev", "proc"]);

    // The only store paths a byte rewrite leaves behind are those inside paths.gz.
    let data = fixture_of(&all, "data");
    assert_eq!(files_containing(iso.root(), NIX_STORE), Vec::<PathBuf>::new());
    let gz = iso.host_path(&format!("/app/store/{}/share/paths.gz", name(&data)));
    assert!(run_text(Command::new("gzip").arg("-dc").arg(&gz)).contains("/nix/store/"));

    let bin = format!("/app/store/{}/bin/app", name(&app));
    assert_eq!(iso.run_ok(&[&bin], &[]), DEPLOY_APP_OUTPUT);
    // Through the relocated absolute symlink too, with an environment like a dyno's.
    let hello = format!("/app/store/{}/bin/hello", name(&app));
    let out = iso.run_ok(&[&hello], &[("HOME", "/app"), ("PORT", "5000")]);
    assert!(out.starts_with("greet: hello, narwhal\nhello: "), "{out}");

    // And from the inside: no /nix.
    let busybox = format!("/app/store/{}/bin", name(&fixture_of(&all, "busybox")));
    let sh = format!("{busybox}/sh");
    let script = format!("{busybox}/ls -1a / && if [ -e /nix ]; then echo '/nix exists'; fi");
    assert_eq!(iso.run_ok(&[&sh, "-c", &script], &[]), ".\n..\napp\ndev\nproc\n");
}

// ---------------------------------------------------------------------------------------------------------
// Isolated itself, with the static busybox at /tools.

fn with_busybox() -> Isolated {
    let iso = Isolated::new();
    iso.add_dir(&deploy_fixture("busybox"), "/tools");
    iso
}

#[test]
fn runs_as_nobody_in_a_root_without_nix() {
    let iso = with_busybox();
    assert_eq!(fs::metadata(iso.root()).unwrap().mode() & 0o777, 0o755);
    assert!(fs::symlink_metadata(iso.root().join("nix")).is_err());
    let ls = iso.run_ok(&["/tools/bin/ls", "-1a", "/"], &[]);
    assert_eq!(ls, ".\n..\ndev\nproc\ntools\n");
    // nobody cannot write into the root-owned tree.
    let out = iso.run(&["/tools/bin/sh", "-c", "echo x > /tools/x"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"), "{out:?}");
    assert!(!iso.root().join("tools/x").exists());
    // The exit status comes through.
    let out = iso.run(&["/tools/bin/sh", "-c", "exit 3"], &[]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn environment_is_exactly_what_is_given() {
    let iso = with_busybox();
    let env = [("FOO", "bar baz"), ("EMPTY", ""), ("PATH", "/tools/bin")];
    let out = iso.run_ok(&["/tools/bin/sh", "-c", r#"echo "$FOO|$EMPTY|${HOME-unset}|$(echo hi)""#], &env);
    assert_eq!(out, "bar baz||unset|hi\n");
    if mode() == Mode::Namespaces {
        let environ = iso.run_ok(&["/tools/bin/cat", "/proc/self/environ"], &env);
        assert_eq!(environ, "FOO=bar baz\0EMPTY=\0PATH=/tools/bin\0");
        let environ = iso.run_ok(&["/tools/bin/cat", "/proc/self/environ"], &[]);
        assert_eq!(environ, "");
    }
}

#[test]
fn proc_and_dev_are_mounted_privately_and_go_away() {
    let iso = with_busybox();
    if mode() == Mode::Namespaces {
        let status = iso.run_ok(&["/tools/bin/cat", "/proc/self/status"], &[]);
        let ids = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .unwrap()
                .split_whitespace()
                .skip(1)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids("Uid:"), vec![NOBODY.to_string(); 4]);
        assert_eq!(ids("Gid:"), vec![NOBODY.to_string(); 4]);
        assert_eq!(ids("Groups:"), vec![NOBODY.to_string()]);
        // Its own pid namespace: the command is pid 1.
        assert_eq!(iso.run_ok(&["/tools/bin/sh", "-c", "echo $$"], &[]), "1\n");
        assert_eq!(iso.run_ok(&["/tools/bin/sh", "-c", "echo hi > /dev/null && echo ok"], &[]), "ok\n");
    }
    // Nothing is left mounted on the host.
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = iso.root().to_str().unwrap();
    assert!(!mounts.contains(root), "{mounts}");
    assert!(sorted_entries(&iso.root().join("proc")).is_empty());
    assert!(sorted_entries(&iso.root().join("dev")).is_empty());
}

#[test]
fn add_dir_keeps_symlinks_and_modes() {
    let src = tempdir();
    let s = src.path();
    fs::create_dir_all(s.join("sub")).unwrap();
    fs::write(s.join("sub/exec"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(s.join("sub/exec"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(s.join("private"), "p").unwrap();
    fs::set_permissions(s.join("private"), fs::Permissions::from_mode(0o640)).unwrap();
    symlink("sub/exec", s.join("rel")).unwrap();
    symlink("/nonexistent/target", s.join("abs")).unwrap();
    fs::set_permissions(s.join("sub"), fs::Permissions::from_mode(0o555)).unwrap();

    let iso = Isolated::new();
    iso.add_dir(s, "/a/b/c");
    let d = iso.host_path("/a/b/c");
    assert_eq!(fs::metadata(iso.root().join("a/b")).unwrap().mode() & 0o7777, 0o755);
    assert_eq!(fs::metadata(d.join("sub")).unwrap().mode() & 0o7777, 0o555);
    assert_eq!(fs::metadata(d.join("sub/exec")).unwrap().mode() & 0o7777, 0o755);
    assert_eq!(fs::metadata(d.join("private")).unwrap().mode() & 0o7777, 0o640);
    assert_eq!(fs::read(d.join("sub/exec")).unwrap(), b"#!/bin/sh\n");
    assert_eq!(fs::read_link(d.join("rel")).unwrap(), Path::new("sub/exec"));
    assert_eq!(fs::read_link(d.join("abs")).unwrap(), Path::new("/nonexistent/target"));

    // A single file works too.
    iso.add_dir(&s.join("private"), "/f");
    assert_eq!(fs::read(iso.host_path("/f")).unwrap(), b"p");
    fs::set_permissions(s.join("sub"), fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
#[should_panic(expected = "already exists")]
fn add_dir_refuses_to_overwrite() {
    let src = tempdir();
    let iso = Isolated::new();
    iso.add_dir(src.path(), "/x");
    iso.add_dir(src.path(), "/x");
}

#[test]
#[should_panic(expected = "must not contain")]
fn paths_inside_the_root_cannot_escape() {
    Isolated::new().host_path("/app/../../etc");
}

// ---------------------------------------------------------------------------------------------------------
// The lifecycle emulator, with a buildpack written from the spec alone (narwhal's own does not use exec.d).

/// buildpack.md, "exec.d": at launch, after the layers' env files, each program in a layer's `exec.d/` and
/// then `exec.d/<process>/` runs in the image with file descriptor 3 open; the TOML table of strings it
/// writes there is set for the programs after it and for the process. A shell buildpack whose launch layer
/// holds a static busybox checks each rule: the env file is seen by the first program, the first program's
/// variable by the second, and the process-specific program runs for its process only.
#[test]
fn lifecycle_runs_exec_d_programs_after_the_env_files() {
    use narwhal_testkit::cnb::{Lifecycle, Outcome};
    let tmp = tempdir();
    let bp = tmp.path().join("bp");
    fs::create_dir_all(bp.join("bin")).unwrap();
    let descriptor = "api = \"0.10\"\n\n[buildpack]\nid = \"test/exec-d\"\nversion = \"0.1.0\"\n\n\
                      [[targets]]\nos = \"linux\"\narch = \"amd64\"\n";
    fs::write(bp.join("buildpack.toml"), descriptor).unwrap();
    let build = r#"#!/bin/sh
set -eu
tool=$1/tool
at=/layers/test_exec-d/tool
mkdir -p "$tool/bin" "$tool/exec.d/web" "$tool/env.launch"
cp /bin/busybox "$tool/bin/busybox"
ln -s busybox "$tool/bin/sh"
printf 'from env.launch' > "$tool/env.launch/FROM_FILE.default"
printf '#!%s/bin/sh\necho "GREETING = \\"hello, FROM_FILE=$FROM_FILE\\"" >&3\n' "$at" > "$tool/exec.d/10-greeting"
printf '#!%s/bin/sh\necho "ONLY_WEB = \\"after $GREETING\\"" >&3\n' "$at" > "$tool/exec.d/web/20-web"
chmod 755 "$tool/exec.d/10-greeting" "$tool/exec.d/web/20-web"
printf '[types]\nlaunch = true\n' > "$1/tool.toml"
cat > "$1/launch.toml" <<'TOML'
[[processes]]
type = "web"
command = ["sh", "-c", "echo \"$GREETING|${ONLY_WEB:-unset}|$FROM_FILE\""]
default = true

[[processes]]
type = "worker"
command = ["sh", "-c", "echo \"$GREETING|${ONLY_WEB:-unset}\""]
TOML
"#;
    for (name, text) in [("detect", "#!/bin/sh\nexit 0\n"), ("build", build)] {
        fs::write(bp.join("bin").join(name), text).unwrap();
        fs::set_permissions(bp.join("bin").join(name), fs::Permissions::from_mode(0o755)).unwrap();
    }
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("README"), "an app").unwrap();

    let mut lc = Lifecycle::new(&bp);
    let built = lc.build(&src);
    assert_eq!(built.outcome, Outcome::Exported, "{}", built.log());
    let image = lc.image().unwrap();
    let text = |out: std::process::Output| {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(
        text(image.launch(None)),
        "hello, FROM_FILE=from env.launch|after hello, FROM_FILE=from env.launch|from env.launch\n"
    );
    assert_eq!(text(image.launch(Some("worker"))), "hello, FROM_FILE=from env.launch|unset\n");
    // Before exec.d, the variables are not there.
    assert!(!image.launch_env("web").iter().any(|(k, _)| k == "GREETING"));
}
