//! Puts the git commit into `narwhal --version`: `NARWHAL_COMMIT` when the packager sets it,
//! else `git rev-parse`, else "unknown commit" (a source tarball without git builds as well).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok().filter(|o| o.status.success())?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=NARWHAL_COMMIT");
    let commit = std::env::var("NARWHAL_COMMIT").ok().filter(|c| !c.is_empty()).or_else(|| {
        // Rebuild when HEAD moves: HEAD itself, and the branch it names.
        for file in ["HEAD"].into_iter().map(str::to_owned).chain(git(&["symbolic-ref", "-q", "HEAD"])) {
            // A missing file would rerun this script on every build.
            if let Some(path) = git(&["rev-parse", "--git-path", &file]).filter(|p| std::path::Path::new(p).exists()) {
                println!("cargo:rerun-if-changed={path}");
            }
        }
        git(&["rev-parse", "--short=12", "HEAD"])
    });
    println!("cargo:rustc-env=NARWHAL_COMMIT={}", commit.as_deref().unwrap_or("unknown commit"));
}
