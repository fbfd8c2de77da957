//! `size_report` on a small slug.

use std::ffi::OsString;

use narwhal_slug::size::{size_report, Error, HEROKU_SLUG_LIMIT};

use crate::{dir, file, link};

#[test]
fn apparent_sizes_per_store_path_largest_first() {
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path();
    file(s, "store/aaaa-small/bin/x", &[0; 10]);
    file(s, "store/bbbb-big/lib/libbig.so", &[0; 5000]);
    file(s, "store/bbbb-big/share/doc/README", &[0; 100]);
    link(s, "store/bbbb-big/lib/libbig.so.1", "libbig.so"); // 9 bytes of target
    link(s, "store/cccc-links/outside", "/app/store/bbbb-big/lib/libbig.so"); // not followed: 33
    file(s, "store/dddd-single-file", &[0; 10]);
    dir(s, "store/eeee-empty/share");
    file(s, "store/.narwhal/manifest.json", &[0; 7]); // counted, but not a store path
    file(s, "app.txt", &vec![0; 1_000_000]); // outside the store: not counted
    let report = size_report(s).unwrap();
    let got: Vec<(OsString, u64)> = report.paths.iter().map(|p| (p.name.clone(), p.bytes)).collect();
    let want: Vec<(OsString, u64)> = [
        ("bbbb-big", 5109),
        ("cccc-links", 33),
        ("aaaa-small", 10), // ties by name
        ("dddd-single-file", 10),
        ("eeee-empty", 0),
    ]
    .into_iter()
    .map(|(n, b)| (n.into(), b))
    .collect();
    assert_eq!(got, want);
    assert_eq!(report.total, 5109 + 33 + 10 + 10 + 7);
    // The bound is above the uncompressed size and, here, far below the limit.
    assert!(report.tar_gz_upper_bound() > report.total);
    assert!(report.provably_within_heroku_limit());
    assert_eq!(HEROKU_SLUG_LIMIT, 1_000_000_000);
}

#[test]
fn missing_store_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(matches!(size_report(tmp.path()), Err(Error::Io { .. })));
}
