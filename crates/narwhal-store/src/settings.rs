//! What opening a cache takes from outside its URL, as one value: netrc files, a push token, the
//! AWS variables S3 reads, and how long a writer waits for a lock. The binary fills it from the
//! process environment and Nix's configuration; this crate never reads the environment itself.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::lock::DEFAULT_WAIT;

/// The variables [`crate::s3::S3Config::from_url`] reads (besides the URL's parameters).
pub const S3_VARS: &[&str] = &[
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "HOME",
];

#[derive(Clone)]
pub struct Settings {
    /// Netrc files for HTTP caches, in order; the first that has the host's entry gives it.
    pub netrc_files: Vec<PathBuf>,
    /// A Bearer token for writes to HTTP caches, and where it came from (for messages), used when
    /// the caller gives none.
    pub push_token: Option<(String, String)>,
    /// Values of [`S3_VARS`].
    pub vars: BTreeMap<String, String>,
    /// How long a writer waits for a directory another one holds alone.
    pub lock_wait: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self { netrc_files: Vec::new(), push_token: None, vars: BTreeMap::new(), lock_wait: DEFAULT_WAIT }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("netrc_files", &self.netrc_files)
            .field("push_token", &self.push_token.as_ref().map(|(_, from)| from))
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .field("lock_wait", &self.lock_wait)
            .finish()
    }
}

impl Settings {
    /// The value of the variable `name`, if set and not empty.
    pub fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).filter(|v| !v.is_empty()).cloned()
    }
}
