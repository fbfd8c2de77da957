//! `narwhal gc` on a directory and on S3 (Garage), with real Nix as the client that must still
//! substitute every kept root, and pushes and readers running alongside.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use narwhal_formats::narinfo::NarInfo;
use narwhal_formats::store_path::StoreDir;
use narwhal_store::CacheWriter;
use narwhal_testkit::garage::Garage;
use narwhal_testkit::{closure, file_url, gc_fixture, nix_copy_from, tempdir};

use crate::{eventually, fails, narwhal, ok, spawn_logged};

/// A cache under test: where narwhal writes it, and where Nix reads it.
pub struct TestCache {
    pub url: String,
    pub env: Vec<(String, String)>,
    pub nix_url: String,
    pub nix_env: Vec<(String, String)>,
    _garage: Option<Garage>,
}

impl TestCache {
    pub fn dir(dir: &Path) -> Self {
        let url = file_url(dir, "");
        Self { nix_url: url.clone(), url, env: Vec::new(), nix_env: Vec::new(), _garage: None }
    }

    pub fn garage(name: &str) -> Self {
        let garage = Garage::start();
        let bucket = garage.create_bucket(name);
        garage.allow_website(&bucket.name);
        Self {
            url: garage.s3_url(&bucket.name),
            env: vec![
                ("AWS_ACCESS_KEY_ID".into(), bucket.key_id.clone()),
                ("AWS_SECRET_ACCESS_KEY".into(), bucket.secret.clone()),
            ],
            nix_url: format!("http://{}", Garage::web_host(&bucket.name)),
            nix_env: vec![("http_proxy".into(), format!("http://{}", garage.web_addr()))],
            _garage: Some(garage),
        }
    }

    /// narwhal with this cache's environment.
    pub fn narwhal(&self) -> Command {
        let mut c = narwhal();
        c.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
    }

    /// The cache, opened here for looking at it.
    pub fn open(&self) -> Box<dyn CacheWriter> {
        let url = narwhal_store::CacheUrl::parse(&self.url).unwrap();
        if let narwhal_store::Location::File(dir) = &url.location {
            Box::new(narwhal_store::file::FileCache::new(dir.clone(), self.url.clone()))
        } else {
            let env = self.env.clone();
            let config = narwhal_store::s3::S3Config::from_url_and_env(&url, |k| {
                env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
            })
            .unwrap();
            Box::new(narwhal_store::s3::S3Cache::new(config, &narwhal_store::http::HttpOptions::default()).unwrap())
        }
    }

    /// Every key of the cache.
    pub fn keys(&self) -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        self.open()
            .list_objects("", &mut |o| {
                keys.insert(o.key);
            })
            .unwrap();
        keys
    }

    pub fn push(&self, paths: &[&Path], sec: &Path) {
        ok(self.narwhal().arg("push").args(paths).args(["--to", &self.url, "--key-file"]).arg(sec));
    }

    pub fn nix_copy(&self, root: &Path, into: &Path, public: &str) {
        let mut copy = nix_copy_from(&self.nix_url, into, public, root);
        narwhal_testkit::run(copy.envs(self.nix_env.iter().map(|(k, v)| (k.as_str(), v.as_str()))));
    }
}

pub fn keys(dir: &Path) -> (PathBuf, String) {
    let (sec, public) = (dir.join("gc.sec"), dir.join("gc.pub"));
    ok(narwhal().args(["key", "generate", "gc-test-1", "--secret"]).arg(&sec).arg("--public").arg(&public));
    (sec, std::fs::read_to_string(public).unwrap())
}

fn hash(path: &Path) -> String {
    path.file_name().unwrap().to_str().unwrap()[..32].to_owned()
}

fn narinfo_key(path: &Path) -> String {
    format!("{}.narinfo", hash(path))
}

/// The narinfo of `path` in `cache`.
fn narinfo(cache: &TestCache, path: &Path) -> NarInfo {
    let bytes = cache.open().get(&narinfo_key(path)).unwrap().unwrap();
    NarInfo::parse(&String::from_utf8(bytes).unwrap(), &StoreDir::default()).unwrap()
}

