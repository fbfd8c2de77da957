//! The Cloud Native Buildpack end to end, through the lifecycle emulator
//! (`narwhal_testkit::cnb`, written from the buildpacks spec): packaged by
//! `narwhal buildpack package-cnb`, deploying closures from signed caches
//! written by real Nix, rebuilt, and launched in a root holding only
//! `/workspace` and `/layers`, as nobody, with no `/nix`.

use std::path::{Path, PathBuf};

use narwhal_testkit::cnb::{check_descriptor, Build, Lifecycle, Outcome};
use narwhal_testkit::http::HttpServer;
use narwhal_testkit::isolate::{deploy_fixture, DEPLOY_APP_OUTPUT, DEPLOY_FIXTURES};
use narwhal_testkit::{output, run, tempdir};

use crate::fetch::Cache;
use crate::narwhal;

/// `narwhal buildpack package-cnb DIR`.
fn package(dir: &Path) -> PathBuf {
    let bp = dir.join("buildpack");
    run(narwhal().args(["buildpack", "package-cnb"]).arg(&bp));
    bp
}

/// An app's source: `files` (name, contents).
fn source(dir: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let src = dir.join(name);
    std::fs::create_dir_all(&src).unwrap();
    for (f, text) in files {
        std::fs::write(src.join(f), text).unwrap();
    }
    src
}

fn deploy_toml(root: &Path, server: &HttpServer) -> String {
    format!(
        "roots = [\"{}\"]\nsubstituters = [\"{}\"]\n\n[processes]\nweb = \"result/bin/app\"\n",
        root.display(),
        server.url()
    )
}

fn exported(build: &Build) {
    assert_eq!(build.outcome, Outcome::Exported, "{}", build.log());
}

/// Every line the buildpack prints is in Heroku's style.
fn heroku_style(log: &str) {
    for line in log.lines().filter(|l| !l.is_empty()) {
        assert!(
            line.starts_with("-----> ") || line.starts_with("       ") || line.starts_with(" !     "),
            "not in Heroku's line style: {line:?}\n{log}"
        );
    }
}

fn slices(list: &[String]) -> usize {
    list.iter().filter(|l| l.starts_with("slice:")).count()
}

