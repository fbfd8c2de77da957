//! Cache URLs in Nix's syntax: `file:///dir`, a plain `/dir`,
//! `http(s)://host[:port]/path`, each with optional `?key=value&…` parameters
//! (`priority`, `compression`, `secret-key`, …).

use std::fmt;
use std::path::PathBuf;

use crate::error::{StoreError, StoreErrorKind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    File(PathBuf),
    /// Base URL without a trailing `/` and without the query.
    Http(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheUrl {
    pub location: Location,
    pub params: Vec<(String, String)>,
}

impl CacheUrl {
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        let bad = |why: &str| StoreError::new(s, StoreErrorKind::InvalidUrl(why.to_owned()));
        let (base, query) = match s.split_once('?') {
            Some((b, q)) => (b, q),
            None => (s, ""),
        };
        let params = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (percent_decode(k), percent_decode(v)),
                None => (percent_decode(p), String::new()),
            })
            .collect();
        let location = if let Some(path) = base.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(bad("file:// URLs need an absolute path, as in file:///var/cache/nix"));
            }
            Location::File(PathBuf::from(percent_decode(path)))
        } else if base.starts_with('/') {
            Location::File(PathBuf::from(base))
        } else if base.starts_with("http://") || base.starts_with("https://") {
            let rest = base.split_once("://").map_or("", |(_, r)| r);
            if rest.is_empty() || rest.starts_with('/') {
                return Err(bad("the URL has no host"));
            }
            Location::Http(base.trim_end_matches('/').to_owned())
        } else if base.starts_with("s3://") {
            return Err(bad("s3:// caches are not readable by this narwhal yet; serve the bucket over HTTP"));
        } else {
            return Err(bad("expected file:///path, /path, http://… or https://…"));
        };
        Ok(Self { location, params })
    }

    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The object `key` under this cache, for messages and HTTP requests.
    pub fn join(&self, key: &str) -> String {
        match &self.location {
            Location::File(dir) => format!("file://{}/{key}", dir.display()),
            Location::Http(base) => format!("{base}/{key}"),
        }
    }
}

impl fmt::Display for CacheUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::File(dir) => write!(f, "file://{}", dir.display()),
            // Credentials never appear in messages.
            Location::Http(base) => match base.split_once('@') {
                Some((scheme_user, host)) if scheme_user.contains("://") => {
                    let scheme = scheme_user.split("://").next().unwrap_or("http");
                    write!(f, "{scheme}://…@{host}")
                }
                _ => f.write_str(base),
            },
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nix_syntax() {
        let u = CacheUrl::parse("file:///var/cache?priority=30&compression=zstd").unwrap();
        assert_eq!(u.location, Location::File("/var/cache".into()));
        assert_eq!(u.param("priority"), Some("30"));
        let u = CacheUrl::parse("https://cache.example.org/").unwrap();
        assert_eq!(u.location, Location::Http("https://cache.example.org".into()));
        assert_eq!(u.join("nix-cache-info"), "https://cache.example.org/nix-cache-info");
        assert!(CacheUrl::parse("ftp://x").is_err());
        assert!(CacheUrl::parse("file://relative").is_err());
        assert_eq!(CacheUrl::parse("/a%20b").unwrap().location, Location::File("/a%20b".into()));
        assert_eq!(CacheUrl::parse("file:///a%20b").unwrap().location, Location::File("/a b".into()));
    }
}
