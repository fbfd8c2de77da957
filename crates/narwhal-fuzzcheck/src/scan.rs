//! The gzip, xz and zip scanners of narwhal-relocate.

use std::path::Path;

use narwhal_relocate::scan::{scan_compressed, scan_compressed_bytes, sniff, BytesScanner, SNIFF_LEN};

const NEEDLE: &[u8] = b"/nix/store";

/// A scanner reused after another file answers as a fresh one; data in no
/// known format is `Ok(None)`; a finding names the format sniffed; the scan
/// of a file on disk finds what the scan of its bytes in memory finds.
pub fn check(data: &[u8]) {
    let name = Path::new("fuzz-input");
    let fresh = scan_compressed_bytes(name, data, NEEDLE);
    let format = sniff(data.get(..SNIFF_LEN).unwrap_or(data));
    match (&fresh, format) {
        (Ok(None) | Err(_), Some(_)) => {}
        (Ok(Some(found)), Some(f)) => {
            assert_eq!(found.format, f, "the finding names another format than the one sniffed");
            assert_eq!(found.path, name);
        }
        (other, None) => assert!(matches!(other, Ok(None)), "data in no known format gave {other:?}"),
    }

    let mut scanner = match BytesScanner::new(NEEDLE) {
        Ok(s) => s,
        Err(e) => panic!("the needle is refused: {e}"),
    };
    let _ = scanner.scan(name, data.get(..data.len() / 2).unwrap_or_default());
    let reused = scanner.scan(name, data);
    assert_eq!(format!("{fresh:?}"), format!("{reused:?}"), "a reused scanner answers differently");

    let dir = crate::temp_dir();
    let file = dir.path().join("fuzz-input");
    if let Err(e) = std::fs::write(&file, data) {
        panic!("cannot write a temporary file (not the input's fault): {e}");
    }
    let on_disk = scan_compressed(&file, NEEDLE);
    let from_file = scanner.scan_file(&file, name);
    assert_eq!(
        matches!(on_disk, Ok(Some(_))),
        matches!(from_file, Ok(Some(_))),
        "scan_compressed and BytesScanner::scan_file disagree: {on_disk:?} vs {from_file:?}"
    );
    assert_eq!(
        matches!(fresh, Ok(Some(_))),
        matches!(on_disk, Ok(Some(_))),
        "the scan of the file and of its bytes disagree: {on_disk:?} vs {fresh:?}"
    );
}
