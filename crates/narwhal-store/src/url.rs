//! Cache URLs in Nix's syntax: `file:///dir`, a plain `/dir`,
//! `http(s)://host[:port]/path`, `s3://bucket[/prefix]`, each with optional
//! `?key=value&…` parameters (`priority`, `compression`, `secret-key`, and for
//! S3 `region`, `endpoint`, `profile`, `scheme`, …).

use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::OsStringExt as _;
use std::path::PathBuf;

use crate::error::{StoreError, StoreErrorKind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    File(PathBuf),
    /// Base URL without a trailing `/` and without the query.
    Http(String),
    /// An S3 bucket and the key prefix the cache lives under (no leading or
    /// trailing `/`, empty for the bucket's root).
    S3 {
        bucket: String,
        prefix: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheUrl {
    pub location: Location,
    pub params: Vec<(String, String)>,
}

impl CacheUrl {
    /// Refuses a query parameter not in [`PARAMS`], naming the ones it knows.
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
            .collect::<Vec<(String, String)>>();
        if let Some((k, _)) = params.iter().find(|(k, _)| !PARAMS.contains(&k.as_str())) {
            return Err(bad(&format!("unknown parameter {k:?}: the parameters are {}", PARAMS.join(", "))));
        }
        let location = if let Some(path) = base.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(bad("file:// URLs need an absolute path, as in file:///var/cache/nix"));
            }
            Location::File(PathBuf::from(OsString::from_vec(percent_encoding::percent_decode_str(path).collect())))
        } else if base.starts_with('/') {
            Location::File(PathBuf::from(base))
        } else if base.starts_with("http://") || base.starts_with("https://") {
            let rest = base.split_once("://").map_or("", |(_, r)| r);
            if rest.is_empty() || rest.starts_with('/') {
                return Err(bad("the URL has no host"));
            }
            Location::Http(base.trim_end_matches('/').to_owned())
        } else if let Some(rest) = base.strip_prefix("s3://") {
            parse_s3(rest).map_err(bad)?
        } else {
            return Err(bad("expected file:///path, /path, http://…, https://… or s3://bucket"));
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
            Location::S3 { bucket, prefix } if prefix.is_empty() => format!("s3://{bucket}/{key}"),
            Location::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}/{key}"),
        }
    }
}

/// The query parameters a cache URL may have: Nix's where narwhal uses them (`compression`,
/// `secret-key`, `priority`; S3's `region`, `endpoint`, `scheme`, `profile`), and two that Nix users
/// write on substituters and that change nothing here (`trusted`, `want-mass-query`).
pub const PARAMS: &[&str] =
    &["compression", "secret-key", "priority", "region", "endpoint", "scheme", "profile", "trusted", "want-mass-query"];

/// `bucket[/prefix]`, the part of an `s3://` URL before the query.
fn parse_s3(rest: &str) -> Result<Location, &'static str> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err("the s3:// URL has no bucket, as in s3://my-cache");
    }
    // S3's rules, loosely (legacy buckets allow capitals and `_`); never
    // credentials or a port, which belong in `endpoint=`.
    if !bucket.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')) {
        return Err("an S3 bucket name has only letters, digits, '.', '-' and '_'; \
                    put the server in ?endpoint=… and credentials in the environment");
    }
    let prefix = percent_decode(prefix.trim_matches('/'));
    if !prefix.is_empty() && crate::check_key(&prefix).is_err() {
        return Err("the key prefix after the bucket must be relative, without '.', '..' or empty components");
    }
    Ok(Location::S3 { bucket: bucket.to_owned(), prefix })
}

impl fmt::Display for CacheUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::File(dir) => write!(f, "file://{}", dir.display()),
            // Credentials never appear in messages. They end at the authority's last '@' (a
            // password may hold one), and the authority ends at the first '/'.
            Location::Http(base) => {
                let (scheme, rest) = base.split_once("://").unwrap_or(("http", base));
                let authority_len = rest.find('/').unwrap_or(rest.len());
                match rest.get(..authority_len).and_then(|a| a.rfind('@')).and_then(|at| rest.get(at + 1..)) {
                    Some(host) => write!(f, "{scheme}://…@{host}"),
                    None => f.write_str(base),
                }
            }
            Location::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Location::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
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

    #[test]
    fn parses_s3() {
        let u = CacheUrl::parse("s3://nix-cache?region=eu-west-1&endpoint=http://127.0.0.1:3900&profile=ci").unwrap();
        assert_eq!(u.location, Location::S3 { bucket: "nix-cache".into(), prefix: String::new() });
        assert_eq!(u.param("region"), Some("eu-west-1"));
        assert_eq!(u.param("endpoint"), Some("http://127.0.0.1:3900"));
        assert_eq!(u.param("profile"), Some("ci"));
        assert_eq!(u.to_string(), "s3://nix-cache");
        assert_eq!(u.join("nix-cache-info"), "s3://nix-cache/nix-cache-info");

        let u = CacheUrl::parse("s3://b/team/cache/").unwrap();
        assert_eq!(u.location, Location::S3 { bucket: "b".into(), prefix: "team/cache".into() });
        assert_eq!(u.to_string(), "s3://b/team/cache");
        assert_eq!(u.join("nar/x.nar.xz"), "s3://b/team/cache/nar/x.nar.xz");

        for bad in ["s3://", "s3:///prefix", "s3://key:secret@bucket", "s3://b/../x", "s3://b/a//c"] {
            let e = CacheUrl::parse(bad).unwrap_err();
            assert!(matches!(e.kind, StoreErrorKind::InvalidUrl(_)), "{bad}: {e:?}");
        }
    }
}
