//! Every parser and decoder of narwhal-store, fed arbitrary bytes and arbitrary
//! UTF-8, answers Ok or Err and never panics (the fuzz targets in fuzz/ go deeper).

use std::io::Read as _;

use narwhal_formats::store_path::StoreDir;
use narwhal_store::http_writer::{netrc_lookup, HttpAuth};
use narwhal_store::pin::{self, Pin};
use narwhal_store::s3::{parse_credentials, part_size, S3Config};
use narwhal_store::{check_key, hydra, CacheUrl, Compression};
use proptest::prelude::*;

/// Text shaped like cache URLs, pins and credentials files, with percent signs
/// and multi-byte characters where the parsers slice.
fn near_text() -> impl Strategy<Value = String> {
    "(file://|s3://|https://|http://|/|\\?|&|=|%|%2|%2F|é|€|💥|@|:|[a-z0-9]{1,8}|Name: |StorePath: |\n|\\[|\\]|machine |login |password )*"
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), near_text()]
}

fn text_parsers(s: &str) {
    if let Ok(url) = CacheUrl::parse(s) {
        let _ = url.to_string();
        let _ = url.join("nix-cache-info");
        let _ = S3Config::from_url_and_env(&url, |_| None);
    }
    let _ = s.parse::<Compression>();
    let dir = StoreDir::default();
    let _ = Pin::parse(s, &dir);
    let _ = pin::check_name(s);
    let _ = pin::check_revision(s);
    let _ = pin::key(s, Some(s));
    let _ = check_key(s);
    let _ = hydra::is_job_url(s);
    let _ = netrc_lookup(s, "cache.example.org");
    let _ = HttpAuth::resolve_netrc(s, &[]);
    let _ = parse_credentials(s, "default");
}

proptest! {
    #[test]
    fn text_parsers_never_panic(s in text()) {
        text_parsers(&s);
    }

    #[test]
    fn cache_urls_with_percent_escapes_never_panic(
        scheme in "(file:///|s3://b/|https://h/|/)",
        path in "(%|é|a|%4|/)*",
        query in "(%|€|k|=|&|%e)*",
    ) {
        text_parsers(&format!("{scheme}{path}?{query}"));
    }

    #[test]
    fn decoders_never_panic(b in proptest::collection::vec(any::<u8>(), 0..1024)) {
        if let Ok(s) = std::str::from_utf8(&b) {
            text_parsers(s);
        }
        for c in [Compression::None, Compression::Xz, Compression::Zstd, Compression::Bzip2, Compression::Brotli] {
            if let Ok(mut d) = c.decoder(&b[..]) {
                let mut out = Vec::new();
                let _ = d.by_ref().take(1 << 20).read_to_end(&mut out);
            }
        }
    }

    #[test]
    fn part_sizes_never_panic(len in any::<u64>()) {
        if let Some(size) = part_size(len) {
            prop_assert!(size > 0);
        }
    }
}
