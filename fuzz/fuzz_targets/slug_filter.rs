#![no_main]
//! Runs the `slug_filter` check of narwhal-fuzzcheck on every input.

libfuzzer_sys::fuzz_target!(|data: &[u8]| match narwhal_fuzzcheck::check("slug_filter") {
    Some(check) => check(data),
    None => panic!("narwhal-fuzzcheck has no check named slug_filter"),
});
