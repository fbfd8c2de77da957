//! A cache in an S3 bucket, in Nix's syntax: `s3://bucket[/prefix]?region=…&endpoint=…&profile=…`,
//! on AWS or any S3-compatible server (Garage, MinIO, Ceph, R2, …).
//!
//! Settings, first match wins ([`S3Config::from_url`], the variables given as values in
//! [`Settings`], never read from the process environment):
//! - region: `?region=`, `AWS_REGION`, `AWS_DEFAULT_REGION`, else `us-east-1`;
//! - server: `?endpoint=` (`http://host:port`, or a bare host with `?scheme=http|https`, default https),
//!   `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`. With a server, requests are path-style
//!   (`ENDPOINT/bucket/key`); without one they go to AWS, virtual-hosted
//!   (`https://bucket.s3.REGION.amazonaws.com`; path-style when the bucket name has a dot);
//! - credentials: `?profile=NAME` reads only that section of the shared credentials file, as Nix does;
//!   otherwise `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`), then the
//!   `AWS_PROFILE` section (else `default`) of `AWS_SHARED_CREDENTIALS_FILE` (else `~/.aws/credentials`).
//!   With none of these, requests go unsigned, which reads public buckets. Instance roles (IMDS) are
//!   not consulted.
//!
//! The client is `object_store` (async) on a two-thread tokio runtime the cache owns; every method
//! blocks the calling thread, so call them from ordinary threads, never from inside an async runtime
//! (use `spawn_blocking` there). [`BinaryCache::open`] streams the body; [`CacheWriter::put_file`]
//! uploads a large file in parts ([`part_size`]: at least 5 MiB, at most 10,000 parts, at most
//! [`PARTS_IN_FLIGHT`] at once) and aborts the multipart upload on any failure, so a key always holds
//! a whole object. Connection errors, 5xx, 429 and (for idempotent requests) timeouts are retried by
//! `object_store` with exponential backoff, as [`HttpOptions`] says; the connect timeout and the
//! timeout of each read are `HttpOptions::timeout`, and a whole transfer has no time limit.
//!
//! Errors: a missing key is `Ok(None)` / `NotFound`; a missing bucket is `NoSuchBucket`, a region the
//! server refuses `WrongRegion`, both naming the server; incomplete AWS credentials are `Credentials`.
//! object_store's own retry error, which carries the status and S3's body, cannot be named outside
//! it, so every response goes through [`Replies`], an HTTP service wrapped around object_store's
//! client: an error response becomes a typed [`S3Reply`] (status, S3's `<Code>`, the attempt it
//! was) inside object_store's error, and [`S3Cache::error`] classifies by that, never by message
//! text. 401/403 are `Status` errors (the hint says to check the credentials); a server that cannot
//! be reached is `Transport` (transient), naming the server and the innermost cause
//! (`Connection refused`).

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::future::Future;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
};
use object_store::list::{PaginatedListOptions, PaginatedListStore as _};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, BackoffConfig, ClientOptions, HeaderValue, MultipartUpload, ObjectStore as _,
    ObjectStoreExt as _, PutMode, PutMultipartOptions, PutOptions, PutPayload, RetryConfig, UpdateVersion,
};
use tokio::task::JoinSet;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::error::{StoreError, StoreErrorKind};
use crate::http::HttpOptions;
use crate::url::{CacheUrl, Location};
use crate::{check_key, BinaryCache, CacheWriter, Listed, Settings};

/// S3's smallest part (except the last one).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// S3's largest part.
pub const MAX_PART_SIZE: u64 = 5 << 30;
/// S3's most parts in one upload.
pub const MAX_PARTS: u64 = 10_000;
/// Parts uploaded at once; memory use is about this many parts.
pub const PARTS_IN_FLIGHT: usize = 4;

const DEFAULT_REGION: &str = "us-east-1";

// S3's error codes for the cases told apart here (the `<Code>` of an error response's XML body).
const NO_SUCH_BUCKET: &str = "NoSuchBucket";
const NO_SUCH_KEY: &str = "NoSuchKey";
/// The request was signed for another region than the bucket's (MinIO, Garage, Ceph answer 400).
const AUTHORIZATION_HEADER_MALFORMED: &str = "AuthorizationHeaderMalformed";
/// Longest error body read for its `<Code>` (S3's are a few hundred bytes).
const MAX_ERROR_BODY: usize = 64 << 10;

/// A key pair (and session token) for signing requests.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"…")
            .field("session_token", &self.session_token.as_ref().map(|_| "…"))
            .finish()
    }
}

/// Where a cache's bucket is and how to sign requests to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix of the cache inside the bucket, without leading or trailing `/`; empty for the root.
    pub prefix: String,
    pub region: String,
    /// Base URL of an S3-compatible server (`http://127.0.0.1:3900`), no trailing `/`; `None` is AWS.
    pub endpoint: Option<String>,
    /// `None` sends unsigned requests (public buckets).
    pub credentials: Option<Credentials>,
}

impl S3Config {
    /// The settings for `url` (an `s3://` URL) from its parameters and the variables in `settings`.
    pub fn from_url(url: &CacheUrl, settings: &Settings) -> Result<Self, StoreError> {
        Self::from_url_and_env(url, |name| settings.var(name))
    }

