//! `narwhal`: parse arguments, run one command, report errors once.

mod buildpack;
mod cli;
mod commands;
mod errors;
mod output;
mod progress;
mod settings;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // Started as a Cloud Native Buildpack's bin/detect or bin/build (links to this binary).
    if std::env::args_os().next().is_some_and(|a| narwhal_cnb::is_cnb(&a)) {
        narwhal_cnb::run();
        return ExitCode::SUCCESS;
    }
    errors::install_panic_hook();
    raise_open_files_limit();
    let cli = cli::Cli::parse();
    if let Err(e) = cli.check() {
        e.format(&mut <cli::Cli as clap::CommandFactory>::command()).exit();
    }
    settings::init(settings::Flags { verbose: cli.verbose, no_nix_conf: cli.no_nix_conf });
    // A panic is a bug: the hook printed its line; exit with a code of its own.
    match std::panic::catch_unwind(|| commands::run(cli)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(err)) => errors::report(&err),
        Err(_) => ExitCode::from(errors::EXIT_INTERNAL),
    }
}

/// Unpacking keeps one directory open per level (up to `nar::MAX_DEPTH`) for each path unpacked at
/// once, more than the usual soft limit of 1024 descriptors; the hard limit is the real bound.
fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}
