//! What a front end reads from outside its arguments, the one way every front end reads it: Nix's
//! configuration (`nix.conf`) and the variables the caches take, from an environment `var` (the
//! process's for the command line and the classic buildpack, the platform's for the CNB), handed
//! to the libraries as values ([`narwhal_store::Settings`], [`HttpOptions`]).
//!
//! Nix's files, in the order Nix 2.8 loads them (the last one wins): `$NIX_CONF_DIR/nix.conf`
//! (`/etc/nix/nix.conf`), then `$NIX_USER_CONF_FILES` (`:`-separated) or else, for each directory of
//! `$XDG_CONFIG_DIRS` (`/etc/xdg`) from the last to the first and then `$XDG_CONFIG_HOME`
//! (`~/.config`), `DIR/nix/nix.conf`; then the text of `$NIX_CONFIG`. A file that cannot be read is
//! skipped, as Nix skips it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use narwhal_formats::nix_conf::{self, NixConf};
use narwhal_store::http::HttpOptions;
use narwhal_store::Settings;

use crate::errors::Error;

/// An environment: a variable's value, `None` when unset.
pub type Var<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The variable holding a push token for HTTP caches.
pub const TOKEN_VAR: &str = "NARWHAL_PUSH_TOKEN";
/// Seconds without progress before an HTTP transfer fails.
pub const HTTP_TIMEOUT_VAR: &str = "NARWHAL_HTTP_TIMEOUT";

fn set(var: Var<'_>, name: &str) -> Option<String> {
    var(name).filter(|v| !v.is_empty())
}

/// Nix's configuration directory: `$NIX_CONF_DIR`, else `/etc/nix`.
pub fn conf_dir(var: Var<'_>) -> PathBuf {
    set(var, "NIX_CONF_DIR").map_or_else(|| PathBuf::from("/etc/nix"), PathBuf::from)
}

/// The nix.conf files Nix reads, in the order it applies them.
fn conf_files(var: Var<'_>) -> Vec<PathBuf> {
    let mut files = vec![conf_dir(var).join("nix.conf")];
    let user: Vec<PathBuf> = if let Some(list) = var("NIX_USER_CONF_FILES") {
        list.split(':').filter(|f| !f.is_empty()).map(PathBuf::from).collect()
    } else {
        let home = set(var, "XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| set(var, "HOME").map(|h| Path::new(&h).join(".config")));
        let dirs = set(var, "XDG_CONFIG_DIRS").unwrap_or_else(|| "/etc/xdg".to_owned());
        home.into_iter()
            .chain(dirs.split(':').filter(|d| !d.is_empty()).map(PathBuf::from))
            .map(|d| d.join("nix/nix.conf"))
            .collect()
    };
    // Nix applies the user files from the last to the first, so the first one wins.
    files.extend(user.into_iter().rev());
    files
}

/// Reads an included file: `None` when it does not exist.
fn read_include(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Nix's configuration as Nix would load it in the environment `var`.
pub fn nix_conf(var: Var<'_>) -> Result<NixConf, nix_conf::Error> {
    let mut conf = NixConf::default();
    let mut read = read_include;
    for file in conf_files(var) {
        // A file Nix cannot read is skipped, as Nix skips it.
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        conf.apply(&nix_conf::parse(&text, &file.to_string_lossy(), &mut read)?);
    }
    if let Some(text) = var("NIX_CONFIG") {
        conf.apply(&nix_conf::parse(&text, "NIX_CONFIG", &mut read)?);
    }
    Ok(conf)
}

/// What the caches take from outside their URL, from the environment `var` and Nix's configuration
/// `conf` (none: Nix's default netrc-file): netrc files (`$NETRC`, `~/.netrc`, nix.conf's
/// `netrc-file`, else `<conf dir>/netrc`), `$NARWHAL_PUSH_TOKEN`, the AWS variables and
/// `$NARWHAL_LOCK_WAIT`.
pub fn store(var: Var<'_>, conf: Option<&NixConf>) -> Result<Settings, Error> {
    let mut netrc_files: Vec<PathBuf> = Vec::new();
    if let Some(f) = set(var, "NETRC") {
        netrc_files.push(f.into());
    }
    if let Some(home) = set(var, "HOME") {
        netrc_files.push(Path::new(&home).join(".netrc"));
    }
    match conf.and_then(|c| c.netrc_file.as_ref()) {
        Some(item) => netrc_files.push(item.value.clone().into()),
        None => netrc_files.push(conf_dir(var).join("netrc")),
    }
    let push_token = set(var, TOKEN_VAR).map(|t| (t, format!("${TOKEN_VAR}")));
    let vars = narwhal_store::settings::S3_VARS.iter().filter_map(|&n| Some((n.to_owned(), set(var, n)?))).collect();
    let lock_wait = narwhal_store::lock::parse_wait(var(narwhal_store::lock::WAIT_VAR).as_deref())?;
    Ok(Settings { netrc_files, push_token, vars, lock_wait })
}

/// How HTTP requests behave in the environment `var`: `$NARWHAL_HTTP_TIMEOUT` seconds without
/// progress fail a transfer (default [`narwhal_store::http::DEFAULT_TIMEOUT`]).
pub fn http(var: Var<'_>) -> Result<HttpOptions, Error> {
    let mut options = HttpOptions::default();
    if let Some(v) = set(var, HTTP_TIMEOUT_VAR) {
        let secs: u32 =
            v.trim().parse().ok().filter(|&s| s > 0).ok_or_else(|| Error::HttpTimeout { value: v.clone() })?;
        options.timeout = Duration::from_secs(secs.into());
    }
    Ok(options)
}

/// Both values a fetch takes from outside its arguments.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub store: Settings,
    pub http: HttpOptions,
}

/// [`store`] and [`http`] in the environment `var`, with Nix's configuration read there.
pub fn from_env(var: Var<'_>) -> Result<Env, Error> {
    let conf = nix_conf(var)?;
    Ok(Env { store: store(var, Some(&conf))?, http: http(var)? })
}

/// `settings` with the variables `vars` (name, value) over its own, as a buildpack's config gives them.
pub fn with_vars(settings: &Settings, vars: &[(String, String)]) -> Settings {
    let mut settings = settings.clone();
    for (name, value) in vars {
        settings.vars.insert(name.clone(), value.clone());
    }
    settings
}
