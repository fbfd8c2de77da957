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
        String::from_utf8_lossy(&out.stderr).contains("6 built, 0 reused"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = registry.requests();
    let out = output(image_cmd(&app, &to).env("XDG_CACHE_HOME", cache_home.path()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("1 built, 5 reused"), "{stderr}");
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

#[test]
fn archives_are_read_by_skopeo_and_a_docker_archive_runs_like_under_nix() {
    let app = deploy_fixture("app");
    let tmp = tempdir();
    let under_nix = run_text(&mut Command::new(app.join("bin/app")));

    // docker-archive: what `docker load` reads; skopeo copies it into a layout that runs.
    let file = tmp.path().join("app.tar");
    let to = format!("docker-archive:{}:narwhal/app:v1", file.display());
    ok(&mut image_cmd(&app, &to));
    let members = run_text(Command::new("tar").arg("-tf").arg(&file));
    assert!(members.lines().any(|l| l == "manifest.json") && members.lines().any(|l| l == "repositories"), "{members}");
    let manifest: serde_json::Value =
        serde_json::from_str(&run_text(Command::new("tar").arg("-xOf").arg(&file).arg("manifest.json"))).unwrap();
    assert_eq!(manifest[0]["RepoTags"], serde_json::json!(["narwhal/app:v1"]));
    assert_eq!(manifest[0]["Layers"].as_array().unwrap().len(), 6, "{manifest}");
    let copy = tmp.path().join("copy");
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("docker-archive:{}", file.display()))
        .arg(format!("oci:{}:v1", copy.display())));
    assert_eq!(run_image(&copy, "v1", tmp.path()), format!("65534\n{under_nix}\n"));
    // Reproducible: the same bytes again; a lone tag takes the root's name.
    let again = tmp.path().join("again.tar");
    ok(&mut image_cmd(&app, &format!("docker-archive:{}:narwhal/app:v1", again.display())));
    assert_eq!(std::fs::read(&file).unwrap(), std::fs::read(&again).unwrap());
    ok(&mut image_cmd(&app, &format!("docker-archive:{}:v3", again.display())));
    let manifest: serde_json::Value =
        serde_json::from_str(&run_text(Command::new("tar").arg("-xOf").arg(&again).arg("manifest.json"))).unwrap();
    assert_eq!(manifest[0]["RepoTags"], serde_json::json!(["deploy-app:v3"]));

    // oci-archive: an OCI layout in a tar, with its tag.
    let oci = tmp.path().join("app-oci.tar");
    let digest_of_archive = digest(&ok(&mut image_cmd(&app, &format!("oci-archive:{}:v2", oci.display()))));
    let inspect = skopeo_inspect(&format!("oci-archive:{}:v2", oci.display()), false);
    assert_eq!(inspect["Digest"], digest_of_archive.as_str());
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 6, "{inspect}");

    // A failed build leaves the archive as it was, and no temporary file beside it.
    let before = std::fs::read(&oci).unwrap();
    let mut cmd = narwhal();
    cmd.arg("image").arg(&app).args(["--entrypoint", "bin/nope", "--to"]).arg(format!("oci-archive:{}", oci.display()));
    let err = fails(&mut cmd);
    assert!(err.contains("the entrypoint bin/nope is not in"), "{err}");
    assert_eq!(std::fs::read(&oci).unwrap(), before);
    let names: Vec<String> =
        std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    let err = fails(&mut image_cmd(&app, &format!("oci-archive:{}", tmp.path().join("no/such/x.tar").display())));
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn an_image_from_a_nix_export_is_the_image_from_the_local_store() {
    let app = deploy_fixture("app");
    let tmp = tempdir();
    let export = tmp.path().join("app.closure");
    let out = run(nix("nix-store").arg("--export").args(narwhal_testkit::closure(&app)));
    std::fs::write(&export, out).unwrap();
    let local = digest(&ok(&mut image_cmd(&app, &format!("oci:{}", tmp.path().join("local").display()))));

    // Without roots the export's last path (its top) is the root; from a file and from stdin.
    let from_export = |to: &str, export: &str| {
        let mut c = narwhal();
        c.args(["image", "--entrypoint", "bin/app", "--port", "5000", "--rev", "abc123", "--from-export", export]);
        c.args(["--no-verify", "--to", to]);
        c
    };
    let to = format!("oci:{}", tmp.path().join("exported").display());
    assert_eq!(digest(&ok(&mut from_export(&to, export.to_str().unwrap()))), local);
    let mut stdin = from_export(&format!("oci:{}", tmp.path().join("stdin").display()), "-");
    stdin.stdin(std::fs::File::open(&export).unwrap());
    assert_eq!(digest(&ok(&mut stdin)), local);

    // No signatures: --no-verify is required; a truncated or incomplete export writes nothing.
    let dest = tmp.path().join("bad");
    let to = format!("oci:{}", dest.display());
    let mut cmd = narwhal();
    cmd.arg("image").arg(&app).args(["--from-export", export.to_str().unwrap(), "--to", &to]);
    let err = fails(&mut cmd);
    assert!(err.contains("carries no signatures") && err.contains("--no-verify"), "{err}");
    let bytes = std::fs::read(&export).unwrap();
    let cut = tmp.path().join("cut.closure");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = fails(&mut from_export(&to, cut.to_str().unwrap()));
    assert!(err.contains("the export") && err.contains("hint:"), "{err}");
    let only = tmp.path().join("only.closure");
    std::fs::write(&only, run(nix("nix-store").arg("--export").arg(&app))).unwrap();
    let err = fails(&mut from_export(&to, only.to_str().unwrap()));
    assert!(err.contains("hint: export the whole closure"), "{err}");
    assert!(!dest.exists());
}

