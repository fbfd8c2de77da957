//! Store paths: `<store dir>/<hash>-<name>`.
//!
//! The hash part is 32 nix32 characters (160 bits). The name is 1 to
//! [`MAX_NAME_LEN`] characters from `[A-Za-z0-9+-._?=]` and does not start
//! with `.`. The store directory is a value ([`StoreDir`]), never a constant:
//! narwhal reads paths of one store dir and writes them under another.

use std::fmt;

use thiserror::Error;

use crate::nixbase32;

/// Characters in the hash part.
pub const HASH_PART_LEN: usize = 32;
/// Bytes the hash part encodes.
pub const HASH_BYTES: usize = 20;
/// Nix limits the name to 211 characters.
pub const MAX_NAME_LEN: usize = 211;
/// Nix's default store directory.
pub const DEFAULT_STORE_DIR: &str = "/nix/store";

#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    #[error("store path {path:?} is not in the store directory {store_dir:?}")]
    NotInStore { path: String, store_dir: String },
    #[error("store path base name {0:?} is too short: expected <32-char hash>-<name>")]
    TooShort(String),
    #[error("store path base name {base:?} has an invalid hash part: {source}")]
    InvalidHash {
        base: String,
        #[source]
        source: nixbase32::Error,
    },
    #[error("store path base name {0:?} lacks the '-' after its hash part")]
    MissingDash(String),
    #[error("store path name {name:?} is invalid: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("store directory {0:?} must be absolute, without trailing '/', '.', '..' or empty components")]
    InvalidStoreDir(String),
}

/// The directory that holds store paths, such as `/nix/store`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreDir(String);

impl StoreDir {
    pub fn new(dir: impl Into<String>) -> Result<Self, Error> {
        let dir = dir.into();
        let ok = dir.starts_with('/')
            && dir.len() > 1
            && !dir.ends_with('/')
            && dir[1..].split('/').all(|c| !c.is_empty() && c != "." && c != "..")
            && !dir.contains('\0');
        if ok {
            Ok(Self(dir))
        } else {
            Err(Error::InvalidStoreDir(dir))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses a full path inside this store dir. Anything after the store
    /// path's base name (`/bin/sh`) is an error here; see [`Self::split_path`].
    pub fn parse_path(&self, path: &str) -> Result<StorePath, Error> {
        let base = self.strip(path)?;
        StorePath::from_base_name(base)
    }

    /// Splits `<store dir>/<base>/<rest>` into the store path and `/rest` (possibly empty).
    pub fn split_path<'a>(&self, path: &'a str) -> Result<(StorePath, &'a str), Error> {
        let rest = self.strip(path)?;
        let (base, inner) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        Ok((StorePath::from_base_name(base)?, inner))
    }

    fn strip<'a>(&self, path: &'a str) -> Result<&'a str, Error> {
        path.strip_prefix(self.0.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| Error::NotInStore { path: path.to_owned(), store_dir: self.0.clone() })
    }

    /// The full path of `path` in this store dir.
    pub fn display<'a>(&'a self, path: &'a StorePath) -> impl fmt::Display + 'a {
        DisplayPath { dir: self, path }
    }
}

impl Default for StoreDir {
    fn default() -> Self {
        Self(DEFAULT_STORE_DIR.to_owned())
    }
}

impl fmt::Display for StoreDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

struct DisplayPath<'a> {
    dir: &'a StoreDir,
    path: &'a StorePath,
}

impl fmt::Display for DisplayPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.dir.0, self.path)
    }
}

/// A store path without its store dir. Orders like Nix's `StorePath` (by base name).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorePath {
    /// `<hash>-<name>`; kept whole so ordering and printing are cheap.
    base: String,
}

impl StorePath {
    /// Parses `<hash>-<name>`.
    pub fn from_base_name(base: &str) -> Result<Self, Error> {
        if base.len() < HASH_PART_LEN + 2 {
            return Err(Error::TooShort(base.to_owned()));
        }
        // Bytes, not `str`: in untrusted input the 32nd byte may fall inside a multi-byte character.
        let hash = &base.as_bytes()[..HASH_PART_LEN];
        nixbase32::decode(hash).map_err(|source| Error::InvalidHash { base: base.to_owned(), source })?;
        // The hash part decoded, so it is 32 ASCII bytes and the rest starts on a character boundary.
        let rest = base.get(HASH_PART_LEN..).unwrap_or_default();
        let name = rest.strip_prefix('-').ok_or_else(|| Error::MissingDash(base.to_owned()))?;
        validate_name(name)?;
        Ok(Self { base: base.to_owned() })
    }

    /// Builds a store path from a 20-byte hash and a name.
    pub fn from_parts(hash: &[u8; HASH_BYTES], name: &str) -> Result<Self, Error> {
        validate_name(name)?;
        Ok(Self { base: format!("{}-{name}", nixbase32::encode(hash)) })
    }

    /// The 32-character hash part.
    pub fn hash_part(&self) -> &str {
        &self.base[..HASH_PART_LEN]
    }

    pub fn name(&self) -> &str {
        &self.base[HASH_PART_LEN + 1..]
    }

    /// `<hash>-<name>`.
    pub fn base_name(&self) -> &str {
        &self.base
    }

    /// Whether this is a derivation file.
    pub fn is_derivation(&self) -> bool {
        self.name().as_bytes().ends_with(b".drv")
    }
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

impl fmt::Debug for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorePath({})", self.base)
    }
}

