//! The classic Heroku buildpack end to end: bin/compile against a real HTTP
//! cache written by real Nix, then the Procfile command in a root holding only
//! the slug at /app, as nobody, with no /nix.

use std::path::{Path, PathBuf};
use std::process::Command;

use narwhal_testkit::http::HttpServer;
use narwhal_testkit::isolate::{deploy_fixture, Isolated, DEPLOY_APP_OUTPUT};
use narwhal_testkit::{output, tempdir};

use crate::fetch::Cache;

fn buildpack(script: &str) -> Command {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../buildpack/bin").join(script);
    let mut c = Command::new(path);
    c.env("NARWHAL_BIN", env!("CARGO_BIN_EXE_narwhal")).env_remove("SOURCE_VERSION");
    c
}

struct App {
    build: PathBuf,
    cache: PathBuf,
    env: PathBuf,
}

fn app(tmp: &Path, name: &str, cache_dir: &Path, toml: &str, vars: &[(&str, &str)]) -> App {
    let build = tmp.join(name).join("build");
    let env = tmp.join(name).join("env");
    std::fs::create_dir_all(&build).unwrap();
    std::fs::create_dir_all(&env).unwrap();
    std::fs::write(build.join("narwhal.toml"), toml).unwrap();
    for (k, v) in vars {
        std::fs::write(env.join(k), v).unwrap();
    }
    App { build, cache: cache_dir.to_path_buf(), env }
}

fn compile(app: &App) -> String {
    let out = output(buildpack("compile").arg(&app.build).arg(&app.cache).arg(&app.env));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "bin/compile failed:\n{text}");
    text
}

fn run_slug(build: &Path, argv: &[&str]) -> String {
    let iso = Isolated::new();
    iso.add_dir(build, "/app");
    assert!(!iso.host_path("/nix").exists());
    iso.run_ok(argv, &[("HOME", "/app")])
}

/// A default.nix whose attribute `hi` builds `name`: `bin/hi`, a busybox script that prints `says`.
pub fn default_nix(build: &Path, name: &str, says: &str) {
    let mk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../narwhal-testkit/fixtures/mk.nix");
    let busybox = deploy_fixture("busybox");
    std::fs::write(
        build.join("default.nix"),
        format!(
            "{{ hi = import {} \"{name}\" ''mkdir -p $out/bin && printf '#!${{builtins.storePath \"{}\"}}/bin/sh\\necho {says}\\n' > $out/bin/hi && chmod +x $out/bin/hi''; }}\n",
            mk.display(),
            busybox.display()
        ),
    )
    .unwrap();
}

fn busybox_in_slug(build: &Path) -> String {
    let name = deploy_fixture("busybox").file_name().unwrap().to_string_lossy().into_owned();
    assert!(build.join("store").join(&name).exists());
    format!("/app/store/{name}/bin/sh")
}

#[test]
fn compile_then_run_the_procfile_command_without_nix() {
    let cache = Cache::new(&["app", "app-v2"], "xz");
    let server = HttpServer::start(&cache.dir, &[]);
    let tmp = tempdir();
    let cache_dir = tmp.path().join("cache");
    let toml = |root: &Path| {
        format!(
            "roots = [\"{}\"]\nsubstituters = [\"{}\"]\n\n[processes]\nweb = \"result/bin/app\"\n",
            root.display(),
            server.url()
        )
    };
    let first =
        app(tmp.path(), "first", &cache_dir, &toml(&cache.root), &[("NARWHAL_TRUSTED_PUBLIC_KEYS", &cache.public_key)]);
    let log = compile(&first);
    assert!(log.contains("6 downloaded"), "{log}");
    assert!(log.contains("total "), "size report missing:\n{log}");

    // bin/detect and bin/release.
    let detect = output(buildpack("detect").arg(&first.build));
    assert!(detect.status.success());
    assert_eq!(String::from_utf8_lossy(&detect.stdout), "narwhal\n");
    assert!(!output(buildpack("detect").arg(tmp.path())).status.success());
    let release = output(buildpack("release").arg(&first.build));
    assert_eq!(String::from_utf8_lossy(&release.stdout), "---\ndefault_process_types:\n  web: 'result/bin/app'\n");

    // The Procfile command, as Heroku runs it from /app.
    assert_eq!(run_slug(&first.build, &["/app/result/bin/app"]), DEPLOY_APP_OUTPUT);
    // Through .profile.d's PATH, and through the older buildpack's run_result.sh.
    let sh = busybox_in_slug(&first.build);
    assert_eq!(run_slug(&first.build, &[&sh, "-c", ". /app/.profile.d/narwhal.sh && app"]), DEPLOY_APP_OUTPUT);
    assert_eq!(run_slug(&first.build, &[&sh, "/app/.narwhal/bin/run_result.sh", "bin/app"]), DEPLOY_APP_OUTPUT);

    // A redeploy after a change to the app only: only its NAR is downloaded.
    let downloads = server.nar_downloads();
    let v2 = deploy_fixture("app-v2");
    let second =
        app(tmp.path(), "second", &cache_dir, &toml(&v2), &[("NARWHAL_TRUSTED_PUBLIC_KEYS", &cache.public_key)]);
    let log = compile(&second);
    assert_eq!(server.nar_downloads(), downloads + 1, "{log}");
    assert!(log.contains("1 downloaded, 5 from the local cache"), "{log}");
    assert_eq!(run_slug(&second.build, &["/app/result/bin/app"]), DEPLOY_APP_OUTPUT);

    // Without the build cache, everything is downloaded again.
    std::fs::remove_dir_all(&cache_dir).unwrap();
    let third = app(tmp.path(), "third", &cache_dir, &toml(&v2), &[("NARWHAL_TRUSTED_PUBLIC_KEYS", &cache.public_key)]);
    let log = compile(&third);
    assert!(log.contains("6 downloaded"), "{log}");
}

