//! A Cloud Native Buildpacks lifecycle, emulated from the specification
//! (buildpacks/spec `buildpack.md`, Buildpack API 0.10), for one component
//! buildpack: there is no lifecycle, pack or Docker engine on these machines.
//!
//! # What it does, phase by phase
//!
//! - **detect**: `bin/detect PLATFORM PLAN` (the positional arguments of
//!   older APIs, which libcnb still reads) with `CNB_PLATFORM_DIR`,
//!   `CNB_BUILD_PLAN_PATH`, `CNB_BUILDPACK_DIR`, `CNB_EXEC_ENV` and the target
//!   (`CNB_TARGET_OS`, `_ARCH`, `_DISTRO_NAME`, `_DISTRO_VERSION`), the
//!   platform's `env/` files as variables, the app as working directory.
//!   Exit 0 passes, 100 fails, anything else is an error. The build plan it
//!   wrote is resolved: a trial (the top-level `provides`/`requires` pair,
//!   then each `[[or]]`) passes when every requirement is provided and every
//!   provision is required; the Buildpack Plan is the passing trial's
//!   requirements.
//! - **restore** (analysis and restore): from the cache, every layer that was
//!   `cache = true`, its directory and its metadata; from the previous image,
//!   every `launch = true` layer that was neither `cache` nor `build`, its
//!   metadata only (no directory). Restored metadata has no `[types]` table.
//!   Nothing else comes back.
//! - **build**: `bin/build LAYERS PLATFORM PLAN` with `CNB_LAYERS_DIR`,
//!   `CNB_PLATFORM_DIR`, `CNB_BP_PLAN_PATH`, `CNB_BUILDPACK_DIR` and the rest as
//!   for detect. A non-zero exit fails the build: nothing is exported and the
//!   cache is left as it was.
//! - **validation**: every `<layer>.toml` is a table of `[types]` (booleans
//!   `launch`, `build`, `cache` only) and `[metadata]`; no layer is named
//!   `build`, `launch` or `store`; `launch.toml` has `[[processes]]` (a `type` of
//!   letters, digits, `.`, `_`, `-`; a non-empty `command` array; `args`;
//!   `default`; `working-dir`), `[[slices]]` (`paths`: globs inside the app)
//!   and `[[labels]]`, nothing else. A violation fails the build as the
//!   lifecycle would.
//! - **export**: each `launch = true` layer becomes an image layer: its
//!   directory, or, with only its TOML left, the previous image's layer (or a
//!   failed export when there is none). The app becomes one layer per slice
//!   (Go `filepath.Match` globs, each slice seeing only what earlier ones left)
//!   and one for the rest. A layer's digest stands for its diffID: the NAR
//!   hash (`nix hash path`) of its tree, which like the exporter's
//!   reproducible tar ignores owners and times; a layer whose digest the
//!   previous image has is reused. `cache = true` layers become the next
//!   cache.
//! - **launch** ([`Image::launch`]): a root holding only `/workspace` and
//!   `/layers/<buildpack>/<layer>` for the image's layers, at their absolute
//!   paths, nothing else of the host; as `nobody`. The environment: the
//!   layers' `bin` and `lib` on `PATH` and `LD_LIBRARY_PATH`, then each layer's
//!   `env/`, `env.launch/` and `env.launch/<process>/` files with their
//!   suffix rules (none and `.override`, `.default`, `.append`, `.prepend`,
//!   `.delim`), then each `exec.d/` and `exec.d/<process>/` program, run in the
//!   root with file descriptor 3 open for the TOML it writes. Then the
//!   process's `command` and `args`, in its working directory (default
//!   `/workspace`).
//!
//! Not emulated: several buildpacks in a group, image extensions, SBOMs,
//! `store.toml`, `build.toml` unmet entries, `build = true` layers' environment
//! for later buildpacks (there are none), and the real exporter's tarballs.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::isolate::{copy_tree, Isolated};
use crate::{nix, run_text, tempdir, TempDir};

/// Where the app is at build and launch time.
pub const APP_DIR: &str = "/workspace";
/// Where the layers are at launch time.
pub const LAYERS_DIR: &str = "/layers";
/// Detect's exit code for "not this app".
pub const DETECT_FAIL: i32 = 100;

/// The target every build here is for.
pub const TARGET: &[(&str, &str)] = &[
    ("CNB_TARGET_OS", "linux"),
    ("CNB_TARGET_ARCH", "amd64"),
    ("CNB_TARGET_DISTRO_NAME", "ubuntu"),
    ("CNB_TARGET_DISTRO_VERSION", "24.04"),
];

/// What one build came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Detect exited 100, or its plan had no passing trial.
    DetectFailed,
    /// Detect exited with another non-zero code.
    DetectError(i32),
    /// Build exited non-zero.
    BuildFailed(i32),
    /// The buildpack's output broke the specification (the reason).
    Invalid(String),
    /// An image was exported.
    Exported,
}

