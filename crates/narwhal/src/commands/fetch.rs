//! `narwhal fetch`: resolve roots, walk the closure, fetch it.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use narwhal_fetch::{FetchOptions, Root, Substituters, Summary, WaitPolicy};
use narwhal_formats::signature::PublicKey;
use narwhal_formats::store_path::StorePath;
use narwhal_relocate::Relocation;
use narwhal_store::http::HttpOptions;
use narwhal_store::CacheUrl;

use crate::cli::{FetchArgs, SourceArgs};
use crate::output::stdout;
use crate::progress::Progress;

/// What a fetch produced: the roots as they are now on disk.
pub struct Fetched {
    pub roots: Vec<StorePath>,
    #[allow(dead_code)] // read by `slug`
    pub summary: Summary,
}

pub fn run(args: &FetchArgs) -> anyhow::Result<()> {
    let fetched = fetch_into(&args.roots, &args.source, &args.to, args.prefix.as_deref(), args.pad)?;
    let mut out = stdout();
    for r in &fetched.roots {
        writeln!(out, "{}", args.to.join(r.base_name()).display())?;
    }
    out.flush()?;
    Ok(())
}

/// The whole fetch, shared by `fetch` and `slug`.
pub fn fetch_into(
    roots: &[String],
    source: &SourceArgs,
    dest: &Path,
    prefix: Option<&str>,
    pad: bool,
) -> anyhow::Result<Fetched> {
    let started = Instant::now();
    let trusted = if source.no_verify {
        None
    } else {
        let keys = source
            .trusted_public_keys
            .iter()
            .filter(|k| !k.is_empty())
            .map(|k| PublicKey::parse(k).with_context(|| format!("invalid trusted public key {k:?}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if keys.is_empty() {
            bail!(
                "no trusted public keys, so no signature can be checked; give --trusted-public-key NAME:KEY (or NARWHAL_TRUSTED_PUBLIC_KEYS), or --no-verify to accept unsigned paths"
            );
        }
        Some(keys)
    };
    let urls =
        source.from.iter().filter(|u| !u.is_empty()).map(|u| CacheUrl::parse(u)).collect::<Result<Vec<_>, _>>()?;
    if urls.is_empty() {
        bail!("no binary cache given; pass --from URL (or NARWHAL_SUBSTITUTERS)");
    }
    let http = HttpOptions::default();
    let subs = Substituters::open(&urls, &http)?;
    let relocation = match prefix {
        Some(p) => Relocation::new(subs.store_dir.as_str(), p, pad)?,
        None => Relocation::new(subs.store_dir.as_str(), subs.store_dir.as_str(), false)?,
    };
    let progress = Progress::new(source.no_progress);
    let roots = roots.iter().map(|r| Root::parse(r, &subs.store_dir)).collect::<Result<Vec<_>, _>>()?;
    let wait = WaitPolicy { max: Duration::from_secs(source.wait), interval: Duration::from_secs(2) };
    let root_paths = narwhal_fetch::resolve_roots(&subs, &roots, wait, &http, &progress)?;
    let jobs = source.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, std::num::NonZero::get));
    let closure = narwhal_fetch::walk_closure(&subs, &root_paths, trusted.as_deref(), (jobs * 4).max(8))?;
    let options = FetchOptions {
        dest: dest.to_path_buf(),
        relocation,
        cache_dir: source.cache_dir.clone(),
        jobs,
        attempts: 4,
        prune_cache: source.prune_cache,
        reporter: &progress,
    };
    let summary = narwhal_fetch::fetch(&subs, &closure, &options)?;
    progress.finish();
    progress.line(&format!(
        "{} paths: {} downloaded, {} from the local cache, {} already present; {} read, {} unpacked, in {:.1} s",
        summary.paths,
        summary.downloaded,
        summary.from_cache,
        summary.present,
        human(summary.downloaded_bytes),
        human(summary.unpacked_bytes),
        started.elapsed().as_secs_f64()
    ));
    Ok(Fetched { roots: root_paths, summary })
}

/// Bytes for people: `12.3 MB`.
pub fn human(n: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let f = n as f64;
    if n < 1000 {
        format!("{n} B")
    } else if n < 1_000_000 {
        format!("{:.1} kB", f / 1e3)
    } else if n < 1_000_000_000 {
        format!("{:.1} MB", f / 1e6)
    } else {
        format!("{:.2} GB", f / 1e9)
    }
}
