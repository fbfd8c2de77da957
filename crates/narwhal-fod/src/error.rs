//! Why a capture could not be laid out, each with the culprit and a hint.

use std::io;
use std::path::PathBuf;

use narwhal_formats::tree::WalkError;
use thiserror::Error;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{path} is not a Gradle user home: it has no caches/modules-2/files-2.1")]
    NotGradleHome { path: PathBuf },
    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("{path} already exists")]
    OutExists { path: PathBuf },
    #[error("{path} names no directory to create")]
    BadOut { path: PathBuf },
    #[error("{out} is inside the cache it is laid out from ({from})")]
    OutInsideSource { out: PathBuf, from: PathBuf },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} has SHA-1 {actual}, but {source_of_expected} says {expected}")]
    Checksum { path: PathBuf, expected: String, actual: String, source_of_expected: &'static str },
    #[error("{target} would hold two different files: {first} and {second}")]
    Conflict { target: PathBuf, first: PathBuf, second: PathBuf },
    #[error("{path} is not a valid {what}: {why}")]
    BadName { path: PathBuf, what: &'static str, why: &'static str },
    #[error("{path} is a {found}, where the cache holds only {expected}")]
    Unexpected { path: PathBuf, found: &'static str, expected: &'static str },
    #[error("{path}: {why}")]
    Metadata { path: PathBuf, why: String },
    #[error(transparent)]
    Walk(#[from] WalkError),
}

impl Error {
    /// What to do about it, in one sentence.
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self {
            Error::NotGradleHome { .. } => {
                "pass the GRADLE_USER_HOME the capturing build used (`gradle -g DIR`, default ~/.gradle), after a build with network filled it"
            }
            Error::NotADirectory { .. } => {
                "pass Maven's local repository (default ~/.m2/repository, or what -Dmaven.repo.local named)"
            }
            Error::OutExists { .. } => {
                "OUT is created whole: remove the old one first (rm -rf OUT) or name a new directory"
            }
            Error::BadOut { .. } => "name the directory to create, such as ./deps",
            Error::OutInsideSource { .. } => "put OUT outside the cache, such as ./deps beside the project",
            Error::Read { .. } | Error::Walk(_) => "check that the cache is readable and complete",
            Error::Write { .. } => "check free space and permissions where OUT is created",
            Error::Checksum { .. } => {
                "the cached file is corrupt or was changed after download: capture again with a fresh cache"
            }
            Error::Conflict { .. } => {
                "two repositories served different files under one name: capture again with a fresh cache and only the repositories the build needs"
            }
            Error::BadName { .. } | Error::Unexpected { .. } | Error::Metadata { .. } => {
                "this is not a cache Gradle or Maven wrote, or it was changed by hand: capture again with a fresh cache"
            }
        })
    }
}
