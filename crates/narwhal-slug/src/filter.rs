//! rsync include/exclude rules, as written in a `.slugexclude` file.
//!
//! # Syntax
//!
//! One rule per line (a line ends at `\n`, `\r\n` or a lone `\r`, as in
//! rsync). Empty lines and lines starting with `#` or `;` are comments.
//! Every other line is a rule:
//!
//! ```text
//! + PATTERN        include (long form: include PATTERN)
//! - PATTERN        exclude (long form: exclude PATTERN)
//! ```
//!
//! The rule name is followed by exactly one space or `_`; everything after it,
//! trailing whitespace included, is the pattern (rsync does the same and only
//! warns; see [`Rule::has_trailing_whitespace`]). rsync's other rule kinds
//! (merge, dir-merge, hide, show, protect, risk, clear) and rule modifiers
//! (`-!`, `+/`, ...) are rejected, as is any other line, with an [`enum@Error`]
//! naming the line.
//!
//! # Matching
//!
//! The semantics are rsync's (`exclude.c` `rule_matches`, `lib/wildmatch.c`),
//! ported rather than approximated. A path is given relative to the root of
//! the transfer — for a slug, the directory holding `store/`, so paths look
//! like `store/<hash>-<name>/lib/libfoo.so` — together with whether it names
//! a directory (a symlink is never a directory here; links are not followed).
//!
//! - Rules are tried in order; the first that matches decides. A path no rule
//!   matches is included.
//! - A trailing `/` makes the rule match directories only.
//! - A leading `/` anchors the pattern at the root of the transfer.
//! - A pattern with no `/` (not counting a trailing one) and no `**` matches
//!   the final path component at any depth.
//! - Otherwise it is matched against the full path: an unanchored pattern with
//!   a `/` but no `**` must match the last N+1 components (N = its slash
//!   count); an unanchored pattern with an infix or trailing `**` may match
//!   starting after any `/`; a pattern starting with `**` may match anywhere.
//! - `?` matches one byte but `/`; `*` any run of bytes without `/`; `**` any
//!   run including `/`; `[...]` a byte class (`!` or `^` negates, ranges,
//!   `[:alpha:]` and the other POSIX classes, ASCII only); `\` escapes the next
//!   byte, but only in patterns that contain a wildcard.
//! - A trailing `/***` matches the directory itself and everything below it.
//!
//! Excluding a directory excludes everything below it: like rsync,
//! [`crate::prune()`] never looks inside an excluded directory, so a later
//! include rule cannot rescue anything in it.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// rsync discards patterns of `MAXPATHLEN` (4096) bytes or more; we refuse them.
pub const MAX_PATTERN_LEN: usize = 4095;
/// More rules than anyone writes by hand.
pub const MAX_RULES: usize = 10_000;

#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    #[error("line {line}: unknown rule {text:?}; expected '+ PATTERN' or '- PATTERN'")]
    UnknownRule { line: usize, text: String },
    #[error("line {line}: rule modifiers are not supported in {text:?}")]
    UnsupportedModifier { line: usize, text: String },
    #[error("line {line}: rule {text:?} has no pattern")]
    MissingPattern { line: usize, text: String },
    #[error("line {line}: pattern is longer than {MAX_PATTERN_LEN} bytes")]
    PatternTooLong { line: usize },
    #[error("line {line}: pattern contains a NUL byte")]
    NulInPattern { line: usize },
    #[error("line {line}: more than {MAX_RULES} rules")]
    TooManyRules { line: usize },
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Include,
    Exclude,
}

/// One parsed rule, with the flags rsync derives from its pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    line: usize,
    action: Action,
    /// The pattern as written, trailing `/` included.
    pattern: Vec<u8>,
    /// The pattern without its trailing `/` (that becomes [`DIR_ONLY`]).
    body: Vec<u8>,
    /// Slashes in `body`, a leading one included.
    slash_cnt: usize,
    /// rsync's `FILTRULE_*` bits, below.
    flags: u8,
}

