//! Pushing an image to a registry (the distribution v2 API, as docker, skopeo and Heroku's registry
//! speak it): every blob the registry lacks is uploaded (HEAD first, then POST and one PUT with the
//! digest), and the manifest last, exactly the bytes that were hashed: the tag moves only then.
//!
//! Authentication: anonymous first; on a 401 the challenge decides: `Basic` sends the credentials,
//! `Bearer realm=…,service=…,scope=…` (the Docker token flow) fetches a token from the realm with
//! them and sends it. Credentials never follow a redirect to another host (reqwest drops the
//! `Authorization` header then). Transient failures (connection errors, 5xx, 429) are retried
//! through the one retry loop.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use narwhal_formats::tee::{Progress, Tee};
use narwhal_store::retry::{Retry, Verdict};
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::{Method, StatusCode};

use crate::oci::{Descriptor, Layout};
use crate::report::{Reporter, Sent};

/// What a mount attempt gave.
enum Mount {
    /// No other repository is known to hold the blob.
    NoSource,
    Mounted,
    /// The registry started an upload at this location instead.
    Upload(String),
}

/// Whether `tag` is a valid image tag (a registry's or an OCI layout's): 1 to 128 characters of
/// `A-Z a-z 0-9 . _ -`, not starting with `.` or `-`.
pub fn is_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// `docker://HOST[:PORT]/REPOSITORY[:TAG]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub host: String,
    pub repository: String,
    pub tag: String,
}

impl Reference {
    pub fn parse(s: &str) -> Result<Self, RegistryError> {
        let bad = |why: &str| RegistryError::Reference { reference: s.to_owned(), why: why.to_owned() };
        let rest = s.strip_prefix("docker://").ok_or_else(|| bad("it does not start with docker://"))?;
        let (host, path) =
            rest.split_once('/').ok_or_else(|| bad("it names no repository: docker://HOST/REPO[:TAG]"))?;
        if host.is_empty() || !host.contains(['.', ':']) && host != "localhost" {
            return Err(bad("the registry host must be a name with a dot or a port (docker.io is not assumed)"));
        }
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, tag),
            _ => (path, "latest"),
        };
        let repo_ok = !repository.is_empty()
            && repository.split('/').all(|c| {
                !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            });
        if !repo_ok {
            return Err(bad("the repository must be lowercase components of a-z 0-9 . _ - separated by /"));
        }
        if !is_tag(tag) {
            return Err(bad("the tag must be up to 128 characters of A-Z a-z 0-9 . _ -"));
        }
        Ok(Self { host: host.to_owned(), repository: repository.to_owned(), tag: tag.to_owned() })
    }

    /// Loopback registries speak plain HTTP; others HTTPS unless `insecure`.
    pub fn base_url(&self, insecure: bool) -> String {
        let name = self.host.rsplit_once(':').map_or(self.host.as_str(), |(h, _)| h);
        let loopback = name == "localhost" || name.starts_with("127.") || name == "[::1]";
        format!("{}://{}", if loopback || insecure { "http" } else { "https" }, self.host)
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    #[error("invalid image reference {reference:?}: {why}")]
    Reference { reference: String, why: String },
    #[error("cannot reach the registry {host}")]
    Unreachable {
        host: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what}: HTTP {status} from {host}{}", if .body.is_empty() { String::new() } else { format!(": {}", .body) })]
    Status {
        what: String,
        host: String,
        status: u16,
        body: String,
        /// The server's `Retry-After`, in seconds.
        retry_after: Option<u64>,
    },
    #[error("the registry {host} wants credentials ({challenge}) and {}", if *.sent { "refused the ones sent" } else { "none were given" })]
    Unauthorized { host: String, challenge: String, sent: bool },
    #[error("cannot read the registry credentials in {file}: {why}")]
    AuthFile { file: String, why: String },
    #[error("cannot read the blob {path}")]
    Blob {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl RegistryError {
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Self::Unauthorized { .. } => Some(
                "give --creds USER:PASSWORD, NARWHAL_REGISTRY_CREDS, or log in so that ~/.docker/config.json \
                 ($REGISTRY_AUTH_FILE) holds the registry (Heroku: user _, password: your API key)",
            ),
            Self::AuthFile { .. } => Some(
                "the file holds {\"auths\": {\"HOST\": {\"auth\": \"base64 of USER:PASSWORD\"}}}, as docker login and skopeo login write it; fix it, or give --creds",
            ),
            Self::Unreachable { .. } => Some("check the registry's host and port; loopback registries are spoken to over plain HTTP, others over HTTPS unless --insecure"),
            Self::Reference { .. } => Some("name the destination as docker://HOST/REPOSITORY[:TAG], e.g. docker://registry.heroku.com/APP/web"),
            _ => None,
        }
    }

    /// Whether to try again, and after the wait the registry asked for (`Retry-After`) if it did.
    fn retry_wait(&self) -> Verdict {
        match self {
            Self::Unreachable { .. } => Verdict::Backoff,
            Self::Status { status, retry_after, .. } if *status >= 500 || *status == 429 || *status == 408 => {
                retry_after.map_or(Verdict::Backoff, |s| Verdict::After(Duration::from_secs(s)))
            }
            _ => Verdict::Lasting,
        }
    }
}