/// `narwhal image … --json`'s layers: (digest, store paths).
fn json_layers(out: &[u8]) -> Vec<(String, Vec<String>)> {
    let v: serde_json::Value = serde_json::from_slice(out).unwrap();
    v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let paths = l["paths"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_owned()).collect();
            (l["digest"].as_str().unwrap().to_owned(), paths)
        })
        .collect()
}

#[test]
fn with_a_previous_image_unchanged_paths_keep_their_layers_byte_for_byte() {
    let (app, v2) = (deploy_fixture("app"), deploy_fixture("app-v2"));
    let tmp = tempdir();
    let layout = tmp.path().join("img");
    // The previous image in 3 layers: the largest path, one shared layer, the app.
    let first = json_layers(&ok(image_cmd(&app, &format!("oci:{}:v1", layout.display())).args([
        "--max-layers",
        "3",
        "--json",
    ])));
    assert_eq!(first.len(), 3, "{first:?}");
    let app_name = app.display().to_string();
    let unchanged: Vec<&(String, Vec<String>)> = first.iter().filter(|(_, p)| !p.contains(&app_name)).collect();
    assert_eq!(unchanged.len(), 2);

    // The next version, with the default budget: every unchanged path in the same layer as before.
    let prev = format!("oci:{}:v1", layout.display());
    let next =
        json_layers(&ok(image_cmd(&v2, &format!("oci:{}:v2", layout.display())).args(["--previous", &prev, "--json"])));
    for layer in &unchanged {
        assert!(next.contains(layer), "{layer:?} is not in {next:?}");
    }
    assert_eq!(next.last().unwrap().1, vec![v2.display().to_string()]);
    // Without it, the default budget puts the shared layer's paths elsewhere: the test can fail.
    let fresh = json_layers(&ok(image_cmd(&v2, &format!("oci:{}", tmp.path().join("fresh").display())).arg("--json")));
    assert!(unchanged.iter().any(|l| !fresh.contains(l)), "{fresh:?}");
    // The destination tag's current image is the previous one by default.
    let again = json_layers(&ok(image_cmd(&v2, &format!("oci:{}:v1", layout.display())).arg("--json")));
    for layer in &unchanged {
        assert!(again.contains(layer), "{layer:?} is not in {again:?}");
    }
    let err = fails(
        image_cmd(&v2, &format!("oci:{}", tmp.path().join("x").display()))
            .args(["--previous", &format!("oci:{}:nope", layout.display())]),
    );
    assert!(err.contains("is not there") && err.contains("hint:"), "{err}");
}

