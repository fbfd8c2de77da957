//! What to fetch: store paths, pins, or Hydra jobs, resolved to store paths.

use std::time::{Duration, Instant};

use narwhal_formats::store_path::{StoreDir, StorePath};
use narwhal_store::http::HttpOptions;
use narwhal_store::{hydra, pin};

use crate::error::Error;
use crate::report::Reporter;
use crate::substituters::Substituters;

/// A root as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    /// `/nix/store/<hash>-<name>[/…]` or `<hash>-<name>`.
    Path(StorePath),
    /// `pin:<name>` or `pin:<name>@<revision>`.
    Pin { name: String, revision: Option<String> },
    /// `http(s)://…/job/<project>/<jobset>/<job>`: its latest successful build.
    Hydra(String),
}

impl Root {
    pub fn parse(s: &str, store_dir: &StoreDir) -> Result<Self, Error> {
        let invalid = |why: String| Error::InvalidRoot { root: s.to_owned(), why };
        if let Some(rest) = s.strip_prefix("pin:") {
            let (name, revision) = match rest.split_once('@') {
                Some((n, r)) => (n, Some(r.to_owned())),
                None => (rest, None),
            };
            pin::key(name, revision.as_deref()).map_err(|e| invalid(e.to_string()))?;
            return Ok(Self::Pin { name: name.to_owned(), revision });
        }
        if hydra::is_job_url(s) {
            return Ok(Self::Hydra(s.to_owned()));
        }
        if s.starts_with('/') {
            let (path, _) = store_dir.split_path(s).map_err(|e| invalid(e.to_string()))?;
            return Ok(Self::Path(path));
        }
        StorePath::from_base_name(s)
            .map(Self::Path)
            .map_err(|e| invalid(format!("{e}; expected a store path, pin:<name>[@<revision>] or a Hydra job URL")))
    }
}

/// How long to wait for a revision's pin that is not there yet.
#[derive(Debug, Clone, Copy)]
pub struct WaitPolicy {
    pub max: Duration,
    pub interval: Duration,
}

impl Default for WaitPolicy {
    fn default() -> Self {
        Self { max: Duration::ZERO, interval: Duration::from_secs(5) }
    }
}

/// Resolves roots to store paths. A revision pin that is missing is polled
/// for up to `wait.max` (CI may still be pushing it).
pub fn resolve_roots(
    subs: &Substituters,
    roots: &[Root],
    wait: WaitPolicy,
    http: &HttpOptions,
    reporter: &dyn Reporter,
) -> Result<Vec<StorePath>, Error> {
    let mut out = Vec::new();
    for root in roots {
        match root {
            Root::Path(p) => out.push(p.clone()),
            Root::Hydra(url) => {
                for p in hydra::latest_outputs(url, http)? {
                    let (path, _) = subs.store_dir.split_path(&p).map_err(|e| Error::InvalidRoot {
                        root: url.clone(),
                        why: format!("Hydra named {p:?}: {e}"),
                    })?;
                    out.push(path);
                }
            }
            Root::Pin { name, revision } => {
                let key = pin::key(name, revision.as_deref())
                    .map_err(|e| Error::InvalidRoot { root: name.clone(), why: e.to_string() })?;
                let started = Instant::now();
                loop {
                    if let Some(p) = read_pin(subs, &key)? {
                        out.push(p.path);
                        break;
                    }
                    let waited = started.elapsed();
                    if revision.is_none() || waited >= wait.max {
                        return Err(Error::PinMissing { key, waited: waited.as_secs() });
                    }
                    reporter.warning(&format!(
                        "{key} is not in the cache yet; waiting ({} of {} s)",
                        waited.as_secs(),
                        wait.max.as_secs()
                    ));
                    std::thread::sleep(
                        wait.interval.min(wait.max.saturating_sub(waited)).max(Duration::from_millis(100)),
                    );
                }
            }
        }
    }
    Ok(out)
}

fn read_pin(subs: &Substituters, key: &str) -> Result<Option<pin::Pin>, Error> {
    for s in &subs.list {
        if let Some(bytes) = s.cache.get(key)? {
            let pin = pin::Pin::parse(&String::from_utf8_lossy(&bytes), &s.info.store_dir)
                .map_err(|source| Error::Pin { key: key.to_owned(), cache: s.url.to_string(), source })?;
            return Ok(Some(pin));
        }
    }
    Ok(None)
}
