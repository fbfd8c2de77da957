//! `narwhal serve` with real Nix as the client, over every backend, and the
//! requests a hostile client sends.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use narwhal_testkit::garage::Garage;
use narwhal_testkit::isolate::deploy_fixture;
use narwhal_testkit::{closure, file_url, nix, nix_copy_from, nix_copy_to, nix_dump, output, run, tempdir};

use crate::{narwhal, ok};

/// A running `narwhal serve`, stopped (SIGTERM) on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Server {
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = narwhal();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--jobs", "2"]).args(args).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(addr) = line.split("on http://").nth(1) {
                        let _ = tx.send(addr.trim().to_owned());
                    }
                    log.lock().unwrap().push_str(&(line + "\n"));
                }
            });
        }
        let Ok(addr) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            let status = child.wait().unwrap();
            std::thread::sleep(Duration::from_millis(100));
            panic!("narwhal serve did not start ({status}):\n{}", log.lock().unwrap());
        };
        Self { child, addr: addr.parse().unwrap(), log }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        run(std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]));
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("narwhal serve did not stop within 10 s of SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `head` (request line and headers, without the blank line) and `body` as they are, over a new connection.
pub fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = head.replace('\n', "\r\n").into_bytes();
    req.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    req.extend_from_slice(body);
    // The server may answer (and close) before reading a large request; that is not a test failure.
    let _ = s.write_all(&req);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| {
        panic!("no HTTP answer to {head:?}: {:?}", String::from_utf8_lossy(&buf));
    });
    let text = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())))
        .collect::<Vec<_>>();
    let mut body = buf[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v == "chunked") {
        body = dechunk(&body);
    }
    Answer { status, headers, body }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

pub fn get(addr: SocketAddr, path: &str) -> Answer {
    raw(addr, &format!("GET {path} HTTP/1.1\nHost: cache"), b"")
}

fn hash_of(p: &Path) -> String {
    p.file_name().unwrap().to_str().unwrap()[..32].to_owned()
}

pub(crate) fn keys(dir: &Path) -> (PathBuf, String) {
    crate::keys(dir, "serve-test-1")
}

/// Real Nix copies `app` from `url` into a fresh root (signatures required, `key` trusted); byte-identical.
pub(crate) fn nix_copies(url: &str, key: &str, app: &Path, root: &Path) {
    let out = output(&mut nix_copy_from(url, root, key, app));
    assert!(out.status.success(), "nix copy --from {url}: {}", String::from_utf8_lossy(&out.stderr));
    for p in closure(app) {
        assert!(nix_dump(&root.join(p.strip_prefix("/").unwrap())) == nix_dump(&p), "{}", p.display());
    }
}