/// "Every narinfo has its NAR and its references' narinfos": the violations in `cache` now. A
/// narinfo found broken is looked at again, so one deleted meanwhile (referrers first) is no
/// violation.
pub fn violations(cache: &dyn CacheWriter) -> Vec<String> {
    let mut listed = Vec::new();
    let _ = cache.list_objects("", &mut |o| listed.push(o.key));
    let mut found = Vec::new();
    for key in listed.iter().filter(|k| k.ends_with(".narinfo") && !k.contains('/')) {
        let Ok(Some(bytes)) = cache.get(key) else { continue };
        let Ok(info) = NarInfo::parse(&String::from_utf8_lossy(&bytes), &StoreDir::default()) else {
            found.push(format!("{key} does not parse"));
            continue;
        };
        let mut wrong = Vec::new();
        if !cache.exists(&info.url).unwrap_or(false) {
            wrong.push(format!("{key}: no NAR {}", info.url));
        }
        for r in info.references().iter().filter(|r| **r != info.path) {
            if !cache.exists(&format!("{}.narinfo", r.hash_part())).unwrap_or(false) {
                wrong.push(format!("{key}: no narinfo for its reference {r}"));
            }
        }
        if !wrong.is_empty() && cache.exists(key).unwrap_or(false) {
            found.extend(wrong);
        }
    }
    found
}

fn gc_json(cache: &TestCache, extra: &[&str]) -> serde_json::Value {
    let out = ok(cache.narwhal().args(["gc", "--in", &cache.url, "--json", "--no-index"]).args(extra));
    serde_json::from_slice(&out).unwrap()
}

fn strings(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect()
}

/// Everything the summary says was (or would be) deleted.
fn deleted(summary: &serde_json::Value) -> BTreeSet<String> {
    let d = &summary["deleted"];
    ["pins", "narinfos", "listings", "logs", "nars"].iter().flat_map(|k| strings(&d[*k])).collect()
}

/// The three closures, the pins, a dry run, the real run, and Nix afterwards.
fn collects_what_no_pin_needs(cache: &TestCache) {
    let tmp = tempdir();
    let (sec, public) = keys(tmp.path());
    let [a, b, c] = ["app-a", "app-b", "app-c"].map(gc_fixture);
    cache.push(&[&a, &b, &c], &sec);
    let pin = |name: &str, path: &Path, rev: Option<&str>| {
        let mut cmd = cache.narwhal();
        cmd.args(["pin", name]).arg(path).args(["--to", &cache.url]);
        if let Some(r) = rev {
            cmd.args(["--rev", r]);
        }
        ok(&mut cmd);
    };
    pin("web", &a, None);
    pin("api", &b, Some("r1"));
    pin("api", &a, Some("r2"));
    let (twin1, twin2) = (gc_fixture("twin-1"), gc_fixture("twin-2"));
    let shared = narinfo(cache, &twin1).url;
    assert_eq!(shared, narinfo(cache, &twin2).url, "the twins share one NAR");

    let before = cache.keys();
    let args = ["--keep", "1", "--keep-since", "0s", "--grace", "0s", "--nar-delay", "0s"];
    let dry = gc_json(cache, &[&["--dry-run"][..], &args].concat());
    assert_eq!(cache.keys(), before, "--dry-run deleted something");
    let would = deleted(&dry);
    let real = gc_json(cache, &args);
    assert_eq!(deleted(&real), would, "the dry run and the real run differ");
    assert_eq!(real["bytes_freed"], dry["bytes_freed"]);
    let after = cache.keys();
    let gone: BTreeSet<String> = before.difference(&after).cloned().collect();
    assert_eq!(gone, would, "what went is what the summary lists");

    // What A needs stays; B and C (and C's own lib) go, narinfo and NAR.
    let kept: BTreeSet<PathBuf> = closure(&a).into_iter().collect();
    for p in closure(&b).into_iter().chain(closure(&c)) {
        let key = narinfo_key(&p);
        if kept.contains(&p) {
            assert!(after.contains(&key), "{} was collected", p.display());
        } else {
            assert!(gone.contains(&key) && !after.contains(&key), "{} was kept", p.display());
        }
    }
    assert!(gone.contains("pins/api@r1") && after.contains("pins/api@r2") && after.contains("pins/web"));
    assert!(after.contains(&shared), "the NAR twin-1 still names went");
    assert!(gone.contains(&narinfo_key(&twin2)));
    assert_eq!(violations(cache.open().as_ref()), Vec::<String>::new());
    let pins = dry["pins"].as_array().unwrap();
    let web = pins.iter().find(|p| p["key"] == "pins/web").unwrap();
    assert_eq!(web["paths"].as_u64().unwrap(), closure(&a).len() as u64, "{dry}");
    assert_eq!(
        cache.keys().iter().filter(|k| k.starts_with("gc/")).cloned().collect::<Vec<_>>(),
        vec!["gc/orphans.json"]
    );

    // Real Nix, signatures required, substitutes every kept root.
    cache.nix_copy(&a, &tmp.path().join("nix-a"), &public);

    // Once B's narinfos are gone, a GC with the default delay keeps an unreferenced NAR.
    let again = gc_json(cache, &["--keep-since", "0s", "--grace", "0s"]);
    assert_eq!(deleted(&again), BTreeSet::new(), "{again}");
}

