//! The S3 backend against a real S3 server: a single-node Garage started by the test kit
//! (`cargo install garage --locked` installs it; these tests fail without it); and every
//! parser and decoder against arbitrary input (`never_panics`, no server needed).

#![allow(clippy::unwrap_used)]

mod never_panics;
mod regressions;

use std::error::Error as _;
use std::io::Read as _;
use std::time::Duration;

use narwhal_store::http::HttpOptions;
use narwhal_store::s3::{Credentials, S3Cache, S3Config, MIN_PART_SIZE};
use narwhal_store::{check_key, open_cache, BinaryCache as _, CacheUrl, CacheWriter as _, StoreError, StoreErrorKind};
use narwhal_testkit::garage::{Bucket, Garage, REGION};
use narwhal_testkit::tempdir;

fn config(garage: &Garage, bucket: &Bucket, prefix: &str) -> S3Config {
    S3Config {
        bucket: bucket.name.clone(),
        prefix: prefix.to_owned(),
        region: REGION.to_owned(),
        endpoint: Some(garage.s3_endpoint()),
        credentials: Some(Credentials {
            access_key_id: bucket.key_id.clone(),
            secret_access_key: bucket.secret.clone(),
            session_token: None,
        }),
    }
}

fn cache(garage: &Garage, bucket: &Bucket, prefix: &str) -> S3Cache {
    S3Cache::new(config(garage, bucket, prefix), &fast()).unwrap()
}

/// Few, quick retries, so failing requests fail fast.
fn fast() -> HttpOptions {
    HttpOptions {
        attempts: 2,
        initial_backoff: Duration::from_millis(10),
        timeout: Duration::from_secs(10),
        on_retry: None,
    }
}

/// The error and its sources on one line, as the binary prints them.
fn chain(e: &StoreError) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        line = format!("{line}: {s}");
        source = s.source();
    }
    assert!(!line.contains('\n'), "one line: {line}");
    line
}

/// Deterministic bytes that do not repeat in any short period (xorshift).
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn small_objects_put_get_exists_delete() {
    let garage = Garage::start();
    let bucket = garage.create_bucket("small");
    let c = cache(&garage, &bucket, "");
    assert_eq!(c.url(), "s3://small");

    assert_eq!(c.get("nix-cache-info").unwrap(), None);
    assert!(!c.exists("nix-cache-info").unwrap());
    let info = b"StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n";
    c.put("nix-cache-info", info, "text/x-nix-cache-info").unwrap();
    assert!(c.exists("nix-cache-info").unwrap());
    assert_eq!(c.get("nix-cache-info").unwrap().as_deref(), Some(&info[..]));
    let mut streamed = Vec::new();
    c.open("nix-cache-info").unwrap().read_to_end(&mut streamed).unwrap();
    assert_eq!(streamed, info);

    // Overwrite, empty objects, keys with directories and '@'.
    c.put("pins/app@1", b"/nix/store/aaaa-app\n", "text/plain").unwrap();
    c.put("pins/app@1", b"/nix/store/bbbb-app\n", "text/plain").unwrap();
    assert_eq!(c.get("pins/app@1").unwrap().unwrap(), b"/nix/store/bbbb-app\n");
    c.put("empty", b"", "").unwrap();
    assert_eq!(c.get("empty").unwrap().unwrap(), b"");

    // Several threads share one cache.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| assert_eq!(c.get("nix-cache-info").unwrap().as_deref(), Some(&info[..])));
        }
    });

    c.delete("pins/app@1").unwrap();
    assert_eq!(c.get("pins/app@1").unwrap(), None);
    assert!(!c.exists("pins/app@1").unwrap());
    c.delete("pins/app@1").unwrap();
    let e = c.open("pins/app@1").err().unwrap();
    assert!(matches!(e.kind, StoreErrorKind::NotFound), "{e:?}");
    assert_eq!(e.url, "s3://small/pins/app@1");
}