#[test]
fn nix_reads_a_served_directory_signed_by_the_server() {
    let tmp = tempdir();
    let (sec, public) = keys(tmp.path());
    let app = deploy_fixture("app");
    // An unsigned cache written by Nix, with listings: the server's key is the only signature.
    let cache = tmp.path().join("cache");
    run(nix("nix").args(["copy", "--to", &file_url(&cache, "compression=zstd&write-nar-listing=true")]).arg(&app));
    let server = Server::start(&["--store", cache.to_str().unwrap(), "--key-file", sec.to_str().unwrap()], &[]);
    nix_copies(&server.url(), &public, &app, &tmp.path().join("root"));

    let info = get(server.addr, "/nix-cache-info");
    assert_eq!((info.status, info.header("content-type")), (200, Some("text/x-nix-cache-info")));
    assert_eq!(info.body, std::fs::read(cache.join("nix-cache-info")).unwrap());
    let hash = hash_of(&app);
    let narinfo = get(server.addr, &format!("/{hash}.narinfo"));
    assert_eq!((narinfo.status, narinfo.header("content-type")), (200, Some("text/x-nix-narinfo")));
    assert!(narinfo.text().contains("Sig: serve-test-1:"), "{}", narinfo.text());
    let head = raw(server.addr, &format!("HEAD /{hash}.narinfo HTTP/1.1\nHost: cache"), b"");
    assert_eq!((head.status, head.body.len()), (200, 0));
    let ls = get(server.addr, &format!("/{hash}.ls"));
    assert_eq!((ls.status, ls.header("content-type")), (200, Some("application/json")));
    assert_eq!(ls.body, std::fs::read(cache.join(format!("{hash}.ls"))).unwrap());

    // The NAR as stored, whole and in ranges, never with a Content-Encoding.
    let url = narinfo.text().lines().find_map(|l| l.strip_prefix("URL: ")).unwrap().to_owned();
    let stored = std::fs::read(cache.join(&url)).unwrap();
    let nar = get(server.addr, &format!("/{url}"));
    assert_eq!((nar.status, nar.header("content-type")), (200, Some("application/x-nix-nar")));
    assert_eq!(nar.header("content-encoding"), None);
    assert!(nar.body == stored);
    let part = raw(server.addr, &format!("GET /{url} HTTP/1.1\nHost: cache\nRange: bytes=10-19"), b"");
    assert_eq!(part.status, 206);
    assert_eq!(part.header("content-range"), Some(format!("bytes 10-19/{}", stored.len()).as_str()));
    assert_eq!(part.body, &stored[10..20]);
    let tail = raw(server.addr, &format!("GET /{url} HTTP/1.1\nHost: cache\nRange: bytes=-5"), b"");
    assert_eq!((tail.status, tail.body.as_slice()), (206, &stored[stored.len() - 5..]));
    let beyond = raw(server.addr, &format!("GET /{url} HTTP/1.1\nHost: cache\nRange: bytes=999999999-"), b"");
    assert_eq!(beyond.status, 416);

    // A miss is a plain 404, which Nix reads as "not in this cache".
    assert_eq!(get(server.addr, "/00000000000000000000000000000000.narinfo").status, 404);
    // Each request is one log line that names the client (its address and port), the object and the answer.
    let log = server.log();
    let line = format!(" method=GET path=/{hash}.narinfo status=200 ");
    let client = log.lines().find_map(|l| l.split_once(&line)?.0.split_once(" request client=")).map(|(_, c)| c);
    let port = client.and_then(|c| c.strip_prefix("127.0.0.1:")).and_then(|p| p.parse::<u16>().ok());
    assert!(port.is_some_and(|p| p != server.addr.port()), "no request line naming the client: {log}");
    // Graceful stop on SIGTERM.
    assert!(server.stop().success());
}

#[test]
fn nix_reads_the_local_store_through_the_server() {
    let tmp = tempdir();
    let (sec, public) = keys(tmp.path());
    let app = deploy_fixture("app");
    let server = Server::start(&["--store", "local", "--key-file", sec.to_str().unwrap()], &[]);
    nix_copies(&server.url(), &public, &app, &tmp.path().join("root"));

    // The listing equals the one Nix writes; the nix-serve URL form works and checks the NarHash.
    let reference = tmp.path().join("reference");
    run(nix("nix").args(["copy", "--to", &file_url(&reference, "compression=none&write-nar-listing=true")]).arg(&app));
    let hash = hash_of(&app);
    let ls = get(server.addr, &format!("/{hash}.ls"));
    assert_eq!(ls.status, 200);
    assert_eq!(ls.body, std::fs::read(reference.join(format!("{hash}.ls"))).unwrap());
    let narinfo = get(server.addr, &format!("/{hash}.narinfo")).text();
    let url = narinfo.lines().find_map(|l| l.strip_prefix("URL: ")).unwrap().to_owned();
    assert!(url.starts_with(&format!("nar/{hash}-")), "{url}");
    let nar = get(server.addr, &format!("/{url}"));
    assert_eq!(nar.header("content-length"), Some(nix_dump(&app).len().to_string().as_str()));
    assert!(nar.body == nix_dump(&app));
    assert!(get(server.addr, &format!("/nar/{hash}.nar")).body == nix_dump(&app));
    let stale = format!("/nar/{hash}-{}.nar", "1".repeat(52));
    assert_eq!(get(server.addr, &stale).status, 404);
    let head = raw(server.addr, &format!("HEAD /{url} HTTP/1.1\nHost: cache"), b"");
    assert_eq!((head.status, head.body.len()), (200, 0));
    // Read-only: a PUT is refused whatever the token.
    let put = raw(server.addr, &format!("PUT /{hash}.narinfo HTTP/1.1\nHost: cache\nContent-Length: 2"), b"{}");
    assert_eq!(put.status, 403, "{}", put.text());
}

