//! Several writers, killed writers, and writes that must stay inside their
//! destination: fetch directories, slugs, download caches and directory caches.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use narwhal_formats::narinfo::NarInfo;
use narwhal_formats::store_path::StoreDir;
use narwhal_testkit::http::HttpServer;
use narwhal_testkit::isolate::deploy_fixture;
use narwhal_testkit::{closure, file_url, files_with_suffix, nix_copy_from, tempdir};

use crate::fetch::{fetch_cmd, store_entries, Cache};
use crate::{eventually, fails, kill_when, narwhal, ok, spawn_logged};

fn held(server: &HttpServer) -> usize {
    server.requests().iter().filter(|r| r.ends_with(" held")).count()
}

/// Names anywhere under `dir` that are narwhal's temporary names.
pub fn temp_names(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.map(Result::unwrap) {
            if narwhal_formats::temp::is_temp(&e.file_name()) {
                found.push(e.path());
            } else if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            }
        }
    }
    found
}

/// The manifest lists exactly the trees in `dest`, each with the NAR hash it has on disk.
fn assert_manifest_is_the_trees(dest: &Path) {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dest.join(".narwhal/manifest.json")).unwrap()).unwrap();
    let listed: Vec<String> = manifest["paths"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(store_entries(dest), listed, "the manifest and the directory disagree");
    for (name, entry) in manifest["paths"].as_object().unwrap() {
        let on_disk = String::from_utf8(ok(narwhal().args(["hash", "path", "--base32"]).arg(dest.join(name)))).unwrap();
        assert_eq!(entry["relocatedNarHash"].as_str().unwrap(), format!("sha256:{}", on_disk.trim()), "{name}");
    }
}

/// The largest NAR of a cache, as the URL its narinfo names.
fn largest_nar(cache: &Path) -> String {
    let infos = files_with_suffix(cache, ".narinfo");
    let parsed = infos.iter().map(|f| NarInfo::parse(&std::fs::read_to_string(f).unwrap(), &StoreDir::default()));
    parsed.map(Result::unwrap).max_by_key(|i| i.nar_size).unwrap().url
}

/// Four fetches of one closure into one directory (and one download cache):
/// the first holds the directory while the server holds its NARs, the others
/// wait for it saying who holds it (a fifth, told not to wait, fails naming
/// it), then all four succeed and the manifest lists exactly the trees.
#[test]
fn concurrent_fetches_into_one_directory_all_succeed() {
    let cache = Cache::new(&["app"], "zstd");
    let tmp = tempdir();
    let hold = tmp.path().join("hold");
    std::fs::write(&hold, "").unwrap();
    let server = HttpServer::start(&cache.dir, &["--hold", hold.to_str().unwrap()]);
    let dest = tmp.path().join("store");
    let downloads = tmp.path().join("downloads");
    let fetch = || {
        let mut c = fetch_cmd(&server.url(), &cache.public_key, &cache.root, &dest);
        c.args(["--prefix", "/app/store", "--cache-dir"]).arg(&downloads);
        c
    };
    let logs: Vec<PathBuf> = (0..4).map(|i| tmp.path().join(format!("fetch-{i}.log"))).collect();
    let first = spawn_logged(&mut fetch(), &logs[0]);
    assert!(eventually(|| held(&server) > 0), "the first fetch never asked for a NAR: {:?}", server.requests());
    let holder = format!("process {} (narwhal fetch)", first.id());
    let mut children = vec![first];
    for log in &logs[1..] {
        children.push(spawn_logged(&mut fetch(), log));
    }
    for log in &logs[1..] {
        let says = |log: &Path| std::fs::read_to_string(log).unwrap_or_default();
        assert!(eventually(|| says(log).contains("waiting for")), "{}", says(log));
        assert!(says(log).contains(&holder), "{}", says(log));
    }
    let err = fails(fetch().env("NARWHAL_LOCK_WAIT", "0"));
    assert!(err.contains(&format!("{} is in use by {holder}", dest.display())), "{err}");
    assert_eq!(server.nar_downloads(), 0, "only the first fetch asks for NARs, and it is held");

    std::fs::remove_file(&hold).unwrap();
    for (mut child, log) in children.into_iter().zip(&logs) {
        assert!(child.wait().unwrap().success(), "{}", std::fs::read_to_string(log).unwrap());
    }
    assert_eq!(server.nar_downloads(), 6, "the others found every path present: {:?}", server.requests());
    assert_eq!(store_entries(&dest).len(), 6);
    assert_manifest_is_the_trees(&dest);
    assert_eq!(temp_names(tmp.path()), Vec::<PathBuf>::new());
}