/// What a push did.
#[derive(Debug, Clone, Default)]
pub struct PushReport {
    /// Blobs the registry already had (HEAD only).
    pub skipped: usize,
    /// Blobs mounted from another repository of the registry.
    pub mounted: usize,
    pub uploaded: usize,
    pub uploaded_bytes: u64,
}

/// A registry repository, with its credentials and the token the registry gave for them.
pub struct Registry {
    client: Client,
    base: String,
    reference: Reference,
    creds: Option<(String, String)>,
    token: Mutex<Option<String>>,
    /// Blobs a HEAD already found in the repository, and blobs mounted into it.
    known: Mutex<BTreeSet<String>>,
    mounted: Mutex<BTreeSet<String>>,
    /// Other repositories of this registry that hold a blob, by digest: mounted from, not uploaded.
    mount_sources: BTreeMap<String, Vec<String>>,
    reporter: Arc<dyn Reporter>,
    retry: Retry,
}

impl Registry {
    pub fn new(reference: Reference, creds: Option<(String, String)>, insecure: bool) -> Result<Self, RegistryError> {
        let client = Client::builder()
            .user_agent(concat!("narwhal/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .build()
            .map_err(|source| RegistryError::Unreachable { host: reference.host.clone(), source })?;
        Ok(Self {
            client,
            base: reference.base_url(insecure),
            reference,
            creds,
            token: Mutex::new(None),
            known: Mutex::new(BTreeSet::new()),
            mounted: Mutex::new(BTreeSet::new()),
            mount_sources: BTreeMap::new(),
            reporter: Arc::new(crate::report::Quiet),
            retry: Retry { attempts: 4, initial_backoff: Duration::from_millis(500) },
        })
    }

    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// Where progress and retries are reported.
    pub fn set_reporter(&mut self, reporter: Arc<dyn Reporter>) {
        self.reporter = reporter;
    }

    /// Repositories of this registry known to hold each blob (by digest), for cross-repository
    /// mounts: a blob one of them has is mounted (`POST …/blobs/uploads/?mount=…&from=…`) instead
    /// of uploaded. The registry checks that the credentials may read the source; when it does
    /// not mount, it starts an ordinary upload instead, which goes on.
    pub fn set_mount_sources(&mut self, sources: BTreeMap<String, Vec<String>>) {
        self.mount_sources = sources;
    }

    /// Pushes the blobs of `manifest` (config and layers, `jobs` at once) from `layout`, then the
    /// manifest's own bytes under the tag.
    pub fn push(
        &self,
        layout: &Layout,
        manifest: &Descriptor,
        blobs: &[Descriptor],
        jobs: usize,
    ) -> Result<PushReport, RegistryError> {
        let done = narwhal_store::parallel::try_map(blobs, jobs, |blob| {
            let how = self.push_blob(layout, blob)?;
            self.reporter.blob_done(blob, how);
            Ok::<_, RegistryError>(how)
        })?;
        let mut report = PushReport::default();
        for (blob, how) in blobs.iter().zip(done) {
            match how {
                Sent::Uploaded => {
                    report.uploaded += 1;
                    report.uploaded_bytes += blob.size;
                }
                Sent::Mounted => report.mounted += 1,
                Sent::Skipped => report.skipped += 1,
            }
        }
        let path = layout.blob_path(&manifest.digest);
        let bytes =
            std::fs::read(&path).map_err(|source| RegistryError::Blob { path: path.display().to_string(), source })?;
        let url = format!("{}/v2/{}/manifests/{}", self.base, self.reference.repository, self.reference.tag);
        let what = format!("storing the manifest as {}:{}", self.reference.repository, self.reference.tag);
        self.send(&what, &Method::PUT, &url, |r| {
            r.header("Content-Type", manifest.media_type.as_str()).body(bytes.clone())
        })?;
        Ok(report)
    }

    /// Whether the repository has `blob` (HEAD), or has it now because it was mounted from
    /// another repository; an error counts as no.
    pub fn has_blob(&self, blob: &Descriptor) -> bool {
        let url = format!("{}/v2/{}/blobs/{}", self.base, self.reference.repository, blob.digest);
        // One try: a probe that fails only costs building the layer.
        let once = Retry { attempts: 1, initial_backoff: Duration::ZERO };
        let head = self.send_raw("checking for a blob", &Method::HEAD, &url, &|r| r, once).map(|r| r.status());
        let set = if matches!(head, Ok(StatusCode::OK)) {
            &self.known
        } else if matches!(self.mount(blob), Ok(Mount::Mounted)) {
            &self.mounted
        } else {
            return false;
        };
        set.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(blob.digest.clone());
        true
    }

    /// The manifest (or index) `reference` (a tag or a digest) names, as `(media type, bytes)`, at
    /// most [`crate::read::MAX_DOCUMENT`] bytes; `None` when the registry has no such manifest.
    pub fn get_manifest(&self, reference: &str) -> Result<Option<(String, Vec<u8>)>, RegistryError> {
        let url = format!("{}/v2/{}/manifests/{reference}", self.base, self.reference.repository);
        let accept = [
            crate::oci::MEDIA_MANIFEST,
            crate::oci::MEDIA_INDEX,
            crate::Format::V2s2.manifest_type(),
            "application/vnd.docker.distribution.manifest.list.v2+json",
        ]
        .join(", ");
        let what = format!("reading the manifest {}:{reference}", self.reference.repository);
        let response =
            self.send_raw(&what, &Method::GET, &url, &|r| r.header("Accept", accept.as_str()), self.retry)?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(self.status_error(&what, response));
        }
        let media_type = response
            .headers()
            .get("Content-Type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_owned())
            .unwrap_or_default();
        let mut bytes = Vec::new();
        let limit = crate::read::MAX_DOCUMENT;
        let mut body = response.take(limit + 1);
        std::io::Read::read_to_end(&mut body, &mut bytes)
            .map_err(|source| RegistryError::Blob { path: url.clone(), source })?;
        if bytes.len() as u64 > limit {
            return Err(RegistryError::Status {
                what,
                host: self.reference.host.clone(),
                status: 200,
                body: format!("the manifest is larger than {limit} bytes"),
                retry_after: None,
            });
        }
        Ok(Some((media_type, bytes)))
    }

    /// Copies the blob `digest` into `out`; fails past `limit` bytes. Returns the bytes copied.
    pub fn get_blob(&self, digest: &str, out: &mut dyn std::io::Write, limit: u64) -> Result<u64, RegistryError> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, self.reference.repository);
        let what = format!("reading the blob {digest} of {}", self.reference.repository);
        let response = self.send(&what, &Method::GET, &url, |r| r)?;
        let mut body = response.take(limit + 1);
        let n = std::io::copy(&mut body, out).map_err(|source| RegistryError::Blob { path: url.clone(), source })?;
        if n > limit {
            return Err(RegistryError::Status {
                what,
                host: self.reference.host.clone(),
                status: 200,
                body: format!("the blob is larger than its {limit} bytes"),
                retry_after: None,
            });
        }
        Ok(n)
    }