/// A netrc file giving `token` for 127.0.0.1, as Nix reads it (`netrc-file`).
fn netrc(dir: &Path, token: &str) -> PathBuf {
    let p = dir.join("netrc");
    std::fs::write(&p, format!("machine 127.0.0.1 login nix password {token}\n")).unwrap();
    p
}

#[test]
fn nix_copy_to_the_server_needs_a_push_token() {
    let tmp = tempdir();
    let (sec, public) = keys(tmp.path());
    let app = deploy_fixture("app");
    let cache = tmp.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let token = "push-0123456789abcdef-token";
    let tokens = tmp.path().join("push-tokens");
    std::fs::write(&tokens, format!("# CI\n{token}\n")).unwrap();
    let server = Server::start(&["--store", cache.to_str().unwrap(), "--key-file", sec.to_str().unwrap()], &[]);
    // Without push tokens configured, the server is read-only.
    let refused = output(nix_copy_to(&server.url()).arg(&app));
    assert!(!refused.status.success());
    drop(server);
    let server = Server::start(
        &[
            "--store",
            cache.to_str().unwrap(),
            "--key-file",
            sec.to_str().unwrap(),
            "--push-token-file",
            tokens.to_str().unwrap(),
        ],
        &[],
    );
    let no_token = output(nix_copy_to(&server.url()).arg(&app));
    assert!(!no_token.status.success(), "nix copy without a token succeeded");
    let wrong = netrc(tmp.path(), "not-the-token-at-all");
    let out = output(nix_copy_to(&server.url()).args(["--option", "netrc-file"]).arg(&wrong).arg(&app));
    assert!(!out.status.success(), "nix copy with a wrong token succeeded");
    assert!(narwhal_testkit::files_with_suffix(&cache, ".narinfo").is_empty(), "a refused push wrote a narinfo");

    let good = netrc(tmp.path(), token);
    let out = output(nix_copy_to(&server.url()).args(["--option", "netrc-file"]).arg(&good).arg(&app));
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), server.log());
    assert_eq!(narwhal_testkit::files_with_suffix(&cache, ".narinfo").len(), closure(&app).len());
    // Another Nix reads back what the first one pushed, signed by the server.
    nix_copies(&server.url(), &public, &app, &tmp.path().join("root"));
    let metrics = get(server.addr, "/metrics").text();
    assert!(metrics.contains(&format!("narwhal_narinfos_committed_total {}", closure(&app).len())), "{metrics}");
    assert!(metrics.contains("narwhal_writes_refused_total"), "{metrics}");
}

#[test]
fn two_servers_over_one_bucket_answer_alike() {
    let garage = Garage::start();
    let bucket = garage.create_bucket("served");
    let tmp = tempdir();
    let (sec, public) = keys(tmp.path());
    let app = deploy_fixture("app");
    let s3 = garage.s3_url(&bucket.name);
    let env = [("AWS_ACCESS_KEY_ID", bucket.key_id.as_str()), ("AWS_SECRET_ACCESS_KEY", bucket.secret.as_str())];
    let mut push = narwhal();
    push.arg("push").arg(&app).args(["--to", &s3, "--key-file"]).arg(&sec).envs(env);
    ok(&mut push);
    let a = Server::start(&["--store", &s3], &env);
    let b = Server::start(&["--store", &s3], &env);
    nix_copies(&a.url(), &public, &app, &tmp.path().join("root"));
    for p in closure(&app) {
        let path = format!("/{}.narinfo", hash_of(&p));
        let (x, y) = (get(a.addr, &path), get(b.addr, &path));
        assert_eq!((x.status, &x.body), (y.status, &y.body));
        let url = x.text().lines().find_map(|l| l.strip_prefix("URL: ")).unwrap().to_owned();
        let (x, y) = (get(a.addr, &format!("/{url}")), get(b.addr, &format!("/{url}")));
        assert_eq!(x.status, 200);
        assert!(x.body == y.body);
        let head = raw(b.addr, &format!("HEAD /{url} HTTP/1.1\nHost: cache"), b"");
        assert_eq!((head.status, head.body.len()), (200, 0));
    }
    assert_eq!(raw(a.addr, "HEAD /nar/0000.nar.xz HTTP/1.1\nHost: cache", b"").status, 404);
    assert_eq!(get(a.addr, "/nix-cache-info").body, get(b.addr, "/nix-cache-info").body);
    assert_eq!(get(b.addr, "/00000000000000000000000000000000.narinfo").status, 404);
}

