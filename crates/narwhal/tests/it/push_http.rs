//! `narwhal push` / `pin` to an HTTP cache: real nginx (WebDAV `PUT`/`DELETE`) behind a Bearer
//! token or Basic authentication, read back by real Nix over HTTP.

use std::path::{Path, PathBuf};

use narwhal_testkit::isolate::deploy_fixture;
use narwhal_testkit::nginx::Nginx;
use narwhal_testkit::{closure, nix_copy_from, nix_dump, run, tempdir};

use crate::{fails, fails_verification, narwhal, ok};

const TOKEN: &str = "push-token-5f1c9a0e";

/// nginx serving `root`, accepting `PUT` and `DELETE` only with `Authorization: Bearer TOKEN`.
fn nginx_with_token(root: &Path) -> Nginx {
    Nginx::dav(
        root,
        &format!(
            "set $refuse \"\";\n\
             if ($request_method ~ ^(PUT|DELETE)$) {{ set $refuse w; }}\n\
             if ($http_authorization != \"Bearer {TOKEN}\") {{ set $refuse \"${{refuse}}x\"; }}\n\
             if ($refuse = wx) {{ return 401; }}"
        ),
    )
}

fn keys(dir: &Path) -> (PathBuf, String) {
    crate::keys(dir, "http-push-1")
}

/// Every file under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Nix, signatures required, reads the closure of `app` from `url`; every path byte-identical.
fn nix_reads_back(url: &str, tmp: &Path, public: &str, app: &Path) {
    let root = tmp.join("nix-root");
    run(&mut nix_copy_from(url, &root, public, app));
    for p in closure(app) {
        assert!(nix_dump(&root.join(p.strip_prefix("/").unwrap())) == nix_dump(&p), "{}", p.display());
    }
}

