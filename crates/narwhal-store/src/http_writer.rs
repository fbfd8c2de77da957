//! Writing to a cache over HTTP(S) as `nix copy --to http://…` does (Nix's
//! `HttpBinaryCacheStore`): one `PUT` of each object's body with its
//! `Content-Type` (`text/x-nix-narinfo`, `application/x-nix-nar`,
//! `text/x-nix-cache-info`), `HEAD` for existence (404, 410 and, as in Nix, 403 are absent),
//! `DELETE` for removal. Any server that stores what it is `PUT` works: nginx
//! with `dav_methods PUT DELETE`, `narwhal serve` with a push token, most
//! object stores' HTTP front ends.
//!
//! NARs stream from their file (never buffered whole), with a timeout that
//! grows with the size (at least 256 KiB/s). Transient failures (connection
//! errors, 5xx, 429, 408) are retried by [`HttpOptions::retry`], each attempt
//! sending the whole object again; the server decides atomicity (nginx writes
//! a temporary file and renames it). A plain HTTP server cannot list
//! directories, so [`CacheWriter::list`] is an error.
//!
//! Credentials ([`HttpAuth::resolve`]), first match wins: a token the caller
//! gives (`--token-file`), the settings' push token (`NARWHAL_PUSH_TOKEN`; both sent as
//! `Authorization: Bearer …`), then the host's `login`/`password` from the settings'
//! netrc files (the binary lists `$NETRC`, `~/.netrc`, then Nix's `netrc-file`),
//! sent as Basic authentication, as Nix (curl) sends them.
//! Secrets never appear in messages or `Debug` output; a 401 or 403 is a
//! [`StoreErrorKind::Refused`] error saying which credentials were sent.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Method;

use crate::error::{StoreError, StoreErrorKind};
use crate::http::{send_get, HttpCache};
use crate::{BinaryCache as _, CacheWriter, Settings};

/// The slowest upload tolerated before a NAR's `PUT` times out, in bytes per second.
const MIN_UPLOAD_RATE: u64 = 256 << 10;

/// Credentials sent with every request to an HTTP cache.
#[derive(Clone, Default)]
pub enum HttpAuth {
    #[default]
    None,
    /// `Authorization: Bearer TOKEN`; `from` says where the token came from.
    Bearer { token: String, from: String },
    /// Basic authentication, from a netrc file.
    Basic { login: String, password: String, from: String },
}

impl fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl HttpAuth {
    /// The credentials for the cache at `base` (`http(s)://host[:port]/path`): `token` (read by
    /// the caller from a token file, `from` naming it) if given, else the settings' push token, else
    /// the host's entry in the first of the settings' netrc files that has one.
    pub fn resolve(base: &str, token: Option<(String, String)>, settings: &Settings) -> Result<Self, StoreError> {
        if let Some((token, from)) = token.or_else(|| settings.push_token.clone()) {
            return Self::bearer(base, token.trim(), from);
        }
        Ok(Self::resolve_netrc(base, &settings.netrc_files))
    }

    /// The credentials for reading the cache at `base`: only the host's entry in the first of
    /// `netrc_files` that has one, as Nix reads substituters, so no token meant for one host goes
    /// to another.
    pub fn resolve_netrc(base: &str, netrc_files: &[PathBuf]) -> Self {
        let host = host_of(base);
        for file in netrc_files {
            let Ok(text) = std::fs::read_to_string(file) else { continue };
            if let Some((login, password)) = netrc_lookup(&text, host) {
                return Self::Basic { login, password, from: file.display().to_string() };
            }
        }
        Self::None
    }

    fn bearer(base: &str, token: &str, from: String) -> Result<Self, StoreError> {
        if token.is_empty() || token.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(StoreError::new(base, StoreErrorKind::BadToken { from }));
        }
        Ok(Self::Bearer { token: token.to_owned(), from })
    }

    /// What is sent, for messages (never the secret).
    pub fn describe(&self) -> String {
        match self {
            Self::None => "no credentials".to_owned(),
            Self::Bearer { from, .. } => format!("a Bearer token from {from}"),
            Self::Basic { login, from, .. } => format!("Basic credentials for {login:?} from {from}"),
        }
    }

    pub(crate) fn apply(&self, request: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
        match self {
            Self::None => request,
            Self::Bearer { token, .. } => request.bearer_auth(token),
            Self::Basic { login, password, .. } => request.basic_auth(login, Some(password)),
        }
    }
}

