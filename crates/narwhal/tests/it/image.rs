//! `narwhal image` against the real OCI tools: oci-image-tool validates the layout, skopeo reads
//! and copies it, umoci unpacks it and runc runs it as a non-root user, printing what the program
//! prints under Nix.

use std::path::Path;
use std::process::Command;

use narwhal_testkit::isolate::deploy_fixture;
use narwhal_testkit::{file_url, nix, output, run, run_text, tempdir};

use crate::fetch::Cache;
use crate::{fails, narwhal, ok};

fn image_cmd(root: &Path, to: &str) -> Command {
    let mut c = narwhal();
    c.arg("image").arg(root).args(["--entrypoint", "bin/app", "--port", "5000", "--rev", "abc123", "--to", to]);
    c
}

fn digest(out: &[u8]) -> String {
    String::from_utf8(out.to_vec()).unwrap().trim().to_owned()
}

fn skopeo_inspect(reference: &str, config: bool) -> serde_json::Value {
    let mut c = Command::new("skopeo");
    c.arg("inspect");
    if config {
        c.arg("--config");
    }
    serde_json::from_str(&run_text(c.arg(reference))).unwrap()
}

/// `umoci unpack` + `runc run`: what the image's entrypoint prints, and as which uid it ran.
fn run_image(layout: &Path, tag: &str, work: &Path) -> String {
    let bundle = work.join("bundle");
    run(Command::new("umoci").args(["unpack", "--image"]).arg(format!("{}:{tag}", layout.display())).arg(&bundle));
    let config_path = bundle.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["process"]["terminal"] = serde_json::Value::Bool(false);
    // Print the uid the process gets, then run the entrypoint as the image says.
    let args = config["process"]["args"].clone();
    let entry = args[0].as_str().unwrap().to_owned();
    let busybox =
        run_text(Command::new("sh").arg("-c").arg(format!("grep -o '/nix/store/[^/]*busybox[^/]*' {entry} | head -1")));
    // The shell's own builtins only: the uid from /proc, then the entrypoint.
    let script =
        format!("while read k v rest; do [ \"$k\" = Uid: ] && echo $v; done < /proc/self/status; exec {entry}");
    config["process"]["args"] = serde_json::json!([format!("{busybox}/bin/sh"), "-c", script]);
    std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
    let name = format!("narwhal-it-{}", std::process::id());
    let out = output(Command::new("runc").args(["run", "-b"]).arg(&bundle).arg(&name));
    let _ = Command::new("runc").args(["delete", "-f", &name]).output();
    assert!(out.status.success(), "runc: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn an_image_of_the_deploy_closure_validates_and_runs_as_nobody_like_under_nix() {
    let app = deploy_fixture("app");
    let tmp = tempdir();
    let layout = tmp.path().join("img");
    let to = format!("oci:{}:latest", layout.display());
    let manifest = digest(&ok(&mut image_cmd(&app, &to)));
    assert!(manifest.starts_with("sha256:"), "{manifest}");

    run(Command::new("oci-image-tool").args(["validate", "--type", "image", "--ref", "name=latest"]).arg(&layout));
    let inspect = skopeo_inspect(&format!("oci:{}:latest", layout.display()), false);
    assert_eq!(inspect["Digest"], manifest.as_str());
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 6, "{inspect}");
    assert_eq!(inspect["Labels"]["org.opencontainers.image.revision"], "abc123");
    let config = skopeo_inspect(&format!("oci:{}:latest", layout.display()), true);
    assert_eq!(config["config"]["User"], "65534:65534");
    assert_eq!(config["config"]["Entrypoint"][0], format!("{}/bin/app", app.display()));
    assert_eq!(config["config"]["Env"][0], format!("PATH={}/bin", app.display()));
    assert!(config["config"]["ExposedPorts"]["5000/tcp"].is_object(), "{config}");
    assert_eq!(config["architecture"], "amd64");

    let under_nix = run_text(&mut Command::new(app.join("bin/app")));
    let printed = run_image(&layout, "latest", tmp.path());
    assert_eq!(printed, format!("65534\n{under_nix}\n"));

    // skopeo copies it to another layout, byte for byte the same manifest.
    let copy = tmp.path().join("copy");
    run(Command::new("skopeo").args(["copy", &to]).arg(format!("oci:{}:copied", copy.display())));
    assert_eq!(skopeo_inspect(&format!("oci:{}:copied", copy.display()), false)["Digest"], manifest.as_str());
}

