//! Why a push failed.

use std::path::PathBuf;

use narwhal_store::StoreError;
use thiserror::Error;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot open the Nix database {path} read-only")]
    OpenDb {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot query the Nix database {path}")]
    Query {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{0} is not a valid path in the local Nix store")]
    NotValid(String),
    #[error("the Nix database has an invalid {what} for {path}: {value:?}")]
    Corrupt { path: String, what: &'static str, value: String },
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
            Error::OpenDb { .. } => {
                Some("is Nix installed here? narwhal reads /nix/var/nix/db/db.sqlite; pass --store-db for another")
            }
            Error::NotValid(_) => Some("build or substitute the path first (nix-build, nix copy --from)"),
            Error::Store(e) => e.hint(),
            Error::NotInSource { .. } => Some("push the closure into the source cache first, or check --from"),
            Error::SourceHash { .. } | Error::SourceNarInfo { .. } | Error::SourceMismatch { .. } => {
                Some("the source cache is corrupt or was tampered with; nothing of this path was committed")
            }
            _ => None,
        }
    }
}