/// The pattern ended in `/`.
const DIR_ONLY: u8 = 1;
/// The body contains `*`, `?` or `[`.
const WILD: u8 = 1 << 1;
/// The body contains `**`.
const WILD2: u8 = 1 << 2;
/// The body starts with `**`.
const WILD2_PREFIX: u8 = 1 << 3;
/// The body ends with `***`.
const WILD3_SUFFIX: u8 = 1 << 4;

impl Rule {
    fn new(line: usize, action: Action, pattern: &[u8]) -> Self {
        let (body, mut flags) = match pattern.strip_suffix(b"/") {
            Some(body) if pattern.len() > 1 => (body, DIR_ONLY),
            _ => (pattern, 0),
        };
        let slash_cnt = memchr::memchr_iter(b'/', body).count();
        if body.iter().any(|b| matches!(b, b'*' | b'?' | b'[')) {
            flags |= WILD;
            if let Some(at) = body.windows(2).position(|w| w == b"**") {
                flags |= WILD2;
                if at == 0 {
                    flags |= WILD2_PREFIX;
                }
                if body.ends_with(b"***") {
                    flags |= WILD3_SUFFIX;
                }
            }
        }
        Rule { line, action, pattern: pattern.to_vec(), body: body.to_vec(), slash_cnt, flags }
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// The 1-based line the rule came from.
    pub fn line(&self) -> usize {
        self.line
    }

    pub fn action(&self) -> Action {
        self.action
    }

    /// The pattern as written, including any trailing `/`.
    pub fn pattern(&self) -> &[u8] {
        &self.pattern
    }

    /// Whether the pattern ends in a space or tab. rsync keeps such whitespace
    /// as part of the pattern (and warns), so `- foo ` does not exclude `foo`;
    /// so do we. Callers may want to warn too.
    pub fn has_trailing_whitespace(&self) -> bool {
        matches!(self.pattern.last(), Some(b' ' | b'\t'))
    }

    /// Whether this rule matches `path` (relative to the transfer root; a
    /// leading `/` is ignored), which is a directory if `is_dir`.
    pub fn matches(&self, path: &[u8], is_dir: bool) -> bool {
        let path = path.strip_prefix(b"/").unwrap_or(path);
        if path.is_empty() {
            return false;
        }
        let mut name = path;
        let mut prefix_slash = false;
        if self.slash_cnt == 0 && !self.has(WILD2) {
            if let Some(i) = memchr::memrchr(b'/', name) {
                name = &name[i + 1..];
            }
        } else if self.has(WILD2_PREFIX) {
            // Lets "**/" match at the start of the path.
            prefix_slash = true;
        }
        // Lets a trailing "/***" match the directory itself.
        let suffix_slash = is_dir && self.has(WILD3_SUFFIX);
        if !is_dir && self.has(DIR_ONLY) {
            return false;
        }
        let (anchored, pattern) = match self.body.strip_prefix(b"/") {
            Some(p) => (true, p),
            None => (false, &self.body[..]),
        };
        if self.has(WILD) {
            let where_ = if !anchored && self.slash_cnt > 0 && !self.has(WILD2) {
                Where::Trailing(self.slash_cnt + 1)
            } else if !anchored && !self.has(WILD2_PREFIX) && self.has(WILD2) {
                Where::AfterAnySlash
            } else {
                Where::Start
            };
            if prefix_slash || suffix_slash {
                let mut text = Vec::with_capacity(name.len() + 2);
                if prefix_slash {
                    text.push(b'/');
                }
                text.extend_from_slice(name);
                if suffix_slash {
                    text.push(b'/');
                }
                wildmatch_array(pattern, &text, where_)
            } else {
                wildmatch_array(pattern, name, where_)
            }
        } else if anchored {
            name == pattern
        } else {
            // A literal matches whole trailing components.
            name.ends_with(pattern) && (name.len() == pattern.len() || name[name.len() - pattern.len() - 1] == b'/')
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = match self.action {
            Action::Include => '+',
            Action::Exclude => '-',
        };
        write!(f, "{sign} {}", String::from_utf8_lossy(&self.pattern))
    }
}

/// An ordered list of rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    rules: Vec<Rule>,
}

impl Rules {
    /// Parses a `.slugexclude` file (any bytes; patterns need not be UTF-8).
    pub fn parse(text: &[u8]) -> Result<Self, Error> {
        let mut rules = Vec::new();
        for (index, line) in text.split(|&b| b == b'\n').enumerate() {
            let line_no = index + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            // rsync also ends a rule at a lone '\r'.
            for piece in line.split(|&b| b == b'\r') {
                if piece.is_empty() || piece[0] == b'#' || piece[0] == b';' {
                    continue;
                }
                if rules.len() == MAX_RULES {
                    return Err(Error::TooManyRules { line: line_no });
                }
                rules.push(parse_rule(line_no, piece)?);
            }
        }
        Ok(Rules { rules })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule matching `path`, if any (see [`Rule::matches`]).
    pub fn first_match(&self, path: &[u8], is_dir: bool) -> Option<&Rule> {
        self.rules.iter().find(|r| r.matches(path, is_dir))
    }

    /// Whether the first matching rule excludes `path`. Unmatched paths are
    /// included. This looks at `path` alone: whether a parent directory is
    /// excluded is the walker's business ([`crate::prune()`] never descends
    /// into one).
    pub fn is_excluded(&self, path: &[u8], is_dir: bool) -> bool {
        self.first_match(path, is_dir).is_some_and(|r| r.action == Action::Exclude)
    }
}

impl FromStr for Rules {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Rules::parse(s.as_bytes())
    }
}

fn parse_rule(line: usize, text: &[u8]) -> Result<Rule, Error> {
    let lossy = || String::from_utf8_lossy(text).into_owned();
    let (action, rest) = if let Some(rest) = text.strip_prefix(b"include") {
        (Action::Include, rest)
    } else if let Some(rest) = text.strip_prefix(b"exclude") {
        (Action::Exclude, rest)
    } else if let Some(rest) = text.strip_prefix(b"+") {
        (Action::Include, rest)
    } else if let Some(rest) = text.strip_prefix(b"-") {
        (Action::Exclude, rest)
    } else {
        return Err(Error::UnknownRule { line, text: lossy() });
    };
    let pattern = match rest.first() {
        Some(b' ' | b'_') => &rest[1..],
        None => &rest[..0],
        Some(b',') => return Err(Error::UnsupportedModifier { line, text: lossy() }),
        // "+foo": rsync reads 'f' as a modifier; "includes": no such rule.
        Some(_) if text.len() - rest.len() == 1 => return Err(Error::UnsupportedModifier { line, text: lossy() }),
        Some(_) => return Err(Error::UnknownRule { line, text: lossy() }),
    };
    if pattern.is_empty() {
        return Err(Error::MissingPattern { line, text: lossy() });
    }
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(Error::PatternTooLong { line });
    }
    if pattern.contains(&0) {
        return Err(Error::NulInPattern { line });
    }
    Ok(Rule::new(line, action, pattern))
}