#[test]
fn the_same_closure_gives_the_same_image_from_a_signed_cache_and_from_the_local_store() {
    let cache = Cache::new(&["app"], "zstd");
    let tmp = tempdir();
    let local = digest(&ok(&mut image_cmd(&cache.root, &format!("oci:{}", tmp.path().join("a").display()))));
    let mut from_cache = image_cmd(&cache.root, &format!("oci:{}", tmp.path().join("b").display()));
    from_cache.args(["--from", &file_url(&cache.dir, ""), "--trusted-public-key", &cache.public_key]);
    assert_eq!(digest(&ok(&mut from_cache)), local);
    // Built twice: the same bytes again, and a second tag in the same layout shares every layer.
    let again = digest(&ok(&mut image_cmd(&cache.root, &format!("oci:{}:v2", tmp.path().join("a").display()))));
    assert_eq!(again, local);
    let blobs = std::fs::read_dir(tmp.path().join("a/blobs/sha256")).unwrap().count();
    assert_eq!(blobs, 6 + 2, "6 layers, one config, one manifest");
    // zstd layers are another image, still reproducible.
    let zstd = |dir: &str| {
        let mut c = image_cmd(&cache.root, &format!("oci:{}", tmp.path().join(dir).display()));
        digest(&ok(c.args(["--compression", "zstd"])))
    };
    assert_eq!(zstd("z1"), zstd("z2"));
    assert_ne!(zstd("z3"), local);
}

#[test]
fn bad_input_fails_with_one_line_and_leaves_the_destination_untouched() {
    let cache = Cache::new(&["app"], "zstd");
    let tmp = tempdir();
    let dest = tmp.path().join("img");
    let to = format!("oci:{}", dest.display());
    let untouched = |what: &str| assert!(!dest.exists(), "{what}: {dest:?} was written");

    let mut cmd = narwhal();
    cmd.arg("image").arg(&cache.root).args(["--entrypoint", "bin/nope", "--to", &to]);
    let err = fails(&mut cmd);
    assert!(err.contains("the entrypoint bin/nope is not in") && err.contains("hint:"), "{err}");
    untouched("missing entrypoint");
    assert!(std::fs::read_dir(tmp.path()).unwrap().next().is_none(), "no staging directory is left");

    // An untrusted key, and a path the cache lacks.
    let other = tmp.path().join("other");
    run(nix("nix-store")
        .args(["--generate-binary-cache-key", "other-1"])
        .arg(other.with_extension("sec"))
        .arg(other.with_extension("pub")));
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let mut cmd = image_cmd(&cache.root, &to);
    cmd.args(["--from", &file_url(&cache.dir, ""), "--trusted-public-key", &other_pub]);
    let out = output(&mut cmd);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    untouched("untrusted key");
    let empty = tmp.path().join("empty-cache");
    std::fs::create_dir(&empty).unwrap();
    let mut cmd = image_cmd(&cache.root, &to);
    cmd.args(["--from", &file_url(&empty, ""), "--trusted-public-key", &cache.public_key]);
    let err = fails(&mut cmd);
    assert!(err.contains("is in none of the caches"), "{err}");
    untouched("missing path");

    // A tampered NAR in the cache: the layer is never stored.
    let nar = cache.nar_of(&cache.root);
    let mut bytes = std::fs::read(&nar).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&nar, bytes).unwrap();
    let mut cmd = image_cmd(&cache.root, &to);
    cmd.args(["--from", &file_url(&cache.dir, ""), "--trusted-public-key", &cache.public_key]);
    let out = output(&mut cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("the NAR of") && !stderr.contains("panicked"), "{stderr}");
    untouched("tampered NAR");

    // Usage errors: clap's exit code 2.
    for args in [&["--max-layers", "0"][..], &["--max-layers", "200"], &["--compression", "lz4"]] {
        let out = output(image_cmd(&cache.root, &to).args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    let err = fails(&mut image_cmd(&cache.root, "docker-daemon:x"));
    assert!(err.contains("use oci:DIR[:TAG]"), "{err}");
    let err = fails(image_cmd(&cache.root, &to).args(["--port", "http"]));
    assert!(err.contains("invalid --port"), "{err}");
    untouched("usage errors");
    // A directory that holds something else is not an image layout.
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("notes"), "mine").unwrap();
    let err = fails(&mut image_cmd(&cache.root, &to));
    assert!(err.contains("is not an OCI image layout"), "{err}");
    assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 1);
}

