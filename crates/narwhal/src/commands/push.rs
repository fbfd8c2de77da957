//! `narwhal push`, `narwhal missing`, `narwhal pin`.

use std::io::Write as _;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use narwhal_formats::signature::SecretKey;
use narwhal_formats::store_path::{StoreDir, StorePath};
use narwhal_push::{LocalStore, PushCompression, PushOptions, PushReporter};
use narwhal_store::pin::{self, Pin};
use narwhal_store::CacheUrl;

use super::fetch::{count, human};
use crate::cli::{DestArgs, PushArgs};
use crate::output::stdout;
use crate::progress::Status;

fn parse_paths(store: &LocalStore, args: &[String]) -> anyhow::Result<Vec<StorePath>> {
    args.iter().map(|p| super::store_path_arg(store.store_dir(), p)).collect()
}

/// Push progress on stderr: a bar over the paths to upload on a terminal, a line per path otherwise.
pub struct PushProgress {
    status: Status,
}

impl PushProgress {
    pub fn new(no_progress: bool) -> Self {
        Self {
            status: Status::new(
                no_progress,
                "{pos}/{len} paths {elapsed} {wide_msg}",
                "{bar:30.cyan/blue} {pos}/{len} paths {elapsed} {wide_msg}",
            ),
        }
    }

    pub fn finish(&self) {
        self.status.finish();
    }
}

impl PushReporter for PushProgress {
    fn planned(&self, total: usize, missing: usize) {
        self.status.line(&match (missing, total - missing.min(total)) {
            (0, _) => format!("nothing to push: the cache has all {}", count(total, "path")),
            (_, 0) => format!("pushing {} (the cache has none of them)", count(total, "path")),
            (_, have) => format!("pushing {missing} of {} (the cache has the other {have})", count(total, "path")),
        });
        if let Some(bar) = &self.status.bar {
            bar.set_length(u64::try_from(missing).unwrap_or(u64::MAX));
        }
    }

