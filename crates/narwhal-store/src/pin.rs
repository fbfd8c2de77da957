//! Pins: named pointers from an application (and optionally a git revision)
//! to a store path, kept in the cache beside the narinfos.
//!
//! Keys: `pins/<name>` is the latest pin of `name`; `pins/<name>@<rev>` the pin
//! for one revision. Contents, one `Key: value` line each:
//!
//! ```text
//! Name: myapp
//! StorePath: /nix/store/<hash>-myapp
//! Revision: 3f2a…          (only in revision pins and the latest pin made from one)
//! Created: 1767225600      (Unix seconds)
//! ```
//!
//! Names are 1 to 100 characters from `[A-Za-z0-9._-]`, not starting with
//! `.` or `-`; revisions the same. Unknown keys are ignored, for later versions.

use std::fmt;

use narwhal_formats::store_path::{self, StoreDir, StorePath};
use thiserror::Error;

use crate::{keys, CacheWriter, StoreError};

pub const PREFIX: &str = "pins/";
const MAX_NAME: usize = 100;

#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    #[error("pin name {0:?} is invalid: use 1-100 characters from A-Z a-z 0-9 . _ -, not starting with . or -")]
    InvalidName(String),
    #[error("revision {0:?} is invalid: use 1-100 characters from A-Z a-z 0-9 . _ -")]
    InvalidRevision(String),
    #[error("pin line {line} is not 'Key: value'")]
    NotKeyValue { line: usize },
    #[error("pin lacks its {0} line")]
    Missing(&'static str),
    #[error("pin has an invalid StorePath")]
    StorePath(#[source] store_path::Error),
    #[error("pin Created {0:?} is not a number of seconds")]
    Created(String),
}

fn valid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && !s.starts_with(['.', '-'])
        && s.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
}

pub fn check_name(name: &str) -> Result<(), Error> {
    if valid(name) {
        Ok(())
    } else {
        Err(Error::InvalidName(name.to_owned()))
    }
}

pub fn check_revision(rev: &str) -> Result<(), Error> {
    if valid(rev) {
        Ok(())
    } else {
        Err(Error::InvalidRevision(rev.to_owned()))
    }
}

/// The cache key of the latest pin of `name`, or of its pin for `rev`.
pub fn key(name: &str, rev: Option<&str>) -> Result<String, Error> {
    check_name(name)?;
    match rev {
        Some(r) => {
            check_revision(r)?;
            Ok(format!("{PREFIX}{name}@{r}"))
        }
        None => Ok(format!("{PREFIX}{name}")),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub name: String,
    pub store_dir: StoreDir,
    pub path: StorePath,
    pub revision: Option<String>,
    pub created: u64,
}

impl Pin {
    pub fn parse(text: &str, store_dir: &StoreDir) -> Result<Self, Error> {
        let (mut name, mut path, mut revision, mut created) = (None, None, None, None);
        for (i, line) in text.lines().enumerate() {
            if line.is_empty() {
                continue;
            }
            let (k, v) = line.split_once(": ").ok_or(Error::NotKeyValue { line: i + 1 })?;
            match k {
                "Name" => {
                    check_name(v)?;
                    name = Some(v.to_owned());
                }
                "StorePath" => path = Some(store_dir.parse_path(v).map_err(Error::StorePath)?),
                "Revision" => {
                    check_revision(v)?;
                    revision = Some(v.to_owned());
                }
                "Created" => created = Some(v.parse().map_err(|_| Error::Created(v.to_owned()))?),
                _ => {}
            }
        }
        Ok(Self {
            name: name.ok_or(Error::Missing("Name"))?,
            store_dir: store_dir.clone(),
            path: path.ok_or(Error::Missing("StorePath"))?,
            revision,
            created: created.unwrap_or(0),
        })
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Name: {}", self.name)?;
        writeln!(f, "StorePath: {}", self.store_dir.display(&self.path))?;
        if let Some(r) = &self.revision {
            writeln!(f, "Revision: {r}")?;
        }
        writeln!(f, "Created: {}", self.created)
    }
}

/// Why pins could not be written or read.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PinsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pin(#[from] Error),
    #[error("invalid pin {key}")]
    Invalid {
        key: String,
        #[source]
        source: Error,
    },
    /// The rule every writer keeps (narwhal pin, the server's PUT): a pin names a path the cache has.
    #[error("{path} is not in {cache}")]
    NotInCache { path: String, cache: String },
}

