//! Errors as HTTP answers: a status and a short, plain-text reason.
//!
//! A body never holds a file system path or a backend URL: the details go to
//! the server's log, the client gets the status and what it did wrong.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Shown to the client.
    pub reason: String,
}

impl ApiError {
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self { status, reason: reason.into() }
    }

    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not found")
    }

    pub fn conflict(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, reason)
    }

    /// A failure of the server or its backend: logged in full, answered with 500 or 502.
    pub fn backend(context: &str, err: &dyn std::error::Error) -> Self {
        let mut chain = err.to_string();
        let mut source = err.source();
        while let Some(s) = source {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        tracing::error!(error = %chain, "{context}");
        Self::new(StatusCode::BAD_GATEWAY, format!("{context}: the cache's storage failed; see the server log"))
    }

    pub fn internal(context: &str) -> Self {
        tracing::error!("{context}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{context}; see the server log"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = self.reason;
        body.push('\n');
        (self.status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
    }
}

impl From<narwhal_store::StoreError> for ApiError {
    fn from(e: narwhal_store::StoreError) -> Self {
        match e.kind {
            narwhal_store::StoreErrorKind::NotFound => Self::not_found(),
            narwhal_store::StoreErrorKind::InvalidKey => Self::bad_request("invalid object name"),
            _ => Self::backend("storage request failed", &e),
        }
    }
}