#[test]
fn hostile_requests_get_a_4xx_write_nothing_and_leak_no_path() {
    let tmp = tempdir();
    let app = deploy_fixture("app");
    let data = deploy_fixture("data");
    let cache = tmp.path().join("secret-cache-dir");
    run(nix("nix").args(["copy", "--to", &file_url(&cache, "compression=xz")]).arg(&data));
    let token = "push-0123456789abcdef-token";
    let tokens = tmp.path().join("tokens");
    std::fs::write(&tokens, format!("{token}\n")).unwrap();
    let server =
        Server::start(&["--store", cache.to_str().unwrap(), "--push-token-file", tokens.to_str().unwrap()], &[]);
    let addr = server.addr;
    let before = listing(&cache);
    let leaks = |a: &Answer| a.text().contains("secret-cache-dir") || a.text().contains("/tmp");

    for path in [
        "/nar/../nix-cache-info",
        "/nar/..%2F..%2Fetc%2Fpasswd",
        "/nar/%2e%2e%2fnix-cache-info",
        "/..%2f..%2fetc%2fpasswd",
        "/log/..%2F..%2Fetc%2Fpasswd",
        "/pins/..%2Fnix-cache-info",
        "/not-a-hash.narinfo",
        "/0000000000000000000000000000000e.narinfo",
        "/aaaa.narinfo",
        "/nar/x.tar",
        "/%00.narinfo",
    ] {
        let a = get(addr, path);
        assert!((400..500).contains(&a.status), "{path}: {} {}", a.status, a.text());
        assert!(!leaks(&a), "{path}: {}", a.text());
    }
    // Huge headers.
    let big = format!("GET /nix-cache-info HTTP/1.1\nHost: cache\nX-Big: {}", "a".repeat(200 * 1024));
    let a = raw(addr, &big, b"");
    assert!((400..500).contains(&a.status), "{}", a.status);

    // Writes: without a token, then with a narinfo that lies about its NAR, misses its NAR, or its references.
    let auth = format!("Authorization: Bearer {token}");
    let hash = hash_of(&data);
    let good = std::fs::read_to_string(cache.join(format!("{hash}.narinfo"))).unwrap();
    let put = |path: &str, headers: &str, body: &[u8]| {
        raw(addr, &format!("PUT {path} HTTP/1.1\nHost: cache\nContent-Length: {}\n{headers}", body.len()), body)
    };
    let a = put(&format!("/{hash}.narinfo"), "X-No: token", good.as_bytes());
    assert_eq!(a.status, 401, "{}", a.text());
    let a = put(&format!("/{hash}.narinfo"), "Authorization: Bearer wrong-token-0123456789", good.as_bytes());
    assert_eq!(a.status, 401, "{}", a.text());
    let lying = good
        .lines()
        .map(|l| if l.starts_with("NarHash: ") { format!("NarHash: sha256:{}", "1".repeat(52)) } else { l.to_owned() })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    let a = put(&format!("/{hash}.narinfo"), &auth, lying.as_bytes());
    assert_eq!(a.status, 400, "{}", a.text());
    assert!(a.text().contains("NarHash"), "{}", a.text());
    let no_nar = good
        .lines()
        .map(|l| if l.starts_with("URL: ") { "URL: nar/0000.nar.xz".to_owned() } else { l.to_owned() })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    let a = put(&format!("/{hash}.narinfo"), &auth, no_nar.as_bytes());
    assert_eq!(a.status, 409, "{}", a.text());
    let traversal = good.replace("URL: nar/", "URL: ../../nar/");
    assert_eq!(put(&format!("/{hash}.narinfo"), &auth, traversal.as_bytes()).status, 400);
    let wrong_name = put(&format!("/{}.narinfo", "1".repeat(32)), &auth, good.as_bytes());
    assert_eq!(wrong_name.status, 400, "{}", wrong_name.text());
    // The app's narinfo names references this cache lacks.
    let app_cache = tmp.path().join("app-cache");
    run(nix("nix").args(["copy", "--to", &file_url(&app_cache, "compression=xz")]).arg(&app));
    let app_hash = hash_of(&app);
    let app_narinfo = std::fs::read_to_string(app_cache.join(format!("{app_hash}.narinfo"))).unwrap();
    let app_url = app_narinfo.lines().find_map(|l| l.strip_prefix("URL: ")).unwrap().to_owned();
    let nar = std::fs::read(app_cache.join(&app_url)).unwrap();
    assert_eq!(put(&format!("/{app_url}"), &auth, &nar).status, 204);
    let a = put(&format!("/{app_hash}.narinfo"), &auth, app_narinfo.as_bytes());
    assert_eq!(a.status, 409, "{}", a.text());
    assert!(a.text().contains("reference"), "{}", a.text());
    assert!(!cache.join(format!("{app_hash}.narinfo")).exists());
    // A pin of a path the cache lacks.
    let pin = format!("Name: web\nStorePath: {}\nCreated: 1\n", app.display());
    assert_eq!(put("/pins/web", &auth, pin.as_bytes()).status, 409);
    let a = put(&format!("/{hash}.narinfo"), &auth, lying.as_bytes());
    assert!(!leaks(&a), "{}", a.text());
    // Nothing changed but the NAR stored above, and no temporary file is left.
    let mut after = listing(&cache);
    after.retain(|p| *p != app_url);
    assert_eq!(before, after);
    let upload = |name: &str| name.starts_with(".narwhal-upload-") && name.contains(&format!(".tmp-{}-", server.pid()));
    assert!(std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .all(|e| !upload(&e.unwrap().file_name().to_string_lossy())));
    // And the honest narinfo is accepted (it is already there: a rewrite is harmless).
    assert_eq!(put(&format!("/{hash}.narinfo"), &auth, good.as_bytes()).status, 204);
}

