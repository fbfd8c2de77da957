//! `/nix-cache-info`: the cache's own file, or one made from the server's settings.

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use narwhal_formats::cache_info::CacheInfo;

use super::{blocking, ok, stored, writer};
use crate::backend::Backend;
use crate::error::ApiError;
use crate::AppState;

const CONTENT_TYPE: &str = narwhal_store::keys::CACHE_INFO_TYPE;

pub async fn get(State(state): State<AppState>) -> Result<Response, ApiError> {
    if !matches!(state.backend, Backend::Local(_)) {
        if let Some(bytes) = state.backend.get(narwhal_store::keys::CACHE_INFO).await? {
            return Ok(ok(CONTENT_TYPE, bytes));
        }
    }
    Ok(ok(
        CONTENT_TYPE,
        format!("StoreDir: {}\nWantMassQuery: 1\nPriority: {}\n", state.store_dir.as_str(), state.priority),
    ))
}

/// Nix writes this file when it first copies to a cache that lacks it.
pub async fn put(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let w = writer(&state)?;
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("nix-cache-info is not UTF-8"))?;
    let info = CacheInfo::parse(text).map_err(|e| ApiError::bad_request(format!("invalid nix-cache-info: {e}")))?;
    if info.store_dir != state.store_dir {
        return Err(ApiError::bad_request(format!(
            "this cache holds paths of {}, not {}",
            state.store_dir.as_str(),
            info.store_dir.as_str()
        )));
    }
    blocking(move || Ok(w.put(narwhal_store::keys::CACHE_INFO, &body, CONTENT_TYPE)?)).await?;
    Ok(stored())
}
