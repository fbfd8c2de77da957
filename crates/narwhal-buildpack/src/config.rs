//! The buildpack's configuration: `narwhal.toml` in the app, overridden by
//! config vars: files named after the variable in a directory (Heroku's
//! ENV_DIR, a CNB platform's `$CNB_PLATFORM_DIR/env/`).
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
//! # Private HTTP caches: config var NARWHAL_NETRC holds a netrc file's contents
//! # (`machine HOST login NAME password SECRET`; for narwhal serve, a read token
//! # as the password). It never goes into narwhal.toml, which is in the repository.
//! # Accept unsigned paths; NAR hashes are still checked (NARWHAL_NO_VERIFY=1).
//! no-verify = false
//! # Deploy from a `nix-store --export` stream instead of caches (NARWHAL_EXPORT):
//! # a file in the app, or s3://bucket/key. Exports carry no signatures: the
//! # stream is trusted as whoever could write it. The older Heroku Nix
//! # buildpack's config vars set this: NIX_S3_BUCKET and NIX_APP_NAME name
//! # s3://$NIX_S3_BUCKET/nix-closures/$NIX_APP_NAME.closure, NIX_S3_KEY and
//! # NIX_S3_SECRET are its credentials (AWS_* config vars work too).
//! export = "s3://my-bucket/nix-closures/my-app.closure"
//!
//! [build]
//! # Build with nix-build first when `nix-build` is on PATH (NIX_BUILD_ON_PUSH=1),
//! # with these flags (NIX_BUILD_FLAGS), and deploy what it built.
//! nix = false
//! flags = ""
//!
//! [processes]
//! # Default process types (bin/release; the CNB's launch.toml, where a
//! # Procfile also works and `web` is the default).
//! web = "result/bin/server"
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::errors::{Error as BuildpackError, NotDetected};

#[derive(Debug, Clone, Default, Deserialize)]
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
    pub export: Option<String>,
    /// AWS_* settings from config vars, for an `s3://` export.
    #[serde(skip)]
    pub s3_env: Vec<(String, String)>,
    /// A netrc file's contents (config var NARWHAL_NETRC), for private HTTP caches.
    #[serde(skip)]
    pub netrc: Option<String>,
    #[serde(default)]
    pub build: Build,
    #[serde(default)]
    pub processes: BTreeMap<String, String>,
    /// `[image]`: the settings of `narwhal image` (read and checked there), not the buildpack's.
    #[serde(default)]
    pub image: Option<toml::Table>,
}

#[derive(Debug, Clone, Default, Deserialize)]
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

    /// `APP_DIR/narwhal.toml`, then the config vars `var` gives.
    pub fn load_with(app_dir: &Path, var: &dyn Fn(&str) -> Option<String>) -> Result<Self, BuildpackError> {
        let mut config = Self::load(app_dir, None)?;
        config.apply_env(var)?;
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
        if let Some(v) = var("NARWHAL_NETRC") {
            self.netrc = Some(v).filter(|n| !n.trim().is_empty());
        }
        if let Some(v) = var("NARWHAL_EXPORT") {
            self.export = Some(v.trim().to_owned()).filter(|e| !e.is_empty());
        }
        self.apply_legacy_s3(var)?;
        if let Some(v) = var("NIX_BUILD_ON_PUSH") {
            self.build.nix = matches!(v.trim(), "1" | "true" | "yes");
        }
        if let Some(v) = var("NIX_BUILD_FLAGS") {
            v.trim().clone_into(&mut self.build.flags);
        }
        Ok(())
    }
}