#[test]
fn a_push_to_a_second_repository_mounts_every_blob_and_busy_registries_are_waited_for() {
    use narwhal_testkit::registry::{Flaky, Registry};
    let registry = Registry::start();
    let app = deploy_fixture("app");
    let cache_home = tempdir();
    let push = |repo: &str| {
        let mut c = image_cmd(&app, &format!("docker://{}/{repo}:v1", registry.host()));
        c.env("XDG_CACHE_HOME", cache_home.path());
        c
    };
    ok(&mut push("team/one"));
    let before = registry.requests().len();
    let out = ok(push("team/two").arg("--json"));
    let all = registry.requests();
    let second = &all[before..];
    assert!(!second.iter().any(|r| r.starts_with("PUT ") && r.contains("/blobs/uploads/")), "{second:#?}");
    let mounts = second.iter().filter(|r| r.starts_with("POST ") && r.contains("mount=")).count();
    assert_eq!(mounts, 7, "6 layers and the config: {second:#?}");
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        (report["uploaded"].as_u64(), report["mounted"].as_u64(), report["bytes_sent"].as_u64()),
        (Some(0), Some(7), Some(0))
    );
    let source = format!("docker://{}/team/two:v1", registry.host());
    let inspect: serde_json::Value =
        serde_json::from_str(&run_text(Command::new("skopeo").args(["inspect", "--tls-verify=false", &source])))
            .unwrap();
    assert_eq!(inspect["Digest"], report["manifest"]);

    // A registry answering 429 twice: waited for (Retry-After), then the push goes on.
    let flaky = Flaky::start(registry.addr, 2, 429);
    let out = output(&mut image_cmd(&app, &format!("docker://{}/team/three:v1", flaky.host())));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches("retrying").count(), 2, "{stderr}");
    assert!(stderr.contains("in 1.0 s") && stderr.contains("HTTP 429"), "{stderr}");
    // One that stays at 503: one line, no tag moved.
    let down = Flaky::start(registry.addr, 1000, 503);
    let err = fails(&mut image_cmd(&app, &format!("docker://{}/team/four:v1", down.host())));
    assert!(err.contains("HTTP 503"), "{err}");
    assert!(!registry.requests().iter().any(|r| r.contains("team/four")));
}

#[test]
fn a_base_image_made_by_umoci_goes_first_and_its_config_is_merged() {
    let app = deploy_fixture("app");
    let tmp = tempdir();
    let base = tmp.path().join("base");
    let image = format!("{}:base", base.display());
    run(Command::new("umoci").args(["init", "--layout"]).arg(&base));
    run(Command::new("umoci").args(["new", "--image", &image]));
    let greeting = tmp.path().join("greeting");
    std::fs::write(&greeting, "hello from the base\n").unwrap();
    run(Command::new("umoci").args(["insert", "--image", &image]).arg(&greeting).arg("/etc/greeting"));
    run(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--config.env",
        "GREETING=hi",
        "--config.env",
        "PATH=/usr/bin:/bin",
        "--config.label",
        "from=base",
    ]));

    let out = tmp.path().join("out");
    let to = format!("oci:{}:v1", out.display());
    ok(image_cmd(&app, &to).args(["--base", &format!("oci:{image}")]));
    run(Command::new("oci-image-tool").args(["validate", "--type", "image", "--ref", "name=v1"]).arg(&out));
    let inspect = skopeo_inspect(&to, false);
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 7, "the base's layer, then 6: {inspect}");
    let config = skopeo_inspect(&to, true);
    let env: Vec<&str> = config["config"]["Env"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert!(env.contains(&"GREETING=hi"), "{env:?}");
    assert!(env.contains(&format!("PATH={}/bin:/usr/bin:/bin", app.display()).as_str()), "{env:?}");
    assert_eq!(config["config"]["Labels"]["from"], "base");
    assert_eq!(config["config"]["Labels"]["org.opencontainers.image.revision"], "abc123");
    let under_nix = run_text(&mut Command::new(app.join("bin/app")));
    assert_eq!(run_image(&out, "v1", tmp.path()), format!("65534\n{under_nix}\n"));
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("bundle/rootfs/etc/greeting")).unwrap(),
        "hello from the base\n"
    );

    // A base that is not there: one line, nothing written.
    let dest = tmp.path().join("none");
    let err = fails(
        image_cmd(&app, &format!("oci:{}", dest.display())).args(["--base", &format!("oci:{}:nope", base.display())]),
    );
    assert!(err.contains("is not there") && err.contains("hint:"), "{err}");
    assert!(!dest.exists());
}

