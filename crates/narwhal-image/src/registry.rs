//! Pushing an image to a registry (the distribution v2 API, as docker, skopeo and Heroku's registry
//! speak it): every blob the registry lacks is uploaded (HEAD first, then POST and one PUT with the
//! digest), and the manifest last, exactly the bytes that were hashed: the tag moves only then.
//!
//! Authentication: anonymous first; on a 401 the challenge decides: `Basic` sends the credentials,
//! `Bearer realm=…,service=…,scope=…` (the Docker token flow) fetches a token from the realm with
//! them and sends it. Credentials never follow a redirect to another host (reqwest drops the
//! `Authorization` header then). Transient failures (connection errors, 5xx, 429) are retried
//! through the one retry loop.

use std::fs::File;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use narwhal_store::retry::Retry;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::{Method, StatusCode};

use crate::oci::{Descriptor, Layout};

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
    Status { what: String, host: String, status: u16, body: String },
    #[error("the registry {host} wants credentials ({challenge}) and {}", if *.sent { "refused the ones sent" } else { "none were given" })]
    Unauthorized { host: String, challenge: String, sent: bool },
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
            Self::Unreachable { .. } => Some("check the registry's host and port; loopback registries are spoken to over plain HTTP, others over HTTPS unless --insecure"),
            Self::Reference { .. } => Some("name the destination as docker://HOST/REPOSITORY[:TAG], e.g. docker://registry.heroku.com/APP/web"),
            _ => None,
        }
    }

    fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            _ => false,
        }
    }
}

/// What a push did.
#[derive(Debug, Clone, Default)]
pub struct PushReport {
    /// Blobs the registry already had (HEAD only).
    pub skipped: usize,
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
    /// Blobs a HEAD already found in the repository.
    known: Mutex<std::collections::BTreeSet<String>>,
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
            known: Mutex::new(std::collections::BTreeSet::new()),
            retry: Retry { attempts: 4, initial_backoff: Duration::from_millis(500) },
        })
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
        let done = narwhal_store::parallel::try_map(blobs, jobs, |blob| self.push_blob(layout, blob))?;
        let mut report = PushReport::default();
        for (blob, uploaded) in blobs.iter().zip(done) {
            if uploaded {
                report.uploaded += 1;
                report.uploaded_bytes += blob.size;
            } else {
                report.skipped += 1;
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

    /// Whether the repository has `blob` (HEAD); an error counts as no.
    pub fn has_blob(&self, blob: &Descriptor) -> bool {
        let url = format!("{}/v2/{}/blobs/{}", self.base, self.reference.repository, blob.digest);
        // One try: a probe that fails only costs building the layer.
        let once = Retry { attempts: 1, initial_backoff: Duration::ZERO };
        let found = matches!(self.send_raw(&Method::HEAD, &url, &|r| r, once).map(|r| r.status()), Ok(StatusCode::OK));
        if found {
            self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(blob.digest.clone());
        }
        found
    }

    /// One blob: nothing if the registry has it, else POST an upload and PUT the file from `layout`
    /// (which must hold every blob the repository lacks). True if uploaded.
    fn push_blob(&self, layout: &Layout, blob: &Descriptor) -> Result<bool, RegistryError> {
        let repo = &self.reference.repository;
        let url = format!("{}/v2/{repo}/blobs/{}", self.base, blob.digest);
        if self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(&blob.digest) {
            return Ok(false);
        }
        let head = self.send_status(&format!("checking for {}", blob.digest), &Method::HEAD, &url, |r| r)?;
        if head == StatusCode::OK {
            return Ok(false);
        }
        let start = format!("{}/v2/{repo}/blobs/uploads/", self.base);
        let what = format!("starting the upload of {}", blob.digest);
        let response = self.send(&what, &Method::POST, &start, |r| r.header("Content-Length", "0"))?;
        let location =
            response.headers().get("Location").and_then(|l| l.to_str().ok()).map(str::to_owned).ok_or_else(|| {
                RegistryError::Status {
                    what: what.clone(),
                    host: self.reference.host.clone(),
                    status: response.status().as_u16(),
                    body: "no Location header".to_owned(),
                }
            })?;
        let location = if location.starts_with('/') { format!("{}{location}", self.base) } else { location };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest={}", blob.digest);
        let path = layout.blob_path(&blob.digest);
        let what = format!("uploading {}", blob.digest);
        self.send(&what, &Method::PUT, &put, |r| {
            match File::open(&path) {
                Ok(file) => r
                    .header("Content-Type", "application/octet-stream")
                    .header("Content-Length", blob.size.to_string())
                    .body(reqwest::blocking::Body::sized(file, blob.size)),
                // Sent empty: the registry refuses the digest, and the error names the blob.
                Err(_) => r.body(Vec::new()),
            }
        })?;
        Ok(true)
    }

    fn send(
        &self,
        what: &str,
        method: &Method,
        url: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let response = self.send_raw(method, url, &build, self.retry)?;
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
        let response = self.send_raw(method, url, &build, self.retry)?;
        match response.status() {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(s),
            _ => Err(self.status_error(what, response)),
        }
    }

    fn status_error(&self, what: &str, response: Response) -> RegistryError {
        let status = response.status().as_u16();
        let body: String = response.text().unwrap_or_default().lines().next().unwrap_or("").chars().take(300).collect();
        RegistryError::Status { what: what.to_owned(), host: self.reference.host.clone(), status, body }
    }

    /// Sends with the current credentials; on a 401 answers the challenge once and sends again.
    fn send_raw(
        &self,
        method: &Method,
        url: &str,
        build: &dyn Fn(RequestBuilder) -> RequestBuilder,
        retry: Retry,
    ) -> Result<Response, RegistryError> {
        retry.run(
            RegistryError::is_transient,
            |_, _, _| {},
            |_| {
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
            },
        )
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

/// The credentials for `host` in a docker/skopeo auth file (`{"auths": {"HOST": {"auth": base64(user:pass)}}}`).
pub fn credentials_from_auth_file(text: &str, host: &str) -> Option<(String, String)> {
    let doc: serde_json::Value = serde_json::from_str(text).ok()?;
    let auths = doc.get("auths")?.as_object()?;
    let entry = auths.get(host).or_else(|| auths.get(&format!("https://{host}")))?;
    let auth = entry.get("auth")?.as_str()?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(auth).ok()?;
    let (user, pass) = String::from_utf8(decoded).ok()?.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned()))?;
    Some((user, pass))
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
        let file = r#"{"auths":{"registry.heroku.com":{"auth":"XzpzZWNyZXQ="}}}"#;
        assert_eq!(
            credentials_from_auth_file(file, "registry.heroku.com"),
            Some(("_".to_owned(), "secret".to_owned()))
        );
        assert_eq!(credentials_from_auth_file(file, "other.io"), None);
    }
}
