use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use narwhal_formats::signature::SecretKey;
use narwhal_formats::store_path::StoreDir;
use narwhal_serve::{metrics::Metrics, Backend, State, Tokens};
use narwhal_store::file::FileCache;
use narwhal_testkit::TempDir;
use tower::ServiceExt as _;

const PUSH: &str = "push-token-for-the-router-tests";
const READ: &str = "read-token-for-the-router-tests";
/// The smallest path of `example/cache`: no references.
const HASH: &str = "5cnynnpam552yi3xkvljamav3a6d6iii";
const NAR: &str = "nar/08fpxdknnmkw02c2ymfvyaf6qiycv1zqdirsg4y16j6p48h7jw65.nar.xz";
/// Paths of `example/cache`: `GREET` references `GLIBC`; `HELLO` references both and [`HASH`].
const GLIBC: &str = "g05fxbp0ixfc8znmy8npi25fm15dhid4";
const GREET: &str = "anzxi8k3cd9nlymmjw5wr2im50x1k3g7";
const HELLO: &str = "jcqv5jcg6l7yiy1aics7586rih8bp30w";

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../example/cache")
}

/// A narinfo of `example/cache` and its NAR's key.
fn example_path(hash: &str) -> (String, String) {
    let narinfo = std::fs::read_to_string(example().join(format!("{hash}.narinfo"))).unwrap();
    let url = narinfo.lines().find_map(|l| l.strip_prefix("URL: ")).unwrap().to_owned();
    (narinfo, url)
}

/// A writable directory cache holding the paths `hashes` of `example/cache`.
struct Cache {
    dir: TempDir,
}