/// Every file under `dir`, relative, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_bounded_load_of_hits_misses_and_nars_gets_no_errors() {
    let tmp = tempdir();
    let app = deploy_fixture("app");
    let cache = tmp.path().join("cache");
    run(nix("nix").args(["copy", "--to", &file_url(&cache, "compression=zstd")]).arg(&app));
    let server = Server::start(&["--store", cache.to_str().unwrap()], &[("NARWHAL_LOG", "warn")]);
    let hit = format!("{}/{}.narinfo", server.url(), hash_of(&app));
    let miss = format!("{}/{}.narinfo", server.url(), "0".repeat(32));
    let narinfo = std::fs::read_to_string(cache.join(format!("{}.narinfo", hash_of(&app)))).unwrap();
    let nar = format!("{}/{}", server.url(), narinfo.lines().find_map(|l| l.strip_prefix("URL: ")).unwrap());
    let wrk = |url: &str| {
        let mut c = std::process::Command::new("wrk");
        c.args(["-t1", "-c8", "-d3s", "--timeout", "5s", url]).stdout(Stdio::piped()).stderr(Stdio::piped());
        c.spawn().unwrap()
    };
    let runs = [wrk(&hit), wrk(&miss), wrk(&nar)];
    let outs: Vec<String> =
        runs.into_iter().map(|c| String::from_utf8_lossy(&c.wait_with_output().unwrap().stdout).into_owned()).collect();
    for (name, out) in ["hits", "misses", "nars"].iter().zip(&outs) {
        assert!(!out.contains("Socket errors"), "{name}: {out}");
        let requests: u64 = out
            .lines()
            .find_map(|l| l.trim().split_once(" requests in").map(|(n, _)| n.trim().parse().unwrap()))
            .unwrap_or_else(|| panic!("{name}: {out}"));
        assert!(requests > 0, "{name}: {out}");
        let non_2xx: u64 = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:").map(|n| n.trim().parse().unwrap()))
            .unwrap_or(0);
        // Misses are all 404, the rest all 200.
        assert_eq!(non_2xx, if *name == "misses" { requests } else { 0 }, "{name}: {out}");
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(hwm_kib < 128 * 1024, "peak RSS {hwm_kib} KiB");
    let metrics = get(server.addr, "/metrics").text();
    assert!(metrics.contains("narwhal_narinfo_misses_total"), "{metrics}");
    assert_eq!(get(server.addr, "/health").text(), "ok\n");
}