/// One build: its outcome, what the buildpack printed, and what the export reused.
#[derive(Debug)]
pub struct Build {
    pub outcome: Outcome,
    /// Detect's and build's standard output.
    pub stdout: String,
    /// Detect's and build's standard error.
    pub stderr: String,
    /// Layers restored before build: `<layer>` with contents, `<layer>.toml` metadata only.
    pub restored: Vec<String>,
    /// Image layers (`layer:<name>`, `slice:<n>`, `app`) whose digest the previous image had.
    pub reused: Vec<String>,
    /// Image layers that are new.
    pub added: Vec<String>,
    /// How long the buildpack's build phase ran (what a platform's build log times), without the
    /// lifecycle's own copying, restoring and exporting.
    pub build_time: std::time::Duration,
}

impl Build {
    /// Standard output then standard error, as a build log shows them.
    pub fn log(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// A process of `launch.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub kind: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub default: bool,
    pub working_dir: Option<String>,
}

/// A layer in the image.
#[derive(Debug, Clone)]
pub struct ImageLayer {
    /// The layer's whole TOML as the buildpack left it.
    pub toml: toml::Table,
    pub digest: String,
}

/// An exported image: the app, the launch layers, the processes.
pub struct Image {
    dir: TempDir,
    buildpack_id: String,
    pub layers: BTreeMap<String, ImageLayer>,
    /// Digests of the app's layers: one per slice, then the rest.
    pub app_layers: Vec<String>,
    pub processes: Vec<Process>,
    pub labels: BTreeMap<String, String>,
}

/// The lifecycle for one buildpack, one app image and its cache.
pub struct Lifecycle {
    work: TempDir,
    buildpack: PathBuf,
    id: String,
    runs: usize,
    image: Option<Image>,
}

impl Lifecycle {
    /// A lifecycle for the buildpack in `buildpack_dir` (its `buildpack.toml` is checked: api, id,
    /// version), with an empty platform directory, no cache and no previous image.
    pub fn new(buildpack_dir: &Path) -> Self {
        let descriptor = read_toml(&buildpack_dir.join("buildpack.toml")).unwrap_or_else(|e| panic!("{e}"));
        let problems = check_descriptor(&descriptor);
        assert!(problems.is_empty(), "buildpack.toml: {problems:?}");
        let id = descriptor["buildpack"]["id"].as_str().unwrap_or_default().to_owned();
        let work = tempdir();
        for d in ["platform/env", "cache"] {
            fs::create_dir_all(work.path().join(d)).unwrap();
        }
        Self { work, buildpack: buildpack_dir.to_path_buf(), id, runs: 0, image: None }
    }

    /// Sets a user-provided variable: `<platform>/env/<name>`.
    pub fn set_env(&self, name: &str, value: &str) {
        fs::write(self.platform().join("env").join(name), value).unwrap();
    }

    /// Removes a user-provided variable.
    pub fn unset_env(&self, name: &str) {
        let _ = fs::remove_file(self.platform().join("env").join(name));
    }

    /// Empties the cache, as a platform does when asked to build from scratch.
    pub fn clear_cache(&self) {
        let cache = self.cache();
        fs::remove_dir_all(&cache).unwrap();
        fs::create_dir(&cache).unwrap();
    }

    fn platform(&self) -> PathBuf {
        self.work.path().join("platform")
    }

    fn cache(&self) -> PathBuf {
        self.work.path().join("cache")
    }

    /// The cache a rebuild restores from (`<layer>/`, `<layer>.toml`), for tests that change it
    /// as a platform's cache could be changed behind the buildpack's back.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache()
    }

    /// The image of the last successful build.
    pub fn image(&self) -> Option<&Image> {
        self.image.as_ref()
    }

