//! The classic Heroku buildpack's front end (`buildpack/bin/*` call
//! `narwhal buildpack …`): the steps are `narwhal_buildpack`'s; this prints
//! them in Heroku's style.

use std::io::Write as _;

use anyhow::Context as _;

use narwhal_buildpack::log::{heroku_error, heroku_line};
use narwhal_buildpack::{Event, Log};

use crate::cli::BuildpackCommand;
use crate::progress::Progress;

/// Steps and details on stdout, `-----> ` / seven spaces / ` !     `, as Heroku prints them.
pub struct HerokuLog;

impl Log for HerokuLog {
    fn event(&self, event: Event) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", heroku_line(&event));
        let _ = out.flush();
    }
}

pub fn run(cmd: BuildpackCommand) -> anyhow::Result<()> {
    match cmd {
        BuildpackCommand::Detect { build_dir } => {
            match narwhal_buildpack::detect(&build_dir, &|name| std::env::var(name).ok()) {
                Ok(_) => {
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "narwhal")?;
                    Ok(())
                }
                Err(why) => Err(heroku(&anyhow::Error::new(why))),
            }
        }
        BuildpackCommand::Compile { build_dir, cache_dir, env_dir } => {
            let revision = std::env::var("SOURCE_VERSION").ok();
            let progress = Progress::new(true);
            narwhal_buildpack::heroku::compile(
                &build_dir,
                &cache_dir,
                &env_dir,
                revision.as_deref(),
                narwhal_buildpack::settings::Env { store: crate::settings::store()?, http: crate::settings::http()? },
                &progress,
                &HerokuLog,
            )
            .map_err(|e| heroku(&anyhow::Error::new(e)))
        }
        BuildpackCommand::PackageCnb { dir, image } => {
            let exe = std::env::current_exe().context("cannot find the narwhal binary to package")?;
            let version = env!("CARGO_PKG_VERSION");
            narwhal_buildpack::cnb::package(&dir, &exe, version)?;
            if let Some(to) = image {
                let digest = crate::commands::buildpack_image(&dir, version, &to)?;
                writeln!(std::io::stdout().lock(), "{digest}")?;
            }
            Ok(())
        }
        BuildpackCommand::Release { build_dir } => {
            let text = narwhal_buildpack::heroku::release(&build_dir)?;
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
            Ok(())
        }
    }
}

/// Prints `err` in Heroku's style on stderr (` !     ` lines: the cause, then the hint) and
/// returns it as already reported, keeping its exit code.
fn heroku(err: &anyhow::Error) -> anyhow::Error {
    let mut text = crate::errors::one_line(err);
    if let Some(h) = crate::errors::hint(err) {
        text.push('\n');
        text.push_str(h);
    }
    let _ = std::io::stderr().lock().write_all(heroku_error(&text).as_bytes());
    crate::errors::Reported::wrap(err)
}