    /// As [`Self::from_url`], with the environment variables read through `env`.
    pub fn from_url_and_env(url: &CacheUrl, env: impl Fn(&str) -> Option<String>) -> Result<Self, StoreError> {
        let invalid = |why: String| StoreError::new(url.to_string(), StoreErrorKind::InvalidUrl(why));
        let Location::S3 { bucket, prefix } = &url.location else {
            return Err(invalid("not an s3:// URL".to_owned()));
        };
        let env = |name: &str| env(name).filter(|v| !v.is_empty());
        let param = |name: &str| url.param(name).filter(|v| !v.is_empty());

        let region = param("region")
            .map(str::to_owned)
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        let endpoint = match param("endpoint") {
            Some(e) if e.contains("://") => Some(e.to_owned()),
            Some(host) => Some(format!("{}://{host}", param("scheme").unwrap_or("https"))),
            None => env("AWS_ENDPOINT_URL_S3").or_else(|| env("AWS_ENDPOINT_URL")),
        };
        let endpoint = endpoint.map(|e| e.trim_end_matches('/').to_owned());
        if let Some(e) = &endpoint {
            let rest = e.strip_prefix("http://").or_else(|| e.strip_prefix("https://"));
            if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
                return Err(invalid(format!("the S3 endpoint {e:?} is not http://host[:port] or https://host[:port]")));
            }
        }
        let credentials = credentials(url, param("profile"), &env)?;
        Ok(Self { bucket: bucket.clone(), prefix: prefix.clone(), region, endpoint, credentials })
    }

    /// `s3://bucket[/prefix]`, for messages.
    fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    /// The server requests go to, for messages.
    fn server(&self) -> String {
        match &self.endpoint {
            Some(e) => e.clone(),
            None if self.virtual_hosted() => format!("https://{}.s3.{}.amazonaws.com", self.bucket, self.region),
            None => format!("https://s3.{}.amazonaws.com", self.region),
        }
    }

    /// AWS without an endpoint, and a bucket name that is a valid TLS host label.
    fn virtual_hosted(&self) -> bool {
        self.endpoint.is_none() && !self.bucket.contains('.')
    }
}

/// The credentials `url` asks for: see the module documentation for the order.
fn credentials(
    url: &CacheUrl,
    profile: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Credentials>, StoreError> {
    let invalid = |why: String| StoreError::new(url.to_string(), StoreErrorKind::Credentials(why));
    let file = env("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".aws/credentials")));
    let from_file = |profile: &str| -> Result<Option<Credentials>, StoreError> {
        let Some(file) = &file else { return Ok(None) };
        match std::fs::read_to_string(file) {
            Ok(text) => Ok(parse_credentials(&text, profile)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::new(
                url.to_string(),
                StoreErrorKind::Io(io::Error::new(e.kind(), format!("{}: {e}", file.display()))),
            )),
        }
    };
    let missing = |profile: &str, why: &str| {
        let file = file.as_ref().map_or_else(|| "~/.aws/credentials".to_owned(), |f| f.display().to_string());
        invalid(format!("{why} names AWS profile '{profile}', which has no key pair in {file}"))
    };

    if let Some(profile) = profile {
        return from_file(profile)?.map(Some).ok_or_else(|| missing(profile, "?profile="));
    }
    match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        (Some(access_key_id), Some(secret_access_key)) => {
            return Ok(Some(Credentials { access_key_id, secret_access_key, session_token: env("AWS_SESSION_TOKEN") }))
        }
        (Some(_), None) => return Err(invalid("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not".to_owned())),
        (None, Some(_)) => return Err(invalid("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not".to_owned())),
        (None, None) => {}
    }
    match env("AWS_PROFILE") {
        Some(profile) => from_file(&profile)?.map(Some).ok_or_else(|| missing(&profile, "AWS_PROFILE")),
        None => from_file("default"),
    }
}

/// The key pair in section `[profile]` of an AWS shared credentials file (INI), when it has one.
pub fn parse_credentials(text: &str, profile: &str) -> Option<Credentials> {
    let (mut in_section, mut id, mut secret, mut token) = (false, None, None, None);
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_section = name.trim() == profile;
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        if !in_section {
            continue;
        }
        let value = Some(value.trim().to_owned()).filter(|v| !v.is_empty());
        match key.trim().to_ascii_lowercase().as_str() {
            "aws_access_key_id" => id = value,
            "aws_secret_access_key" => secret = value,
            "aws_session_token" => token = value,
            _ => {}
        }
    }
    Some(Credentials { access_key_id: id?, secret_access_key: secret?, session_token: token })
}

/// The part size for a file of `len` bytes: whole MiB, at least [`MIN_PART_SIZE`], few enough for
/// [`MAX_PARTS`]; `None` when even [`MAX_PART_SIZE`] parts cannot hold it (about 48.8 TiB).
pub fn part_size(len: u64) -> Option<u64> {
    const MIB: u64 = 1 << 20;
    let size = len.div_ceil(MAX_PARTS).div_ceil(MIB).saturating_mul(MIB).max(MIN_PART_SIZE);
    (size <= MAX_PART_SIZE).then_some(size)
}

/// The tokio runtime behind a cache, shut down without waiting when the last user is gone.
struct Runtime {
    handle: tokio::runtime::Handle,
    owner: Option<tokio::runtime::Runtime>,
}

