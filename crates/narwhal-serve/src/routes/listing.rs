//! `/<hash>.ls`: the listing the cache stores, or one computed from the local store.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;

use super::{blocking, hash_part, ok, stored, writer};
use crate::backend::Backend;
use crate::error::ApiError;
use crate::AppState;

const CONTENT_TYPE: &str = "application/json";

pub async fn get(State(state): State<AppState>, hash: &str) -> Result<Response, ApiError> {
    let hash = hash_part(hash)?.to_owned();
    let found = match &state.backend {
        Backend::Local(local) => {
            let local = Arc::clone(local);
            blocking(move || local.listing(&hash).map_err(|e| ApiError::backend("cannot list a store path", &e)))
                .await?
                .map(Bytes::from)
        }
        backend => backend.get(&format!("{hash}.ls")).await?,
    };
    found.map(|b| ok(CONTENT_TYPE, b)).ok_or_else(ApiError::not_found)
}

pub async fn put(State(state): State<AppState>, hash: &str, body: Bytes) -> Result<Response, ApiError> {
    let hash = hash_part(hash)?.to_owned();
    let w = writer(&state)?;
    if !body.starts_with(b"{") || !body.ends_with(b"}") {
        return Err(ApiError::bad_request("a listing is a JSON object"));
    }
    blocking(move || Ok(w.put(&format!("{hash}.ls"), &body, CONTENT_TYPE)?)).await?;
    Ok(stored())
}