/// Entries of the download cache (complete ones: not temporary).
fn cached_nars(downloads: &Path) -> usize {
    std::fs::read_dir(downloads.join("nar-v1"))
        .map_or(0, |d| d.map(Result::unwrap).filter(|e| !narwhal_formats::temp::is_temp(&e.file_name())).count())
}

/// A fetch killed (SIGKILL) while every path but the largest is unpacked and
/// waits under its temporary name leaves those names behind; the next fetch
/// removes them and completes, and the manifest lists exactly the trees.
#[test]
fn a_killed_fetch_is_completed_by_the_next_one() {
    let cache = Cache::new(&["app"], "zstd");
    let tmp = tempdir();
    let hold = tmp.path().join("hold");
    std::fs::write(&hold, "").unwrap();
    let only = largest_nar(&cache.dir);
    let server = HttpServer::start(&cache.dir, &["--hold", hold.to_str().unwrap(), "--only", &only]);
    let dest = tmp.path().join("store");
    let downloads = tmp.path().join("downloads");
    let fetch = |url: &str| {
        let mut c = fetch_cmd(url, &cache.public_key, &cache.root, &dest);
        c.args(["--prefix", "/app/store", "--jobs", "6", "--cache-dir"]).arg(&downloads);
        c
    };
    let child = spawn_logged(&mut fetch(&server.url()), &tmp.path().join("killed.log"));
    kill_when(child, || held(&server) == 1 && cached_nars(&downloads) == 5, "the fetch");
    let left = temp_names(&dest);
    assert_eq!(left.len(), 5, "the five unpacked paths wait under temporary names: {left:?}");
    assert!(store_entries(&dest).iter().all(|n| n.starts_with('.')), "nothing under a final name before the end");

    std::fs::remove_file(&hold).unwrap();
    let out = narwhal_testkit::output(&mut fetch(&server.url()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(temp_names(tmp.path()), Vec::<PathBuf>::new());
    assert_eq!(store_entries(&dest).len(), 6);
    assert_manifest_is_the_trees(&dest);
}

/// The same for a slug: the size report names no temporary tree, and none is left to ship.
#[test]
fn a_killed_slug_is_completed_by_the_next_one_and_reports_no_leftovers() {
    let cache = Cache::new(&["app"], "zstd");
    let tmp = tempdir();
    let hold = tmp.path().join("hold");
    std::fs::write(&hold, "").unwrap();
    let only = largest_nar(&cache.dir);
    let server = HttpServer::start(&cache.dir, &["--hold", hold.to_str().unwrap(), "--only", &only]);
    let app = tmp.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    let downloads = tmp.path().join("downloads");
    let slug = || {
        let mut c = narwhal();
        c.arg("slug").arg(&cache.root);
        c.args(["--from", &server.url(), "--trusted-public-key", &cache.public_key, "--jobs", "6", "--app-dir"]);
        c.arg(&app).arg("--cache-dir").arg(&downloads).env("NARWHAL_NO_PROGRESS", "1");
        c
    };
    let child = spawn_logged(&mut slug(), &tmp.path().join("killed.log"));
    kill_when(child, || held(&server) == 1 && cached_nars(&downloads) == 5, "the slug");
    assert_eq!(temp_names(&app.join("store")).len(), 5);

    std::fs::remove_file(&hold).unwrap();
    let out = narwhal_testkit::output(&mut slug());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: Vec<&str> = stderr
        .lines()
        .skip_while(|l| !l.starts_with("store paths by size"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert_eq!(report.len(), 6, "six store paths (the manifest directory counts in the total, unlisted):\n{stderr}");
    assert!(report.iter().all(|l| !l.contains(".tmp-")), "{stderr}");
    assert_eq!(temp_names(tmp.path()), Vec::<PathBuf>::new());
    assert_manifest_is_the_trees(&app.join("store"));
}

/// A tree the manifest does not list (a fetch killed by an older narwhal
/// between renaming and recording) is checked against the NAR hash the
/// fetch computes: kept and recorded when it is the same tree, refused when
/// it is not (and then not recorded).
#[test]
fn a_tree_missing_from_the_manifest_is_checked_not_refused() {
    let cache = Cache::new(&["app"], "zstd");
    let tmp = tempdir();
    let from = file_url(&cache.dir, "");
    let dest = tmp.path().join("store");
    let fetch = || fetch_cmd(&from, &cache.public_key, &cache.root, &dest);
    ok(fetch().args(["--prefix", "/app/store"]));
    let manifest_path = dest.join(".narwhal/manifest.json");
    let forget = |base: &str| {
        let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
        assert!(m["paths"].as_object_mut().unwrap().remove(base).is_some());
        std::fs::write(&manifest_path, serde_json::to_vec(&m).unwrap()).unwrap();
    };
    let base = cache.root.file_name().unwrap().to_str().unwrap().to_owned();
    forget(&base);
    ok(fetch().args(["--prefix", "/app/store"]));
    assert_manifest_is_the_trees(&dest);

    forget(&base);
    std::fs::write(dest.join(&base).join("intruder"), "not from the cache").unwrap();
    let err = fails(fetch().args(["--prefix", "/app/store"]));
    assert!(err.contains(&format!("{} already exists, is not in the manifest", dest.join(&base).display())), "{err}");
    let m = std::fs::read_to_string(&manifest_path).unwrap();
    assert!(!m.contains(&base), "the foreign tree was recorded: {m}");
    assert!(dest.join(&base).join("intruder").exists(), "narwhal removed a tree it did not write");
    assert_eq!(temp_names(&dest), Vec::<PathBuf>::new());
}

/// Four pushes of overlapping closures into one directory cache at once all
/// succeed; every narinfo has its NAR and its references, Nix reads both
/// closures with signatures required, and no temporary name is left.
#[test]
fn concurrent_pushes_into_one_directory_cache_all_succeed() {
    let tmp = tempdir();
    let (sec, public) = (tmp.path().join("push.sec"), tmp.path().join("push.pub"));
    ok(narwhal().args(["key", "generate", "push-test-1", "--secret"]).arg(&sec).arg("--public").arg(&public));
    let public = std::fs::read_to_string(public).unwrap();
    let (app, v2) = (deploy_fixture("app"), deploy_fixture("app-v2"));
    let cache = tmp.path().join("cache");
    let err =
        fails(narwhal().arg("push").arg(&app).args(["--to", &file_url(&cache, "")]).env("NARWHAL_LOCK_WAIT", "soon"));
    assert!(err.contains("NARWHAL_LOCK_WAIT=\"soon\" is not a number of seconds"), "{err}");
    assert!(!cache.exists(), "a refused push created the cache");
    let roots: [&[&Path]; 4] = [&[&app], &[&v2], &[&app, &v2], &[&v2, &app]];
    let children: Vec<(Child, PathBuf)> = roots
        .iter()
        .enumerate()
        .map(|(i, paths)| {
            let log = tmp.path().join(format!("push-{i}.log"));
            let mut c = narwhal();
            c.arg("push").args(*paths).args(["--to", &file_url(&cache, ""), "--jobs", "2", "--key-file"]).arg(&sec);
            c.env("NARWHAL_NO_PROGRESS", "1");
            (spawn_logged(&mut c, &log), log)
        })
        .collect();
    for (mut child, log) in children {
        assert!(child.wait().unwrap().success(), "{}", std::fs::read_to_string(log).unwrap());
    }
    let narinfos = files_with_suffix(&cache, ".narinfo");
    let mut expected: Vec<PathBuf> = closure(&app).into_iter().chain(closure(&v2)).collect();
    expected.sort();
    expected.dedup();
    assert_eq!(narinfos.len(), expected.len());
    for f in &narinfos {
        let info = NarInfo::parse(&std::fs::read_to_string(f).unwrap(), &StoreDir::default()).unwrap();
        assert!(cache.join(&info.url).is_file(), "{} has no NAR", info.path);
        for r in info.references() {
            assert!(cache.join(format!("{}.narinfo", r.hash_part())).is_file(), "{} lacks {r}", info.path);
        }
    }
    for root in [&app, &v2] {
        let into = tmp.path().join(format!("nix-{}", root.file_name().unwrap().to_str().unwrap()));
        narwhal_testkit::run(&mut nix_copy_from(&file_url(&cache, ""), &into, &public, root));
    }
    assert_eq!(temp_names(&cache), Vec::<PathBuf>::new());
}

/// Four `narwhal push` runs of overlapping closures (app, app-v2, both, both the other way round)
/// into `to` at once, each with `env`; all must succeed.
fn four_pushes_at_once(to: &str, sec: &Path, env: &[(&str, &str)], logs: &Path) {
    let (app, v2) = (deploy_fixture("app"), deploy_fixture("app-v2"));
    let roots: [&[&Path]; 4] = [&[&app], &[&v2], &[&app, &v2], &[&v2, &app]];
    let children: Vec<(Child, PathBuf)> = roots
        .iter()
        .enumerate()
        .map(|(i, paths)| {
            let log = logs.join(format!("push-{i}.log"));
            let mut c = narwhal();
            c.arg("push").args(*paths).args(["--to", to, "--jobs", "2", "--key-file"]).arg(sec);
            c.env("NARWHAL_NO_PROGRESS", "1").envs(env.iter().copied());
            (spawn_logged(&mut c, &log), log)
        })
        .collect();
    for (mut child, log) in children {
        assert!(child.wait().unwrap().success(), "{}", std::fs::read_to_string(log).unwrap());
    }
}

/// After concurrent pushes into `to`: nothing is missing for either closure, a further push uploads
/// nothing (narwhal runs with `env`), and real Nix (through `read_url` with `nix_env`, signatures
/// required) copies both closures.
fn assert_complete(
    to: &str,
    env: &[(&str, &str)],
    read_url: &str,
    nix_env: &[(&str, &str)],
    sec: &Path,
    public: &str,
    tmp: &Path,
) {
    let read_env = env;
    let (app, v2) = (deploy_fixture("app"), deploy_fixture("app-v2"));
    for root in [&app, &v2] {
        let mut cmd = narwhal();
        cmd.arg("missing").arg(root).args(["--in", to]).envs(read_env.iter().copied());
        assert_eq!(String::from_utf8(ok(&mut cmd)).unwrap(), "", "{} is incomplete", root.display());
    }
    let mut again = narwhal();
    again.arg("push").arg(&app).arg(&v2).args(["--to", to, "--key-file"]).arg(sec).envs(read_env.iter().copied());
    let out = narwhal_testkit::output(&mut again);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("0 uploaded"), "{stderr}");
    for root in [&app, &v2] {
        let into = tmp.join(format!("nix-{}", root.file_name().unwrap().to_str().unwrap()));
        let mut copy = nix_copy_from(read_url, &into, public, root);
        narwhal_testkit::run(copy.envs(nix_env.iter().copied()));
    }
}

#[test]
fn concurrent_pushes_into_one_garage_bucket_all_succeed() {
    use narwhal_testkit::garage::Garage;
    let garage = Garage::start();
    let bucket = garage.create_bucket("concurrent");
    garage.allow_website(&bucket.name);
    let tmp = tempdir();
    let (sec, public) = (tmp.path().join("push.sec"), tmp.path().join("push.pub"));
    ok(narwhal().args(["key", "generate", "push-test-1", "--secret"]).arg(&sec).arg("--public").arg(&public));
    let public = std::fs::read_to_string(public).unwrap();
    let s3 = garage.s3_url(&bucket.name);
    let aws = [("AWS_ACCESS_KEY_ID", bucket.key_id.as_str()), ("AWS_SECRET_ACCESS_KEY", bucket.secret.as_str())];
    four_pushes_at_once(&s3, &sec, &aws, tmp.path());
    // Nix reads the bucket over Garage's website endpoint, a plain HTTP cache chosen by Host.
    let proxy = format!("http://{}", garage.web_addr());
    let web = format!("http://{}", Garage::web_host(&bucket.name));
    assert_complete(&s3, &aws, &web, &[("http_proxy", &proxy)], &sec, &public, tmp.path());
}

#[test]
fn concurrent_pushes_through_the_server_all_succeed() {
    let tmp = tempdir();
    let (sec, public) = (tmp.path().join("push.sec"), tmp.path().join("push.pub"));
    ok(narwhal().args(["key", "generate", "push-test-1", "--secret"]).arg(&sec).arg("--public").arg(&public));
    let public = std::fs::read_to_string(public).unwrap();
    let cache = tmp.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let token = "push-0123456789abcdef-concurrent";
    let tokens = tmp.path().join("push-tokens");
    std::fs::write(&tokens, format!("{token}\n")).unwrap();
    let server = crate::serve::Server::start(
        &["--store", cache.to_str().unwrap(), "--push-token-file", tokens.to_str().unwrap()],
        &[],
    );
    // Four pushers race on the same narinfo PUTs; the server's commit rule orders them.
    let env = [("NARWHAL_PUSH_TOKEN", token)];
    four_pushes_at_once(&server.url(), &sec, &env, tmp.path());
    assert_complete(&server.url(), &env, &server.url(), &[], &sec, &public, tmp.path());
    for f in files_with_suffix(&cache, ".narinfo") {
        let info = NarInfo::parse(&std::fs::read_to_string(&f).unwrap(), &StoreDir::default()).unwrap();
        assert!(cache.join(&info.url).is_file(), "{} has no NAR", info.path);
    }
    assert_eq!(temp_names(&cache), Vec::<PathBuf>::new());
}

/// Every entry under `dir` (recursively), for "nothing was written" checks.
fn everything_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().map(Result::unwrap) {
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            }
            found.push(e.path());
        }
    }
    found.sort();
    found
}