impl Runtime {
    fn new() -> io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("narwhal-s3")
            .enable_all()
            .build()?;
        Ok(Self { handle: rt.handle().clone(), owner: Some(rt) })
    }

    /// Runs `fut` to completion on the calling thread; the workers drive the sockets.
    fn block_on<F: Future>(&self, fut: F) -> F::Output {
        self.handle.block_on(fut)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.owner.take() {
            rt.shutdown_background();
        }
    }
}

/// A cache in an S3 bucket; see the module documentation.
pub struct S3Cache {
    store: AmazonS3,
    runtime: Arc<Runtime>,
    /// `s3://bucket[/prefix]`.
    url: String,
    bucket: String,
    prefix: String,
    region: String,
    /// The server, for messages.
    server: String,
    /// Set once a request showed that the bucket exists.
    bucket_seen: AtomicBool,
    failures: Failures,
}

impl S3Cache {
    /// The cache at `url` (`s3://…`), configured from its parameters and the variables in `settings`.
    pub fn from_url(url: &CacheUrl, options: &HttpOptions, settings: &Settings) -> Result<Self, StoreError> {
        Self::new(S3Config::from_url(url, settings)?, options)
    }

    /// The cache `config` describes. No request is made until the first method call.
    pub fn new(config: S3Config, options: &HttpOptions) -> Result<Self, StoreError> {
        let url = config.url();
        let runtime = Runtime::new().map_err(|e| StoreError::new(&url, StoreErrorKind::Io(e)))?;
        let client = ClientOptions::new()
            .with_user_agent(HeaderValue::from_static(concat!("narwhal/", env!("CARGO_PKG_VERSION"))))
            .with_allow_http(config.endpoint.as_deref().is_some_and(|e| e.starts_with("http://")))
            .with_connect_timeout(options.timeout)
            // Per read, not per request: a large NAR may take longer than any fixed bound.
            .with_read_timeout(options.timeout)
            .with_timeout_disabled()
            .with_pool_max_idle_per_host(32);
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: options.initial_backoff,
                max_backoff: Duration::from_secs(30),
                base: 2.0,
            },
            max_retries: options.attempts.saturating_sub(1) as usize,
            retry_timeout: Duration::from_secs(180),
        };
        let failures = Failures::default();
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_virtual_hosted_style_request(config.virtual_hosted())
            .with_client_options(client)
            .with_http_connector(RepliesConnector(Arc::clone(&failures)))
            .with_retry(retry);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        builder = match &config.credentials {
            Some(c) => {
                let b = builder.with_access_key_id(&c.access_key_id).with_secret_access_key(&c.secret_access_key);
                match &c.session_token {
                    Some(token) => b.with_token(token),
                    None => b,
                }
            }
            None => builder.with_skip_signature(true),
        };
        let store = {
            let _inside = runtime.handle.enter();
            builder.build().map_err(|e| StoreError::new(&url, StoreErrorKind::InvalidUrl(e.to_string())))?
        };
        Ok(Self {
            store,
            runtime: Arc::new(runtime),
            url,
            server: config.server(),
            bucket: config.bucket,
            prefix: config.prefix,
            region: config.region,
            bucket_seen: AtomicBool::new(false),
            failures,
        })
    }

    fn key_url(&self, key: &str) -> String {
        format!("{}/{key}", self.url)
    }

    /// The object name of `key`, after checking that `key` stays inside the cache.
    fn path(&self, key: &str) -> Result<Path, StoreError> {
        let invalid = || StoreError::new(self.key_url(key), StoreErrorKind::InvalidKey);
        check_key(key).map_err(|_| invalid())?;
        let name = if self.prefix.is_empty() { key.to_owned() } else { format!("{}/{key}", self.prefix) };
        Path::parse(name).map_err(|_| invalid())
    }

    fn block_on<F: Future>(&self, fut: F) -> F::Output {
        self.runtime.block_on(fut)
    }

    fn no_bucket(&self) -> StoreError {
        StoreError::new(
            &self.url,
            StoreErrorKind::NoSuchBucket { bucket: self.bucket.clone(), server: self.server.clone() },
        )
    }

    /// After a 404 for a key: `Ok` when the key is what is missing, an error when the bucket is.
    /// A GET's error body names the case; a HEAD's has no body, so the bucket is listed once.
    fn absent(&self, e: &object_store::Error) -> Result<(), StoreError> {
        let code = reply(e).and_then(|r| r.code.as_deref());
        if code == Some(NO_SUCH_BUCKET) {
            return Err(self.no_bucket());
        }
        if code == Some(NO_SUCH_KEY) || self.bucket_seen.load(Ordering::Relaxed) {
            self.bucket_seen.store(true, Ordering::Relaxed);
            return Ok(());
        }
        let prefix = (!self.prefix.is_empty()).then_some(self.prefix.as_str());
        let options = PaginatedListOptions { max_keys: Some(1), ..PaginatedListOptions::default() };
        match self.block_on(self.store.list_paginated(prefix, options)) {
            Ok(_) => {
                self.bucket_seen.store(true, Ordering::Relaxed);
                Ok(())
            }
            // Listing may be forbidden to a reader; then the 404 is taken at its word.
            Err(e) if is_not_found(&e) => Err(self.no_bucket()),
            Err(_) => Ok(()),
        }
    }

    /// `e`, from a request for `key`, as a [`StoreError`].
    fn error(&self, key: &str, e: object_store::Error) -> StoreError {
        let url = self.key_url(key);
        let status = |status, attempts| StoreError::new(&url, StoreErrorKind::Status { status, attempts });
        if let Some(r) = reply(&e) {
            forget(&self.failures, &r.request);
            return match (r.status, r.code.as_deref()) {
                (_, Some(NO_SUCH_BUCKET)) => self.no_bucket(),
                // AWS redirects (301, `PermanentRedirect`) to the bucket's region; others refuse
                // the signature's region (400).
                (300..=399, _) | (_, Some(AUTHORIZATION_HEADER_MALFORMED)) => StoreError::new(
                    &self.url,
                    StoreErrorKind::WrongRegion { server: self.server.clone(), region: self.region.clone() },
                ),
                (code, _) => status(code, r.attempt),
            };
        }
        // The statuses [`Replies`] leaves to object_store, which types them.
        match &e {
            object_store::Error::NotFound { .. } => return status(404, 1),
            object_store::Error::PermissionDenied { .. } => return status(403, 1),
            object_store::Error::Unauthenticated { .. } => return status(401, 1),
            object_store::Error::Precondition { .. } => return status(412, 1),
            object_store::Error::NotModified { .. } => return status(304, 1),
            object_store::Error::AlreadyExists { .. } => return status(409, 1),
            _ => {}
        }
        if let Some(t) = source_of::<Failed>(&e) {
            forget(&self.failures, &t.request);
            let source = Box::new(Unreachable { server: self.server.clone(), cause: t.cause.clone() });
            return StoreError::new(url, StoreErrorKind::Transport { attempts: t.attempt, source });
        }
        StoreError::new(url, StoreErrorKind::Io(io::Error::from(e)))
    }

    /// Sends a request signed in its URL (for what `object_store` has no call for: multipart upload
    /// listing and abort); returns the body.
    fn signed_request(
        &self,
        method: reqwest::Method,
        path: &Path,
        query: Vec<(String, String)>,
        key: &str,
    ) -> Result<String, StoreError> {
        use object_store::signer::{SignedUrlOptions, Signer as _};
        let options = SignedUrlOptions::default().with_query(query);
        let url = self
            .block_on(self.store.signed_url_opts(method.clone(), path, Duration::from_secs(300), &options))
            .map_err(|e| self.error(key, e))?;
        let transport = |e: reqwest::Error| {
            let source = Box::new(Unreachable { server: self.server.clone(), cause: e.to_string() });
            StoreError::new(self.key_url(key), StoreErrorKind::Transport { attempts: 1, source })
        };
        self.block_on(async {
            let response = reqwest::Client::new().request(method, url.as_str()).send().await.map_err(transport)?;
            let status = response.status().as_u16();
            let body = response.text().await.map_err(transport)?;
            if (200..300).contains(&status) {
                Ok(body)
            } else if body.contains(NO_SUCH_BUCKET) {
                Err(self.no_bucket())
            } else {
                Err(StoreError::new(self.key_url(key), StoreErrorKind::Status { status, attempts: 1 }))
            }
        })
    }

    fn put_payload(&self, key: &str, path: &Path, payload: PutPayload, content_type: &str) -> Result<(), StoreError> {
        let options = PutOptions { attributes: attributes(content_type), ..PutOptions::default() };
        self.block_on(self.store.put_opts(path, payload, options)).map(drop).map_err(|e| self.error(key, e))
    }
}