impl Config {
    /// The older Heroku Nix buildpack's closure on S3, and AWS settings from config vars.
    fn apply_legacy_s3(&mut self, var: &dyn Fn(&str) -> Option<String>) -> Result<(), BuildpackError> {
        let value = |name: &str| var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        for name in AWS_VARS {
            if let Some(v) = value(name) {
                self.s3_env.push(((*name).to_owned(), v));
            }
        }
        let (bucket, app) = (value("NIX_S3_BUCKET"), value("NIX_APP_NAME"));
        let Some(bucket) = bucket else {
            if app.is_some() {
                return Err(BuildpackError::Config {
                    why: "NIX_APP_NAME is set but NIX_S3_BUCKET is not; set both to deploy the closure the older Nix buildpack stored".to_owned(),
                });
            }
            return Ok(());
        };
        let Some(app) = app else {
            return Err(BuildpackError::Config {
                why: format!("NIX_S3_BUCKET={bucket} is set but NIX_APP_NAME is not; it names the closure (nix-closures/$NIX_APP_NAME.closure)"),
            });
        };
        if bucket.contains('/') || app.contains('/') {
            return Err(BuildpackError::Config {
                why: "NIX_S3_BUCKET is a bucket name and NIX_APP_NAME a file name; neither may contain '/'".to_owned(),
            });
        }
        self.export = Some(format!("s3://{bucket}/nix-closures/{app}.closure"));
        match (value("NIX_S3_KEY"), value("NIX_S3_SECRET")) {
            (Some(key), Some(secret)) => {
                self.s3_env.push(("AWS_ACCESS_KEY_ID".to_owned(), key));
                self.s3_env.push(("AWS_SECRET_ACCESS_KEY".to_owned(), secret));
            }
            (None, None) => {}
            (Some(_), None) | (None, Some(_)) => {
                return Err(BuildpackError::Config {
                    why: "set both NIX_S3_KEY and NIX_S3_SECRET (or neither, for AWS_* credentials)".to_owned(),
                })
            }
        }
        Ok(())
    }
}

/// AWS settings honoured as config vars, for an `s3://` export.
const AWS_VARS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
];

/// A Heroku config var: the contents of `ENV_DIR/NAME`, if the file exists.
fn read_var(env_dir: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(env_dir.join(name)).ok()
}

/// What detect found: the line a front end prints when it passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected(pub &'static str);

/// Whether `app_dir` is a narwhal app: it has `narwhal.toml`; or the older buildpacks'
/// configuration (NIX_S3_BUCKET + NIX_APP_NAME, or a `default.nix`/`deploy.nix` with a NARWHAL_* or
/// NIX_BUILD_ON_PUSH config var). `var` reads a config var; a Nix file alone does not pass, since
/// compile would only fail on it.
pub fn detect(app_dir: &Path, var: &dyn Fn(&str) -> Option<String>) -> Result<Detected, NotDetected> {
    let set = |name: &str| var(name).is_some_and(|v| !v.trim().is_empty());
    if app_dir.join("narwhal.toml").is_file() {
        return Ok(Detected("narwhal.toml"));
    }
    if set("NIX_S3_BUCKET") && set("NIX_APP_NAME") {
        return Ok(Detected("NIX_S3_BUCKET and NIX_APP_NAME"));
    }
    let Some(file) = ["default.nix", "deploy.nix"].into_iter().find(|f| app_dir.join(f).is_file()) else {
        return Err(NotDetected::Nothing);
    };
    if set("NIX_BUILD_ON_PUSH") || CONFIG_VARS.iter().any(|v| set(v)) {
        return Ok(Detected(file));
    }
    Err(NotDetected::NixFileOnly { file })
}

/// The NARWHAL_* config vars [`Config`] reads.
const CONFIG_VARS: &[&str] = &[
    "NARWHAL_ROOTS",
    "NARWHAL_PIN",
    "NARWHAL_WAIT",
    "NARWHAL_SUBSTITUTERS",
    "NARWHAL_TRUSTED_PUBLIC_KEYS",
    "NARWHAL_NO_VERIFY",
    "NARWHAL_NETRC",
    "NARWHAL_EXPORT",
];

/// A config var from a directory of files named after the variables, if the file exists.
pub fn env_dir_var(env_dir: &Path) -> impl Fn(&str) -> Option<String> + '_ {
    move |name| read_var(env_dir, name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn detect_names_what_it_looked_for() {
        let dir = tempfile::tempdir().unwrap();
        let none = |_: &str| None;
        assert_eq!(detect(dir.path(), &none), Err(NotDetected::Nothing));
        std::fs::write(dir.path().join("default.nix"), "{}").unwrap();
        let err = detect(dir.path(), &none).unwrap_err().to_string();
        assert!(err.contains("NIX_BUILD_ON_PUSH") && err.contains("narwhal.toml"), "{err}");
        let build = |n: &str| (n == "NIX_BUILD_ON_PUSH").then(|| "1".to_owned());
        assert_eq!(detect(dir.path(), &build), Ok(Detected("default.nix")));
        std::fs::write(dir.path().join("narwhal.toml"), "").unwrap();
        assert_eq!(detect(dir.path(), &none), Ok(Detected("narwhal.toml")));
    }
}
