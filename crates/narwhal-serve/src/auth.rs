//! Who may read and who may write.
//!
//! Tokens arrive as `Authorization: Bearer TOKEN`, or as the password of
//! `Authorization: Basic …` (what Nix sends from a netrc file; the user name
//! is ignored). The server keeps only their SHA-256 digests and compares
//! digests, so neither the token nor its length shows in timing.

use axum::http::{header, HeaderMap, StatusCode};
use base64::Engine as _;
use narwhal_formats::hash::{Algorithm, Hash};

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

#[derive(Debug, Default)]
pub struct Tokens {
    push: Vec<[u8; 32]>,
    read: Vec<[u8; 32]>,
}

fn digest(token: &str) -> [u8; 32] {
    let h = Hash::of(Algorithm::Sha256, token.as_bytes());
    let mut out = [0; 32];
    out.copy_from_slice(h.digest());
    out
}

/// Equal without an early exit.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Tokens {
    pub fn new(push: &[String], read: &[String]) -> Self {
        Self { push: push.iter().map(|t| digest(t)).collect(), read: read.iter().map(|t| digest(t)).collect() }
    }

    pub fn reads_are_public(&self) -> bool {
        self.read.is_empty()
    }

    pub fn accepts_writes(&self) -> bool {
        !self.push.is_empty()
    }

    /// Whether `headers` carry what `access` needs; the error is the answer to send.
    pub fn check(&self, headers: &HeaderMap, access: Access) -> Result<(), ApiError> {
        if access == Access::Read && self.reads_are_public() {
            return Ok(());
        }
        if access == Access::Write && !self.accepts_writes() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "this cache is read-only: the server was started without push tokens",
            ));
        }
        let Some(presented) = presented_token(headers) else {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "a token is required (Authorization: Bearer TOKEN)"));
        };
        let d = digest(&presented);
        let push = self.push.iter().fold(false, |ok, t| ok | same(t, &d));
        let read = self.read.iter().fold(false, |ok, t| ok | same(t, &d));
        match access {
            Access::Write if push => Ok(()),
            Access::Read if push || read => Ok(()),
            Access::Write if read => Err(ApiError::new(StatusCode::FORBIDDEN, "this token may read but not write")),
            _ => Err(ApiError::new(StatusCode::UNAUTHORIZED, "the token is not valid for this cache")),
        }
    }
}

fn presented_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        return Some(match text.split_once(':') {
            Some((_, password)) => password.to_owned(),
            None => text,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[test]
    fn bearer_and_basic() {
        let t = Tokens::new(&["push-token-0123456789".into()], &["read-token-0123456789".into()]);
        let basic = base64::engine::general_purpose::STANDARD.encode("nix:push-token-0123456789");
        assert!(t.check(&headers("Bearer push-token-0123456789"), Access::Write).is_ok());
        assert!(t.check(&headers(&format!("Basic {basic}")), Access::Write).is_ok());
        assert!(t.check(&headers("Bearer read-token-0123456789"), Access::Read).is_ok());
        assert_eq!(
            t.check(&headers("Bearer read-token-0123456789"), Access::Write).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(t.check(&headers("Bearer nope"), Access::Read).unwrap_err().status, StatusCode::UNAUTHORIZED);
        assert_eq!(t.check(&HeaderMap::new(), Access::Write).unwrap_err().status, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn without_tokens_reads_are_public_and_writes_refused() {
        let t = Tokens::new(&[], &[]);
        assert!(t.check(&HeaderMap::new(), Access::Read).is_ok());
        assert_eq!(t.check(&headers("Bearer x"), Access::Write).unwrap_err().status, StatusCode::FORBIDDEN);
    }
}
