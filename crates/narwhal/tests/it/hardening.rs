//! Regression tests for inputs that once crashed or hung narwhal, each named after what broke.
//! Every one must end in one `error:` line and an ordinary exit code, never a panic.

use std::path::Path;
use std::time::{Duration, Instant};

use narwhal_testkit::{closure, file_url, fixture, nix, nix_dump, run, run_text, tempdir};

use crate::serve::{get, keys, nix_copies, Server};
use crate::{fails, fails_with, narwhal, ok};

/// `narwhal fetch ROOT --from FROM --no-verify --to TO`.
fn fetch_unverified(root: impl AsRef<std::ffi::OsStr>, from: &str, to: &Path) -> std::process::Command {
    let mut cmd = narwhal();
    cmd.arg("fetch").arg(root).args(["--from", from, "--no-verify", "--to"]).arg(to);
    cmd
}

/// 31 nix32 characters and a two-byte one: the 32nd byte falls inside `é`.
fn hash_ending_inside_a_character() -> String {
    format!("{}é-foo", "a".repeat(31))
}

#[test]
fn store_path_whose_hash_part_ends_inside_a_multibyte_character_is_an_error() {
    let tmp = tempdir();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let root = format!("/nix/store/{}", hash_ending_inside_a_character());
    let err = fails(&mut fetch_unverified(&root, &file_url(&empty, ""), &tmp.path().join("x")));
    assert!(err.contains("invalid hash part") && err.contains("0xc3"), "{err}");
}

#[test]
fn narinfo_reference_whose_hash_part_ends_inside_a_multibyte_character_is_an_error() {
    // A hostile cache: a narinfo whose References line holds such a name. The fetch must stop with
    // an error naming the narinfo before any signature check could be fooled by it.
    let tmp = tempdir();
    let cache = tmp.path().join("cache");
    let app = fixture("app");
    run(nix("nix").args(["copy", "--to", &file_url(&cache, "compression=none")]).arg(&app));
    let hash = &app.file_name().unwrap().to_str().unwrap()[..32];
    let info_file = cache.join(format!("{hash}.narinfo"));
    let text = std::fs::read_to_string(&info_file).unwrap();
    let hostile: String = text
        .lines()
        .map(|l| {
            if l.starts_with("References:") {
                format!("{l} {}", hash_ending_inside_a_character())
            } else {
                l.to_owned()
            }
        })
        .map(|l| l + "\n")
        .collect();
    std::fs::write(&info_file, hostile).unwrap();
    let err = fails(&mut fetch_unverified(&app, &file_url(&cache, ""), &tmp.path().join("x")));
    assert!(err.contains("invalid narinfo") && err.contains("0xc3"), "{err}");
    assert!(!tmp.path().join("x").join(app.file_name().unwrap()).exists());
}

#[test]
fn cache_url_with_a_broken_percent_escape_before_a_multibyte_character_is_an_error() {
    let tmp = tempdir();
    let err = fails(&mut fetch_unverified(fixture("empty-file"), "file:///a%aé", &tmp.path().join("x")));
    assert!(err.contains("/a%aé"), "{err}");
}

#[test]
fn compression_level_out_of_range_is_refused_before_any_work() {
    let tmp = tempdir();
    let to = file_url(&tmp.path().join("cache"), "");
    let path = fixture("empty-file");
    // A bad flag value is a usage error, as clap reports its own: exit status 2.
    let err =
        fails_with(narwhal().arg("push").arg(&path).args(["--to", &to, "--compression", "xz", "--level", "12"]), 2);
    assert!(err.contains("xz does not take level 12: use 0 to 9"), "{err}");
    let err =
        fails_with(narwhal().arg("push").arg(&path).args(["--to", &to, "--compression", "none", "--level", "3"]), 2);
    assert!(err.contains("none does not take level 3: it has no levels"), "{err}");
    let err = fails_with(
        narwhal().arg("push").arg(&path).args(["--to", &format!("{to}?compression=xz"), "--level", "10"]),
        2,
    );
    assert!(err.contains("xz does not take level 10"), "{err}");
    // Past every compression's range: clap's own usage error.
    let out = narwhal_testkit::output(narwhal().arg("push").arg(&path).args(["--to", &to, "--level", "100"]));
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!tmp.path().join("cache").exists(), "nothing may be written");
}