/// The host of `http(s)://[user@]host[:port]/…`, without the port (netrc entries name hosts).
fn host_of(base: &str) -> &str {
    let rest = base.split_once("://").map_or(base, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = host.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    host.split(':').next().unwrap_or(host)
}

/// The `login` and `password` of `host` (else of the `default` entry) in a netrc file's text.
pub fn netrc_lookup(text: &str, host: &str) -> Option<(String, String)> {
    // (machine, None for `default`), login, password
    let mut entries: Vec<(Option<&str>, Option<&str>, Option<&str>)> = Vec::new();
    let mut tokens = text.split_whitespace();
    while let Some(token) = tokens.next() {
        match token {
            "machine" => entries.push((Some(tokens.next().unwrap_or_default()), None, None)),
            "default" => entries.push((None, None, None)),
            "login" | "password" | "account" => {
                let value = tokens.next();
                if let Some(entry) = entries.last_mut() {
                    match token {
                        "login" => entry.1 = value,
                        "password" => entry.2 = value,
                        _ => {}
                    }
                }
            }
            // A macro's body holds no credentials; stop there.
            "macdef" => break,
            _ => {}
        }
    }
    let credentials =
        |e: &(Option<&str>, Option<&str>, Option<&str>)| Some((e.1.unwrap_or_default().to_owned(), e.2?.to_owned()));
    entries
        .iter()
        .find(|e| e.0 == Some(host))
        .and_then(credentials)
        .or_else(|| entries.iter().find(|e| e.0.is_none()).and_then(credentials))
}

impl HttpCache {
    /// The error for a response with `status`: a refusal names the credentials sent.
    fn status_error(&self, url: &str, method: &Method, status: u16, attempt: u32) -> StoreError {
        if status == 401 || status == 403 {
            let what = format!("{method} {url}");
            StoreError::new(what, StoreErrorKind::Refused { status, sent: self.auth.describe() })
        } else {
            StoreError::new(url, StoreErrorKind::Status { status, attempts: attempt })
        }
    }

    /// Sends `request` once; success is any 2xx, and for `DELETE` also 404 and 410.
    fn send_write(
        &self,
        method: &Method,
        url: &str,
        request: reqwest::blocking::RequestBuilder,
        attempt: u32,
    ) -> Result<(), StoreError> {
        match request.send() {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) if *method == Method::DELETE && matches!(resp.status().as_u16(), 404 | 410) => Ok(()),
            Ok(resp) => {
                let status = resp.status().as_u16();
                // A refusal with a reason (narwhal serve explains its 4xx in the body's first line).
                let reason = resp
                    .text()
                    .ok()
                    .and_then(|t| t.lines().next().map(|l| l.trim().chars().take(300).collect::<String>()));
                match reason {
                    Some(reason)
                        if (400..500).contains(&status)
                            && !matches!(status, 401 | 403 | 408 | 429)
                            && !reason.is_empty() =>
                    {
                        Err(StoreError::new(url, StoreErrorKind::Rejected { status, reason }))
                    }
                    _ => Err(self.status_error(url, method, status, attempt)),
                }
            }
            Err(e) => Err(StoreError::new(url, StoreErrorKind::Transport { attempts: attempt, source: Box::new(e) })),
        }
    }
}

