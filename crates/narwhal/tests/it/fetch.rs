//! `narwhal fetch` against caches written by real Nix, served over real HTTP,
//! and the relocated closure run where there is no /nix.

use std::path::{Path, PathBuf};

use narwhal_testkit::http::HttpServer;
use narwhal_testkit::isolate::{deploy_fixture, Isolated, DEPLOY_APP_OUTPUT};
use narwhal_testkit::{file_url, files_with_suffix, nix, run, tempdir, TempDir};

use crate::{entries, fails, fails_verification, narwhal};

/// A signed cache written by `nix copy` holding the closure of `attr`.
pub struct Cache {
    pub dir: PathBuf,
    pub public_key: String,
    pub root: PathBuf,
    _tmp: TempDir,
}

impl Cache {
    pub fn new(attrs: &[&str], compression: &str) -> Self {
        let tmp = tempdir();
        let (sec, public) = (tmp.path().join("k.sec"), tmp.path().join("k.pub"));
        run(nix("nix-store").args(["--generate-binary-cache-key", "test-cache-1"]).arg(&sec).arg(&public));
        let dir = tmp.path().join("cache");
        let query = format!("compression={compression}&secret-key={}", sec.display());
        let roots: Vec<PathBuf> = attrs.iter().map(|a| deploy_fixture(a)).collect();
        run(nix("nix").args(["copy", "--to", &file_url(&dir, &query)]).args(&roots));
        let public_key = std::fs::read_to_string(public).unwrap();
        Self { dir, public_key, root: roots[0].clone(), _tmp: tmp }
    }

    pub fn nar_of(&self, path: &Path) -> PathBuf {
        let hash = path.file_name().unwrap().to_str().unwrap()[..32].to_owned();
        let info = std::fs::read_to_string(self.dir.join(format!("{hash}.narinfo"))).unwrap();
        let url = info.lines().find_map(|l| l.strip_prefix("URL: ")).unwrap();
        self.dir.join(url)
    }
}

pub fn fetch_cmd(from: &str, key: &str, root: &Path, to: &Path) -> std::process::Command {
    let mut c = narwhal();
    c.arg("fetch").arg(root).args(["--from", from, "--trusted-public-key", key, "--to"]).arg(to);
    c.env("NARWHAL_NO_PROGRESS", "1");
    c
}

/// Store paths and temporary names under `dir` (ignoring the manifest directory).
pub fn store_entries(dir: &Path) -> Vec<String> {
    if !dir.exists() {
        return Vec::new();
    }
    entries(dir).into_iter().filter(|n| n != ".narwhal").collect()
}

#[test]
fn relocated_closure_runs_without_nix() {
    for compression in ["xz", "zstd"] {
        let cache = Cache::new(&["app"], compression);
        let server = HttpServer::start(&cache.dir, &[]);
        let tmp = tempdir();
        let slug = tmp.path().join("slug");
        let out = narwhal_testkit::run(
            fetch_cmd(&server.url(), &cache.public_key, &cache.root, &slug.join("store"))
                .args(["--prefix", "/app/store"]),
        );
        let printed = String::from_utf8(out).unwrap();
        let base = cache.root.file_name().unwrap().to_str().unwrap();
        assert_eq!(printed.trim_end(), slug.join("store").join(base).to_str().unwrap());
        // No file still names the old store dir (paths.gz holds it only compressed).
        let grep = narwhal_testkit::output(
            std::process::Command::new("grep")
                .args(["-rlF", "/nix/store", "--exclude=manifest.json"])
                .arg(slug.join("store")),
        );
        assert_eq!(String::from_utf8_lossy(&grep.stdout), "");
        assert!(String::from_utf8(printed_stderr(&slug)).is_ok());

        // The manifest's relocated hashes are the NAR hashes of the trees on disk.
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(slug.join("store/.narwhal/manifest.json")).unwrap()).unwrap();
        for (name, entry) in manifest["paths"].as_object().unwrap() {
            let on_disk = String::from_utf8(crate::ok(
                narwhal().args(["hash", "path", "--base32"]).arg(slug.join("store").join(name)),
            ))
            .unwrap();
            assert_eq!(entry["relocatedNarHash"].as_str().unwrap(), format!("sha256:{}", on_disk.trim()), "{name}");
        }

        let iso = Isolated::new();
        iso.add_dir(&slug, "/app");
        let app = format!("/app/store/{base}/bin/app");
        assert_eq!(iso.run_ok(&[&app], &[]), DEPLOY_APP_OUTPUT, "{compression}");
        assert!(!iso.host_path("/nix").exists());
    }
}

