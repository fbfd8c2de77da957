//! Progress on stderr: a bar on a terminal, plain lines otherwise.
//! `NO_COLOR` and `--no-progress` are honoured.

use std::io::{IsTerminal as _, Write as _};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use narwhal_fetch::{Reporter, Source};
use narwhal_formats::store_path::StorePath;

/// A bar on stderr when it is a terminal and progress is wanted (not `no_progress`, not under CI),
/// plain lines otherwise; fetch and push each draw their own kind of bar on it.
pub struct Status {
    pub bar: Option<ProgressBar>,
}

impl Status {
    /// `plain` is the bar's template under NO_COLOR, `colored` otherwise.
    pub fn new(no_progress: bool, plain: &str, colored: &str) -> Self {
        let tty = std::io::stderr().is_terminal() && !no_progress && std::env::var_os("CI").is_none();
        let bar = tty.then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            let style = if std::env::var_os("NO_COLOR").is_some() { plain } else { colored };
            bar.set_style(ProgressStyle::with_template(style).unwrap_or_else(|_| ProgressStyle::default_bar()));
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
                bytes.map(|b| format!(" ({})", crate::commands::human(b))).unwrap_or_default()
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
