//! What can stop a garbage collection or a verification.

use std::io;
use std::path::PathBuf;

use narwhal_store::pin::PinsError;
use narwhal_store::StoreError;
use thiserror::Error;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pins(#[from] PinsError),
    #[error("the nix-cache-info of {cache}")]
    CacheInfo {
        cache: String,
        #[source]
        source: narwhal_formats::cache_info::Error,
    },
    /// Another GC holds the cache's lease.
    #[error("another garbage collection holds {cache}: {owner}, until {until}")]
    Leased { cache: String, owner: String, until: String },
    /// The lease was taken over while this GC ran (it had expired).
    #[error("the garbage-collection lease of {cache} was taken over by {owner}")]
    LeaseLost { cache: String, owner: String },
    /// `--phase 2` with no window published.
    #[error("{cache} has no garbage collection waiting for its phase 2")]
    NoWindow { cache: String },
    #[error("the GC index {path}")]
    Index {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{given} is not a store path or hash part of {store_dir}")]
    Root { given: String, store_dir: String },
    /// A temporary file for a repair.
    #[error("the temporary file {path}")]
    Temp {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Self::Store(e) => e.hint(),
            Self::Pins(e) => e.hint(),
            Self::Leased { .. } => Some(
                "wait for it to finish; a lease whose holder died expires (or is taken over at once on the same machine)",
            ),
            Self::LeaseLost { .. } => Some("run the GC again; give it a longer --lease if phases take longer than that"),
            Self::NoWindow { .. } => Some("run `narwhal gc --phase 1` first, then --phase 2 once the grace period has passed"),
            Self::Index { .. } => Some("the index only saves requests: remove it, or give another --index-dir"),
            Self::Root { .. } => Some("give roots as /nix/store/<hash>-<name> or the 32-character hash part"),
            Self::CacheInfo { .. } | Self::Temp { .. } => None,
        }
    }
}
