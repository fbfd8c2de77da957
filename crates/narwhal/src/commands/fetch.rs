//! `narwhal fetch`: resolve roots, walk the closure, fetch it.

use std::io::Write as _;
use std::path::Path;

use narwhal_buildpack::{Fetched, Source};

use crate::cli::{FetchArgs, SourceArgs};
use crate::output::stdout;
use crate::progress::Progress;

pub fn run(args: &FetchArgs) -> anyhow::Result<()> {
    let fetched = fetch_into(&args.roots, &args.source, &args.to, args.prefix.as_deref(), args.pad)?;
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
    let progress = Progress::new(source.no_progress);
    let fetched = narwhal_buildpack::fetch_into(roots, &self::source(source)?, dest, prefix, pad, &progress);
    progress.finish();
    let fetched = fetched?;
    progress.line(&fetched.summary_line());
    Ok(fetched)
}

/// The library's [`Source`] for these arguments.
pub fn source(args: &SourceArgs) -> anyhow::Result<Source> {
    Ok(Source {
        from: args.from.clone(),
        no_verify: args.no_verify,
        from_export: args.from_export.clone(),
        s3_env: args.s3_env.clone(),
        trusted_public_keys: args.trusted_public_keys.clone(),
        cache_dir: args.cache_dir.clone(),
        prune_cache: args.prune_cache,
        jobs: args.jobs,
        wait: args.wait,
        lock_wait: super::lock_wait()?,
    })
}

pub use narwhal_buildpack::log::human;
pub use narwhal_buildpack::source::{substituters, trusted_keys};
