//! The ELF reader, from memory and from a file.

use std::io::Write as _;

use narwhal_slug::elf;

/// Reading the bytes in memory and reading them from a file give the same
/// answer; what is read holds no NUL (strings end there).
pub fn check(data: &[u8]) {
    let in_memory = elf::parse_bytes(data);
    let mut file = match tempfile::tempfile() {
        Ok(f) => f,
        Err(e) => panic!("cannot create a temporary file (not the input's fault): {e}"),
    };
    if let Err(e) = file.write_all(data) {
        panic!("cannot write a temporary file (not the input's fault): {e}");
    }
    let from_file = elf::parse_file(&file);
    assert_eq!(format!("{in_memory:?}"), format!("{from_file:?}"), "memory and file readers disagree");
    if let Ok(info) = in_memory {
        let strings = info.interpreter.iter().chain(&info.needed).chain(&info.runpath).chain(&info.rpath);
        for s in strings {
            assert!(!s.contains(&0), "a string read holds a NUL: {s:?}");
        }
    }
}