    /// Detects, restores, builds and exports the app whose source is `app_src` (copied to a fresh
    /// app directory, as a platform does for each build).
    #[allow(clippy::too_many_lines)]
    pub fn build(&mut self, app_src: &Path) -> Build {
        self.runs += 1;
        let run = self.work.path().join(format!("run-{}", self.runs));
        let app = run.join("workspace");
        let layers = run.join("layers").join(escape_id(&self.id));
        fs::create_dir_all(&layers).unwrap();
        copy_tree(app_src, &app);
        let mut build = Build {
            outcome: Outcome::Exported,
            stdout: String::new(),
            stderr: String::new(),
            restored: Vec::new(),
            reused: Vec::new(),
            added: Vec::new(),
            build_time: std::time::Duration::ZERO,
        };

        // Detect.
        let plan_path = run.join("plan.toml");
        fs::write(&plan_path, "").unwrap();
        let out = self.phase(
            "detect",
            &app,
            &[&self.platform(), &plan_path],
            &[("CNB_PLATFORM_DIR", self.platform()), ("CNB_BUILD_PLAN_PATH", plan_path.clone())],
        );
        build.stdout.push_str(&String::from_utf8_lossy(&out.stdout));
        build.stderr.push_str(&String::from_utf8_lossy(&out.stderr));
        match out.status.code() {
            Some(0) => {}
            Some(DETECT_FAIL) => {
                build.outcome = Outcome::DetectFailed;
                return build;
            }
            code => {
                build.outcome = Outcome::DetectError(code.unwrap_or(-1));
                return build;
            }
        }
        let entries = match read_toml(&plan_path).and_then(|plan| resolve_plan(&plan)) {
            Ok(Some(entries)) => entries,
            Ok(None) => {
                build.outcome = Outcome::DetectFailed;
                return build;
            }
            Err(why) => {
                build.outcome = Outcome::Invalid(why);
                return build;
            }
        };
        let bp_plan = run.join("bp-plan.toml");
        fs::write(&bp_plan, buildpack_plan(&entries)).unwrap();

        // Restore.
        build.restored = self.restore(&layers);

        // Build.
        let started = std::time::Instant::now();
        let out = self.phase(
            "build",
            &app,
            &[&layers, &self.platform(), &bp_plan],
            &[
                ("CNB_LAYERS_DIR", layers.clone()),
                ("CNB_PLATFORM_DIR", self.platform()),
                ("CNB_BP_PLAN_PATH", bp_plan.clone()),
            ],
        );
        build.build_time = started.elapsed();
        build.stdout.push_str(&String::from_utf8_lossy(&out.stdout));
        build.stderr.push_str(&String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            build.outcome = Outcome::BuildFailed(out.status.code().unwrap_or(-1));
            return build;
        }

        // Validate and export.
        match self.export(&app, &layers) {
            Ok((image, reused, added)) => {
                build.reused = reused;
                build.added = added;
                self.save_cache(&layers);
                self.image = Some(image);
            }
            Err(why) => build.outcome = Outcome::Invalid(why),
        }
        build
    }

    /// Runs `bin/<phase>` as the lifecycle does.
    fn phase(&self, phase: &str, app: &Path, args: &[&Path], vars: &[(&str, PathBuf)]) -> Output {
        let mut cmd = Command::new(self.buildpack.join("bin").join(phase));
        cmd.args(args).current_dir(app).env_clear().stdin(Stdio::null());
        // The platform's variables, then the lifecycle's (CNB_ is reserved to it).
        for (k, v) in user_env(&self.platform()) {
            cmd.env(k, v);
        }
        cmd.env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", app)
            .env("CNB_BUILDPACK_DIR", &self.buildpack)
            .env("CNB_EXEC_ENV", "production")
            .envs(TARGET.iter().copied())
            .envs(vars.iter().map(|(k, v)| (*k, v.as_os_str())));
        crate::output(&mut cmd)
    }

    /// Restores layers by the table of the specification: cache layers with their contents,
    /// launch-only layers of the previous image with their metadata only.
    fn restore(&self, layers: &Path) -> Vec<String> {
        let mut restored = Vec::new();
        let cache = self.cache();
        for (name, table) in layer_tomls(&cache) {
            write_metadata_only(&layers.join(format!("{name}.toml")), &table);
            if cache.join(&name).is_dir() {
                copy_tree(&cache.join(&name), &layers.join(&name));
            }
            restored.push(name);
        }
        if let Some(image) = &self.image {
            for (name, layer) in &image.layers {
                let (_, build, cached) = types(&layer.toml);
                if !build && !cached && !layers.join(format!("{name}.toml")).exists() {
                    write_metadata_only(&layers.join(format!("{name}.toml")), &layer.toml);
                    restored.push(format!("{name}.toml"));
                }
            }
        }
        restored
    }

    /// `cache = true` layers become the cache for the next build; the old cache goes.
    fn save_cache(&self, layers: &Path) {
        let fresh = self.work.path().join(format!("cache-{}", self.runs));
        fs::create_dir(&fresh).unwrap();
        for (name, table) in layer_tomls(layers) {
            if types(&table).2 && layers.join(&name).is_dir() {
                fs::copy(layers.join(format!("{name}.toml")), fresh.join(format!("{name}.toml"))).unwrap();
                copy_tree(&layers.join(&name), &fresh.join(&name));
            }
        }
        fs::remove_dir_all(self.cache()).unwrap();
        fs::rename(&fresh, self.cache()).unwrap();
    }

