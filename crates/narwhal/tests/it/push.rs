//! `narwhal push`, `missing` and `pin` against real Nix as the reader.

use std::path::{Path, PathBuf};

use narwhal_formats::narinfo::NarInfo;
use narwhal_formats::store_path::StoreDir;
use narwhal_testkit::http::HttpServer;
use narwhal_testkit::isolate::deploy_fixture;
use narwhal_testkit::{
    closure, file_url, files_with_suffix, fixture, nix, nix_copy_from, nix_dump, run, run_text, tempdir,
};

use crate::{fails, narwhal, ok};

fn keys(dir: &Path) -> (PathBuf, String) {
    crate::keys(dir, "push-test-1")
}

fn narinfo(cache: &Path, path: &Path) -> NarInfo {
    let hash = &path.file_name().unwrap().to_str().unwrap()[..32];
    NarInfo::parse(&std::fs::read_to_string(cache.join(format!("{hash}.narinfo"))).unwrap(), &StoreDir::default())
        .unwrap()
}

#[test]
fn nix_reads_what_narwhal_pushed() {
    let tmp = tempdir();
    let (sec, public) = keys(tmp.path());
    let app = deploy_fixture("app");
    // What Nix itself writes, for comparison.
    let reference = tmp.path().join("nix-cache");
    run(nix("nix").args(["copy", "--to", &file_url(&reference, "compression=none")]).arg(&app));
    for compression in ["zstd", "xz", "none"] {
        let cache = tmp.path().join(compression);
        let out = narwhal_testkit::output(
            narwhal()
                .arg("push")
                .arg(&app)
                .args(["--to", &file_url(&cache, ""), "--compression", compression, "--key-file"])
                .arg(&sec),
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read_to_string(cache.join("nix-cache-info")).unwrap(), "StoreDir: /nix/store\n");
        for p in closure(&app) {
            let ours = narinfo(&cache, &p);
            let theirs = narinfo(&reference, &p);
            assert_eq!(ours.compression(), compression);
            assert_eq!((ours.nar_hash, ours.nar_size), (theirs.nar_hash, theirs.nar_size), "{}", p.display());
            assert_eq!(ours.references(), theirs.references());
            assert_eq!(ours.deriver, theirs.deriver);
        }
        // Real Nix, signatures required, narwhal's key trusted.
        let root = tmp.path().join(format!("root-{compression}"));
        run(&mut nix_copy_from(&file_url(&cache, ""), &root, &public, &app));
        for p in closure(&app) {
            assert!(nix_dump(&root.join(p.strip_prefix("/").unwrap())) == nix_dump(&p), "{}", p.display());
        }
    }
}

/// A NAR over 48 MiB is compressed as multi-block xz on every core; xz and Nix read it back.
#[test]
fn a_large_nar_becomes_multi_block_xz_that_nix_reads() {
    let tmp = tempdir();
    let (sec, public) = keys(tmp.path());
    let big = fixture("big");
    let cache = tmp.path().join("cache");
    let to = file_url(&cache, "");
    ok(narwhal()
        .arg("push")
        .arg(&big)
        .args(["--to", &to, "--compression", "xz", "--level", "1", "--key-file"])
        .arg(&sec));
    let info = narinfo(&cache, &big);
    let list = run_text(std::process::Command::new("xz").args(["--list", "--robot"]).arg(cache.join(&info.url)));
    let blocks: u64 =
        list.lines().find_map(|l| l.strip_prefix("totals\t")).unwrap().split('\t').nth(1).unwrap().parse().unwrap();
    assert!(blocks > 1, "one xz block: {list}");
    let root = tmp.path().join("root");
    run(&mut nix_copy_from(&file_url(&cache, ""), &root, &public, &big));
    assert!(nix_dump(&root.join(big.strip_prefix("/").unwrap())) == nix_dump(&big));
}