/// What a request for an object sends besides its bytes.
fn attributes(content_type: &str) -> Attributes {
    let mut attributes = Attributes::new();
    if !content_type.is_empty() {
        attributes.insert(Attribute::ContentType, content_type.to_owned().into());
    }
    attributes
}

/// The first error of type `T` in `e`'s chain of sources.
fn source_of<T: std::error::Error + 'static>(e: &object_store::Error) -> Option<&T> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(t) = c.downcast_ref::<T>() {
            return Some(t);
        }
        cause = c.source();
    }
    None
}

/// The error response behind `e`, if the server answered with one.
fn reply(e: &object_store::Error) -> Option<&S3Reply> {
    source_of::<S3Reply>(e)
}

/// Whether `e` says the key (or the bucket) does not exist.
fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. }) || reply(e).is_some_and(|r| r.status == 404)
}

/// An error response from the server, as [`Replies`] read it.
#[derive(Debug, thiserror::Error)]
#[error("HTTP {status}{}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
struct S3Reply {
    /// The request (method and URL), as [`Replies`] counts its attempts.
    request: String,
    status: u16,
    /// S3's `<Code>`, when the response had a readable XML body.
    code: Option<String>,
    /// Which attempt at the request this was (object_store retries 5xx and 429).
    attempt: u32,
}

/// A request that got no response, with the innermost cause (`Connection refused`).
#[derive(Debug, thiserror::Error)]
#[error("{cause}")]
struct Failed {
    request: String,
    cause: String,
    attempt: u32,
}

/// Failed attempts so far by request (method and URL), shared by [`Replies`], which counts them,
/// and [`S3Cache::error`], which forgets a request once its error is final.
type Failures = Arc<Mutex<HashMap<String, u32>>>;