#[test]
fn deploys_rebuilds_and_launches_without_nix() {
    let cache = Cache::new(&["app", "app-v2"], "xz");
    let server = HttpServer::start(&cache.dir, &[]);
    let tmp = tempdir();
    let mut lc = Lifecycle::new(&package(tmp.path()));
    lc.set_env("NARWHAL_TRUSTED_PUBLIC_KEYS", &cache.public_key);

    let src = source(tmp.path(), "src", &[("narwhal.toml", &deploy_toml(&cache.root, &server))]);
    let first = lc.build(&src);
    exported(&first);
    heroku_style(&first.stdout);
    assert!(first.stdout.contains("6 downloaded"), "{}", first.log());
    assert!(first.stdout.contains("no cached store yet"), "{}", first.log());
    assert!(first.stdout.contains("0 of 6 store paths from the cache layer"), "{}", first.log());
    assert!(first.stdout.contains("cache layer: 6 store paths added, 0 removed,"), "{}", first.log());
    assert_eq!(server.nar_downloads(), 6);

    // The web process prints exactly what the root prints under Nix.
    let under_nix = run(&mut std::process::Command::new(cache.root.join("bin/app")));
    assert_eq!(String::from_utf8_lossy(&under_nix), DEPLOY_APP_OUTPUT);
    let image = lc.image().unwrap();
    let out = image.launch(None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, under_nix);
    // One slice per store path, each store path at /workspace/<hash>-<name>.
    let names: Vec<String> = narwhal_testkit::closure(&cache.root)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), DEPLOY_FIXTURES.len());
    for n in &names {
        assert!(image.workspace().join(n).is_dir(), "{n}");
    }
    assert_eq!(image.app_layers.len(), names.len() + 1);
    // PATH comes from the launch layer's env.launch: `app` is found by name.
    let env = image.launch_env("web");
    let path = env.iter().find(|(k, _)| k == "PATH").unwrap();
    assert!(path.1.starts_with("/workspace/result/bin:"), "{path:?}");

    // Nothing changed: nothing downloaded, nothing unpacked, every path linked from the cache
    // layer, every layer reused.
    let again = lc.build(&src);
    exported(&again);
    assert_eq!(server.nar_downloads(), 6, "{}", again.log());
    assert!(again.stdout.contains("reusing the cached store"), "{}", again.log());
    assert!(again.stdout.contains("6 of 6 store paths from the cache layer, verified and linked"), "{}", again.log());
    assert!(
        again.stdout.contains("0 downloaded, 0 from the local cache, 6 already present; 0 B read, 0 B unpacked"),
        "{}",
        again.log()
    );
    assert!(again.stdout.contains("cache layer: 0 store paths added, 0 removed,"), "{}", again.log());
    assert_eq!(slices(&again.added), 0, "{:?}", again.added);
    assert_eq!(slices(&again.reused), names.len());

    // One store path changed: one NAR downloaded, every other slice reused.
    let v2 = deploy_fixture("app-v2");
    let src2 = source(tmp.path(), "src2", &[("narwhal.toml", &deploy_toml(&v2, &server))]);
    let changed = lc.build(&src2);
    exported(&changed);
    assert_eq!(server.nar_downloads(), 7, "{}", changed.log());
    assert!(changed.stdout.contains("5 of 6 store paths from the cache layer"), "{}", changed.log());
    assert!(changed.stdout.contains("1 downloaded, 0 from the local cache, 5 already present"), "{}", changed.log());
    assert!(changed.stdout.contains("cache layer: 1 store path added, 1 removed,"), "{}", changed.log());
    assert_eq!(slices(&changed.added), 1, "{:?}", changed.added);
    assert_eq!(slices(&changed.reused), names.len() - 1, "{:?}", changed.reused);
    let out = lc.image().unwrap().launch(Some("web"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), DEPLOY_APP_OUTPUT, "{}", String::from_utf8_lossy(&out.stderr));

    // A file changed in the cached store (a tampered cache, or a later buildpack writing through
    // a hard link): that path is discarded with a line and fetched again, and the image has the
    // verified bytes.
    let data = deploy_fixture("data");
    let base = data.file_name().unwrap().to_string_lossy().into_owned();
    let file = walk_files(&lc.cache_dir().join("closure").join(&base)).into_iter().next().unwrap();
    let rel = file.strip_prefix(lc.cache_dir().join("closure")).unwrap().to_path_buf();
    let good = std::fs::read(lc.image().unwrap().workspace().join(&rel)).unwrap();
    let mut bad = good.clone();
    bad.extend_from_slice(b"tampered");
    std::fs::write(&file, &bad).unwrap();
    let tampered = lc.build(&src2);
    exported(&tampered);
    assert!(
        tampered.stdout.contains(&format!("discarding the cached {base}: its files hash to")),
        "{}",
        tampered.log()
    );
    assert!(tampered.stdout.contains("1 downloaded, 0 from the local cache, 5 already present"), "{}", tampered.log());
    assert_eq!(server.nar_downloads(), 8, "{}", tampered.log());
    assert_eq!(std::fs::read(lc.image().unwrap().workspace().join(&rel)).unwrap(), good);
    let out = lc.image().unwrap().launch(Some("web"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), DEPLOY_APP_OUTPUT, "{}", String::from_utf8_lossy(&out.stderr));
}

/// The regular files under `dir`.
fn walk_files(dir: &Path) -> Vec<PathBuf> {
    narwhal_formats::tree::Walk::new(dir).map(Result::unwrap).filter(|e| e.meta.is_file()).map(|e| e.path).collect()
}

#[test]
fn detect_says_what_it_looked_for() {
    let tmp = tempdir();
    let mut lc = Lifecycle::new(&package(tmp.path()));
    let nothing = lc.build(&source(tmp.path(), "empty", &[("README", "hi\n")]));
    assert_eq!(nothing.outcome, Outcome::DetectFailed);
    assert!(nothing.log().contains("narwhal.toml"), "{}", nothing.log());
    // A Nix file alone fails detect (rather than passing it and failing the build), naming the fixes.
    let nix_only = lc.build(&source(tmp.path(), "nix-only", &[("default.nix", "{}\n")]));
    assert_eq!(nix_only.outcome, Outcome::DetectFailed);
    heroku_style(&nix_only.stdout);
    assert!(nix_only.log().contains("NIX_BUILD_ON_PUSH") && nix_only.log().contains("narwhal.toml"));
    // The older buildpack's configuration passes.
    lc.set_env("NIX_BUILD_ON_PUSH", "1");
    let passes = lc.build(&source(tmp.path(), "nix-build", &[("default.nix", "{}\n")]));
    assert_ne!(passes.outcome, Outcome::DetectFailed, "{}", passes.log());
    assert!(lc.image().is_none());
}