#[test]
fn verifies_before_anything_appears() {
    let cache = Cache::new(&["app"], "zstd");
    let tmp = tempdir();
    let from = file_url(&cache.dir, "");
    // Untrusted key: another key is trusted.
    let other = tmp.path().join("other");
    crate::ok(
        narwhal()
            .args(["key", "generate", "other-1", "--secret"])
            .arg(other.with_extension("sec"))
            .arg("--public")
            .arg(other.with_extension("pub")),
    );
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let dest = tmp.path().join("d1");
    let err = fails_verification(&mut fetch_cmd(&from, &other_pub, &cache.root, &dest));
    assert!(err.contains("no valid signature by a trusted key (signed by test-cache-1)"), "{err}");
    assert!(err.contains("hint: add the cache's public key"), "{err}");
    assert!(store_entries(&dest).is_empty());

    // No key at all.
    let err = fails(narwhal().args(["fetch", "--from", &from, "--to"]).arg(&dest).arg(&cache.root));
    assert!(err.contains("no trusted public keys"), "{err}");

    // A wrong signature: the narinfo's signature made by another key under the trusted name.
    let tampered = tempdir();
    copy_tree(&cache.dir, tampered.path());
    let root_info =
        tampered.path().join(format!("{}.narinfo", &cache.root.file_name().unwrap().to_str().unwrap()[..32]));
    let text = std::fs::read_to_string(&root_info).unwrap();
    let text = text.replace("NarSize: ", "NarSize: 9");
    std::fs::write(&root_info, text).unwrap();
    let err = fails_verification(&mut fetch_cmd(&file_url(tampered.path(), ""), &cache.public_key, &cache.root, &dest));
    assert!(err.contains("no valid signature"), "{err}");
    assert!(store_entries(&dest).is_empty());

    // A tampered NAR (the narinfo still signed): the hash check stops it.
    let tampered = tempdir();
    copy_tree(&cache.dir, tampered.path());
    let nar = tampered.path().join(cache.nar_of(&cache.root).strip_prefix(&cache.dir).unwrap());
    let mut bytes = std::fs::read(&nar).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x55;
    std::fs::write(&nar, bytes).unwrap();
    let err = fails_verification(&mut fetch_cmd(&file_url(tampered.path(), ""), &cache.public_key, &cache.root, &dest));
    // The whole file arrived but is not the one signed: named as such, not retried.
    assert!(err.contains("FileHash of") && err.contains("does not match"), "{err}");
    assert!(!err.contains("retrying"), "{err}");
    let base = cache.root.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(!store_entries(&dest).contains(&base), "{:?}", store_entries(&dest));
    assert!(store_entries(&dest).iter().all(|n| !n.contains(".tmp-")), "{:?}", store_entries(&dest));
}

