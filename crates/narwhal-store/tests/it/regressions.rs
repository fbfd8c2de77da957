//! Regression tests for what fuzzing found, each named after what broke. The
//! inputs are also in fuzz/regressions/, replayed through the fuzz checks.

use narwhal_store::CacheUrl;

/// `https://user:p@ss@host` was shown as `https://…@ss@host`: the part of the
/// password after its '@' appeared in messages.
#[test]
fn cache_url_password_with_an_at_sign_is_not_shown() {
    let url = CacheUrl::parse("https://user:p@ss@cache.example.org/sub?priority=1").unwrap();
    assert_eq!(url.to_string(), "https://…@cache.example.org/sub");
    // An '@' after the authority is no credential: the host stays visible.
    let url = CacheUrl::parse("https://cache.example.org/a@b").unwrap();
    assert_eq!(url.to_string(), "https://cache.example.org/a@b");
    let url = CacheUrl::parse("http://@cache.example.org").unwrap();
    assert_eq!(url.to_string(), "http://…@cache.example.org");
}