/// Where in the path a wildcard pattern may start matching.
#[derive(Debug, Clone, Copy)]
enum Where {
    /// At the start only.
    Start,
    /// Against the last N `/`-separated components only.
    Trailing(usize),
    /// At the start or right after any `/`.
    AfterAnySlash,
}

/// `dowild`'s four outcomes; the aborts prune the backtracking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wild {
    NoMatch,
    Match,
    AbortAll,
    AbortToStarStar,
}

fn wildmatch_array(pattern: &[u8], text: &[u8], where_: Where) -> bool {
    let text = match where_ {
        Where::Trailing(n) => match trailing_elements(text, n) {
            Some(t) => t,
            None => return false,
        },
        Where::Start | Where::AfterAnySlash => text,
    };
    let mut matched = dowild(pattern, text);
    if matched != Wild::Match && matches!(where_, Where::AfterAnySlash) && matched != Wild::AbortAll {
        let mut i = 0;
        loop {
            let Some(&c) = text.get(i) else { return false };
            i += 1;
            if c == b'/' {
                matched = dowild(pattern, &text[i..]);
                if matched != Wild::NoMatch && matched != Wild::AbortToStarStar {
                    break;
                }
            }
        }
    }
    matched == Wild::Match
}

/// The last `count` components of `text`, or `None` if it has fewer.
fn trailing_elements(text: &[u8], count: usize) -> Option<&[u8]> {
    let mut count = count;
    for (i, &b) in text.iter().enumerate().rev() {
        if b == b'/' {
            count -= 1;
            if count == 0 {
                return Some(&text[i + 1..]);
            }
        }
    }
    (count == 1).then_some(text)
}

