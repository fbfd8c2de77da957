//! `/health` and `/metrics`.

use axum::extract::State;
use axum::response::Response;

use super::ok;
use crate::AppState;

pub async fn health() -> Response {
    ok("text/plain; charset=utf-8", "ok\n")
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    ok("text/plain; version=0.0.4; charset=utf-8", state.metrics.render())
}