/// Blob uploads (the POSTs that start them and the PUTs that finish them) in the registry's log.
fn uploads(requests: &[String]) -> Vec<&String> {
    requests.iter().filter(|r| r.contains("/blobs/uploads/")).collect()
}

#[test]
fn a_registry_push_uploads_what_is_missing_and_a_re_push_only_checks() {
    use narwhal_testkit::registry::Registry;
    let registry = Registry::start();
    let (app, v2) = (deploy_fixture("app"), deploy_fixture("app-v2"));
    let to = format!("docker://{}/narwhal/app:v1", registry.host());
    let pushed = digest(&ok(&mut image_cmd(&app, &to)));

    // skopeo reads it back: the same manifest, and it copies it into a layout that runs.
    let source = format!("docker://{}/narwhal/app:v1", registry.host());
    let inspect: serde_json::Value =
        serde_json::from_str(&run_text(Command::new("skopeo").args(["inspect", "--tls-verify=false", &source])))
            .unwrap();
    assert_eq!(inspect["Digest"], pushed.as_str());
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 6);
    let tmp = tempdir();
    let copy = tmp.path().join("copy");
    run(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false", &source])
        .arg(format!("oci:{}:v1", copy.display())));
    let printed = run_image(&copy, "v1", tmp.path());
    assert_eq!(printed, format!("65534\n{}\n", run_text(&mut Command::new(app.join("bin/app")))));
    let first = registry.requests();
    assert_eq!(uploads(&first).len(), 2 * 7, "POST and PUT for 6 layers and the config: {first:#?}");

    // The same closure again: HEADs and one manifest PUT, no blob; only the root's layer is tarred
    // again (the layer memo knows the others, and the registry has them).
    let cache_home = tempdir();
    let out = output(image_cmd(&app, &to).env("XDG_CACHE_HOME", cache_home.path()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("6 layers built, 0 reused"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = registry.requests();
    let out = output(image_cmd(&app, &to).env("XDG_CACHE_HOME", cache_home.path()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("1 layers built, 5 reused"), "{stderr}");
    let again = digest(&out.stdout);
    assert_eq!(again, pushed);
    let all = registry.requests();
    let second = &all[first.len()..];
    assert!(uploads(second).is_empty(), "{second:#?}");
    assert_eq!(second.iter().filter(|r| r.starts_with("HEAD ")).count(), 7, "{second:#?}");
    assert_eq!(second.iter().filter(|r| r.starts_with("PUT ") && r.contains("/manifests/v1")).count(), 1);

    // One path changed (the app): only its layer and the config go up.
    let to_v2 = format!("docker://{}/narwhal/app:v2", registry.host());
    ok(&mut image_cmd(&v2, &to_v2));
    let all_after = registry.requests();
    let third = &all_after[all.len()..];
    let finished: Vec<&String> = uploads(third).into_iter().filter(|r| r.starts_with("PUT ")).collect();
    assert_eq!(finished.len(), 2, "the app's layer and the config: {third:#?}");
}

#[test]
fn an_unreachable_registry_is_one_line_with_a_hint() {
    let app = deploy_fixture("app");
    // A loopback port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err = fails(&mut image_cmd(&app, &format!("docker://127.0.0.1:{port}/app:v1")));
    assert!(err.contains("cannot reach the registry 127.0.0.1") && err.contains("hint:"), "{err}");
    let err = fails(&mut image_cmd(&app, "docker://Registry/App"));
    assert!(err.contains("invalid image reference"), "{err}");
}

#[test]
fn v2s2_images_carry_dockers_media_types_as_herokus_registry_requires() {
    use narwhal_testkit::registry::Registry;
    let registry = Registry::start();
    let app = deploy_fixture("app");
    let to = format!("docker://{}/my-app/web", registry.host());
    ok(image_cmd(&app, &to).args(["--format", "v2s2"]));
    let source = format!("docker://{}/my-app/web:latest", registry.host());
    let raw: serde_json::Value = serde_json::from_str(&run_text(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &source,
    ])))
    .unwrap();
    assert_eq!(raw["mediaType"], "application/vnd.docker.distribution.manifest.v2+json");
    assert_eq!(raw["config"]["mediaType"], "application/vnd.docker.container.image.v1+json");
    for layer in raw["layers"].as_array().unwrap() {
        assert_eq!(layer["mediaType"], "application/vnd.docker.image.rootfs.diff.tar.gzip");
    }
    let config: serde_json::Value = serde_json::from_str(&run_text(Command::new("skopeo").args([
        "inspect",
        "--config",
        "--tls-verify=false",
        &source,
    ])))
    .unwrap();
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    let tmp = tempdir();
    let err = fails(image_cmd(&app, &format!("oci:{}", tmp.path().join("z").display())).args([
        "--format",
        "v2s2",
        "--compression",
        "zstd",
    ]));
    assert!(err.contains("zstd layers in a v2s2 image"), "{err}");
}

#[test]
fn a_registry_that_wants_credentials_gets_them_and_wrong_ones_are_named() {
    use narwhal_testkit::registry::Registry;
    let registry = Registry::with_login("ci", "s3cret-pass");
    let app = deploy_fixture("app");
    let to = format!("docker://{}/app:v1", registry.host());
    let err = fails(&mut image_cmd(&app, &to));
    assert!(err.contains("wants credentials") && err.contains("none were given") && err.contains("hint:"), "{err}");
    let err = fails(image_cmd(&app, &to).args(["--creds", "ci:wrong"]));
    assert!(err.contains("refused the ones sent") && !err.contains("wrong"), "the secret is never shown: {err}");
    let tags = || registry.requests().iter().filter(|r| r.starts_with("PUT ") && r.contains("/manifests/")).count();
    assert_eq!(tags(), 0, "no tag moved");
    // From the flag's variable, and from a docker auth file.
    ok(image_cmd(&app, &to).env("NARWHAL_REGISTRY_CREDS", "ci:s3cret-pass"));
    let tmp = tempdir();
    let auth = tmp.path().join("auth.json");
    let token = base64_of("ci:s3cret-pass");
    std::fs::write(&auth, format!(r#"{{"auths":{{"{}":{{"auth":"{token}"}}}}}}"#, registry.host())).unwrap();
    ok(image_cmd(&app, &format!("docker://{}/app:v2", registry.host())).env("REGISTRY_AUTH_FILE", &auth));
    assert_eq!(tags(), 2);
}

fn base64_of(s: &str) -> String {
    let out = run_text(Command::new("sh").arg("-c").arg(format!("printf %s '{s}' | base64 -w0")));
    out.trim().to_owned()
}