    /// One blob: nothing if the registry has it, a mount if another repository has it, else POST
    /// an upload and PUT the file from `layout` (which must hold every blob the repository lacks).
    fn push_blob(&self, layout: &Layout, blob: &Descriptor) -> Result<Sent, RegistryError> {
        let repo = &self.reference.repository;
        let url = format!("{}/v2/{repo}/blobs/{}", self.base, blob.digest);
        if self.mounted.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(&blob.digest) {
            return Ok(Sent::Mounted);
        }
        if self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(&blob.digest) {
            return Ok(Sent::Skipped);
        }
        let head = self.send_status(&format!("checking for {}", blob.digest), &Method::HEAD, &url, |r| r)?;
        if head == StatusCode::OK {
            return Ok(Sent::Skipped);
        }
        let location = match self.mount(blob)? {
            Mount::Mounted => return Ok(Sent::Mounted),
            Mount::Upload(location) => location,
            Mount::NoSource => {
                let start = format!("{}/v2/{repo}/blobs/uploads/", self.base);
                let what = format!("starting the upload of {}", blob.digest);
                let response = self.send(&what, &Method::POST, &start, |r| r.header("Content-Length", "0"))?;
                self.location(&what, &response)?
            }
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest={}", blob.digest);
        let path = layout.blob_path(&blob.digest);
        let what = format!("uploading {}", blob.digest);
        self.reporter.blob_started(blob);
        self.send(&what, &Method::PUT, &put, |r| {
            match File::open(&path) {
                Ok(file) => {
                    let (sent, reporter) = (blob.clone(), Arc::clone(&self.reporter));
                    let counted = Tee::new(file, Progress::new(move |n| reporter.blob_progress(&sent, n)));
                    r.header("Content-Type", "application/octet-stream")
                        .header("Content-Length", blob.size.to_string())
                        .body(reqwest::blocking::Body::sized(counted, blob.size))
                }
                // Sent empty: the registry refuses the digest, and the error names the blob.
                Err(_) => r.body(Vec::new()),
            }
        })?;
        Ok(Sent::Uploaded)
    }

    /// Mounts `blob` from the first other repository of this registry known to hold it.
    fn mount(&self, blob: &Descriptor) -> Result<Mount, RegistryError> {
        let repo = &self.reference.repository;
        let Some(from) = self.mount_sources.get(&blob.digest).and_then(|r| r.iter().find(|r| *r != repo)) else {
            return Ok(Mount::NoSource);
        };
        let url = format!("{}/v2/{repo}/blobs/uploads/?mount={}&from={from}", self.base, blob.digest);
        let what = format!("mounting {} from {from}", blob.digest);
        let response = self.send(&what, &Method::POST, &url, |r| r.header("Content-Length", "0"))?;
        if response.status() == StatusCode::CREATED {
            return Ok(Mount::Mounted);
        }
        // 202: the registry did not mount, and started an ordinary upload instead.
        Ok(Mount::Upload(self.location(&what, &response)?))
    }

    /// An upload's `Location`, absolute.
    fn location(&self, what: &str, response: &Response) -> Result<String, RegistryError> {
        let location =
            response.headers().get("Location").and_then(|l| l.to_str().ok()).map(str::to_owned).ok_or_else(|| {
                RegistryError::Status {
                    what: what.to_owned(),
                    host: self.reference.host.clone(),
                    status: response.status().as_u16(),
                    body: "no Location header".to_owned(),
                    retry_after: None,
                }
            })?;
        Ok(if location.starts_with('/') { format!("{}{location}", self.base) } else { location })
    }

    fn send(
        &self,
        what: &str,
        method: &Method,
        url: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let response = self.send_raw(what, method, url, &build, self.retry)?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(self.status_error(what, response))
        }
    }