    /// Validates the buildpack's output and builds the image.
    #[allow(clippy::too_many_lines)]
    fn export(&self, app: &Path, layers: &Path) -> Result<(Image, Vec<String>, Vec<String>), String> {
        let previous = self.image.as_ref();
        let image_dir = tempdir();
        let image_layers = image_dir.path().join("layers").join(escape_id(&self.id));
        fs::create_dir_all(&image_layers).unwrap();
        let mut image = Image {
            dir: image_dir,
            buildpack_id: self.id.clone(),
            layers: BTreeMap::new(),
            app_layers: Vec::new(),
            processes: Vec::new(),
            labels: BTreeMap::new(),
        };
        let (mut reused, mut added) = (Vec::new(), Vec::new());
        for (name, table) in layer_tomls(layers) {
            if matches!(name.as_str(), "build" | "launch" | "store") {
                return Err(format!("a layer may not be named {name}"));
            }
            check_layer_toml(&table).map_err(|why| format!("{name}.toml: {why}"))?;
            if !types(&table).0 {
                continue;
            }
            let dir = layers.join(&name);
            let digest = if dir.is_dir() {
                copy_tree(&dir, &image_layers.join(&name));
                digest(&[(name.clone(), dir.clone())])
            } else {
                let Some(old) = previous.and_then(|p| p.layers.get(&name)) else {
                    return Err(format!("{name}.toml says launch = true but there is no {name}/ and no such layer in the previous image"));
                };
                let old_dir = previous.map_or_else(PathBuf::new, |p| p.layer_dir(&name));
                copy_tree(&old_dir, &image_layers.join(&name));
                old.digest.clone()
            };
            let id = format!("layer:{name}");
            if previous.is_some_and(|p| p.has_digest(&digest)) {
                reused.push(id);
            } else {
                added.push(id);
            }
            image.layers.insert(name, ImageLayer { toml: table, digest });
        }

        let launch = match fs::read_to_string(layers.join("launch.toml")) {
            Ok(text) => text.parse::<toml::Table>().map_err(|e| format!("launch.toml: {e}"))?,
            Err(_) => toml::Table::new(),
        };
        let (processes, slices, labels) = check_launch(&launch).map_err(|why| format!("launch.toml: {why}"))?;
        image.processes = processes;
        image.labels = labels;

        // The app: a layer per slice, each seeing only what earlier ones left, then the rest.
        let mut claimed: BTreeSet<PathBuf> = BTreeSet::new();
        let all = walk_rel(app);
        let mut app_layers: Vec<Vec<PathBuf>> = Vec::new();
        for globs in &slices {
            let mut mine = Vec::new();
            for rel in &all {
                let taken = claimed.iter().any(|c| rel.starts_with(c));
                if !taken && globs.iter().any(|g| glob_match(g, &rel.to_string_lossy())) {
                    claimed.insert(rel.clone());
                    mine.push(rel.clone());
                }
            }
            app_layers.push(mine);
        }
        let rest: Vec<PathBuf> = all
            .iter()
            .filter(|rel| !claimed.iter().any(|c| rel.starts_with(c) || c.starts_with(rel)))
            .filter(|rel| {
                // A directory is in the rest layer as its entries; files and links as themselves.
                !app.join(rel).is_dir() || app.join(rel).read_dir().is_ok_and(|mut d| d.next().is_none())
            })
            .cloned()
            .collect();
        app_layers.push(rest);
        let count = app_layers.len();
        for (i, paths) in app_layers.into_iter().enumerate() {
            let named: Vec<(String, PathBuf)> =
                paths.iter().map(|rel| (rel.to_string_lossy().into_owned(), app.join(rel))).collect();
            let digest = digest(&named);
            let id = if i + 1 == count { "app".to_owned() } else { format!("slice:{i}") };
            if previous.is_some_and(|p| p.has_digest(&digest)) {
                reused.push(id);
            } else {
                added.push(id);
            }
            image.app_layers.push(digest);
        }
        copy_tree(app, &image.dir.path().join("workspace"));
        Ok((image, reused, added))
    }
}

