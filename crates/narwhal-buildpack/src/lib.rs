//! The buildpacks' logic, shared by the classic Heroku buildpack
//! (`buildpack/bin/*` → `narwhal buildpack …`) and the Cloud Native Buildpack
//! (`narwhal-cnb`), which are thin front ends over it.
//!
//! | step | item |
//! |---|---|
//! | is this a narwhal app | [`config::detect`] |
//! | narwhal.toml + config vars (+ the older buildpacks' `NIX_*`) | [`config::Config::load`] |
//! | private caches' netrc, what to deploy, build on push | [`steps`] |
//! | nix.conf and the variables caches take, from an environment | [`settings`] |
//! | fetch into the download cache and the app | [`source::fetch_into`] |
//! | result links, launch scripts, pruning, checks, sizes | [`app`] |
//! | the CNB's store, processes, slices, cache reasons | [`cnb`] |
//! | the CNB's store layer: kept, verified and linked between builds | [`store_cache`] |
//! | the classic buildpack as a whole | [`heroku::compile`], [`heroku::Slug`] |
//! | every message a user reads | [`errors`], [`log::Event`] |
//!
//! A library: it never prints. Steps report through a [`log::Log`]; the fetch's
//! progress through `narwhal_fetch::Reporter`; failures are [`errors::Error`]s
//! whose text says what happened and how to fix it.

pub mod app;
pub mod cnb;
pub mod config;
pub mod errors;
pub mod heroku;
pub mod log;
pub mod settings;
pub mod source;
pub mod steps;
pub mod store_cache;

pub use config::{detect, Config, Detected};
pub use errors::{Error, NotDetected};
pub use log::{Event, Log};
pub use source::{fetch_into, fetch_into_with, Fetched, Source};

/// Writes a file whole or not at all (the one atomic write), naming the file on failure.
pub(crate) fn write_atomic(path: &std::path::Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    narwhal_formats::temp::write_atomic(path, contents, mode, true).map_err(Error::io("write", path))
}
