//! `narwhal serve`'s configuration: a TOML file, every key optional, in kebab-case as narwhal.toml
//! and nix.conf write theirs (the snake_case of earlier versions, `key_files`, is still read, and
//! [`Config::load`] returns a warning naming the new spelling).
//!
//! ```toml
//! # The cache to serve: a directory (`/srv/cache`, `file:///srv/cache`),
//! # an S3 bucket (`s3://bucket[/prefix]?region=…&endpoint=…&profile=…`),
//! # or `local` (this machine's /nix/store, read-only). Required here or on the command line.
//! store = "/srv/cache"
//! # Where to listen. Default: 127.0.0.1:5000.
//! listen = "127.0.0.1:5000"
//! # Secret keys (Nix's `name:base64` files) that sign every narinfo served. Default: none.
//! key-files = ["/etc/narwhal/cache.sec"]
//! # Files of push tokens, one a line; a PUT needs one of them. Default: none, so writes are refused.
//! push-token-files = ["/etc/narwhal/push-tokens"]
//! # Files of read tokens; when any is given, reads need a read or a push token. Default: none (public reads).
//! read-token-files = []
//! # The Priority that nix-cache-info announces when the cache has none of its own. Default: 40.
//! priority = 40
//! # Where uploaded NARs wait until they are stored. Default: the system's temporary directory.
//! temp-dir = "/var/tmp"
//! # The largest NAR a PUT may send, in bytes. Default: 68719476736 (64 GiB).
//! max-upload-bytes = 68719476736
//! # The Nix database of the `local` store. Default: /nix/var/nix/db/db.sqlite.
//! local-db = "/nix/var/nix/db/db.sqlite"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

/// The listen address when none is given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5000";
/// The priority announced for a cache without its own `nix-cache-info`.
pub const DEFAULT_PRIORITY: u64 = 40;
/// The largest NAR a PUT may send: 64 GiB.
pub const DEFAULT_MAX_UPLOAD: u64 = 64 << 30;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    pub store: Option<String>,
    pub listen: Option<SocketAddr>,
    #[serde(default)]
    pub key_files: Vec<PathBuf>,
    #[serde(default)]
    pub push_token_files: Vec<PathBuf>,
    #[serde(default)]
    pub read_token_files: Vec<PathBuf>,
    pub priority: Option<u64>,
    pub temp_dir: Option<PathBuf>,
    pub max_upload_bytes: Option<u64>,
    pub local_db: Option<PathBuf>,
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read the config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("cannot read the {what} file {path}")]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the key file {path} holds no valid secret key")]
    Key {
        path: PathBuf,
        #[source]
        source: narwhal_formats::signature::Error,
    },
    #[error("the token file {path} holds no token")]
    NoToken { path: PathBuf },
    #[error("a token in {path} (line {line}) is shorter than 16 characters")]
    ShortToken { path: PathBuf, line: usize },
    #[error("no store to serve")]
    NoStore,
}

impl ConfigError {
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Self::Parse { .. } => Some("the keys are documented in narwhal serve --help and the README"),
            Self::Key { .. } => Some("make one with `narwhal key generate NAME --secret FILE --public FILE`"),
            Self::NoToken { .. } | Self::ShortToken { .. } => {
                Some("put one token a line, e.g. from `head -c 32 /dev/urandom | base64`")
            }
            Self::NoStore => Some("pass --store DIR|s3://BUCKET|local, or set `store` in the config file"),
            _ => None,
        }
    }
}

impl Config {
    /// The config in `path`, and a warning for each key written in the old snake_case.
    pub fn load(path: &Path) -> Result<(Self, Vec<String>), ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let parse = |message: String| ConfigError::Parse { path: path.to_owned(), message };
        let mut table: toml::Table = toml::from_str(&text).map_err(|e| parse(e.to_string()))?;
        let old: Vec<String> = table.keys().filter(|k| k.contains('_')).cloned().collect();
        if old.is_empty() {
            // Parsed again from the text, so that errors name their line.
            return Ok((toml::from_str(&text).map_err(|e| parse(e.to_string()))?, Vec::new()));
        }
        let mut warnings = Vec::new();
        for key in old {
            let new = key.replace('_', "-");
            if table.contains_key(&new) {
                return Err(parse(format!("both `{key}` and `{new}` are set; keep `{new}`")));
            }
            if let Some(value) = table.remove(&key) {
                table.insert(new.clone(), value);
            }
            warnings.push(format!("{}: `{key}` is now spelled `{new}`; the old name still works", path.display()));
        }
        let config = toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| parse(e.to_string()))?;
        Ok((config, warnings))
    }
}

/// The tokens of `files`, one a line (blank lines and `#` comments skipped).
pub fn read_tokens(files: &[PathBuf]) -> Result<Vec<String>, ConfigError> {
    let mut tokens = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            what: "token",
            path: path.clone(),
            source,
        })?;
        let before = tokens.len();
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            if t.len() < 16 {
                return Err(ConfigError::ShortToken { path: path.clone(), line: i + 1 });
            }
            tokens.push(t.to_owned());
        }
        if tokens.len() == before {
            return Err(ConfigError::NoToken { path: path.clone() });
        }
    }
    Ok(tokens)
}

/// The secret keys in `files`.
pub fn read_keys(files: &[PathBuf]) -> Result<Vec<narwhal_formats::signature::SecretKey>, ConfigError> {
    files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
                what: "key",
                path: path.clone(),
                source,
            })?;
            narwhal_formats::signature::SecretKey::parse(text.trim())
                .map_err(|source| ConfigError::Key { path: path.clone(), source })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kebab_case_keys_and_the_old_snake_case_with_a_warning() {
        let dir = narwhal_testkit::tempdir();
        let file = dir.path().join("serve.toml");
        std::fs::write(&file, "store = \"/srv\"\nkey-files = [\"/k\"]\nmax-upload-bytes = 10\n").unwrap();
        let (config, warnings) = Config::load(&file).unwrap();
        assert_eq!(
            (config.key_files, config.max_upload_bytes, warnings.len()),
            (vec![PathBuf::from("/k")], Some(10), 0)
        );
        std::fs::write(&file, "push_token_files = [\"/t\"]\ntemp-dir = \"/tmp\"\n").unwrap();
        let (config, warnings) = Config::load(&file).unwrap();
        assert_eq!(config.push_token_files, vec![PathBuf::from("/t")]);
        assert_eq!(
            warnings,
            [format!(
                "{}: `push_token_files` is now spelled `push-token-files`; the old name still works",
                file.display()
            )]
        );
        std::fs::write(&file, "key_files = []\nkey-files = []\n").unwrap();
        assert!(Config::load(&file).unwrap_err().to_string().contains("both `key_files` and `key-files`"));
        std::fs::write(&file, "keyfiles = []\n").unwrap();
        assert!(matches!(Config::load(&file), Err(ConfigError::Parse { .. })));
    }
}