#[test]
fn missing_key_is_none_not_an_error() {
    let garage = Garage::start();
    let bucket = garage.create_bucket("sparse");
    // A fresh cache has not seen the bucket yet: the HEAD's 404 has no body, so it is checked.
    assert!(!cache(&garage, &bucket, "").exists("abc.narinfo").unwrap());
    assert_eq!(cache(&garage, &bucket, "").get("abc.narinfo").unwrap(), None);
    assert!(cache(&garage, &bucket, "").delete("abc.narinfo").is_ok());
}

#[test]
fn prefix_keeps_the_cache_under_it() {
    let garage = Garage::start();
    let bucket = garage.create_bucket("shared");
    let team = cache(&garage, &bucket, "team/cache");
    assert_eq!(team.url(), "s3://shared/team/cache");
    team.put("nix-cache-info", b"StoreDir: /nix/store\n", "text/x-nix-cache-info").unwrap();
    let root = cache(&garage, &bucket, "");
    assert_eq!(root.get("team/cache/nix-cache-info").unwrap().unwrap(), b"StoreDir: /nix/store\n");
    assert_eq!(root.get("nix-cache-info").unwrap(), None);
    assert!(!cache(&garage, &bucket, "other").exists("nix-cache-info").unwrap());
}

#[test]
fn large_file_is_uploaded_in_parts_and_streams_back() {
    let garage = Garage::start();
    let bucket = garage.create_bucket("nars");
    let c = cache(&garage, &bucket, "");
    let dir = tempdir();
    let file = dir.path().join("big.nar.xz");
    let data = noise(40 << 20);
    std::fs::write(&file, &data).unwrap();

    c.put_file("nar/big.nar.xz", &file, "application/x-nix-nar").unwrap();

    let mut back = Vec::new();
    let mut reader = c.open("nar/big.nar.xz").unwrap();
    // Read in small pieces, as the fetch pipeline does.
    let mut buf = vec![0; 64 << 10];
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        back.extend_from_slice(&buf[..n]);
    }
    assert_eq!(back.len(), data.len());
    assert!(back == data, "the object read back differs from the file");

    // S3's ETag of a multipart object ends in the number of parts: 40 MiB in 5 MiB parts.
    garage.allow_website("nars");
    let response = garage.web_get("nars", "nar/big.nar.xz");
    assert_eq!(response.status, 200);
    let parts = (40 << 20) / MIN_PART_SIZE;
    assert!(response.header("etag").unwrap().ends_with(&format!("-{parts}\"")), "{:?}", response.headers);
    assert_eq!(response.header("content-type"), Some("application/x-nix-nar"));

    // A small file goes up whole.
    let small = dir.path().join("small.nar");
    std::fs::write(&small, b"nix-archive-1").unwrap();
    c.put_file("nar/small.nar", &small, "application/x-nix-nar").unwrap();
    assert_eq!(c.get("nar/small.nar").unwrap().unwrap(), b"nix-archive-1");

    // A missing local file names the file, not the cache.
    let e = c.put_file("nar/none.nar", &dir.path().join("none"), "").unwrap_err();
    assert!(chain(&e).contains("/none: "), "{}", chain(&e));
    assert_eq!(c.get("nar/none.nar").unwrap(), None);
}

#[test]
fn wrong_secret_is_403_with_a_credentials_hint() {
    let garage = Garage::start();
    let bucket = garage.create_bucket("guarded");
    let mut config = config(&garage, &bucket, "");
    config.credentials.as_mut().unwrap().secret_access_key = "0".repeat(64);
    let c = S3Cache::new(config, &fast()).unwrap();
    let e = c.get("nix-cache-info").unwrap_err();
    assert!(matches!(e.kind, StoreErrorKind::Status { status: 403, .. }), "{e:?}");
    assert_eq!(chain(&e), "s3://guarded/nix-cache-info: HTTP 403");
    assert!(e.hint().unwrap().contains("credentials"), "{:?}", e.hint());
    assert!(!e.is_transient());
    let e = c.put("x", b"x", "").unwrap_err();
    assert!(matches!(e.kind, StoreErrorKind::Status { status: 403, .. }), "{e:?}");

    // An unknown key id is refused the same way; so is an anonymous request.
    let mut config = self::config(&garage, &bucket, "");
    config.credentials.as_mut().unwrap().access_key_id = "GK00000000000000000000000000".to_owned();
    let e = S3Cache::new(config, &fast()).unwrap().exists("x").unwrap_err();
    assert!(matches!(e.kind, StoreErrorKind::Status { status: 403, .. }), "{e:?}");
    let mut config = self::config(&garage, &bucket, "");
    config.credentials = None;
    let e = S3Cache::new(config, &fast()).unwrap().get("x").unwrap_err();
    assert!(matches!(e.kind, StoreErrorKind::Status { status: 401 | 403, .. }), "{e:?}");
}

