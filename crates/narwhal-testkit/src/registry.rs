//! A real OCI registry on loopback: Debian's `docker-registry` (distribution 2.8), storage in a
//! temporary directory, open or behind htpasswd Basic authentication, its access log kept for
//! "what was uploaded" checks.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

pub struct Registry {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
    _dir: TempDir,
}

impl Registry {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A registry that wants `user` and `password` (Basic authentication, bcrypt htpasswd).
    pub fn with_login(user: &str, password: &str) -> Self {
        Self::start_with(Some((user, password)))
    }

    fn start_with(login: Option<(&str, &str)>) -> Self {
        let dir = tempfile::Builder::new().prefix("narwhal-registry-").tempdir().unwrap();
        let auth = match login {
            None => String::new(),
            Some((user, password)) => {
                let out =
                    Command::new("htpasswd").args(["-Bbn", user, password]).output().expect("htpasswd (apache2-utils)");
                assert!(out.status.success(), "htpasswd: {}", String::from_utf8_lossy(&out.stderr));
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, out.stdout).unwrap();
                format!("auth:\n  htpasswd:\n    realm: narwhal-test\n    path: {}\n", file.display())
            }
        };
        // A free loopback port: bound, then released for the registry (which needs a number).
        let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{auth}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let log = dir.path().join("registry.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("docker-registry (Debian's package) must be installed: scripts/test installs it");
        let registry = Self { child, addr, log, _dir: dir };
        for _ in 0..300 {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return registry;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("docker-registry did not listen on {addr}:\n{}", registry.log_text());
    }

    /// `HOST:PORT`, as image references name it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The access log's request lines (`METHOD URI`) so far.
    pub fn requests(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter_map(|l| {
                let start = l.find('"')? + 1;
                let rest = &l[start..];
                let request = rest.split('"').next()?;
                let mut parts = request.split(' ');
                let (method, uri) = (parts.next()?, parts.next()?);
                uri.starts_with("/v2/").then(|| format!("{method} {uri}"))
            })
            .collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback proxy in front of `upstream` (a registry) whose first `faults` connections get
/// `status` with `Retry-After: 1` and are closed, instead of being passed on: a registry that is
/// briefly overloaded. Every later connection is passed through as it is.
pub struct Flaky {
    pub addr: SocketAddr,
}

impl Flaky {
    pub fn start(upstream: SocketAddr, faults: usize, status: u16) -> Self {
        use std::io::{Read as _, Write as _};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut left = faults;
            for conn in listener.incoming() {
                let Ok(mut client) = conn else { continue };
                if left > 0 {
                    left -= 1;
                    // The request head, then the answer; the connection is closed.
                    let _ = client.set_read_timeout(Some(Duration::from_secs(5)));
                    let (mut head, mut buf) = (Vec::new(), [0u8; 4096]);
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                        match client.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = write!(
                        client,
                        "HTTP/1.1 {status} Busy\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream) else { continue };
                let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone()) else { continue };
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut s2);
                    let _ = s2.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let (mut client, mut server) = (client, server);
                    let _ = std::io::copy(&mut server, &mut client);
                    let _ = client.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Self { addr }
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}