#[test]
fn bad_configuration_is_one_line_and_a_hint() {
    let tmp = tempdir();
    let bad_key = tmp.path().join("bad.sec");
    std::fs::write(&bad_key, "not a key").unwrap();
    let cache = tmp.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let fails = |args: &[&str]| {
        let out = output(narwhal().arg("serve").args(args));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.lines().any(|l| l.starts_with("error: ")), "{stderr}");
        stderr
    };
    let e = fails(&["--store", cache.to_str().unwrap(), "--key-file", bad_key.to_str().unwrap()]);
    assert!(e.contains("bad.sec") && e.contains("hint: "), "{e}");
    let e = fails(&["--store", tmp.path().join("nope").to_str().unwrap()]);
    assert!(e.contains("does not exist"), "{e}");
    let e = fails(&[]);
    assert!(e.contains("no store") && e.contains("hint: "), "{e}");
    let config = tmp.path().join("serve.toml");
    std::fs::write(&config, "store = \"/srv\"\nlisten_on = \"x\"\n").unwrap();
    let e = fails(&["--config", config.to_str().unwrap()]);
    assert!(e.contains("listen-on"), "{e}");
    let short = tmp.path().join("short");
    std::fs::write(&short, "abc\n").unwrap();
    let e = fails(&["--store", cache.to_str().unwrap(), "--push-token-file", short.to_str().unwrap()]);
    assert!(e.contains("shorter than 16"), "{e}");
}