impl Image {
    fn layer_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join("layers").join(escape_id(&self.buildpack_id)).join(name)
    }

    fn has_digest(&self, digest: &str) -> bool {
        self.layers.values().any(|l| l.digest == digest) || self.app_layers.iter().any(|d| d == digest)
    }

    /// The app directory as exported (`/workspace`), on the host.
    pub fn workspace(&self) -> PathBuf {
        self.dir.path().join("workspace")
    }

    /// The process of type `kind`, else the default one.
    pub fn process(&self, kind: Option<&str>) -> Option<&Process> {
        match kind {
            Some(k) => self.processes.iter().find(|p| p.kind == k),
            None => self.processes.iter().rev().find(|p| p.default),
        }
    }

    /// The launch environment of `process`, as the launcher builds it before exec.d.
    pub fn launch_env(&self, process: &str) -> Vec<(String, String)> {
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        env.insert("PATH".to_owned(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned());
        env.insert("CNB_APP_DIR".to_owned(), APP_DIR.to_owned());
        env.insert("CNB_LAYERS_DIR".to_owned(), LAYERS_DIR.to_owned());
        env.insert("HOME".to_owned(), APP_DIR.to_owned());
        let at = |name: &str| format!("{LAYERS_DIR}/{}/{name}", escape_id(&self.buildpack_id));
        // bin and lib of every layer, alphabetically ascending, before what was there.
        for (var, sub) in [("PATH", "bin"), ("LD_LIBRARY_PATH", "lib")] {
            let dirs: Vec<String> = self
                .layers
                .keys()
                .filter(|name| self.layer_dir(name).join(sub).is_dir())
                .map(|name| format!("{}/{sub}", at(name)))
                .collect();
            if !dirs.is_empty() {
                let joined = dirs.join(":");
                let value = match env.get(var) {
                    Some(old) if !old.is_empty() => format!("{joined}:{old}"),
                    _ => joined,
                };
                env.insert(var.to_owned(), value);
            }
        }
        for name in self.layers.keys() {
            let dir = self.layer_dir(name);
            let dirs = [dir.join("env"), dir.join("env.launch"), dir.join("env.launch").join(process)];
            apply_env_dirs(&mut env, &dirs);
        }
        env.into_iter().collect()
    }

    /// Launches `kind` (else the default process) in a root holding only the image, as nobody.
    pub fn launch(&self, kind: Option<&str>) -> Output {
        let process = self.process(kind).unwrap_or_else(|| panic!("no process {kind:?} in {:?}", self.processes));
        let iso = Isolated::new();
        iso.add_dir(&self.workspace(), APP_DIR);
        for name in self.layers.keys() {
            iso.add_dir(&self.layer_dir(name), &format!("{LAYERS_DIR}/{}/{name}", escape_id(&self.buildpack_id)));
        }
        let mut env: BTreeMap<String, String> = self.launch_env(&process.kind).into_iter().collect();
        // exec.d, layer by layer: its programs, then the process's.
        for name in self.layers.keys() {
            let host = self.layer_dir(name).join("exec.d");
            let inside = format!("{LAYERS_DIR}/{}/{name}/exec.d", escape_id(&self.buildpack_id));
            for (dir, at) in
                [(host.clone(), inside.clone()), (host.join(&process.kind), format!("{inside}/{}", process.kind))]
            {
                for program in sorted_files(&dir) {
                    let out_file = tempdir();
                    let fd3 = out_file.path().join("fd3");
                    fs::write(&fd3, "").unwrap();
                    fs::set_permissions(&fd3, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
                    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    let argv = format!("{at}/{program}");
                    let out = iso.run_at(APP_DIR, &[&argv], &pairs, Some(&fd3));
                    if !out.status.success() {
                        return out;
                    }
                    let text = fs::read_to_string(&fd3).unwrap();
                    let table: toml::Table =
                        text.parse().unwrap_or_else(|e| panic!("exec.d {argv} wrote invalid TOML: {e}\n{text}"));
                    for (k, v) in table {
                        let v = v.as_str().unwrap_or_else(|| panic!("exec.d {argv}: {k} is not a string"));
                        env.insert(k, v.to_owned());
                    }
                }
            }
        }
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let argv: Vec<&str> = process.command.iter().chain(&process.args).map(String::as_str).collect();
        let cwd = process.working_dir.as_deref().unwrap_or(APP_DIR);
        iso.run_at(cwd, &argv, &pairs, None)
    }
}

/// Applies the env files of one layer's directories, in order, by the suffix rules.
fn apply_env_dirs(env: &mut BTreeMap<String, String>, dirs: &[PathBuf]) {
    // The delimiter of a variable holds for the whole layer.
    let mut delims: BTreeMap<String, String> = BTreeMap::new();
    for dir in dirs {
        for file in sorted_files(dir) {
            if let Some(var) = file.strip_suffix(".delim") {
                delims.insert(var.to_owned(), fs::read_to_string(dir.join(&file)).unwrap());
            }
        }
    }
    for dir in dirs {
        for file in sorted_files(dir) {
            let (var, suffix) = file.split_once('.').unwrap_or((&file, ""));
            let value = fs::read_to_string(dir.join(&file)).unwrap();
            let delim = delims.get(var).cloned().unwrap_or_default();
            let old = env.get(var).cloned().unwrap_or_default();
            let new = match (suffix, old.is_empty()) {
                ("" | "override", _) | ("default" | "append" | "prepend", true) => value,
                ("append", false) => format!("{old}{delim}{value}"),
                ("prepend", false) => format!("{value}{delim}{old}"),
                // `.default` of a set variable, `.delim` (read above), and suffixes the lifecycle ignores.
                _ => continue,
            };
            env.insert(var.to_owned(), new);
        }
    }
}

/// A buildpack ID as a directory name under `<layers>`: `/` becomes `_`.
pub fn escape_id(id: &str) -> String {
    id.replace('/', "_")
}

/// The platform's `env/` files as variables.
fn user_env(platform: &Path) -> Vec<(String, String)> {
    let env = platform.join("env");
    sorted_files(&env).into_iter().map(|name| (name.clone(), fs::read_to_string(env.join(&name)).unwrap())).collect()
}

/// Regular files in `dir`, by name; none when it does not exist.
fn sorted_files(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn read_toml(file: &Path) -> Result<toml::Table, String> {
    let text = fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    text.parse::<toml::Table>().map_err(|e| format!("{}: {e}", file.display()))
}

/// `<dir>/<layer>.toml` files (not `launch.toml`, `build.toml`, `store.toml`), parsed, by layer name.
fn layer_tomls(dir: &Path) -> Vec<(String, toml::Table)> {
    sorted_files(dir)
        .into_iter()
        .filter_map(|f| f.strip_suffix(".toml").map(str::to_owned))
        .filter(|name| !matches!(name.as_str(), "launch" | "build" | "store"))
        .map(|name| {
            let table = read_toml(&dir.join(format!("{name}.toml"))).unwrap_or_default();
            (name, table)
        })
        .collect()
}

/// `(launch, build, cache)` of a layer's TOML; unset types are all false.
fn types(table: &toml::Table) -> (bool, bool, bool) {
    let t = table.get("types").and_then(toml::Value::as_table);
    let get = |k: &str| t.and_then(|t| t.get(k)).and_then(toml::Value::as_bool).unwrap_or(false);
    (get("launch"), get("build"), get("cache"))
}

/// Restored metadata: the layer's TOML without its `[types]`.
fn write_metadata_only(file: &Path, table: &toml::Table) {
    let mut t = table.clone();
    t.remove("types");
    fs::write(file, toml::to_string(&t).unwrap()).unwrap();
}

fn check_layer_toml(table: &toml::Table) -> Result<(), String> {
    for (k, v) in table {
        match k.as_str() {
            "types" => {
                let t = v.as_table().ok_or("[types] is not a table")?;
                for (tk, tv) in t {
                    if !matches!(tk.as_str(), "launch" | "build" | "cache") {
                        return Err(format!("unknown layer type {tk:?}"));
                    }
                    if !tv.is_bool() {
                        return Err(format!("types.{tk} is not a boolean"));
                    }
                }
            }
            "metadata" if v.is_table() => {}
            "metadata" => return Err("metadata is not a table".to_owned()),
            other => return Err(format!("unknown key {other:?}")),
        }
    }
    Ok(())
}

type Launch = (Vec<Process>, Vec<Vec<String>>, BTreeMap<String, String>);

#[allow(clippy::too_many_lines)]
fn check_launch(launch: &toml::Table) -> Result<Launch, String> {
    let strings = |v: Option<&toml::Value>, what: &str| -> Result<Vec<String>, String> {
        match v {
            None => Ok(Vec::new()),
            Some(v) => v
                .as_array()
                .ok_or(format!("{what} is not an array"))?
                .iter()
                .map(|s| s.as_str().map(str::to_owned).ok_or(format!("{what} holds a non-string")))
                .collect(),
        }
    };
    let (mut processes, mut slices, mut labels) = (Vec::new(), Vec::new(), BTreeMap::new());
    for (k, v) in launch {
        let items = v.as_array().ok_or(format!("{k} is not an array of tables"))?;
        for item in items {
            let t = item.as_table().ok_or(format!("{k} holds a non-table"))?;
            match k.as_str() {
                "processes" => {
                    for key in t.keys() {
                        if !matches!(key.as_str(), "type" | "command" | "args" | "default" | "working-dir" | "exec-env")
                        {
                            return Err(format!("unknown process key {key:?}"));
                        }
                    }
                    let kind = t.get("type").and_then(toml::Value::as_str).ok_or("a process has no type")?;
                    if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
                        return Err(format!("process type {kind:?} has characters other than letters, digits, . _ -"));
                    }
                    if processes.iter().any(|p: &Process| p.kind == kind) {
                        return Err(format!("process type {kind} given twice"));
                    }
                    let command = strings(t.get("command"), "command")?;
                    if command.is_empty() {
                        return Err(format!("process {kind} has no command (an array in Buildpack API 0.9+)"));
                    }
                    let default = match t.get("default") {
                        None => false,
                        Some(d) => d.as_bool().ok_or("default is not a boolean")?,
                    };
                    let working_dir = match t.get("working-dir") {
                        None => None,
                        Some(w) => Some(w.as_str().ok_or("working-dir is not a string")?.to_owned()),
                    };
                    processes.push(Process {
                        kind: kind.to_owned(),
                        command,
                        args: strings(t.get("args"), "args")?,
                        default,
                        working_dir,
                    });
                }
                "slices" => {
                    let paths = strings(t.get("paths"), "slices.paths")?;
                    let mut rel = Vec::new();
                    for p in paths {
                        let r = match p.strip_prefix(APP_DIR) {
                            Some(r) if r.starts_with('/') => r.trim_start_matches('/').to_owned(),
                            _ if p.starts_with('/') => return Err(format!("slice path {p} is outside the app")),
                            _ => p.clone(),
                        };
                        if r.split('/').any(|c| c == "..") {
                            return Err(format!("slice path {p} leaves the app"));
                        }
                        rel.push(r);
                    }
                    slices.push(rel);
                }
                "labels" => {
                    let key = t.get("key").and_then(toml::Value::as_str).ok_or("a label has no key")?;
                    let value = t.get("value").and_then(toml::Value::as_str).ok_or("a label has no value")?;
                    if labels.insert(key.to_owned(), value.to_owned()).is_some() {
                        return Err(format!("label {key} given twice"));
                    }
                }
                other => return Err(format!("unknown key {other:?}")),
            }
        }
    }
    if processes.iter().filter(|p| p.default).count() > 1 {
        return Err("more than one default process".to_owned());
    }
    Ok((processes, slices, labels))
}

/// The pack-required fields of `buildpack.toml`: `api`, `[buildpack]` `id` (letters, digits, `.`,
/// `/`, `-`; not `app`, `config`, `generated`, `sbom`) and `version` (`X.Y.Z` without leading zeros),
/// and `[[targets]]` with `os` and `arch` when present. Returns the problems.
pub fn check_descriptor(descriptor: &toml::Table) -> Vec<String> {
    let mut problems = Vec::new();
    match descriptor.get("api").and_then(toml::Value::as_str) {
        Some(api) if api.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) => {}
        _ => problems.push("api is missing or not <major>.<minor>".to_owned()),
    }
    let bp = descriptor.get("buildpack").and_then(toml::Value::as_table);
    let id = bp.and_then(|b| b.get("id")).and_then(toml::Value::as_str).unwrap_or_default();
    if id.is_empty()
        || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"./-".contains(&b))
        || matches!(id, "app" | "config" | "generated" | "sbom")
    {
        problems.push(format!("buildpack.id {id:?} is not a valid ID"));
    }
    let version = bp.and_then(|b| b.get("version")).and_then(toml::Value::as_str).unwrap_or_default();
    let parts: Vec<&str> = version.split('.').collect();
    let semver = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && (p.len() == 1 || !p.starts_with('0')));
    if !semver {
        problems.push(format!("buildpack.version {version:?} is not X.Y.Z"));
    }
    if let Some(targets) = descriptor.get("targets") {
        for t in targets.as_array().map(Vec::as_slice).unwrap_or_default() {
            let has = |k: &str| t.get(k).and_then(toml::Value::as_str).is_some_and(|s| !s.is_empty());
            if !has("os") || !has("arch") {
                problems.push("a [[targets]] entry lacks os or arch".to_owned());
            }
        }
    }
    problems
}