/// A symlink in the app directory where narwhal writes (`store`, `.profile.d`,
/// `.narwhal`, a `result` link it did not make) is refused before anything is
/// written, so nothing lands where it points.
#[test]
fn slug_refuses_symlinks_it_would_write_through() {
    let cache = Cache::new(&["app"], "zstd");
    let tmp = tempdir();
    let from = file_url(&cache.dir, "");
    for name in ["store", ".profile.d", ".narwhal", "result", "result-2"] {
        let app = tmp.path().join(format!("app-{name}"));
        let outside = tmp.path().join(format!("outside-{name}"));
        std::fs::create_dir_all(&app).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, app.join(name)).unwrap();
        let err = fails(
            narwhal()
                .arg("slug")
                .arg(&cache.root)
                .args(["--from", &from, "--trusted-public-key", &cache.public_key, "--app-dir"])
                .arg(&app),
        );
        assert!(err.contains(&format!("{} is a symlink", app.join(name).display())), "{err}");
        assert_eq!(everything_under(&outside), Vec::<PathBuf>::new(), "{name}: written through the symlink");
        assert_eq!(everything_under(&app), vec![app.join(name)], "{name}: the app directory was written");
    }
}

/// `fetch --to` a system directory is refused, however it is spelt, before anything is written.
#[test]
fn fetch_refuses_system_directories() {
    let cache = Cache::new(&["app"], "zstd");
    let from = file_url(&cache.dir, "");
    for dest in ["/", "/usr", "/etc", "/bin", "/home", "/usr/../etc/", "/tmp/../usr/local"] {
        let err = fails(&mut fetch_cmd(&from, &cache.public_key, &cache.root, Path::new(dest)));
        assert!(err.contains(&format!("{dest} is a system directory")), "{err}");
        assert!(!Path::new(dest).join(".narwhal").exists(), "{dest}");
    }
}

