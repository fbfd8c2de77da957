//! Why a push failed.

use std::path::PathBuf;

use narwhal_store::StoreError;
use thiserror::Error;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Local(#[from] narwhal_localstore::LocalError),
    #[error("{path} changed on disk: its NAR hash is {actual}, the Nix database says {expected} (run `nix-store --verify --check-contents`)")]
    Modified { path: String, expected: String, actual: String },
    #[error("cannot read {path} from the store")]
    Dump {
        path: String,
        #[source]
        source: narwhal_formats::nar::DumpError,
    },
    #[error("cannot compress the NAR of {path}")]
    Compress {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A garbage collection of the cache moved on while this push ran (its window closed or entered
    /// phase 2); the push starts over, so it commits nothing that names a path being deleted.
    #[error("a garbage collection of {cache} ({owner}) moved on during the push")]
    GcMoved { cache: String, owner: String },
    /// A GC's phase 2 is still deleting after the wait.
    #[error("a garbage collection of {cache} ({owner}) is still deleting after {waited} s")]
    GcBusy { cache: String, owner: String, waited: u64 },
    #[error("{var}={value:?} is not a number of seconds", var = crate::commit::GC_WAIT_VAR, value = .0)]
    BadGcWait(String),
    #[error("the source cache's narinfos")]
    Cycle(#[from] narwhal_formats::store_path::Cycle),
    #[error("cannot sign {path}")]
    Sign {
        path: String,
        #[source]
        source: narwhal_formats::signature::Error,
    },
    #[error("cannot export {path}")]
    Export {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid export stream")]
    Import(#[source] narwhal_formats::export::Error),
    #[error(
        "the export holds {path} but not its reference {missing}, and the cache lacks it too; export the whole closure"
    )]
    IncompleteExport { path: String, missing: String },
    #[error("{path} is not in {cache}")]
    NotInSource { path: String, cache: String },
    #[error("invalid narinfo {key}")]
    SourceNarInfo {
        key: String,
        #[source]
        source: narwhal_formats::narinfo::Error,
    },
    #[error("{key} describes another path than {path}")]
    SourceMismatch { key: String, path: String },
    #[error("cannot copy {path}")]
    SourceCompression {
        path: String,
        #[source]
        source: narwhal_store::compression::UnknownCompression,
    },
    #[error("cannot read the NAR of {path} from the source cache")]
    SourceRead {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the NAR of {path} in {cache} does not match its narinfo: {what} is {actual}, the narinfo says {expected}"
    )]
    SourceHash { path: String, cache: String, what: &'static str, expected: String, actual: String },
    #[error("{compression} does not take level {level}{}", levels.as_ref().map_or_else(|| ": it has no levels".to_owned(), |r| format!(": use {} to {}", r.start(), r.end())))]
    Level { compression: &'static str, level: u32, levels: Option<std::ops::RangeInclusive<u32>> },
    #[error("temporary file {path}")]
    Temp {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Error::Local(e) => e.hint(),
            Error::Store(e) => e.hint(),
            Error::GcMoved { .. } => Some("push again: the next push re-uploads what the collection deleted"),
            Error::GcBusy { .. } => {
                Some("push again once `narwhal gc` has finished (NARWHAL_GC_WAIT sets the wait, in seconds)")
            }
            Error::BadGcWait(_) => {
                Some("set NARWHAL_GC_WAIT to whole seconds (600 waits ten minutes), or unset it for an hour")
            }
            Error::NotInSource { .. } => Some("push the closure into the source cache first, or check --from"),
            Error::SourceHash { .. } | Error::SourceNarInfo { .. } | Error::SourceMismatch { .. } | Error::Cycle(_) => {
                Some("the source cache is corrupt or was tampered with; nothing of this path was committed")
            }
            _ => None,
        }
    }
}