#[test]
fn push_with_a_token_to_nginx_then_nix_reads_it_back() {
    let tmp = tempdir();
    let (sec, public) = keys(tmp.path());
    let root = tmp.path().join("www");
    std::fs::create_dir(&root).unwrap();
    let nginx = nginx_with_token(&root);
    let url = nginx.url();
    let app = deploy_fixture("app");
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();

    let out = narwhal_testkit::output(
        narwhal()
            .arg("push")
            .arg(&app)
            .args(["--to", &url, "--key-file"])
            .arg(&sec)
            .arg("--token-file")
            .arg(&token_file),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{}", nginx.error_log());
    assert!(!stderr.contains(TOKEN), "{stderr}");
    let files = tree(&root);
    let n = closure(&app).len();
    assert_eq!(files.iter().filter(|f| f.ends_with(".narinfo")).count(), n, "{files:?}");
    assert_eq!(files.iter().filter(|f| f.starts_with("nar/") && f.ends_with(".nar.zst")).count(), n, "{files:?}");
    assert_eq!(std::fs::read_to_string(root.join("nix-cache-info")).unwrap(), "StoreDir: /nix/store\n");
    nix_reads_back(&url, tmp.path(), &public, &app);

    // Again, with the token in the environment: nothing to upload.
    let out = narwhal_testkit::output(
        narwhal().arg("push").arg(&app).args(["--to", &url, "--key-file"]).arg(&sec).env("NARWHAL_PUSH_TOKEN", TOKEN),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains(&format!("{n} paths: 0 uploaded, {n} already in")), "{stderr}");
    assert_eq!(tree(&root), files);

    // A pin goes up by PUT; --keep needs a listing, which HTTP cannot give: refused before any write.
    // The token file push takes, pin takes too.
    ok(narwhal().args(["pin", "web"]).arg(&app).args(["--to", &url, "--rev", "r1", "--token-file"]).arg(&token_file));
    assert!(std::fs::read_to_string(root.join("pins/web@r1")).unwrap().contains(app.to_str().unwrap()));
    let err = fails(
        narwhal()
            .args(["pin", "web"])
            .arg(&app)
            .args(["--to", &url, "--rev", "r2", "--keep", "1"])
            .env("NARWHAL_PUSH_TOKEN", TOKEN),
    );
    assert!(err.contains("--keep") && err.contains("HTTP cache cannot"), "{err}");
    assert!(!root.join("pins/web@r2").exists());
}

#[test]
fn push_without_the_token_is_refused_and_writes_nothing() {
    let tmp = tempdir();
    let root = tmp.path().join("www");
    std::fs::create_dir(&root).unwrap();
    let nginx = nginx_with_token(&root);
    let url = nginx.url();
    let app = deploy_fixture("app");
    // No credentials at all (HOME without a .netrc, no NETRC).
    let err = fails(narwhal().arg("push").arg(&app).args(["--to", &url]).env("HOME", tmp.path()).env_remove("NETRC"));
    assert!(err.contains("HTTP 401") && err.contains("sent no credentials"), "{err}");
    assert!(err.contains("hint: give the cache's push token in NARWHAL_PUSH_TOKEN or --token-file"), "{err}");
    assert_eq!(err.lines().count(), 2, "{err}");
    // A wrong token: refused too, and never printed.
    let wrong = "wrong-token-77aa";
    let err = fails(
        narwhal().arg("push").arg(&app).args(["--to", &url]).env("NARWHAL_PUSH_TOKEN", wrong).env("HOME", tmp.path()),
    );
    assert!(err.contains("HTTP 401") && err.contains("a Bearer token from $NARWHAL_PUSH_TOKEN"), "{err}");
    assert!(!err.contains(wrong), "{err}");
    assert_eq!(tree(&root), Vec::<String>::new());
}

#[test]
fn netrc_credentials_go_as_basic_authentication() {
    let tmp = tempdir();
    let (sec, public) = keys(tmp.path());
    let root = tmp.path().join("www");
    std::fs::create_dir(&root).unwrap();
    // nginx's own password file format; {PLAIN} keeps the test free of hashing tools.
    let htpasswd = tmp.path().join("htpasswd");
    std::fs::write(&htpasswd, "ci:{PLAIN}s3cret-pw\n").unwrap();
    let nginx = Nginx::dav(
        &root,
        &format!(
            "location / {{ limit_except GET HEAD {{ auth_basic push; auth_basic_user_file {}; }} }}",
            htpasswd.display()
        ),
    );
    let url = nginx.url();
    let app = deploy_fixture("app");
    let netrc = tmp.path().join("netrc");

    std::fs::write(&netrc, "machine 127.0.0.1 login ci password not-it\n").unwrap();
    let err = fails(narwhal().arg("push").arg(&app).args(["--to", &url]).env("NETRC", &netrc).env("HOME", tmp.path()));
    assert!(
        err.contains("HTTP 401") && err.contains(&format!("Basic credentials for \"ci\" from {}", netrc.display())),
        "{err}"
    );
    assert!(!err.contains("not-it"), "{err}");
    assert_eq!(tree(&root), Vec::<String>::new());

    std::fs::write(&netrc, "machine other login x password y\nmachine 127.0.0.1\n  login ci\n  password s3cret-pw\n")
        .unwrap();
    let out = narwhal_testkit::output(
        narwhal()
            .arg("push")
            .arg(&app)
            .args(["--to", &url, "--compression", "xz", "--key-file"])
            .arg(&sec)
            .env("NETRC", &netrc)
            .env("HOME", tmp.path()),
    );
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), nginx.error_log());
    assert!(tree(&root).iter().any(|f| f.ends_with(".nar.xz")));
    nix_reads_back(&url, tmp.path(), &public, &app);
}

/// The narinfo of `path` in the directory cache `cache`.
fn narinfo(cache: &Path, path: &Path) -> narwhal_formats::narinfo::NarInfo {
    let hash = &path.file_name().unwrap().to_str().unwrap()[..32];
    let text = std::fs::read_to_string(cache.join(format!("{hash}.narinfo"))).unwrap();
    narwhal_formats::narinfo::NarInfo::parse(&text, &narwhal_formats::store_path::StoreDir::default()).unwrap()
}