/// Makes object_store's client through [`Replies`].
#[derive(Debug)]
struct RepliesConnector(Failures);

impl HttpConnector for RepliesConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(Replies { inner, failures: Arc::clone(&self.0) }))
    }
}

/// object_store's HTTP client, with every error response turned into an [`S3Reply`] and every
/// failed request into a [`Failed`], so the errors that come out of object_store can be told
/// apart by type. Retries stay object_store's: a 5xx, 429 or 408 is handed back as a request
/// error of the kind it retries (and counted), anything else of the kind it does not retry;
/// 304, 409 and 412, which object_store turns into typed errors of its own (conditional
/// requests), pass through untouched.
#[derive(Debug)]
struct Replies {
    inner: HttpClient,
    failures: Failures,
}

impl Replies {
    /// Counts a failed attempt at `request`; returns which attempt it was.
    fn failed(&self, request: &str) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() > 4096 {
            failures.clear();
        }
        let n = failures.entry(request.to_owned()).or_insert(0);
        *n += 1;
        *n
    }

    fn succeeded(&self, request: &str) {
        forget(&self.failures, request);
    }
}

/// Ends the count of `request`'s attempts.
fn forget(failures: &Failures, request: &str) {
    let mut failures = failures.lock().unwrap_or_else(PoisonError::into_inner);
    if !failures.is_empty() {
        failures.remove(request);
    }
}

#[async_trait::async_trait]
impl HttpService for Replies {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let request = format!("{} {}", req.method(), req.uri());
        let response = match self.inner.execute(req).await {
            Ok(r) => r,
            Err(e) => {
                let attempt = self.failed(&request);
                let mut cause: &(dyn std::error::Error + 'static) = &e;
                while let Some(next) = cause.source() {
                    cause = next;
                }
                let failed = Failed { request, cause: cause.to_string(), attempt };
                return Err(HttpError::new(e.kind(), failed));
            }
        };
        let status = response.status().as_u16();
        let passes = status < 300 || matches!(status, 304 | 409 | 412);
        if passes {
            self.succeeded(&request);
            return Ok(response);
        }
        let transient = status >= 500 || status == 429 || status == 408;
        let attempt = if transient { self.failed(&request) } else { 1 };
        if !transient {
            self.succeeded(&request);
        }
        let declared = response.headers().get("content-length").and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        let code = match declared {
            Some(len) if len <= MAX_ERROR_BODY => response.into_body().bytes().await.ok().and_then(|b| s3_code(&b)),
            // A body of unknown or unreasonable length is not read: the status alone classifies.
            _ => None,
        };
        // Request errors are retried by object_store (it sent nothing useful back); unknown ones are not.
        let kind = if transient { HttpErrorKind::Request } else { HttpErrorKind::Unknown };
        Err(HttpError::new(kind, S3Reply { request, status, code, attempt }))
    }
}

/// The `<Code>` of an S3 error document (`<Error><Code>NoSuchKey</Code>…</Error>`).
fn s3_code(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let (_, rest) = text.split_once("<Code>")?;
    let (code, _) = rest.split_once("</Code>")?;
    let code = code.trim();
    (!code.is_empty() && code.len() <= 64 && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'))
        .then(|| code.to_owned())
}

/// A server that could not be reached, with the innermost cause (`Connection refused`).
#[derive(Debug, thiserror::Error)]
#[error("{server}: {cause}")]
struct Unreachable {
    server: String,
    cause: String,
}

/// The response body of `open`, read on the cache's runtime.
struct Body {
    reader: Box<dyn Read + Send>,
    /// Keeps the runtime alive for as long as the body is read (dropped after `reader`).
    _runtime: Arc<Runtime>,
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

/// A multipart upload under way, aborted (parts in flight first) unless completed.
struct Upload<'a> {
    runtime: &'a Runtime,
    /// `None` once completed.
    multipart: Option<Box<dyn MultipartUpload>>,
    parts: JoinSet<object_store::Result<()>>,
}

impl Upload<'_> {
    /// Starts uploading `part`, after waiting while [`PARTS_IN_FLIGHT`] parts are.
    fn send(&mut self, part: Vec<u8>) -> Result<(), object_store::Error> {
        while self.parts.len() >= PARTS_IN_FLIGHT {
            self.wait_one()?;
        }
        if let Some(upload) = self.multipart.as_mut() {
            self.parts.spawn_on(upload.put_part(PutPayload::from(part)), &self.runtime.handle);
        }
        Ok(())
    }

    fn wait_one(&mut self) -> Result<(), object_store::Error> {
        match self.runtime.block_on(self.parts.join_next()) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(e),
            Some(Err(e)) => Err(object_store::Error::JoinError { source: e }),
        }
    }

    fn complete(mut self) -> Result<(), object_store::Error> {
        while !self.parts.is_empty() {
            self.wait_one()?;
        }
        if let Some(upload) = self.multipart.as_mut() {
            self.runtime.block_on(upload.complete())?;
        }
        self.multipart = None;
        Ok(())
    }
}

impl Drop for Upload<'_> {
    fn drop(&mut self) {
        if let Some(mut upload) = self.multipart.take() {
            self.parts.abort_all();
            self.runtime.block_on(async {
                while self.parts.join_next().await.is_some() {}
                // Best effort: a bucket lifecycle rule should still expire abandoned uploads.
                let _ = upload.abort().await;
            });
        }
    }
}

