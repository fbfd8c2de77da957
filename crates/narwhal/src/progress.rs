//! Progress on stderr: a bar on a terminal, plain lines otherwise.
//! `NO_COLOR` and `--no-progress` are honoured.

use std::io::{IsTerminal as _, Write as _};

use std::collections::BTreeMap;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use narwhal_fetch::{Reporter, Source};
use narwhal_formats::store_path::StorePath;
use narwhal_image::oci::Descriptor;
use narwhal_image::report::Sent;

use crate::commands::human;

/// A bar on stderr when it is a terminal and progress is wanted (not `no_progress`, not under CI),
/// plain lines otherwise; fetch and push each draw their own kind of bar on it.
pub struct Status {
    pub bar: Option<ProgressBar>,
}

impl Status {
    /// `plain` is the bar's template under NO_COLOR, `colored` otherwise.
    pub fn new(no_progress: bool, plain: &str, colored: &str) -> Self {
        let bar = wants_bars(no_progress).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(style(plain, colored));
            bar
        });
        Self { bar }
    }

    /// A line that stays, above the bar when there is one.
    pub fn line(&self, s: &str) {
        match &self.bar {
            Some(bar) => bar.println(s),
            None => {
                let _ = writeln!(std::io::stderr().lock(), "{s}");
            }
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Whether to draw bars: stderr is a terminal, progress is wanted (not `no_progress`), not under CI.
fn wants_bars(no_progress: bool) -> bool {
    std::io::stderr().is_terminal() && !no_progress && std::env::var_os("CI").is_none()
}

/// `plain` under NO_COLOR, `colored` otherwise.
fn style(plain: &str, colored: &str) -> ProgressStyle {
    let template = if std::env::var_os("NO_COLOR").is_some() { plain } else { colored };
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// Image progress: on a terminal a byte bar per layer being built (NAR bytes read) and per blob
/// being uploaded; otherwise a line per layer built or reused and per blob sent. Retries are lines.
pub struct ImageProgress {
    multi: Option<MultiProgress>,
    bars: Mutex<BTreeMap<String, ProgressBar>>,
}

impl ImageProgress {
    pub fn new(no_progress: bool) -> Self {
        let multi = wants_bars(no_progress).then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self { multi, bars: Mutex::new(BTreeMap::new()) }
    }

    pub fn line(&self, s: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(s);
            }
            None => {
                let _ = writeln!(std::io::stderr().lock(), "{s}");
            }
        }
    }

    fn bars(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ProgressBar>> {
        self.bars.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn start(&self, key: String, len: u64, message: String) {
        if let Some(m) = &self.multi {
            let bar = m.add(ProgressBar::new(len));
            bar.set_style(style(
                "{bytes}/{total_bytes} {wide_msg}",
                "{bar:30.cyan/blue} {bytes}/{total_bytes} {wide_msg}",
            ));
            bar.set_message(message);
            self.bars().insert(key, bar);
        }
    }

    fn inc(&self, key: &str, n: u64) {
        if let Some(bar) = self.bars().get(key) {
            bar.inc(n);
        }
    }

    fn end(&self, key: &str) {
        if let Some(bar) = self.bars().remove(key) {
            bar.finish_and_clear();
        }
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
}

impl narwhal_image::report::Reporter for ImageProgress {
    fn layer_started(&self, index: usize, paths: &[StorePath], nar_bytes: u64) {
        let first = paths.first().map(ToString::to_string).unwrap_or_default();
        let more = if paths.len() > 1 { format!(" and {} more", paths.len() - 1) } else { String::new() };
        self.start(format!("layer {index}"), nar_bytes, format!("layer {}: {first}{more}", index + 1));
    }

    fn layer_progress(&self, index: usize, bytes: u64) {
        self.inc(&format!("layer {index}"), bytes);
    }

    fn layer_done(&self, index: usize, layer: &Descriptor, built: bool) {
        self.end(&format!("layer {index}"));
        if self.multi.is_none() {
            let how = if built { "built" } else { "reused" };
            self.line(&format!("layer {} {how}: {} ({})", index + 1, short(&layer.digest), human(layer.size)));
        }
    }

    fn blob_started(&self, blob: &Descriptor) {
        self.start(blob.digest.clone(), blob.size, format!("uploading {}", short(&blob.digest)));
    }

    fn blob_progress(&self, blob: &Descriptor, bytes: u64) {
        self.inc(&blob.digest, bytes);
    }

    fn blob_done(&self, blob: &Descriptor, how: Sent) {
        self.end(&blob.digest);
        if self.multi.is_none() {
            let how = match how {
                Sent::Uploaded => "uploaded",
                Sent::Mounted => "mounted",
                Sent::Skipped => "already there",
            };
            self.line(&format!("blob {} {how} ({})", short(&blob.digest), human(blob.size)));
        }
    }

    fn retrying(&self, what: &str, attempt: u32, why: &str, wait: std::time::Duration) {
        self.line(&format!("retrying {what} (attempt {attempt}) in {:.1} s: {why}", wait.as_secs_f64()));
    }
}

/// Fetch progress: a byte bar over the downloads.
pub struct Progress {
    status: Status,
}

impl Progress {
    pub fn new(no_progress: bool) -> Self {
        Self {
            status: Status::new(
                no_progress,
                "{decimal_bytes}/{decimal_total_bytes} {wide_msg}",
                "{bar:30.cyan/blue} {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} {wide_msg}",
            ),
        }
    }

    pub fn line(&self, s: &str) {
        self.status.line(s);
    }

    pub fn finish(&self) {
        self.status.finish();
    }
}

impl Reporter for Progress {
    fn planned(&self, paths: usize, download_bytes: u64) {
        match &self.status.bar {
            Some(bar) => bar.set_length(download_bytes),
            None => self.line(&format!("fetching the closure: {paths} paths")),
        }
    }

    fn reading_export(&self, what: &str, bytes: Option<u64>) {
        match &self.status.bar {
            Some(bar) => bar.set_length(bytes.unwrap_or(0)),
            None => self.line(&format!(
                "reading the export {what}{}",
                bytes.map(|b| format!(" ({})", human(b))).unwrap_or_default()
            )),
        }
    }

    fn started(&self, path: &StorePath, source: Source) {
        if let Some(bar) = &self.status.bar {
            bar.set_message(path.to_string());
        } else {
            let how = match source {
                Source::Download => "downloading",
                Source::LocalCache => "from the local cache",
                Source::Present => "present",
            };
            self.line(&format!("{how} {path}"));
        }
    }

    fn progress(&self, n: u64) {
        if let Some(bar) = &self.status.bar {
            bar.inc(n);
        }
    }

    fn retrying(&self, path: &StorePath, attempt: u32, why: &str) {
        self.line(&format!("retrying {path} (attempt {attempt}): {why}"));
    }

    fn warning(&self, message: &str) {
        self.line(&format!("warning: {message}"));
    }

    fn waiting(&self, message: &str) {
        self.line(message);
    }
}
