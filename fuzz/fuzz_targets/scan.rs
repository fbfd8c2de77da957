#![no_main]
//! Runs the `scan` check of narwhal-fuzzcheck on every input.

libfuzzer_sys::fuzz_target!(|data: &[u8]| match narwhal_fuzzcheck::check("scan") {
    Some(check) => check(data),
    None => panic!("narwhal-fuzzcheck has no check named scan"),
});