#[test]
fn a_second_push_uploads_nothing_and_missing_agrees() {
    let tmp = tempdir();
    let (sec, _) = keys(tmp.path());
    let app = deploy_fixture("app");
    let cache = tmp.path().join("cache");
    let url = file_url(&cache, "");
    // Only the data path first.
    let data = deploy_fixture("data");
    ok(narwhal().arg("push").arg(&data).args(["--to", &url, "--key-file"]).arg(&sec));
    let missing = String::from_utf8(ok(narwhal().arg("missing").arg(&app).args(["--in", &url]))).unwrap();
    let mut expected: Vec<String> =
        closure(&app).into_iter().filter(|p| *p != data).map(|p| p.display().to_string()).collect();
    expected.sort();
    let mut got: Vec<String> = missing.lines().map(str::to_owned).collect();
    got.sort();
    assert_eq!(got, expected);

    let out = narwhal_testkit::output(narwhal().arg("push").arg(&app).args(["--to", &url, "--key-file"]).arg(&sec));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("5 uploaded, 1 already in"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every object as it was (the lock file records who last wrote the cache).
    let objects = |cache: &Path| -> Vec<_> {
        let entries = std::fs::read_dir(cache).unwrap().map(Result::unwrap);
        entries
            .filter(|e| e.file_name() != ".narwhal-lock")
            .map(|e| e.metadata().unwrap().modified().unwrap())
            .collect()
    };
    let before = objects(&cache);
    let out = narwhal_testkit::output(narwhal().arg("push").arg(&app).args(["--to", &url, "--key-file"]).arg(&sec));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("0 uploaded, 6 already in"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = objects(&cache);
    assert_eq!(before, after);
    assert!(ok(narwhal().arg("missing").arg(&app).args(["--in", &url])).is_empty());
}

#[test]
fn a_narinfo_never_appears_before_its_nar_and_references() {
    let tmp = tempdir();
    let (sec, _) = keys(tmp.path());
    let cache = tmp.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let big = fixture("big");
    let app = deploy_fixture("app");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (cache, done) = (cache.clone(), done.clone());
        std::thread::spawn(move || check_until(&cache, &done))
    };
    let push = |to: &Path| {
        let mut c = narwhal();
        c.arg("push")
            .arg(&app)
            .arg(&big)
            .args(["--to", &file_url(to, ""), "--compression", "xz", "--level", "1", "--key-file"])
            .arg(&sec);
        c
    };
    let out = narwhal_testkit::output(&mut push(&cache));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Killed mid-way (SIGKILL), then run again: it completes, and the reader never saw a broken closure.
    // Pushed from the first cache over HTTP (the same commit path and temporary files as a push from
    // the store), whose server sends half of the big NAR and then stalls: the push is killed there.
    let only = &narinfo(&cache, &big).url;
    let server = HttpServer::start(&cache, &["--stall", "1", "--only", only]);
    let cache2 = tmp.path().join("cache2");
    std::fs::create_dir_all(&cache2).unwrap();
    let watcher2 = {
        let (cache, done) = (cache2.clone(), std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)));
        let stop = done.clone();
        (std::thread::spawn(move || check_until(&cache, &done)), stop)
    };
    let copy = || {
        let mut c = narwhal();
        c.arg("push").arg(&app).arg(&big).args(["--from", &server.url(), "--to", &file_url(&cache2, ""), "--key-file"]);
        c.arg(&sec);
        c
    };
    let stalled = |s: &HttpServer| s.requests().iter().any(|r| r.ends_with(" 200-stalled"));
    let copying =
        |dir: &Path| crate::integrity::temp_names(dir).iter().any(|p| p.to_string_lossy().contains(".narwhal-copy-"));
    let child = crate::spawn_logged(&mut copy(), &tmp.path().join("killed.log"));
    crate::kill_when(child, || stalled(&server) && copying(&cache2), "the push");
    assert!(files_with_suffix(&cache2, ".narinfo").len() < 7, "the push finished before it was killed");
    // The killed push left the big NAR it was copying under a temporary name; the rerun removes it.
    assert!(copying(&cache2), "{:?}", crate::integrity::temp_names(&cache2));
    let out = narwhal_testkit::output(&mut copy());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(files_with_suffix(&cache2, ".narinfo").len(), 7);
    assert_eq!(crate::integrity::temp_names(&cache2), Vec::<PathBuf>::new());
    watcher2.1.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(watcher2.0.join().unwrap() > 1);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(watcher.join().unwrap() > 1);
}

/// Checks the commit invariant of the directory `cache` over and over until `done`; returns how many
/// passes it made.
fn check_until(cache: &Path, done: &std::sync::atomic::AtomicBool) -> usize {
    let narinfos = || {
        let files = files_with_suffix(cache, ".narinfo");
        files.iter().filter_map(|f| std::fs::read_to_string(f).ok()).collect()
    };
    watch_commits(narinfos, |key| cache.join(key).is_file(), done)
}

