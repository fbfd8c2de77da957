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
//! [`elf`] is the small ELF reader [`check()`] uses.
//!
//! A pure library: no printing, no network, no global state. It touches only
//! the directories it is given, never follows a symlink when walking or
//! removing, and bounds its recursion ([`MAX_DEPTH`]) and every read.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod check;
pub mod elf;
pub mod filter;
pub mod prune;
pub mod size;
mod tree;

pub use check::{check, Problem, ProblemKind};
pub use filter::Rules;
pub use prune::{prune, PruneReport};
pub use size::{size_report, store_size_report, SizeReport, StorePathSize, HEROKU_SLUG_LIMIT};
pub use tree::MAX_DEPTH;
