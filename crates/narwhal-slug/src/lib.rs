//! Trimming a slug's Nix store and judging the result.
//!
//! A slug holds a closure's store paths under `<slug>/store/<hash>-<name>`,
//! with `/nix/store` already rewritten to `/app/store`, so that with the slug
//! mounted at `/app` those paths resolve. This crate works on that tree:
//!
//! | step | item |
//! |---|---|
//! | read the user's `.slugexclude` | [`filter::Rules::parse`] (rsync include/exclude rules) |
//! | drop what it excludes | [`prune()`] -> [`PruneReport`] |
//! | find what no longer resolves | [`check()`] -> [`Problem`]s (warnings) |
//! | see what is big | [`size_report`] -> [`SizeReport`], [`HEROKU_SLUG_LIMIT`] |
//!
//! A Cloud Native Buildpack keeps the store paths beside the app's files instead
//! (`/workspace/<hash>-<name>`): the `*_layout` functions take a [`Layout`].
//!
//! [`elf`] is the small ELF reader [`check()`] uses.
//!
//! A pure library: no printing, no network, no global state. It touches only
//! the directories it is given, never follows a symlink when walking or
//! removing, and bounds its recursion ([`MAX_DEPTH`]) and every read.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod check;
pub mod elf;
pub mod filter;
pub mod layout;
pub mod prune;
pub mod size;
mod tree;

pub use check::{check, check_layout, Problem, ProblemKind};
pub use filter::Rules;
pub use layout::{is_store_path_name, Layout};
pub use narwhal_formats::tree::WalkError;
pub use prune::{prune, prune_layout, PruneReport};
pub use size::{size_report, size_report_layout, SizeReport, HEROKU_SLUG_LIMIT};
pub use tree::MAX_DEPTH;
