//! The deploy target, simulated: a root directory that holds only what a test
//! puts in it (a slug at `/app`, a closure, …), where a command runs as
//! `nobody` (uid and gid 65534) with an empty environment and no `/nix`.
//!
//! # How isolation works
//!
//! [`Isolated::run`] needs root (tests run as root, as CI does). It starts
//!
//! ```text
//! unshare --mount --pid --fork --kill-child -- /bin/sh -c '
//!     mount -t proc proc ROOT/proc; mount --rbind /dev ROOT/dev
//!     exec env -i NAME=VALUE… chroot --userspec=65534:65534 ROOT ARGV…'
//! ```
//!
//! - `--mount`: a private mount namespace (util-linux makes propagation
//!   private), so the two mounts never appear on the host and disappear with
//!   the namespace when the command exits; nothing needs unmounting.
//! - `--pid`: the command is pid 1 of its own pid namespace, so `/proc` inside
//!   shows only its processes, and anything it leaves running is killed when
//!   it exits. `--kill-child` kills it if `unshare` itself is killed.
//! - `env -i` runs on the host side of the chroot, so the command's
//!   environment is exactly the pairs given (not even `PWD`).
//! - coreutils' `chroot --userspec` changes root, then drops to 65534:65534
//!   (supplementary groups: 65534 only), and starts in `/`.
//!
//! Whether this works is probed once per process ([`mode`]). Where
//! `unshare --mount` or the mounts are refused (an unprivileged container),
//! [`Isolated::run`] falls back to a plain `chroot --userspec` with the
//! environment cleared by the caller: then `/proc` and `/dev` inside the root
//! stay empty directories, so programs that need `/proc/self/exe`, `/dev/null`
//! or `/dev/urandom` fail there. [`mode`] tells tests which one they got.
//!
//! Needs `unshare` and `mount` (util-linux, Debian `util-linux` and `mount`),
//! `chroot` and `env` (Debian `coreutils`), and `/bin/sh`.
//!
//! The fixture closure for these tests is `fixtures/deploy.nix`
//! ([`deploy_fixture`]); its root prints [`DEPLOY_APP_OUTPUT`].

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use tempfile::TempDir;

use crate::{nix, run_text};

/// The uid and gid commands run as inside the root (`nobody`/`nogroup`).
pub const NOBODY: u32 = 65534;

/// What `deploy.nix`'s `app` prints, wherever its store directory is.
pub const DEPLOY_APP_OUTPUT: &str = "\
greet: hello, narwhal
hello: the message lives in the data path
abs-link: the message lives in the data path
rel-link: a note beside the app
rel-link target: ../etc/note
paths.gz: 2 store paths
done
";

/// Attribute names in `fixtures/deploy.nix`; `app` is the root of the closure.
pub const DEPLOY_FIXTURES: &[&str] = &["glibc", "busybox", "greet", "data", "hello", "app"];

/// Builds (or finds) the attribute `attr` of `fixtures/deploy.nix` with real Nix; returns its store path.
pub fn deploy_fixture(attr: &str) -> PathBuf {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/deploy.nix");
    let path = run_text(nix("nix-build").arg(file).args(["-A", attr, "--no-out-link", "--quiet"]));
    assert!(path.starts_with("/nix/store/"), "nix-build printed {path:?}");
    PathBuf::from(path)
}

/// How [`Isolated::run`] isolates commands on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Private mount and pid namespaces, `/proc` and `/dev` mounted inside the root, then chroot.
    Namespaces,
    /// A plain chroot: `/proc` and `/dev` inside the root are empty.
    ChrootOnly,
}

/// The mode this machine supports, probed on first use.
pub fn mode() -> Mode {
    static MODE: OnceLock<Mode> = OnceLock::new();
    *MODE.get_or_init(probe)
}

// $1 = mount, $2 = root; the rest is the command to exec (env -i … chroot … argv).
const SCRIPT: &str = r#"set -e
m=$1 r=$2
shift 2
"$m" -t proc proc "$r/proc"
"$m" --rbind /dev "$r/dev"
exec "$@""#;

