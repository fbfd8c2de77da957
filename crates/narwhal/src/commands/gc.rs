//! `narwhal gc`: options into `narwhal_gc::gc`, progress on stderr, the summary on stdout.

use std::io::Write as _;
use std::path::PathBuf;

use narwhal_gc::{GcOptions, GcReporter, Phase, Summary};
use narwhal_store::CacheUrl;

use super::fetch::human;
use crate::cli::GcArgs;
use crate::output::stdout;
use crate::progress::Status;

/// GC progress: a bar over what is read or deleted on a terminal, a line per stage otherwise.
pub struct GcProgress {
    status: Status,
}

impl GcProgress {
    pub fn new(no_progress: bool) -> Self {
        Self { status: Status::new(no_progress, "{pos}/{len} {wide_msg}", "{bar:30.cyan/blue} {pos}/{len} {wide_msg}") }
    }

    pub fn finish(&self) {
        self.status.finish();
    }

    fn start(&self, total: usize, what: &str) {
        if let Some(bar) = &self.status.bar {
            bar.set_position(0);
            bar.set_length(u64::try_from(total).unwrap_or(u64::MAX));
            bar.set_message(what.to_owned());
        }
    }
}

impl GcReporter for GcProgress {
    fn stage(&self, what: &str) {
        match &self.status.bar {
            Some(bar) => bar.set_message(what.to_owned()),
            None => self.status.line(what),
        }
    }
    fn listed(&self, objects: u64) {
        if let Some(bar) = &self.status.bar {
            bar.set_message(format!("listed {objects} objects"));
        }
    }
    fn reading(&self, total: usize) {
        self.start(total, "narinfos read");
    }
    fn read_one(&self) {
        if let Some(bar) = &self.status.bar {
            bar.inc(1);
        }
    }
    fn deleting(&self, total: usize) {
        self.start(total, "objects deleted");
    }
    fn deleted_one(&self) {
        self.read_one();
    }
    fn waiting(&self, until_ms: i64) {
        let secs = (until_ms - narwhal_gc::now_ms()).max(0) / 1000;
        self.status.line(&format!("phase 1 done; waiting {secs} s (the grace period) before phase 2"));
    }
}

/// `$XDG_CACHE_HOME/narwhal`, else `~/.cache/narwhal`.
fn default_index_dir() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()).map(PathBuf::from);
    xdg.or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache"))).map(|d| d.join("narwhal"))
}

pub fn run(args: &GcArgs) -> anyhow::Result<()> {
    let url = CacheUrl::parse(&args.cache)?;
    let cache = narwhal_store::open_writer(&url, &crate::settings::store()?)?;
    let progress = GcProgress::new(args.no_progress || args.json);
    let opts = GcOptions {
        keep_since: args.keep_since,
        grace: args.grace,
        nar_delay: args.nar_delay,
        keep_revisions: args.keep,
        keep_days: args.keep_days.map(|d| std::time::Duration::from_secs(u64::try_from(d).unwrap_or(0) * 86_400)),
        roots: args.paths.clone(),
        phase: match args.phase {
            Some(1) => Phase::One,
            Some(_) => Phase::Two,
            None => Phase::Both,
        },
        dry_run: args.dry_run,
        jobs: args.jobs.unwrap_or(16),
        index_dir: if args.no_index { None } else { args.index_dir.clone().or_else(default_index_dir) },
        lease: args.lease,
        reporter: &progress,
    };
    let summary = narwhal_gc::gc(cache.as_ref(), &opts);
    progress.finish();
    let summary = summary?;
    if args.json {
        crate::output::print_json(&summary)?;
    } else {
        print_summary(&summary)?;
    }
    Ok(())
}

fn print_summary(s: &Summary) -> anyhow::Result<()> {
    let mut out = stdout();
    let verb = if s.dry_run { "would delete" } else { "deleted" };
    for key in [
        &s.deleted.pins,
        &s.deleted.narinfos,
        &s.deleted.listings,
        &s.deleted.logs,
        &s.deleted.nars,
        &s.deleted.uploads,
    ]
    .into_iter()
    .flatten()
    {
        writeln!(out, "{verb} {key}")?;
    }
    for p in &s.pins {
        writeln!(
            out,
            "pin {} keeps {} paths ({}), {} of them ({}) for it alone",
            p.key,
            p.paths,
            human(p.bytes),
            p.only_this_paths,
            human(p.only_this_bytes)
        )?;
    }
    out.flush()?;
    let mut err = std::io::stderr().lock();
    for m in &s.missing_references {
        writeln!(err, "warning: {} references {}, which the cache lacks (left as it is)", m.referenced_by, m.path)?;
    }
    for u in &s.unreadable {
        writeln!(err, "warning: {} does not parse ({}); kept", u.key, u.reason)?;
    }
    let d = &s.deleted;
    writeln!(
        err,
        "{}: {} narinfos, {} reachable (roots: {} pins, {} recent, {} in the grace period, {} given); \
         {} candidates; {verb} {} pins, {} narinfos, {} listings, {} logs, {} NARs, {} uploads: {} freed; \
         {} unreferenced NARs wait for --nar-delay; {} list requests, {} narinfos read, {} from the index",
        s.cache,
        s.scanned.narinfos,
        s.reachable,
        s.roots.pins,
        s.roots.recent,
        s.roots.grace,
        s.roots.given,
        s.candidate_narinfos,
        d.pins.len(),
        d.narinfos.len(),
        d.listings.len(),
        d.logs.len(),
        d.nars.len(),
        d.uploads.len(),
        human(s.bytes_freed),
        s.nars_awaiting_delay,
        s.scanned.list_requests,
        s.scanned.narinfo_gets,
        s.scanned.narinfos_reused,
    )?;
    Ok(())
}
