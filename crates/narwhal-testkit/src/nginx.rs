//! A real nginx (Debian's `nginx`, which has `http_dav_module`) on a loopback port, in the
//! foreground as one process, with its configuration, logs, pid and temporary files in a
//! temporary directory. Killed on drop.
//!
//! The caller gives the inside of the `server { … }` block; the helper adds `listen`, the
//! process settings and the temporary paths. Serving a directory read-only is
//! `Nginx::start(&format!("root {};", dir.display()))` (or [`Nginx::serve_dir`]); accepting
//! uploads as `nix copy --to http://…` sends them is
//! `root DIR; dav_methods PUT DELETE; create_full_put_path on; client_max_body_size 0;`
//! ([`Nginx::dav`]). [`Nginx::dir`] is a private directory for files the configuration refers to
//! (an htpasswd file, say): write them before starting, with [`Nginx::start_in`].

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::TempDir;

/// How long nginx may take to accept connections.
const STARTUP: Duration = Duration::from_secs(15);
/// Ports tried before giving up (another process may take a free port between the probe and nginx).
const PORT_TRIES: usize = 5;

/// A running nginx; killed on drop.
pub struct Nginx {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Nginx {
    /// Starts nginx with `server_block` inside `server { … }`.
    pub fn start(server_block: &str) -> Self {
        Self::start_in(crate::tempdir(), server_block)
    }

    /// Serves `root` read-only (GET and HEAD), as a static host serves a cache.
    pub fn serve_dir(root: &Path) -> Self {
        Self::start(&format!("root {};", root.display()))
    }

    /// Serves `root` and accepts `PUT` and `DELETE` into it (WebDAV), with `extra` directives
    /// (an authentication check, say) in the same block.
    pub fn dav(root: &Path, extra: &str) -> Self {
        Self::start(&format!(
            "root {};\ndav_methods PUT DELETE;\ncreate_full_put_path on;\ndav_access user:rw group:r all:r;\n\
             client_max_body_size 0;\n{extra}",
            root.display()
        ))
    }

    /// As [`Nginx::start`], in `dir` (which holds files the block names; see [`Nginx::dir`]).
    pub fn start_in(dir: TempDir, server_block: &str) -> Self {
        let mut last_log = String::new();
        for _ in 0..PORT_TRIES {
            let port = free_port();
            let config = config(dir.path(), port, server_block);
            let conf_path = dir.path().join("nginx.conf");
            std::fs::write(&conf_path, config).unwrap();
            let log = dir.path().join("error.log");
            let _ = std::fs::remove_file(&log);
            let mut child = match Command::new(binary())
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&conf_path)
                .arg("-e")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            {
                Ok(c) => c,
                Err(e) => panic!("cannot run nginx: {e} (apt-get install nginx; scripts/test installs it)"),
            };
            let started = Instant::now();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last_log = std::fs::read_to_string(&log).unwrap_or_default();
                    assert!(
                        last_log.contains("Address already in use"),
                        "nginx exited with {status} at startup:\n{last_log}"
                    );
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Self { child, port, dir };
                }
                if started.elapsed() > STARTUP {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "nginx did not accept connections on {addr} within {STARTUP:?}:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("nginx found no free port in {PORT_TRIES} tries:\n{last_log}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`, without a trailing `/`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// nginx's private directory (configuration, logs, temporary files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What nginx logged so far (errors, and with `access_log` pointed into [`Nginx::dir`], requests).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$NGINX`, else `nginx` on `PATH`, else Debian's `/usr/sbin/nginx`.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NGINX") {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("nginx"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn config(dir: &Path, port: u16, server_block: &str) -> String {
    let d = dir.display();
    // As root, nginx would switch to `nobody`, which cannot write into the test's directories.
    let user = if std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) { "user root root;\n" } else { "" };
    format!(
        "{user}daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
         access_log off;\n\
         client_body_temp_path {d}/client_body;\nproxy_temp_path {d}/proxy;\nfastcgi_temp_path {d}/fastcgi;\n\
         uwsgi_temp_path {d}/uwsgi;\nscgi_temp_path {d}/scgi;\n\
         types {{ text/x-nix-narinfo narinfo; application/x-nix-nar nar xz zst; }}\n\
         default_type application/octet-stream;\n\
         server {{\nlisten 127.0.0.1:{port};\n{server_block}\n}}\n}}\n"
    )
}