fn probe() -> Mode {
    let dir = crate::tempdir();
    let root = dir.path();
    fs::create_dir(root.join("proc")).unwrap();
    fs::create_dir(root.join("dev")).unwrap();
    let mut cmd = unshare();
    cmd.arg(tool("mount"))
        .arg(root)
        .args(["/bin/sh", "-c"])
        .arg(r#"test -r "$0/proc/self/status" && test -c "$0/dev/null""#);
    cmd.arg(root);
    match cmd.output() {
        Ok(o) if o.status.success() => Mode::Namespaces,
        Ok(o) => {
            eprintln!(
                "isolate: unshare --mount with /proc and /dev mounts failed ({}): {}; falling back to a plain chroot",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim_end()
            );
            Mode::ChrootOnly
        }
        Err(e) => {
            eprintln!("isolate: cannot run unshare ({e}); falling back to a plain chroot");
            Mode::ChrootOnly
        }
    }
}

/// `unshare … /bin/sh -c SCRIPT sh`, waiting for `MOUNT ROOT COMMAND…`.
fn unshare() -> Command {
    let mut c = Command::new(tool("unshare"));
    c.args(["--mount", "--pid", "--fork", "--kill-child", "--", "/bin/sh", "-c", SCRIPT, "sh"]);
    c.env_clear().stdin(Stdio::null());
    c
}

/// The absolute path of a host tool (the environment of the commands is cleared, so no PATH lookup).
fn tool(name: &str) -> PathBuf {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("isolate: `{name}` not found (install util-linux, mount and coreutils)"))
}

/// A root directory for one isolated command; removed on drop.
pub struct Isolated {
    root: TempDir,
}

impl Default for Isolated {
    fn default() -> Self {
        Self::new()
    }
}