#[test]
fn missing_bucket_is_a_clear_error() {
    let garage = Garage::start();
    let bucket = garage.create_bucket("present");
    let mut config = config(&garage, &bucket, "");
    config.bucket = "absent".to_owned();
    let c = S3Cache::new(config, &fast()).unwrap();
    let expected = format!("s3://absent: bucket 'absent' does not exist on {}", garage.s3_endpoint());
    for e in [
        c.get("nix-cache-info").unwrap_err(),
        c.open("nix-cache-info").err().unwrap(),
        c.exists("nix-cache-info").unwrap_err(),
        c.put("nix-cache-info", b"x", "").unwrap_err(),
        c.delete("nix-cache-info").unwrap_err(),
    ] {
        assert_eq!(chain(&e), expected);
        assert!(matches!(e.kind, StoreErrorKind::NoSuchBucket { .. }), "{e:?}");
        assert!(!e.is_transient());
    }
}

#[test]
fn unreachable_endpoint_is_a_transient_transport_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = S3Config {
        bucket: "b".to_owned(),
        prefix: String::new(),
        region: REGION.to_owned(),
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        credentials: Some(Credentials {
            access_key_id: "id".to_owned(),
            secret_access_key: "secret".to_owned(),
            session_token: None,
        }),
    };
    let c = S3Cache::new(config, &fast()).unwrap();
    for e in [c.get("nix-cache-info").unwrap_err(), c.put("k", b"x", "").unwrap_err()] {
        assert!(matches!(e.kind, StoreErrorKind::Transport { attempts: 2, .. }), "{e:?}");
        assert!(e.is_transient());
        let line = chain(&e);
        assert!(line.starts_with("s3://b/"), "{line}");
        assert!(
            line.contains(&format!("cannot reach the server (after 2 attempts): http://127.0.0.1:{port}: ")),
            "{line}"
        );
        assert!(line.to_lowercase().contains("connection refused"), "{line}");
    }
}

#[test]
fn server_errors_are_retried_and_typed_with_their_status_and_attempts() {
    // A server that answers 500 to the first five GETs of each key: with two attempts, the error
    // is the status of the last one, counted, classified from the response (not from a message).
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("b")).unwrap();
    std::fs::write(dir.path().join("b/nix-cache-info"), "StoreDir: /nix/store\n").unwrap();
    let server = narwhal_testkit::http::HttpServer::start(dir.path(), &["--fail", "5", "--only", "b/"]);
    let config = S3Config {
        bucket: "b".to_owned(),
        prefix: String::new(),
        region: REGION.to_owned(),
        endpoint: Some(server.url()),
        credentials: None,
    };
    let c = S3Cache::new(config, &fast()).unwrap();
    let e = c.get("nix-cache-info").unwrap_err();
    assert!(matches!(e.kind, StoreErrorKind::Status { status: 500, attempts: 2 }), "{e:?}");
    assert!(e.is_transient());
    assert_eq!(server.requests(), ["GET /b/nix-cache-info 500", "GET /b/nix-cache-info 500"]);
    // A later request for the same key counts its attempts afresh.
    let e = c.get("nix-cache-info").unwrap_err();
    assert!(matches!(e.kind, StoreErrorKind::Status { status: 500, attempts: 2 }), "{e:?}");
    // The fifth GET fails, the sixth succeeds: one request, two attempts, the object.
    assert_eq!(c.get("nix-cache-info").unwrap().as_deref(), Some(&b"StoreDir: /nix/store\n"[..]));
}

