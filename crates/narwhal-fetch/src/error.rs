//! Why a fetch failed, with the culprit named.

use std::path::PathBuf;

use narwhal_formats::hash::Hash;
use narwhal_store::StoreError;
use thiserror::Error;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the caches' narinfos")]
    Cycle(#[from] narwhal_formats::store_path::Cycle),
    #[error("{path} is in none of the caches:{}", failures(.tried))]
    NotFound { path: String, tried: Vec<Failure> },
    #[error("invalid narinfo for {path} in {cache}")]
    Narinfo {
        path: String,
        cache: String,
        #[source]
        source: narwhal_formats::narinfo::Error,
    },
    #[error("invalid nix-cache-info in {cache}")]
    CacheInfo {
        cache: String,
        #[source]
        source: narwhal_formats::cache_info::Error,
    },
    #[error("the caches disagree on the store directory: {first} has {first_dir}, {second} has {second_dir}")]
    StoreDirMismatch { first: String, first_dir: String, second: String, second_dir: String },
    #[error("{what} of {path} from {cache} does not match: expected {expected}, got {actual} (the download is corrupt or was tampered with)")]
    HashMismatch { path: String, cache: String, what: &'static str, expected: String, actual: String },
    #[error("{path} from {cache}")]
    Unpack {
        path: String,
        cache: String,
        #[source]
        source: narwhal_formats::nar::UnpackError,
    },
    #[error("cannot read the NAR of {path} from {cache}")]
    Download {
        path: String,
        cache: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} already exists, is not in the manifest and is not the tree the cache's NAR gives; remove it or fetch into an empty directory")]
    Unmanaged(PathBuf),
    #[error("{0} is a system directory; fetch into a directory of its own (such as ./store)")]
    SystemDirectory(PathBuf),
    #[error("{0} is not a directory (a symlink or a file); narwhal writes its manifest there and never through a symlink: remove it")]
    NotADirectory(PathBuf),
    #[error(transparent)]
    Lock(#[from] narwhal_store::lock::LockError),
    #[error("{path} exists with a different {what}: {existing} (now {wanted}); fetch into a new directory")]
    Conflict { path: PathBuf, what: &'static str, existing: String, wanted: String },
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the manifest {path} is corrupt")]
    Manifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// `verify DIR` on a directory without `.narwhal/manifest.json` (nor `store/.narwhal/…`).
    #[error("{} holds no narwhal manifest (.narwhal/manifest.json)", .0.display())]
    NoManifest(PathBuf),
    #[error("invalid root {root:?}: {why}")]
    InvalidRoot { root: String, why: String },
    #[error("no pin {key} in any cache{}", if *.waited > 0 { format!(" after waiting {} s", .waited) } else { String::new() })]
    PinMissing { key: String, waited: u64 },
    #[error("invalid pin {key} in {cache}")]
    Pin {
        key: String,
        cache: String,
        #[source]
        source: narwhal_store::pin::Error,
    },
    #[error("unsupported compression in the narinfo of {path}")]
    Compression {
        path: String,
        #[source]
        source: narwhal_store::compression::UnknownCompression,
    },
    #[error("cannot read the export {what}")]
    Export {
        what: String,
        #[source]
        source: narwhal_formats::export::Error,
    },
    #[error("the export {what}, path {index}")]
    ExportUnpack {
        what: String,
        index: usize,
        #[source]
        source: narwhal_formats::nar::UnpackError,
    },
    #[error("the export {what} holds {path} but not {reference}, which it references (and the destination does not have it)")]
    ExportIncomplete { what: String, path: String, reference: String },
    #[error("{root} is neither in the export {what} nor in the destination")]
    NotInExport { what: String, root: String },
    #[error("the last path of the export {what}, {last}, is not its top: {user} references it")]
    LastNotTop { what: String, last: String, user: String },
    #[error("the export {what} holds no store path")]
    EmptyExport { what: String },
    #[error("NarHash of {path} is {hash:?}, but narwhal checks sha256 NAR hashes only")]
    NotSha256 { path: String, hash: Hash },
}

/// Why one cache could not provide a path.
#[derive(Debug, Clone)]
pub struct Failure {
    pub cache: String,
    pub why: Why,
}

/// What one cache's narinfo for a path lacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// The cache has no narinfo for the path.
    NotThere,
    /// Its narinfo names another store path.
    OtherPath(String),
    /// Its narinfo has no signature.
    Unsigned,
    /// Its narinfo's signatures are by these key names, none trusted and valid.
    Untrusted(Vec<String>),
}

impl Why {
    /// Whether the cache has the path but its signature did not pass.
    pub fn is_signature(&self) -> bool {
        matches!(self, Self::Unsigned | Self::Untrusted(_))
    }
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotThere => f.write_str("not there"),
            Self::OtherPath(path) => write!(f, "its narinfo describes {path}"),
            Self::Unsigned => f.write_str("no signature"),
            Self::Untrusted(names) => write!(f, "no valid signature by a trusted key (signed by {})", names.join(", ")),
        }
    }
}

fn failures(tried: &[Failure]) -> String {
    tried.iter().map(|f| format!(" {} ({})", f.cache, f.why)).collect::<Vec<_>>().join(";")
}

impl Error {
    /// A hint for the user, when one is known.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Error::Store(e) => e.hint(),
            Error::NoManifest(_) => {
                Some("give the directory narwhal fetch or slug filled (a fetch destination, a slug's app directory)")
            }
            Error::NotFound { tried, .. } if tried.iter().any(|f| f.why.is_signature()) => Some(
                "add the cache's public key with --trusted-public-key (as in nix.conf's trusted-public-keys), or sign the paths",
            ),
            Error::NotFound { .. } => Some("push the closure to the cache first (narwhal push or nix copy --to)"),
            Error::HashMismatch { .. } => Some("fetch again; if it persists the cache holds a corrupt NAR: push the path again"),
            Error::Cycle(_) => Some("a cache that holds a cycle is corrupt or hostile: remove it from --from, or push the closure again"),
            Error::ExportIncomplete { .. } | Error::EmptyExport { .. } => Some(
                "export the whole closure: narwhal export ROOT (or nix-store --export $(nix-store -qR ROOT))",
            ),
            Error::NotInExport { .. } | Error::LastNotTop { .. } => {
                Some("name a path of the export, or none to deploy its last path (the root, in nix-store -qR order)")
            }
            Error::PinMissing { .. } => Some(
                "push the closure and its pin first (narwhal pin), or raise NARWHAL_WAIT if CI is still pushing",
            ),
            _ => None,
        }
    }

    /// Whether trying the same path again may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Store(e) => e.is_transient(),
            Error::Download { source, .. } => !matches!(source.kind(), std::io::ErrorKind::InvalidData),
            Error::Unpack { source: narwhal_formats::nar::UnpackError::Nar(e), .. } => {
                matches!(e.kind, narwhal_formats::nar::ErrorKind::Truncated | narwhal_formats::nar::ErrorKind::Io(_))
            }
            _ => false,
        }
    }
}