/// rsync's `dowild`: the pattern's byte at `i`, or NUL past its end.
fn at(p: &[u8], i: usize) -> u8 {
    p.get(i).copied().unwrap_or(0)
}

/// Matches `p` against all of `text` (rsync's `dowild`, on one joined string).
/// Recursion depth is bounded by the number of `*` runs in the pattern.
fn dowild(p: &[u8], text: &[u8]) -> Wild {
    let mut pi = 0;
    let mut ti = 0;
    while pi < p.len() {
        let p_ch = p[pi];
        let t_ch = match text.get(ti) {
            Some(&c) => c,
            None if p_ch == b'*' => 0,
            None => return Wild::AbortAll,
        };
        match p_ch {
            b'\\' => {
                pi += 1;
                if t_ch != at(p, pi) {
                    return Wild::NoMatch;
                }
            }
            b'?' => {
                if t_ch == b'/' {
                    return Wild::NoMatch;
                }
            }
            b'*' => return star(p, pi, text, ti),
            b'[' => {
                match class(p, pi, t_ch) {
                    Ok((next, true)) => pi = next,
                    Ok((_, false)) => return Wild::NoMatch,
                    Err(abort) => return abort,
                }
                if t_ch == b'/' {
                    return Wild::NoMatch;
                }
            }
            _ => {
                if t_ch != p_ch {
                    return Wild::NoMatch;
                }
            }
        }
        pi += 1;
        ti += 1;
    }
    if ti < text.len() {
        Wild::NoMatch
    } else {
        Wild::Match
    }
}

/// A `*` or `**` at `p[pi]` against `text[ti..]`.
fn star(p: &[u8], pi: usize, text: &[u8], ti: usize) -> Wild {
    let mut pi = pi + 1;
    let special = at(p, pi) == b'*';
    while at(p, pi) == b'*' {
        pi += 1;
    }
    let rest = &text[ti..];
    if pi >= p.len() {
        // A trailing "**" matches everything, a trailing "*" anything without '/'.
        return if !special && rest.contains(&b'/') { Wild::NoMatch } else { Wild::Match };
    }
    for (k, &t_ch) in rest.iter().enumerate() {
        let matched = dowild(&p[pi..], &rest[k..]);
        if matched != Wild::NoMatch {
            if !special || matched != Wild::AbortToStarStar {
                return matched;
            }
        } else if !special && t_ch == b'/' {
            return Wild::AbortToStarStar;
        }
    }
    Wild::AbortAll
}