/// A prefix must be absolute, normalised and free of what a shebang line or
/// a shell would split: refused before the destination is created.
#[test]
fn prefixes_a_shebang_or_shell_would_split_are_refused() {
    let cache = Cache::new(&["app"], "zstd");
    let tmp = tempdir();
    let from = file_url(&cache.dir, "");
    let dest = tmp.path().join("store");
    for prefix in
        ["/a b c d e", "/app//tore", "/app/./sto", "/app/../st", "/app:store", "/app$(id)", "app/store1", "/a\tb"]
    {
        let err = fails(fetch_cmd(&from, &cache.public_key, &cache.root, &dest).args(["--prefix", prefix, "--pad"]));
        assert!(err.contains(&format!("{prefix:?} must be an absolute, normalised path")), "{err}");
        assert!(!dest.exists(), "{prefix}: the destination was created");
    }
    let err = fails(
        narwhal()
            .arg("slug")
            .arg(&cache.root)
            .args(["--from", &from, "--trusted-public-key", &cache.public_key, "--runtime-root", "/my app"])
            .arg("--app-dir")
            .arg(tmp.path()),
    );
    assert!(err.contains("--runtime-root \"/my app\" must be an absolute, normalised path"), "{err}");
    assert_eq!(everything_under(tmp.path()), Vec::<PathBuf>::new());
}

