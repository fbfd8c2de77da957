//! A Nix binary cache over HTTP.
//!
//! [`router`] answers what Nix and narwhal ask a cache (`/nix-cache-info`,
//! `/<hash>.narinfo`, `/nar/…`, `/<hash>.ls`, `/log/…`, `/pins/…`, each with
//! HEAD beside GET) from one of three [`Backend`]s: a directory, an S3 bucket
//! (any `CacheWriter`) or the local Nix store. With push tokens it also takes
//! `PUT`s as `nix copy --to http://…` and `narwhal push` send them, under the
//! commit rule narwhal's push keeps: a narinfo is stored only once its NAR is
//! there and matches it, and once the narinfos of its references are there.
//! [`serve`] runs the router on a listener until a shutdown signal, then lets
//! the requests in flight finish.
//!
//! The server keeps no state of its own beyond counters, so several processes
//! can serve one bucket behind a load balancer.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod auth;
pub mod backend;
pub mod config;
pub mod error;
pub mod local;
pub mod metrics;
mod routes;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use narwhal_formats::signature::SecretKey;
use narwhal_formats::store_path::StoreDir;

pub use auth::Tokens;
pub use backend::Backend;
pub use config::Config;
pub use routes::router;

/// Everything a request handler can see.
pub struct State {
    pub backend: Backend,
    /// The store directory of the served cache.
    pub store_dir: StoreDir,
    /// Keys that sign every narinfo served.
    pub keys: Vec<SecretKey>,
    pub tokens: Tokens,
    pub metrics: metrics::Metrics,
    /// Announced in a generated `nix-cache-info`.
    pub priority: u64,
    /// Where uploads wait until they are stored.
    pub temp_dir: PathBuf,
    pub max_upload_bytes: u64,
}

pub type AppState = Arc<State>;

/// The most bytes a request's head (request line and headers) may take; more is 431.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long a client may take to send a request's head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long requests in flight may take to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Serves `state` on `listener` until `shutdown` completes, then waits up to
/// [`SHUTDOWN_GRACE`] for the connections in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt as _;

    let app = router(state);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.max_buf_size(MAX_HEAD_BYTES).timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                // Each request knows its client, so log lines can name it.
                let app = app.clone();
                let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(routes::Client(peer));
                    app.clone().oneshot(request)
                });
                let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: waiting for requests in flight");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => tracing::warn!("requests still in flight after the grace period"),
    }
    Ok(())
}
