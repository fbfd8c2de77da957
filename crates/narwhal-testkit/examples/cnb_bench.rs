//! The benchmark behind `scripts/bench-cnb`: the Cloud Native Buildpack's build phase, under the
//! lifecycle emulator of [`narwhal_testkit::cnb`], against `narwhal fetch` of the same closure from
//! the same cache, in interleaved rounds.
//!
//! ```text
//! cnb_bench NARWHAL BUILDPACK_DIR CACHE_URL PUBLIC_KEY ROOT ROOT_CHANGED ROUNDS OUT_DIR
//! ```
//!
//! Each round: `narwhal fetch ROOT` into an empty directory (relocated to /workspace, as the
//! buildpack relocates), then with a new lifecycle (empty cache, no previous image) a build of ROOT,
//! a build of ROOT_CHANGED (one store path differs) and a build of ROOT_CHANGED again. Prints one
//! line per measurement: `<round> <what> <seconds> <downloaded paths>`, and keeps the last round's
//! build logs as `OUT_DIR/<what>.log`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, clippy::print_stderr)] // a benchmark program

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use narwhal_testkit::cnb::{Lifecycle, Outcome};

/// The number in the buildpack's summary line (`6 paths: 1 downloaded, 5 from the local cache, …`).
fn downloaded(log: &str) -> String {
    log.lines()
        .find_map(|l| l.split_once(": ").and_then(|(_, rest)| rest.split_once(" downloaded, ")).map(|(n, _)| n))
        .unwrap_or("?")
        .to_owned()
}

fn source(dir: &Path, root: &str, cache: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let toml = format!("roots = [\"{root}\"]\nsubstituters = [\"{cache}\"]\n\n[processes]\nweb = \"result/bin/app\"\n");
    std::fs::write(dir.join("narwhal.toml"), toml).unwrap();
    dir.to_path_buf()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, narwhal, buildpack, cache, key, root, changed, rounds, out] = args.as_slice() else {
        eprintln!("usage: cnb_bench NARWHAL BUILDPACK_DIR CACHE_URL PUBLIC_KEY ROOT ROOT_CHANGED ROUNDS OUT_DIR");
        std::process::exit(2);
    };
    let out = PathBuf::from(out);
    let rounds: usize = rounds.parse().unwrap();
    for round in 1..=rounds {
        let dest = out.join("fetch");
        let _ = std::fs::remove_dir_all(&dest);
        let started = Instant::now();
        let status = Command::new(narwhal)
            .args(["fetch", root, "--from", cache, "--trusted-public-key", key, "--prefix", "/workspace"])
            .arg("--to")
            .arg(&dest)
            .arg("--no-progress")
            .output()
            .unwrap();
        assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
        println!("{round} fetch {:.3} all", started.elapsed().as_secs_f64());
        std::fs::remove_dir_all(&dest).unwrap();

        let mut lc = Lifecycle::new(Path::new(buildpack));
        lc.set_env("NARWHAL_TRUSTED_PUBLIC_KEYS", key);
        let src = source(&out.join("src"), root, cache);
        let src2 = source(&out.join("src2"), changed, cache);
        for (what, src) in [("first", &src), ("changed", &src2), ("same", &src2)] {
            let build = lc.build(src);
            assert_eq!(build.outcome, Outcome::Exported, "{}", build.log());
            println!("{round} {what} {:.3} {}", build.build_time.as_secs_f64(), downloaded(&build.stdout));
            std::fs::write(out.join(format!("{what}.log")), build.log()).unwrap();
        }
    }
}