impl Cache {
    fn new(hashes: &[&str]) -> Self {
        let dir = narwhal_testkit::tempdir();
        std::fs::create_dir_all(dir.path().join("cache/nar")).unwrap();
        std::fs::create_dir(dir.path().join("uploads")).unwrap();
        let copy = |name: &str| std::fs::copy(example().join(name), dir.path().join("cache").join(name)).unwrap();
        copy("nix-cache-info");
        for hash in hashes {
            copy(&format!("{hash}.narinfo"));
            copy(&example_path(hash).1);
        }
        Self { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    fn state(&self, reads_need_a_token: bool) -> Arc<State> {
        let root = self.root();
        let writer = Arc::new(FileCache::new(root.clone(), format!("file://{}", root.display())));
        let reads: Vec<String> = if reads_need_a_token { vec![READ.to_owned()] } else { Vec::new() };
        Arc::new(State {
            backend: Backend::dir(root, writer).unwrap(),
            store_dir: StoreDir::default(),
            keys: vec![SecretKey::generate("router-test-1").unwrap()],
            tokens: Tokens::new(&[PUSH.to_owned()], &reads),
            metrics: Metrics::default(),
            priority: 40,
            temp_dir: self.dir.path().join("uploads"),
            max_upload_bytes: 1 << 20,
        })
    }

    fn file(&self, key: &str) -> Vec<u8> {
        std::fs::read(self.root().join(key)).unwrap()
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn send(state: &Arc<State>, method: Method, uri: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = narwhal_serve::router(Arc::clone(state)).oneshot(request.body(Body::from(body)).unwrap()).await;
    let (parts, body) = match response {
        Ok(r) => r.into_parts(),
        Err(never) => match never {},
    };
    let body = axum::body::to_bytes(body, 64 << 20).await.unwrap().to_vec();
    Answer { status: parts.status, headers: parts.headers, body }
}

async fn get(state: &Arc<State>, uri: &str) -> Answer {
    send(state, Method::GET, uri, &[], Vec::new()).await
}

async fn put(state: &Arc<State>, uri: &str, token: &str, body: Vec<u8>) -> Answer {
    let auth = format!("Bearer {token}");
    send(state, Method::PUT, uri, &[("authorization", &auth)], body).await
}

#[tokio::test]
async fn reads_answer_with_the_stored_bytes_signed_or_4xx() {
    let cache = Cache::new(&[HASH]);
    let state = cache.state(false);
    let info = get(&state, "/nix-cache-info").await;
    assert_eq!(info.status, StatusCode::OK);
    assert_eq!(info.body, cache.file("nix-cache-info"));
    let head = send(&state, Method::HEAD, "/nix-cache-info", &[], Vec::new()).await;
    assert_eq!((head.status, head.body.len()), (StatusCode::OK, 0));
    assert_eq!(get(&state, "/health").await.status, StatusCode::OK);

    let narinfo = get(&state, &format!("/{HASH}.narinfo")).await;
    assert_eq!(narinfo.status, StatusCode::OK);
    assert!(narinfo.text().contains("\nSig: router-test-1:"), "{}", narinfo.text());
    assert!(narinfo.text().contains("\nSig: narwhal-example-1:"), "{}", narinfo.text());
    assert_eq!(get(&state, &format!("/{}.narinfo", "1".repeat(32))).await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&state, "/not-a-hash.narinfo").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(get(&state, "/somewhere/else").await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&state, "/favicon.ico").await.status, StatusCode::NOT_FOUND);

    let nar = get(&state, &format!("/{NAR}")).await;
    assert_eq!(nar.status, StatusCode::OK);
    assert_eq!(nar.body, cache.file(NAR));
    assert!(nar.headers.get(header::CONTENT_ENCODING).is_none());
    let part = send(&state, Method::GET, &format!("/{NAR}"), &[("range", "bytes=0-9")], Vec::new()).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.body, cache.file(NAR)[..10]);
    let beyond = send(&state, Method::GET, &format!("/{NAR}"), &[("range", "bytes=100000-")], Vec::new()).await;
    assert_eq!(beyond.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(get(&state, "/nar/../nix-cache-info").await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&state, "/nar/not-a-nar").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(get(&state, "/metrics").await.status, StatusCode::OK);
}

#[tokio::test]
async fn writes_need_the_push_token() {
    let cache = Cache::new(&[HASH]);
    let state = cache.state(true);
    let pin = format!("Name: web\nStorePath: /nix/store/{HASH}-deploy-data\nCreated: 1\n");
    let none = send(&state, Method::PUT, "/pins/web", &[], pin.clone().into_bytes()).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert!(none.headers.contains_key(header::WWW_AUTHENTICATE));
    assert_eq!(put(&state, "/pins/web", "wrong", pin.clone().into_bytes()).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(put(&state, "/pins/web", READ, pin.clone().into_bytes()).await.status, StatusCode::FORBIDDEN);
    assert!(!cache.root().join("pins/web").exists());
    // Reads need a token too here: the read token or the push token.
    assert_eq!(get(&state, "/nix-cache-info").await.status, StatusCode::UNAUTHORIZED);
    let auth = format!("Bearer {READ}");
    let read = send(&state, Method::GET, "/nix-cache-info", &[("authorization", &auth)], Vec::new()).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(get(&state, "/health").await.status, StatusCode::OK);

    assert_eq!(put(&state, "/pins/web", PUSH, pin.clone().into_bytes()).await.status, StatusCode::NO_CONTENT);
    assert_eq!(cache.file("pins/web"), pin.as_bytes());
    let gone = format!("Name: web\nStorePath: /nix/store/{GREET}-deploy-greet\nCreated: 2\n");
    assert_eq!(put(&state, "/pins/web", PUSH, gone.into_bytes()).await.status, StatusCode::CONFLICT);
    assert_eq!(cache.file("pins/web"), pin.as_bytes());
    let auth = format!("Bearer {PUSH}");
    let deleted = send(&state, Method::DELETE, "/pins/web", &[("authorization", &auth)], Vec::new()).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(!cache.root().join("pins/web").exists());
}

#[tokio::test]
async fn uploads_keep_the_commit_rule() {
    let cache = Cache::new(&[HASH, GLIBC]);
    let state = cache.state(false);
    let (narinfo, url) = example_path(GREET);
    let nar = std::fs::read(example().join(&url)).unwrap();
    let narinfo_put = |hash: &'static str, body: String| {
        let state = Arc::clone(&state);
        async move { put(&state, &format!("/{hash}.narinfo"), PUSH, body.into_bytes()).await }
    };

    // The narinfo before its NAR.
    let early = narinfo_put(GREET, narinfo.clone()).await;
    assert_eq!(early.status, StatusCode::CONFLICT, "{}", early.text());
    // A NAR under another name than its FileHash, then under its own.
    let wrong = put(&state, &format!("/nar/{}.nar.xz", "0".repeat(52)), PUSH, nar.clone()).await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "{}", wrong.text());
    assert_eq!(put(&state, &format!("/{url}"), PUSH, nar.clone()).await.status, StatusCode::NO_CONTENT);
    assert_eq!(cache.file(&url), nar);
    // A narinfo whose references are not all in: HELLO needs GREET's.
    let missing = narinfo_put(HELLO, example_path(HELLO).0).await;
    assert_eq!(missing.status, StatusCode::CONFLICT, "{}", missing.text());
    assert!(missing.text().contains("reference"), "{}", missing.text());
    assert!(!cache.root().join(format!("{HELLO}.narinfo")).exists());
    // GREET's reference (GLIBC) is there: committed; again, a no-op.
    for _ in 0..2 {
        let a = narinfo_put(GREET, narinfo.clone()).await;
        assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text());
    }
    assert_eq!(cache.file(&format!("{GREET}.narinfo")), narinfo.as_bytes());
    // Sent under another path's name.
    assert_eq!(narinfo_put(HELLO, narinfo.clone()).await.status, StatusCode::BAD_REQUEST);
    // Too large.
    let big = put(&state, &format!("/nar/{}.nar", "0".repeat(52)), PUSH, vec![0; (1 << 20) + 1]).await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Nothing of the refused uploads is left.
    assert_eq!(std::fs::read_dir(cache.dir.path().join("uploads")).unwrap().count(), 0);
}

#[tokio::test]
async fn a_narinfo_is_checked_against_its_nar_read_back_naming_the_field_that_differs() {
    let cache = Cache::new(&[HASH, GLIBC]);
    let state = cache.state(false);
    let (narinfo, url) = example_path(GREET);
    let nar = std::fs::read(example().join(&url)).unwrap();
    assert_eq!(put(&state, &format!("/{url}"), PUSH, nar).await.status, StatusCode::NO_CONTENT);
    let with = |field: &str, value: &str| {
        narinfo
            .lines()
            .map(|l| if l.starts_with(&format!("{field}: ")) { format!("{field}: {value}") } else { l.to_owned() })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    };
    let zeros = format!("sha256:{}", "0".repeat(52));
    for (field, value, says) in [
        ("FileHash", zeros.as_str(), "FileHash does not match"),
        ("FileSize", "1", "FileSize does not match"),
        ("NarSize", "1", "NarSize does not match"),
        ("NarHash", zeros.as_str(), "NarHash does not match"),
        ("Compression", "zstd", "does not decompress as zstd"),
    ] {
        let a = put(&state, &format!("/{GREET}.narinfo"), PUSH, with(field, value).into_bytes()).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{field}: {}", a.text());
        assert!(a.text().contains(says), "{field}: {}", a.text());
        assert!(!cache.root().join(format!("{GREET}.narinfo")).exists(), "{field}");
    }
    let a = put(&state, &format!("/{GREET}.narinfo"), PUSH, narinfo.clone().into_bytes()).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text());
}