    /// The status of a request whose failure statuses (404 for a HEAD) are answers.
    fn send_status(
        &self,
        what: &str,
        method: &Method,
        url: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<StatusCode, RegistryError> {
        let response = self.send_raw(what, method, url, &build, self.retry)?;
        match response.status() {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(s),
            _ => Err(self.status_error(what, response)),
        }
    }

    fn status_error(&self, what: &str, response: Response) -> RegistryError {
        let status = response.status().as_u16();
        // Seconds; an HTTP date is taken as no answer (the backoff applies).
        let retry_after = response
            .headers()
            .get("Retry-After")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body: String = response.text().unwrap_or_default().lines().next().unwrap_or("").chars().take(300).collect();
        RegistryError::Status { what: what.to_owned(), host: self.reference.host.clone(), status, body, retry_after }
    }

    /// Sends with the current credentials; on a 401 answers the challenge once and sends again.
    /// Connection failures and 5xx, 429 and 408 answers are tried again (`retry`), after the
    /// registry's `Retry-After` when it gives one.
    fn send_raw(
        &self,
        what: &str,
        method: &Method,
        url: &str,
        build: &dyn Fn(RequestBuilder) -> RequestBuilder,
        retry: Retry,
    ) -> Result<Response, RegistryError> {
        retry.run_waiting(
            RegistryError::retry_wait,
            |attempt, e, wait| self.reporter.retrying(what, attempt, &e.to_string(), wait),
            |_| {
                let response = self.answered(method, url, build)?;
                let status = response.status();
                if status.is_server_error()
                    || status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::REQUEST_TIMEOUT
                {
                    return Err(self.status_error(what, response));
                }
                Ok(response)
            },
        )
    }

    fn answered(
        &self,
        method: &Method,
        url: &str,
        build: &dyn Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let response = self.authorized(url, build(self.client.request(method.clone(), url)))?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge =
            response.headers().get("WWW-Authenticate").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        self.answer(&challenge)?;
        let again = self.authorized(url, build(self.client.request(method.clone(), url)))?;
        if again.status() == StatusCode::UNAUTHORIZED {
            return Err(RegistryError::Unauthorized {
                host: self.reference.host.clone(),
                challenge,
                sent: self.creds.is_some(),
            });
        }
        Ok(again)
    }

    /// Sends `request` for `url` with the token or the credentials, but only to the registry itself:
    /// an upload `Location` on another host (a storage service) gets none.
    fn authorized(&self, url: &str, request: RequestBuilder) -> Result<Response, RegistryError> {
        let token = self.token.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let own = url.strip_prefix(self.base.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        let request = match (&token, &self.creds) {
            _ if !own => request,
            (Some(t), _) => request.bearer_auth(t),
            (None, Some((user, pass))) => request.basic_auth(user, Some(pass)),
            (None, None) => request,
        };
        request.send().map_err(|source| RegistryError::Unreachable { host: self.reference.host.clone(), source })
    }

    /// Takes a `Bearer` challenge's token from its realm (with the credentials, if any); a `Basic`
    /// challenge needs nothing more than the credentials `authorized` already sends.
    fn answer(&self, challenge: &str) -> Result<(), RegistryError> {
        let unauthorized = || RegistryError::Unauthorized {
            host: self.reference.host.clone(),
            challenge: challenge.to_owned(),
            sent: self.creds.is_some(),
        };
        let Some(params) = challenge.strip_prefix("Bearer ") else {
            return if self.creds.is_some() && challenge.starts_with("Basic") { Ok(()) } else { Err(unauthorized()) };
        };
        let field = |name: &str| {
            params.split(',').find_map(|kv| {
                let (k, v) = kv.trim().split_once('=')?;
                (k == name).then(|| v.trim_matches('"').to_owned())
            })
        };
        let realm = field("realm").ok_or_else(unauthorized)?;
        let mut query: Vec<(String, String)> = Vec::new();
        if let Some(service) = field("service") {
            query.push(("service".to_owned(), service));
        }
        let scope = field("scope").unwrap_or_else(|| format!("repository:{}:pull,push", self.reference.repository));
        query.push(("scope".to_owned(), scope));
        let url = reqwest::Url::parse_with_params(&realm, &query).map_err(|_| unauthorized())?;
        let mut request = self.client.get(url);
        if let Some((user, pass)) = &self.creds {
            request = request.basic_auth(user, Some(pass));
        }
        let response = request
            .send()
            .map_err(|source| RegistryError::Unreachable { host: self.reference.host.clone(), source })?;
        if !response.status().is_success() {
            return Err(unauthorized());
        }
        let body: serde_json::Value = response.json().map_err(|_| unauthorized())?;
        let token =
            body.get("token").or_else(|| body.get("access_token")).and_then(|t| t.as_str()).ok_or_else(unauthorized)?;
        *self.token.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(token.to_owned());
        Ok(())
    }
}

/// The credentials for `host` in a docker/skopeo auth file (`{"auths": {"HOST": {"auth":
/// base64("USER:PASSWORD")}}}`, keys also as `https://HOST` or `https://HOST/v1/`; `username` and
/// `password` fields are taken too). `None` when the file has no entry for `host`; an error names
/// what is wrong with a file that is not such a document (`file` names it).
pub fn credentials_from_auth_file(
    text: &str,
    host: &str,
    file: &str,
) -> Result<Option<(String, String)>, RegistryError> {
    let bad = |why: &str| RegistryError::AuthFile { file: file.to_owned(), why: why.to_owned() };
    let doc: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(&format!("not JSON: {e}")))?;
    let Some(auths) = doc.get("auths") else { return Ok(None) };
    let auths = auths.as_object().ok_or_else(|| bad("\"auths\" is not an object"))?;
    let key_host = |k: &str| {
        let k = k.strip_prefix("https://").or_else(|| k.strip_prefix("http://")).unwrap_or(k);
        k.split('/').next().unwrap_or(k).to_owned()
    };
    let Some((_, entry)) = auths.iter().find(|(k, _)| key_host(k) == host) else { return Ok(None) };
    let field = |name: &str| entry.get(name).and_then(serde_json::Value::as_str).filter(|v| !v.is_empty());
    if let Some(auth) = field("auth") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad(&format!("the \"auth\" of {host} is not base64")))?;
        let text = String::from_utf8(decoded).map_err(|_| bad(&format!("the \"auth\" of {host} is not UTF-8")))?;
        let (user, pass) = text
            .split_once(':')
            .ok_or_else(|| bad(&format!("the \"auth\" of {host} is not base64 of USER:PASSWORD")))?;
        return Ok(Some((user.to_owned(), pass.to_owned())));
    }
    match (field("username"), field("password")) {
        (Some(user), Some(pass)) => Ok(Some((user.to_owned(), pass.to_owned()))),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let r = Reference::parse("docker://registry.heroku.com/my-app/web").unwrap();
        assert_eq!(
            (r.host.as_str(), r.repository.as_str(), r.tag.as_str()),
            ("registry.heroku.com", "my-app/web", "latest")
        );
        assert_eq!(r.base_url(false), "https://registry.heroku.com");
        let r = Reference::parse("docker://127.0.0.1:5000/app:v1").unwrap();
        assert_eq!((r.repository.as_str(), r.tag.as_str()), ("app", "v1"));
        assert_eq!(r.base_url(false), "http://127.0.0.1:5000");
        for bad in
            ["oci:x", "docker://app", "docker://host/App", "docker://h.io/a:b/c:", "docker://h.io/a:-x", "docker:///a"]
        {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
        let file = r#"{"auths":{"registry.heroku.com":{"auth":"XzpzZWNyZXQ="},"https://other.io/v1/":{"username":"u","password":"p"}}}"#;
        assert_eq!(
            credentials_from_auth_file(file, "registry.heroku.com", "f").unwrap(),
            Some(("_".to_owned(), "secret".to_owned()))
        );
        assert_eq!(credentials_from_auth_file(file, "other.io", "f").unwrap(), Some(("u".to_owned(), "p".to_owned())));
        assert_eq!(credentials_from_auth_file(file, "third.io", "f").unwrap(), None);
        for bad in [
            "{",
            r#"{"auths":[]}"#,
            r#"{"auths":{"h.io":{"auth":"!!"}}}"#,
            r#"{"auths":{"h.io":{"auth":"bm9jb2xvbg=="}}}"#,
        ] {
            assert!(credentials_from_auth_file(bad, "h.io", "f").is_err(), "{bad}");
        }
    }
}
