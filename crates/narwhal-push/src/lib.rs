//! Filling binary caches.
//!
//! [`LocalStore`] (from narwhal-localstore) reads the machine's Nix store without a daemon and without
//! writing: path metadata from `db.sqlite` (opened read-only), files from the
//! store directory. [`push`] copies a closure into a [`CacheWriter`]: for each
//! path the cache lacks, NAR -> NarHash (checked against the store's) ->
//! compression -> FileHash -> upload, then the narinfo, signed, and only after
//! the narinfos of all its references: a cache never shows a path whose
//! closure is incomplete.

mod commit;
mod copy;
mod error;
mod import;
mod push;

pub use commit::{parse_gc_wait, DEFAULT_GC_WAIT, GC_WAIT_VAR};
pub use copy::{closure_in_cache, push_from_cache};
pub use error::Error;
pub use import::{export, import};
pub use narwhal_localstore::{self as local, LocalStore, PathInfo, DEFAULT_DB};
pub use push::{missing, push, PushCompression, PushOptions, PushReporter, PushSummary};
