//! Deploying from a `nix-store --export` stream written by real Nix, as the
//! older Heroku Nix buildpack stored closures: the result must be what a
//! deploy from a signed binary cache of the same closure gives.

use std::path::{Path, PathBuf};
use std::process::Command;

use narwhal_testkit::isolate::{deploy_fixture, Isolated, DEPLOY_APP_OUTPUT};
use narwhal_testkit::{closure, file_url, nix, output, run, tempdir};

use crate::fetch::{fetch_cmd, store_entries, Cache};
use crate::{fails, narwhal};

/// `nix-store --export $(nix-store -qR root)` into `file`, as the older buildpack wrote it.
fn nix_export(paths: &[PathBuf], file: &Path) {
    let out = run(nix("nix-store").arg("--export").args(paths));
    std::fs::write(file, out).unwrap();
}

fn from_export(export: &str, to: &Path) -> Command {
    let mut c = narwhal();
    c.args(["fetch", "--from-export", export, "--no-verify", "--prefix", "/app/store", "--to"]).arg(to);
    c.env("NARWHAL_NO_PROGRESS", "1").env_remove("NARWHAL_SUBSTITUTERS");
    c
}

fn manifest_paths(store: &Path) -> serde_json::Value {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join(".narwhal/manifest.json")).unwrap()).unwrap();
    m["paths"].clone()
}

#[test]
fn an_export_deploys_like_the_signed_cache_of_the_same_closure() {
    let root = deploy_fixture("app");
    let tmp = tempdir();
    let export = tmp.path().join("app.closure");
    nix_export(&closure(&root), &export);

    // Without --no-verify: refused, nothing written.
    let a = tmp.path().join("a/store");
    let mut cmd = narwhal();
    cmd.args(["fetch", "--from-export"]).arg(&export).arg("--to").arg(&a);
    let err = fails(&mut cmd);
    assert!(err.contains("carries no signatures") && err.contains("--no-verify"), "{err}");
    assert!(store_entries(&a).is_empty());

    // The export's last path is the root; it is printed where it now is.
    let printed = crate::ok(&mut from_export(export.to_str().unwrap(), &a));
    let base = root.file_name().unwrap().to_str().unwrap();
    assert_eq!(String::from_utf8(printed).unwrap().trim_end(), a.join(base).to_str().unwrap());

    // The same closure from a signed cache written by `nix copy`, relocated the same way.
    let cache = Cache::new(&["app"], "zstd");
    let b = tmp.path().join("b/store");
    crate::ok(fetch_cmd(&file_url(&cache.dir, ""), &cache.public_key, &root, &b).args(["--prefix", "/app/store"]));
    assert_eq!(store_entries(&a), store_entries(&b));
    assert_eq!(store_entries(&a).len(), closure(&root).len());
    // Same NarHash (what Nix computed), same relocated hash and references, same warnings.
    assert_eq!(manifest_paths(&a), manifest_paths(&b));
    let diff = output(Command::new("diff").arg("-r").arg("--no-dereference").arg(&a).arg(&b).arg("-x").arg(".narwhal"));
    assert!(diff.status.success(), "{}", String::from_utf8_lossy(&diff.stdout));
    for (name, entry) in manifest_paths(&a).as_object().unwrap() {
        let nix_hash =
            narwhal_testkit::run_text(nix("nix-store").args(["-q", "--hash"]).arg(format!("/nix/store/{name}")));
        assert_eq!(entry["narHash"].as_str().unwrap(), nix_hash, "{name}");
    }

    // It runs where there is no /nix.
    let iso = Isolated::new();
    iso.add_dir(a.parent().unwrap(), "/app");
    assert_eq!(iso.run_ok(&[&format!("/app/store/{base}/bin/app")], &[]), DEPLOY_APP_OUTPUT);

    // Again into the same directory: everything is already there, from standard input too.
    let mut again = from_export("-", &a);
    again.stdin(std::fs::File::open(&export).unwrap());
    let out = output(&mut again);
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("6 paths from the export: 0 unpacked, 6 already present"), "{log}");
}

#[test]
fn an_incomplete_truncated_or_foreign_export_leaves_nothing() {
    let root = deploy_fixture("app");
    let tmp = tempdir();
    let dest = tmp.path().join("store");

    // Only the root, without what it references.
    let only = tmp.path().join("only.closure");
    nix_export(std::slice::from_ref(&root), &only);
    let err = fails(&mut from_export(only.to_str().unwrap(), &dest));
    assert!(err.contains("but not /nix/store/") && err.contains("which it references"), "{err}");
    assert!(err.contains("hint: export the whole closure"), "{err}");
    assert!(store_entries(&dest).is_empty(), "{:?}", store_entries(&dest));

    // Cut short at several points, inside a NAR and between paths.
    let whole = tmp.path().join("whole.closure");
    nix_export(&closure(&root), &whole);
    let bytes = std::fs::read(&whole).unwrap();
    for cut in [100, bytes.len() / 3, bytes.len() / 2, bytes.len() - 9] {
        let part = tmp.path().join(format!("cut-{cut}"));
        std::fs::write(&part, &bytes[..cut]).unwrap();
        let err = fails(&mut from_export(part.to_str().unwrap(), &dest));
        assert!(err.contains(part.to_str().unwrap()), "{err}");
        assert!(err.contains("too early") || err.contains("truncated"), "cut at {cut}: {err}");
        assert!(store_entries(&dest).is_empty(), "cut at {cut}: {:?}", store_entries(&dest));
    }

    // Not an export at all, and a root that is not in it.
    let text = tmp.path().join("notes.txt");
    std::fs::write(&text, "this is not an export\n").unwrap();
    let err = fails(&mut from_export(text.to_str().unwrap(), &dest));
    assert!(err.contains("not a nix-store --export stream"), "{err}");
    let other = deploy_fixture("app-v2");
    let err = fails(from_export(whole.to_str().unwrap(), &dest).arg(&other));
    assert!(err.contains("is neither in the export"), "{err}");
    assert!(store_entries(&dest).is_empty());

    // A last path that something else in the stream needs is not the top.
    // (`nix-store --export` sorts what it is given, so the root's export is put before its dependencies' by
    // hand: streams concatenate once the first one's end marker, eight zero bytes, is dropped.)
    let backwards = tmp.path().join("backwards.closure");
    let deps: Vec<PathBuf> = closure(&root).into_iter().filter(|p| *p != root).collect();
    nix_export(&deps, &backwards);
    let mut stream = std::fs::read(&only).unwrap();
    assert_eq!(stream.split_off(stream.len() - 8), [0; 8]);
    stream.extend(std::fs::read(&backwards).unwrap());
    std::fs::write(&backwards, stream).unwrap();
    let err = fails(&mut from_export(backwards.to_str().unwrap(), &dest));
    assert!(err.contains("is not its top"), "{err}");
    assert!(store_entries(&dest).is_empty());
    // Naming the root explicitly deploys it whatever the order.
    crate::ok(from_export(backwards.to_str().unwrap(), &dest).arg(&root));
    assert_eq!(store_entries(&dest).len(), closure(&root).len());
}