impl Isolated {
    /// An empty root (mode 0755) with empty `/proc` and `/dev` directories as mount points.
    pub fn new() -> Self {
        assert_eq!(
            fs::metadata("/proc/self").unwrap().uid(),
            0,
            "isolate: running commands in an isolated root needs root (chroot, mount)"
        );
        let root = tempfile::Builder::new().prefix("narwhal-isolated-").tempdir().unwrap();
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).unwrap();
        for d in ["proc", "dev"] {
            create_dir_mode(&root.path().join(d), 0o755);
        }
        Self { root }
    }

    /// The root directory, as seen from the host.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The host path of `at`, an absolute path inside the root.
    pub fn host_path(&self, at: &str) -> PathBuf {
        assert!(at.starts_with('/'), "isolate: {at:?} is not absolute");
        let rel = Path::new(at);
        assert!(
            rel.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_))),
            "isolate: {at:?} must not contain `.` or `..`"
        );
        self.root().join(at.trim_start_matches('/'))
    }

    /// Copies the tree `src` (a directory, file or symlink; symlinks are copied as symlinks, modes are kept)
    /// to `at`, an absolute path inside the root that must not exist yet. Missing parents are created with
    /// mode 0755.
    pub fn add_dir(&self, src: &Path, at: &str) {
        let dest = self.host_path(at);
        assert!(fs::symlink_metadata(&dest).is_err(), "isolate: {at} already exists in the root");
        let mut missing = Vec::new();
        let mut p = dest.parent().unwrap();
        while !p.exists() {
            missing.push(p.to_path_buf());
            p = p.parent().unwrap();
        }
        for d in missing.iter().rev() {
            create_dir_mode(d, 0o755);
        }
        copy_tree(src, &dest);
    }

    /// Runs `argv` (`argv[0]` is a path inside the root) as 65534:65534 in the root, with exactly the
    /// environment `env`, stdin from nothing, starting in `/`. Returns its output, whatever its status.
    pub fn run(&self, argv: &[&str], env: &[(&str, &str)]) -> Output {
        assert!(!argv.is_empty(), "isolate: empty command");
        for (k, _) in env {
            assert!(!k.is_empty() && !k.contains('='), "isolate: bad environment variable name {k:?}");
        }
        let spec = format!("--userspec={NOBODY}:{NOBODY}");
        let mut cmd = match mode() {
            Mode::Namespaces => {
                let mut c = unshare();
                c.arg(tool("mount")).arg(self.root()).arg(tool("env")).arg("-i");
                c.args(env.iter().map(|(k, v)| format!("{k}={v}")));
                c.arg(tool("chroot")).arg(&spec).arg(self.root());
                c
            }
            Mode::ChrootOnly => {
                let mut c = Command::new(tool("chroot"));
                c.arg(&spec).arg(self.root()).env_clear().envs(env.iter().copied()).stdin(Stdio::null());
                c
            }
        };
        cmd.args(argv);
        crate::output(&mut cmd)
    }

    /// [`Isolated::run`] starting in `cwd` (an absolute path inside the root), with file descriptor 3
    /// open for writing to the host file `fd3` when given (as a CNB launcher gives exec.d programs).
    /// The root is entered with util-linux `unshare --root --wd --setgid --setuid`, which, unlike
    /// `chroot`, can start elsewhere than `/`; supplementary groups are dropped.
    pub fn run_at(&self, cwd: &str, argv: &[&str], env: &[(&str, &str)], fd3: Option<&Path>) -> Output {
        assert!(!argv.is_empty(), "isolate: empty command");
        assert!(self.host_path(cwd).is_dir(), "isolate: {cwd} is not a directory in the root");
        let enter = |c: &mut Command| {
            c.arg(tool("env")).arg("-i");
            c.args(env.iter().map(|(k, v)| format!("{k}={v}")));
            c.arg(tool("unshare"))
                .arg(format!("--root={}", self.root().display()))
                .arg(format!("--wd={cwd}"))
                .arg(format!("--setgid={NOBODY}"))
                .arg(format!("--setuid={NOBODY}"))
                .arg("--");
        };
        // fd 3 is opened on the host side, before the root is entered.
        let with_fd3 = |c: &mut Command| {
            if let Some(f) = fd3 {
                c.args(["/bin/sh", "-c", r#"f=$1; shift; exec "$@" 3>"$f""#, "sh"]).arg(f);
            }
        };
        let mut cmd = match mode() {
            Mode::Namespaces => {
                let mut c = unshare();
                c.arg(tool("mount")).arg(self.root());
                with_fd3(&mut c);
                enter(&mut c);
                c
            }
            Mode::ChrootOnly => {
                let mut c = Command::new("/bin/sh");
                c.args(["-c", r#"exec "$@""#, "sh"]).env_clear().stdin(Stdio::null());
                with_fd3(&mut c);
                enter(&mut c);
                c
            }
        };
        cmd.args(argv);
        crate::output(&mut cmd)
    }

    /// [`Isolated::run`], panicking with stderr unless the command succeeds; returns stdout as text.
    pub fn run_ok(&self, argv: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.run(argv, env);
        assert!(
            out.status.success(),
            "{argv:?} in the isolated root failed with {}:\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

fn create_dir_mode(dir: &Path, mode: u32) {
    fs::create_dir(dir).unwrap_or_else(|e| panic!("isolate: mkdir {}: {e}", dir.display()));
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).unwrap();
}

/// Copies `src` to `dest` (which does not exist): symlinks as symlinks, files and directories with their
/// permission bits. A directory gets its mode after its entries are written, so read-only store
/// directories copy.
pub(crate) fn copy_tree(src: &Path, dest: &Path) {
    let meta = fs::symlink_metadata(src).unwrap_or_else(|e| panic!("isolate: {}: {e}", src.display()));
    let ft = meta.file_type();
    let mode = fs::Permissions::from_mode(meta.mode() & 0o7777);
    if ft.is_symlink() {
        symlink(fs::read_link(src).unwrap(), dest).unwrap();
    } else if ft.is_dir() {
        fs::create_dir(dest).unwrap_or_else(|e| panic!("isolate: mkdir {}: {e}", dest.display()));
        for entry in fs::read_dir(src).unwrap() {
            let entry = entry.unwrap();
            copy_tree(&entry.path(), &dest.join(entry.file_name()));
        }
        fs::set_permissions(dest, mode).unwrap();
    } else if ft.is_file() {
        fs::copy(src, dest).unwrap_or_else(|e| panic!("isolate: copy {} to {}: {e}", src.display(), dest.display()));
        fs::set_permissions(dest, mode).unwrap();
    } else {
        panic!("isolate: {} is not a file, directory or symlink", src.display());
    }
}
