//! The routes, one module each; this one wires them and runs every request
//! through access control, metrics and the request log.

mod cache_info;
mod listing;
mod log;
mod nar;
mod narinfo;
mod ops;
mod pin;

use std::time::Instant;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;

use crate::auth::Access;
use crate::error::ApiError;
use crate::metrics::Route;
use crate::AppState;

/// The largest small object (narinfo, listing, log, pin) a PUT may send.
const MAX_SMALL_PUT: usize = 64 << 20;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/nix-cache-info", get(cache_info::get).put(cache_info::put))
        .route("/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .route("/{file}", get(top_get).put(top_put))
        .route("/nar/{file}", get(nar::get).put(nar::put))
        .route("/log/{file}", get(log::get).put(log::put))
        .route("/pins/{file}", get(pin::get).put(pin::put).delete(pin::delete))
        .fallback(|| async { ApiError::not_found() })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_SMALL_PUT))
        .layer(middleware::from_fn_with_state(state.clone(), access_and_log))
        .with_state(state)
}

/// `/<hash>.narinfo` and `/<hash>.ls`.
async fn top_get(state: State<AppState>, Path(file): Path<String>) -> Result<Response, ApiError> {
    if let Some(hash) = file.strip_suffix(".narinfo") {
        narinfo::get(state, hash).await
    } else if let Some(hash) = file.strip_suffix(".ls") {
        listing::get(state, hash).await
    } else {
        Err(ApiError::not_found())
    }
}

async fn top_put(state: State<AppState>, Path(file): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    if let Some(hash) = file.strip_suffix(".narinfo") {
        narinfo::put(state, hash, body).await
    } else if let Some(hash) = file.strip_suffix(".ls") {
        listing::put(state, hash, body).await
    } else {
        Err(ApiError::not_found())
    }
}

#[allow(clippy::case_sensitive_file_extension_comparisons)] // URL paths, not file names
fn route_of(path: &str) -> Route {
    if path == "/nix-cache-info" {
        Route::CacheInfo
    } else if path.starts_with("/nar/") {
        Route::Nar
    } else if path.starts_with("/log/") {
        Route::Log
    } else if path.starts_with("/pins/") {
        Route::Pin
    } else if path.ends_with(".narinfo") {
        Route::Narinfo
    } else if path.ends_with(".ls") {
        Route::Listing
    } else {
        Route::Other
    }
}

/// The address of the client a request came from (set per connection by [`crate::serve`]).
#[derive(Debug, Clone, Copy)]
pub struct Client(pub std::net::SocketAddr);

/// How log lines name a request's client: its address, or `-` (a request from no connection).
struct Peer(Option<Client>);

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(Client(addr)) => addr.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// Every request: access control, the handler, metrics and the request log. A panicking handler
/// (a bug) answers 500 with a generic body and is counted, instead of dropping the connection;
/// the process's panic hook has logged where it happened.
async fn access_and_log(State(state): State<AppState>, request: Request, next: Next) -> Response {
    use futures_util::FutureExt as _;
    use tracing::Instrument as _;
    let start = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let client = Peer(request.extensions().get::<Client>().copied());
    // Every line logged while the request runs (a backend failure, say) names the client and the object.
    let span = tracing::info_span!("request", client = %client, method = %method, path = %path);
    let route = route_of(&path);
    let write = !matches!(method, Method::GET | Method::HEAD);
    // Metrics tell what a private cache holds: they need a token when reads do.
    let open = path == "/health" || (path == "/metrics" && state.tokens.reads_are_public());
    let checked = if open {
        Ok(())
    } else {
        state.tokens.check(request.headers(), if write { Access::Write } else { Access::Read })
    };
    let mut response = match checked {
        Ok(()) => {
            let handled = std::panic::AssertUnwindSafe(next.run(request).instrument(span)).catch_unwind();
            handled.await.unwrap_or_else(|_| {
                state.metrics.panics.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                ApiError::internal("internal error").into_response()
            })
        }
        Err(e) => {
            let mut r = e.into_response();
            if r.status() == axum::http::StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"narwhal\""));
            }
            r
        }
    };
    let status = response.status().as_u16();
    if write && status >= 400 {
        state.metrics.writes_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    state.metrics.record(route, status, write);
    // A NAR must reach Nix exactly as stored: no layer may add an encoding.
    response.headers_mut().remove(header::CONTENT_ENCODING);
    tracing::info!(
        client = %client,
        method = %method,
        path = %path,
        status,
        ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        "request"
    );
    response
}

