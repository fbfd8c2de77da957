//! Where a closure comes from and the whole fetch of it: roots resolved,
//! closure walked with signatures checked, every path fetched (through the
//! download cache) and relocated. Shared by `narwhal fetch`, `narwhal slug`
//! and both buildpacks.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use narwhal_fetch::{FetchOptions, Reporter, Root, Substituters, Summary, WaitPolicy};
use narwhal_formats::signature::PublicKey;
use narwhal_formats::store_path::{StoreDir, StorePath};
use narwhal_relocate::Relocation;
use narwhal_store::http::HttpOptions;
use narwhal_store::{CacheUrl, Settings};

use crate::errors::Error;
use crate::log::{count, human};

/// Where to fetch from and how.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// Binary cache URLs, by priority.
    pub from: Vec<String>,
    pub no_verify: bool,
    /// A `nix-store --export` stream instead of caches: a file, `-` (stdin) or `s3://bucket/key`.
    pub from_export: Option<String>,
    /// AWS_* settings (name, value) for S3, before the process environment.
    pub s3_env: Vec<(String, String)>,
    pub trusted_public_keys: Vec<String>,
    /// The download cache: verified NARs by file hash, so a redeploy downloads only what changed.
    pub cache_dir: Option<PathBuf>,
    /// Keep only what this closure uses in the download cache.
    pub prune_cache: bool,
    /// Paths handled at once (default: one per core).
    pub jobs: Option<usize>,
    /// Seconds to wait for a pin to appear.
    pub wait: u64,
    /// What the caches take from outside their URL (netrc files, tokens, AWS variables, how long
    /// to wait for another writer of the destination or the download cache); `s3_env` goes first.
    pub store: Settings,
    /// How HTTP requests behave.
    pub http: HttpOptions,
}

impl Source {
    /// [`Self::store`] with `s3_env` over its variables.
    fn settings(&self) -> Settings {
        crate::settings::with_vars(&self.store, &self.s3_env)
    }
}

/// What a fetch produced: the roots as they are now on disk, and what it did.
pub struct Fetched {
    pub roots: Vec<StorePath>,
    pub summary: Summary,
    /// Whether it came from an export stream.
    pub from_export: bool,
    pub elapsed: Duration,
}

impl Fetched {
    /// The one summary line every front end prints.
    pub fn summary_line(&self) -> String {
        let s = &self.summary;
        if self.from_export {
            format!(
                "{} from the export: {} unpacked, {} already present; {} read, {} unpacked, in {:.1} s",
                count(s.paths, "path"),
                s.downloaded,
                s.present,
                human(s.downloaded_bytes),
                human(s.unpacked_bytes),
                self.elapsed.as_secs_f64()
            )
        } else {
            format!(
                "{}: {} downloaded, {} from the local cache, {} already present; {} read, {} unpacked, in {:.1} s",
                count(s.paths, "path"),
                s.downloaded,
                s.from_cache,
                s.present,
                human(s.downloaded_bytes),
                human(s.unpacked_bytes),
                self.elapsed.as_secs_f64()
            )
        }
    }
}

/// Paths handled at once: `jobs`, else one per core.
pub fn jobs_or_cores(jobs: Option<usize>) -> usize {
    jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, std::num::NonZero::get))
}

/// The whole fetch of `roots` into `dest`, relocated to `prefix` when given.
pub fn fetch_into(
    roots: &[String],
    source: &Source,
    dest: &Path,
    prefix: Option<&str>,
    pad: bool,
    reporter: &dyn Reporter,
) -> Result<Fetched, Error> {
    fetch_into_with(roots, source, dest, prefix, pad, reporter, &mut |_| Ok(()))
}

/// [`fetch_into`], with `prepare` called once the closure is known (signatures checked) and
/// before anything is fetched: the CNB puts what its store layer holds into `dest` then. An
/// export's closure is known only once it is read, so `prepare` is not called for one.
pub fn fetch_into_with(
    roots: &[String],
    source: &Source,
    dest: &Path,
    prefix: Option<&str>,
    pad: bool,
    reporter: &dyn Reporter,
    prepare: &mut dyn FnMut(&[narwhal_fetch::ClosurePath]) -> Result<(), Error>,
) -> Result<Fetched, Error> {
    let started = Instant::now();
    if let Some(export) = &source.from_export {
        return fetch_export_into(roots, export, source, dest, prefix, pad, reporter, started);
    }
    let trusted = trusted_keys(source.no_verify, &source.trusted_public_keys)?;
    let http = &source.http;
    let subs = substituters(&source.from, http, &source.settings())?;
    let relocation = relocation(&subs.store_dir, prefix, pad)?;
    let roots = roots.iter().map(|r| Root::parse(r, &subs.store_dir)).collect::<Result<Vec<_>, _>>()?;
    let wait = WaitPolicy { max: Duration::from_secs(source.wait), interval: Duration::from_secs(2) };
    let root_paths = narwhal_fetch::resolve_roots(&subs, &roots, wait, http, reporter)?;
    let jobs = jobs_or_cores(source.jobs);
    let closure = narwhal_fetch::walk_closure(&subs, &root_paths, trusted.as_deref(), (jobs * 4).max(8))?;
    prepare(&closure)?;
    let options = FetchOptions {
        dest: dest.to_path_buf(),
        relocation,
        cache_dir: source.cache_dir.clone(),
        jobs,
        attempts: 4,
        prune_cache: source.prune_cache,
        lock_wait: source.store.lock_wait,
        reporter,
    };
    let summary = narwhal_fetch::fetch(&subs, &closure, &options)?;
    Ok(Fetched { roots: root_paths, summary, from_export: false, elapsed: started.elapsed() })
}

