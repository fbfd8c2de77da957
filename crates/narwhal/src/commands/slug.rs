//! `narwhal slug`: a closure laid out as a Heroku slug (the layout is
//! documented in `narwhal_buildpack::app`).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use narwhal_buildpack::heroku::Slug;
use narwhal_buildpack::{Event, Log};

use super::fetch::source;
use crate::cli::SlugArgs;
use crate::output::stdout;
use crate::progress::Progress;

/// The slug's steps as plain lines on stderr (warnings as `warning: …`), above the progress bar.
struct Lines<'a>(&'a Progress);

impl Log for Lines<'_> {
    fn event(&self, event: Event) {
        match event {
            Event::Step(s) | Event::Detail(s) => self.0.line(&s),
            Event::Warning(s) => self.0.line(&format!("warning: {s}")),
        }
    }
}

/// The `result` links made, in root order.
pub fn run(args: &SlugArgs) -> anyhow::Result<Vec<PathBuf>> {
    let progress = Progress::new(args.source.no_progress);
    let slug =
        Slug { app_dir: &args.app_dir, runtime_root: &args.runtime_root, prefix: args.prefix.clone(), pad: args.pad };
    let roots = super::fetch::roots_arg(&args.roots)?;
    let done = slug.run(&roots, &source(&args.source)?, &progress, &Lines(&progress));
    progress.finish();
    let done = done?;
    let mut out = stdout();
    for l in &done.links {
        writeln!(out, "{}", l.display())?;
    }
    out.flush()?;
    Ok(done.links)
}

/// `narwhal size DIR`: the store paths in DIR (a fetch's destination) by size, as a table on stdout
/// or JSON.
pub fn size(dir: &Path, json: bool) -> anyhow::Result<()> {
    let sizes = narwhal_slug::size_report_layout(dir, narwhal_slug::Layout::Flat)
        .with_context(|| format!("cannot measure {}", dir.display()))?;
    if json {
        let paths: Vec<serde_json::Value> = sizes
            .paths
            .iter()
            .map(|p| serde_json::json!({ "name": p.name.to_string_lossy(), "bytes": p.bytes }))
            .collect();
        return Ok(crate::output::print_json(&serde_json::json!({
            "version": 1,
            "dir": dir.display().to_string(),
            "paths": paths,
            "total_bytes": sizes.total,
            "tar_gz_upper_bound_bytes": sizes.tar_gz_upper_bound(),
            "heroku_limit_bytes": narwhal_slug::HEROKU_SLUG_LIMIT,
        }))?);
    }
    let mut out = stdout();
    for line in narwhal_buildpack::app::size_lines(&sizes, usize::MAX, false) {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}
