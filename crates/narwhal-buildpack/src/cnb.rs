//! What the Cloud Native Buildpack decides, apart from libcnb's calls: where
//! the store goes, the processes, the slices, the launch PATH, and why a
//! cached layer was discarded.
//!
//! The closure is relocated from `/nix/store` to [`STORE`], the app directory
//! itself (`/workspace`, exactly 10 bytes; the shortest layer path
//! `/layers/x/y` is 11, so no layer can hold a same-length store). Store paths
//! sit beside the app's files as `/workspace/<hash>-<name>`
//! ([`narwhal_slug::Layout::Flat`]), each its own `[[slices]]` entry, so the
//! exporter makes every store path its own app layer and reuses the
//! unchanged ones by diffID.

use std::path::Path;

use crate::config::Config;
use crate::errors::Error;

/// The app directory on every CNB platform, and so the relocated store.
pub const STORE: &str = "/workspace";

/// The store cache layer's metadata ([`crate::store_cache`]): a restored layer is kept only when
/// it matches.
pub const STORE_FORMAT: &str = "narwhal-store-v1";

/// One process for `launch.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub kind: String,
    /// The command as an argument vector (Buildpack API 0.9+).
    pub command: Vec<String>,
    pub default: bool,
}

/// The processes: narwhal.toml's `[processes]`, else the app's Procfile. `web` is the default
/// process when there is one; a single process is the default otherwise.
pub fn processes(config: &Config, app_dir: &Path) -> Result<Vec<Process>, Error> {
    let mut pairs: Vec<(String, String)> = config.processes.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if pairs.is_empty() {
        let file = app_dir.join("Procfile");
        match std::fs::read_to_string(&file) {
            Ok(text) => pairs = procfile(&text).map_err(|why| Error::Procfile { file: file.clone(), why })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("read", &file)(e)),
        }
    }
    for (kind, _) in &pairs {
        if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
            return Err(Error::ProcessType { kind: kind.clone() });
        }
    }
    let default = if pairs.iter().any(|(k, _)| k == "web") { Some("web") } else { None };
    Ok(pairs
        .iter()
        .map(|(kind, command)| Process {
            kind: kind.clone(),
            command: argv(command),
            default: default.is_some_and(|d| d == kind) || (default.is_none() && pairs.len() == 1),
        })
        .collect())
}

/// A Procfile: `type: command` lines; blank lines and `#` comments skipped.
pub fn procfile(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((kind, command)) = line.split_once(':') else {
            return Err(format!("line {} is not `type: command`", n + 1));
        };
        let (kind, command) = (kind.trim(), command.trim());
        if command.is_empty() {
            return Err(format!("line {} has no command", n + 1));
        }
        out.push((kind.to_owned(), command.to_owned()));
    }
    Ok(out)
}

/// A command line as an argument vector: split on spaces when it holds nothing a shell would
/// interpret, else run by `/bin/sh -c` (which the run image has).
pub fn argv(command: &str) -> Vec<String> {
    let plain = command.bytes().all(|b| b.is_ascii_alphanumeric() || b" /._-+=,:@%".contains(&b));
    if plain {
        command.split_whitespace().map(str::to_owned).collect()
    } else {
        vec!["/bin/sh".to_owned(), "-c".to_owned(), command.to_owned()]
    }
}

/// The slices: each store path in the app directory its own (`<hash>-<name>`).
pub fn slices(app_dir: &Path) -> Result<Vec<String>, Error> {
    let entries = std::fs::read_dir(app_dir).map_err(Error::io("read the app directory", app_dir))?;
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| std::fs::DirEntry::file_name(&e))
        .filter(|n| narwhal_slug::is_store_path_name(n.as_encoded_bytes()))
        .filter_map(|n| n.into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Why the store cache layer was not reused: one line for the build log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discarded {
    /// Its metadata is not what this buildpack writes (an older or newer buildpack wrote it).
    InvalidMetadata,
    /// Its format is another one.
    Format { found: String },
    /// It is for another store directory.
    StoreDir { found: String },
}

impl std::fmt::Display for Discarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidMetadata => f.write_str(
                "discarding the cached store: its metadata was written by another version of this buildpack",
            ),
            Self::Format { found } => {
                write!(f, "discarding the cached store: it is in format {found}, this buildpack keeps {STORE_FORMAT}")
            }
            Self::StoreDir { found } => {
                write!(f, "discarding the cached store: it is for the store {found}, not /nix/store")
            }
        }
    }
}

/// The buildpack's ID (`narwhal_nix` as a directory under `/layers` and `/cnb/buildpacks`).
pub const BUILDPACK_ID: &str = "narwhal/nix";
/// The Buildpack API libcnb speaks.
pub const BUILDPACK_API: &str = "0.10";

/// `buildpack.toml`: what pack and the lifecycle require (api, id, version, targets) and a
/// description.
pub fn descriptor(version: &str) -> String {
    format!(
        "api = \"{BUILDPACK_API}\"\n\n[buildpack]\nid = \"{BUILDPACK_ID}\"\nname = \"narwhal\"\nversion = \"{version}\"\ndescription = \"Deploys a Nix closure from a binary cache, verified and relocated to /workspace, without Nix\"\nkeywords = [\"nix\"]\n\n[[buildpack.licenses]]\ntype = \"MIT OR Apache-2.0\"\n\n[[targets]]\nos = \"linux\"\narch = \"amd64\"\n"
    )
}

/// Writes the buildpack directory `dir` (which must not exist, or be empty): `buildpack.toml`,
/// `bin/narwhal` (a copy of `binary`) and `bin/detect`, `bin/build` linking to it. It is built
/// beside `dir` and renamed into place whole.
pub fn package(dir: &Path, binary: &Path, version: &str) -> Result<(), Error> {
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(Error::PackageExists(dir.to_path_buf()));
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent).map_err(Error::io("create", parent))?;
    let name = dir.file_name().ok_or_else(|| Error::PackageExists(dir.to_path_buf()))?;
    // A staging directory beside `dir` (narwhal_formats::temp), removed on drop whatever happens.
    let staging = narwhal_formats::temp::dir_in(parent, name).map_err(Error::io("create a directory in", parent))?;
    let staged = staging.path().join(name);
    let bin = staged.join("bin");
    std::fs::create_dir_all(&bin).map_err(Error::io("create", &bin))?;
    crate::write_atomic(&staged.join("buildpack.toml"), descriptor(version).as_bytes(), 0o644)?;
    let exe = bin.join("narwhal");
    std::fs::copy(binary, &exe).map_err(Error::io("copy the narwhal binary to", &exe))?;
    std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(Error::io("chmod", &exe))?;
    for phase in ["detect", "build"] {
        std::os::unix::fs::symlink("narwhal", bin.join(phase)).map_err(Error::io("create", bin.join(phase)))?;
    }
    let _ = std::fs::remove_dir(dir);
    std::fs::rename(&staged, dir).map_err(Error::io("move the buildpack into place at", dir))
}
