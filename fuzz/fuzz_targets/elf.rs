#![no_main]
//! Runs the `elf` check of narwhal-fuzzcheck on every input.

libfuzzer_sys::fuzz_target!(|data: &[u8]| match narwhal_fuzzcheck::check("elf") {
    Some(check) => check(data),
    None => panic!("narwhal-fuzzcheck has no check named elf"),
});