/// The commit invariant, checked over and over until `done`: every narinfo that `narinfos` returns
/// has its NAR and its references' narinfos (`has(key)`). Returns how many passes it made.
fn watch_commits(
    narinfos: impl Fn() -> Vec<String>,
    has: impl Fn(&str) -> bool,
    done: &std::sync::atomic::AtomicBool,
) -> usize {
    let mut checks = 0;
    while !done.load(std::sync::atomic::Ordering::Relaxed) || checks == 0 {
        for text in narinfos() {
            let info = NarInfo::parse(&text, &StoreDir::default()).expect("a narinfo is never seen half-written");
            assert!(has(&info.url), "{} before its NAR", info.path);
            for r in info.references() {
                assert!(has(&format!("{}.narinfo", r.hash_part())), "{} before {r}", info.path);
            }
        }
        checks += 1;
    }
    checks
}

/// The same against S3 (Garage): a push killed mid-way (SIGKILL) and run again completes, and a
/// reader listing the bucket alongside never sees a narinfo before its NAR or its references.
#[test]
fn a_push_to_s3_killed_mid_way_completes_on_rerun_and_never_shows_a_broken_closure() {
    use narwhal_store::s3::{S3Cache, S3Config};
    use narwhal_store::{BinaryCache as _, CacheWriter as _};
    use narwhal_testkit::garage::Garage;
    let garage = Garage::start();
    let bucket = garage.create_bucket("killed");
    let tmp = tempdir();
    let (sec, _) = keys(tmp.path());
    let (big, app) = (fixture("big"), deploy_fixture("app"));
    let s3 = garage.s3_url(&bucket.name);
    // Pushed from a cache over HTTP whose server sends half of the big NAR and then stalls, so the
    // push is killed at a point it cannot pass by itself.
    let source = tmp.path().join("source");
    ok(narwhal()
        .arg("push")
        .arg(&app)
        .arg(&big)
        .args(["--to", &file_url(&source, ""), "--compression", "xz"])
        .args(["--level", "1", "--key-file"])
        .arg(&sec));
    let server = HttpServer::start(&source, &["--stall", "1", "--only", &narinfo(&source, &big).url]);
    let push = || {
        let mut c = narwhal();
        c.arg("push").arg(&app).arg(&big).args(["--from", &server.url()]);
        c.args(["--to", &s3, "--key-file"]).arg(&sec);
        c.env("AWS_ACCESS_KEY_ID", &bucket.key_id).env("AWS_SECRET_ACCESS_KEY", &bucket.secret);
        c
    };
    // A reader with the same credentials, through narwhal's S3 client.
    let creds = |name: &str| match name {
        "AWS_ACCESS_KEY_ID" => Some(bucket.key_id.clone()),
        "AWS_SECRET_ACCESS_KEY" => Some(bucket.secret.clone()),
        _ => None,
    };
    let config = S3Config::from_url_and_env(&narwhal_store::CacheUrl::parse(&s3).unwrap(), creds).unwrap();
    let reader = S3Cache::new(config, &narwhal_store::http::HttpOptions::default()).unwrap();
    // The narinfos that can appear: the two closures'.
    let mut paths = closure(&app);
    paths.extend(closure(&big));
    let keys: Vec<String> =
        paths.iter().map(|p| format!("{}.narinfo", &p.file_name().unwrap().to_str().unwrap()[..32])).collect();
    let narinfos = || keys.iter().filter(|k| reader.exists(k).unwrap()).count();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let texts = || {
                let found = keys.iter().filter_map(|k| reader.get(k).unwrap());
                found.map(|b| String::from_utf8(b).unwrap()).collect()
            };
            watch_commits(texts, |key| reader.exists(key).unwrap(), &done)
        });
        let child = crate::spawn_logged(&mut push(), &tmp.path().join("killed.log"));
        let stalled = || server.requests().iter().any(|r| r.ends_with(" 200-stalled"));
        crate::kill_when(child, || stalled() && narinfos() > 0, "the push");
        assert!(narinfos() < 7, "the push finished before it was killed");
        let out = narwhal_testkit::output(&mut push());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(narinfos(), 7);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(watcher.join().unwrap() > 1);
    });
}

