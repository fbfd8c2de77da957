//! What went wrong talking to a cache, and whether trying again can help.

use std::io;

use thiserror::Error;

#[derive(Debug, Error)]
#[error("{url}")]
pub struct StoreError {
    /// The object's full URL (cache URL and key).
    pub url: String,
    #[source]
    pub kind: StoreErrorKind,
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreErrorKind {
    #[error("not found")]
    NotFound,
    #[error("HTTP {status}{}", if *.attempts > 1 { format!(" (after {} attempts)", .attempts) } else { String::new() })]
    Status { status: u16, attempts: u32 },
    #[error("cannot reach the server{}", if *.attempts > 1 { format!(" (after {} attempts)", .attempts) } else { String::new() })]
    Transport {
        attempts: u32,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "the key leaves the cache (absolute, '..', or a full URL); the narinfo or pin that named it is not trustworthy"
    )]
    InvalidKey,
    /// A 401 or 403 on a request that needs credentials; `sent` says which (never the secret).
    #[error("HTTP {status}: the server refused the request (sent {sent})")]
    Refused { status: u16, sent: String },
    /// A 401 on a read: the cache is private; `sent` says which credentials went (never the secret).
    #[error("HTTP 401: the cache wants credentials (sent {sent})")]
    Unauthorized { sent: String },
    /// A 4xx answer to a write, with the reason the server gave (its body's first line).
    #[error("HTTP {status}: {reason}")]
    Rejected { status: u16, reason: String },
    /// The backend cannot do this at all.
    #[error("{0}")]
    Unsupported(&'static str),
    #[error("invalid cache URL: {0}")]
    InvalidUrl(String),
    /// The bucket a `s3://` URL names is not on the server.
    #[error("bucket '{bucket}' does not exist on {server}")]
    NoSuchBucket { bucket: String, server: String },
    /// The server wants requests signed for another region.
    #[error("{server} expects another region than '{region}'")]
    WrongRegion { server: String, region: String },
    /// The AWS credentials configured are incomplete or name a profile that has none.
    #[error("{0}")]
    Credentials(String),
    /// A push token that cannot go into an `Authorization` header.
    #[error("the push token from {from} is empty or has spaces or control characters")]
    BadToken { from: String },
    /// The answer to a Hydra job URL is not a finished, successful build with outputs.
    #[error("{0}")]
    Hydra(HydraProblem),
    /// A garbage collection's state object (`gc/pending.json`, `gc/lease.json`) does not parse.
    #[error("unreadable garbage-collection state: {0}")]
    BadGcState(String),
    #[error(transparent)]
    Io(io::Error),
    #[error(transparent)]
    Lock(crate::lock::LockError),
}

/// What is wrong with the latest build a Hydra job URL answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HydraProblem {
    /// The answer does not parse as a Hydra build.
    NotABuild(String),
    /// The build has not finished or failed.
    Failed,
    /// The build lists no outputs.
    NoOutputs,
}

impl std::fmt::Display for HydraProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotABuild(why) => write!(f, "the answer is not a Hydra build: {why}"),
            Self::Failed => f.write_str("the latest build of this job did not succeed"),
            Self::NoOutputs => f.write_str("the build lists no outputs"),
        }
    }
}

impl StoreError {
    pub fn new(url: impl Into<String>, kind: StoreErrorKind) -> Self {
        Self { url: url.into(), kind }
    }

    /// Whether a later attempt may succeed (timeouts, resets, 5xx, 429).
    pub fn is_transient(&self) -> bool {
        match &self.kind {
            StoreErrorKind::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            // A request that could not even be built (an invalid URL) fails the same way every time.
            StoreErrorKind::Transport { source, .. } => {
                !source.downcast_ref::<reqwest::Error>().is_some_and(reqwest::Error::is_builder)
            }
            StoreErrorKind::Io(e) => matches!(
                e.kind(),
                io::ErrorKind::TimedOut
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::Interrupted
            ),
            _ => false,
        }
    }

    /// A hint for the user, when one is known.
    pub fn hint(&self) -> Option<&'static str> {
        match &self.kind {
            StoreErrorKind::Status { status: 401 | 403, .. } => {
                Some("the cache refused access; check the credentials or token it expects")
            }
            StoreErrorKind::Refused { .. } => Some(
                "give the cache's push token in NARWHAL_PUSH_TOKEN or --token-file, or the host's login and \
                 password in ~/.netrc ($NETRC); check what the server expects",
            ),
            StoreErrorKind::Unauthorized { .. } => Some(
                "the cache is private: put its host's login and password (for narwhal serve, a read token as the \
                 password) in a netrc file ($NETRC, ~/.netrc or /etc/nix/netrc), as for Nix's netrc-file",
            ),
            StoreErrorKind::Rejected { .. } => {
                Some("the cache refused the object for the reason given; fix what it names, then push again")
            }
            StoreErrorKind::Status { status: 413, .. } => {
                Some("the server refused the object's size; raise its limit (nginx: client_max_body_size 0)")
            }
            StoreErrorKind::Status { status: 404, .. } | StoreErrorKind::NotFound => {
                Some("the cache lacks this object; push the closure again or check the cache URL")
            }
            StoreErrorKind::Status { .. } | StoreErrorKind::Transport { .. } => {
                Some("check that the cache URL is right and the server is up; transient errors were retried")
            }
            StoreErrorKind::NoSuchBucket { .. } => {
                Some("check the bucket name and ?endpoint=, or create the bucket (aws s3 mb, garage bucket create)")
            }
            StoreErrorKind::WrongRegion { .. } => Some("set ?region=… in the cache URL (or AWS_REGION) to the bucket's region"),
            StoreErrorKind::Credentials(_) => Some(
                "set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a ?profile= that ~/.aws/credentials \
                 ($AWS_SHARED_CREDENTIALS_FILE) holds",
            ),
            StoreErrorKind::BadGcState(_) => Some(
                "a newer narwhal or another tool wrote it; use that narwhal, or delete the object once no GC runs",
            ),
            StoreErrorKind::Unsupported(_) => Some(
                "run the command against the directory or bucket itself (for narwhal serve: the directory or s3:// bucket it serves)",
            ),
            StoreErrorKind::BadToken { .. } => Some("the token file must hold the token alone on its first line"),
            StoreErrorKind::Hydra(HydraProblem::Failed) => {
                Some("fix the job's build on Hydra, or name a store path or pin instead of the job")
            }
            StoreErrorKind::Hydra(_) => Some("name the job's URL as https://HOST/job/PROJECT/JOBSET/JOB"),
            StoreErrorKind::InvalidUrl(_) => Some(
                "caches are file:///DIR, /DIR, http(s)://HOST[/PATH] or s3://BUCKET[/PREFIX], with Nix's ?key=value parameters",
            ),
            _ => None,
        }
    }
}
