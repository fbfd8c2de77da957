//! narinfo files written by real Nix: parsed and printed back byte for byte;
//! signatures checked in both directions.

use std::path::Path;

use narwhal_formats::hash::{Algorithm, Hash};
use narwhal_formats::nar::Listing;
use narwhal_formats::narinfo::NarInfo;
use narwhal_formats::store_path::StoreDir;
use narwhal_testkit::{
    closure, file_url, files_with_suffix, fixture, format_fixtures, nix, nix_copy_from, output, run, run_text, tempdir,
};

use crate::{fails_verification, narwhal, ok};

fn copy_to(cache: &Path, query: &str, paths: &[std::path::PathBuf]) {
    run(nix("nix").args(["copy", "--to", &file_url(cache, query)]).args(paths));
}

#[test]
fn narinfos_written_by_nix_print_back_identically() {
    let tmp = tempdir();
    let dir = StoreDir::default();
    let key = tmp.path().join("nix.sec");
    run(nix("nix-store").args(["--generate-binary-cache-key", "oracle-1"]).arg(&key).arg(tmp.path().join("nix.pub")));
    let mut paths: Vec<_> = format_fixtures().into_iter().map(|(_, p)| p).collect();
    // Content-addressed paths, whose narinfos carry a CA line (recursive and flat).
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../narwhal-testkit/fixtures");
    paths.push(run_text(nix("nix-store").arg("--add").arg(&fixtures)).into());
    paths.push(run_text(nix("nix").args(["store", "add-file"]).arg(fixtures.join("formats.nix"))).into());
    let mut seen_ca = 0;
    for compression in ["xz", "zstd", "none"] {
        let cache = tmp.path().join(compression);
        let query = format!("compression={compression}&write-nar-listing=true&secret-key={}", key.display());
        copy_to(&cache, &query, &paths);
        let infos = files_with_suffix(&cache, ".narinfo");
        assert!(infos.len() >= paths.len(), "{compression}: only {} narinfos", infos.len());
        for file in infos {
            let text = std::fs::read_to_string(&file).unwrap();
            let info = NarInfo::parse(&text, &dir).unwrap_or_else(|e| panic!("{}: {e:?}", file.display()));
            assert_eq!(info.to_string(), text, "{}", file.display());
            assert_eq!(info.compression(), compression);
            seen_ca += usize::from(info.ca.is_some());
            // Other tests may have added signatures to these paths in the shared store.
            let oracle = narwhal_formats::signature::PublicKey::parse(
                &std::fs::read_to_string(tmp.path().join("nix.pub")).unwrap(),
            )
            .unwrap();
            assert_eq!(info.valid_signers(std::slice::from_ref(&oracle)), vec!["oracle-1"], "{}", file.display());
            // The NAR behind it has the recorded size and hash.
            let nar = std::fs::read(cache.join(&info.url)).unwrap();
            assert_eq!(Some(nar.len() as u64), info.file_size);
            assert_eq!(Some(Hash::of(Algorithm::Sha256, &nar)), info.file_hash);
            if compression == "none" {
                assert_eq!(nar.len() as u64, info.nar_size);
                assert_eq!(Hash::of(Algorithm::Sha256, &nar), info.nar_hash);
                // And the listing Nix wrote beside it is what narwhal computes.
                let ls = std::fs::read(cache.join(format!("{}.ls", info.path.hash_part()))).unwrap();
                let ours = Listing::read(&mut nar.as_slice()).unwrap().to_json();
                assert!(ours == ls, "{}: .ls differs", info.path);
            }
        }
    }
    assert_eq!(seen_ca, 6, "both content-addressed paths in all three caches");
}

#[test]
fn nix_accepts_a_cache_signed_by_narwhal() {
    let tmp = tempdir();
    let app = fixture("app");
    let cache = tmp.path().join("cache");
    copy_to(&cache, "compression=none", std::slice::from_ref(&app));
    let (sec, public) = (tmp.path().join("k.sec"), tmp.path().join("k.pub"));
    ok(narwhal().args(["key", "generate", "narwhal-test-1", "--secret"]).arg(&sec).arg("--public").arg(&public));
    let infos = files_with_suffix(&cache, ".narinfo");
    assert_eq!(infos.len(), 2);
    ok(narwhal().args(["narinfo", "sign", "--key-file"]).arg(&sec).args(&infos));
    let public = std::fs::read_to_string(&public).unwrap();

    // Real Nix, signatures required, only narwhal's key trusted.
    let root = tmp.path().join("root");
    run(&mut nix_copy_from(&file_url(&cache, ""), &root, &public, &app));
    for p in closure(&app) {
        let copied = root.join(p.strip_prefix("/").unwrap());
        assert_eq!(narwhal_testkit::nix_dump(&copied), narwhal_testkit::nix_dump(&p), "{}", p.display());
    }

    // Another key trusted instead: Nix refuses.
    let other = tmp.path().join("other");
    ok(narwhal()
        .args(["key", "generate", "someone-else-1", "--secret"])
        .arg(other.with_extension("sec"))
        .arg("--public")
        .arg(other.with_extension("pub")));
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let out = output(&mut nix_copy_from(&file_url(&cache, ""), &tmp.path().join("root2"), &other_pub, &app));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("signature"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn narwhal_verifies_signatures_made_by_nix() {
    let tmp = tempdir();
    let (sec, public) = (tmp.path().join("nix.sec"), tmp.path().join("nix.pub"));
    run(nix("nix-store").args(["--generate-binary-cache-key", "nix-oracle-1"]).arg(&sec).arg(&public));
    let public = std::fs::read_to_string(&public).unwrap();
    let mixed = fixture("mixed");
    // `nix store sign` records the signature in the store; `nix copy` carries it into the narinfo.
    run(nix("nix").args(["store", "sign", "--key-file"]).arg(&sec).arg(&mixed));
    let cache = tmp.path().join("cache");
    copy_to(&cache, "compression=zstd", &[mixed]);
    let infos = files_with_suffix(&cache, ".narinfo");
    let report =
        String::from_utf8(ok(narwhal().args(["narinfo", "verify", "--trusted-public-key", &public]).args(&infos)))
            .unwrap();
    assert!(report.contains("signed by nix-oracle-1"), "{report}");

    // The same cache, tampered with: the size no longer matches the signature.
    let text = std::fs::read_to_string(&infos[0]).unwrap();
    let tampered = text.replace("NarSize: ", "NarSize: 1");
    std::fs::write(&infos[0], tampered).unwrap();
    let err = fails_verification(narwhal().args(["narinfo", "verify", "--trusted-public-key", &public]).args(&infos));
    assert!(err.contains("lack a valid signature"), "{err}");
}
