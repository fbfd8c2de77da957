//! The public API against references: the streaming writer against the
//! whole-buffer rewrite and a naive one (proptest), and the compressed-file
//! scan against files made by the real `gzip`, `xz`, `zip` and Python's
//! `zipfile`.

#![allow(clippy::unwrap_used)]

mod relocation;
mod scan;
