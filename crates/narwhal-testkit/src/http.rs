//! A real HTTP server on loopback over a cache directory (Python's
//! `http.server`, HTTP/1.1 keep-alive), with faults to inject.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct HttpServer {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl HttpServer {
    /// Serves `dir`; `faults` are `http_server.py` options such as `["--fail", "2"]`.
    pub fn start(dir: &Path, faults: &[&str]) -> Self {
        let tmp = crate::tempdir();
        let log = tmp.path().join("requests.log");
        std::fs::write(&log, "").unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/http_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(dir)
            .arg(&log)
            .args(faults)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the test HTTP server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().strip_prefix("PORT ").and_then(|p| p.parse().ok()).expect("the server prints its port");
        Self { child, port, log, _dir: tmp }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The requests served so far, as `GET /path status`.
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log).unwrap().lines().map(str::to_owned).collect()
    }

    /// How many NARs were sent whole.
    pub fn nar_downloads(&self) -> usize {
        self.requests().iter().filter(|r| r.starts_with("GET /nar/") && r.ends_with(" 200")).count()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