/// Orders `items` so that each comes after the items its `references` name
/// (self-references and references outside `items` aside), ties broken by path:
/// the order in which a closure can be registered or committed. References that
/// form a cycle, impossible in a valid store and so the mark of a hostile or
/// corrupt cache, are an error naming the cycle: committing "after the
/// references" would otherwise wait forever.
pub fn references_first<T>(
    mut items: std::collections::BTreeMap<StorePath, T>,
    references: impl Fn(&T) -> &[StorePath],
) -> Result<Vec<T>, Cycle> {
    let mut out = Vec::with_capacity(items.len());
    while !items.is_empty() {
        let waits_for = |p: &StorePath, item: &T| references(item).iter().any(|r| r != p && items.contains_key(r));
        let ready: Vec<StorePath> =
            items.iter().filter(|(p, item)| !waits_for(p, item)).map(|(p, _)| p.clone()).collect();
        if ready.is_empty() {
            return Err(find_cycle(&items, &references));
        }
        for p in ready {
            if let Some(item) = items.remove(&p) {
                out.push(item);
            }
        }
    }
    Ok(out)
}

/// A cycle among `items`, each of which references another of them (none is ready): following
/// those references from the first must come back to a path already seen.
fn find_cycle<T>(items: &std::collections::BTreeMap<StorePath, T>, references: &impl Fn(&T) -> &[StorePath]) -> Cycle {
    let mut seen: Vec<&StorePath> = Vec::new();
    let mut here = items.keys().next();
    while let Some(p) = here {
        if let Some(start) = seen.iter().position(|s| *s == p) {
            let mut paths: Vec<StorePath> = seen[start..].iter().map(|p| (*p).clone()).collect();
            paths.push(p.clone());
            return Cycle(paths);
        }
        seen.push(p);
        here = items.get(p).and_then(|item| references(item).iter().find(|r| *r != p && items.contains_key(*r)));
    }
    Cycle(seen.into_iter().cloned().collect())
}

/// Store paths whose references lead back to the first: `a -> b -> a`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("the references form a cycle, which no valid store holds: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join(" -> "))]
pub struct Cycle(pub Vec<StorePath>);

/// Checks a store path name against Nix's rules.
pub fn validate_name(name: &str) -> Result<(), Error> {
    let err = |reason| Err(Error::InvalidName { name: name.to_owned(), reason });
    if name.is_empty() {
        return err("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return err("it is longer than 211 characters");
    }
    if name.starts_with('.') {
        return err("it starts with '.'");
    }
    if !name.bytes().all(|c| c.is_ascii_alphanumeric() || b"+-._?=".contains(&c)) {
        return err("only A-Z a-z 0-9 and +-._?= are allowed");
    }
    Ok(())
}

/// Whether `hash` is a valid 32-character store path hash part.
pub fn is_hash_part(hash: &str) -> bool {
    hash.len() == HASH_PART_LEN && hash.bytes().all(nixbase32::is_valid_char)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let dir = StoreDir::default();
        let p = dir.parse_path("/nix/store/0pqyvyw21p553pf74czgvqks0vjaqp0l-t1").unwrap();
        assert_eq!(p.hash_part(), "0pqyvyw21p553pf74czgvqks0vjaqp0l");
        assert_eq!(p.name(), "t1");
        assert_eq!(dir.display(&p).to_string(), "/nix/store/0pqyvyw21p553pf74czgvqks0vjaqp0l-t1");
        let (q, rest) = dir.split_path("/nix/store/0pqyvyw21p553pf74czgvqks0vjaqp0l-t1/bin/sh").unwrap();
        assert_eq!((q, rest), (p, "/bin/sh"));
        let other = StoreDir::new("/app/store").unwrap();
        assert!(other.parse_path("/nix/store/0pqyvyw21p553pf74czgvqks0vjaqp0l-t1").is_err());
    }

    #[test]
    fn rejects_bad_names() {
        for bad in ["", ".hidden", "a b", "a/b", "ü"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_name(&"a".repeat(211)).is_ok());
        assert!(validate_name(&"a".repeat(212)).is_err());
        assert!(StorePath::from_base_name("0pqyvyw21p553pf74czgvqks0vjaqp0e-t1").is_err());
        assert!(StorePath::from_base_name("0pqyvyw21p553pf74czgvqks0vjaqp0l_t1").is_err());
        for bad in ["nix/store", "/nix/store/", "/", "/nix//store", "/nix/../store"] {
            assert!(StoreDir::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn references_first_orders_closures_and_names_cycles() {
        let p =
            |c: char, name: &str| StorePath::from_base_name(&format!("{}-{name}", c.to_string().repeat(32))).unwrap();
        let (a, b, c, outside) = (p('a', "a"), p('b', "b"), p('c', "c"), p('d', "outside"));
        // c -> b -> a, a refers to itself and to a path outside the set.
        let items: std::collections::BTreeMap<_, _> = [
            (a.clone(), vec![a.clone(), outside.clone()]),
            (b.clone(), vec![a.clone()]),
            (c.clone(), vec![b.clone(), a.clone()]),
        ]
        .into_iter()
        .collect();
        let order = references_first(items.clone(), |r| r.as_slice()).unwrap();
        assert_eq!(order, vec![vec![a.clone(), outside.clone()], vec![a.clone()], vec![b.clone(), a.clone()]]);

        let mut cyclic = items;
        cyclic.insert(a.clone(), vec![c.clone()]);
        let cycle = references_first(cyclic, |r| r.as_slice()).unwrap_err();
        assert_eq!(cycle.0, vec![a.clone(), c.clone(), b.clone(), a.clone()]);
        assert!(cycle.to_string().contains(&format!("{a} -> {c} -> {b} -> {a}")), "{cycle}");
    }

    #[test]
    fn a_hash_part_ending_inside_a_character_is_an_error() {
        let base = format!("{}é-foo", "a".repeat(31));
        let err = StorePath::from_base_name(&base).unwrap_err();
        assert!(err.to_string().contains("0xc3 at position 31"), "{err}");
    }
}