/// A store path 300 directories deep: what Nix dumps, hashes, copies and serves, narwhal must too.
#[test]
fn paths_300_levels_deep_are_dumped_hashed_pushed_exported_and_served_like_nix() {
    let deep = fixture("very-deep");
    assert!(run_text(std::process::Command::new("find").arg(&deep).args(["-name", "file"])).matches('/').count() > 300);
    assert!(ok(narwhal().args(["nar", "dump"]).arg(&deep)) == nix_dump(&deep));
    let nix_hash = run_text(nix("nix").args(["hash", "path"]).arg(&deep));
    assert_eq!(String::from_utf8(ok(narwhal().args(["hash", "path"]).arg(&deep))).unwrap().trim(), nix_hash);

    // export -> nix-store --import in a fresh store: the same NAR.
    let tmp = tempdir();
    let export = ok(narwhal().arg("export").arg(&deep));
    assert!(export == run(nix("nix-store").arg("--export").arg(&deep)), "export differs from nix-store --export");

    // push -> nix copy --from with signatures required.
    let (sec, public) = keys(tmp.path());
    let cache = tmp.path().join("cache");
    ok(narwhal().arg("push").arg(&deep).args(["--to", &file_url(&cache, ""), "--key-file"]).arg(&sec));
    nix_copies(&file_url(&cache, ""), &public, &deep, &tmp.path().join("root1"));

    // The local store served over HTTP: NAR and listing, and real Nix copies it.
    let server = Server::start(&["--store", "local", "--key-file", sec.to_str().unwrap()], &[]);
    let hash = &deep.file_name().unwrap().to_str().unwrap()[..32];
    let ls = get(server.addr, &format!("/{hash}.ls"));
    assert_eq!(ls.status, 200, "{}", ls.text());
    assert!(ls.text().matches("\"d\":").count() == 300, "{}", ls.text());
    nix_copies(&server.url(), &public, &deep, &tmp.path().join("root2"));
    let health = get(server.addr, "/health");
    assert_eq!(health.status, 200);
}

#[test]
fn nar_deeper_than_the_limit_is_refused_by_dump_with_one_line() {
    let tmp = tempdir();
    let mut d = tmp.path().join("t");
    // 1025 levels of one-letter names: within PATH_MAX, past nar::MAX_DEPTH.
    for _ in 0..1025 {
        d.push("d");
    }
    std::fs::create_dir_all(&d).unwrap();
    let err = fails(narwhal().args(["nar", "dump"]).arg(tmp.path().join("t")));
    assert!(err.contains("nested deeper than 1024 directories"), "{err}");
}

#[test]
fn nar_unpack_refuses_paths_longer_than_path_max_instead_of_making_a_tree_dump_cannot_read() {
    // Found by the NAR fuzzer: sixteen nested 255-byte names. The unpack creates entries relative
    // to their parent, so it could build this tree, but no program (nor `nar dump`) can open its
    // deepest paths by name; Nix's restore refuses it, and so does narwhal now.
    let nar =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/nar/unpacked-path-longer-than-path-max");
    let tmp = tempdir();
    let dest = tmp.path().join("out");
    let err = fails(narwhal().args(["nar", "unpack"]).arg(&nar).arg(&dest));
    assert!(err.contains("PATH_MAX") && err.contains("shorter destination"), "{err}");
    assert!(crate::entries(tmp.path()).is_empty(), "a refused unpack left {:?}", crate::entries(tmp.path()));
    // The same archive is a valid NAR: it lists and hashes.
    ok(narwhal().args(["nar", "ls", "--recursive"]).arg(&nar));
}