#[test]
fn push_from_a_cache_nix_wrote_to_a_directory_and_to_nginx() {
    use narwhal_testkit::{file_url, nix};
    let tmp = tempdir();
    let (sec, public) = keys(tmp.path());
    let (nix_sec, nix_pub) = (tmp.path().join("nix.sec"), tmp.path().join("nix.pub"));
    run(nix("nix-store").args(["--generate-binary-cache-key", "nix-side-1"]).arg(&nix_sec).arg(&nix_pub));
    let nix_public = std::fs::read_to_string(&nix_pub).unwrap();
    let app = deploy_fixture("app");
    let source = tmp.path().join("nix-cache");
    run(nix("nix")
        .args(["copy", "--to", &file_url(&source, &format!("compression=xz&secret-key={}", nix_sec.display()))])
        .arg(&app));
    let from = file_url(&source, "");

    // Into a directory: the NARs keep Nix's xz files byte for byte; the narinfos keep Nix's
    // signature and gain narwhal's.
    let dest = tmp.path().join("dest");
    let out = narwhal_testkit::output(
        narwhal().arg("push").arg(&app).args(["--from", &from, "--to", &file_url(&dest, ""), "--key-file"]).arg(&sec),
    );
    let n = closure(&app).len();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains(&format!("{n} paths: {n} uploaded")), "{stderr}");
    for p in closure(&app) {
        let (ours, theirs) = (narinfo(&dest, &p), narinfo(&source, &p));
        assert_eq!((ours.compression(), &ours.url, ours.file_hash), ("xz", &theirs.url, theirs.file_hash));
        assert_eq!(std::fs::read(dest.join(&ours.url)).unwrap(), std::fs::read(source.join(&theirs.url)).unwrap());
        assert_eq!(ours.references(), theirs.references());
        assert_eq!(ours.sigs.len(), 2, "{:?}", ours.sigs);
        assert!(ours.sigs.iter().any(|s| s.starts_with("nix-side-1:")) && ours.sigs.contains(&theirs.sigs[0]));
    }
    // Real Nix trusts either key.
    nix_reads_back(&file_url(&dest, ""), tmp.path(), &public, &app);
    let root = tmp.path().join("nix-root-2");
    run(&mut nix_copy_from(&file_url(&dest, ""), &root, &nix_public, &app));

    // Into nginx over HTTP, recompressed to zstd.
    let www = tmp.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let nginx = nginx_with_token(&www);
    ok(narwhal()
        .arg("push")
        .arg(&app)
        .args(["--from", &from, "--to", &nginx.url(), "--compression", "zstd", "--key-file"])
        .arg(&sec)
        .env("NARWHAL_PUSH_TOKEN", TOKEN));
    assert!(tree(&www).iter().filter(|f| f.ends_with(".nar.zst")).count() == n, "{:?}", tree(&www));
    let root = tmp.path().join("nix-root-3");
    run(&mut nix_copy_from(&nginx.url(), &root, &public, &app));
    for p in closure(&app) {
        assert!(nix_dump(&root.join(p.strip_prefix("/").unwrap())) == nix_dump(&p), "{}", p.display());
    }

    // A corrupt NAR in the source: refused, and neither it nor anything referring to it is committed.
    let data = deploy_fixture("data");
    let bad_nar = source.join(&narinfo(&source, &data).url);
    let mut bytes = std::fs::read(&bad_nar).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&bad_nar, bytes).unwrap();
    let dest2 = tmp.path().join("dest2");
    let err =
        fails_verification(narwhal().arg("push").arg(&app).args(["--from", &from, "--to", &file_url(&dest2, "")]));
    assert!(err.contains("does not match its narinfo") && err.contains("FileHash"), "{err}");
    for p in closure(&app) {
        let refers = p == data || narinfo(&source, &p).references().iter().any(|r| data.ends_with(r.to_string()));
        let hash = &p.file_name().unwrap().to_str().unwrap()[..32];
        if refers || p == app {
            assert!(!dest2.join(format!("{hash}.narinfo")).exists(), "{}", p.display());
        }
    }
}