#[test]
fn private_reads_need_a_read_or_push_token() {
    let tmp = tempdir();
    let (sec, public) = keys(tmp.path());
    let app = deploy_fixture("app");
    let cache = tmp.path().join("cache");
    run(nix("nix").args(["copy", "--to", &file_url(&cache, "compression=xz")]).arg(&app));
    let (read, push) = (tmp.path().join("read-tokens"), tmp.path().join("push-tokens"));
    std::fs::write(&read, "read-0123456789abcdef-token\n").unwrap();
    std::fs::write(&push, "push-0123456789abcdef-token\n").unwrap();
    let server = Server::start(
        &[
            "--store",
            cache.to_str().unwrap(),
            "--key-file",
            sec.to_str().unwrap(),
            "--read-token-file",
            read.to_str().unwrap(),
            "--push-token-file",
            push.to_str().unwrap(),
        ],
        &[],
    );
    let denied = get(server.addr, &format!("/{}.narinfo", hash_of(&app)));
    assert_eq!(denied.status, 401);
    assert!(denied.header("www-authenticate").is_some_and(|v| v.starts_with("Basic")));
    assert_eq!(get(server.addr, "/health").status, 200);
    let out = output(&mut nix_copy_from(&server.url(), &tmp.path().join("denied"), &public, &app));
    assert!(!out.status.success(), "nix copy read a private cache without a token");
    // Nix sends the netrc password as Basic auth; a read token reads, and cannot write.
    let netrc = netrc(tmp.path(), "read-0123456789abcdef-token");
    let root = tmp.path().join("root");
    let out = output(nix_copy_from(&server.url(), &root, &public, &app).arg("--option").arg("netrc-file").arg(&netrc));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for p in closure(&app) {
        assert!(nix_dump(&root.join(p.strip_prefix("/").unwrap())) == nix_dump(&p), "{}", p.display());
    }
    // narwhal reads it the same way: the netrc entry for the host, nothing without it.
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let fetch = |dest: &str| {
        let mut c = narwhal();
        c.args(["fetch", "--from", &server.url(), "--trusted-public-key", &public, "--to"])
            .arg(tmp.path().join(dest))
            .arg(&app)
            .env("HOME", &home)
            .env_remove("NETRC");
        c
    };
    let err = crate::fails(&mut fetch("no-netrc"));
    assert!(err.contains("HTTP 401: the cache wants credentials (sent no credentials)"), "{err}");
    assert!(err.contains("hint: the cache is private") && err.contains("netrc"), "{err}");
    assert!(!tmp.path().join("no-netrc").join(app.file_name().unwrap()).exists());
    ok(fetch("with-netrc").env("NETRC", &netrc));
    for p in closure(&app) {
        let got = tmp.path().join("with-netrc").join(p.file_name().unwrap());
        assert!(nix_dump(&got) == nix_dump(&p), "{}", p.display());
    }
    let pin = format!("Name: web\nStorePath: {}\nCreated: 1\n", app.display());
    let head = format!(
        "PUT /pins/web HTTP/1.1\nHost: cache\nContent-Length: {}\nAuthorization: Bearer read-0123456789abcdef-token",
        pin.len()
    );
    assert_eq!(raw(server.addr, &head, pin.as_bytes()).status, 403);
    let head = head.replace("read-0123", "push-0123");
    assert_eq!(raw(server.addr, &head, pin.as_bytes()).status, 204);
    let got =
        raw(server.addr, "GET /pins/web HTTP/1.1\nHost: cache\nAuthorization: Bearer push-0123456789abcdef-token", b"");
    assert_eq!(got.body, pin.as_bytes());
}

#[test]
fn narwhal_push_and_pin_go_through_the_server_and_fetch_reads_them() {
    let tmp = tempdir();
    let (sec, public) = keys(tmp.path());
    let app = deploy_fixture("app");
    let cache = tmp.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let token = "push-0123456789abcdef-token";
    let tokens = tmp.path().join("push-tokens");
    std::fs::write(&tokens, format!("{token}\n")).unwrap();
    let server =
        Server::start(&["--store", cache.to_str().unwrap(), "--push-token-file", tokens.to_str().unwrap()], &[]);
    let url = server.url();
    let out = output(
        narwhal().arg("push").arg(&app).args(["--to", &url, "--key-file"]).arg(&sec).env("NARWHAL_PUSH_TOKEN", token),
    );
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), server.log());
    assert_eq!(narwhal_testkit::files_with_suffix(&cache, ".narinfo").len(), closure(&app).len());
    // The server checked each narinfo against its NAR and references on the way in.
    let metrics = get(server.addr, "/metrics").text();
    assert!(metrics.contains(&format!("narwhal_narinfos_committed_total {}", closure(&app).len())), "{metrics}");
    ok(narwhal().args(["pin", "web"]).arg(&app).args(["--to", &url, "--rev", "r1"]).env("NARWHAL_PUSH_TOKEN", token));
    // A second push finds everything there.
    let out = output(
        narwhal().arg("push").arg(&app).args(["--to", &url, "--key-file"]).arg(&sec).env("NARWHAL_PUSH_TOKEN", token),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 uploaded"), "{}", String::from_utf8_lossy(&out.stderr));
    // The deploy side resolves the pin over HTTP and fetches the closure, signatures checked.
    let dest = tmp.path().join("dest");
    ok(narwhal().args(["fetch", "pin:web@r1", "--from", &url, "--trusted-public-key", &public, "--to"]).arg(&dest));
    for p in closure(&app) {
        assert!(nix_dump(&dest.join(p.file_name().unwrap())) == nix_dump(&p), "{}", p.display());
    }
}