/// `narwhal serve` writes content-addressed: a NAR goes in only under its
/// FileHash and is never replaced, a committed narinfo only takes more
/// (well-formed) signatures, files are served only from inside the cache
/// directory, and a private cache's metrics need a token.
#[test]
fn the_server_never_replaces_what_is_committed_nor_serves_outside_the_cache() {
    use crate::serve::{get, raw, Server};
    let tmp = tempdir();
    let data = deploy_fixture("data");
    let cache = tmp.path().join("cache");
    narwhal_testkit::run(
        narwhal_testkit::nix("nix").args(["copy", "--to", &file_url(&cache, "compression=xz")]).arg(&data),
    );
    let (push, read) = (tmp.path().join("push-tokens"), tmp.path().join("read-tokens"));
    let token = "push-0123456789abcdef-token";
    std::fs::write(&push, format!("{token}\n")).unwrap();
    std::fs::write(&read, "read-0123456789abcdef-token\n").unwrap();
    let server = Server::start(
        &["--store", cache.to_str().unwrap(), "--push-token-file", push.to_str().unwrap(), "--read-token-file"]
            .into_iter()
            .chain([read.to_str().unwrap()])
            .collect::<Vec<_>>(),
        &[],
    );
    let auth = format!("Authorization: Bearer {token}");
    let send = |method: &str, path: &str, body: &[u8]| {
        let head = format!("{method} {path} HTTP/1.1\nHost: cache\nContent-Length: {}\n{auth}", body.len());
        raw(server.addr, &head, body)
    };
    let hash = &data.file_name().unwrap().to_str().unwrap()[..32];
    let narinfo = std::fs::read_to_string(cache.join(format!("{hash}.narinfo"))).unwrap();
    let url = narinfo.lines().find_map(|l| l.strip_prefix("URL: ")).unwrap().to_owned();
    let nar = std::fs::read(cache.join(&url)).unwrap();
    let stored = || std::fs::read(cache.join(&url)).unwrap();
    let modified = || std::fs::metadata(cache.join(&url)).unwrap().modified().unwrap();
    let before = modified();

    // Junk over the committed NAR, and a NAR under another hash's name: refused, nothing written.
    let a = send("PUT", &format!("/{url}"), b"junk, not the NAR");
    assert_eq!(a.status, 400, "{}", a.text());
    assert!(a.text().contains("FileHash"), "{}", a.text());
    assert_eq!(stored(), nar);
    let other = format!("nar/{}.nar.xz", "1".repeat(52));
    let a = send("PUT", &format!("/{other}"), &nar);
    assert_eq!(a.status, 400, "{}", a.text());
    assert!(!cache.join(&other).exists());
    assert_eq!(send("PUT", "/nar/abc.nar.xz", &nar).status, 400, "a name that is not a FileHash");
    // The same bytes again: a no-op.
    assert_eq!(send("PUT", &format!("/{url}"), &nar).status, 204);
    assert_eq!((stored(), modified()), (nar.clone(), before));

    // Narinfos: the same one is a no-op, another one is refused, a malformed Sig is refused,
    // one that only adds a well-formed signature is stored.
    let path = format!("/{hash}.narinfo");
    assert_eq!(send("PUT", &path, narinfo.as_bytes()).status, 204);
    let other_fields = narinfo.replace(
        "Compression: xz",
        "Compression: xz\nCA: fixed:r:sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",
    );
    let a = send("PUT", &path, other_fields.as_bytes());
    assert_eq!(a.status, 409, "{}", a.text());
    let bad_sig = format!("{narinfo}Sig: cache-1:not-base64!\n");
    let a = send("PUT", &path, bad_sig.as_bytes());
    assert_eq!(a.status, 400, "{}", a.text());
    assert!(a.text().contains("invalid Sig"), "{}", a.text());
    let (sec, _) = (tmp.path().join("k.sec"), tmp.path().join("k.pub"));
    ok(narwhal()
        .args(["key", "generate", "extra-1", "--secret"])
        .arg(&sec)
        .arg("--public")
        .arg(tmp.path().join("k.pub")));
    let signed = tmp.path().join("signed.narinfo");
    std::fs::write(&signed, &narinfo).unwrap();
    ok(narwhal().args(["narinfo", "sign", "--key-file"]).arg(&sec).arg(&signed));
    let signed = std::fs::read_to_string(&signed).unwrap();
    assert!(signed.contains("Sig: extra-1:"), "{signed}");
    assert_eq!(send("PUT", &path, signed.as_bytes()).status, 204);
    assert_eq!(std::fs::read_to_string(cache.join(format!("{hash}.narinfo"))).unwrap(), signed);
    let a = send("PUT", &path, narinfo.as_bytes());
    assert_eq!(a.status, 409, "dropping a signature: {}", a.text());

    // A symlink in the cache directory pointing outside it is not followed.
    let outside = tmp.path().join("outside");
    std::fs::write(&outside, "a secret outside the cache\n").unwrap();
    std::os::unix::fs::symlink(&outside, cache.join(format!("nar/{}.nar.xz", "2".repeat(52)))).unwrap();
    std::os::unix::fs::symlink(&outside, cache.join(format!("{}.narinfo", "3".repeat(32)))).unwrap();
    for p in [format!("/nar/{}.nar.xz", "2".repeat(52)), format!("/{}.narinfo", "3".repeat(32))] {
        let a = raw(server.addr, &format!("GET {p} HTTP/1.1\nHost: cache\n{auth}"), b"");
        assert_eq!(a.status, 404, "{p}: {}", a.text());
        assert!(!a.text().contains("secret"), "{p}");
    }
    // A symlink that stays inside is served.
    std::os::unix::fs::symlink(
        Path::new(&url).file_name().unwrap(),
        cache.join(format!("nar/{}.nar.xz", "4".repeat(52))),
    )
    .unwrap();
    let a = raw(server.addr, &format!("GET /nar/{}.nar.xz HTTP/1.1\nHost: cache\n{auth}", "4".repeat(52)), b"");
    assert_eq!((a.status, a.body), (200, nar));

    // Metrics of a private cache need a token; health does not.
    assert_eq!(get(server.addr, "/metrics").status, 401);
    assert_eq!(get(server.addr, "/health").status, 200);
    let a = raw(server.addr, &format!("GET /metrics HTTP/1.1\nHost: cache\n{auth}"), b"");
    assert_eq!(a.status, 200, "{}", a.text());
}

