//! The server's router, in-process, over a directory cache in a sandbox.
//!
//! The input reads like an HTTP request without the version:
//!
//! ```text
//! METHOD\n
//! /path?query\n
//! Name: value\n        (any number of header lines)
//! \n
//! body
//! ```
//!
//! Each input gets a fresh cache (the smallest path of `example/cache`) so
//! that one input's writes never change how the next one is answered.

use std::fs;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, Method, Request, StatusCode};
use narwhal_formats::signature::SecretKey;
use narwhal_formats::store_path::StoreDir;
use narwhal_serve::{metrics::Metrics, Backend, State, Tokens};
use narwhal_store::file::FileCache;
use tower::ServiceExt as _;

/// The push token the server accepts; seeds send it as `Authorization: Bearer …`.
pub const PUSH_TOKEN: &str = "fuzz-push-token-0123456789";

const CACHE_INFO: &[u8] = include_bytes!("../../../example/cache/nix-cache-info");
const NARINFO_NAME: &str = "5cnynnpam552yi3xkvljamav3a6d6iii.narinfo";
const NARINFO: &[u8] = include_bytes!("../../../example/cache/5cnynnpam552yi3xkvljamav3a6d6iii.narinfo");
const NAR_NAME: &str = "nar/08fpxdknnmkw02c2ymfvyaf6qiycv1zqdirsg4y16j6p48h7jw65.nar.xz";
const NAR: &[u8] =
    include_bytes!("../../../example/cache/nar/08fpxdknnmkw02c2ymfvyaf6qiycv1zqdirsg4y16j6p48h7jw65.nar.xz");
/// A response body read whole in the check is at most this long.
const MAX_BODY: usize = 64 << 20;

fn key() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(|| match SecretKey::generate("fuzz-serve-1") {
        Ok(k) => k,
        Err(e) => panic!("cannot generate a key (not the input's fault): {e}"),
    })
}

fn setup<T>(what: &str, r: std::io::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("cannot {what} (not the input's fault): {e}"))
}

/// The request in `data`, `None` when it is not one `http` can build.
fn request(data: &[u8]) -> Option<Request<Body>> {
    let mut rest = data;
    let mut line = || -> Option<&[u8]> {
        let at = rest.iter().position(|&b| b == b'\n')?;
        let (l, r) = rest.split_at(at);
        rest = r.get(1..).unwrap_or_default();
        Some(l)
    };
    let method = Method::from_bytes(line()?).ok()?;
    let uri = line()?;
    let mut builder = Request::builder().method(method).uri(uri);
    loop {
        let l = line()?;
        if l.is_empty() {
            break;
        }
        let at = l.iter().position(|&b| b == b':')?;
        let name = HeaderName::from_bytes(l.get(..at)?).ok()?;
        let value = l.get(at + 1..)?;
        let value = HeaderValue::from_bytes(value.strip_prefix(b" ").unwrap_or(value)).ok()?;
        builder = builder.header(name, value);
    }
    builder.body(Body::from(rest.to_vec())).ok()
}

/// No answer is a 500 (a handler's bug, or a storage task that panicked); no
/// answer shows a path of the file system; nothing is written outside the
/// cache and its upload directory, and no upload is left behind.
pub fn check(data: &[u8]) {
    let Some(req) = request(data) else { return };
    let outer = crate::temp_dir();
    let root = outer.path().join("cache");
    let uploads = outer.path().join("uploads");
    setup("create the cache", fs::create_dir_all(root.join("nar")));
    setup("create the upload directory", fs::create_dir(&uploads));
    setup("write nix-cache-info", fs::write(root.join("nix-cache-info"), CACHE_INFO));
    setup("write a narinfo", fs::write(root.join(NARINFO_NAME), NARINFO));
    setup("write a NAR", fs::write(root.join(NAR_NAME), NAR));

    let writer = Arc::new(FileCache::new(root.clone(), format!("file://{}", root.display())));
    let state = Arc::new(State {
        backend: setup("open the cache", Backend::dir(root.clone(), writer)),
        store_dir: StoreDir::default(),
        keys: vec![key().clone()],
        tokens: Tokens::new(&[PUSH_TOKEN.to_owned()], &[]),
        metrics: Metrics::default(),
        priority: 40,
        temp_dir: uploads.clone(),
        max_upload_bytes: 1 << 20,
    });
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => panic!("cannot start a runtime (not the input's fault): {e}"),
    };
    let (status, headers, body) = runtime.block_on(async {
        let response = match narwhal_serve::router(state).oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, MAX_BODY).await;
        (parts.status, parts.headers, body)
    });
    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "a 500: {body:?}");
    let body = match body {
        Ok(b) => b,
        Err(e) => panic!("the {status} response's body failed: {e}"),
    };
    assert!(headers.get(header::CONTENT_ENCODING).is_none(), "a response with a Content-Encoding");
    let outer_path = outer.path().to_string_lossy().into_owned();
    assert!(!contains(&body, outer_path.as_bytes()), "the {status} response shows a path: {body:?}");
    for (name, value) in &headers {
        assert!(!contains(value.as_bytes(), outer_path.as_bytes()), "header {name} shows a path");
    }
    drop(runtime);
    assert_eq!(crate::names_in(outer.path()), ["cache", "uploads"], "the server wrote beside its cache");
    assert!(crate::names_in(&uploads).is_empty(), "an upload was left behind");
    assert!(no_temporaries(&root), "a temporary file was left in the cache");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether no hidden (temporary) file is left anywhere in the cache.
fn no_temporaries(dir: &Path) -> bool {
    let Ok(entries) = fs::read_dir(dir) else { return true };
    entries.filter_map(Result::ok).all(|e| {
        let hidden = e.file_name().to_string_lossy().starts_with('.');
        !hidden && (!e.path().is_dir() || no_temporaries(&e.path()))
    })
}
