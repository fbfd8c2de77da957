//! narwhal's Cloud Native Buildpack: `bin/detect` and `bin/build`, links to
//! the `narwhal` binary (or to `narwhal-cnb`), which runs [`run`] when started
//! under either name; libcnb picks the phase by that name. The steps are
//! `narwhal_buildpack`'s; this crate makes libcnb's calls and prints in
//! Heroku's style.
//!
//! Layers (under `$CNB_LAYERS_DIR`):
//!
//! ```text
//! closure/     cache only: the closure as unpacked and relocated, with its manifest; a rebuild
//!              hard-links (or copies) each path it still uses into /workspace, verified, and
//!              fetches only the rest (narwhal_buildpack::store_cache)
//! nix/         with build on push only, neither cached nor exported: a signing key made for this
//!              build and the local cache of what nix-build built, which the fetch then reads
//! path/        launch: env.launch/PATH.prepend puts /workspace/result*/bin first
//! ```
//!
//! The closure itself is in the app directory (`/workspace/<hash>-<name>`),
//! one `[[slices]]` entry per store path.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use libcnb::build::{BuildContext, BuildResult, BuildResultBuilder};
use libcnb::data::launch::{LaunchBuilder, ProcessBuilder, ProcessType, Slice};
use libcnb::data::layer_name;
use libcnb::detect::{DetectContext, DetectResult, DetectResultBuilder};
use libcnb::generic::{GenericMetadata, GenericPlatform};
use libcnb::layer::{
    CachedLayerDefinition, EmptyLayerCause, InvalidMetadataAction, LayerState, RestoredLayerAction,
    UncachedLayerDefinition,
};
use libcnb::layer_env::{LayerEnv, ModificationBehavior, Scope};
use libcnb::{Buildpack, Platform as _};
use narwhal_buildpack::cnb::{self, Discarded, STORE, STORE_FORMAT};
use narwhal_buildpack::log::{count, heroku_error, heroku_line};
use narwhal_buildpack::{app, steps, store_cache, Config, Event, Log};
use narwhal_slug::Layout;
use serde::{Deserialize, Serialize};

struct NarwhalBuildpack;

/// Heroku's line style on stdout.
struct HerokuLog;

impl Log for HerokuLog {
    fn event(&self, event: Event) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", heroku_line(&event));
        let _ = out.flush();
    }
}

/// The fetch's progress: retries and waits as details, nothing per path.
struct Progress;

impl narwhal_fetch::Reporter for Progress {
    fn retrying(&self, path: &narwhal_formats::store_path::StorePath, attempt: u32, why: &str) {
        HerokuLog.detail(&format!("retrying {path} (attempt {attempt}): {why}"));
    }
    fn warning(&self, message: &str) {
        HerokuLog.warning(message);
    }
    fn waiting(&self, message: &str) {
        HerokuLog.detail(message);
    }
}

/// What the store layer records.
#[derive(Debug, Serialize, Deserialize)]
struct StoreMetadata {
    format: String,
    store_dir: String,
}

/// The buildpack's failure: already a sentence with its fix.
#[derive(Debug)]
struct Failed(String);

impl From<narwhal_buildpack::Error> for Failed {
    fn from(e: narwhal_buildpack::Error) -> Self {
        Self(chain(&e))
    }
}

impl From<Failed> for libcnb::Error<Failed> {
    fn from(e: Failed) -> Self {
        Self::BuildpackError(e)
    }
}

/// An error and its causes on one line, each piece once.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cause = Some(e);
    while let Some(c) = cause {
        let s = c.to_string();
        if !parts.last().is_some_and(|p| p.ends_with(&s)) {
            parts.push(s);
        }
        cause = c.source();
    }
    parts.join(": ")
}

fn var_of(platform: &GenericPlatform) -> impl Fn(&str) -> Option<String> + '_ {
    move |name: &str| platform.env().get_string_lossy(name)
}

impl Buildpack for NarwhalBuildpack {
    type Platform = GenericPlatform;
    type Metadata = GenericMetadata;
    type Error = Failed;

    fn detect(&self, context: DetectContext<Self>) -> libcnb::Result<DetectResult, Self::Error> {
        match narwhal_buildpack::detect(&context.app_dir, &var_of(&context.platform)) {
            Ok(found) => {
                HerokuLog.detail(&format!("narwhal: found {}", found.0));
                DetectResultBuilder::pass().build()
            }
            Err(why) => {
                let _ = std::io::stdout().lock().write_all(heroku_error(&why.to_string()).as_bytes());
                DetectResultBuilder::fail().build()
            }
        }
    }