#[test]
fn config_vars_pins_and_slugexclude() {
    let cache = Cache::new(&["app"], "zstd");
    let pins = cache.dir.join("pins");
    std::fs::create_dir_all(&pins).unwrap();
    std::fs::write(
        pins.join("web@c0ffee"),
        format!("Name: web\nStorePath: {}\nRevision: c0ffee\nCreated: 1\n", cache.root.display()),
    )
    .unwrap();
    let server = HttpServer::start(&cache.dir, &[]);
    let tmp = tempdir();
    // Everything from config vars, the cache as the older buildpack named it.
    let a = app(
        tmp.path(),
        "a",
        &tmp.path().join("cache"),
        "",
        &[
            ("NARWHAL_PIN", "web"),
            ("NIX_EXTRA_BINARY_CACHE", &server.url()),
            ("NARWHAL_TRUSTED_PUBLIC_KEYS", &cache.public_key),
        ],
    );
    // Keep directories and shared libraries only: the launcher script goes, and narwhal says what broke.
    std::fs::write(a.build.join(".slugexclude"), "+ store/**/\n+ *[._]so*\n- store/**\n").unwrap();
    let out = output(buildpack("compile").arg(&a.build).arg(&a.cache).arg(&a.env).env("SOURCE_VERSION", "c0ffee"));
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{log}");
    assert!(log.contains("pin:web@c0ffee"), "{log}");
    assert!(log.contains(".slugexclude removed"), "{log}");
    assert!(log.contains("warning: "), "pruning broke links and narwhal must say so:\n{log}");
    let app_dir = a.build.join("result");
    assert!(!app_dir.join("bin/app").exists());
    assert!(a.build.join("store").join(deploy_fixture("glibc").file_name().unwrap()).join("lib/libc.so.6").exists());

    // A pin that never comes: a clear error after NARWHAL_WAIT seconds.
    let b = app(
        tmp.path(),
        "b",
        &tmp.path().join("cache"),
        "pin = \"web\"\nwait = 1\n",
        &[("NARWHAL_SUBSTITUTERS", &server.url()), ("NARWHAL_TRUSTED_PUBLIC_KEYS", &cache.public_key)],
    );
    let out = output(buildpack("compile").arg(&b.build).arg(&b.cache).arg(&b.env).env("SOURCE_VERSION", "deadbeef"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no pin pins/web@deadbeef in any cache after waiting 1 s"), "{stderr}");
    assert!(!b.build.join("result").exists());

    // Nothing configured: the fix is in the message.
    let c = app(tmp.path(), "c", &tmp.path().join("cache"), "", &[]);
    let out = output(buildpack("compile").arg(&c.build).arg(&c.cache).arg(&c.env));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("nothing to deploy") && stderr.contains("NARWHAL_PIN"), "{stderr}");
    // A typo in narwhal.toml.
    let d = app(tmp.path(), "d", &tmp.path().join("cache"), "pins = \"web\"\n", &[]);
    let out = output(buildpack("compile").arg(&d.build).arg(&d.cache).arg(&d.env));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown field `pins`"), "{stderr}");
}

#[test]
fn builds_with_nix_when_asked_and_deploys_what_it_built() {
    let tmp = tempdir();
    let a = app(
        tmp.path(),
        "nixapp",
        &tmp.path().join("cache"),
        "[processes]\nweb = \"result/bin/hi\"\n",
        &[("NIX_BUILD_ON_PUSH", "1"), ("NIX_BUILD_FLAGS", "-A hi")],
    );
    default_nix(&a.build, "built-on-push", "built on push");
    let out = output(
        buildpack("compile").arg(&a.build).arg(&a.cache).arg(&a.env).env("NIX_CONFIG", narwhal_testkit::NIX_CONFIG),
    );
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{log}");
    assert!(log.contains("Building with nix-build"), "{log}");
    assert_eq!(run_slug(&a.build, &["/app/result/bin/hi"]), "built on push\n");
}

/// An app as the older Heroku Nix buildpack had it: default.nix, the closure file on S3 named by
/// NIX_S3_BUCKET and NIX_APP_NAME, credentials in NIX_S3_KEY / NIX_S3_SECRET. Building on push stores
/// the closure there (as that buildpack's `build` did); a later deploy without building reads it back.
#[test]
fn the_older_buildpacks_s3_closure_config_vars_work_unchanged() {
    use narwhal_testkit::garage::{Garage, REGION};
    let garage = Garage::start();
    let bucket = garage.create_bucket("closures");
    let tmp = tempdir();
    let endpoint = garage.s3_endpoint();
    let vars = |secret: &str, app_name: &str, build: bool| -> Vec<(String, String)> {
        let mut v = vec![
            ("NIX_S3_BUCKET", bucket.name.as_str()),
            ("NIX_APP_NAME", app_name),
            ("NIX_S3_KEY", bucket.key_id.as_str()),
            ("NIX_S3_SECRET", secret),
            // Not needed on AWS: Garage is elsewhere, in its own region.
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_REGION", REGION),
        ];
        if build {
            v.extend([("NIX_BUILD_ON_PUSH", "1"), ("NIX_BUILD_FLAGS", "-A hi")]);
        }
        v.into_iter().map(|(k, val)| (k.to_owned(), val.to_owned())).collect()
    };
    let legacy_app = |name: &str, vars: &[(String, String)]| {
        let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let a = app(tmp.path(), name, &tmp.path().join(format!("{name}-cache")), "", &refs);
        std::fs::remove_file(a.build.join("narwhal.toml")).unwrap();
        default_nix(&a.build, "legacy-app", "restored from the closure");
        a
    };
    let compile_log = |a: &App| {
        let out = output(
            buildpack("compile").arg(&a.build).arg(&a.cache).arg(&a.env).env("NIX_CONFIG", narwhal_testkit::NIX_CONFIG),
        );
        let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), log)
    };

    // Build on push: built, the closure stored on S3, deployed.
    let first = legacy_app("first", &vars(&bucket.secret, "my-app", true));
    let (ok, log) = compile_log(&first);
    assert!(ok, "{log}");
    assert!(log.contains("Storing the closure at s3://closures/nix-closures/my-app.closure"), "{log}");
    assert_eq!(run_slug(&first.build, &["/app/result/bin/hi"]), "restored from the closure\n");

    // A later deploy that does not build: the closure comes from S3, and runs without Nix.
    let second = legacy_app("second", &vars(&bucket.secret, "my-app", false));
    let (ok, log) = compile_log(&second);
    assert!(ok, "{log}");
    assert!(log.contains("from the export s3://closures/nix-closures/my-app.closure"), "{log}");
    assert!(log.contains("2 paths from the export: 2 unpacked"), "{log}");
    assert_eq!(run_slug(&second.build, &["/app/result/bin/hi"]), "restored from the closure\n");
    let sh = busybox_in_slug(&second.build);
    assert_eq!(
        run_slug(&second.build, &[&sh, "/app/.narwhal/bin/run_result.sh", "bin/hi"]),
        "restored from the closure\n"
    );

    // An export committed in the app itself, named in narwhal.toml (written by real Nix).
    let root = deploy_fixture("app");
    let local = app(tmp.path(), "in-app", &tmp.path().join("in-app-cache"), "export = \"closure.export\"\n", &[]);
    let paths = narwhal_testkit::closure(&root);
    let export = narwhal_testkit::run(narwhal_testkit::nix("nix-store").arg("--export").args(&paths));
    std::fs::write(local.build.join("closure.export"), export).unwrap();
    let (ok, log) = compile_log(&local);
    assert!(ok, "{log}");
    assert_eq!(run_slug(&local.build, &["/app/result/bin/app"]), DEPLOY_APP_OUTPUT);

    // A wrong secret, an app whose closure was never stored, a half-set configuration:
    // a clear error, and nothing in the slug.
    for (name, vars, expect) in [
        ("wrong-secret", vars("not-the-secret", "my-app", false), "credentials"),
        ("never-stored", vars(&bucket.secret, "other-app", false), "nix-closures/other-app.closure"),
        ("half-set", vec![("NIX_S3_BUCKET".to_owned(), "closures".to_owned())], "NIX_APP_NAME is not"),
    ] {
        let a = legacy_app(name, &vars);
        let (ok, log) = compile_log(&a);
        assert!(!ok, "{name}: {log}");
        assert!(log.contains(expect), "{name}: {log}");
        assert!(!a.build.join("result").exists(), "{name}");
        assert!(!a.build.join("store").exists() || crate::entries(&a.build.join("store")).is_empty(), "{name}");
    }
}

