//! A cache over HTTP(S): rustls, keep-alive connection reuse, retries with
//! exponential backoff on timeouts, connection errors, 5xx and 429; 4xx
//! other than 404 are errors at once.

use std::io::Read;
use std::time::Duration;

use crate::error::{StoreError, StoreErrorKind};
use crate::retry::Retry;
use crate::{check_key, BinaryCache};

/// Told before each retry of a request: the next attempt's number, the attempts in all, what
/// failed, and the delay until the next try (the caller prints it; this crate never does).
pub type RetryNotice = std::sync::Arc<dyn Fn(u32, u32, &StoreError, Duration) + Send + Sync>;

/// How the HTTP client behaves.
#[derive(Clone)]
pub struct HttpOptions {
    /// Attempts per request, the first included.
    pub attempts: u32,
    /// Delay before the first retry; doubles each time.
    pub initial_backoff: Duration,
    /// Timeout for connecting, for the response's headers, and for each read of a body: a transfer
    /// that makes no progress for this long fails (and is retried), however long it has run.
    pub timeout: Duration,
    /// Told before each retry.
    pub on_retry: Option<RetryNotice>,
}

/// A stalled transfer fails after this long without a byte.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for HttpOptions {
    fn default() -> Self {
        Self { attempts: 5, initial_backoff: Duration::from_millis(250), timeout: DEFAULT_TIMEOUT, on_retry: None }
    }
}

impl std::fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpOptions")
            .field("attempts", &self.attempts)
            .field("initial_backoff", &self.initial_backoff)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

pub struct HttpCache {
    pub(crate) base: String,
    pub(crate) client: reqwest::blocking::Client,
    pub(crate) options: HttpOptions,
    /// Sent with every request (see [`crate::http_writer`]).
    pub(crate) auth: crate::http_writer::HttpAuth,
}

impl HttpCache {
    pub fn new(base: &str, options: &HttpOptions) -> Result<Self, StoreError> {
        let client = reqwest::blocking::Client::builder()
            .user_agent(concat!("narwhal/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(options.timeout)
            .timeout(options.timeout)
            .pool_max_idle_per_host(32)
            .build()
            .map_err(|e| StoreError::new(base, StoreErrorKind::Transport { attempts: 0, source: Box::new(e) }))?;
        Ok(Self { base: base.to_owned(), client, options: options.clone(), auth: crate::http_writer::HttpAuth::None })
    }

    /// The same cache, with `auth` on every request.
    #[must_use]
    pub fn with_auth(mut self, auth: crate::http_writer::HttpAuth) -> Self {
        self.auth = auth;
        self
    }

    /// A request for `url` with this cache's credentials.
    pub(crate) fn request(&self, method: reqwest::Method, url: &str) -> reqwest::blocking::RequestBuilder {
        self.auth.apply(self.client.request(method, url))
    }

    /// A 401 names the credentials sent, so the message says what to fix.
    fn unauthorized(&self, e: StoreError) -> StoreError {
        match e.kind {
            StoreErrorKind::Status { status: 401, .. } => {
                StoreError::new(e.url, StoreErrorKind::Unauthorized { sent: self.auth.describe() })
            }
            _ => e,
        }
    }

    pub(crate) fn url_of(&self, key: &str) -> Result<String, StoreError> {
        let url = format!("{}/{key}", self.base);
        check_key(key).map_err(|_| StoreError::new(&url, StoreErrorKind::InvalidKey))?;
        Ok(url)
    }
}

impl HttpOptions {
    /// Runs `attempt` (given its number, from 1) through [`Retry`], retrying transient errors
    /// ([`StoreError::is_transient`]).
    pub fn retry<T>(&self, attempt: impl FnMut(u32) -> Result<T, StoreError>) -> Result<T, StoreError> {
        Retry { attempts: self.attempts, initial_backoff: self.initial_backoff }.run(
            StoreError::is_transient,
            |next, e, delay| {
                if let Some(notice) = &self.on_retry {
                    notice(next, self.attempts, e, delay);
                }
            },
            attempt,
        )
    }
}

/// One GET of `url`: the response on success, `None` on 404 and 410, an error
/// (transient or not, see [`StoreError::is_transient`]) otherwise.
pub(crate) fn get_once(
    client: &reqwest::blocking::Client,
    url: &str,
    accept: Option<&str>,
    attempt: u32,
) -> Result<Option<reqwest::blocking::Response>, StoreError> {
    let mut request = client.get(url);
    if let Some(a) = accept {
        request = request.header("Accept", a);
    }
    send_get(request, url, attempt)
}

/// Sends a GET (or HEAD): as [`get_once`].
pub(crate) fn send_get(
    request: reqwest::blocking::RequestBuilder,
    url: &str,
    attempt: u32,
) -> Result<Option<reqwest::blocking::Response>, StoreError> {
    match request.send() {
        Ok(resp) if resp.status().is_success() => Ok(Some(resp)),
        Ok(resp) if resp.status().as_u16() == 404 || resp.status().as_u16() == 410 => Ok(None),
        Ok(resp) => {
            Err(StoreError::new(url, StoreErrorKind::Status { status: resp.status().as_u16(), attempts: attempt }))
        }
        Err(e) => Err(StoreError::new(url, StoreErrorKind::Transport { attempts: attempt, source: Box::new(e) })),
    }
}

/// The whole body of a response, a failure to read it being a transport error.
pub(crate) fn body(resp: reqwest::blocking::Response, url: &str, attempt: u32) -> Result<Vec<u8>, StoreError> {
    resp.bytes()
        .map(|b| b.to_vec())
        .map_err(|e| StoreError::new(url, StoreErrorKind::Transport { attempts: attempt, source: Box::new(e) }))
}

impl BinaryCache for HttpCache {
    fn url(&self) -> &str {
        &self.base
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let url = self.url_of(key)?;
        // Sending and reading the body are retried together.
        self.options
            .retry(|attempt| match send_get(self.request(reqwest::Method::GET, &url), &url, attempt)? {
                Some(resp) => body(resp, &url, attempt).map(Some),
                None => Ok(None),
            })
            .map_err(|e| self.unauthorized(e))
    }

    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>, StoreError> {
        let url = self.url_of(key)?;
        match self
            .options
            .retry(|attempt| send_get(self.request(reqwest::Method::GET, &url), &url, attempt))
            .map_err(|e| self.unauthorized(e))?
        {
            Some(resp) => Ok(Box::new(resp)),
            None => Err(StoreError::new(url, StoreErrorKind::NotFound)),
        }
    }
}
