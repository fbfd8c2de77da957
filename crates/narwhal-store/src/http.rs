//! A cache over HTTP(S): rustls, keep-alive connection reuse, retries with
//! exponential backoff on timeouts, connection errors, 5xx and 429; 4xx
//! other than 404 are errors at once.

use std::io::Read;
use std::time::Duration;

use crate::error::{StoreError, StoreErrorKind};
use crate::{check_key, BinaryCache};

/// How the HTTP client behaves.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Attempts per request, the first included.
    pub attempts: u32,
    /// Delay before the first retry; doubles each time.
    pub initial_backoff: Duration,
    /// Timeout for connecting and for each read.
    pub timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self { attempts: 5, initial_backoff: Duration::from_millis(250), timeout: Duration::from_secs(30) }
    }
}

pub struct HttpCache {
    base: String,
    client: reqwest::blocking::Client,
    options: HttpOptions,
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
        Ok(Self { base: base.to_owned(), client, options: options.clone() })
    }

    /// GETs `key`, retrying transient failures. `Ok(None)` on 404.
    fn request(&self, key: &str) -> Result<Option<reqwest::blocking::Response>, StoreError> {
        check_key(key).map_err(|_| StoreError::new(format!("{}/{key}", self.base), StoreErrorKind::InvalidKey))?;
        let url = format!("{}/{key}", self.base);
        let mut delay = self.options.initial_backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let err = match self.client.get(&url).send() {
                Ok(resp) if resp.status().is_success() => return Ok(Some(resp)),
                Ok(resp) if resp.status().as_u16() == 404 || resp.status().as_u16() == 410 => return Ok(None),
                Ok(resp) => {
                    StoreError::new(&url, StoreErrorKind::Status { status: resp.status().as_u16(), attempts: attempt })
                }
                Err(e) => StoreError::new(&url, StoreErrorKind::Transport { attempts: attempt, source: Box::new(e) }),
            };
            if !err.is_transient() || attempt >= self.options.attempts {
                return Err(err);
            }
            std::thread::sleep(delay);
            delay = delay.saturating_mul(2);
        }
    }
}

impl BinaryCache for HttpCache {
    fn url(&self) -> &str {
        &self.base
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut delay = self.options.initial_backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(resp) = self.request(key)? else { return Ok(None) };
            match resp.bytes() {
                Ok(b) => return Ok(Some(b.to_vec())),
                Err(e) if attempt < self.options.attempts => {
                    let _ = e;
                    std::thread::sleep(delay);
                    delay = delay.saturating_mul(2);
                }
                Err(e) => {
                    return Err(StoreError::new(
                        format!("{}/{key}", self.base),
                        StoreErrorKind::Transport { attempts: attempt, source: Box::new(e) },
                    ))
                }
            }
        }
    }

    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>, StoreError> {
        match self.request(key)? {
            Some(resp) => Ok(Box::new(resp)),
            None => Err(StoreError::new(format!("{}/{key}", self.base), StoreErrorKind::NotFound)),
        }
    }
}