/// The Buildpack Plan from the passing trial: its requirements (`None`: no trial passes).
fn resolve_plan(plan: &toml::Table) -> Result<Option<Vec<toml::Table>>, String> {
    let pair = |t: &toml::Table| -> Result<(Vec<String>, Vec<toml::Table>), String> {
        let list = |k: &str| -> Result<Vec<toml::Table>, String> {
            match t.get(k) {
                None => Ok(Vec::new()),
                Some(v) => v
                    .as_array()
                    .ok_or(format!("{k} is not an array"))?
                    .iter()
                    .map(|e| {
                        let e = e.as_table().ok_or(format!("{k} holds a non-table"))?;
                        e.get("name").and_then(toml::Value::as_str).ok_or(format!("a {k} entry has no name"))?;
                        Ok(e.clone())
                    })
                    .collect(),
            }
        };
        let provides = list("provides")?.iter().filter_map(|e| e["name"].as_str().map(str::to_owned)).collect();
        Ok((provides, list("requires")?))
    };
    let mut trials = vec![pair(plan)?];
    if let Some(or) = plan.get("or") {
        for alt in or.as_array().ok_or("or is not an array")? {
            trials.push(pair(alt.as_table().ok_or("or holds a non-table")?)?);
        }
    }
    for (provides, requires) in trials {
        let required: BTreeSet<&str> = requires.iter().filter_map(|r| r["name"].as_str()).collect();
        let provided: BTreeSet<&str> = provides.iter().map(String::as_str).collect();
        if required == provided {
            return Ok(Some(requires));
        }
    }
    Ok(None)
}