/// On a terminal (a pseudo-terminal from util-linux's `script`), push draws a bar over the paths;
/// with `--no-progress`, or without a terminal, it prints a line per path.
#[test]
fn push_draws_a_bar_on_a_terminal_and_lines_otherwise() {
    use narwhal_testkit::file_url;
    let tmp = tempdir();
    let app = deploy_fixture("app");
    let n = closure(&app).len();
    let on_tty = |cache: &str, extra: &str| {
        let command = format!(
            "{} push {} --to {} {extra}",
            env!("CARGO_BIN_EXE_narwhal"),
            app.display(),
            file_url(&tmp.path().join(cache), "")
        );
        let out = run(std::process::Command::new("script").args(["-qec", &command, "/dev/null"]).env_remove("CI"));
        String::from_utf8_lossy(&out).into_owned()
    };
    let per_path = |out: &str| out.split(['\r', '\n']).filter(|l| l.starts_with("uploaded ")).count();
    let drawn = on_tty("bar", "");
    assert!(drawn.contains(&format!("{n}/{n} paths")) && per_path(&drawn) == 0, "{drawn}");
    assert!(drawn.contains(&format!("{n} paths: {n} uploaded")), "{drawn}");
    let plain = on_tty("plain", "--no-progress");
    assert_eq!(per_path(&plain), n, "{plain}");
    assert!(!plain.contains("paths 0s"), "{plain}");
}

/// `export -o s3://bucket/key` and `import s3://bucket/key`, against Garage; real Nix reads the result.
#[test]
fn export_to_an_s3_object_and_import_from_it() {
    use narwhal_testkit::file_url;
    use narwhal_testkit::garage::Garage;
    let garage = Garage::start();
    let bucket = garage.create_bucket("closures");
    let tmp = tempdir();
    let (sec, public) = keys(tmp.path());
    let app = deploy_fixture("app");
    let s3 = garage.s3_url(&bucket.name);
    let (base, query) = s3.split_once('?').unwrap();
    let object = format!("{base}/apps/web.export?{query}");
    let aws = |c: &mut std::process::Command| {
        c.env("AWS_ACCESS_KEY_ID", &bucket.key_id).env("AWS_SECRET_ACCESS_KEY", &bucket.secret);
    };
    let mut cmd = narwhal();
    cmd.arg("export").arg(&app).args(["-o", &object]);
    aws(&mut cmd);
    ok(&mut cmd);

    let dest = tmp.path().join("cache");
    let mut cmd = narwhal();
    cmd.args(["import", &object, "--to", &file_url(&dest, ""), "--key-file"]).arg(&sec);
    aws(&mut cmd);
    let out = narwhal_testkit::output(&mut cmd);
    let n = closure(&app).len();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains(&format!("{n} paths: {n} uploaded")), "{stderr}");
    nix_reads_back(&file_url(&dest, ""), tmp.path(), &public, &app);

    // A bucket without a key, and an object that is not there: one line and exit 1.
    let mut cmd = narwhal();
    cmd.arg("export").arg(&app).args(["-o", &s3]);
    aws(&mut cmd);
    let err = fails(&mut cmd);
    assert!(err.contains("names a bucket, not an object"), "{err}");
    let mut cmd = narwhal();
    cmd.args(["import", &format!("{base}/apps/nope.export?{query}"), "--to", &file_url(&dest, "")]);
    aws(&mut cmd);
    let err = fails(&mut cmd);
    assert!(err.contains("nope.export") && err.contains("not found"), "{err}");
}