#[test]
fn post_build_hook_pins_and_errors() {
    let tmp = tempdir();
    let (sec, public) = keys(tmp.path());
    let cache = tmp.path().join("cache");
    let url = file_url(&cache, "");
    let app = deploy_fixture("app");
    // As a post-build-hook: OUT_PATHS, the key in the URL as Nix's secret-key parameter.
    let hook_url = file_url(&cache, &format!("secret-key={}", sec.display()));
    ok(narwhal().args(["push", "--to", &hook_url]).env("OUT_PATHS", app.to_str().unwrap()));
    assert_eq!(files_with_suffix(&cache, ".narinfo").len(), 6);

    // A pin must point at a path in the cache.
    let other = fixture("executable");
    let err = fails(narwhal().args(["pin", "web"]).arg(&other).args(["--to", &url]));
    assert!(err.contains("is not in") && err.contains("push it first"), "{err}");
    ok(narwhal().args(["pin", "web"]).arg(&app).args(["--to", &url, "--rev", "abc123"]));
    // The deploy side reads it.
    let dest = tmp.path().join("deploy");
    let out = run_text(
        narwhal().args(["fetch", "pin:web@abc123", "--from", &url, "--trusted-public-key", &public, "--to"]).arg(&dest),
    );
    assert!(out.ends_with(app.file_name().unwrap().to_str().unwrap()), "{out}");

    // Revision pins pile up; --keep 2 keeps the newest two, and `pins` lists them. (Created is in
    // seconds; within one second the keys decide, r3 > r2 > r1, the same order: the ordering by
    // Created itself is tested in narwhal-store.)
    for rev in ["r1", "r2", "r3"] {
        ok(narwhal().args(["pin", "web"]).arg(&app).args(["--to", &url, "--rev", rev, "--keep", "2"]));
    }
    let listed = String::from_utf8(ok(narwhal().args(["pins", "web", "--from", &url]))).unwrap();
    let names: Vec<&str> = listed.lines().map(|l| l.split('\t').next().unwrap()).collect();
    assert_eq!(names, ["web", "web@r2", "web@r3"], "{listed}");
    assert!(listed.lines().all(|l| l.contains(app.to_str().unwrap())), "{listed}");

    // A key file in the wrong format.
    let bad = tmp.path().join("bad.sec");
    std::fs::write(&bad, "not a key").unwrap();
    let err = fails(narwhal().arg("push").arg(&app).args(["--to", &url, "--key-file"]).arg(&bad));
    assert!(err.contains("bad.sec") && err.contains("hint: key files hold"), "{err}");
    // Not a store path in the local store.
    let err = fails(narwhal().args(["push", "/nix/store/00000000000000000000000000000000-nope", "--to", &url]));
    assert!(err.contains("not a valid path in the local Nix store"), "{err}");
}

