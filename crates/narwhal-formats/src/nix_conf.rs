//! `nix.conf`, Nix's configuration, read as Nix 2.8 reads it (`libutil/config.cc`).
//!
//! ```text
//! # a comment, also after a value
//! substituters = https://cache.example.org file:///srv/cache
//! extra-trusted-public-keys = cache.example.org-1:base64…
//! include /etc/nix/more.conf      # an error when missing
//! !include ~/optional.conf        # skipped when missing
//! ```
//!
//! A line is cut at its first `#` and split on spaces, tabs and carriage returns; an empty line
//! is skipped. `include FILE` and `!include FILE` take exactly one word, relative to the including
//! file's directory. Every other line is `NAME = VALUE…`, the `=` a word of its own; the value is the
//! remaining words joined by one space. Within one file (its includes read in place), plain settings
//! apply before the `extra-` ones, each in file order; a plain list setting replaces the list,
//! `extra-NAME` appends to it. Files apply in the order Nix loads them, the last one winning.
//!
//! The parser does no I/O: an include is read through the caller's `read` function, so the same code
//! reads the real files, test fixtures and fuzz input. Includes nest at most [`MAX_INCLUDE_DEPTH`]
//! deep, [`MAX_INCLUDES`] in all (Nix has no limit, and loops forever on a file that includes itself).

use std::path::{Path, PathBuf};

use thiserror::Error;

/// The deepest chain of includes followed.
pub const MAX_INCLUDE_DEPTH: usize = 16;
/// The most includes read from one top-level text (each file may include several).
pub const MAX_INCLUDES: usize = 256;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    #[error("{origin}:{line}: illegal configuration line {text:?}: write `name = value` (the `=` between spaces)")]
    Syntax { origin: String, line: usize, text: String },
    #[error("{origin}:{line}: file {file:?} is included but does not exist (use `!include` for an optional file)")]
    MissingInclude { origin: String, line: usize, file: String },
    #[error("{origin}:{line}: cannot read the included {file:?}: {why}")]
    Unreadable { origin: String, line: usize, file: String, why: String },
    #[error("{origin}:{line}: includes nest more than {MAX_INCLUDE_DEPTH} deep or more than {MAX_INCLUDES} in all (does a file include itself?)")]
    TooDeep { origin: String, line: usize },
}

/// Where a setting was written: a file and a line, or `NIX_CONFIG`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One `name = value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub name: String,
    pub value: String,
    pub origin: Origin,
}

/// A value of a setting, with where it was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub value: String,
    pub origin: Origin,
}

/// The settings narwhal uses, as the files loaded so far leave them. A list is `None` while no
/// file set it (Nix would then use its built-in default; narwhal uses none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NixConf {
    pub substituters: Option<Vec<Item>>,
    pub trusted_public_keys: Option<Vec<Item>>,
    pub secret_key_files: Option<Vec<Item>>,
    pub netrc_file: Option<Item>,
}

/// The settings of a text `contents` read from `origin` (a file path, or `NIX_CONFIG`), in the order
/// Nix applies them: plain ones first, then `extra-` ones. `read(path)` gives an included file's
/// contents, `Ok(None)` when it does not exist.
pub fn parse(
    contents: &str,
    origin: &str,
    read: &mut dyn FnMut(&Path) -> Result<Option<String>, String>,
) -> Result<Vec<Setting>, Error> {
    let mut settings = Vec::new();
    let mut budget = MAX_INCLUDES;
    parse_into(contents, origin, read, (0, &mut budget), &mut settings)?;
    // A stable partition: the plain settings, then the `extra-` ones, each kept in order.
    let (mut plain, extra): (Vec<_>, Vec<_>) = settings.into_iter().partition(|s| !s.name.starts_with("extra-"));
    plain.extend(extra);
    Ok(plain)
}

fn parse_into(
    contents: &str,
    origin: &str,
    read: &mut dyn FnMut(&Path) -> Result<Option<String>, String>,
    (depth, budget): (usize, &mut usize),
    out: &mut Vec<Setting>,
) -> Result<(), Error> {
    for (i, raw) in contents.split('\n').enumerate() {
        let line = i + 1;
        let text = raw.split('#').next().unwrap_or_default();
        let words: Vec<&str> = text.split([' ', '\t', '\r']).filter(|w| !w.is_empty()).collect();
        let syntax = || Error::Syntax { origin: origin.to_owned(), line, text: raw.to_owned() };
        match words.as_slice() {
            [] => {}
            [include @ ("include" | "!include"), file] => {
                if depth >= MAX_INCLUDE_DEPTH || *budget == 0 {
                    return Err(Error::TooDeep { origin: origin.to_owned(), line });
                }
                *budget -= 1;
                let path = relative_to(origin, file);
                let shown = path.to_string_lossy().into_owned();
                match read(&path) {
                    Ok(Some(text)) => parse_into(&text, &shown, read, (depth + 1, &mut *budget), out)?,
                    Ok(None) if *include == "!include" => {}
                    Ok(None) => return Err(Error::MissingInclude { origin: origin.to_owned(), line, file: shown }),
                    Err(why) => return Err(Error::Unreadable { origin: origin.to_owned(), line, file: shown, why }),
                }
            }
            [name, "=", value @ ..] if *name != "include" && *name != "!include" => out.push(Setting {
                name: (*name).to_owned(),
                value: value.join(" "),
                origin: Origin { file: origin.to_owned(), line },
            }),
            _ => return Err(syntax()),
        }
    }
    Ok(())
}