    fn build(&self, context: BuildContext<Self>) -> libcnb::Result<BuildResult, Self::Error> {
        let log = &HerokuLog;
        let app_dir = context.app_dir.clone();
        log.step("narwhal: reading narwhal.toml and config vars");
        let var = var_of(&context.platform);
        let mut config = Config::load_with(&app_dir, &var).map_err(Failed::from)?;
        // Caches' settings from the config vars, then the build's own environment.
        let mut env = narwhal_buildpack::settings::from_env(&|name| var(name).or_else(|| std::env::var(name).ok()))
            .map_err(Failed::from)?;
        let _netrc =
            config.netrc.as_deref().map(|n| steps::TempNetrc::write(n, &mut env)).transpose().map_err(Failed::from)?;
        // Checked before anything is downloaded.
        app::refuse_symlinks(&app_dir, Layout::Flat).map_err(Failed::from)?;
        let prunes = app::slugexclude(&app_dir).map_err(Failed::from)?.is_some();
        let processes = cnb::processes(&config, &app_dir).map_err(Failed::from)?;

        if config.build.nix && steps::which("nix-build") {
            log.step("Building with nix-build");
            let nix =
                context.uncached_layer(layer_name!("nix"), UncachedLayerDefinition { build: false, launch: false })?;
            steps::build_with_nix(&app_dir, &nix.path(), &mut config, &env, log).map_err(Failed::from)?;
        }

        drop_downloads_layer(&context, log)?;
        let store = store_layer(&context, log)?;
        let revision = var("SOURCE_VERSION");
        let (roots, source) =
            steps::plan(&config, &app_dir, revision.as_deref(), None, &env, log).map_err(Failed::from)?;
        let mut restore = |closure: &[narwhal_fetch::ClosurePath]| {
            let started = std::time::Instant::now();
            let r = store_cache::restore(&store, &app_dir, closure, log)?;
            log.detail(&format!(
                "{} of {} from the cache layer, verified and linked into {STORE} in {:.1} s",
                r.linked,
                count(closure.len(), "store path"),
                started.elapsed().as_secs_f64()
            ));
            Ok(())
        };
        let fetched =
            narwhal_buildpack::fetch_into_with(&roots, &source, &app_dir, Some(STORE), false, &Progress, &mut restore)
                .map_err(Failed::from)?;
        log.detail(&fetched.summary_line());
        let links = app::result_links(&app_dir, Layout::Flat, &fetched.roots).map_err(Failed::from)?;
        for l in &links {
            let target = std::fs::read_link(l).unwrap_or_default();
            log.detail(&format!("{} -> {}", l.file_name().unwrap_or_default().to_string_lossy(), target.display()));
        }
        app::write_launcher(&app_dir, STORE).map_err(Failed::from)?;
        // The cache layer keeps the closure as fetched, before .slugexclude prunes it; with nothing
        // to prune, it is linked while the tree is checked and measured.
        let update = || {
            let started = std::time::Instant::now();
            store_cache::update(&store, &app_dir).map(|counts| (counts, started.elapsed()))
        };
        let ((added, removed), took) = if prunes {
            let updated = update().map_err(Failed::from)?;
            app::prune(&app_dir, Layout::Flat, log).map_err(Failed::from)?;
            app::report(&app_dir, STORE, Layout::Flat, log).map_err(Failed::from)?;
            updated
        } else {
            let (updated, reported) =
                narwhal_store::parallel::join(update, || app::report(&app_dir, STORE, Layout::Flat, log));
            reported.map_err(Failed::from)?;
            updated.map_err(Failed::from)?
        };
        log.detail(&format!(
            "cache layer: {} added, {removed} removed, in {:.1} s",
            count(added, "store path"),
            took.as_secs_f64()
        ));

        // PATH at launch: the roots' programs first, then the older buildpacks' run_result.sh.
        let path_layer =
            context.uncached_layer(layer_name!("path"), UncachedLayerDefinition { build: false, launch: true })?;
        let mut path = app::result_bin_path(STORE, &links);
        if !path.is_empty() {
            path.push(':');
        }
        path.push_str(STORE);
        path.push_str("/.narwhal/bin");
        path_layer.write_env(
            LayerEnv::new()
                .chainable_insert(Scope::Launch, ModificationBehavior::Prepend, "PATH", path)
                .chainable_insert(Scope::Launch, ModificationBehavior::Delimiter, "PATH", ":"),
        )?;

        let mut launch = LaunchBuilder::new();
        for name in cnb::slices(&app_dir).map_err(Failed::from)? {
            launch.slice(Slice { path_globs: vec![glob_escape(&name)] });
        }
        if processes.is_empty() {
            log.warning("no process types: add `[processes] web = \"result/bin/…\"` to narwhal.toml, or a Procfile");
        }
        for p in &processes {
            let kind: ProcessType =
                p.kind.parse().map_err(|_| Failed(format!("process type {:?} is not valid", p.kind)))?;
            launch.process(ProcessBuilder::new(kind, p.command.clone()).default(p.default).build());
            log.detail(&format!("process {}: {}", p.kind, p.command.join(" ")));
        }
        log.step("narwhal: done");
        BuildResultBuilder::new().launch(launch.build()).build()
    }

