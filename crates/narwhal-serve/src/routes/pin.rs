//! `/pins/<name>[@<rev>]`: the pointers `narwhal pin` writes and `narwhal fetch pin:…` reads.
//! A pin is stored only when the path it names is in the cache.

use axum::extract::{Path, State};
use axum::response::Response;
use bytes::Bytes;
use narwhal_store::pin::{self, Pin};

use super::{blocking, ok, stored, writer};
use crate::error::ApiError;
use crate::AppState;

const CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// The key of `pins/<file>`, checked.
fn key(file: &str) -> Result<(String, Option<String>), ApiError> {
    let (name, rev) = match file.split_once('@') {
        Some((n, r)) => (n, Some(r)),
        None => (file, None),
    };
    pin::key(name, rev).map_err(|e| ApiError::bad_request(format!("invalid pin name: {e}")))?;
    Ok((name.to_owned(), rev.map(str::to_owned)))
}

pub async fn get(State(state): State<AppState>, Path(file): Path<String>) -> Result<Response, ApiError> {
    key(&file)?;
    state.backend.get(&format!("pins/{file}")).await?.map(|b| ok(CONTENT_TYPE, b)).ok_or_else(ApiError::not_found)
}

pub async fn put(State(state): State<AppState>, Path(file): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    let (name, rev) = key(&file)?;
    let w = writer(&state)?;
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the pin is not UTF-8"))?;
    let p = Pin::parse(text, &state.store_dir).map_err(|e| ApiError::bad_request(format!("invalid pin: {e}")))?;
    // `pins/NAME` is the latest pin, whatever its revision; `pins/NAME@REV` must be REV's.
    if p.name != name || (rev.is_some() && p.revision != rev) {
        return Err(ApiError::bad_request(format!("the pin names {}, not {file}", p.name)));
    }
    blocking(move || {
        // The one rule every pin writer keeps: a pin names a path the cache has.
        match narwhal_store::pin::check_target(w.as_ref(), &p) {
            Err(narwhal_store::pin::PinsError::NotInCache { .. }) => {
                return Err(ApiError::conflict(format!(
                    "{} is not in the cache; push it before pinning it",
                    p.path.base_name()
                )))
            }
            Err(narwhal_store::pin::PinsError::Store(e)) => return Err(e.into()),
            Err(e) => return Err(ApiError::bad_request(e.to_string())),
            Ok(()) => {}
        }
        Ok(w.put(&format!("{}{file}", narwhal_store::pin::PREFIX), &body, CONTENT_TYPE)?)
    })
    .await?;
    Ok(stored())
}

pub async fn delete(State(state): State<AppState>, Path(file): Path<String>) -> Result<Response, ApiError> {
    key(&file)?;
    let w = writer(&state)?;
    blocking(move || Ok(w.delete(&format!("pins/{file}"))?)).await?;
    Ok(stored())
}