impl PinsError {
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Self::Store(e) => e.hint(),
            Self::NotInCache { .. } => Some("push it first (narwhal push PATH --to CACHE), then pin it"),
            _ => None,
        }
    }
}

/// Refuses a pin whose path is not in `cache`, so that every pin can be deployed.
pub fn check_target(cache: &dyn CacheWriter, pin: &Pin) -> Result<(), PinsError> {
    if cache.exists(&keys::narinfo(&pin.path))? {
        Ok(())
    } else {
        Err(PinsError::NotInCache { path: pin.store_dir.display(&pin.path).to_string(), cache: cache.url().to_owned() })
    }
}

/// Writes `pin` as the latest pin of its name, and as its revision's pin when it has one (that one
/// first, so the latest never names a revision whose own pin is missing).
pub fn write(cache: &dyn CacheWriter, pin: &Pin) -> Result<(), PinsError> {
    check_target(cache, pin)?;
    let text = pin.to_string();
    if let Some(r) = &pin.revision {
        cache.put(&key(&pin.name, Some(r))?, text.as_bytes(), CONTENT_TYPE)?;
    }
    cache.put(&key(&pin.name, None)?, text.as_bytes(), CONTENT_TYPE)?;
    Ok(())
}

/// Content type of a pin object.
pub const CONTENT_TYPE: &str = "text/plain";

/// The pins under `pins/` (only those of `name` when given), with their keys, in key order.
pub fn list(
    cache: &dyn CacheWriter,
    store_dir: &StoreDir,
    name: Option<&str>,
) -> Result<Vec<(String, Pin)>, PinsError> {
    let mut out = Vec::new();
    for key in cache.list(PREFIX)? {
        let base = key.trim_start_matches(PREFIX);
        let pin_name = base.split('@').next().unwrap_or(base);
        if name.is_some_and(|n| n != pin_name) {
            continue;
        }
        let Some(bytes) = cache.get(&key)? else { continue };
        let pin = Pin::parse(&String::from_utf8_lossy(&bytes), store_dir)
            .map_err(|source| PinsError::Invalid { key: key.clone(), source })?;
        out.push((key, pin));
    }
    Ok(out)
}

/// Deletes all but the `keep` newest revision pins of `name` (by Created, then key); the latest
/// pin (`pins/NAME`) always stays, and no store path is touched. Returns the keys deleted.
pub fn keep_newest(
    cache: &dyn CacheWriter,
    store_dir: &StoreDir,
    name: &str,
    keep: usize,
) -> Result<Vec<String>, PinsError> {
    let mut revs = list(cache, store_dir, Some(name))?;
    revs.retain(|(key, p)| p.revision.is_some() && key.contains('@'));
    revs.sort_by(|a, b| b.1.created.cmp(&a.1.created).then_with(|| b.0.cmp(&a.0)));
    let mut deleted = Vec::new();
    for (key, _) in revs.into_iter().skip(keep.max(1)) {
        cache.delete(&key)?;
        deleted.push(key);
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_keys() {
        let dir = StoreDir::default();
        let text =
            "Name: web\nStorePath: /nix/store/0pqyvyw21p553pf74czgvqks0vjaqp0l-t1\nRevision: abc123\nCreated: 42\n";
        let pin = Pin::parse(text, &dir).expect("valid pin");
        assert_eq!(pin.to_string(), text);
        assert_eq!(key("web", Some("abc123")).expect("valid"), "pins/web@abc123");
        assert_eq!(key("web", None).expect("valid"), "pins/web");
        assert!(key("../x", None).is_err());
        assert!(key("web", Some("a/b")).is_err());
        assert_eq!(
            Pin::parse("StorePath: x\n", &dir).unwrap_err(),
            Error::StorePath(store_path::Error::NotInStore { path: "x".into(), store_dir: "/nix/store".into() })
        );
    }
}