    fn on_error(&self, error: libcnb::Error<Self::Error>) {
        let text = match error {
            libcnb::Error::BuildpackError(Failed(text)) => text,
            other => format!("{other:?}"),
        };
        let _ = std::io::stderr().lock().write_all(heroku_error(&text).as_bytes());
    }
}

/// The store layer (cache only), kept from the last build unless its metadata says otherwise;
/// every reason it was discarded is printed.
fn store_layer(context: &BuildContext<NarwhalBuildpack>, log: &dyn Log) -> libcnb::Result<PathBuf, Failed> {
    let layer = context.cached_layer(
        layer_name!("closure"),
        CachedLayerDefinition {
            build: false,
            launch: false,
            invalid_metadata_action: &|_| (InvalidMetadataAction::DeleteLayer, Discarded::InvalidMetadata),
            restored_layer_action: &|m: &StoreMetadata, _: &Path| {
                if m.format != STORE_FORMAT {
                    (RestoredLayerAction::DeleteLayer, Some(Discarded::Format { found: m.format.clone() }))
                } else if m.store_dir != "/nix/store" {
                    (RestoredLayerAction::DeleteLayer, Some(Discarded::StoreDir { found: m.store_dir.clone() }))
                } else {
                    (RestoredLayerAction::KeepLayer, None)
                }
            },
        },
    )?;
    match &layer.state {
        LayerState::Restored { .. } => log.detail("reusing the cached store"),
        LayerState::Empty { cause } => match cause {
            EmptyLayerCause::NewlyCreated => log.detail("no cached store yet"),
            EmptyLayerCause::InvalidMetadataAction { cause } => log.detail(&cause.to_string()),
            EmptyLayerCause::RestoredLayerAction { cause } => {
                if let Some(c) = cause {
                    log.detail(&c.to_string());
                }
            }
        },
    }
    layer.write_metadata(StoreMetadata { format: STORE_FORMAT.to_owned(), store_dir: "/nix/store".to_owned() })?;
    Ok(layer.path())
}

/// The `downloads` layer of verified NARs that earlier versions kept: the store layer holds what
/// it did, unpacked, so it goes (a layer left in place would be cached again).
fn drop_downloads_layer(context: &BuildContext<NarwhalBuildpack>, log: &dyn Log) -> libcnb::Result<(), Failed> {
    let dir = context.layers_dir.join("downloads");
    let toml = context.layers_dir.join("downloads.toml");
    if fs_exists(&dir) || fs_exists(&toml) {
        log.detail("dropping the cached downloads of an earlier version: the store layer replaces them");
        for p in [&dir, &toml] {
            let removed = if p.is_dir() { std::fs::remove_dir_all(p) } else { std::fs::remove_file(p) };
            match removed {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Failed(format!("cannot remove {}: {e}", p.display())).into())
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn fs_exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// A name as a Go `filepath.Match` pattern matching only itself.
fn glob_escape(name: &str) -> String {
    let mut s = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

/// Whether a program started as `argv0` is the CNB: its file name is `detect` or `build`.
pub fn is_cnb(argv0: &std::ffi::OsStr) -> bool {
    Path::new(argv0).file_name().is_some_and(|n| n == "detect" || n == "build")
}

/// Runs the phase the program was started as (`detect` or `build`) and exits with its code.
pub fn run() {
    libcnb::libcnb_runtime(&NarwhalBuildpack);
}
