//! What narwhal reads from outside its command line: the process environment and Nix's own
//! configuration (`nix.conf`), read here once and handed to the libraries as values.
//!
//! Nix's files, in the order Nix 2.8 loads them (the last one wins): `$NIX_CONF_DIR/nix.conf`
//! (`/etc/nix/nix.conf`), then `$NIX_USER_CONF_FILES` (`:`-separated) or else, for each directory of
//! `$XDG_CONFIG_DIRS` (`/etc/xdg`) from the last to the first and then `$XDG_CONFIG_HOME`
//! (`~/.config`), `DIR/nix/nix.conf`; then the text of `$NIX_CONFIG`. A file that cannot be read is
//! skipped, as Nix skips it. A flag or a `NARWHAL_*` variable always wins over nix.conf, and
//! `--no-nix-conf` (or `NARWHAL_NO_NIX_CONF=1`) reads none of it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use narwhal_formats::nix_conf::{self, Item, NixConf};

/// The global flags, set once by `main` before any command runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flags {
    pub verbose: bool,
    pub no_nix_conf: bool,
}

static FLAGS: OnceLock<Flags> = OnceLock::new();
static NIX_CONF: OnceLock<Result<Option<NixConf>, nix_conf::Error>> = OnceLock::new();

pub fn init(flags: Flags) {
    let _ = FLAGS.set(flags);
}

fn flags() -> Flags {
    FLAGS.get().copied().unwrap_or_default()
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Nix's configuration directory: `$NIX_CONF_DIR`, else `/etc/nix`.
fn conf_dir() -> PathBuf {
    var("NIX_CONF_DIR").map_or_else(|| PathBuf::from("/etc/nix"), PathBuf::from)
}

/// The nix.conf files Nix reads, in the order it applies them.
fn conf_files() -> Vec<PathBuf> {
    let mut files = vec![conf_dir().join("nix.conf")];
    let user: Vec<PathBuf> = match std::env::var("NIX_USER_CONF_FILES") {
        Ok(list) => list.split(':').filter(|f| !f.is_empty()).map(PathBuf::from).collect(),
        Err(_) => {
            let home = var("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|h| Path::new(&h).join(".config")));
            let dirs = var("XDG_CONFIG_DIRS").unwrap_or_else(|| "/etc/xdg".to_owned());
            home.into_iter()
                .chain(dirs.split(':').filter(|d| !d.is_empty()).map(PathBuf::from))
                .map(|d| d.join("nix/nix.conf"))
                .collect()
        }
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

fn load() -> Result<Option<NixConf>, nix_conf::Error> {
    if flags().no_nix_conf {
        return Ok(None);
    }
    let mut conf = NixConf::default();
    let mut read = read_include;
    for file in conf_files() {
        // A file Nix cannot read is skipped, as Nix skips it.
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        conf.apply(&nix_conf::parse(&text, &file.to_string_lossy(), &mut read)?);
    }
    if let Ok(text) = std::env::var("NIX_CONFIG") {
        conf.apply(&nix_conf::parse(&text, "NIX_CONFIG", &mut read)?);
    }
    Ok(Some(conf))
}

/// Nix's configuration, read once; `None` with `--no-nix-conf`.
pub fn nix_conf() -> anyhow::Result<Option<&'static NixConf>> {
    match NIX_CONF.get_or_init(load) {
        Ok(conf) => Ok(conf.as_ref()),
        Err(e) => {
            Err(anyhow::Error::new(e.clone()).context("cannot read Nix's configuration (--no-nix-conf skips it)"))
        }
    }
}

/// The values of the nix.conf list `pick` selects, when a file set it; said on stderr with `--verbose`.
pub fn from_nix_conf(what: &str, pick: fn(&NixConf) -> Option<&Vec<Item>>) -> anyhow::Result<Vec<String>> {
    let Some(items) = nix_conf()?.and_then(pick) else { return Ok(Vec::new()) };
    for item in items {
        verbose(&format!("{what} {} (from {})", item.value, item.origin));
    }
    Ok(items.iter().map(|i| i.value.clone()).collect())
}

/// A line on stderr with `--verbose`.
pub fn verbose(line: &str) {
    if flags().verbose {
        crate::output::eprint_line(&format!("narwhal: {line}"));
    }
}

/// The values the store's caches take from outside their URL ([`narwhal_store::Settings`]).
pub fn store() -> anyhow::Result<narwhal_store::Settings> {
    let mut netrc_files: Vec<PathBuf> = Vec::new();
    if let Some(f) = var("NETRC") {
        netrc_files.push(f.into());
    }
    if let Some(home) = var("HOME") {
        netrc_files.push(Path::new(&home).join(".netrc"));
    }
    // Nix's netrc-file, by default in its configuration directory.
    match nix_conf()?.and_then(|c| c.netrc_file.as_ref()) {
        Some(item) => {
            verbose(&format!("netrc-file {} (from {})", item.value, item.origin));
            netrc_files.push(item.value.clone().into());
        }
        None => netrc_files.push(conf_dir().join("netrc")),
    }
    let push_token = var(TOKEN_VAR).map(|t| (t, format!("${TOKEN_VAR}")));
    let vars = narwhal_store::settings::S3_VARS.iter().filter_map(|&n| Some((n.to_owned(), var(n)?))).collect();
    let lock_wait = narwhal_store::lock::parse_wait(std::env::var(narwhal_store::lock::WAIT_VAR).ok().as_deref())?;
    Ok(narwhal_store::Settings { netrc_files, push_token, vars, lock_wait })
}

/// The variable holding a push token for HTTP caches.
pub const TOKEN_VAR: &str = "NARWHAL_PUSH_TOKEN";

/// How HTTP requests behave: `NARWHAL_HTTP_TIMEOUT` seconds without progress fail a transfer
/// (default [`narwhal_store::http::DEFAULT_TIMEOUT`]); each retry is said on stderr, with what
/// failed and when the next try is.
pub fn http() -> anyhow::Result<narwhal_store::http::HttpOptions> {
    let mut options = narwhal_store::http::HttpOptions::default();
    if let Some(v) = var("NARWHAL_HTTP_TIMEOUT") {
        let secs: u32 = v.trim().parse().ok().filter(|&s| s > 0).ok_or_else(|| {
            anyhow::anyhow!("NARWHAL_HTTP_TIMEOUT={v:?} is not a number of seconds; set it to one, such as 10")
        })?;
        options.timeout = std::time::Duration::from_secs(secs.into());
    }
    options.on_retry = Some(std::sync::Arc::new(|next, attempts, error, delay| {
        crate::output::eprint_line(&format!(
            "retrying in {:.1} s (attempt {next} of {attempts}): {}",
            delay.as_secs_f64(),
            crate::errors::chain_line(error)
        ));
    }));
    Ok(options)
}