#[test]
fn keys_that_leave_the_cache_are_refused() {
    assert!(check_key("../x").is_err());
    let url = CacheUrl::parse("s3://b/prefix?endpoint=http://127.0.0.1:9&region=garage").unwrap();
    let c = open_cache(&url, &fast(), &narwhal_store::Settings::default()).unwrap();
    assert_eq!(c.url(), "s3://b/prefix");
    for key in ["../x", "/x", "a/../../x", "a//b", "http://evil/x"] {
        let e = c.get(key).unwrap_err();
        assert!(matches!(e.kind, StoreErrorKind::InvalidKey), "{key}: {e:?}");
    }
    let w = S3Cache::from_url(&url, &fast(), &narwhal_store::Settings::default()).unwrap();
    assert!(matches!(w.put("../x", b"", "").unwrap_err().kind, StoreErrorKind::InvalidKey));
    assert!(matches!(w.delete("../x").unwrap_err().kind, StoreErrorKind::InvalidKey));
}

#[test]
fn url_profile_reads_the_credentials_file() {
    let garage = Garage::start();
    let bucket = garage.create_bucket("profiled");
    let dir = tempdir();
    let file = dir.path().join("credentials");
    std::fs::write(
        &file,
        format!(
            "[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n[ci]\n\
             aws_access_key_id = {}\naws_secret_access_key = {}\n",
            bucket.key_id, bucket.secret
        ),
    )
    .unwrap();
    let url = CacheUrl::parse(&format!("{}&profile=ci", garage.s3_url("profiled"))).unwrap();
    let env = |name: &str| (name == "AWS_SHARED_CREDENTIALS_FILE").then(|| file.display().to_string());
    let c = S3Cache::new(S3Config::from_url_and_env(&url, env).unwrap(), &fast()).unwrap();
    c.put("nix-cache-info", b"StoreDir: /nix/store\n", "text/x-nix-cache-info").unwrap();
    assert!(c.exists("nix-cache-info").unwrap());

    // Without ?profile=, the default section (wrong here) is used.
    let url = CacheUrl::parse(&garage.s3_url("profiled")).unwrap();
    let c = S3Cache::new(S3Config::from_url_and_env(&url, env).unwrap(), &fast()).unwrap();
    assert!(matches!(c.get("nix-cache-info").unwrap_err().kind, StoreErrorKind::Status { status: 403, .. }));
}

#[test]
fn website_endpoint_serves_the_bucket_over_plain_http() {
    let garage = Garage::start();
    let bucket = garage.create_bucket("public");
    let c = cache(&garage, &bucket, "");
    c.put("nix-cache-info", b"StoreDir: /nix/store\n", "text/x-nix-cache-info").unwrap();
    garage.allow_website("public");
    let response = garage.web_get("public", "nix-cache-info");
    assert_eq!((response.status, response.body.as_slice()), (200, &b"StoreDir: /nix/store\n"[..]));
    assert_eq!(garage.web_get("public", "missing.narinfo").status, 404);
    assert!(garage.web_url("public").starts_with("http://public.web.garage:"));
}

#[test]
fn wrong_region_names_the_setting() {
    let garage = Garage::start();
    let bucket = garage.create_bucket("regional");
    let mut config = config(&garage, &bucket, "");
    config.region = "us-east-1".to_owned();
    let e = S3Cache::new(config, &fast()).unwrap().get("nix-cache-info").unwrap_err();
    assert_eq!(chain(&e), format!("s3://regional: {} expects another region than 'us-east-1'", garage.s3_endpoint()));
    assert!(e.hint().is_some_and(|h| h.contains("?region=")), "{:?}", e.hint());
}

