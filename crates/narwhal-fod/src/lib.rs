//! Fixed-output dependency capture, without the break-the-hash loop.
//!
//! A Nix package of a Gradle or Maven application needs its build tool's dependencies in a
//! fixed-output derivation (FOD): a build with network fills a cache once, the cache is laid out
//! as an offline repository, and the FOD declares that tree's recursive NAR hash. This crate makes
//! the tree deterministic and keeps the offline build on it; the binary hashes the tree with
//! `narwhal_formats::nar` (byte-identical to `nix hash path`), so the hash is known before Nix
//! ever builds the FOD.
//!
//! | step | item |
//! |---|---|
//! | Gradle's `modules-2` cache as a Maven repository | [`gradle::layout`] |
//! | Maven's `~/.m2/repository` without its records of the capture | [`maven::layout`] |
//! | an init script pinning every repository of a Gradle build to the captured one | [`GRADLE_INIT_SCRIPT`] |
//! | what would make the FOD fail or drift | [`check::check`] -> [`check::Finding`]s |
//! | the attributes to paste into the FOD | [`fixed_output_attributes`] |
//!
//! OUT is always created whole: written under a temporary name beside it
//! (`narwhal_formats::temp`) and renamed into place, so a failure leaves nothing under OUT.
//! Every file is checked against the SHA-1 its cache recorded. A pure library: no printing, no
//! network.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod check;
mod error;
pub mod gradle;
mod layout;
pub mod maven;
pub mod metadata;

pub use error::Error;
pub use layout::Summary;

use narwhal_formats::hash::Hash;

/// The environment variable the init script reads the captured repository's location from, at
/// build time: when capturing, the FOD's store path is not known yet, and a fixed-output
/// derivation's inputs may not name it either.
pub const REPO_ENV: &str = "NARWHAL_FOD_REPO";

/// A Gradle init script (`gradle --offline --init-script FILE`) that makes the repository in
/// `$NARWHAL_FOD_REPO` the only one of every project, every buildscript, the settings' buildscript
/// and plugin management; repositories the build adds later (a `repositories {}` block in a
/// build script runs after init scripts) are removed as they are added. It stops the build with a
/// message naming the variable when it is unset or names no directory. Works with Gradle 4.4 on.
pub const GRADLE_INIT_SCRIPT: &str = include_str!("narwhal-fod.gradle");

/// The attributes of a fixed-output derivation whose `$out` has the NAR hash `hash`.
pub fn fixed_output_attributes(hash: &Hash) -> String {
    format!(
        "outputHashAlgo = \"{}\";\noutputHashMode = \"recursive\";\noutputHash = \"{}\";\n",
        hash.algorithm().name(),
        hash.to_sri()
    )
}