#[test]
fn push_from_a_cache_whose_references_form_a_cycle_fails_within_seconds() {
    let tmp = tempdir();
    let source = tmp.path().join("source");
    let app = fixture("app");
    run(nix("nix").args(["copy", "--to", &file_url(&source, "compression=none")]).arg(&app));
    // lib now claims to reference app, which references lib.
    let lib = closure(&app).into_iter().find(|p| p != &app).unwrap();
    let base = |p: &Path| p.file_name().unwrap().to_str().unwrap().to_owned();
    let lib_info = source.join(format!("{}.narinfo", &base(&lib)[..32]));
    let text = std::fs::read_to_string(&lib_info).unwrap();
    let cyclic: String = text
        .lines()
        .map(|l| {
            if l.starts_with("References:") {
                format!("References: {} {}", base(&app), base(&lib))
            } else {
                l.to_owned()
            }
        })
        .map(|l| l + "\n")
        .collect();
    std::fs::write(&lib_info, cyclic).unwrap();
    let started = Instant::now();
    let dest = tmp.path().join("dest");
    let err =
        fails(narwhal().arg("push").arg(&app).args(["--from", &file_url(&source, ""), "--to", &file_url(&dest, "")]));
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    assert!(err.contains("cycle") && err.contains(&base(&app)) && err.contains(&base(&lib)), "{err}");
    assert!(
        !dest.exists() || narwhal_testkit::files_with_suffix(&dest, ".narinfo").is_empty(),
        "nothing may be committed"
    );
    // fetch meets the same cycle with the same error.
    let err = fails(&mut fetch_unverified(&app, &file_url(&source, ""), &tmp.path().join("x")));
    assert!(err.contains("cycle"), "{err}");
}

#[test]
fn server_answers_a_log_request_with_a_hash_ending_inside_a_character_with_400_and_keeps_serving() {
    let tmp = tempdir();
    let cache = tmp.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let server = Server::start(&["--store", cache.to_str().unwrap()], &[]);
    let name = hash_ending_inside_a_character().replace('é', "%C3%A9");
    for path in [format!("/log/{name}"), format!("/log/{}", "a".repeat(31) + "%C3%A9"), format!("/pins/{name}")] {
        let answer = get(server.addr, &path);
        assert!((400..500).contains(&answer.status), "{path}: {} {}", answer.status, answer.text());
    }
    assert_eq!(get(server.addr, "/nix-cache-info").status, 200, "the server goes on answering");
    assert_eq!(get(server.addr, "/health").status, 200);
    let metrics = get(server.addr, "/metrics").text();
    assert!(metrics.contains("narwhal_panics_total 0"), "{metrics}");
}

#[test]
fn exit_codes_tell_usage_from_failure() {
    // Usage: 2, from clap. Failure on input: 1 (see `fails`). Verification: 3 (fetch tests).
    fails_with(narwhal().args(["hash", "path", "/nonexistent/narwhal-test"]), 1);
    for args in [
        &["fetch", "--no-such-flag"][..],
        &["push", "x", "--to", "/tmp/x", "--jobs", "0"],
        &["pin", "n", "p", "--to", "/x", "--keep", "0"],
    ] {
        let out = narwhal_testkit::output(narwhal().args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = narwhal_testkit::output(
        narwhal().args(["fetch", "x", "--from", "/tmp", "--to", "/tmp/x"]).env("NARWHAL_JOBS", "9999"),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("9999 is not in 1..=256"), "{out:?}");
    let help = String::from_utf8(ok(narwhal().arg("--help"))).unwrap();
    assert!(help.contains("3 verification failed") && help.contains("70 internal error"), "{help}");
}

/// A full disk is named as such, not blamed on the input: writing the NAR of a tree to /dev/full
/// (every write fails with ENOSPC) is one error line and a hint about free space.
#[test]
fn a_full_disk_is_named_with_a_hint_about_free_space() {
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let err = fails(narwhal().args(["nar", "dump"]).arg(fixture("app")).stdout(full));
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("hint: the disk is full: free space where narwhal writes"), "{err}");
}
