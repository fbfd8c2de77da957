//! What the steps tell their user as they go. The library never prints: it
//! hands [`Event`]s to a [`Log`], and each front end prints them its way
//! (Heroku's `-----> ` / 7 spaces / ` !     ` style in both buildpacks, plain
//! lines for `narwhal slug`).

/// One line for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A step starts.
    Step(String),
    /// A detail of the current step.
    Detail(String),
    /// Something the user should look at; the deploy goes on.
    Warning(String),
}

/// Where events go.
pub trait Log: Sync {
    fn event(&self, event: Event);

    fn step(&self, s: &str) {
        self.event(Event::Step(s.to_owned()));
    }
    fn detail(&self, s: &str) {
        self.event(Event::Detail(s.to_owned()));
    }
    fn warning(&self, s: &str) {
        self.event(Event::Warning(s.to_owned()));
    }
}

/// Heroku's line style, as every Heroku buildpack prints it: `-----> ` before a
/// step, seven spaces before a detail, ` !     ` before a warning or an error.
pub fn heroku_line(event: &Event) -> String {
    match event {
        Event::Step(s) => format!("-----> {s}"),
        Event::Detail(s) => format!("       {s}"),
        Event::Warning(s) => format!(" !     warning: {s}"),
    }
}

/// An error in Heroku's style: ` !     ` before every line of it.
pub fn heroku_error(text: &str) -> String {
    let mut out = String::new();
    for l in text.lines() {
        out.push_str(" !     ");
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// Bytes for people, in decimal units as every figure narwhal prints (and Heroku's limits): `12.3 MB`.
pub fn human(n: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let f = n as f64;
    if n < 1000 {
        format!("{n} B")
    } else if n < 1_000_000 {
        format!("{:.1} kB", f / 1e3)
    } else if n < 1_000_000_000 {
        format!("{:.1} MB", f / 1e6)
    } else {
        format!("{:.2} GB", f / 1e9)
    }
}

/// `1 path`, `2 paths`: a count and its noun, singular or plural.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
