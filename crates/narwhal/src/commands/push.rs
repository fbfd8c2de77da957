//! `narwhal push`, `narwhal missing`, `narwhal pin`.

use std::io::Write as _;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use narwhal_formats::signature::SecretKey;
use narwhal_formats::store_path::{StoreDir, StorePath};
use narwhal_push::{LocalStore, PushCompression, PushOptions, PushReporter};
use narwhal_store::http::HttpOptions;
use narwhal_store::pin::{self, Pin};
use narwhal_store::CacheUrl;

use super::fetch::human;
use crate::cli::PushArgs;
use crate::output::stdout;

fn parse_paths(store: &LocalStore, args: &[String]) -> anyhow::Result<Vec<StorePath>> {
    args.iter()
        .map(|p| {
            let (path, _) = store.store_dir().split_path(p.trim_end_matches('/'))?;
            Ok(path)
        })
        .collect()
}

struct Lines;

impl PushReporter for Lines {
    fn planned(&self, total: usize, missing: usize) {
        let _ = writeln!(std::io::stderr().lock(), "pushing {missing} of {total} paths (the cache has the others)");
    }

    fn uploaded(&self, path: &StorePath, nar_size: u64, file_size: u64) {
        let _ = writeln!(
            std::io::stderr().lock(),
            "uploaded {path} ({} NAR, {} compressed)",
            human(nar_size),
            human(file_size)
        );
    }
}

pub fn run(args: &PushArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut paths = args.paths.clone();
    if paths.is_empty() {
        // A Nix post-build-hook gets the built paths in OUT_PATHS.
        paths = std::env::var("OUT_PATHS").unwrap_or_default().split_whitespace().map(str::to_owned).collect();
    }
    if paths.is_empty() {
        bail!("nothing to push: give store paths, or run as a post-build-hook (which sets OUT_PATHS)");
    }
    let url = CacheUrl::parse(&args.to)?;
    let local = LocalStore::open(&args.store_db, StoreDir::default(), "/nix/store".into())?;
    let roots = parse_paths(&local, &paths)?;
    let closure = local.closure(&roots)?;
    let key_file = args.key_file.clone().or_else(|| url.param("secret-key").map(Into::into));
    let key = match &key_file {
        Some(f) => Some(
            SecretKey::parse(&super::read_text(f)?)
                .with_context(|| format!("invalid secret key file {}", f.display()))?,
        ),
        None => None,
    };
    let compression = match args.compression.as_deref().or(url.param("compression")).unwrap_or("zstd") {
        "zstd" => PushCompression::Zstd,
        "xz" => PushCompression::Xz,
        "none" => PushCompression::None,
        other => bail!("unsupported compression {other:?}: use zstd, xz or none"),
    };
    let dest = narwhal_store::open_writer(&url)?;
    let temp_dir = std::env::temp_dir();
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, std::num::NonZero::get));
    let opts = PushOptions { compression, level: args.level, key, jobs, temp_dir, reporter: &Lines };
    let summary = narwhal_push::push(&local, &closure, dest.as_ref(), &opts)?;
    let _ = writeln!(
        std::io::stderr().lock(),
        "{} paths: {} uploaded, {} already in {url}; {} NAR, {} compressed, in {:.1} s",
        summary.paths,
        summary.uploaded,
        summary.already_there,
        human(summary.nar_bytes),
        human(summary.file_bytes),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn missing(paths: &[String], cache: &str) -> anyhow::Result<()> {
    let local = LocalStore::open_default()?;
    let roots = parse_paths(&local, paths)?;
    let closure = local.closure(&roots)?;
    let url = CacheUrl::parse(cache)?;
    let cache = narwhal_store::open_cache(&url, &HttpOptions::default())?;
    let absent = narwhal_push::missing(&closure, cache.as_ref(), 16)?;
    let mut out = stdout();
    for p in absent {
        writeln!(out, "{}", local.store_dir().display(&p))?;
    }
    out.flush()?;
    Ok(())
}

pub fn pin(name: &str, store_path: &str, to: &str, rev: Option<&str>) -> anyhow::Result<()> {
    let url = CacheUrl::parse(to)?;
    let dest = narwhal_store::open_writer(&url)?;
    let store_dir = StoreDir::default();
    let (path, _) = store_dir.split_path(store_path)?;
    // A pin must point at something a deploy can fetch.
    if !dest.exists(&format!("{}.narinfo", path.hash_part()))? {
        bail!("{store_path} is not in {url}; push it first (narwhal push {store_path} --to {to})");
    }
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let pin = Pin { name: name.to_owned(), store_dir, path, revision: rev.map(str::to_owned), created };
    let text = pin.to_string();
    if let Some(r) = rev {
        dest.put(&pin::key(name, Some(r))?, text.as_bytes(), "text/plain")?;
    }
    dest.put(&pin::key(name, None)?, text.as_bytes(), "text/plain")?;
    Ok(())
}
