//! `narwhal hash …` against `nix hash …`.

use narwhal_testkit::{format_fixtures, nix, run_text};

use crate::{fails, narwhal, ok};

fn text(out: Vec<u8>) -> String {
    String::from_utf8(out).unwrap().trim_end().to_owned()
}

#[test]
fn hash_path_matches_nix_hash_path() {
    let flag_sets: &[&[&str]] = &[
        &[],
        &["--base32"],
        &["--base16"],
        &["--base64"],
        &["--sri"],
        &["--type", "sha1"],
        &["--type", "sha512", "--base32"],
        &["--type", "md5", "--base16"],
    ];
    for (name, path) in format_fixtures() {
        for flags in flag_sets {
            let ours = text(ok(narwhal().args(["hash", "path"]).args(*flags).arg(&path)));
            let theirs = run_text(nix("nix").args(["hash", "path"]).args(*flags).arg(&path));
            assert_eq!(ours, theirs, "{name} {flags:?}");
        }
        // And the NarHash Nix recorded when it built the path.
        let recorded = run_text(nix("nix-store").args(["-q", "--hash"]).arg(&path));
        let ours = text(ok(narwhal().args(["hash", "path", "--base32"]).arg(&path)));
        assert_eq!(format!("sha256:{ours}"), recorded, "{name}");
    }
}

#[test]
fn hash_file_matches_nix_hash_file() {
    let big = narwhal_testkit::fixture("big").join("big.txt");
    let empty = narwhal_testkit::fixture("empty-file");
    for file in [&big, &empty] {
        for flags in [&[][..], &["--base32"], &["--type", "sha1", "--base16"], &["--type", "sha512"]] {
            let ours = text(ok(narwhal().args(["hash", "file"]).args(flags).arg(file)));
            let theirs = run_text(nix("nix").args(["hash", "file"]).args(flags).arg(file));
            assert_eq!(ours, theirs, "{} {flags:?}", file.display());
        }
    }
}

#[test]
fn hash_convert_matches_nix_hash_to() {
    let sri = text(ok(narwhal().args(["hash", "path"]).arg(narwhal_testkit::fixture("deep"))));
    let nix32 = run_text(nix("nix").args(["hash", "to-base32", &sri]));
    let base16 = run_text(nix("nix").args(["hash", "to-base16", &sri]));
    assert_eq!(text(ok(narwhal().args(["hash", "convert", "--to", "nix32", &sri]))), nix32);
    assert_eq!(text(ok(narwhal().args(["hash", "convert", "--to", "base16", &sri]))), base16);
    for input in [format!("sha256:{nix32}"), format!("sha256:{base16}")] {
        assert_eq!(text(ok(narwhal().args(["hash", "convert", &input]))), sri);
    }
    assert_eq!(text(ok(narwhal().args(["hash", "convert", "--type", "sha256", &nix32]))), sri);
    let theirs = run_text(nix("nix").args(["hash", "to-sri", "--type", "sha256", &base16]));
    assert_eq!(theirs, sri);

    let err = fails(narwhal().args(["hash", "convert", &nix32]));
    assert!(err.contains("has no algorithm") && err.contains("hint: "), "{err}");
    let err = fails(narwhal().args(["hash", "convert", "sha256:tooshort"]));
    assert!(err.contains("wrong length 8"), "{err}");
}

#[test]
fn hash_path_reports_missing_paths() {
    let err = fails(narwhal().args(["hash", "path", "/nonexistent/narwhal"]));
    assert!(err.contains("/nonexistent/narwhal"), "{err}");
}
