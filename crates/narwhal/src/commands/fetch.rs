//! `narwhal fetch`: resolve roots, walk the closure, fetch it.

use std::io::{Read, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use narwhal_fetch::{FetchOptions, Root, Substituters, Summary, WaitPolicy};
use narwhal_formats::signature::PublicKey;
use narwhal_formats::store_path::{StoreDir, StorePath};
use narwhal_relocate::Relocation;
use narwhal_store::http::HttpOptions;
use narwhal_store::CacheUrl;

use crate::cli::{FetchArgs, SourceArgs};
use crate::output::stdout;
use crate::progress::Progress;

/// What a fetch produced: the roots as they are now on disk.
pub struct Fetched {
    pub roots: Vec<StorePath>,
    pub summary: Summary,
}

pub fn run(args: &FetchArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let fetched = fetch_into(&args.roots, &args.source, &args.to, args.prefix.as_deref(), args.pad)?;
    if args.json {
        let s = &fetched.summary;
        let roots: Vec<String> =
            fetched.roots.iter().map(|r| args.to.join(r.base_name()).display().to_string()).collect();
        return Ok(crate::output::print_json(&serde_json::json!({
            "version": 1,
            "roots": roots,
            "paths": s.paths,
            "downloaded": s.downloaded,
            "from_cache": s.from_cache,
            "present": s.present,
            "downloaded_bytes": s.downloaded_bytes,
            "unpacked_bytes": s.unpacked_bytes,
            "warnings": s.warnings,
            "seconds": started.elapsed().as_secs_f64(),
        }))?);
    }
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
    super::check_writable(dest)?;
    if let Some(export) = &source.from_export {
        return fetch_export_into(roots, export, source, dest, prefix, pad, started);
    }
    let trusted = trusted_keys(source.no_verify, &source.trusted_public_keys)?;
    let http = crate::settings::http()?;
    let subs = substituters(&source.from, &http)?;
    let relocation = relocation(&subs.store_dir, prefix, pad)?;
    let progress = Progress::new(source.no_progress);
    let roots = roots.iter().map(|r| root(r, &subs.store_dir)).collect::<anyhow::Result<Vec<_>>>()?;
    let wait = WaitPolicy { max: Duration::from_secs(source.wait), interval: Duration::from_secs(2) };
    let root_paths = narwhal_fetch::resolve_roots(&subs, &roots, wait, &http, &progress)?;
    let jobs = super::jobs_or_cores(source.jobs);
    let closure = narwhal_fetch::walk_closure(&subs, &root_paths, trusted.as_deref(), (jobs * 4).max(8))?;
    let options = FetchOptions {
        dest: dest.to_path_buf(),
        relocation,
        cache_dir: source.cache_dir.clone(),
        jobs,
        attempts: 4,
        prune_cache: source.prune_cache,
        lock_wait: super::lock_wait()?,
        reporter: &progress,
    };
    let summary = narwhal_fetch::fetch(&subs, &closure, &options)?;
    progress.finish();
    progress.line(&format!(
        "{}: {} downloaded, {} from the local cache, {} already present; {} read, {} unpacked, in {:.1} s",
        count(summary.paths, "path"),
        summary.downloaded,
        summary.from_cache,
        summary.present,
        human(summary.downloaded_bytes),
        human(summary.unpacked_bytes),
        started.elapsed().as_secs_f64()
    ));
    Ok(Fetched { roots: root_paths, summary })
}

/// A root as given: a link to a store path (`./result`), else a store path, pin or Hydra job.
fn root(arg: &str, store_dir: &StoreDir) -> anyhow::Result<Root> {
    if std::fs::symlink_metadata(arg).is_ok_and(|m| m.file_type().is_symlink()) {
        return Ok(Root::Path(super::store_path_arg(store_dir, arg)?));
    }
    Ok(Root::parse(arg, store_dir)?)
}

/// The keys signatures must be by (`None` with `--no-verify`): `keys`, else nix.conf's
/// trusted-public-keys; no key at all is an error.
pub fn trusted_keys(no_verify: bool, keys: &[String]) -> anyhow::Result<Option<Vec<PublicKey>>> {
    if no_verify {
        return Ok(None);
    }
    let mut keys: Vec<String> = keys.iter().filter(|k| !k.is_empty()).cloned().collect();
    if keys.is_empty() {
        keys = crate::settings::from_nix_conf("trusted-public-key", |c| c.trusted_public_keys.as_ref())?;
    }
    let keys = keys
        .iter()
        .filter(|k| !k.is_empty())
        .map(|k| PublicKey::parse(k).with_context(|| format!("invalid trusted public key {k:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if keys.is_empty() {
        bail!(
            "no trusted public keys, so no signature can be checked; give --trusted-public-key NAME:KEY (or NARWHAL_TRUSTED_PUBLIC_KEYS, or trusted-public-keys in nix.conf), or --no-verify to accept unsigned paths"
        );
    }
    Ok(Some(keys))
}

/// The caches `from` names (else nix.conf's substituters), opened, by priority.
pub fn substituters(from: &[String], http: &HttpOptions) -> anyhow::Result<Substituters> {
    let mut from: Vec<String> = from.iter().filter(|u| !u.is_empty()).cloned().collect();
    if from.is_empty() {
        from = crate::settings::from_nix_conf("substituter", |c| c.substituters.as_ref())?;
    }
    let urls = from.iter().map(|u| CacheUrl::parse(u)).collect::<Result<Vec<_>, _>>()?;
    for url in &urls {
        super::check_cache_dir(url)?;
    }
    if urls.is_empty() {
        bail!("no binary cache given; pass --from URL (or NARWHAL_SUBSTITUTERS, or substituters in nix.conf)");
    }
    Ok(Substituters::open(&urls, http, &crate::settings::store()?)?)
}

/// `fetch_into` from a `nix-store --export` stream.
fn fetch_export_into(
    roots: &[String],
    export: &str,
    source: &SourceArgs,
    dest: &Path,
    prefix: Option<&str>,
    pad: bool,
    started: Instant,
) -> anyhow::Result<Fetched> {
    if !source.no_verify {
        bail!(
            "an export ({export}) carries no signatures, so narwhal cannot verify it; pass --no-verify to trust it as whoever wrote it (its NAR hashes are computed and recorded in the manifest), or deploy from a signed binary cache with --from"
        );
    }
    let store_dir = StoreDir::default();
    let roots = roots
        .iter()
        .map(|r| {
            super::store_path_arg(&store_dir, r)
                .with_context(|| format!("invalid root {r:?}: with --from-export, roots are store paths in the export"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let relocation = relocation(&store_dir, prefix, pad)?;
    let (mut input, len) = open_export(export, source)?;
    let progress = Progress::new(source.no_progress);
    let options = FetchOptions {
        dest: dest.to_path_buf(),
        relocation,
        cache_dir: None,
        jobs: super::jobs_or_cores(source.jobs),
        attempts: 1,
        prune_cache: false,
        lock_wait: super::lock_wait()?,
        reporter: &progress,
    };
    let fetched = narwhal_fetch::fetch_export(&mut *input, export, len, &store_dir, &roots, &options)?;
    progress.finish();
    let summary = fetched.summary;
    progress.line(&format!(
        "{} from the export: {} unpacked, {} already present; {} read, {} unpacked, in {:.1} s",
        count(summary.paths, "path"),
        summary.downloaded,
        summary.present,
        human(summary.downloaded_bytes),
        human(summary.unpacked_bytes),
        started.elapsed().as_secs_f64()
    ));
    Ok(Fetched { roots: fetched.roots, summary })
}

/// `store_dir` -> `prefix` (padded with '/' when `pad`), or the identity without a prefix.
fn relocation(store_dir: &StoreDir, prefix: Option<&str>, pad: bool) -> anyhow::Result<Relocation> {
    Ok(match prefix {
        Some(p) => Relocation::new(store_dir.as_str(), p, pad)?,
        None => Relocation::new(store_dir.as_str(), store_dir.as_str(), false)?,
    })
}

/// The export stream and its length when known.
fn open_export(export: &str, source: &SourceArgs) -> anyhow::Result<(Box<dyn Read + Send>, Option<u64>)> {
    if export.starts_with("s3://") {
        let (bucket, key) = super::s3_object(export, &source.s3_env)?;
        let body = match bucket.open(&key) {
            Ok(body) => body,
            Err(e) if matches!(e.kind, narwhal_store::StoreErrorKind::NotFound) => bail!(
                "there is no export at {export}; store the closure there first: `narwhal export ROOT -o {export}` (the buildpack does it after building when NIX_BUILD_ON_PUSH=1)"
            ),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("cannot read the export {export}"))),
        };
        return Ok((body, None));
    }
    if export == "-" {
        return Ok((Box::new(std::io::stdin()), None));
    }
    let file = std::fs::File::open(export).with_context(|| format!("cannot open the export {export}"))?;
    let len = file.metadata().ok().map(|m| m.len());
    Ok((Box::new(file), len))
}

/// `1 path`, `2 paths`: a count and its noun, singular or plural.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Bytes for people, in decimal units as every figure narwhal prints (and Heroku's limits): `12.3 MB`.
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
