//! Moving a Nix closure to another store directory without Nix.
//!
//! A closure built for `/nix/store` runs from another directory of the same
//! length (`/app/store`) once every occurrence of the old directory in its
//! files and symlink targets is rewritten: [`Relocation`] does that to
//! buffers and, through [`RewritingWriter`], to streams. What such a rewrite
//! cannot reach, store paths inside compressed data, [`scan_compressed`]
//! finds so the caller can warn about it.
//!
//! | module | what |
//! |---|---|
//! | [`relocation`] | same-length rewriting of bytes and streams |
//! | [`scan`] | store references inside gzip, xz and zip data |
//!
//! No network, no async, no printing.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod relocation;
pub mod scan;

pub use relocation::{is_plain_dir, Error, Relocation, RewritingWriter};
pub use scan::{scan_compressed, scan_compressed_bytes, sniff, BytesScanner, Compression, Finding, ScanError};
