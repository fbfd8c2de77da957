//! A real S3 server on loopback: a single-node Garage 2.x in a temporary directory, with buckets
//! and keys made through its CLI. Tests that need it fail (never skip) when `garage` is missing:
//! `cargo install garage --locked` installs it (set `GARAGE` to use another binary).
//!
//! The S3 API is at [`Garage::s3_endpoint`], region [`REGION`], addressed path-style
//! (`ENDPOINT/bucket/key`). A bucket opened with [`Garage::allow_website`] is also served read-only
//! over plain HTTP on the web port, where the `Host` header picks the bucket: `<bucket>.web.garage`
//! ([`Garage::web_host`]). Nothing resolves that name, so a client connects to [`Garage::web_addr`]
//! and sends the header itself ([`Garage::web_get`] does), or maps [`Garage::web_url`]'s host to that
//! address (reqwest's `ClientBuilder::resolve`).

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::TempDir;

/// The S3 region Garage is configured with.
pub const REGION: &str = "garage";
/// The domain under which the web port serves buckets (`<bucket>.web.garage`).
pub const WEB_ROOT_DOMAIN: &str = ".web.garage";

const INSTALL: &str = "cargo install garage --locked";

/// A running single-node Garage; stopped (killed) on drop.
pub struct Garage {
    child: Child,
    binary: PathBuf,
    config: PathBuf,
    log: PathBuf,
    s3_port: u16,
    web_port: u16,
    admin_port: u16,
    _dir: TempDir,
}

/// A bucket with a key that may read, write and administer it.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub name: String,
    pub key_id: String,
    pub secret: String,
}

/// The `garage` binary: `$GARAGE`, else `garage` on `PATH`, else `~/.cargo/bin/garage`.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("GARAGE") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("garage"))
        .find(|p| p.is_file());
    let in_cargo = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|home| home.join("bin/garage"))
        .filter(|p| p.is_file());
    on_path.or(in_cargo).unwrap_or_else(|| {
        panic!("Garage (the S3 server these tests use) is not installed: run `{INSTALL}` (Garage 2.x), or set GARAGE")
    })
}

