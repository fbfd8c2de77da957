//! `bin/compile BUILD_DIR CACHE_DIR ENV_DIR` and `bin/release BUILD_DIR`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;

use super::config::Config;
use super::errors::BuildpackError;
use crate::cli::{SlugArgs, SourceArgs};
use crate::output::write_atomic;

fn step(s: &str) {
    let _ = writeln!(std::io::stdout().lock(), "-----> {s}");
}

fn info(s: &str) {
    let _ = writeln!(std::io::stdout().lock(), "       {s}");
}

/// The compile phase, as a list of steps.
pub fn compile(build_dir: &Path, cache_dir: &Path, env_dir: &Path) -> anyhow::Result<()> {
    step("narwhal: reading narwhal.toml and config vars");
    let mut config = Config::load(build_dir, Some(env_dir))?;
    let state = cache_dir.join("narwhal");
    std::fs::create_dir_all(&state).with_context(|| format!("cannot create {}", state.display()))?;
    let _netrc = match &config.netrc {
        Some(text) => Some(TempNetrc::write(text)?),
        None => None,
    };

    if config.build.nix && which("nix-build") {
        step("Building with nix-build");
        build_with_nix(build_dir, &state, &mut config)?;
    }

    // A file named in narwhal.toml is in the app.
    let export = config.export.clone().map(|e| {
        if e.starts_with("s3://") || Path::new(&e).is_absolute() {
            e
        } else {
            build_dir.join(e).display().to_string()
        }
    });
    let roots = if let Some(export) = &export {
        step(&format!("Deploying {} from the export {export}", roots_or_last(&config.roots)));
        info("an export carries no signatures: it is trusted as whoever could write it");
        config.roots.clone()
    } else {
        let roots = roots(&config)?;
        if config.substituters.is_empty() {
            return Err(BuildpackError::NoCaches.into());
        }
        step(&format!("Deploying {} from {}", roots.join(" "), config.substituters.join(" ")));
        roots
    };
    let args = SlugArgs {
        roots,
        source: SourceArgs {
            from: config.substituters.clone(),
            no_verify: config.no_verify || export.is_some(),
            from_export: export,
            s3_env: config.s3_env.clone(),
            trusted_public_keys: config.trusted_public_keys.clone(),
            cache_dir: Some(state.join("downloads")),
            // The build cache keeps only what the current closure uses.
            prune_cache: true,
            jobs: None,
            wait: config.wait,
            no_progress: true,
        },
        app_dir: build_dir.to_path_buf(),
        runtime_root: "/app".to_owned(),
        prefix: None,
        pad: false,
    };
    let links = crate::commands::slug_run(&args)?;
    for l in &links {
        info(&format!(
            "{} -> {}",
            l.file_name().unwrap_or_default().to_string_lossy(),
            std::fs::read_link(l)?.display()
        ));
    }
    write_release(build_dir, &config)?;
    step("narwhal: done");
    Ok(())
}

fn roots_or_last(roots: &[String]) -> String {
    if roots.is_empty() {
        "the last path".to_owned()
    } else {
        roots.join(" ")
    }
}

/// NARWHAL_NETRC as a file for this compile only: outside the slug and the
/// build cache, readable by this user only, removed when compile ends. HTTP
/// caches read it through $NETRC, as Nix reads its netrc-file.
struct TempNetrc(PathBuf);

impl TempNetrc {
    fn write(text: &str) -> anyhow::Result<Self> {
        let file = std::env::temp_dir().join(format!("narwhal-netrc-{}", std::process::id()));
        write_atomic(&file, text.as_bytes(), 0o600, true)
            .with_context(|| format!("cannot write {}", file.display()))?;
        // Still one thread: nothing else reads the environment yet.
        std::env::set_var("NETRC", &file);
        Ok(Self(file))
    }
}

