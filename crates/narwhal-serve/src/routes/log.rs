//! `/log/<derivation>`: build logs, as `nix log` and `nix copy --to` use them.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use bytes::Bytes;
use narwhal_formats::store_path::StorePath;

use super::{blocking, ok, stored, writer};
use crate::backend::{blocking_body, Backend};
use crate::error::ApiError;
use crate::AppState;

const CONTENT_TYPE: &str = "text/plain; charset=utf-8";

fn check(file: &str) -> Result<StorePath, ApiError> {
    StorePath::from_base_name(file)
        .map_err(|_| ApiError::bad_request("invalid log name: expected a derivation's store path base name"))
}

pub async fn get(State(state): State<AppState>, Path(file): Path<String>) -> Result<Response, ApiError> {
    let drv = check(&file)?;
    match &state.backend {
        Backend::Local(local) => {
            let local = Arc::clone(local);
            let log = blocking(move || Ok(local.log(&drv))).await?;
            log.map(|r| ok(CONTENT_TYPE, blocking_body(r))).ok_or_else(ApiError::not_found)
        }
        backend => {
            backend.get(&format!("log/{file}")).await?.map(|b| ok(CONTENT_TYPE, b)).ok_or_else(ApiError::not_found)
        }
    }
}

pub async fn put(State(state): State<AppState>, Path(file): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    check(&file)?;
    let w = writer(&state)?;
    blocking(move || Ok(w.put(&format!("log/{file}"), &body, CONTENT_TYPE)?)).await?;
    Ok(stored())
}