fn buildpack_plan(entries: &[toml::Table]) -> String {
    let mut plan = toml::Table::new();
    plan.insert("entries".to_owned(), toml::Value::Array(entries.iter().cloned().map(toml::Value::Table).collect()));
    toml::to_string(&plan).unwrap()
}

/// Every entry below `root`, relative, parents before children, by name.
fn walk_rel(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut names: Vec<_> = fs::read_dir(&dir).unwrap().flatten().map(|e| fs::DirEntry::file_name(&e)).collect();
        names.sort();
        for name in names.into_iter().rev() {
            let child = rel.join(&name);
            if fs::symlink_metadata(root.join(&child)).is_ok_and(|m| m.is_dir()) {
                stack.push(child.clone());
            }
            out.push(child);
        }
    }
    out.sort();
    out
}

/// A layer's digest, standing for its diffID: the NAR hash of each tree with its path in the layer.
fn digest(trees: &[(String, PathBuf)]) -> String {
    if trees.is_empty() {
        return "empty".to_owned();
    }
    let hashes = run_text(nix("nix").args(["hash", "path", "--type", "sha256"]).args(trees.iter().map(|(_, p)| p)));
    let lines: Vec<&str> = hashes.lines().collect();
    assert_eq!(lines.len(), trees.len(), "nix hash path printed {hashes}");
    let mut out = String::new();
    for ((name, _), h) in trees.iter().zip(lines) {
        out.push_str(name);
        out.push('=');
        out.push_str(h);
        out.push('\n');
    }
    out
}