#[test]
fn transient_server_errors_are_retried() {
    let cache = Cache::new(&["app"], "xz");
    // Every NAR fails twice with 500, then is served.
    let server = HttpServer::start(&cache.dir, &["--fail", "2"]);
    let tmp = tempdir();
    let dest = tmp.path().join("store");
    let out = narwhal_testkit::output(&mut fetch_cmd(&server.url(), &cache.public_key, &cache.root, &dest));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(server.nar_downloads(), 6, "{:?}", server.requests());
    assert!(server.requests().iter().filter(|r| r.ends_with(" 500")).count() >= 12);

    // Truncated bodies: the path is fetched again from scratch.
    let server = HttpServer::start(&cache.dir, &["--truncate", "1"]);
    let dest = tmp.path().join("store2");
    let out = narwhal_testkit::output(&mut fetch_cmd(&server.url(), &cache.public_key, &cache.root, &dest));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("retrying"), "{stderr}");
    assert_eq!(store_entries(&dest).len(), 6);

    // A server that never recovers: a clear error after the retries, nothing half-written.
    let server = HttpServer::start(&cache.dir, &["--fail", "1000"]);
    let dest = tmp.path().join("store3");
    let err = fails(&mut fetch_cmd(&server.url(), &cache.public_key, &cache.root, &dest));
    assert!(err.contains("HTTP 500"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert!(store_entries(&dest).is_empty(), "{:?}", store_entries(&dest));
}

#[test]
fn download_cache_is_reused_and_only_changes_download() {
    let cache = Cache::new(&["app", "app-v2"], "zstd");
    let server = HttpServer::start(&cache.dir, &[]);
    let tmp = tempdir();
    let dl = tmp.path().join("download-cache");
    let fetch = |root: &Path, to: &Path| {
        let out = narwhal_testkit::run(
            fetch_cmd(&server.url(), &cache.public_key, root, to)
                .arg("--cache-dir")
                .arg(&dl)
                .args(["--prefix", "/app/store"]),
        );
        String::from_utf8(out).unwrap()
    };
    fetch(&cache.root, &tmp.path().join("one"));
    assert_eq!(server.nar_downloads(), 6);
    // Same closure again, into a fresh directory: nothing is downloaded.
    fetch(&cache.root, &tmp.path().join("two"));
    assert_eq!(server.nar_downloads(), 6);
    // The changed app: only its NAR.
    let v2 = deploy_fixture("app-v2");
    fetch(&v2, &tmp.path().join("three"));
    assert_eq!(server.nar_downloads(), 7, "{:?}", server.requests());
    // Into a directory that already holds the old closure: only the new path is written.
    fetch(&v2, &tmp.path().join("one"));
    assert_eq!(server.nar_downloads(), 7);
    assert_eq!(store_entries(&tmp.path().join("one")).len(), 7);
    // Without the download cache everything is downloaded again.
    std::fs::remove_dir_all(&dl).unwrap();
    fetch(&v2, &tmp.path().join("four"));
    assert_eq!(server.nar_downloads(), 13);
    let _ = files_with_suffix(&cache.dir, ".narinfo");
}

#[test]
fn pins_resolve_and_missing_pins_wait_then_fail() {
    let cache = Cache::new(&["app"], "zstd");
    let pins = cache.dir.join("pins");
    std::fs::create_dir_all(&pins).unwrap();
    let pin = format!("Name: web\nStorePath: {}\nRevision: abc123\nCreated: 1\n", cache.root.display());
    std::fs::write(pins.join("web@abc123"), &pin).unwrap();
    let tmp = tempdir();
    let from = file_url(&cache.dir, "");
    let dest = tmp.path().join("store");
    let out = narwhal_testkit::run(
        narwhal()
            .args(["fetch", "pin:web@abc123", "--from", &from, "--trusted-public-key", &cache.public_key, "--to"])
            .arg(&dest),
    );
    assert!(String::from_utf8(out).unwrap().contains(cache.root.file_name().unwrap().to_str().unwrap()));

    let started = std::time::Instant::now();
    let err = fails(
        narwhal()
            .args(["fetch", "pin:web@def456", "--from", &from, "--trusted-public-key", &cache.public_key, "--to"])
            .arg(tmp.path().join("other"))
            .env("NARWHAL_WAIT", "3"),
    );
    assert!(started.elapsed() >= std::time::Duration::from_secs(3));
    assert!(err.contains("no pin pins/web@def456 in any cache after waiting 3 s"), "{err}");
    assert!(err.contains("hint: push the closure and its pin first"), "{err}");
}

fn copy_tree(from: &Path, to: &Path) {
    run(std::process::Command::new("cp").arg("-a").arg(format!("{}/.", from.display())).arg(to));
}

/// The manifest's warnings, which must name the gzip file relocation cannot reach.
fn printed_stderr(slug: &Path) -> Vec<u8> {
    let manifest = std::fs::read_to_string(slug.join("store/.narwhal/manifest.json")).unwrap();
    assert!(manifest.contains("share/paths.gz holds /nix/store inside its gzip data"), "{manifest}");
    manifest.into_bytes()
}

#[test]
fn bundled_example_cache_deploys_and_runs() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../example");
    let root = std::fs::read_to_string(example.join("ROOT")).unwrap();
    let key = std::fs::read_to_string(example.join("cache.pub")).unwrap();
    let tmp = tempdir();
    let slug = tmp.path().join("slug");
    narwhal_testkit::run(
        fetch_cmd(&file_url(&example.join("cache"), ""), key.trim(), Path::new(root.trim()), &slug.join("store"))
            .args(["--prefix", "/app/store"]),
    );
    let iso = Isolated::new();
    iso.add_dir(&slug, "/app");
    let base = Path::new(root.trim()).file_name().unwrap().to_str().unwrap().to_owned();
    assert_eq!(iso.run_ok(&[&format!("/app/store/{base}/bin/app")], &[]), DEPLOY_APP_OUTPUT);
}

