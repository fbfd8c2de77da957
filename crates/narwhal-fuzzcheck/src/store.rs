//! narwhal-store's text formats: cache URLs and pins.

use narwhal_formats::store_path::StoreDir;
use narwhal_store::pin::{self, Pin};
use narwhal_store::s3::S3Config;
use narwhal_store::{check_key, CacheUrl, Location};

/// A cache URL that parses has a location of the kind its scheme names,
/// shows no credentials, and (when nothing in it is percent-encoded) parses
/// again from how it is shown.
pub fn cache_url(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let Ok(url) = CacheUrl::parse(s) else { return };
    let shown = url.to_string();
    let _ = url.join("nix-cache-info");
    for (k, _) in &url.params {
        assert!(url.param(k).is_some(), "param {k:?} is listed but not found");
    }
    match &url.location {
        Location::File(dir) => assert!(dir.is_absolute(), "file location {} is relative", dir.display()),
        Location::Http(base) => {
            assert!(base.starts_with("http://") || base.starts_with("https://"));
            assert!(!base.ends_with('/'), "the base {base:?} keeps a trailing /");
            assert!(!base.contains('?'), "the base {base:?} keeps the query");
            let authority = base.split_once("://").map_or("", |(_, r)| r).split('/').next().unwrap_or_default();
            if authority.contains('@') {
                // Shown as scheme://…@host: nothing of the user information may remain.
                let rest = shown.split_once("://").map_or("", |(_, r)| r);
                let shown_host = rest.strip_prefix("…@").unwrap_or_else(|| panic!("{shown:?} shows the credentials"));
                let shown_host = shown_host.split('/').next().unwrap_or_default();
                assert!(!shown_host.contains('@'), "{shown:?} shows part of the credentials of {authority:?}");
            }
        }
        Location::S3 { bucket, prefix } => {
            assert!(!bucket.is_empty());
            assert!(prefix.is_empty() || check_key(prefix).is_ok(), "prefix {prefix:?} escapes the bucket");
            let _ = S3Config::from_url_and_env(&url, |_| None);
        }
    }
    if !s.contains('%') && !shown.contains('@') {
        match CacheUrl::parse(&shown) {
            Ok(again) => assert_eq!(again.location, url.location, "{s:?} shown as {shown:?} parses elsewhere"),
            Err(e) => panic!("{s:?} is shown as {shown:?}, which does not parse: {e}"),
        }
    }
}

/// A pin that parses prints back to text that parses the same; pin keys
/// are made only from valid names, which cannot leave `pins/`.
pub fn pin(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let dir = StoreDir::default();
    if let Ok(p) = Pin::parse(text, &dir) {
        let printed = p.to_string();
        assert_eq!(Pin::parse(&printed, &dir).as_ref(), Ok(&p), "print -> parse changed the pin:\n{printed}");
        let key = pin::key(&p.name, p.revision.as_deref());
        assert!(key.is_ok(), "a parsed pin has no key: {key:?}");
    }
    let (name, rev) = match text.split_once('@') {
        Some((n, r)) => (n, Some(r)),
        None => (text, None),
    };
    if let Ok(key) = pin::key(name, rev) {
        assert!(check_key(&key).is_ok(), "pin key {key:?} is not a valid cache key");
        let rest = key.strip_prefix(pin::PREFIX).unwrap_or_default();
        assert!(!rest.is_empty() && !rest.contains('/'), "pin key {key:?} leaves pins/");
    }
}