/// Go's `path/filepath.Match`: `*` any run of non-`/` bytes, `?` one non-`/` byte, `[…]` a class
/// (`^` negates, `a-z` ranges), `\` escapes.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn class(p: &[u8], c: u8) -> Option<(bool, usize)> {
        // p starts after '['; returns (matched, bytes of the class including ']').
        let mut i = 0;
        let negate = p.first() == Some(&b'^');
        if negate {
            i += 1;
        }
        let mut matched = false;
        let mut first = true;
        loop {
            let lo = *p.get(i)?;
            if lo == b']' && !first {
                return Some((matched != negate, i + 1));
            }
            first = false;
            let (lo, step) = if lo == b'\\' { (*p.get(i + 1)?, 2) } else { (lo, 1) };
            i += step;
            let hi = if p.get(i) == Some(&b'-') && p.get(i + 1) != Some(&b']') {
                let h = *p.get(i + 1)?;
                i += 2;
                h
            } else {
                lo
            };
            if lo <= c && c <= hi {
                matched = true;
            }
        }
    }
    fn go(p: &[u8], n: &[u8]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some(b'*') => (0..=n.len()).take_while(|&k| k == 0 || n[k - 1] != b'/').any(|k| go(&p[1..], &n[k..])),
            Some(b'?') => n.first().is_some_and(|&c| c != b'/') && go(&p[1..], &n[1..]),
            Some(b'[') => match n.first() {
                Some(&c) if c != b'/' => class(&p[1..], c).is_some_and(|(m, len)| m && go(&p[1 + len..], &n[1..])),
                _ => false,
            },
            Some(b'\\') => p.get(1).is_some_and(|&e| n.first() == Some(&e) && go(&p[2..], &n[1..])),
            Some(&c) => n.first() == Some(&c) && go(&p[1..], &n[1..]),
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_follow_go() {
        assert!(glob_match("*", "abc"));
        assert!(!glob_match("*", "a/b"));
        assert!(glob_match("a/*", "a/b"));
        assert!(glob_match("0a*-hello", "0abc-hello"));
        assert!(glob_match("[a-c]x", "bx"));
        assert!(!glob_match("[^a-c]x", "bx"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "a/c"));
        assert!(glob_match("\\*", "*"));
        assert!(!glob_match("[", "a"));
    }

    #[test]
    fn env_suffix_rules() {
        let dir = tempdir();
        let (env, launch) = (dir.path().join("env"), dir.path().join("env.launch"));
        fs::create_dir_all(&env).unwrap();
        fs::create_dir_all(&launch).unwrap();
        fs::write(env.join("A"), "env").unwrap();
        fs::write(launch.join("A.override"), "launch").unwrap();
        fs::write(env.join("P.prepend"), "/p").unwrap();
        fs::write(env.join("P.delim"), ":").unwrap();
        fs::write(launch.join("P.prepend"), "/q").unwrap();
        fs::write(env.join("D.default"), "first").unwrap();
        fs::write(launch.join("D.default"), "second").unwrap();
        fs::write(env.join("X.append"), "y").unwrap();
        fs::write(env.join("E.default"), "unused").unwrap();
        let mut vars: BTreeMap<String, String> =
            [("P", "/bin"), ("X", "x"), ("E", "set")].iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        apply_env_dirs(&mut vars, &[env, launch]);
        assert_eq!(vars["A"], "launch");
        assert_eq!(vars["P"], "/q:/p:/bin");
        assert_eq!(vars["D"], "first");
        // No delimiter file: concatenated as they are.
        assert_eq!(vars["X"], "xy");
        assert_eq!(vars["E"], "set");
    }

    #[test]
    fn plans_pass_when_provides_meet_requires() {
        let plan: toml::Table = "[[provides]]\nname = \"nix\"\n[[requires]]\nname = \"nix\"\n".parse().unwrap();
        assert_eq!(resolve_plan(&plan).unwrap().unwrap().len(), 1);
        let unmet: toml::Table = "[[provides]]\nname = \"nix\"\n".parse().unwrap();
        assert!(resolve_plan(&unmet).unwrap().is_none());
        let alt: toml::Table =
            "[[provides]]\nname = \"a\"\n[[or]]\n[[or.provides]]\nname = \"b\"\n[[or.requires]]\nname = \"b\"\n"
                .parse()
                .unwrap();
        assert_eq!(resolve_plan(&alt).unwrap().unwrap()[0]["name"].as_str(), Some("b"));
        assert_eq!(resolve_plan(&toml::Table::new()).unwrap().unwrap().len(), 0);
    }

    #[test]
    fn layer_tomls_are_validated() {
        let ok: toml::Table = "[types]\nlaunch = true\n[metadata]\nv = 1\n".parse().unwrap();
        assert!(check_layer_toml(&ok).is_ok());
        let bad: toml::Table = "[types]\nlaunch = \"yes\"\n".parse().unwrap();
        assert!(check_layer_toml(&bad).is_err());
        let unknown: toml::Table = "launch = true\n".parse().unwrap();
        assert!(check_layer_toml(&unknown).is_err());
    }
}