impl Drop for TempNetrc {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What to deploy: explicit roots, else the pin (for this commit when Heroku says which).
fn roots(config: &Config) -> Result<Vec<String>, BuildpackError> {
    if !config.roots.is_empty() {
        return Ok(config.roots.clone());
    }
    match &config.pin {
        Some(pin) => Ok(vec![match std::env::var("SOURCE_VERSION") {
            Ok(rev) if !rev.is_empty() => format!("pin:{pin}@{rev}"),
            _ => format!("pin:{pin}"),
        }]),
        None => Err(BuildpackError::NothingToDeploy),
    }
}

/// Builds with the app's Nix, then deploys from a signed cache of what was built.
fn build_with_nix(build_dir: &Path, state: &Path, config: &mut Config) -> anyhow::Result<()> {
    let out_link = state.join("nix-result");
    let mut cmd = Command::new("nix-build");
    cmd.current_dir(build_dir).args(config.build.flags.split_whitespace()).arg("--out-link").arg(&out_link);
    let out = cmd.output().context("cannot run nix-build")?;
    std::io::stderr().write_all(&out.stderr)?;
    if !out.status.success() {
        return Err(BuildpackError::NixBuild { status: out.status.to_string() }.into());
    }
    let built: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    let (sec, public) = (state.join("local-build.sec"), state.join("local-build.pub"));
    if !sec.exists() {
        let key = narwhal_formats::signature::SecretKey::generate("narwhal-local-build-1")?;
        write_atomic(&sec, key.to_string().as_bytes(), 0o600, true)?;
        write_atomic(&public, key.public_key().to_string().as_bytes(), 0o644, true)?;
    }
    let cache = state.join("local-cache");
    let url = format!("file://{}?compression=zstd&secret-key={}", cache.display(), sec.display());
    let out = Command::new("nix").args(["copy", "--to", &url]).args(&built).output().context("cannot run nix copy")?;
    std::io::stderr().write_all(&out.stderr)?;
    if !out.status.success() {
        return Err(BuildpackError::NixCopy { status: out.status.to_string() }.into());
    }
    info(&format!("built {}", built.join(" ")));
    if let Some(export) = config.export.take() {
        // As the older buildpack did after a build: store the closure where the next deploy reads it.
        if export.starts_with("s3://") {
            step(&format!("Storing the closure at {export}"));
            crate::commands::export_with_env(&built, Some(&export), &config.s3_env)?;
        }
    }
    config.roots = built;
    config.substituters.insert(0, format!("file://{}", cache.display()));
    config.trusted_public_keys.push(std::fs::read_to_string(&public)?);
    Ok(())
}

/// `bin/release` reads this: the default process types from narwhal.toml.
fn write_release(build_dir: &Path, config: &Config) -> anyhow::Result<()> {
    let file = release_file(build_dir);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_atomic(&file, release_yaml(config).as_bytes(), 0o644, true)?;
    Ok(())
}

fn release_file(build_dir: &Path) -> PathBuf {
    build_dir.join(".narwhal/release.yml")
}

fn release_yaml(config: &Config) -> String {
    let mut s = String::from("---\n");
    if !config.processes.is_empty() {
        s.push_str("default_process_types:\n");
        for (name, command) in &config.processes {
            // YAML single-quoted scalars: double the quotes.
            let _ = writeln!(s, "  {name}: '{}'", command.replace('\'', "''"));
        }
    }
    s
}

/// `bin/release BUILD_DIR`.
pub fn release(build_dir: &Path) -> anyhow::Result<()> {
    let text = match std::fs::read_to_string(release_file(build_dir)) {
        Ok(t) => t,
        Err(_) => release_yaml(&Config::load(build_dir, None)?),
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// `bin/detect BUILD_DIR`: narwhal apps have a narwhal.toml (or a default.nix to build).
pub fn detect(build_dir: &Path) -> bool {
    build_dir.join("narwhal.toml").is_file() || build_dir.join("default.nix").is_file()
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}
