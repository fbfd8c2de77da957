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
        Command::Missing { paths, cache } => push::missing(&paths, &cache),
        Command::Pin { name, store_path, to, rev, keep } => push::pin(&name, &store_path, &to, rev.as_deref(), keep),
        Command::Pins { from, name } => push::pins(&from, name.as_deref()),
        Command::Export { paths, output } => push::export(&paths, output.as_deref()),
        Command::Import { file, dest } => push::import(&file, &dest),
        Command::Serve(args) => serve::run(args),
        Command::Gc(args) => gc::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Image(args) => image::run(&args),
        Command::Fod(cmd) => fod::run(cmd),
        Command::Buildpack(cmd) => crate::buildpack::run(cmd),
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

/// How long a writer waits for another one holding its destination or cache:
/// `NARWHAL_LOCK_WAIT` seconds, else ten minutes.
pub fn lock_wait() -> anyhow::Result<std::time::Duration> {
    Ok(narwhal_store::lock::wait_from_env()?)
}

/// `s3://bucket/dir/name?params` as the bucket and the key `name` (see the library's).
pub fn s3_object(s: &str, env: &[(String, String)]) -> anyhow::Result<(Box<dyn narwhal_store::CacheWriter>, String)> {
    Ok(narwhal_buildpack::source::s3_object(s, env)?)
}

/// Reads a small text file (keys, narinfos) with the path in any error.
pub fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}
