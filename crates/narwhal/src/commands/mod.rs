//! One module per command; each turns parsed arguments into library calls.

mod fetch;
mod hash;
mod image;
mod key;
mod nar;
mod narinfo;
mod push;
mod serve;
mod slug;

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use anyhow::Context as _;

use crate::cli::{BuildpackCommand, Cli, Command};

pub use fetch::human;
pub use push::export_with_env;
pub use slug::run as slug_run;

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Nar(cmd) => nar::run(cmd),
        Command::Hash(cmd) => hash::run(cmd),
        Command::Key(cmd) => key::run(cmd),
        Command::Narinfo(cmd) => narinfo::run(cmd),
        Command::Fetch(args) => fetch::run(&args),
        Command::Slug(args) => slug::run(&args).map(|_| ()),
        Command::Push(args) => push::run(&args),
        Command::Missing { paths, cache, json } => push::missing(&paths, &cache, json),
        Command::Pin { name, store_path, to, token_file, rev, keep } => {
            push::pin(&name, &store_path, &to, token_file.as_deref(), rev.as_deref(), keep)
        }
        Command::Pins { from, name, json } => push::pins(&from, name.as_deref(), json),
        Command::Size { dir, json } => slug::size(&dir, json),
        Command::Export { paths, output } => push::export(&paths, output.as_deref()),
        Command::Import { file, dest, json } => push::import(&file, &dest, json),
        Command::Serve(args) => serve::run(args),
        Command::Image(args) => image::run(&args),
        Command::Completions { shell } => {
            let mut out = crate::output::stdout();
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "narwhal", &mut out);
            Ok(std::io::Write::flush(&mut out)?)
        }
        Command::Man => {
            let mut out = crate::output::stdout();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut out)?;
            Ok(std::io::Write::flush(&mut out)?)
        }
        Command::Buildpack(BuildpackCommand::Detect { build_dir }) => {
            if crate::buildpack::heroku::detect(&build_dir) {
                println_data("narwhal")
            } else {
                anyhow::bail!("no narwhal.toml or default.nix in {}", build_dir.display())
            }
        }
        Command::Buildpack(BuildpackCommand::Compile { build_dir, cache_dir, env_dir }) => {
            crate::buildpack::heroku::compile(&build_dir, &cache_dir, &env_dir)
        }
        Command::Buildpack(BuildpackCommand::Release { build_dir }) => crate::buildpack::heroku::release(&build_dir),
    }
}

/// Opens a file for reading, or standard input for `-`.
pub fn open_input(path: &Path) -> anyhow::Result<BufReader<Box<dyn Read>>> {
    let inner: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(path).with_context(|| format!("cannot open {}", path.display()))?)
    };
    Ok(BufReader::with_capacity(256 * 1024, inner))
}

/// Paths handled at once: `--jobs`, else one per core.
pub fn jobs_or_cores(jobs: Option<usize>) -> usize {
    jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, std::num::NonZero::get))
}

/// Refuses a file to write whose directory does not exist, naming the file (not whatever failed first).
pub fn check_parent(file: &Path) -> anyhow::Result<()> {
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        anyhow::bail!(
            "cannot write {}: its directory {} does not exist; create it first",
            file.display(),
            dir.display()
        );
    }
    Ok(())
}

/// How long a writer waits for another one holding its destination or cache:
/// `NARWHAL_LOCK_WAIT` seconds, else ten minutes.
pub fn lock_wait() -> anyhow::Result<std::time::Duration> {
    Ok(crate::settings::store()?.lock_wait)
}

/// `s3://bucket/dir/name?params` as the bucket (the cache `s3://bucket/dir?params`) and the
/// key `name`. AWS_* settings come from `env` (name, value) before the process environment.
pub fn s3_object(s: &str, env: &[(String, String)]) -> anyhow::Result<(Box<dyn narwhal_store::CacheWriter>, String)> {
    use narwhal_store::{CacheUrl, Location};
    let url = CacheUrl::parse(s)?;
    let Location::S3 { bucket, prefix } = &url.location else {
        anyhow::bail!("{s} is not an S3 object URL: write s3://bucket/key");
    };
    let (dir, name) = prefix.rsplit_once('/').unwrap_or(("", prefix.as_str()));
    if name.is_empty() {
        anyhow::bail!(
            "{s} names a bucket, not an object: add the object's key, as in s3://{bucket}/closures/app.export"
        );
    }
    let location = Location::S3 { bucket: bucket.clone(), prefix: dir.to_owned() };
    let dir_url = CacheUrl { location, params: url.params.clone() };
    let settings = crate::settings::store()?;
    let config = narwhal_store::s3::S3Config::from_url_and_env(&dir_url, |name| {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).or_else(|| settings.var(name))
    })?;
    let bucket = narwhal_store::s3::S3Cache::new(config, &narwhal_store::http::HttpOptions::default())?;
    Ok((Box::new(bucket), name.to_owned()))
}

/// A store path as given on the command line: the path itself (with or without a path inside it),
/// or a symlink to one, such as `./result`, as Nix accepts (a chain of links is followed).
pub fn store_path_arg(
    store_dir: &narwhal_formats::store_path::StoreDir,
    arg: &str,
) -> anyhow::Result<narwhal_formats::store_path::StorePath> {
    let mut current = std::path::PathBuf::from(arg);
    // As the kernel's limit on links followed in one lookup.
    for _ in 0..40 {
        let text = current.to_string_lossy().into_owned();
        if let Ok((path, _)) = store_dir.split_path(text.trim_end_matches('/')) {
            return Ok(path);
        }
        let Ok(target) = std::fs::read_link(&current) else {
            let why = store_dir.split_path(text.trim_end_matches('/')).err().map(|e| e.to_string()).unwrap_or_default();
            if current.as_os_str() == arg {
                anyhow::bail!("{arg} is neither a store path nor a link to one: {why}");
            }
            anyhow::bail!("{arg} links to {text}, which is not a store path: {why}");
        };
        current = match current.parent() {
            Some(dir) if target.is_relative() => dir.join(target),
            _ => target,
        };
    }
    anyhow::bail!("{arg}: too many levels of symbolic links")
}

/// Refuses a `file://` cache to read from whose directory does not exist, before anything asks it
/// for a path (it would otherwise look like a cache that lacks every path).
pub fn check_cache_dir(url: &narwhal_store::CacheUrl) -> anyhow::Result<()> {
    if let narwhal_store::Location::File(dir) = &url.location {
        if !dir.is_dir() {
            anyhow::bail!("cannot read the cache {url}: no such directory {}; check the URL", dir.display());
        }
    }
    Ok(())
}

/// Refuses a destination directory that cannot be written (its nearest existing ancestor is not
/// writable), before anything is downloaded.
pub fn check_writable(dest: &Path) -> anyhow::Result<()> {
    let Some(existing) = dest.ancestors().find(|a| !a.as_os_str().is_empty() && a.exists()) else {
        return Ok(());
    };
    if existing.exists() && !existing.is_dir() {
        anyhow::bail!("cannot write into {}: {} is not a directory", dest.display(), existing.display());
    }
    if let Err(e) = rustix::fs::access(existing, rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK) {
        anyhow::bail!("cannot write into {}: {} is not writable ({e})", dest.display(), existing.display());
    }
    Ok(())
}

/// Reads a small text file (keys, narinfos) with the path in any error.
pub fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn println_data(s: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{s}")?;
    Ok(())
}
