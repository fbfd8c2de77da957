//! Nix's own configuration: with no flags, narwhal reads caches, keys, secret keys and the netrc
//! file where real Nix reads them (`$NIX_CONF_DIR/nix.conf` and its includes), and real Nix
//! agrees with what narwhal did.

use std::path::Path;

use narwhal_testkit::isolate::deploy_fixture;
use narwhal_testkit::{closure, file_url, nix, nix_copy_from, output, run, run_text, tempdir};

use crate::fetch::Cache;
use crate::serve::Server;
use crate::{fails, narwhal, ok};

/// A `NIX_CONF_DIR` with a nix.conf (that includes a second file) and the netrc beside it.
fn conf_dir(dir: &Path, nix_conf: &str, included: &str, netrc: &str) -> std::path::PathBuf {
    let conf = dir.join("nix-conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("nix.conf"), format!("# written by the test\n{nix_conf}\ninclude more.conf\n")).unwrap();
    std::fs::write(conf.join("more.conf"), included).unwrap();
    std::fs::write(conf.join("netrc"), netrc).unwrap();
    conf
}

#[test]
fn fetch_reads_caches_keys_and_netrc_from_nix_conf() {
    let tmp = tempdir();
    let cache = Cache::new(&["app"], "zstd");
    let token = "read-0123456789abcdef-token";
    let tokens = tmp.path().join("read-tokens");
    std::fs::write(&tokens, format!("{token}\n")).unwrap();
    let server =
        Server::start(&["--store", cache.dir.to_str().unwrap(), "--read-token-file", tokens.to_str().unwrap()], &[]);
    let conf = conf_dir(
        tmp.path(),
        &format!("substituters = {}  # the private cache", server.url()),
        &format!("extra-trusted-public-keys = {}\n", cache.public_key.trim()),
        &format!("machine 127.0.0.1 login nix password {token}\n"),
    );
    // Real Nix reads the same directory: the netrc from netrc-file's default, the key from the include.
    let nix_root = tmp.path().join("nix-root");
    let out = output(
        nix("nix")
            .args(["copy", "--from", &server.url(), "--to"])
            .arg(&nix_root)
            .args(["--option", "require-sigs", "true"])
            .arg(&cache.root)
            .env("NIX_CONF_DIR", &conf),
    );
    assert!(out.status.success(), "real Nix with this nix.conf: {}", String::from_utf8_lossy(&out.stderr));

    let fetch = |to: &Path, root: &Path| {
        let mut c = narwhal();
        c.arg("fetch").arg(root).arg("--to").arg(to).env("NIX_CONF_DIR", &conf).env("NARWHAL_NO_PROGRESS", "1");
        c.env("HOME", tmp.path()).env_remove("NETRC");
        c
    };
    let to = tmp.path().join("to");
    let out = output(fetch(&to, &cache.root).arg("--verbose"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let base = cache.root.file_name().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), to.join(base).to_str().unwrap());
    assert_eq!(
        std::fs::read_dir(&to).unwrap().filter(|e| !e.as_ref().unwrap().file_name().eq(".narwhal")).count(),
        closure(&cache.root).len()
    );
    // --verbose says where each setting came from.
    let nix_conf = conf.join("nix.conf");
    for line in [
        format!("narwhal: substituter {} (from {}:2)", server.url(), nix_conf.display()),
        format!(
            "narwhal: trusted-public-key {} (from {}:1)",
            cache.public_key.trim(),
            conf.join("more.conf").display()
        ),
    ] {
        assert!(stderr.lines().any(|l| l == line), "no line {line:?} in:\n{stderr}");
    }

    // A link to a store path (./result) is a root as the path itself.
    let link = tmp.path().join("result");
    std::os::unix::fs::symlink(&cache.root, &link).unwrap();
    let again = tmp.path().join("again");
    let out = run_text(&mut fetch(&again, &link));
    assert_eq!(out.trim_end(), again.join(base).to_str().unwrap());

    // --no-nix-conf reads none of it.
    let err = fails(fetch(&tmp.path().join("none"), &cache.root).arg("--no-nix-conf"));
    assert!(err.contains("no trusted public keys") || err.contains("no binary cache given"), "{err}");
    // Without the netrc, the private cache refuses.
    std::fs::remove_file(conf.join("netrc")).unwrap();
    let err = fails(&mut fetch(&tmp.path().join("refused"), &cache.root));
    assert!(err.contains("401"), "{err}");
    // A line Nix refuses is an error naming the file and the line.
    std::fs::write(conf.join("more.conf"), "trusted-public-keys=x\n").unwrap();
    let err = fails(&mut fetch(&tmp.path().join("bad"), &cache.root));
    assert!(err.contains(&format!("{}:1: illegal configuration line", conf.join("more.conf").display())), "{err}");
}

#[test]
fn push_signs_with_nix_conf_secret_key_files() {
    let tmp = tempdir();
    let (sec, public) = (tmp.path().join("k.sec"), tmp.path().join("k.pub"));
    run(nix("nix-store").args(["--generate-binary-cache-key", "conf-key-1"]).arg(&sec).arg(&public));
    let public = std::fs::read_to_string(&public).unwrap();
    let conf = conf_dir(tmp.path(), &format!("secret-key-files = {}", sec.display()), "", "");
    let app = deploy_fixture("app");
    let link = tmp.path().join("result");
    std::os::unix::fs::symlink(&app, &link).unwrap();
    let dest = tmp.path().join("cache");
    ok(narwhal()
        .arg("push")
        .arg(&link)
        .args(["--to", &file_url(&dest, ""), "--no-progress"])
        .env("NIX_CONF_DIR", &conf));
    // Real Nix, trusting only that key, takes every path: each narinfo carries a valid signature by it.
    let out = output(&mut nix_copy_from(&file_url(&dest, ""), &tmp.path().join("root"), public.trim(), &app));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