#[test]
fn credentials_come_from_a_docker_config_and_narwhal_toml_sets_the_flags() {
    use narwhal_testkit::registry::Registry;
    let registry = Registry::with_login("ci", "s3cret-pass");
    let app = deploy_fixture("app");
    let home = tempdir();
    let docker = home.path().join(".docker");
    std::fs::create_dir(&docker).unwrap();
    let to = format!("docker://{}/app:v1", registry.host());
    let auth = format!(r#"{{"auths":{{"https://{}":{{"auth":"{}"}}}}}}"#, registry.host(), base64_of("ci:s3cret-pass"));
    std::fs::write(docker.join("config.json"), auth).unwrap();
    let cmd = |to: &str| {
        let mut c = image_cmd(&app, to);
        c.env("HOME", home.path()).env_remove("REGISTRY_AUTH_FILE").env_remove("NARWHAL_REGISTRY_CREDS");
        c
    };
    ok(&mut cmd(&to));
    // A malformed one is one line naming the file, before anything is sent.
    std::fs::write(docker.join("config.json"), r#"{"auths": {"x": "#).unwrap();
    let before = registry.requests().len();
    let err = fails(&mut cmd(&format!("docker://{}/app:v2", registry.host())));
    assert!(err.contains("config.json") && err.contains("not JSON") && err.contains("hint:"), "{err}");
    assert_eq!(registry.requests().len(), before);

    // narwhal.toml's [image] table: the destination, the format, an env; a flag wins over it.
    let dir = tempdir();
    let out = dir.path().join("img");
    std::fs::write(
        dir.path().join("narwhal.toml"),
        format!(
            "[image]\nto = \"oci:{}:v1\"\nformat = \"v2s2\"\nenv = {{ FROM_TOML = \"yes\" }}\nuser = \"1000:1000\"\n",
            out.display()
        ),
    )
    .unwrap();
    let mut c = narwhal();
    c.current_dir(dir.path()).arg("image").arg(&app).args(["--entrypoint", "bin/app", "--user", "4242:4242"]);
    ok(&mut c);
    // skopeo reads only OCI manifests from a layout: the documents are read here.
    let read = |digest: &str| -> serde_json::Value {
        let hex = digest.trim_start_matches("sha256:");
        serde_json::from_slice(&std::fs::read(out.join("blobs/sha256").join(hex)).unwrap()).unwrap()
    };
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["mediaType"], "application/vnd.docker.distribution.manifest.v2+json");
    let manifest = read(index["manifests"][0]["digest"].as_str().unwrap());
    let config = read(manifest["config"]["digest"].as_str().unwrap());
    assert_eq!(config["config"]["User"], "4242:4242");
    assert!(config["config"]["Env"].as_array().unwrap().iter().any(|e| e == "FROM_TOML=yes"), "{config}");
    std::fs::write(dir.path().join("narwhal.toml"), "[image]\nmax-layers = 0\n").unwrap();
    let mut c = narwhal();
    c.current_dir(dir.path()).arg("image").arg(&app).args(["--to", "oci:x"]);
    let err = fails(&mut c);
    assert!(err.contains("narwhal.toml") && err.contains("max-layers = 0") && err.contains("hint:"), "{err}");
    std::fs::write(dir.path().join("narwhal.toml"), "[image]\ncolour = \"blue\"\n").unwrap();
    let err = fails(&mut c);
    assert!(err.contains("unknown field") && err.contains("hint:"), "{err}");
    assert!(!dir.path().join("x").exists());
}