    fn uploaded(&self, path: &StorePath, nar_size: u64, file_size: u64) {
        match &self.status.bar {
            Some(bar) => {
                bar.inc(1);
                bar.set_message(format!("{path} ({} NAR, {} compressed)", human(nar_size), human(file_size)));
            }
            None => {
                self.status.line(&format!(
                    "uploaded {path} ({} NAR, {} compressed)",
                    human(nar_size),
                    human(file_size)
                ));
            }
        }
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
    let (url, keys, compression) = destination(&args.dest)?;
    if let Some(from) = &args.from {
        return push_from(from, &paths, &url, keys, compression, args, started);
    }
    let local = LocalStore::open(&args.store_db, StoreDir::default(), "/nix/store".into())?;
    let roots = parse_paths(&local, &paths)?;
    let closure = local.closure(&roots)?;
    let dest = open_dest(&url, &args.dest)?;
    let temp_dir = temp_dir_for(&url);
    let jobs = super::jobs_or_cores(args.jobs);
    let progress = PushProgress::new(args.no_progress);
    let gc_wait = crate::settings::gc_wait()?;
    let opts = PushOptions { compression, level: args.dest.level, keys, jobs, temp_dir, reporter: &progress, gc_wait };
    let summary = narwhal_push::push(&local, &closure, dest.as_ref(), &opts);
    progress.finish();
    report(&summary?, &url, started, args.json)
}

/// `push --from`: the closures of `paths` in another cache, copied into `url`.
fn push_from(
    from: &str,
    paths: &[String],
    url: &CacheUrl,
    keys: Vec<SecretKey>,
    compression: PushCompression,
    args: &PushArgs,
    started: Instant,
) -> anyhow::Result<()> {
    let source_url = CacheUrl::parse(from)?;
    super::check_cache_dir(&source_url)?;
    let source = narwhal_store::open_cache(&source_url, &crate::settings::http()?, &crate::settings::store()?)?;
    let store_dir = StoreDir::default();
    let roots = paths.iter().map(|p| super::store_path_arg(&store_dir, p)).collect::<anyhow::Result<Vec<_>>>()?;
    let jobs = super::jobs_or_cores(args.jobs);
    let closure = narwhal_push::closure_in_cache(source.as_ref(), &store_dir, &roots, jobs.max(8))?;
    let dest = open_dest(url, &args.dest)?;
    let keep_compression = args.dest.compression.is_none() && url.param("compression").is_none();
    let progress = PushProgress::new(args.no_progress);
    let opts = PushOptions {
        compression,
        level: args.dest.level,
        keys,
        jobs,
        temp_dir: temp_dir_for(url),
        reporter: &progress,
        gc_wait: crate::settings::gc_wait()?,
    };
    let summary = narwhal_push::push_from_cache(source.as_ref(), &closure, dest.as_ref(), &opts, keep_compression);
    progress.finish();
    report(&summary?, url, started, args.json)
}

/// The destination, keys and compression `dest` asks for (flags first, then the URL's parameters,
/// then nix.conf's secret-key-files).
fn destination(dest: &DestArgs) -> anyhow::Result<(CacheUrl, Vec<SecretKey>, PushCompression)> {
    let url = CacheUrl::parse(&dest.to)?;
    let key_files: Vec<std::path::PathBuf> =
        match dest.key_file.clone().or_else(|| url.param("secret-key").map(Into::into)) {
            Some(f) => vec![f],
            None => crate::settings::from_nix_conf("secret-key-file", |c| c.secret_key_files.as_ref())?
                .into_iter()
                .map(Into::into)
                .collect(),
        };
    let keys = key_files
        .iter()
        .map(|f| {
            SecretKey::parse(&super::read_text(f)?).with_context(|| format!("invalid secret key file {}", f.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let compression = match dest.compression.as_deref().or(url.param("compression")).unwrap_or("zstd") {
        "zstd" => PushCompression::Zstd,
        "xz" => PushCompression::Xz,
        "none" => PushCompression::None,
        other => bail!("unsupported compression {other:?}: use zstd, xz or none"),
    };
    compression.check_level(dest.level)?;
    Ok((url, keys, compression))
}

/// The cache `url` opened for writing, with the token from `--token-file` for an HTTP cache.
fn open_dest(url: &CacheUrl, dest: &DestArgs) -> anyhow::Result<Box<dyn narwhal_store::CacheWriter>> {
    open_writer_with_token_file(url, dest.token_file.as_deref())
}

/// The cache `url` opened for writing, with the token in `token_file` for an HTTP cache.
fn open_writer_with_token_file(
    url: &CacheUrl,
    token_file: Option<&std::path::Path>,
) -> anyhow::Result<Box<dyn narwhal_store::CacheWriter>> {
    let token = match token_file {
        Some(f) => Some((super::read_text(f)?, f.display().to_string())),
        None => None,
    };
    Ok(narwhal_store::open_writer_with_token(url, token, &crate::settings::store()?)?)
}

/// Where compressed NARs wait before they go up: inside a directory cache (hidden names, which
/// listings skip), so storing one is a link rather than a copy; the system's temporary directory
/// for other caches.
fn temp_dir_for(url: &CacheUrl) -> std::path::PathBuf {
    match &url.location {
        narwhal_store::Location::File(dir) if std::fs::create_dir_all(dir).is_ok() => dir.clone(),
        _ => std::env::temp_dir(),
    }
}

/// The one-line summary of a push or an import on stderr, and with `json` its JSON on stdout.
fn report(summary: &narwhal_push::PushSummary, url: &CacheUrl, started: Instant, json: bool) -> anyhow::Result<()> {
    if json {
        crate::output::print_json(&serde_json::json!({
            "version": 1,
            "cache": url.to_string(),
            "paths": summary.paths,
            "uploaded": summary.uploaded,
            "already_there": summary.already_there,
            "nar_bytes": summary.nar_bytes,
            "file_bytes": summary.file_bytes,
            "seconds": started.elapsed().as_secs_f64(),
        }))?;
    }
    let _ = writeln!(
        std::io::stderr().lock(),
        "{}: {} uploaded, {} already in {url}; {} NAR, {} compressed, in {:.1} s",
        count(summary.paths, "path"),
        summary.uploaded,
        summary.already_there,
        human(summary.nar_bytes),
        human(summary.file_bytes),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `narwhal export`: to standard output, or to an `s3://` object.
pub fn export(paths: &[String], output: Option<&str>) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    if let Some(object) = output {
        return Ok(narwhal_buildpack::steps::export_to_s3(
            paths,
            object,
            &crate::settings::store()?,
            &crate::settings::http()?,
        )?);
    }
    if std::io::stdout().is_terminal() {
        bail!("the export is binary; redirect it: narwhal export PATH… > closure.export");
    }
    let local = LocalStore::open_default()?;
    let roots = parse_paths(&local, paths)?;
    let closure = local.closure(&roots)?;
    let mut out = stdout();
    narwhal_push::export(&local, &closure, &mut out)?;
    out.flush()?;
    Ok(())
}

pub fn import(file: &std::path::Path, dest: &DestArgs, json: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let (url, keys, compression) = destination(dest)?;
    let writer = open_dest(&url, dest)?;
    let mut input: Box<dyn std::io::Read> = match file.to_str().filter(|f| f.starts_with("s3://")) {
        Some(object) => {
            let (bucket, key) = super::s3_object(object, &[])?;
            Box::new(std::io::BufReader::with_capacity(256 * 1024, bucket.open(&key)?))
        }
        None => Box::new(super::open_input(file)?),
    };
    let progress = PushProgress::new(false);
    let opts = PushOptions {
        compression,
        level: dest.level,
        keys,
        jobs: 1,
        temp_dir: temp_dir_for(&url),
        reporter: &progress,
        gc_wait: crate::settings::gc_wait()?,
    };
    let summary = narwhal_push::import(&mut input, &StoreDir::default(), writer.as_ref(), &opts);
    progress.finish();
    let summary = summary.with_context(|| format!("cannot import {}", file.display()))?;
    report(&summary, &url, started, json)
}

pub fn missing(paths: &[String], cache: &str, json: bool) -> anyhow::Result<()> {
    let local = LocalStore::open_default()?;
    let roots = parse_paths(&local, paths)?;
    let closure = local.closure(&roots)?;
    let url = CacheUrl::parse(cache)?;
    super::check_cache_dir(&url)?;
    let cache = narwhal_store::open_cache(&url, &crate::settings::http()?, &crate::settings::store()?)?;
    let absent = narwhal_push::missing(&closure, cache.as_ref(), 16)?;
    if json {
        let missing: Vec<String> = absent.iter().map(|p| local.store_dir().display(p).to_string()).collect();
        return Ok(crate::output::print_json(&serde_json::json!({
            "version": 1,
            "cache": url.to_string(),
            "closure": closure.len(),
            "missing": missing,
        }))?);
    }
    let mut out = stdout();
    for p in absent {
        writeln!(out, "{}", local.store_dir().display(&p))?;
    }
    out.flush()?;
    Ok(())
}

pub fn pin(
    name: &str,
    store_path: &str,
    to: &str,
    token_file: Option<&std::path::Path>,
    rev: Option<&str>,
    keep: Option<usize>,
) -> anyhow::Result<()> {
    let url = CacheUrl::parse(to)?;
    if keep.is_some() && matches!(url.location, narwhal_store::Location::Http(_)) {
        bail!("--keep needs to list the pins, which an HTTP cache cannot do; prune them where the cache's files are (file:// or s3://)");
    }
    let dest = open_writer_with_token_file(&url, token_file)?;
    let store_dir = StoreDir::default();
    let path = super::store_path_arg(&store_dir, store_path)?;
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let pin = Pin { name: name.to_owned(), store_dir, path, revision: rev.map(str::to_owned), created };
    pin::write(dest.as_ref(), &pin)?;
    if let Some(keep) = keep {
        pin::keep_newest(dest.as_ref(), &pin.store_dir, name, keep)?;
    }
    Ok(())
}

pub fn pins(from: &str, name: Option<&str>, json: bool) -> anyhow::Result<()> {
    let url = CacheUrl::parse(from)?;
    // Listing reads: a directory is neither created nor locked.
    let cache: Box<dyn narwhal_store::CacheWriter> = match &url.location {
        narwhal_store::Location::File(dir) => {
            Box::new(narwhal_store::file::FileCache::new(dir.clone(), url.to_string()))
        }
        _ => narwhal_store::open_writer(&url, &crate::settings::store()?)?,
    };
    let pins = pin::list(cache.as_ref(), &StoreDir::default(), name)?;
    if json {
        let pins: Vec<serde_json::Value> = pins
            .iter()
            .map(|(_, p)| {
                serde_json::json!({
                    "name": p.name,
                    "revision": p.revision,
                    "path": p.store_dir.display(&p.path).to_string(),
                    "created": p.created,
                })
            })
            .collect();
        return Ok(crate::output::print_json(
            &serde_json::json!({ "version": 1, "cache": url.to_string(), "pins": pins }),
        )?);
    }
    let mut out = stdout();
    for (key, p) in pins {
        writeln!(
            out,
            "{}\t{}\t{}\t{}",
            key.trim_start_matches(pin::PREFIX),
            p.revision.as_deref().unwrap_or("-"),
            p.store_dir.display(&p.path),
            p.created
        )?;
    }
    out.flush()?;
    Ok(())
}
