//! Counters for Prometheus' text format (`GET /metrics`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a request was for, as the metrics group it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    CacheInfo,
    Narinfo,
    Nar,
    Listing,
    Log,
    Pin,
    Other,
}

const ROUTES: [(Route, &str); 7] = [
    (Route::CacheInfo, "nix-cache-info"),
    (Route::Narinfo, "narinfo"),
    (Route::Nar, "nar"),
    (Route::Listing, "ls"),
    (Route::Log, "log"),
    (Route::Pin, "pin"),
    (Route::Other, "other"),
];
const CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

#[derive(Debug, Default)]
pub struct Metrics {
    /// [route][status class][method: 0 read, 1 write]
    requests: [[[AtomicU64; 2]; 4]; 7],
    pub nar_bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub narinfo_hits: AtomicU64,
    pub narinfo_misses: AtomicU64,
    pub narinfos_committed: AtomicU64,
    pub writes_refused: AtomicU64,
    /// Requests whose handler panicked (a bug), answered with a 500.
    pub panics: AtomicU64,
}

impl Metrics {
    pub fn record(&self, route: Route, status: u16, write: bool) {
        let r = ROUTES.iter().position(|(x, _)| *x == route).unwrap_or(ROUTES.len() - 1);
        let c = usize::from(status.clamp(200, 599) / 100 - 2);
        self.requests[r][c][usize::from(write)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP narwhal_http_requests_total HTTP requests answered, by route, status class and kind.\n");
        out.push_str("# TYPE narwhal_http_requests_total counter\n");
        for (r, (_, route)) in ROUTES.iter().enumerate() {
            for (c, class) in CLASSES.iter().enumerate() {
                for (w, kind) in ["read", "write"].iter().enumerate() {
                    let n = self.requests[r][c][w].load(Ordering::Relaxed);
                    if n > 0 {
                        let _ = writeln!(
                            out,
                            "narwhal_http_requests_total{{route=\"{route}\",status=\"{class}\",kind=\"{kind}\"}} {n}"
                        );
                    }
                }
            }
        }
        let counters: [(&str, &str, &AtomicU64); 7] = [
            ("narwhal_nar_bytes_sent_total", "NAR bytes sent in response bodies.", &self.nar_bytes_sent),
            ("narwhal_bytes_received_total", "Bytes received in PUT bodies.", &self.bytes_received),
            ("narwhal_narinfo_hits_total", "narinfo lookups that found the path.", &self.narinfo_hits),
            ("narwhal_narinfo_misses_total", "narinfo lookups that did not.", &self.narinfo_misses),
            ("narwhal_narinfos_committed_total", "narinfos accepted by PUT.", &self.narinfos_committed),
            ("narwhal_writes_refused_total", "PUTs refused (token, checks).", &self.writes_refused),
            ("narwhal_panics_total", "Requests whose handler panicked (a bug), answered with 500.", &self.panics),
        ];
        for (name, help, value) in counters {
            let _ =
                writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", value.load(Ordering::Relaxed));
        }
        out
    }
}
