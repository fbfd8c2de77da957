//! `narwhal slug`: a closure laid out as a Heroku slug (the layout is
//! documented in `narwhal_buildpack::app`).

use std::io::Write as _;
use std::path::PathBuf;

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
    let slug = Slug {
        app_dir: &args.app_dir,
        runtime_root: &args.runtime_root,
        prefix: args.prefix.clone(),
        pad: args.pad,
        lock_wait: super::lock_wait()?,
    };
    let done = slug.run(&args.roots, &source(&args.source)?, &progress, &Lines(&progress));
    progress.finish();
    let done = done?;
    let mut out = stdout();
    for l in &done.links {
        writeln!(out, "{}", l.display())?;
    }
    out.flush()?;
    Ok(done.links)
}