/// `file` as Nix's `absPath(file, dirOf(origin))`: an absolute path stays, a relative one is taken
/// from the including file's directory.
fn relative_to(origin: &str, file: &str) -> PathBuf {
    let file = Path::new(file);
    if file.is_absolute() {
        return file.to_owned();
    }
    Path::new(origin).parent().unwrap_or(Path::new("")).join(file)
}

impl NixConf {
    /// Applies `settings` (from [`parse`]) over what earlier files set. Settings narwhal does not use
    /// are ignored, as are values of other types.
    pub fn apply(&mut self, settings: &[Setting]) {
        for s in settings {
            let (name, append) = match s.name.strip_prefix("extra-") {
                Some(rest) => (rest, true),
                None => (s.name.as_str(), false),
            };
            let list = match name {
                // Nix's aliases: the names before Nix 2.0.
                "substituters" | "binary-caches" => &mut self.substituters,
                "trusted-public-keys" | "binary-cache-public-keys" => &mut self.trusted_public_keys,
                "secret-key-files" => &mut self.secret_key_files,
                "netrc-file" if !append => {
                    self.netrc_file = Some(Item { value: s.value.clone(), origin: s.origin.clone() });
                    continue;
                }
                _ => continue,
            };
            let items = list.get_or_insert_with(Vec::new);
            if !append {
                items.clear();
            }
            items.extend(s.value.split_whitespace().map(|v| Item { value: v.to_owned(), origin: s.origin.clone() }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::unnecessary_wraps)] // the signature `parse` takes
    fn no_files(_: &Path) -> Result<Option<String>, String> {
        Ok(None)
    }

    fn conf(texts: &[&str]) -> NixConf {
        let mut conf = NixConf::default();
        for (i, t) in texts.iter().enumerate() {
            conf.apply(&parse(t, &format!("/etc/f{i}"), &mut no_files).unwrap());
        }
        conf
    }

    fn values(items: Option<&Vec<Item>>) -> Vec<&str> {
        items.map(|v| v.iter().map(|i| i.value.as_str()).collect()).unwrap_or_default()
    }

    #[test]
    fn plain_settings_replace_and_extra_ones_append_after_them() {
        let c = conf(&["extra-substituters = b  # later\nsubstituters = a\n", "extra-substituters = c d"]);
        assert_eq!(values(c.substituters.as_ref()), ["a", "b", "c", "d"]);
        let c = conf(&["substituters = a\ntrusted-public-keys = k1", "substituters = x\r\n"]);
        assert_eq!(values(c.substituters.as_ref()), ["x"]);
        assert_eq!(values(c.trusted_public_keys.as_ref()), ["k1"]);
        assert_eq!(c.substituters.unwrap()[0].origin, Origin { file: "/etc/f1".into(), line: 1 });
        let c = conf(&["substituters =", "netrc-file = /n\nsecret-key-files = /k1 /k2"]);
        assert_eq!(c.substituters, Some(vec![]));
        assert_eq!(c.netrc_file.unwrap().value, "/n");
        assert_eq!(values(c.secret_key_files.as_ref()), ["/k1", "/k2"]);
    }

    #[test]
    fn includes_are_read_in_place_relative_to_their_file() {
        let mut read = |p: &Path| -> Result<Option<String>, String> {
            Ok(match p.to_str() {
                Some("/etc/nix/more.conf") => Some("trusted-public-keys = k\n!include gone\n".into()),
                Some("/etc/nix/self.conf") => Some("include self.conf".into()),
                _ => None,
            })
        };
        let s = parse("include more.conf\nsubstituters = a", "/etc/nix/nix.conf", &mut read).unwrap();
        assert_eq!(s[0].origin, Origin { file: "/etc/nix/more.conf".into(), line: 1 });
        let e = parse("include missing.conf", "/etc/nix/nix.conf", &mut read).unwrap_err();
        assert!(matches!(e, Error::MissingInclude { line: 1, .. }), "{e}");
        let e = parse("include self.conf", "/etc/nix/nix.conf", &mut read).unwrap_err();
        assert!(matches!(e, Error::TooDeep { .. }), "{e}");
    }

    #[test]
    fn lines_nix_refuses_are_errors_naming_the_line() {
        for bad in ["substituters=a", "substituters", "substituters :a", "include", "include a b", "= a"] {
            let e = parse(&format!("\n{bad}"), "NIX_CONFIG", &mut no_files).unwrap_err();
            assert!(matches!(e, Error::Syntax { line: 2, .. }), "{bad}: {e}");
        }
    }
}