/// A failure is a clear error, a failed build and nothing exported; the cache stays as it was.
fn fails(lc: &mut Lifecycle, src: &Path, expect: &str) {
    let build = lc.build(src);
    assert!(matches!(build.outcome, Outcome::BuildFailed(_)), "{:?}: {}", build.outcome, build.log());
    assert!(build.stderr.contains(expect), "expected {expect:?}:\n{}", build.log());
    assert!(build.stderr.lines().any(|l| l.starts_with(" !     ")), "{}", build.log());
    assert!(lc.image().is_none());
}

#[test]
fn untrusted_tampered_and_missing_closures_fail_the_build() {
    let cache = Cache::new(&["app"], "zstd");
    let server = HttpServer::start(&cache.dir, &[]);
    let tmp = tempdir();
    let bp = package(tmp.path());
    let src = source(tmp.path(), "src", &[("narwhal.toml", &deploy_toml(&cache.root, &server))]);

    let (sec, public) = (tmp.path().join("other.sec"), tmp.path().join("other.pub"));
    run(narwhal_testkit::nix("nix-store").args(["--generate-binary-cache-key", "other-1"]).arg(&sec).arg(&public));
    let mut untrusted = Lifecycle::new(&bp);
    untrusted.set_env("NARWHAL_TRUSTED_PUBLIC_KEYS", &std::fs::read_to_string(&public).unwrap());
    fails(&mut untrusted, &src, "signature");

    let mut missing = Lifecycle::new(&bp);
    missing.set_env("NARWHAL_TRUSTED_PUBLIC_KEYS", &cache.public_key);
    let pin = format!("pin = \"web\"\nwait = 1\nsubstituters = [\"{}\"]\n", server.url());
    missing.set_env("SOURCE_VERSION", "deadbeef");
    fails(&mut missing, &source(tmp.path(), "pin", &[("narwhal.toml", &pin)]), "no pin pins/web@deadbeef");

    // A NAR whose bytes are not the signed ones.
    let nar = cache.nar_of(&deploy_fixture("data"));
    let mut bytes = std::fs::read(&nar).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&nar, bytes).unwrap();
    let mut tampered = Lifecycle::new(&bp);
    tampered.set_env("NARWHAL_TRUSTED_PUBLIC_KEYS", &cache.public_key);
    let build = tampered.build(&src);
    assert!(matches!(build.outcome, Outcome::BuildFailed(_)), "{}", build.log());
    assert!(
        build.stderr.contains(&nar.file_name().unwrap().to_string_lossy()[..10]) || build.stderr.contains("hash"),
        "{}",
        build.log()
    );
    assert!(tampered.image().is_none());
}