/// A private `narwhal serve` cache: the buildpack reads it with the netrc given as a config var.
#[test]
fn a_private_cache_is_read_with_the_netrc_config_var() {
    let cache = Cache::new(&["app"], "zstd");
    let tmp = tempdir();
    let tokens = tmp.path().join("read-tokens");
    std::fs::write(&tokens, "read-0123456789abcdef-token\n").unwrap();
    let server = crate::serve::Server::start(
        &["--store", cache.dir.to_str().unwrap(), "--read-token-file", tokens.to_str().unwrap()],
        &[],
    );
    let toml = format!("roots = [\"{}\"]\nsubstituters = [\"{}\"]\n", cache.root.display(), server.url());
    let key = ("NARWHAL_TRUSTED_PUBLIC_KEYS", cache.public_key.as_str());
    let denied = app(tmp.path(), "denied", &tmp.path().join("c1"), &toml, &[key]);
    let out =
        output(buildpack("compile").arg(&denied.build).arg(&denied.cache).arg(&denied.env).env("HOME", tmp.path()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("HTTP 401") && stderr.contains("netrc"), "{stderr}");
    assert!(!denied.build.join("result").exists());

    let netrc = "machine 127.0.0.1 login heroku password read-0123456789abcdef-token\n";
    let allowed = app(tmp.path(), "allowed", &tmp.path().join("c2"), &toml, &[key, ("NARWHAL_NETRC", netrc)]);
    compile(&allowed);
    assert_eq!(run_slug(&allowed.build, &["/app/result/bin/app"]), DEPLOY_APP_OUTPUT);
    // The secret is in neither the slug nor the build cache, nor left in the temporary directory.
    let grep =
        output(Command::new("grep").args(["-rl", "read-0123456789abcdef"]).arg(&allowed.build).arg(&allowed.cache));
    assert_eq!(String::from_utf8_lossy(&grep.stdout), "");
    for e in std::fs::read_dir(std::env::temp_dir()).unwrap().flatten() {
        if e.file_name().to_string_lossy().contains("narwhal-netrc") {
            assert!(!std::fs::read_to_string(e.path()).unwrap_or_default().contains("read-0123456789abcdef"));
        }
    }
}

/// bin/compile prints in Heroku's style: `-----> ` steps, seven-space details, ` !     ` warnings and errors.
#[test]
fn compile_output_follows_herokus_line_style() {
    let cache = Cache::new(&["app"], "zstd");
    let server = HttpServer::start(&cache.dir, &[]);
    let tmp = tempdir();
    let toml = format!("roots = [\"{}\"]\nsubstituters = [\"{}\"]\n", cache.root.display(), server.url());
    let a =
        app(tmp.path(), "a", &tmp.path().join("cache"), &toml, &[("NARWHAL_TRUSTED_PUBLIC_KEYS", &cache.public_key)]);
    // Pruning that breaks links, so there are warnings too.
    std::fs::write(a.build.join(".slugexclude"), "- store/*-deploy-data/share\n").unwrap();
    let out = output(buildpack("compile").arg(&a.build).arg(&a.cache).arg(&a.env));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let styled = |text: &str| {
        for line in text.lines().filter(|l| !l.is_empty()) {
            assert!(
                line.starts_with("-----> ") || line.starts_with("       ") || line.starts_with(" !     "),
                "not in Heroku's line style: {line:?}\n{text}"
            );
        }
    };
    styled(&stdout);
    assert!(stdout.lines().any(|l| l.starts_with("-----> Deploying ")), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("       6 paths: 6 downloaded")), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with(" !     warning: ")), "{stdout}");

    // An error: ` !     ` lines on stderr, the cause and its fix.
    let bad = app(tmp.path(), "bad", &tmp.path().join("cache"), "", &[]);
    let out = output(buildpack("compile").arg(&bad.build).arg(&bad.cache).arg(&bad.env));
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    styled(&stderr);
    assert!(stderr.starts_with(" !     nothing to deploy"), "{stderr}");
}