#[test]
fn gc_on_a_directory_collects_what_no_pin_needs() {
    let tmp = tempdir();
    collects_what_no_pin_needs(&TestCache::dir(&tmp.path().join("cache")));
}

#[test]
fn gc_on_garage_collects_what_no_pin_needs() {
    collects_what_no_pin_needs(&TestCache::garage("gc-collect"));
}

/// Reads the GC window's phase (0 when none is open).
fn phase(cache: &dyn CacheWriter) -> u8 {
    cache
        .get("gc/pending.json")
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["phase"].as_u64())
        .map_or(0, |p| p as u8)
}

/// A reader checking the closure invariant until stopped; returns what it saw wrong.
fn reader(cache: &TestCache) -> (Arc<AtomicBool>, std::thread::JoinHandle<Vec<String>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let handle = {
        let (stop, store) = (stop.clone(), cache.open());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut rounds = 0;
            while !stop.load(Ordering::Relaxed) || rounds == 0 {
                seen.extend(violations(store.as_ref()));
                rounds += 1;
            }
            seen
        })
    };
    (stop, handle)
}

fn pushes_during_both_phases(cache: &TestCache) {
    let tmp = tempdir();
    let (sec, public) = keys(tmp.path());
    let [a, c, d] = ["app-a", "app-c", "app-d"].map(gc_fixture);
    cache.push(&[&a, &c], &sec);
    ok(cache.narwhal().args(["pin", "web"]).arg(&a).args(["--to", &cache.url]));
    // C must be older than the grace period when phase 1 marks.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (stop, read) = reader(cache);
    let log = tmp.path().join("gc.log");
    let mut gc = spawn_logged(
        cache
            .narwhal()
            .args(["gc", "--in", &cache.url, "--no-index", "--keep-since", "0s", "--grace", "2s"])
            .args(["--nar-delay", "0s"]),
        &log,
    );
    let store = cache.open();
    assert!(eventually(|| phase(store.as_ref()) == 1), "phase 1 never published its candidates");
    // During phase 1: a push that re-uses the candidate C, and one of a new closure (D) that
    // shares lib with A, still running when phase 2 starts.
    cache.push(&[&c], &sec);
    let mut late = spawn_logged(
        cache.narwhal().arg("push").arg(&d).args(["--to", &cache.url, "--key-file"]).arg(&sec),
        &tmp.path().join("push.log"),
    );
    assert!(gc.wait().unwrap().success(), "{}", std::fs::read_to_string(&log).unwrap());
    assert!(late.wait().unwrap().success(), "{}", std::fs::read_to_string(tmp.path().join("push.log")).unwrap());
    stop.store(true, Ordering::Relaxed);
    assert_eq!(read.join().unwrap(), Vec::<String>::new(), "the reader saw a broken closure");
    let keys = cache.keys();
    for p in closure(&c).into_iter().chain(closure(&d)) {
        assert!(keys.contains(&narinfo_key(&p)), "{} was collected though pushed during the GC", p.display());
    }
    assert_eq!(violations(store.as_ref()), Vec::<String>::new());
    cache.nix_copy(&c, &tmp.path().join("nix-c"), &public);
    cache.nix_copy(&d, &tmp.path().join("nix-d"), &public);
}

