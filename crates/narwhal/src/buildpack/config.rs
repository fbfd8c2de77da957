//! The buildpack's configuration: `narwhal.toml` in the app, overridden by
//! Heroku config vars (files in ENV_DIR).
//!
//! ```toml
//! # What to deploy (config var NARWHAL_ROOTS, space-separated): store paths,
//! # pin:<name>[@<revision>], or Hydra job URLs.
//! roots = []
//! # Deploy the pin of this name for the commit being built ($SOURCE_VERSION),
//! # waiting up to `wait` seconds for CI to push it (NARWHAL_PIN, NARWHAL_WAIT).
//! pin = "web"
//! wait = 0
//! # Binary caches, by priority (NARWHAL_SUBSTITUTERS; NIX_EXTRA_BINARY_CACHE is added).
//! substituters = []
//! # Keys whose signatures are trusted (NARWHAL_TRUSTED_PUBLIC_KEYS).
//! trusted-public-keys = []
//! # Accept unsigned paths; NAR hashes are still checked (NARWHAL_NO_VERIFY=1).
//! no-verify = false
//!
//! [build]
//! # Build with nix-build first when `nix-build` is on PATH (NIX_BUILD_ON_PUSH=1),
//! # with these flags (NIX_BUILD_FLAGS), and deploy what it built.
//! nix = false
//! flags = ""
//!
//! [processes]
//! # Default process types for bin/release.
//! web = "result/bin/server"
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::errors::BuildpackError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    #[serde(default)]
    pub roots: Vec<String>,
    pub pin: Option<String>,
    #[serde(default)]
    pub wait: u64,
    #[serde(default)]
    pub substituters: Vec<String>,
    #[serde(default)]
    pub trusted_public_keys: Vec<String>,
    #[serde(default)]
    pub no_verify: bool,
    #[serde(default)]
    pub build: Build,
    #[serde(default)]
    pub processes: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    #[serde(default)]
    pub nix: bool,
    #[serde(default)]
    pub flags: String,
}

impl Config {
    /// `BUILD_DIR/narwhal.toml` (absent is fine), then config vars from `env_dir`.
    pub fn load(build_dir: &Path, env_dir: Option<&Path>) -> Result<Self, BuildpackError> {
        let file = build_dir.join("narwhal.toml");
        let mut config = match std::fs::read_to_string(&file) {
            Ok(text) => toml::from_str(&text).map_err(|e| BuildpackError::Config { why: e.to_string() })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::default(),
            Err(e) => return Err(BuildpackError::Config { why: format!("cannot read narwhal.toml: {e}") }),
        };
        if let Some(env_dir) = env_dir {
            config.apply_env(&|name| read_var(env_dir, name))?;
        }
        Ok(config)
    }

    fn apply_env(&mut self, var: &dyn Fn(&str) -> Option<String>) -> Result<(), BuildpackError> {
        let words = |s: String| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        if let Some(v) = var("NARWHAL_ROOTS") {
            self.roots = words(v);
        }
        if let Some(v) = var("NARWHAL_PIN") {
            self.pin = Some(v.trim().to_owned()).filter(|p| !p.is_empty());
        }
        if let Some(v) = var("NARWHAL_WAIT") {
            self.wait = v.trim().parse().map_err(|_| BuildpackError::Config {
                why: format!("NARWHAL_WAIT={v:?} is not a number of seconds"),
            })?;
        }
        if let Some(v) = var("NARWHAL_SUBSTITUTERS") {
            self.substituters = words(v);
        }
        if let Some(v) = var("NIX_EXTRA_BINARY_CACHE") {
            self.substituters.extend(words(v));
        }
        if let Some(v) = var("NARWHAL_TRUSTED_PUBLIC_KEYS") {
            self.trusted_public_keys = words(v);
        }
        if let Some(v) = var("NARWHAL_NO_VERIFY") {
            self.no_verify = matches!(v.trim(), "1" | "true" | "yes");
        }
        if let Some(v) = var("NIX_BUILD_ON_PUSH") {
            self.build.nix = matches!(v.trim(), "1" | "true" | "yes");
        }
        if let Some(v) = var("NIX_BUILD_FLAGS") {
            v.trim().clone_into(&mut self.build.flags);
        }
        Ok(())
    }
}

/// A Heroku config var: the contents of `ENV_DIR/NAME`, if the file exists.
fn read_var(env_dir: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(env_dir.join(name)).ok()
}