#[test]
fn failed_multipart_upload_is_aborted() {
    let garage = Garage::start();
    let bucket = garage.create_bucket("aborted");
    let c = cache(&garage, &bucket, "");
    let dir = tempdir();
    let file = dir.path().join("shrinking.nar");
    // Sparse, so it costs no disk here; far too large to upload before it shrinks.
    std::fs::File::create(&file).unwrap().set_len(4 << 30).unwrap();
    let unfinished = || garage.cli_text(&["bucket", "info", "aborted"]).contains("multipart uploads");
    std::thread::scope(|s| {
        let upload = s.spawn(|| c.put_file("nar/shrinking.nar", &file, ""));
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !unfinished() {
            assert!(std::time::Instant::now() < deadline && !upload.is_finished(), "no multipart upload started");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The file now ends before the upload does: reading fails, and the upload must be aborted.
        std::fs::File::options().write(true).open(&file).unwrap().set_len(MIN_PART_SIZE).unwrap();
        let e = upload.join().unwrap().unwrap_err();
        assert!(chain(&e).contains("shrinking.nar: "), "{}", chain(&e));
    });
    assert!(!unfinished(), "{}", garage.cli_text(&["bucket", "info", "aborted"]));
    assert_eq!(c.get("nar/shrinking.nar").unwrap(), None);
}

/// `--keep` keeps the newest revision pins by their Created time, whatever their keys' order; only
/// equal times fall back to the keys.
#[test]
fn keep_newest_orders_revision_pins_by_created_then_key() {
    use narwhal_formats::store_path::StoreDir;
    let tmp = tempdir();
    let cache = narwhal_store::file::FileCache::writer(
        tmp.path().to_path_buf(),
        "file:///pins-test".to_owned(),
        "test",
        Duration::from_secs(1),
    )
    .unwrap();
    let pin = |rev: &str, created: u64| {
        let text = format!(
            "Name: web\nStorePath: /nix/store/0pqyvyw21p553pf74czgvqks0vjaqp0l-t1\nRevision: {rev}\nCreated: {created}\n"
        );
        cache.put(&format!("pins/web@{rev}"), text.as_bytes(), "text/plain").unwrap();
    };
    // Key order (a < b < c < d) is not creation order.
    pin("a", 30);
    pin("b", 10);
    pin("c", 20);
    pin("d", 20);
    cache
        .put(
            "pins/web",
            b"Name: web\nStorePath: /nix/store/0pqyvyw21p553pf74czgvqks0vjaqp0l-t1\nCreated: 30\n",
            "text/plain",
        )
        .unwrap();
    let deleted = narwhal_store::pin::keep_newest(&cache, &StoreDir::default(), "web", 2).unwrap();
    // a (30) and then d (20, which beats c on the key) stay.
    assert_eq!(deleted, ["pins/web@c", "pins/web@b"]);
    assert!(cache.exists("pins/web").unwrap(), "the latest pin always stays");
}

/// A directory's conditional replace (the GC lease's takeover) is atomic: of eight writers that
/// saw the same ETag and replace at once, exactly one succeeds, and the object is what it wrote.
#[test]
fn a_directorys_conditional_replace_has_one_winner() {
    let tmp = tempdir();
    let open = || {
        narwhal_store::file::FileCache::writer(
            tmp.path().to_path_buf(),
            "file:///cas-test".to_owned(),
            "test",
            Duration::from_secs(1),
        )
        .unwrap()
    };
    let first = open();
    for round in 0..5 {
        first.put("gc/lease.json", format!("round {round}").as_bytes(), "application/json").unwrap();
        let mut etag = String::new();
        first
            .list_objects("gc/", &mut |o| {
                if o.key == "gc/lease.json" {
                    etag = o.etag;
                }
            })
            .unwrap();
        let barrier = std::sync::Barrier::new(8);
        let won: Vec<(usize, bool)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let (barrier, etag, cache) = (&barrier, &etag, open());
                    s.spawn(move || {
                        barrier.wait();
                        let data = format!("writer {i}");
                        (i, cache.replace_if("gc/lease.json", data.as_bytes(), "application/json", etag).unwrap())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: Vec<usize> = won.iter().filter(|(_, w)| *w).map(|(i, _)| *i).collect();
        assert_eq!(winners.len(), 1, "round {round}: {won:?}");
        let now = String::from_utf8(first.get("gc/lease.json").unwrap().unwrap()).unwrap();
        assert_eq!(now, format!("writer {}", winners[0]));
    }
}