impl CacheWriter for HttpCache {
    fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let url = self.url_of(key)?;
        // As Nix: 403 is absent too (S3 behind HTTP answers 403 for a missing key when it may not list).
        let found = self.options.retry(|attempt| match send_get(self.request(Method::HEAD, &url), &url, attempt) {
            Err(StoreError { kind: StoreErrorKind::Status { status: 403, .. }, .. }) => Ok(None),
            Err(StoreError { kind: StoreErrorKind::Status { status: 401, .. }, .. }) => {
                Err(self.status_error(&url, &Method::HEAD, 401, attempt))
            }
            other => other,
        })?;
        Ok(found.is_some())
    }

    fn put(&self, key: &str, data: &[u8], content_type: &str) -> Result<(), StoreError> {
        let url = self.url_of(key)?;
        self.options.retry(|attempt| {
            let request = self.request(Method::PUT, &url).header("Content-Type", content_type).body(data.to_vec());
            self.send_write(&Method::PUT, &url, request, attempt)
        })
    }

    fn put_file(&self, key: &str, file: &Path, content_type: &str) -> Result<(), StoreError> {
        let url = self.url_of(key)?;
        let io = |e| StoreError::new(file.display().to_string(), StoreErrorKind::Io(e));
        let len = std::fs::metadata(file).map_err(io)?.len();
        let timeout = self.options.timeout + Duration::from_secs(len / MIN_UPLOAD_RATE);
        self.options.retry(|attempt| {
            let body = reqwest::blocking::Body::sized(File::open(file).map_err(io)?, len);
            let request =
                self.request(Method::PUT, &url).header("Content-Type", content_type).timeout(timeout).body(body);
            self.send_write(&Method::PUT, &url, request, attempt)
        })
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let url = self.url_of(key)?;
        self.options
            .retry(|attempt| self.send_write(&Method::DELETE, &url, self.request(Method::DELETE, &url), attempt))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Err(StoreError::new(
            format!("{}/{prefix}", self.url()),
            StoreErrorKind::Unsupported(
                "an HTTP cache cannot list its keys; list or prune pins where the cache's files are (file:// or s3://)",
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netrc_entries() {
        let text = "machine a.example login alice password s1\n\
                    machine cache.example.org\n  login ci\n  password s3cret\n\
                    default login anon password guest\n";
        assert_eq!(netrc_lookup(text, "cache.example.org"), Some(("ci".into(), "s3cret".into())));
        assert_eq!(netrc_lookup(text, "a.example"), Some(("alice".into(), "s1".into())));
        assert_eq!(netrc_lookup(text, "other"), Some(("anon".into(), "guest".into())));
        assert_eq!(netrc_lookup("machine x login u password p", "y"), None);
        assert_eq!(netrc_lookup("machine x login u", "x"), None);
        assert_eq!(
            netrc_lookup("machine x account z password p macdef m\nmachine y", "x"),
            Some((String::new(), "p".into()))
        );
    }

    #[test]
    fn hosts_without_ports_or_users() {
        assert_eq!(host_of("http://127.0.0.1:8080/cache"), "127.0.0.1");
        assert_eq!(host_of("https://u@cache.example.org"), "cache.example.org");
        assert_eq!(host_of("http://[::1]:80/x"), "::1");
    }

    #[test]
    fn resolution_order_and_no_secrets_in_messages() {
        let home = std::env::temp_dir().join(format!("narwhal-netrc-{}", std::process::id()));
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join(".netrc"), "machine h login u password hunter2\n").unwrap();
        let settings = |token: Option<&str>| Settings {
            netrc_files: vec![home.join("absent"), home.join(".netrc")],
            push_token: token.map(|t| (t.to_owned(), "$NARWHAL_PUSH_TOKEN".to_owned())),
            ..Settings::default()
        };
        let a = HttpAuth::resolve("http://h:1/c", None, &settings(None)).unwrap();
        assert!(matches!(&a, HttpAuth::Basic { login, .. } if login == "u"));
        assert!(!format!("{a:?}").contains("hunter2"));
        let a = HttpAuth::resolve("http://h:1/c", None, &settings(Some("tok"))).unwrap();
        assert!(matches!(&a, HttpAuth::Bearer { token, .. } if token == "tok"));
        assert_eq!(a.describe(), "a Bearer token from $NARWHAL_PUSH_TOKEN");
        let a =
            HttpAuth::resolve("http://h/c", Some(("file\n".into(), "t.txt".into())), &settings(Some("tok"))).unwrap();
        assert!(matches!(&a, HttpAuth::Bearer { token, .. } if token == "file"));
        assert!(HttpAuth::resolve("http://h/c", Some((" ".into(), "t".into())), &settings(None)).is_err());
        assert!(matches!(HttpAuth::resolve("http://other/c", None, &settings(None)).unwrap(), HttpAuth::None));
        std::fs::remove_dir_all(&home).unwrap();
    }
}