/// A `[...]` class starting at `p[pi]` against `t_ch`: the index of its
/// closing `]` and whether `t_ch` is in it (before the '/' check).
fn class(p: &[u8], pi: usize, t_ch: u8) -> Result<(usize, bool), Wild> {
    let mut pi = pi + 1;
    let mut p_ch = at(p, pi);
    if p_ch == b'^' {
        p_ch = b'!';
    }
    let negated = p_ch == b'!';
    if negated {
        pi += 1;
        p_ch = at(p, pi);
    }
    let mut prev_ch = 0u8;
    let mut matched = false;
    loop {
        if p_ch == 0 {
            return Err(Wild::AbortAll);
        }
        if p_ch == b'\\' {
            pi += 1;
            p_ch = at(p, pi);
            if p_ch == 0 {
                return Err(Wild::AbortAll);
            }
            if t_ch == p_ch {
                matched = true;
            }
        } else if p_ch == b'-' && prev_ch != 0 && at(p, pi + 1) != 0 && at(p, pi + 1) != b']' {
            pi += 1;
            p_ch = at(p, pi);
            if p_ch == b'\\' {
                pi += 1;
                p_ch = at(p, pi);
                if p_ch == 0 {
                    return Err(Wild::AbortAll);
                }
            }
            if t_ch <= p_ch && t_ch >= prev_ch {
                matched = true;
            }
            p_ch = 0; // no range may start at a range's end
        } else if p_ch == b'[' && at(p, pi + 1) == b':' {
            pi += 2;
            let start = pi;
            while at(p, pi) != 0 && at(p, pi) != b']' {
                pi += 1;
            }
            if at(p, pi) == 0 {
                return Err(Wild::AbortAll);
            }
            if pi == start || p[pi - 1] != b':' {
                // No ":]": the '[' is an ordinary member.
                pi = start - 2;
                p_ch = b'[';
                if t_ch == p_ch {
                    matched = true;
                }
            } else {
                if posix_class(&p[start..pi - 1], t_ch).ok_or(Wild::AbortAll)? {
                    matched = true;
                }
                p_ch = 0;
            }
        } else if t_ch == p_ch {
            matched = true;
        }
        prev_ch = p_ch;
        pi += 1;
        p_ch = at(p, pi);
        if p_ch == b']' {
            break;
        }
    }
    Ok((pi, matched != negated))
}