impl BinaryCache for S3Cache {
    fn url(&self) -> &str {
        &self.url
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(key)?;
        match self.block_on(async { self.store.get(&path).await?.bytes().await }) {
            Ok(bytes) => {
                self.bucket_seen.store(true, Ordering::Relaxed);
                Ok(Some(bytes.to_vec()))
            }
            Err(e) if is_not_found(&e) => self.absent(&e).map(|()| None),
            Err(e) => Err(self.error(key, e)),
        }
    }

    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>, StoreError> {
        let path = self.path(key)?;
        match self.block_on(self.store.get(&path)) {
            Ok(found) => {
                let stream = StreamReader::new(found.into_stream());
                let reader = SyncIoBridge::new_with_handle(stream, self.runtime.handle.clone());
                Ok(Box::new(Body { reader: Box::new(reader), _runtime: Arc::clone(&self.runtime) }))
            }
            Err(e) if is_not_found(&e) => {
                self.absent(&e)?;
                Err(StoreError::new(self.key_url(key), StoreErrorKind::NotFound))
            }
            Err(e) => Err(self.error(key, e)),
        }
    }
}

impl CacheWriter for S3Cache {
    fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let path = self.path(key)?;
        match self.block_on(self.store.head(&path)) {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => self.absent(&e).map(|()| false),
            Err(e) => Err(self.error(key, e)),
        }
    }

    fn put(&self, key: &str, data: &[u8], content_type: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        self.put_payload(key, &path, PutPayload::from(data.to_vec()), content_type)
    }

    fn put_file(&self, key: &str, file: &std::path::Path, content_type: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let local = |e: io::Error| {
            StoreError::new(
                self.key_url(key),
                StoreErrorKind::Io(io::Error::new(e.kind(), format!("{}: {e}", file.display()))),
            )
        };
        let mut f = File::open(file).map_err(local)?;
        let len = f.metadata().map_err(local)?.len();
        if len <= MIN_PART_SIZE {
            let mut data = Vec::with_capacity(len as usize);
            f.read_to_end(&mut data).map_err(local)?;
            return self.put_payload(key, &path, PutPayload::from(data), content_type);
        }
        let Some(part) = part_size(len) else {
            return Err(local(io::Error::new(io::ErrorKind::FileTooLarge, "larger than an S3 object can be")));
        };
        let options = PutMultipartOptions { attributes: attributes(content_type), ..PutMultipartOptions::default() };
        let upload = self.block_on(self.store.put_multipart_opts(&path, options)).map_err(|e| self.error(key, e))?;
        let mut upload = Upload { runtime: &self.runtime, multipart: Some(upload), parts: JoinSet::new() };
        let mut left = len;
        while left > 0 {
            let n = left.min(part);
            let mut buf = vec![0; n as usize];
            // On any error `upload` is dropped, which aborts it.
            f.read_exact(&mut buf).map_err(local)?;
            left -= n;
            upload.send(buf).map_err(|e| self.error(key, e))?;
        }
        upload.complete().map_err(|e| self.error(key, e))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let dir = prefix.trim_end_matches('/');
        let path = self.path(dir)?;
        let listed = self.block_on(self.store.list_with_delimiter(Some(&path))).map_err(|e| self.error(prefix, e))?;
        let strip = if self.prefix.is_empty() { String::new() } else { format!("{}/", self.prefix) };
        let mut keys: Vec<String> = listed
            .objects
            .into_iter()
            .filter_map(|o| o.location.as_ref().strip_prefix(strip.as_str()).map(str::to_owned))
            .collect();
        keys.sort();
        Ok(keys)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match self.block_on(self.store.delete(&path)) {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => self.absent(&e),
            Err(e) => Err(self.error(key, e)),
        }
    }

    fn list_objects(&self, prefix: &str, each: &mut dyn FnMut(Listed)) -> Result<u64, StoreError> {
        let strip = if self.prefix.is_empty() { String::new() } else { format!("{}/", self.prefix) };
        let full = format!("{strip}{prefix}");
        let mut requests = 0;
        let mut page_token = None;
        // ListObjectsV2 pages of 1,000 keys: one request per 1,000 objects, no HEAD.
        loop {
            let options = PaginatedListOptions { page_token, ..PaginatedListOptions::default() };
            requests += 1;
            let page = self
                .block_on(self.store.list_paginated(Some(full.as_str()).filter(|p| !p.is_empty()), options))
                .map_err(|e| self.error(prefix, e))?;
            for o in page.result.objects {
                let Some(key) = o.location.as_ref().strip_prefix(strip.as_str()) else { continue };
                if key.starts_with(prefix) {
                    each(Listed {
                        key: key.to_owned(),
                        size: o.size,
                        modified_ms: o.last_modified.timestamp_millis(),
                        etag: o.e_tag.unwrap_or_default(),
                    });
                }
            }
            page_token = page.page_token;
            if page_token.is_none() {
                break;
            }
        }
        self.bucket_seen.store(true, Ordering::Relaxed);
        Ok(requests)
    }

    fn put_new(&self, key: &str, data: &[u8], content_type: &str) -> Result<bool, StoreError> {
        let path = self.path(key)?;
        let options =
            PutOptions { mode: PutMode::Create, attributes: attributes(content_type), ..PutOptions::default() };
        match self.block_on(self.store.put_opts(&path, PutPayload::from(data.to_vec()), options)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(self.error(key, e)),
        }
    }

    fn replace_if(&self, key: &str, data: &[u8], content_type: &str, etag: &str) -> Result<bool, StoreError> {
        let path = self.path(key)?;
        let version = UpdateVersion { e_tag: Some(etag.to_owned()), version: None };
        let options = PutOptions {
            mode: PutMode::Update(version),
            attributes: attributes(content_type),
            ..PutOptions::default()
        };
        match self.block_on(self.store.put_opts(&path, PutPayload::from(data.to_vec()), options)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error(key, e)),
        }
    }

    fn abort_uploads(&self, before_ms: i64) -> Result<Vec<String>, StoreError> {
        let strip = if self.prefix.is_empty() { String::new() } else { format!("{}/", self.prefix) };
        let mut aborted = Vec::new();
        let mut markers: Option<(String, String)> = None;
        // ListMultipartUploads, 1,000 a page; at most 1,000 pages.
        for _ in 0..1000 {
            let mut query = vec![("uploads".to_owned(), String::new()), ("prefix".to_owned(), strip.clone())];
            if let Some((key, id)) = &markers {
                query.push(("key-marker".to_owned(), key.clone()));
                query.push(("upload-id-marker".to_owned(), id.clone()));
            }
            let body = self.signed_request(reqwest::Method::GET, &Path::default(), query, "")?;
            let page = parse_uploads(&body);
            for upload in &page.uploads {
                if upload.initiated_ms < before_ms {
                    let path = Path::parse(&upload.key)
                        .map_err(|_| StoreError::new(self.key_url(&upload.key), StoreErrorKind::InvalidKey))?;
                    let query = vec![("uploadId".to_owned(), upload.id.clone())];
                    self.signed_request(reqwest::Method::DELETE, &path, query, &upload.key)?;
                    aborted.push(upload.key.strip_prefix(strip.as_str()).unwrap_or(&upload.key).to_owned());
                }
            }
            match page.next {
                Some(next) => markers = Some(next),
                None => break,
            }
        }
        Ok(aborted)
    }
}

