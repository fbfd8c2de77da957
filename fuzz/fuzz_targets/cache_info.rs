#![no_main]
//! Runs the `cache_info` check of narwhal-fuzzcheck on every input.

libfuzzer_sys::fuzz_target!(|data: &[u8]| match narwhal_fuzzcheck::check("cache_info") {
    Some(check) => check(data),
    None => panic!("narwhal-fuzzcheck has no check named cache_info"),
});
