//! `narwhal fetch`: resolve roots, walk the closure, fetch it.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use narwhal_buildpack::{Fetched, Source};
use narwhal_formats::store_path::StoreDir;
use narwhal_store::CacheUrl;

use crate::cli::{FetchArgs, SourceArgs};
use crate::output::stdout;
use crate::progress::Progress;

pub fn run(args: &FetchArgs) -> anyhow::Result<()> {
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
            "seconds": fetched.elapsed.as_secs_f64(),
        }))?);
    }
    let mut out = stdout();
    for r in &fetched.roots {
        writeln!(out, "{}", args.to.join(r.base_name()).display())?;
    }
    out.flush()?;
    Ok(())
}

/// The whole fetch, shared by `fetch` and `slug`: the library's, with progress on stderr.
pub fn fetch_into(
    roots: &[String],
    source: &SourceArgs,
    dest: &Path,
    prefix: Option<&str>,
    pad: bool,
) -> anyhow::Result<Fetched> {
    super::check_writable(dest)?;
    let roots = roots_arg(roots)?;
    let progress = Progress::new(source.no_progress);
    let fetched = narwhal_buildpack::fetch_into(&roots, &self::source(source)?, dest, prefix, pad, &progress);
    progress.finish();
    let fetched = fetched?;
    progress.line(&fetched.summary_line());
    Ok(fetched)
}

/// The library's [`Source`] for these arguments, with what they leave unset from nix.conf (caches,
/// trusted keys) and the environment.
pub fn source(args: &SourceArgs) -> anyhow::Result<Source> {
    let from = if args.from_export.is_some() { args.from.clone() } else { caches(&args.from)? };
    Ok(Source {
        from,
        no_verify: args.no_verify,
        from_export: args.from_export.clone(),
        s3_env: args.s3_env.clone(),
        trusted_public_keys: keys(args.no_verify || args.from_export.is_some(), &args.trusted_public_keys)?,
        cache_dir: args.cache_dir.clone(),
        prune_cache: args.prune_cache,
        jobs: args.jobs,
        wait: args.wait,
        store: crate::settings::store()?,
        http: crate::settings::http()?,
    })
}

/// The caches `from` names, else nix.conf's substituters; a `file://` one must exist.
fn caches(from: &[String]) -> anyhow::Result<Vec<String>> {
    let mut from: Vec<String> = from.iter().filter(|u| !u.is_empty()).cloned().collect();
    if from.is_empty() {
        from = crate::settings::from_nix_conf("substituter", |c| c.substituters.as_ref())?;
    }
    for url in &from {
        super::check_cache_dir(&CacheUrl::parse(url)?)?;
    }
    Ok(from)
}

/// The keys given, else nix.conf's trusted-public-keys (none needed with `no_verify`).
fn keys(no_verify: bool, keys: &[String]) -> anyhow::Result<Vec<String>> {
    let keys: Vec<String> = keys.iter().filter(|k| !k.is_empty()).cloned().collect();
    if keys.is_empty() && !no_verify {
        return crate::settings::from_nix_conf("trusted-public-key", |c| c.trusted_public_keys.as_ref());
    }
    Ok(keys)
}

/// Roots as given, with links to store paths (`./result`) read as the store paths they name.
pub(super) fn roots_arg(roots: &[String]) -> anyhow::Result<Vec<String>> {
    let store_dir = StoreDir::default();
    roots
        .iter()
        .map(|r| {
            if std::fs::symlink_metadata(r).is_ok_and(|m| m.file_type().is_symlink()) {
                let path = super::store_path_arg(&store_dir, r)?;
                return Ok(store_dir.display(&path).to_string());
            }
            Ok(r.clone())
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .context("invalid root")
}

/// The keys signatures must be by (`None` with `--no-verify`): `keys`, else nix.conf's
/// trusted-public-keys; no key at all is an error.
pub fn trusted_keys(
    no_verify: bool,
    keys: &[String],
) -> anyhow::Result<Option<Vec<narwhal_formats::signature::PublicKey>>> {
    Ok(narwhal_buildpack::source::trusted_keys(no_verify, &self::keys(no_verify, keys)?)?)
}

/// The caches `from` names (else nix.conf's substituters), opened, by priority.
pub fn substituters(
    from: &[String],
    http: &narwhal_store::http::HttpOptions,
) -> anyhow::Result<narwhal_fetch::Substituters> {
    Ok(narwhal_buildpack::source::substituters(&caches(from)?, http, &crate::settings::store()?)?)
}

pub use narwhal_buildpack::log::{count, human};