#[test]
fn hydra_job_urls_resolve_to_the_latest_build() {
    let cache = Cache::new(&["app"], "zstd");
    // Hydra's JSON API, as static files: GET <job>/latest answers with the build.
    let job = cache.dir.join("job/narwhal/main/app");
    std::fs::create_dir_all(&job).unwrap();
    let build = format!(
        "{{\"id\":42,\"finished\":1,\"buildstatus\":0,\"buildoutputs\":{{\"out\":{{\"path\":\"{}\"}}}}}}",
        cache.root.display()
    );
    std::fs::write(job.join("latest"), build).unwrap();
    let server = HttpServer::start(&cache.dir, &[]);
    let tmp = tempdir();
    let dest = tmp.path().join("store");
    let job_url = format!("{}/job/narwhal/main/app", server.url());
    let out = narwhal_testkit::run(
        narwhal()
            .args(["fetch", &job_url, "--from", &server.url(), "--trusted-public-key", &cache.public_key, "--to"])
            .arg(&dest),
    );
    assert!(String::from_utf8(out).unwrap().contains(cache.root.file_name().unwrap().to_str().unwrap()));
    assert_eq!(store_entries(&dest).len(), 6);

    // A failed latest build is refused.
    std::fs::write(job.join("latest"), "{\"finished\":1,\"buildstatus\":1,\"buildoutputs\":{}}").unwrap();
    let err = fails(
        narwhal()
            .args(["fetch", &job_url, "--from", &server.url(), "--trusted-public-key", &cache.public_key, "--to"])
            .arg(tmp.path().join("other")),
    );
    assert!(err.contains("did not succeed"), "{err}");
}

/// Every compressed file that hides a store path is named in a warning, on
/// stderr and in the manifest, under its final name: small ones (scanned from
/// a copy while unpacking) and ones larger than the unpacking buffer (read back
/// from the tree while unpacking goes on), gzip with one member or two, a jar.
#[test]
fn compressed_files_hiding_store_paths_are_all_named() {
    let cache = Cache::new(&["archives"], "zstd");
    let base = cache.root.file_name().unwrap().to_str().unwrap().to_owned();
    let tmp = tempdir();
    let from = file_url(&cache.dir, "");
    let dest = tmp.path().join("store");
    let out = narwhal_testkit::output(
        fetch_cmd(&from, &cache.public_key, &cache.root, &dest).args(["--prefix", "/app/store"]),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dest.join(".narwhal/manifest.json")).unwrap()).unwrap();
    let warnings: Vec<&str> =
        manifest["paths"][&base]["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    let expected: Vec<String> = [
        "lib/big.jar (entry META-INF/store) holds /nix/store inside its zip data",
        "share/big.gz holds /nix/store inside its gzip data",
        "share/members.gz holds /nix/store inside its gzip data",
        "share/small.gz holds /nix/store inside its gzip data",
    ]
    .iter()
    .map(|w| format!("{base}/{w}, which relocation cannot rewrite"))
    .collect();
    assert_eq!(warnings, expected, "in file order, and nothing about the clean files");
    for w in &expected {
        assert!(stderr.contains(&format!("warning: {w}")), "{w} not on stderr:\n{stderr}");
    }
    assert!(!stderr.contains(".tmp-"), "a temporary name leaked into a message:\n{stderr}");

    // Not relocated, nothing needs a warning.
    let plain = tmp.path().join("plain");
    let out = narwhal_testkit::output(&mut fetch_cmd(&from, &cache.public_key, &cache.root, &plain));
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The worker on the largest path keeps its priority; the others lower
/// theirs (nice 10) so the largest path, which decides when the fetch ends,
/// gets a core whenever it can use one. Seen in /proc while the server holds
/// the NAR downloads.
#[test]
fn workers_on_smaller_paths_yield_to_the_largest() {
    let cache = Cache::new(&["app"], "zstd");
    let tmp = tempdir();
    let hold = tmp.path().join("hold");
    std::fs::write(&hold, "").unwrap();
    let server = HttpServer::start(&cache.dir, &["--hold", hold.to_str().unwrap()]);
    let mut child = fetch_cmd(&server.url(), &cache.public_key, &cache.root, &tmp.path().join("store"))
        .args(["--jobs", "2"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let held = |server: &HttpServer| server.requests().iter().filter(|r| r.ends_with(" held")).count();
    for _ in 0..600 {
        if held(&server) >= 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(held(&server), 2, "both workers are waiting for a NAR: {:?}", server.requests());
    // None for a thread that ended meanwhile.
    let nice_of = |task: &Path| -> Option<i64> {
        let stat = std::fs::read_to_string(task.join("stat")).ok()?;
        // After the command name in parentheses: state is field 3, nice field 19.
        let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
        fields.get(16)?.parse().ok()
    };
    let tasks = Path::new("/proc").join(child.id().to_string()).join("task");
    let main_thread = nice_of(&tasks.join(child.id().to_string())).unwrap();
    let nice: Vec<i64> = std::fs::read_dir(&tasks).unwrap().filter_map(|t| nice_of(&t.ok()?.path())).collect();
    std::fs::remove_file(&hold).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(main_thread < 10, "the test runs at nice {main_thread}, so it cannot see the change");
    assert_eq!(nice.iter().filter(|&&n| n == 10).count(), 1, "one worker yields: {nice:?}");
    assert!(nice.iter().all(|&n| n == main_thread || n == 10), "{nice:?}");
}
