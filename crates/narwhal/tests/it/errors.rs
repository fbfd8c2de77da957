//! Errors that help: only what may go away is retried, retry lines say what failed and when the
//! next try is, a stalled download is caught in seconds, and what can be checked before a
//! download is checked first.

use std::time::{Duration, Instant};

use narwhal_testkit::http::HttpServer;
use narwhal_testkit::{file_url, tempdir};

use crate::fetch::{fetch_cmd, store_entries, Cache};
use crate::{fails, narwhal, ok};

#[test]
fn a_stalled_download_is_retried_within_seconds() {
    let cache = Cache::new(&["app"], "zstd");
    let server = HttpServer::start(&cache.dir, &["--stall", "1"]);
    let tmp = tempdir();
    let started = Instant::now();
    let out = narwhal_testkit::output(
        fetch_cmd(&server.url(), &cache.public_key, &cache.root, &tmp.path().join("to"))
            .env("NARWHAL_HTTP_TIMEOUT", "2"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Each path's first download stalls halfway; the server would hold it 30 s.
    assert!(started.elapsed() < Duration::from_secs(25), "took {:?}:\n{stderr}", started.elapsed());
    let retry =
        stderr.lines().find(|l| l.starts_with("retrying ")).unwrap_or_else(|| panic!("no retry line:\n{stderr}"));
    assert!(retry.contains("next try in") && retry.contains(&server.url()), "{retry}");
}

#[test]
fn a_corrupt_file_nar_and_an_invalid_url_are_not_retried() {
    let cache = Cache::new(&["app"], "zstd");
    let nar = cache.nar_of(&cache.root);
    let mut bytes = std::fs::read(&nar).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&nar, bytes).unwrap();
    let tmp = tempdir();
    let to = tmp.path().join("to");
    let out = narwhal_testkit::output(&mut fetch_cmd(&file_url(&cache.dir, ""), &cache.public_key, &cache.root, &to));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{err}");
    assert!(!err.contains("retrying"), "{err}");
    assert!(store_entries(&to).iter().all(|e| !e.contains(&cache.root.file_name().unwrap().to_string_lossy()[..32])));

    let started = Instant::now();
    let err = fails(&mut fetch_cmd("http://bad host/cache", &cache.public_key, &cache.root, &to));
    assert!(!err.contains("retrying") && started.elapsed() < Duration::from_secs(5), "{err}");
}

#[test]
fn a_missing_file_cache_says_no_such_directory() {
    let tmp = tempdir();
    let gone = tmp.path().join("gone");
    let app = narwhal_testkit::isolate::deploy_fixture("app");
    let err = fails(narwhal().arg("missing").arg(&app).arg("--in").arg(&gone));
    assert!(err.contains(&format!("no such directory {}", gone.display())), "{err}");
    let cache = Cache::new(&["app"], "zstd");
    let err = fails(&mut fetch_cmd(&file_url(&gone, ""), &cache.public_key, &cache.root, &tmp.path().join("to")));
    assert!(err.contains("no such directory") && !err.contains("push"), "{err}");
}

#[test]
fn slug_checks_what_it_can_before_downloading() {
    let cache = Cache::new(&["app"], "zstd");
    let server = HttpServer::start(&cache.dir, &[]);
    let tmp = tempdir();
    let app = tmp.path().join("app");
    std::fs::create_dir_all(app.join("result")).unwrap();
    let slug = |app: &std::path::Path| {
        let mut c = narwhal();
        c.arg("slug").arg(&cache.root).args(["--from", &server.url(), "--trusted-public-key", &cache.public_key]);
        c.arg("--app-dir").arg(app).env("NARWHAL_NO_PROGRESS", "1");
        c
    };
    let err = fails(&mut slug(&app));
    assert!(err.contains("result exists and is not a symlink"), "{err}");
    std::fs::remove_dir(app.join("result")).unwrap();
    std::fs::write(app.join(".slugexclude"), "? bogus\n").unwrap();
    let err = fails(&mut slug(&app));
    assert!(err.contains(".slugexclude"), "{err}");
    assert_eq!(server.nar_downloads(), 0, "a check that could fail first ran after a download");
    std::fs::remove_file(app.join(".slugexclude")).unwrap();
    ok(&mut slug(&app));
    assert!(server.nar_downloads() > 0);
}