/// `[:name:]` in the C locale; `None` for an unknown name.
fn posix_class(name: &[u8], c: u8) -> Option<bool> {
    Some(match name {
        b"alnum" => c.is_ascii_alphanumeric(),
        b"alpha" => c.is_ascii_alphabetic(),
        b"blank" => c == b' ' || c == b'\t',
        b"cntrl" => c.is_ascii_control(),
        b"digit" => c.is_ascii_digit(),
        b"graph" => c.is_ascii_graphic(),
        b"lower" => c.is_ascii_lowercase(),
        b"print" => c.is_ascii_graphic() || c == b' ',
        b"punct" => c.is_ascii_punctuation(),
        b"space" => matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'),
        b"upper" => c.is_ascii_uppercase(),
        b"xdigit" => c.is_ascii_hexdigit(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, path: &str, is_dir: bool) -> bool {
        let rules: Rules = format!("- {pattern}").parse().unwrap();
        rules.rules()[0].matches(path.as_bytes(), is_dir)
    }

    #[test]
    fn wildmatch_basics() {
        assert!(dowild(b"foo", b"foo") == Wild::Match);
        assert!(dowild(b"f*", b"foo") == Wild::Match);
        assert!(dowild(b"f*", b"f/o") == Wild::NoMatch);
        assert!(dowild(b"f**", b"f/o") == Wild::Match);
        assert!(dowild(b"*.so*", b"libc.so.6") == Wild::Match);
        assert!(dowild(b"[a-c]x", b"bx") == Wild::Match);
        assert!(dowild(b"[!a-c]x", b"bx") == Wild::NoMatch);
        assert!(dowild(b"[^a-c]x", b"dx") == Wild::Match);
        assert!(dowild(b"[[:digit:]]", b"7") == Wild::Match);
        assert!(dowild(b"[[:digit:]]", b"x") == Wild::NoMatch);
        assert!(dowild(b"[[:bogus:]]", b"x") == Wild::AbortAll);
        assert!(dowild(b"[]]", b"]") == Wild::Match);
        assert!(dowild(b"[a-]", b"-") == Wild::Match);
        assert!(dowild(b"[[:x]", b"[") == Wild::Match); // no ":]": "[", ":" and "x"
        assert!(dowild(b"[[:x]", b"x") == Wild::Match);
        assert!(dowild(b"[[]", b"[") == Wild::Match);
        assert!(dowild(b"\\*", b"*") == Wild::Match);
        assert!(dowild(b"\\*", b"x") == Wild::NoMatch);
        assert!(dowild(b"a\\", b"a") == Wild::AbortAll);
        assert!(dowild(b"[abc", b"a") == Wild::AbortAll);
        assert!(dowild(b"?", b"/") == Wild::NoMatch);
        assert!(dowild(b"[/]", b"/") == Wild::NoMatch);
    }

    #[test]
    fn pathological_patterns_stay_fast() {
        let path = format!("store/{}", "a/".repeat(1000));
        let start = std::time::Instant::now();
        for pattern in ["**a**a**a**a**a**a**a**a**b", "*a*a*a*a*a*a*a*a*a*b", "store/**a*a*a*a*a*a*b/"] {
            assert!(!m(pattern, &path, true));
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(2), "{:?}", start.elapsed());
    }

    #[test]
    fn name_only_patterns_match_the_last_component() {
        assert!(m("*.a", "store/x-gcc/lib/libfoo.a", false));
        assert!(m("*.a", "libfoo.a", false));
        assert!(!m("*.a", "store/x.a/lib", true));
        assert!(m("foo", "a/b/foo", false));
        assert!(!m("foo", "a/b/xfoo", false));
        assert!(m("*[._]so*", "store/x/lib/libz.so.1", false));
        assert!(m("*[._]so*", "store/x/lib/libz_so", false));
        assert!(!m("*[._]so*", "store/x/lib/libz.a", false));
    }

    #[test]
    fn trailing_slash_matches_directories_only() {
        assert!(m("doc/", "store/x/share/doc", true));
        assert!(!m("doc/", "store/x/share/doc", false));
        assert!(m("share/doc/", "store/x/share/doc", true));
        assert!(!m("share/doc/", "store/x/share/doc", false));
        assert!(!m("share/doc/", "store/x/share/doc/y", true));
        assert!(m("store/*-gcc-*/", "store/abc-gcc-12.3.0", true));
        assert!(!m("store/*-gcc-*/", "store/abc-gcc-12.3.0", false));
        assert!(!m("store/*-gcc-*/", "store/abc-gcc-12.3.0/lib", true));
    }

    #[test]
    fn infix_slash_matches_trailing_components() {
        assert!(m("foo/*/bar", "foo/x/bar", false));
        assert!(m("foo/*/bar", "a/foo/x/bar", false));
        assert!(!m("foo/*/bar", "foo/x/y/bar", false));
        assert!(m("share/doc", "store/x/share/doc", true));
        assert!(!m("share/doc", "store/x/myshare/doc", true));
        assert!(!m("share/doc", "doc", true));
    }

    #[test]
    fn anchored_patterns() {
        assert!(m("/store", "store", true));
        assert!(!m("/store", "x/store", true));
        assert!(m("/store/*", "store/abc", true));
        assert!(!m("/store/*", "store/abc/d", true));
        assert!(m("/foo/**/bar", "foo/a/b/bar", false));
        assert!(!m("/foo/**/bar", "foo/bar", false));
        assert!(!m("/", "store", true));
    }

    #[test]
    fn double_star() {
        assert!(m("store/**", "store/x", false));
        assert!(m("store/**", "store/x/y/z", false));
        assert!(!m("store/**", "store", true));
        assert!(m("store/**", "a/store/x", false)); // unanchored: after any slash
        assert!(m("store/**/", "store/x/y", true));
        assert!(!m("store/**/", "store/x/y", false));
        assert!(m("**/lib", "lib", true));
        assert!(m("**/lib", "a/b/lib", true));
        assert!(!m("**/lib", "a/b/xlib", true));
        assert!(m("lib/**.so", "store/x/lib/a/b.so", false));
    }

    #[test]
    fn triple_star_matches_the_directory_and_its_contents() {
        assert!(m("dir/***", "a/dir", true));
        assert!(!m("dir/***", "a/dir", false));
        assert!(m("dir/***", "a/dir/x/y", false));
        assert!(m("/store/x/***", "store/x", true));
        assert!(!m("/store/x/***", "store/xy", true));
    }

    #[test]
    fn literal_backslash_without_wildcards() {
        assert!(m("foo\\bar", "foo\\bar", false));
        assert!(m("foo\\*", "foo*", false));
        assert!(!m("foo\\*", "foox", false));
    }

    #[test]
    fn parse_rules_and_comments() {
        let rules = Rules::parse(b"# comment\n; also\n\n+ store/**/\r\n-_*.a\ninclude x\nexclude y/\r- z").unwrap();
        let got: Vec<String> = rules.rules().iter().map(ToString::to_string).collect();
        assert_eq!(got, ["+ store/**/", "- *.a", "+ x", "- y/", "- z"]);
        assert_eq!(rules.rules().iter().map(Rule::line).collect::<Vec<_>>(), [4, 5, 6, 7, 7]);
        assert!(Rules::parse(b"- foo ").unwrap().rules()[0].has_trailing_whitespace());
        assert!(Rules::parse(b"-  foo").unwrap().rules()[0].matches(b" foo", false));
    }

    #[test]
    fn parse_errors_name_the_line() {
        let err = |s: &str| Rules::parse(s.as_bytes()).unwrap_err();
        assert_eq!(err("+ a\nfoo"), Error::UnknownRule { line: 2, text: "foo".into() });
        assert_eq!(err("\n\n-"), Error::MissingPattern { line: 3, text: "-".into() });
        assert_eq!(err("- "), Error::MissingPattern { line: 1, text: "- ".into() });
        assert_eq!(err("-! foo"), Error::UnsupportedModifier { line: 1, text: "-! foo".into() });
        assert_eq!(err("+,/ foo"), Error::UnsupportedModifier { line: 1, text: "+,/ foo".into() });
        assert_eq!(err("includes foo"), Error::UnknownRule { line: 1, text: "includes foo".into() });
        assert_eq!(err("merge other"), Error::UnknownRule { line: 1, text: "merge other".into() });
        assert_eq!(err("!"), Error::UnknownRule { line: 1, text: "!".into() });
        assert_eq!(err("- a\0b"), Error::NulInPattern { line: 1 });
        assert_eq!(err(&format!("- {}", "x".repeat(MAX_PATTERN_LEN + 1))), Error::PatternTooLong { line: 1 });
        assert!(Rules::parse(format!("- {}", "x".repeat(MAX_PATTERN_LEN)).as_bytes()).is_ok());
        assert_eq!(err(&"- x\n".repeat(MAX_RULES + 1)), Error::TooManyRules { line: MAX_RULES + 1 });
    }

    #[test]
    fn first_match_wins() {
        let rules: Rules = "+ store/**/\n+ *[._]so*\n- store/**".parse().unwrap();
        assert!(!rules.is_excluded(b"store/x/lib", true));
        assert!(!rules.is_excluded(b"store/x/lib/libz.so", false));
        assert!(rules.is_excluded(b"store/x/lib/libz.a", false));
        assert!(!rules.is_excluded(b"store", true));
        assert!(!rules.is_excluded(b"elsewhere", false));
        assert_eq!(rules.first_match(b"store/x/lib/libz.a", false).map(Rule::line), Some(3));
    }
}