/// Incomplete multipart uploads, as ListMultipartUploads answers.
#[derive(Debug, Default, PartialEq, Eq)]
struct UploadsPage {
    uploads: Vec<PendingUpload>,
    /// The key and upload id markers of the next page, when the answer is truncated.
    next: Option<(String, String)>,
}

#[derive(Debug, PartialEq, Eq)]
struct PendingUpload {
    key: String,
    id: String,
    initiated_ms: i64,
}

/// The text of the first `<tag>…</tag>` in `xml`, unescaped.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let (_, rest) = xml.split_once(&format!("<{tag}>"))?;
    let (text, _) = rest.split_once(&format!("</{tag}>"))?;
    Some(
        text.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

fn parse_uploads(xml: &str) -> UploadsPage {
    let mut page = UploadsPage::default();
    for part in xml.split("<Upload>").skip(1) {
        let part = part.split("</Upload>").next().unwrap_or_default();
        let (Some(key), Some(id)) = (xml_text(part, "Key"), xml_text(part, "UploadId")) else { continue };
        // An upload whose start cannot be read is left alone.
        let initiated_ms = xml_text(part, "Initiated").and_then(|t| parse_rfc3339_ms(&t)).unwrap_or(i64::MAX);
        page.uploads.push(PendingUpload { key, id, initiated_ms });
    }
    let head = xml.split("<Upload>").next().unwrap_or_default();
    if xml_text(head, "IsTruncated").as_deref() == Some("true") {
        if let (Some(k), Some(u)) = (xml_text(head, "NextKeyMarker"), xml_text(head, "NextUploadIdMarker")) {
            page.next = Some((k, u));
        }
    }
    page
}

/// `2026-12-02T14:00:00.000Z` as Unix milliseconds (UTC only, as S3 writes it).
fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> { text.get(r)?.parse().ok() };
    if b.len() < 20 || b.get(4) != Some(&b'-') || b.get(10) != Some(&b'T') || !text.ends_with('Z') {
        return None;
    }
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let ms = match text.get(19..text.len() - 1) {
        Some(frac) if frac.starts_with('.') => frac.get(1..)?.get(..3.min(frac.len() - 1))?.parse::<i64>().ok()?,
        _ => 0,
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, env: &[(&str, &str)]) -> Result<S3Config, StoreError> {
        let url = CacheUrl::parse(url).unwrap();
        S3Config::from_url_and_env(&url, |k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned()))
    }

    #[test]
    fn part_sizes() {
        assert_eq!(part_size(0), Some(MIN_PART_SIZE));
        assert_eq!(part_size(40 << 20), Some(MIN_PART_SIZE));
        assert_eq!(part_size(MIN_PART_SIZE * MAX_PARTS), Some(MIN_PART_SIZE));
        assert_eq!(part_size(MIN_PART_SIZE * MAX_PARTS + 1), Some(6 << 20));
        for len in [1 << 30, 100 << 30, 1 << 40, 3 << 40, MAX_PART_SIZE * MAX_PARTS] {
            let part = part_size(len).unwrap();
            assert!(len.div_ceil(part) <= MAX_PARTS && part >= MIN_PART_SIZE && part.is_multiple_of(1 << 20), "{len}");
        }
        assert_eq!(part_size(MAX_PART_SIZE * MAX_PARTS + 1), None);
    }

    #[test]
    fn settings_from_url_then_environment() {
        let c = config("s3://b/p?region=eu-west-1&endpoint=http://127.0.0.1:3900/", &[("AWS_REGION", "x")]).unwrap();
        assert_eq!((c.region.as_str(), c.endpoint.as_deref()), ("eu-west-1", Some("http://127.0.0.1:3900")));
        assert_eq!((c.url(), c.server(), c.credentials), ("s3://b/p".into(), "http://127.0.0.1:3900".into(), None));

        let env = [("AWS_DEFAULT_REGION", "d"), ("AWS_ENDPOINT_URL", "https://s3.example"), ("HOME", "/nonexistent")];
        let c = config("s3://b", &env).unwrap();
        assert_eq!((c.region.as_str(), c.endpoint.as_deref()), ("d", Some("https://s3.example")));
        let c = config("s3://b?endpoint=minio.local:9000&scheme=http", &[]).unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("http://minio.local:9000"));

        let c = config("s3://b", &[("HOME", "/nonexistent")]).unwrap();
        assert_eq!((c.region.as_str(), c.server()), ("us-east-1", "https://b.s3.us-east-1.amazonaws.com".into()));
        assert_eq!(config("s3://a.b?region=r", &[]).unwrap().server(), "https://s3.r.amazonaws.com");
        assert!(config("s3://b?endpoint=ftp://x", &[]).is_err());
    }

    #[test]
    fn credentials_in_nix_order() {
        let dir = std::env::temp_dir().join(format!("narwhal-s3-creds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("credentials");
        std::fs::write(
            &file,
            "# comment\n[default]\naws_access_key_id = D\naws_secret_access_key = DS\n\n\
             [ci]\naws_access_key_id=C\naws_secret_access_key=CS\naws_session_token=CT\n[empty]\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let id = |url: &str, env: &[(&str, &str)]| {
            let mut env = env.to_vec();
            env.push(("AWS_SHARED_CREDENTIALS_FILE", f));
            config(url, &env).map(|c| c.credentials.map(|c| (c.access_key_id, c.session_token)))
        };
        let keys = [("AWS_ACCESS_KEY_ID", "E"), ("AWS_SECRET_ACCESS_KEY", "ES"), ("AWS_SESSION_TOKEN", "ET")];
        assert_eq!(id("s3://b", &keys).unwrap(), Some(("E".into(), Some("ET".into()))));
        assert_eq!(id("s3://b?profile=ci", &keys).unwrap(), Some(("C".into(), Some("CT".into()))));
        assert_eq!(id("s3://b", &[]).unwrap(), Some(("D".into(), None)));
        assert_eq!(id("s3://b", &[("AWS_PROFILE", "ci")]).unwrap(), Some(("C".into(), Some("CT".into()))));
        let e = id("s3://b?profile=empty", &[]).unwrap_err();
        assert!(e.to_string().contains("s3://b") && format!("{}", e.kind).contains("'empty'"), "{e:?}");
        assert!(id("s3://b", &[("AWS_PROFILE", "nope")]).is_err());
        assert!(id("s3://b", &[("AWS_ACCESS_KEY_ID", "E")]).is_err());
        let none = config("s3://b", &[("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")]).unwrap();
        assert_eq!(none.credentials, None);
        assert!(format!("{:?}", config("s3://b", &keys).unwrap()).contains("secret_access_key: \"…\""));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn error_codes_read_from_s3_error_documents() {
        let doc = b"<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>m</Message></Error>";
        assert_eq!(s3_code(doc).as_deref(), Some(NO_SUCH_BUCKET));
        assert_eq!(s3_code(b"<Error><Code> NoSuchKey </Code></Error>").as_deref(), Some(NO_SUCH_KEY));
        for bad in [&b"<Error><Code></Code></Error>"[..], b"<Code>a b</Code>", b"<Code>x", b"\xff<Code>x</Code>", b""] {
            assert_eq!(s3_code(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn multipart_uploads_listed() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01.500Z"), Some(1500));
        assert_eq!(parse_rfc3339_ms("2026-12-02T14:00:00Z"), Some(1_796_220_000_000));
        assert_eq!(parse_rfc3339_ms("2026-13-02T14:00:00Z"), None);
        assert_eq!(parse_rfc3339_ms("é"), None);
        let xml = "<ListMultipartUploadsResult><IsTruncated>true</IsTruncated><NextKeyMarker>b</NextKeyMarker>\
                   <NextUploadIdMarker>2</NextUploadIdMarker><Upload><Key>nar/a&amp;b</Key><UploadId>1</UploadId>\
                   <Initiated>1970-01-01T00:00:02.000Z</Initiated></Upload><Upload><Key>x</Key></Upload>";
        let page = parse_uploads(xml);
        assert_eq!(page.uploads, vec![PendingUpload { key: "nar/a&b".into(), id: "1".into(), initiated_ms: 2000 }]);
        assert_eq!(page.next, Some(("b".into(), "2".into())));
    }
}
