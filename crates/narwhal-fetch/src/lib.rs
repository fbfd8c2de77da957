//! Realising closures from binary caches, without Nix.
//!
//! [`Substituters`] opens caches in priority order. [`resolve_roots`] turns
//! store paths, pins and Hydra job URLs into store paths. [`walk_closure`]
//! reads narinfos in parallel and checks their signatures. [`fetch`] streams
//! each NAR through decompression, FileHash / NarHash / NarSize checks and a
//! relocating unpack into the destination, in parallel across paths, with a
//! download cache and a manifest; a path appears under its final name only
//! after every check passed. [`fetch_export`] does the same from a
//! `nix-store --export` stream.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod closure;
mod error;
mod export;
mod fetch;
mod manifest;
mod report;
mod roots;
mod substituters;
pub mod verify;

pub use closure::{walk_closure, ClosurePath};
pub use error::{Error, Failure, Why};
pub use export::{check_closure as check_export_closure, fetch_export, ExportFetched};
pub use fetch::{fetch, FetchOptions, Summary};
pub use manifest::{Manifest, ManifestEntry, MANIFEST_PATH};
pub use report::{Quiet, Reporter, Source};
pub use roots::{resolve_roots, Root, WaitPolicy};
pub use substituters::{Substituter, Substituters};