/// Free ports on 127.0.0.1, held together while they are picked so they differ.
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap().port())
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0; bytes];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut buf).unwrap();
    buf.iter().fold(String::new(), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

impl Garage {
    /// Starts Garage on free loopback ports and gives it a one-node layout (zone `dc1`, 1 GB).
    /// The ports are free when picked but not held until Garage binds them: when another process
    /// took one meanwhile, Garage exits saying so and is started again on new ports (5 times at most).
    pub fn start() -> Self {
        let mut lost = Vec::new();
        for _ in 0..5 {
            match Self::try_start() {
                Ok(garage) => return garage,
                Err(log) if log.contains("in use") => lost.push(log),
                Err(log) => panic!("garage server exited:\n{log}"),
            }
        }
        panic!("garage could not bind its ports in 5 tries:\n{}", lost.join("\n"));
    }

    /// One try of [`Garage::start`]: the log when the server exits before it answers.
    fn try_start() -> Result<Self, String> {
        let binary = binary();
        let dir = crate::tempdir();
        let [rpc_port, s3_port, web_port, admin_port] = free_ports();
        let config = dir.path().join("garage.toml");
        let log = dir.path().join("garage.log");
        std::fs::write(
            &config,
            format!(
                r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{secret}"

[s3_api]
api_bind_addr = "127.0.0.1:{s3_port}"
s3_region = "{REGION}"

[s3_web]
bind_addr = "127.0.0.1:{web_port}"
root_domain = "{WEB_ROOT_DOMAIN}"

[admin]
api_bind_addr = "127.0.0.1:{admin_port}"
"#,
                meta = dir.path().join("meta").display(),
                data = dir.path().join("data").display(),
                secret = random_hex(32),
            ),
        )
        .unwrap();
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&config)
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e} (install Garage with `{INSTALL}`)", binary.display()));
        let mut garage = Self { child, binary, config, log, s3_port, web_port, admin_port, _dir: dir };
        garage.wait_until_up()?;
        let node = garage.cli_text(&["node", "id", "-q"]);
        let node = node.split('@').next().unwrap_or(&node).to_owned();
        garage.cli_text(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        garage.cli_text(&["layout", "apply", "--version", "1"]);
        Ok(garage)
    }

    /// Polls `garage status` until the server answers (at most 30 s); the log if it exits first.
    fn wait_until_up(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("exit status {status}\n{}", self.log_text()));
            }
            let out = self.cli().arg("status").output().unwrap();
            if out.status.success() {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "garage did not answer `garage status` within 30 s: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `garage -c CONFIG` (add the subcommand).
    pub fn cli(&self) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("-c").arg(&self.config).env("RUST_LOG", "garage=warn").stdin(Stdio::null());
        c
    }

    /// Runs `garage -c CONFIG ARGS…`, panicking with its output if it fails; returns trimmed stdout.
    pub fn cli_text(&self, args: &[&str]) -> String {
        let out = self.cli().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "garage {} failed with {}:\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Creates bucket `name` and a key named `<name>-key` allowed to read, write and own it.
    pub fn create_bucket(&self, name: &str) -> Bucket {
        self.cli_text(&["bucket", "create", name]);
        let info = self.cli_text(&["key", "create", &format!("{name}-key")]);
        let field = |label: &str| {
            let value = info.lines().find_map(|l| l.trim().strip_prefix(label));
            value.unwrap_or_else(|| panic!("no {label:?} in `garage key create` output:\n{info}")).trim().to_owned()
        };
        let bucket = Bucket { name: name.to_owned(), key_id: field("Key ID:"), secret: field("Secret key:") };
        self.cli_text(&["bucket", "allow", "--read", "--write", "--owner", name, "--key", &bucket.key_id]);
        bucket
    }

    /// Serves `bucket` read-only, without credentials, on the web port (Host: `<bucket>.web.garage`).
    pub fn allow_website(&self, bucket: &str) {
        self.cli_text(&["bucket", "website", "--allow", bucket]);
    }

    /// The S3 API, as `http://127.0.0.1:PORT`.
    pub fn s3_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// A narwhal cache URL for `bucket` (`s3://bucket?endpoint=…&region=garage`); credentials go
    /// elsewhere.
    pub fn s3_url(&self, bucket: &str) -> String {
        format!("s3://{bucket}?endpoint={}&region={REGION}", self.s3_endpoint())
    }

    /// The admin API, as `http://127.0.0.1:PORT`.
    pub fn admin_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    /// Where the web port listens; connect here and send [`Self::web_host`] as `Host`.
    pub fn web_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.web_port))
    }

    /// The `Host` header that selects `bucket` on the web port: `<bucket>.web.garage`.
    pub fn web_host(bucket: &str) -> String {
        format!("{bucket}{WEB_ROOT_DOMAIN}")
    }

    /// The bucket's website, `http://<bucket>.web.garage:PORT`; its host resolves nowhere, so map it
    /// to [`Self::web_addr`] (or use [`Self::web_get`]).
    pub fn web_url(&self, bucket: &str) -> String {
        format!("http://{}:{}", Self::web_host(bucket), self.web_port)
    }

    /// `GET /key` on the web port with `Host: <bucket>.web.garage`, over a plain TCP connection
    /// (HTTP/1.0, so the body ends when the connection does).
    pub fn web_get(&self, bucket: &str, key: &str) -> WebResponse {
        let mut conn = TcpStream::connect(self.web_addr()).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(conn, "GET /{key} HTTP/1.0\r\nHost: {}\r\nUser-Agent: narwhal-test\r\n\r\n", Self::web_host(bucket))
            .unwrap();
        let mut response = Vec::new();
        conn.read_to_end(&mut response).unwrap();
        let end = response.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP response header");
        let head = String::from_utf8_lossy(&response[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok());
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        WebResponse { status: status.expect("an HTTP status line"), headers, body: response[end + 4..].to_vec() }
    }
}

/// A response from the web port.
#[derive(Debug)]
pub struct WebResponse {
    pub status: u16,
    /// Names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl WebResponse {
    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