#[test]
fn push_to_s3_then_real_nix_reads_the_bucket_over_http() {
    use narwhal_testkit::garage::Garage;
    let garage = Garage::start();
    let bucket = garage.create_bucket("nixcache");
    garage.allow_website(&bucket.name);
    let tmp = tempdir();
    let (sec, public) = keys(tmp.path());
    let app = deploy_fixture("app");
    let s3 = garage.s3_url(&bucket.name);
    let aws = |c: &mut std::process::Command| {
        c.env("AWS_ACCESS_KEY_ID", &bucket.key_id).env("AWS_SECRET_ACCESS_KEY", &bucket.secret);
    };
    let mut cmd = narwhal();
    cmd.arg("push").arg(&app).args(["--to", &s3, "--key-file"]).arg(&sec);
    aws(&mut cmd);
    let out = narwhal_testkit::output(&mut cmd);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("6 uploaded"), "{}", String::from_utf8_lossy(&out.stderr));

    // Real Nix reads the bucket through Garage's website endpoint: a plain HTTP cache. The bucket is
    // chosen by the Host header, so curl reaches the web port as a proxy for http://nixcache.web.garage.
    let root = tmp.path().join("root");
    // Nix remembers narinfos per cache URL, and this URL is the same in every run: nix_copy_from turns that off.
    let out = narwhal_testkit::output(
        nix_copy_from(&format!("http://{}", Garage::web_host(&bucket.name)), &root, &public, &app)
            .env("http_proxy", format!("http://{}", garage.web_addr())),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for p in closure(&app) {
        assert!(nix_dump(&root.join(p.strip_prefix("/").unwrap())) == nix_dump(&p), "{}", p.display());
    }

    // The deploy side reads S3 directly too; a second push uploads nothing.
    let mut cmd = narwhal();
    cmd.arg("fetch")
        .arg(&app)
        .args(["--from", &s3, "--trusted-public-key", &public, "--to"])
        .arg(tmp.path().join("dest"));
    aws(&mut cmd);
    ok(&mut cmd);
    let mut cmd = narwhal();
    cmd.arg("push").arg(&app).args(["--to", &s3, "--key-file"]).arg(&sec);
    aws(&mut cmd);
    let out = narwhal_testkit::output(&mut cmd);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("0 uploaded, 6 already in"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Pins live in the bucket too.
    let mut cmd = narwhal();
    cmd.args(["pin", "web"]).arg(&app).args(["--to", &s3, "--rev", "abc"]);
    aws(&mut cmd);
    ok(&mut cmd);
    let mut cmd = narwhal();
    cmd.args(["pins", "--from", &s3]);
    aws(&mut cmd);
    let listed = String::from_utf8(ok(&mut cmd)).unwrap();
    assert_eq!(listed.lines().count(), 2, "{listed}");

    // Wrong credentials, a missing bucket, an unreachable endpoint: one line, a hint, exit 1.
    let mut cmd = narwhal();
    cmd.arg("push")
        .arg(&app)
        .args(["--to", &s3])
        .env("AWS_ACCESS_KEY_ID", &bucket.key_id)
        .env("AWS_SECRET_ACCESS_KEY", "wrong");
    let err = fails(&mut cmd);
    assert!(err.contains("HTTP 403") && err.contains("hint: "), "{err}");
    let mut cmd = narwhal();
    cmd.arg("push").arg(&app).args(["--to", &garage.s3_url("no-such-bucket")]);
    aws(&mut cmd);
    let err = fails(&mut cmd);
    assert!(err.contains("no-such-bucket"), "{err}");
    let mut cmd = narwhal();
    cmd.arg("push").arg(&app).args(["--to", "s3://nixcache?endpoint=http://127.0.0.1:9&region=garage"]);
    aws(&mut cmd);
    let err = fails(&mut cmd);
    assert!(err.contains("cannot reach the server"), "{err}");
}

#[test]
fn export_and_import_interoperate_with_nix_store() {
    let tmp = tempdir();
    let (sec, public) = keys(tmp.path());
    let app = deploy_fixture("app");
    // narwhal export -> nix-store --import.
    let ours = tmp.path().join("ours.export");
    let out = narwhal_testkit::output(narwhal().arg("export").arg(&app).stdout(std::fs::File::create(&ours).unwrap()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let root = tmp.path().join("root");
    run(nix("nix-store").arg("--store").arg(&root).arg("--import").stdin(std::fs::File::open(&ours).unwrap()));
    for p in closure(&app) {
        let hash = |store: Option<&Path>| {
            let mut c = nix("nix-store");
            if let Some(s) = store {
                c.arg("--store").arg(s);
            }
            run_text(c.args(["-q", "--hash"]).arg(&p))
        };
        assert_eq!(hash(Some(&root)), hash(None), "{}", p.display());
    }

    // nix-store --export -> narwhal import -> real Nix reads the cache.
    let theirs = tmp.path().join("theirs.export");
    std::fs::write(&theirs, run(nix("nix-store").arg("--export").args(closure(&app)))).unwrap();
    let cache = tmp.path().join("cache");
    ok(narwhal()
        .arg("import")
        .arg(&theirs)
        .args(["--to", &file_url(&cache, "compression=xz"), "--key-file"])
        .arg(&sec));
    let root2 = tmp.path().join("root2");
    run(&mut nix_copy_from(&file_url(&cache, ""), &root2, &public, &app));
    assert!(nix_dump(&root2.join(app.strip_prefix("/").unwrap())) == nix_dump(&app));

    // An export without the references, into an empty cache: refused, the root's narinfo never written.
    let partial = tmp.path().join("partial.export");
    std::fs::write(&partial, run(nix("nix-store").arg("--export").arg(&app))).unwrap();
    let empty = tmp.path().join("empty");
    let err = fails(narwhal().arg("import").arg(&partial).args(["--to", &file_url(&empty, "")]));
    assert!(err.contains("but not its reference"), "{err}");
    assert!(files_with_suffix(&empty, ".narinfo").is_empty());
}
