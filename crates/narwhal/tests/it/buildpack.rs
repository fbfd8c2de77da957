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
    let mk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../narwhal-testkit/fixtures/mk.nix");
    let busybox = deploy_fixture("busybox");
    std::fs::write(
        a.build.join("default.nix"),
        format!(
            "{{ hi = import {} \"built-on-push\" ''mkdir -p $out/bin && printf '#!${{builtins.storePath \"{}\"}}/bin/sh\\necho built on push\\n' > $out/bin/hi && chmod +x $out/bin/hi''; }}\n",
            mk.display(),
            busybox.display()
        ),
    )
    .unwrap();
    let out = output(
        buildpack("compile").arg(&a.build).arg(&a.cache).arg(&a.env).env("NIX_CONFIG", narwhal_testkit::NIX_CONFIG),
    );
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{log}");
    assert!(log.contains("Building with nix-build"), "{log}");
    assert_eq!(run_slug(&a.build, &["/app/result/bin/hi"]), "built on push\n");
}
