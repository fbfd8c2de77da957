#![no_main]
//! Runs the `cache_url` check of narwhal-fuzzcheck on every input.

libfuzzer_sys::fuzz_target!(|data: &[u8]| match narwhal_fuzzcheck::check("cache_url") {
    Some(check) => check(data),
    None => panic!("narwhal-fuzzcheck has no check named cache_url"),
});