/// `nar dump` of a FIFO or a device (or of a small tree holding one) fails
/// with nothing on standard output, not the start of an archive.
#[test]
fn nar_dump_of_a_fifo_or_device_writes_nothing() {
    let tmp = tempdir();
    let fifo = tmp.path().join("fifo");
    narwhal_testkit::run(Command::new("mkfifo").arg(&fifo));
    let tree = tmp.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("a"), "a file first").unwrap();
    narwhal_testkit::run(Command::new("mkfifo").arg(tree.join("b-fifo")));
    for (path, kind) in
        [(fifo.clone(), "named pipe"), (PathBuf::from("/dev/null"), "device"), (tree.join("b-fifo"), "named pipe")]
    {
        let out = narwhal_testkit::output(narwhal().args(["nar", "dump"]).arg(&path));
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(out.stdout, b"", "{}", path.display());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("{} is a {kind}, which a NAR cannot hold", path.display())), "{err}");
    }
    let out = narwhal_testkit::output(narwhal().args(["nar", "dump"]).arg(&tree));
    assert_eq!((out.status.code(), out.stdout.len()), (Some(1), 0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `key generate` with one file for both halves, or a directory that does not
/// exist for either, is refused before anything is written.
#[test]
fn key_generate_refuses_one_file_for_both_halves_and_missing_directories() {
    let tmp = tempdir();
    let dir = tmp.path();
    let key = |secret: &Path, public: &Path| {
        let mut c = narwhal();
        c.args(["key", "generate", "k-1", "--secret"]).arg(secret).arg("--public").arg(public);
        c
    };
    std::fs::create_dir(dir.join("sub")).unwrap();
    for (secret, public) in [("k", "k"), ("k", "./k"), ("sub/../k", "k")] {
        let err = fails(key(&dir.join(secret), &dir.join(public)).current_dir(dir));
        assert!(err.contains("--secret and --public both name"), "{err}");
    }
    let err = fails(&mut key(&dir.join("k.sec"), &dir.join("missing/k.pub")));
    assert!(err.contains(&format!("its directory {} does not exist", dir.join("missing").display())), "{err}");
    assert_eq!(everything_under(dir), vec![dir.join("sub")], "a half was written");
}

/// `nar unpack` into a directory whose parent does not exist blames the
/// destination, not the archive, and names no temporary file.
#[test]
fn a_missing_destination_parent_is_blamed() {
    let tmp = tempdir();
    let nar = tmp.path().join("x.nar");
    std::fs::write(&nar, ok(narwhal().args(["nar", "dump", "Cargo.toml"]).current_dir(env!("CARGO_MANIFEST_DIR"))))
        .unwrap();
    let dest = tmp.path().join("missing/dir");
    let err = fails(narwhal().args(["nar", "unpack"]).arg(&nar).arg(&dest));
    assert!(err.contains(&format!("its directory {} does not exist", tmp.path().join("missing").display())), "{err}");
    assert!(!err.contains("invalid NAR") && !err.contains(".tmp-"), "{err}");
    assert_eq!(everything_under(tmp.path()), vec![nar]);
}

/// Listing pins only reads: a cache directory is neither created nor locked.
#[test]
fn listing_pins_writes_nothing() {
    let tmp = tempdir();
    let cache = tmp.path().join("no-cache-here");
    assert_eq!(ok(narwhal().args(["pins", "--from"]).arg(&cache)), b"");
    assert!(!cache.exists(), "pins created the cache directory");
    std::fs::create_dir(&cache).unwrap();
    assert_eq!(ok(narwhal().args(["pins", "--from"]).arg(&cache)), b"");
    assert_eq!(everything_under(&cache), Vec::<PathBuf>::new());
}
