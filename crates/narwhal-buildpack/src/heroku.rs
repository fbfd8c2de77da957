//! The classic Heroku buildpack: `bin/detect BUILD_DIR`, `bin/compile BUILD_DIR CACHE_DIR ENV_DIR`
//! and `bin/release BUILD_DIR`, as lists of steps.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use narwhal_fetch::Reporter;
use narwhal_slug::Layout;

use crate::config::Config;
use crate::errors::Error;
use crate::log::Log;
use crate::settings::Env;
use crate::source::{fetch_into, Fetched, Source};
use crate::{app, steps, write_atomic};

/// A slug: the closure under `APP_DIR/store` relocated to `RUNTIME_ROOT/store`, result links,
/// `.profile.d`, pruned, checked and measured. Shared by `narwhal slug` and `bin/compile`.
pub struct Slug<'a> {
    pub app_dir: &'a Path,
    /// Where the app directory is at run time (`/app`).
    pub runtime_root: &'a str,
    /// The relocation prefix; `RUNTIME_ROOT/store` by default.
    pub prefix: Option<String>,
    pub pad: bool,
}

/// What a slug holds afterwards.
pub struct SlugDone {
    pub fetched: Fetched,
    /// The `result` links made, in root order.
    pub links: Vec<PathBuf>,
}

impl Slug<'_> {
    pub fn run(
        &self,
        roots: &[String],
        source: &Source,
        reporter: &dyn Reporter,
        log: &dyn Log,
    ) -> Result<SlugDone, Error> {
        let runtime_root = app::runtime_root(self.runtime_root)?;
        let prefix = self.prefix.clone().unwrap_or_else(|| format!("{runtime_root}/store"));
        app::refuse_symlinks(self.app_dir, Layout::Slug)?;
        // A .slugexclude that does not parse fails before anything is downloaded.
        app::slugexclude(self.app_dir)?;
        // So do result names taken by something other than a link.
        app::refuse_taken_result_names(self.app_dir, roots.len().max(1))?;
        let _lock = app::lock_app_dir(self.app_dir, source.store.lock_wait, log)?;
        let store = self.app_dir.join("store");
        let fetched = fetch_into(roots, source, &store, Some(&prefix), self.pad, reporter)?;
        log.detail(&fetched.summary_line());
        let links = app::result_links(self.app_dir, Layout::Slug, &fetched.roots)?;
        app::write_profile(self.app_dir, runtime_root, &links)?;
        app::prune(self.app_dir, Layout::Slug, log)?;
        app::report(self.app_dir, runtime_root, Layout::Slug, log)?;
        Ok(SlugDone { fetched, links })
    }
}

/// `bin/compile BUILD_DIR CACHE_DIR ENV_DIR`, as a list of steps. `revision` is Heroku's
/// SOURCE_VERSION.
pub fn compile(
    build_dir: &Path,
    cache_dir: &Path,
    env_dir: &Path,
    revision: Option<&str>,
    env: Env,
    reporter: &dyn Reporter,
    log: &dyn Log,
) -> Result<(), Error> {
    log.step("narwhal: reading narwhal.toml and config vars");
    let mut config = Config::load(build_dir, Some(env_dir))?;
    let state = cache_dir.join("narwhal");
    std::fs::create_dir_all(&state).map_err(Error::io("create", &state))?;
    let mut env = env;
    let _netrc = config.netrc.as_deref().map(|n| steps::TempNetrc::write(n, &mut env)).transpose()?;

    if config.build.nix && steps::which("nix-build") {
        log.step("Building with nix-build");
        steps::build_with_nix(build_dir, &state, &mut config, &env, log)?;
    }
    let (roots, source) = steps::plan(&config, build_dir, revision, Some(state.join("downloads")), &env, log)?;
    let slug = Slug { app_dir: build_dir, runtime_root: "/app", prefix: None, pad: false };
    let done = slug.run(&roots, &source, reporter, log)?;
    for l in &done.links {
        let target = std::fs::read_link(l).map_err(Error::io("read", l))?;
        log.detail(&format!("{} -> {}", l.file_name().unwrap_or_default().to_string_lossy(), target.display()));
    }
    write_release(build_dir, &config)?;
    log.step("narwhal: done");
    Ok(())
}

/// `bin/release` reads this: the default process types from narwhal.toml.
fn write_release(build_dir: &Path, config: &Config) -> Result<(), Error> {
    let file = release_file(build_dir);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
    }
    write_atomic(&file, release_yaml(config).as_bytes(), 0o644)
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

/// `bin/release BUILD_DIR`: what compile wrote, else the process types of narwhal.toml.
pub fn release(build_dir: &Path) -> Result<String, Error> {
    match std::fs::read_to_string(release_file(build_dir)) {
        Ok(t) => Ok(t),
        Err(_) => Ok(release_yaml(&Config::load(build_dir, None)?)),
    }
}