/// The older Heroku Nix buildpack's closure on S3 (NIX_S3_BUCKET, NIX_APP_NAME, NIX_S3_KEY,
/// NIX_S3_SECRET), on Garage.
#[test]
fn the_older_buildpacks_s3_export_deploys() {
    use narwhal_testkit::garage::{Garage, REGION};
    let garage = Garage::start();
    let bucket = garage.create_bucket("closures");
    let root = deploy_fixture("app");
    let object = format!("s3://{}/nix-closures/my-app.closure", bucket.name);
    run(narwhal()
        .arg("export")
        .arg(&root)
        .args(["-o", &object])
        .env("AWS_ACCESS_KEY_ID", &bucket.key_id)
        .env("AWS_SECRET_ACCESS_KEY", &bucket.secret)
        .env("AWS_ENDPOINT_URL", garage.s3_endpoint())
        .env("AWS_REGION", REGION));
    let tmp = tempdir();
    let mut lc = Lifecycle::new(&package(tmp.path()));
    for (k, v) in [
        ("NIX_S3_BUCKET", bucket.name.as_str()),
        ("NIX_APP_NAME", "my-app"),
        ("NIX_S3_KEY", bucket.key_id.as_str()),
        ("NIX_S3_SECRET", bucket.secret.as_str()),
        ("AWS_ENDPOINT_URL", garage.s3_endpoint().as_str()),
        ("AWS_REGION", REGION),
    ] {
        lc.set_env(k, v);
    }
    let src = source(tmp.path(), "src", &[("Procfile", "web: result/bin/app\n"), ("default.nix", "{}\n")]);
    let build = lc.build(&src);
    exported(&build);
    assert!(build.stdout.contains("from the export s3://closures/nix-closures/my-app.closure"), "{}", build.log());
    let out = lc.image().unwrap().launch(None);
    assert_eq!(String::from_utf8_lossy(&out.stdout), DEPLOY_APP_OUTPUT, "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_package_parses_and_its_image_validates() {
    let tmp = tempdir();
    let bp = package(tmp.path());
    let descriptor: toml::Table = std::fs::read_to_string(bp.join("buildpack.toml")).unwrap().parse().unwrap();
    assert_eq!(check_descriptor(&descriptor), Vec::<String>::new());
    assert_eq!(descriptor["api"].as_str(), Some("0.10"));
    let targets = descriptor["targets"].as_array().unwrap();
    assert_eq!(targets[0]["os"].as_str(), Some("linux"));
    assert_eq!(targets[0]["arch"].as_str(), Some("amd64"));
    for bin in ["detect", "build"] {
        assert!(bp.join("bin").join(bin).exists(), "{bin}");
    }

    let layout = tmp.path().join("layout");
    let dest = format!("oci:{}:0.0.0", layout.display());
    run(narwhal().args(["buildpack", "package-cnb"]).arg(tmp.path().join("bp2")).args(["--image", &dest]));
    let validate = output(
        std::process::Command::new("oci-image-tool")
            .args(["validate", "--type", "image", "--ref", "name=0.0.0"])
            .arg(&layout),
    );
    assert!(
        validate.status.success(),
        "{}{}",
        String::from_utf8_lossy(&validate.stdout),
        String::from_utf8_lossy(&validate.stderr)
    );
    let inspect = run(std::process::Command::new("skopeo").args(["inspect", &dest]));
    let json: serde_json::Value = serde_json::from_slice(&inspect).unwrap();
    let labels = &json["Labels"];
    let meta: serde_json::Value =
        serde_json::from_str(labels["io.buildpacks.buildpackage.metadata"].as_str().unwrap()).unwrap();
    assert_eq!(meta["id"].as_str(), descriptor["buildpack"]["id"].as_str());
    let layers: serde_json::Value =
        serde_json::from_str(labels["io.buildpacks.buildpack.layers"].as_str().unwrap()).unwrap();
    let id = descriptor["buildpack"]["id"].as_str().unwrap();
    let version = descriptor["buildpack"]["version"].as_str().unwrap();
    let entry = &layers[id][version];
    assert_eq!(entry["api"].as_str(), Some("0.10"));
    let diff_id = entry["layerDiffID"].as_str().unwrap();
    assert!(json["Layers"].as_array().unwrap().len() == 1 && diff_id.starts_with("sha256:"), "{json}");

    // Pushed to a registry (docker-registry, as a Fir app's project.toml names it by docker://), the
    // same image: skopeo reads the same labels and layer back from the registry.
    let registry = narwhal_testkit::registry::Registry::start();
    let remote = format!("docker://{}/narwhal/buildpack:0.0.0", registry.host());
    run(narwhal().args(["buildpack", "package-cnb"]).arg(tmp.path().join("bp3")).args(["--image", &remote]));
    let pushed = run(std::process::Command::new("skopeo").args(["inspect", "--tls-verify=false", &remote]));
    let pushed: serde_json::Value = serde_json::from_slice(&pushed).unwrap();
    assert_eq!(pushed["Labels"], json["Labels"], "{pushed}");
    assert_eq!(pushed["Layers"], json["Layers"], "{pushed}");
    assert_eq!(pushed["Architecture"], "amd64");
    assert_eq!(pushed["Os"], "linux");
}

/// Build on push under the CNB: an app with only a default.nix and the older buildpack's config vars
/// (NIX_BUILD_ON_PUSH, NIX_BUILD_FLAGS) from the platform's env/ is detected, built with nix-build,
/// deployed into /workspace from the local cache it signed, and its web process (a Procfile's) runs
/// in the image without Nix. A second build, with nothing changed, builds again and links every path
/// from the closure cache layer.
#[test]
fn builds_with_nix_on_push_and_launches_what_it_built() {
    let tmp = tempdir();
    let mut lc = Lifecycle::new(&package(tmp.path()));
    lc.set_env("NIX_BUILD_ON_PUSH", "1");
    lc.set_env("NIX_BUILD_FLAGS", "-A hi");
    lc.set_env("NIX_CONFIG", narwhal_testkit::NIX_CONFIG);
    let src = source(tmp.path(), "src", &[("Procfile", "web: result/bin/hi\n")]);
    crate::buildpack::default_nix(&src, "cnb-built-on-push", "built on push under the CNB");
    let first = lc.build(&src);
    exported(&first);
    heroku_style(&first.stdout);
    assert!(first.stdout.contains("Building with nix-build"), "{}", first.log());
    let out = lc.image().unwrap().launch(None);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "built on push under the CNB\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let again = lc.build(&src);
    exported(&again);
    assert!(again.stdout.contains("Building with nix-build"), "{}", again.log());
    assert!(again.stdout.contains("0 downloaded"), "{}", again.log());
    assert_eq!(slices(&again.added), 0, "{:?}", again.added);
    let out = lc.image().unwrap().launch(None);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "built on push under the CNB\n");
}