/// A 200 answer with a body and its content type.
fn ok(content_type: &'static str, body: impl Into<axum::body::Body>) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body.into()).into_response()
}

/// The answer to a successful write.
fn stored() -> Response {
    axum::http::StatusCode::NO_CONTENT.into_response()
}

/// The writable cache, or the refusal the local store gives.
fn writer(state: &AppState) -> Result<std::sync::Arc<dyn narwhal_store::CacheWriter>, ApiError> {
    state.backend.writer().cloned().ok_or_else(|| {
        ApiError::new(axum::http::StatusCode::METHOD_NOT_ALLOWED, "the local Nix store is served read-only")
    })
}

/// Runs a blocking storage call on tokio's blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    crate::backend::blocking(f).await?
}

/// A checked hash part (32 nix32 characters), before any lookup.
fn hash_part(hash: &str) -> Result<&str, ApiError> {
    if narwhal_formats::store_path::is_hash_part(hash) {
        Ok(hash)
    } else {
        Err(ApiError::bad_request("invalid store path hash: expected 32 characters of Nix's base-32"))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use axum::body::Body;
    use narwhal_store::{BinaryCache, CacheWriter, StoreError};
    use tower::ServiceExt as _;

    use super::*;
    use crate::{auth::Tokens, backend::Backend, State};

    /// A storage backend with a bug: every call panics.
    struct Panicking;

    impl BinaryCache for Panicking {
        fn url(&self) -> &'static str {
            "panicking://"
        }
        fn get(&self, _: &str) -> Result<Option<Vec<u8>>, StoreError> {
            panic!("a bug in the storage backend")
        }
        fn open(&self, _: &str) -> Result<Box<dyn std::io::Read + Send>, StoreError> {
            panic!("a bug in the storage backend")
        }
    }

    impl CacheWriter for Panicking {
        fn exists(&self, _: &str) -> Result<bool, StoreError> {
            panic!("a bug in the storage backend")
        }
        fn put(&self, _: &str, _: &[u8], _: &str) -> Result<(), StoreError> {
            panic!("a bug in the storage backend")
        }
        fn put_file(&self, _: &str, _: &std::path::Path, _: &str) -> Result<(), StoreError> {
            panic!("a bug in the storage backend")
        }
        fn delete(&self, _: &str) -> Result<(), StoreError> {
            panic!("a bug in the storage backend")
        }
        fn list(&self, _: &str) -> Result<Vec<String>, StoreError> {
            panic!("a bug in the storage backend")
        }
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_is_counted_and_the_router_goes_on() {
        let state = Arc::new(State {
            backend: Backend::Remote(Arc::new(Panicking)),
            store_dir: narwhal_formats::store_path::StoreDir::default(),
            keys: Vec::new(),
            tokens: Tokens::new(&[], &[]),
            metrics: crate::metrics::Metrics::default(),
            priority: 40,
            temp_dir: std::env::temp_dir(),
            max_upload_bytes: 1 << 20,
        });
        let app = router(Arc::clone(&state));
        let hash = "0pqyvyw21p553pf74czgvqks0vjaqp0l";
        for _ in 0..2 {
            let request = Request::get(format!("/{hash}.narinfo")).body(Body::empty()).unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), axum::http::StatusCode::INTERNAL_SERVER_ERROR);
            let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
            assert!(!body.windows(5).any(|w| w == b"a bug"), "the panic's text stays in the log");
        }
        assert_eq!(state.metrics.panics.load(Ordering::Relaxed), 2);
        let metrics = app.oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
        let text = axum::body::to_bytes(metrics.into_body(), 1 << 16).await.unwrap();
        assert!(String::from_utf8_lossy(&text).contains("narwhal_panics_total 2"));
    }
}
