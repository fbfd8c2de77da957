//! `narwhal verify`: a cache with one planted fault of each kind, repaired from a second cache;
//! and a fetched tree changed on disk.

use std::path::Path;

use narwhal_testkit::isolate::deploy_fixture;
use narwhal_testkit::{closure, file_url, tempdir};

use crate::fetch::{fetch_cmd, Cache};
use crate::{fails_verification, narwhal, ok};

fn hash(path: &Path) -> String {
    path.file_name().unwrap().to_str().unwrap()[..32].to_owned()
}

fn copy_dir(from: &Path, to: &Path) {
    narwhal_testkit::run(std::process::Command::new("cp").arg("-a").arg(from).arg(to));
}

/// The findings of `verify --json` as (problem, store path) pairs, and whether each was repaired.
fn findings(out: &[u8]) -> Vec<(String, String, bool)> {
    let report: serde_json::Value = serde_json::from_slice(out).unwrap();
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (f["problem"].as_str().unwrap().to_owned(), f["path"].as_str().unwrap().to_owned(), f["repaired"] == true)
        })
        .collect()
}

#[test]
fn verify_finds_each_planted_fault_and_repairs_the_nars() {
    let cache = Cache::new(&["app"], "zstd");
    let tmp = tempdir();
    let (dir, good) = (tmp.path().join("cache"), tmp.path().join("good"));
    copy_dir(&cache.dir, &dir);
    copy_dir(&cache.dir, &good);
    let url = file_url(&dir, "");
    let verify = || {
        let mut c = narwhal();
        c.args(["verify", "--in", &url, "--contents", "--json", "--trusted-public-key", &cache.public_key]);
        c
    };
    let clean = ok(&mut verify());
    assert_eq!(findings(&clean), vec![]);

    let [glibc, busybox, greet, data, hello, app] =
        ["glibc", "busybox", "greet", "data", "hello", "app"].map(deploy_fixture);
    assert_eq!(closure(&app).len(), 6);
    let nar_of = |p: &Path| dir.join(cache.nar_of(p).strip_prefix(&cache.dir).unwrap());
    // A flipped byte in busybox's NAR, data's NAR gone, greet's narinfo gone (hello references
    // it), glibc's signature broken, app's NarSize wrong.
    let nar = nar_of(&busybox);
    let mut bytes = std::fs::read(&nar).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&nar, bytes).unwrap();
    std::fs::remove_file(nar_of(&data)).unwrap();
    std::fs::remove_file(dir.join(format!("{}.narinfo", hash(&greet)))).unwrap();
    let edit = |p: &Path, f: &dyn Fn(&str) -> String| {
        let file = dir.join(format!("{}.narinfo", hash(p)));
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, f(&text)).unwrap();
    };
    edit(&glibc, &|t| {
        t.lines()
            .map(|l| {
                if let Some(sig) = l.strip_prefix("Sig: ") {
                    format!("Sig: {}A{}\n", &sig[..20], &sig[21..])
                } else {
                    format!("{l}\n")
                }
            })
            .collect()
    });
    edit(&app, &|t| {
        t.lines()
            .map(|l| {
                if let Some(n) = l.strip_prefix("NarSize: ") {
                    format!("NarSize: {}\n", n.parse::<u64>().unwrap() + 8)
                } else {
                    format!("{l}\n")
                }
            })
            .collect()
    });

    let out = narwhal_testkit::output(&mut verify());
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let found = findings(&out.stdout);
    let has = |problem: &str, p: &Path| found.iter().any(|(k, path, _)| k == problem && Path::new(path) == p);
    assert!(has("damaged-nar", &busybox), "{found:?}");
    assert!(has("missing-nar", &data), "{found:?}");
    assert!(has("missing-reference", &hello), "{found:?}");
    assert!(has("bad-signature", &glibc), "{found:?}");
    assert!(has("damaged-nar", &app), "{found:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let app_detail = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["problem"] == "damaged-nar" && f["path"] == app.to_str().unwrap())
        .unwrap();
    assert!(app_detail["detail"].as_str().unwrap().contains("NarSize"), "{app_detail}");
    // The text report, by problem.
    let text =
        narwhal_testkit::output(narwhal().args(["verify", "--in", &url, "--trusted-public-key", &cache.public_key]));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("missing NAR (1):") && text.contains("reference without a narinfo (1):"), "{text}");

    // Repair: the two NARs come back from the good cache, checked; the rest stays reported.
    let out = narwhal_testkit::output(verify().args(["--repair", "--from", &file_url(&good, "")]));
    assert_eq!(out.status.code(), Some(3));
    let repaired: Vec<_> = findings(&out.stdout).into_iter().filter(|f| f.2).map(|f| f.1).collect();
    assert_eq!(repaired.len(), 2, "{repaired:?}");
    assert!(repaired.contains(&busybox.display().to_string()) && repaired.contains(&data.display().to_string()));
    let after = findings(&ok_or_3(&mut verify()));
    assert!(
        !after.iter().any(|(k, p, _)| (k == "damaged-nar" && Path::new(p) == busybox) || k == "missing-nar"),
        "{after:?}"
    );
    assert_eq!(std::fs::read(nar_of(&busybox)).unwrap(), std::fs::read(cache.nar_of(&busybox)).unwrap());
    assert_eq!(std::fs::read(nar_of(&data)).unwrap(), std::fs::read(cache.nar_of(&data)).unwrap());
    let err = fails_verification(narwhal().args(["verify", "--in", &url]).arg(&hello));
    assert!(err.contains("problem(s)"), "{err}");
}

/// stdout of a run that exits 0 or 3.
fn ok_or_3(cmd: &mut std::process::Command) -> Vec<u8> {
    let out = narwhal_testkit::output(cmd);
    assert!(matches!(out.status.code(), Some(0 | 3)), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn verify_dir_finds_a_changed_byte_and_a_missing_file() {
    let cache = Cache::new(&["app"], "zstd");
    let tmp = tempdir();
    let dest = tmp.path().join("deploy");
    ok(fetch_cmd(&file_url(&cache.dir, ""), &cache.public_key, &cache.root, &dest).args(["--prefix", "/app/store"]));
    ok(narwhal().arg("verify").arg(&dest));
    let [data, busybox] = ["data", "busybox"].map(deploy_fixture);
    let in_dest = |p: &Path| dest.join(p.file_name().unwrap());
    let message = in_dest(&data).join("share/message");
    narwhal_testkit::run(std::process::Command::new("chmod").arg("-R").arg("u+w").arg(&dest));
    let mut bytes = std::fs::read(&message).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&message, bytes).unwrap();
    std::fs::remove_file(in_dest(&busybox).join("bin/cat")).unwrap();
    let out = narwhal_testkit::output(narwhal().arg("verify").arg(&dest));
    assert_eq!(out.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("changed: {}", in_dest(&data).display())), "{stdout}");
    assert!(stdout.contains(&format!("changed: {}", in_dest(&busybox).display())), "{stdout}");
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    let err = fails_verification(narwhal().arg("verify").arg(&dest));
    assert!(err.contains("2 of 6 paths"), "{err}");
}
