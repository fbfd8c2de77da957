//! narwhal's command line against real Nix, the oracle.
//!
//! Every test builds its inputs with real Nix (see `narwhal-testkit`) and
//! compares narwhal's bytes with Nix's.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

mod buildpack;
mod cli;
mod cnb;
mod errors;
mod export;
mod fetch;
mod fetch_export;
mod fod;
mod gc;
mod hardening;
mod hash;
mod image;
mod integrity;
mod json;
mod keys;
mod malformed;
mod nar;
mod narinfo;
mod nix_conf;
mod push;
mod push_http;
mod serve;
mod verify;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The narwhal binary under test, reading no nix.conf of the host (tests that want one set
/// `NIX_CONF_DIR`).
pub fn narwhal() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_narwhal"));
    c.stdin(std::process::Stdio::null());
    c.env("NIX_CONF_DIR", "/nonexistent/narwhal-test-nix-conf").env("NIX_USER_CONF_FILES", "").env_remove("NIX_CONFIG");
    c
}

/// Runs narwhal, asserting success; returns stdout.
pub fn ok(cmd: &mut Command) -> Vec<u8> {
    narwhal_testkit::run(cmd)
}

/// Runs narwhal, asserting failure with exit code 1; returns stderr.
pub fn fails(cmd: &mut Command) -> String {
    fails_with(cmd, 1)
}

/// Runs narwhal, asserting that verification failed (exit code 3); returns stderr.
pub fn fails_verification(cmd: &mut Command) -> String {
    fails_with(cmd, 3)
}

/// Runs narwhal, asserting failure with exit code `code` and one `error:` line; returns stderr.
pub fn fails_with(cmd: &mut Command, code: i32) -> String {
    let out: Output = narwhal_testkit::output(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{cmd:?} should fail with {code}; stderr:\n{stderr}");
    assert_eq!(stderr.lines().filter(|l| l.starts_with("error: ")).count(), 1, "stderr: {stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("internal error"), "stderr: {stderr}");
    stderr
}

/// A key pair named `name` made by `narwhal key generate` in `dir`: the secret key's file and
/// the public key (`name:base64`).
pub fn keys(dir: &Path, name: &str) -> (PathBuf, String) {
    let (sec, public) = (dir.join(format!("{name}.sec")), dir.join(format!("{name}.pub")));
    ok(narwhal().args(["key", "generate", name, "--secret"]).arg(&sec).arg("--public").arg(&public));
    (sec, std::fs::read_to_string(public).unwrap().trim().to_owned())
}

/// Runs `cmd` and shows what its user sees, for a snapshot: the exit status, stdout and stderr,
/// each `(text, placeholder)` of `scrub` (temporary paths) and the binary's path replaced.
pub fn snapshot(cmd: &mut Command, scrub: &[(&str, &str)]) -> String {
    let out: Output = narwhal_testkit::output(cmd);
    let mut text = format!(
        "exit status: {}\n----- stdout -----\n{}----- stderr -----\n{}",
        out.status.code().map_or_else(|| "killed".to_owned(), |c| c.to_string()),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for (from, to) in scrub {
        text = text.replace(from, to);
    }
    text.replace(env!("CARGO_BIN_EXE_narwhal"), "[NARWHAL]")
}

/// Names in `dir`, sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Polls `done` every 10 ms for at most 60 s; true once it holds.
pub fn eventually(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..6000 {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}

/// Spawns `cmd` quietly, stderr into `log`.
pub fn spawn_logged(cmd: &mut Command, log: &Path) -> Child {
    let err = std::fs::File::create(log).unwrap();
    cmd.stdout(Stdio::null()).stderr(err).spawn().unwrap()
}

/// Kills `child` (SIGKILL) once `ready` holds, asserting it was still running then: `ready` must
/// name a point the child cannot get past by itself (a request the test server holds or stalls).
pub fn kill_when(mut child: Child, ready: impl FnMut() -> bool, what: &str) {
    let ready = eventually(ready);
    assert!(child.try_wait().unwrap().is_none(), "{what} ended before it was killed");
    assert!(ready, "{what} never reached the point to kill it at");
    child.kill().unwrap();
    child.wait().unwrap();
}
