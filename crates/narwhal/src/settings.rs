//! What narwhal reads from outside its command line: the process environment and Nix's own
//! configuration (`nix.conf`), read here once (as `narwhal_buildpack::settings` reads them, in
//! Nix's order) and handed to the libraries as values. A flag or a `NARWHAL_*` variable always
//! wins over nix.conf, and `--no-nix-conf` (or `NARWHAL_NO_NIX_CONF=1`) reads none of it.

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
    std::env::var(name).ok()
}

fn load() -> Result<Option<NixConf>, nix_conf::Error> {
    if flags().no_nix_conf {
        return Ok(None);
    }
    narwhal_buildpack::settings::nix_conf(&var).map(Some)
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
    let conf = nix_conf()?;
    if let Some(item) = conf.and_then(|c| c.netrc_file.as_ref()) {
        verbose(&format!("netrc-file {} (from {})", item.value, item.origin));
    }
    Ok(narwhal_buildpack::settings::store(&var, conf)?)
}

/// How HTTP requests behave: `NARWHAL_HTTP_TIMEOUT` seconds without progress fail a transfer
/// (default [`narwhal_store::http::DEFAULT_TIMEOUT`]); each retry is said on stderr, with what
/// failed and when the next try is.
pub fn http() -> anyhow::Result<narwhal_store::http::HttpOptions> {
    let mut options = narwhal_buildpack::settings::http(&var)?;
    options.on_retry = Some(std::sync::Arc::new(|next, attempts, error, delay| {
        crate::output::eprint_line(&format!(
            "retrying in {:.1} s (attempt {next} of {attempts}): {}",
            delay.as_secs_f64(),
            crate::errors::chain_line(error)
        ));
    }));
    Ok(options)
}

/// How long a push waits for a deleting garbage collection: `$NARWHAL_GC_WAIT` seconds, else an hour.
pub fn gc_wait() -> anyhow::Result<std::time::Duration> {
    Ok(narwhal_push::parse_gc_wait(var(narwhal_push::GC_WAIT_VAR).as_deref())?)
}