#[test]
fn gc_on_a_directory_keeps_what_pushes_during_its_phases_need() {
    let tmp = tempdir();
    pushes_during_both_phases(&TestCache::dir(&tmp.path().join("cache")));
}

#[test]
fn gc_on_garage_keeps_what_pushes_during_its_phases_need() {
    pushes_during_both_phases(&TestCache::garage("gc-pushes"));
}

/// SIGKILL while waiting between the phases, and at several points of a sweep: the cache stays
/// consistent, and a GC run afterwards completes (the dead holder's lease is taken over).
#[test]
fn a_killed_gc_leaves_a_consistent_cache_and_the_next_one_completes() {
    let tmp = tempdir();
    let cache = TestCache::dir(&tmp.path().join("cache"));
    let (sec, _) = keys(tmp.path());
    let [a, b, c] = ["app-a", "app-b", "app-c"].map(gc_fixture);
    let store = cache.open();
    let zero = ["--keep-since", "0s", "--nar-delay", "0s", "--no-index"];
    // Between the phases: phase 1 done, the run waiting for its grace period.
    cache.push(&[&a, &b, &c], &sec);
    let mut waiting = spawn_logged(
        cache.narwhal().args(["gc", "--in", &cache.url, "--grace", "1h"]).args(zero),
        &tmp.path().join("1.log"),
    );
    assert!(eventually(|| phase(store.as_ref()) == 1));
    waiting.kill().unwrap();
    waiting.wait().unwrap();
    assert_eq!(violations(store.as_ref()), Vec::<String>::new());
    // During phase 2, at a few points of the sweep.
    for delay_ms in [0, 3, 6, 10, 20, 40] {
        cache.push(&[&b, &c], &sec);
        let mut gc = spawn_logged(
            cache.narwhal().args(["gc", "--in", &cache.url, "--grace", "0s"]).args(zero).arg(&a),
            &tmp.path().join("2.log"),
        );
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = gc.kill();
        gc.wait().unwrap();
        assert_eq!(violations(store.as_ref()), Vec::<String>::new(), "killed after {delay_ms} ms");
    }
    let out = ok(cache.narwhal().args(["gc", "--in", &cache.url, "--grace", "0s", "--json"]).args(zero).arg(&a));
    let summary: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(summary["phases"], serde_json::json!([1, 2]));
    let keys = cache.keys();
    assert!(!keys.contains(&narinfo_key(&b)) && !keys.contains(&narinfo_key(&c)), "{keys:?}");
    assert!(!keys.contains("gc/pending.json") && !keys.contains("gc/lease.json"), "{keys:?}");
    assert_eq!(violations(store.as_ref()), Vec::<String>::new());
}

/// Two GCs at once: the second refuses, naming the first.
#[test]
fn a_second_gc_refuses_while_one_runs() {
    let tmp = tempdir();
    let cache = TestCache::dir(&tmp.path().join("cache"));
    let (sec, _) = keys(tmp.path());
    cache.push(&[&gc_fixture("app-a")], &sec);
    let mut first =
        spawn_logged(cache.narwhal().args(["gc", "--in", &cache.url, "--grace", "1h"]), &tmp.path().join("1.log"));
    let store = cache.open();
    assert!(eventually(|| phase(store.as_ref()) == 1));
    let err = fails(cache.narwhal().args(["gc", "--in", &cache.url, "--grace", "0s"]));
    assert!(
        err.contains("another garbage collection holds") && err.contains(&format!("process {}", first.id())),
        "{err}"
    );
    let err = crate::fails_with(cache.narwhal().args(["gc", "--in", &cache.url, "--dry-run", "--grace", "10x"]), 2);
    assert!(err.contains("\"10x\" is not a duration"), "{err}");
    first.kill().unwrap();
    first.wait().unwrap();
}
