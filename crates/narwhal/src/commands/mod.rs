//! One module per command; each turns parsed arguments into library calls.

mod fetch;
mod fod;
mod gc;
mod hash;
mod image;
mod key;
mod nar;
mod narinfo;
mod push;
mod serve;
mod slug;
mod verify;

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use anyhow::Context as _;

use crate::cli::{Cli, Command};

pub use fetch::human;
pub use image::buildpack_image;

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
        Command::Gc(args) => gc::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Image(args) => image::run(&args),
        Command::Fod(cmd) => fod::run(cmd),
        Command::Buildpack(cmd) => crate::buildpack::run(cmd),
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
    narwhal_buildpack::source::jobs_or_cores(jobs)
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

/// `s3://bucket/dir/name?params` as the bucket and the key `name` (see the library's).
pub fn s3_object(s: &str, env: &[(String, String)]) -> anyhow::Result<(Box<dyn narwhal_store::CacheWriter>, String)> {
    Ok(narwhal_buildpack::source::s3_object(
        s,
        &narwhal_buildpack::settings::with_vars(&crate::settings::store()?, env),
        &crate::settings::http()?,
    )?)
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
