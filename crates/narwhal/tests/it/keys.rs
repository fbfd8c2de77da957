//! Key files interchangeable with `nix-store --generate-binary-cache-key`.

use std::os::unix::fs::PermissionsExt as _;

use narwhal_formats::narinfo::NarInfo;
use narwhal_formats::signature::PublicKey;
use narwhal_formats::store_path::StoreDir;
use narwhal_testkit::{file_url, files_with_suffix, fixture, nix, run, tempdir};

use crate::{fails, narwhal, ok};

#[test]
fn nix_signs_with_a_key_narwhal_generated() {
    let tmp = tempdir();
    let (sec, public) = (tmp.path().join("k.sec"), tmp.path().join("k.pub"));
    ok(narwhal().args(["key", "generate", "cache.example.org-1", "--secret"]).arg(&sec).arg("--public").arg(&public));
    let mode = std::fs::metadata(&sec).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let public_text = std::fs::read_to_string(&public).unwrap();
    assert!(!public_text.ends_with('\n'), "Nix writes key files without a newline");
    let cache = tmp.path().join("cache");
    let query = format!("compression=none&secret-key={}", sec.display());
    run(nix("nix").args(["copy", "--to", &file_url(&cache, &query)]).arg(fixture("executable")));
    let key = PublicKey::parse(&public_text).unwrap();
    for f in files_with_suffix(&cache, ".narinfo") {
        let info = NarInfo::parse(&std::fs::read_to_string(&f).unwrap(), &StoreDir::default()).unwrap();
        assert_eq!(info.valid_signers(std::slice::from_ref(&key)), vec!["cache.example.org-1"]);
    }
}

#[test]
fn narwhal_reads_keys_nix_generated() {
    let tmp = tempdir();
    let (sec, public) = (tmp.path().join("n.sec"), tmp.path().join("n.pub"));
    run(nix("nix-store").args(["--generate-binary-cache-key", "nix-made-1"]).arg(&sec).arg(&public));
    let ours = String::from_utf8(ok(narwhal().args(["key", "public"]).arg(&sec))).unwrap();
    assert_eq!(ours.trim_end(), std::fs::read_to_string(&public).unwrap());
}

#[test]
fn bad_key_files_and_overwrites_are_refused() {
    let tmp = tempdir();
    let bad = tmp.path().join("bad.sec");
    std::fs::write(&bad, "no-colon-here").unwrap();
    let err = fails(narwhal().args(["key", "public"]).arg(&bad));
    assert!(err.contains("bad.sec") && err.contains("hint: key files hold"), "{err}");
    std::fs::write(&bad, "name:AAAA").unwrap();
    let err = fails(narwhal().args(["key", "public"]).arg(&bad));
    assert!(err.contains("holds 3 bytes, expected 64"), "{err}");

    let (sec, public) = (tmp.path().join("k.sec"), tmp.path().join("k.pub"));
    std::fs::write(&public, "precious").unwrap();
    let err = fails(narwhal().args(["key", "generate", "k-1", "--secret"]).arg(&sec).arg("--public").arg(&public));
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read_to_string(&public).unwrap(), "precious");
    assert!(!sec.exists());
}
