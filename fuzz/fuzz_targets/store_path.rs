#![no_main]
//! Runs the `store_path` check of narwhal-fuzzcheck on every input.

libfuzzer_sys::fuzz_target!(|data: &[u8]| match narwhal_fuzzcheck::check("store_path") {
    Some(check) => check(data),
    None => panic!("narwhal-fuzzcheck has no check named store_path"),
});