/// The keys signatures must be by (`None` with `no_verify`); no key at all is an error.
pub fn trusted_keys(no_verify: bool, keys: &[String]) -> Result<Option<Vec<PublicKey>>, Error> {
    if no_verify {
        return Ok(None);
    }
    let keys = keys
        .iter()
        .filter(|k| !k.is_empty())
        .map(|k| PublicKey::parse(k).map_err(|source| Error::InvalidKey { key: k.clone(), source }))
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        return Err(Error::NoTrustedKeys);
    }
    Ok(Some(keys))
}

/// The caches `from` names, opened, by priority, with `settings`' credentials.
pub fn substituters(from: &[String], http: &HttpOptions, settings: &Settings) -> Result<Substituters, Error> {
    let urls = from.iter().filter(|u| !u.is_empty()).map(|u| CacheUrl::parse(u)).collect::<Result<Vec<_>, _>>()?;
    if urls.is_empty() {
        return Err(Error::NoSubstituters);
    }
    Ok(Substituters::open(&urls, http, settings)?)
}

/// [`fetch_into`] from a `nix-store --export` stream.
#[allow(clippy::too_many_arguments)]
fn fetch_export_into(
    roots: &[String],
    export: &str,
    source: &Source,
    dest: &Path,
    prefix: Option<&str>,
    pad: bool,
    reporter: &dyn Reporter,
    started: Instant,
) -> Result<Fetched, Error> {
    if !source.no_verify {
        return Err(Error::UnsignedExport { export: export.to_owned() });
    }
    let store_dir = StoreDir::default();
    let roots = roots
        .iter()
        .map(|r| store_dir.parse_path(r).map_err(|source| Error::ExportRoot { root: r.clone(), source }))
        .collect::<Result<Vec<_>, _>>()?;
    let relocation = relocation(&store_dir, prefix, pad)?;
    let (mut input, len) = open_export(export, &source.settings(), &source.http)?;
    let options = FetchOptions {
        dest: dest.to_path_buf(),
        relocation,
        cache_dir: None,
        jobs: jobs_or_cores(source.jobs),
        attempts: 1,
        prune_cache: false,
        lock_wait: source.store.lock_wait,
        reporter,
    };
    let fetched = narwhal_fetch::fetch_export(&mut *input, export, len, &store_dir, &roots, &options)?;
    Ok(Fetched { roots: fetched.roots, summary: fetched.summary, from_export: true, elapsed: started.elapsed() })
}

/// `store_dir` -> `prefix` (padded with '/' when `pad`), or the identity without a prefix.
fn relocation(store_dir: &StoreDir, prefix: Option<&str>, pad: bool) -> Result<Relocation, Error> {
    Ok(match prefix {
        Some(p) => Relocation::new(store_dir.as_str(), p, pad)?,
        None => Relocation::new(store_dir.as_str(), store_dir.as_str(), false)?,
    })
}

/// The export stream and its length when known.
fn open_export(
    export: &str,
    settings: &Settings,
    http: &HttpOptions,
) -> Result<(Box<dyn Read + Send>, Option<u64>), Error> {
    if export.starts_with("s3://") {
        let (bucket, key) = s3_object(export, settings, http)?;
        return match bucket.open(&key) {
            Ok(body) => Ok((body, None)),
            Err(e) if matches!(e.kind, narwhal_store::StoreErrorKind::NotFound) => {
                Err(Error::NoExport { export: export.to_owned() })
            }
            Err(source) => Err(Error::ReadExport { export: export.to_owned(), source }),
        };
    }
    if export == "-" {
        return Ok((Box::new(std::io::stdin()), None));
    }
    let file = std::fs::File::open(export).map_err(|source| Error::OpenExport { export: export.to_owned(), source })?;
    let len = file.metadata().ok().map(|m| m.len());
    Ok((Box::new(file), len))
}

/// `s3://bucket/dir/name?params` as the bucket (the cache `s3://bucket/dir?params`) and the
/// key `name`, with the AWS_* variables of `settings`.
pub fn s3_object(
    s: &str,
    settings: &Settings,
    http: &HttpOptions,
) -> Result<(Box<dyn narwhal_store::CacheWriter>, String), Error> {
    use narwhal_store::Location;
    let url = CacheUrl::parse(s)?;
    let Location::S3 { bucket, prefix } = &url.location else {
        return Err(Error::NotS3 { url: s.to_owned() });
    };
    let (dir, name) = prefix.rsplit_once('/').unwrap_or(("", prefix.as_str()));
    if name.is_empty() {
        return Err(Error::BucketNotObject { url: s.to_owned(), bucket: bucket.clone() });
    }
    let location = Location::S3 { bucket: bucket.clone(), prefix: dir.to_owned() };
    let dir_url = CacheUrl { location, params: url.params.clone() };
    let bucket = narwhal_store::s3::S3Cache::from_url(&dir_url, http, settings)?;
    Ok((Box::new(bucket), name.to_owned()))
}
