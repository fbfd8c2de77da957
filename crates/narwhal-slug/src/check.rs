//! Finding what a slug's store no longer resolves, typically after pruning.
//!
//! At run time the slug directory is mounted at a runtime root such as
//! `/app`, so the absolute path `/app/store/x` names `<slug>/store/x` now.
//! [`check`] walks `<slug>/store` (never following symlinks) and reports
//! [`Problem`]s, which are warnings for a person to read, not errors:
//!
//! - a symlink whose target does not resolve: the chain is followed as the
//!   kernel would at run time, component by component, with absolute targets
//!   under the runtime root mapped into the slug, relative ones taken from the
//!   link's directory, `..` taken physically, and at most
//!   [`MAX_SYMLINK_HOPS`] links;
//! - an ELF file whose `PT_INTERP` lies under the runtime root and does not
//!   resolve to a file;
//! - an ELF file's `DT_NEEDED` library that is in none of the directories
//!   the loader would search in the slug: the `DT_RUNPATH` entries (or
//!   `DT_RPATH` when there is no run path), with `$ORIGIN` expanded to the
//!   file's own directory at run time, followed by the loader's default
//!   directory (the directory of the file's interpreter; for a file without
//!   one, such as a shared library, the directories of every interpreter under
//!   the runtime root found in the slug).
//!
//! What cannot be judged from the slug alone is not reported: targets and
//! interpreters outside the runtime root (the system provides them or not),
//! and the libraries of any file whose search path has no entry or an entry
//! outside the runtime root (relative, empty, `$LIB`, `$PLATFORM`, `/usr/lib`),
//! or whose interpreter is outside the runtime root (the system loader also
//! searches the system's directories). Libraries another object already loaded
//! under the same soname, and `DT_RPATH` inherited from the loading object,
//! are not modelled, so a library can be reported that would in fact load.
//! Files that are not ELF64 little-endian, or are malformed, are skipped, and
//! so are files the loader would neither run nor load: only executable files
//! and files named like shared objects (`*.so`, `*.so.*`) are read.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::elf::{self, DynamicInfo};
use crate::layout::Layout;
use crate::prune::STORE_DIR_NAME;
use crate::tree::{Walk, WalkError};

/// Linux's `MAXSYMLINKS`: the most symlinks one path lookup follows.
pub const MAX_SYMLINK_HOPS: usize = 40;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    #[error("runtime root {0:?} must be an absolute path without '.' or '..' components")]
    InvalidRuntimeRoot(String),
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Walk(#[from] WalkError),
}

/// Something in the slug that will not resolve at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Problem {
    /// The culprit, relative to the slug directory (`store/<hash>-<name>/...`).
    pub path: PathBuf,
    pub kind: ProblemKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// A symlink (`target` is what it says) that leads nowhere.
    BrokenSymlink { target: PathBuf, reason: Unresolved },
    /// An ELF file whose interpreter, under the runtime root, is not there.
    MissingInterpreter { interpreter: PathBuf, reason: Unresolved },
    /// An ELF file's needed library, found in none of `searched` (runtime
    /// paths, in search order). `searched` is empty when the library is named
    /// by an absolute path that does not resolve.
    MissingLibrary { library: PathBuf, searched: Vec<PathBuf> },
}

/// Why a path does not resolve. Paths are runtime paths (`/app/...`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unresolved {
    /// This path, reached during the lookup, does not exist.
    Missing(PathBuf),
    /// This path is used as a directory but is not one.
    NotADirectory(PathBuf),
    /// The lookup ends at this directory where a file is needed.
    IsADirectory(PathBuf),
    /// The lookup follows more than [`MAX_SYMLINK_HOPS`] symlinks.
    TooManyLinks,
}

impl fmt::Display for Unresolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unresolved::Missing(p) => write!(f, "{} does not exist", p.display()),
            Unresolved::NotADirectory(p) => write!(f, "{} is not a directory", p.display()),
            Unresolved::IsADirectory(p) => write!(f, "{} is a directory", p.display()),
            Unresolved::TooManyLinks => write!(f, "it passes through more than {MAX_SYMLINK_HOPS} symlinks"),
        }
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::BrokenSymlink { target, reason } => {
                write!(f, "symlink to {} does not resolve: {reason}", target.display())
            }
            ProblemKind::MissingInterpreter { interpreter, reason } => {
                write!(f, "ELF interpreter {} does not resolve: {reason}", interpreter.display())
            }
            ProblemKind::MissingLibrary { library, searched } if searched.is_empty() => {
                write!(f, "needed library {} does not resolve", library.display())
            }
            ProblemKind::MissingLibrary { library, searched } => {
                let dirs: Vec<_> = searched.iter().map(|d| d.display().to_string()).collect();
                write!(f, "needed library {} is in none of {}", library.display(), dirs.join(":"))
            }
        }
    }
}

impl fmt::Display for Problem {
    /// One sentence: `<path>: <what is wrong>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.kind)
    }
}

/// Checks `slug_dir/store`, which will be `runtime_root` (such as `/app`) at
/// run time. Problems are sorted by path; a file's own problems keep their
/// order (interpreter first, then libraries in `DT_NEEDED` order).
pub fn check(slug_dir: &Path, runtime_root: &str) -> Result<Vec<Problem>, Error> {
    check_layout(slug_dir, runtime_root, Layout::Slug)
}

/// [`check()`] for a store laid out as `layout` in `slug_dir`, which is `runtime_root` at run time
/// (`/workspace` for a [`Layout::Flat`] store).
pub fn check_layout(slug_dir: &Path, runtime_root: &str, layout: Layout) -> Result<Vec<Problem>, Error> {
    let resolver = Resolver::new(slug_dir, runtime_root)?;
    let mut problems = Vec::new();
    let mut elves = Vec::new();
    let roots: Vec<PathBuf> = match layout {
        Layout::Slug => vec![slug_dir.join(STORE_DIR_NAME)],
        Layout::Flat => layout
            .entries(slug_dir)
            .map_err(|source| Error::Io { path: slug_dir.to_path_buf(), source })?
            .into_iter()
            .map(|e| e.path)
            .collect(),
    };
    for entry in roots.iter().flat_map(|r| Walk::new(r)) {
        let entry = entry?;
        let rel = entry.path.strip_prefix(slug_dir).map_or_else(|_| entry.path.clone(), Path::to_path_buf);
        let mut dir = resolver.root.clone();
        dir.extend(rel.parent().iter().flat_map(|p| p.iter()).map(|c| c.as_bytes().to_vec()));
        if entry.meta.is_symlink() {
            let target = fs::read_link(&entry.path).map_err(|source| Error::Io { path: entry.path.clone(), source })?;
            let name = rel.file_name().map(OsStr::as_bytes).unwrap_or_default();
            if let Outcome::Failed(reason) = resolver.resolve(&dir, name)? {
                problems.push(Problem { path: rel, kind: ProblemKind::BrokenSymlink { target, reason } });
            }
        } else if entry.meta.is_file() && entry.meta.len() >= 64 && loadable(&rel, &entry.meta) {
            let io_err = |source| Error::Io { path: entry.path.clone(), source };
            let file = File::open(&entry.path).map_err(io_err)?;
            match elf::parse_file(&file) {
                Ok(info) => elves.push((rel, dir, info)),
                Err(elf::Error::Io(source)) => return Err(io_err(source)),
                Err(_) => {}
            }
        }
    }
    // The loader's default directory is its own; any of these may load a library.
    let mut loader_dirs: Vec<Vec<u8>> = Vec::new();
    for (_, _, info) in &elves {
        if let Some(dir) = info.interpreter.as_deref().filter(|i| resolver.in_prefix(i)).and_then(parent) {
            if !loader_dirs.contains(&dir) {
                loader_dirs.push(dir);
            }
        }
    }
    for (rel, dir, info) in elves {
        let found = check_elf(&resolver, &dir, &info, &loader_dirs)?;
        problems.extend(found.into_iter().map(|kind| Problem { path: rel.clone(), kind }));
    }
    problems.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(problems)
}

/// Whether the loader can run or load the file: a program (`execve` needs an execute bit) or a
/// shared object (by `DT_NEEDED` or `dlopen`, named `*.so` or `*.so.*`). Only these are read:
/// opening every file of a large closure costs more than the rest of the check.
fn loadable(rel: &Path, meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    meta.permissions().mode() & 0o111 != 0
        || rel.file_name().is_some_and(|n| n.as_bytes().split(|&b| b == b'.').skip(1).any(|part| part == b"so"))
}

fn check_elf(
    resolver: &Resolver<'_>,
    dir: &[Vec<u8>],
    info: &DynamicInfo,
    loader_dirs: &[Vec<u8>],
) -> Result<Vec<ProblemKind>, Error> {
    let mut problems = Vec::new();
    let defaults = match &info.interpreter {
        Some(interp) if resolver.in_prefix(interp) => {
            if let Some(reason) = resolver.resolve_file(interp)? {
                problems.push(ProblemKind::MissingInterpreter { interpreter: path_of(interp), reason });
            }
            parent(interp).into_iter().collect()
        }
        // The system's loader searches the system's directories too.
        Some(_) => return Ok(problems),
        None => loader_dirs.to_vec(),
    };
    let Some(spec) = info.runpath.as_ref().or(info.rpath.as_ref()) else { return Ok(problems) };
    let origin = runtime_bytes(dir);
    let mut searched: Vec<Vec<u8>> = Vec::new();
    for entry in spec.split(|&b| b == b':') {
        let entry = expand_origin(entry, &origin);
        if !entry.starts_with(b"/") || entry.contains(&b'$') || !resolver.in_prefix(&entry) {
            return Ok(problems);
        }
        searched.push(entry);
    }
    for d in defaults {
        if !searched.contains(&d) {
            searched.push(d);
        }
    }
    for library in &info.needed {
        if library.contains(&b'/') {
            if library.starts_with(b"/") && resolver.resolve_file(library)?.is_some() {
                problems.push(ProblemKind::MissingLibrary { library: path_of(library), searched: Vec::new() });
            }
            continue;
        }
        let mut found = false;
        for d in &searched {
            let mut candidate = d.clone();
            candidate.push(b'/');
            candidate.extend_from_slice(library);
            if resolver.resolve_file(&candidate)?.is_none() {
                found = true;
                break;
            }
        }
        if !found {
            let searched = searched.iter().map(|d| path_of(d)).collect();
            problems.push(ProblemKind::MissingLibrary { library: path_of(library), searched });
        }
    }
    Ok(problems)
}

/// Replaces `$ORIGIN` and `${ORIGIN}` as glibc does.
fn expand_origin(entry: &[u8], origin: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entry.len());
    let mut i = 0;
    while i < entry.len() {
        let rest = &entry[i..];
        if let Some(after) = rest.strip_prefix(b"${ORIGIN}") {
            out.extend_from_slice(origin);
            i = entry.len() - after.len();
        } else if let Some(after) = rest
            .strip_prefix(b"$ORIGIN")
            .filter(|a| !a.first().is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_'))
        {
            out.extend_from_slice(origin);
            i = entry.len() - after.len();
        } else {
            out.push(entry[i]);
            i += 1;
        }
    }
    out
}

fn path_of(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

/// `/a/b` from components `[a, b]`.
fn runtime_bytes(comps: &[Vec<u8>]) -> Vec<u8> {
    if comps.is_empty() {
        return b"/".to_vec();
    }
    let mut out = Vec::new();
    for c in comps {
        out.push(b'/');
        out.extend_from_slice(c);
    }
    out
}

/// The directory part of an absolute path, lexically.
fn parent(path: &[u8]) -> Option<Vec<u8>> {
    let path = path.strip_suffix(b"/").unwrap_or(path);
    let i = memchr::memrchr(b'/', path)?;
    Some(if i == 0 { b"/".to_vec() } else { path[..i].to_vec() })
}

/// The components of `path`; a trailing `/` becomes a final `.` so that a
/// lookup ending at a non-directory fails, as in the kernel.
fn components(path: &[u8]) -> VecDeque<Vec<u8>> {
    let mut comps: VecDeque<Vec<u8>> =
        path.split(|&b| b == b'/').filter(|c| !c.is_empty()).map(<[u8]>::to_vec).collect();
    if path.len() > 1 && path.ends_with(b"/") {
        comps.push_back(b".".to_vec());
    }
    comps
}

enum Outcome {
    Found {
        is_dir: bool,
    },
    /// The lookup left the runtime root: the slug cannot tell.
    External,
    Failed(Unresolved),
}

/// Path lookup at run time, answered from the slug.
struct Resolver<'a> {
    slug_dir: &'a Path,
    root: Vec<Vec<u8>>,
}

impl<'a> Resolver<'a> {
    fn new(slug_dir: &'a Path, runtime_root: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidRuntimeRoot(runtime_root.to_owned());
        if !runtime_root.starts_with('/') {
            return Err(invalid());
        }
        let root: Vec<Vec<u8>> =
            runtime_root.split('/').filter(|c| !c.is_empty()).map(|c| c.as_bytes().to_vec()).collect();
        if root.iter().any(|c| c == b"." || c == b"..") {
            return Err(invalid());
        }
        Ok(Resolver { slug_dir, root })
    }

    /// The slug path of runtime components, if they are under the root.
    fn to_slug(&self, comps: &[Vec<u8>]) -> Option<PathBuf> {
        let rest = comps.strip_prefix(&self.root[..])?;
        let mut path = self.slug_dir.to_path_buf();
        path.extend(rest.iter().map(|c| OsStr::from_bytes(c)));
        Some(path)
    }

    /// Whether an absolute path is, lexically, under the runtime root.
    fn in_prefix(&self, path: &[u8]) -> bool {
        if !path.starts_with(b"/") {
            return false;
        }
        let mut comps: Vec<&[u8]> = Vec::new();
        for c in path.split(|&b| b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => {
                    comps.pop();
                }
                c => comps.push(c),
            }
        }
        comps.len() >= self.root.len() && self.root.iter().zip(&comps).all(|(a, b)| a == b)
    }

    /// `None` if the absolute `path` resolves to a non-directory or leaves
    /// the runtime root; otherwise why not.
    fn resolve_file(&self, path: &[u8]) -> Result<Option<Unresolved>, Error> {
        Ok(match self.resolve(&[], path)? {
            Outcome::Found { is_dir: false } | Outcome::External => None,
            Outcome::Found { is_dir: true } => Some(Unresolved::IsADirectory(path_of(path))),
            Outcome::Failed(reason) => Some(reason),
        })
    }

    /// Looks `path` up from the directory `start` (runtime components of a
    /// directory known to exist), following every symlink.
    fn resolve(&self, start: &[Vec<u8>], path: &[u8]) -> Result<Outcome, Error> {
        let mut cur: Vec<Vec<u8>> = if path.starts_with(b"/") { Vec::new() } else { start.to_vec() };
        let mut pending = components(path);
        if path.is_empty() {
            // An empty path (or symlink target) names nothing.
            return Ok(Outcome::Failed(Unresolved::Missing(path_of(&runtime_bytes(&cur)))));
        }
        let mut hops = 0;
        while let Some(c) = pending.pop_front() {
            match &c[..] {
                b"." => continue,
                b".." => {
                    cur.pop();
                    continue;
                }
                _ => cur.push(c),
            }
            if cur.len() < self.root.len() && self.root.starts_with(&cur) {
                // An ancestor of the runtime root: a directory at run time.
                continue;
            }
            let Some(slug_path) = self.to_slug(&cur) else { return Ok(Outcome::External) };
            let meta = match fs::symlink_metadata(&slug_path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Ok(Outcome::Failed(Unresolved::Missing(path_of(&runtime_bytes(&cur)))));
                }
                Err(source) => return Err(Error::Io { path: slug_path, source }),
            };
            if meta.is_symlink() {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Ok(Outcome::Failed(Unresolved::TooManyLinks));
                }
                let target =
                    fs::read_link(&slug_path).map_err(|source| Error::Io { path: slug_path.clone(), source })?;
                let target = target.as_os_str().as_bytes();
                if target.is_empty() {
                    return Ok(Outcome::Failed(Unresolved::Missing(path_of(&runtime_bytes(&cur)))));
                }
                cur.pop();
                if target.starts_with(b"/") {
                    cur.clear();
                }
                let mut spliced = components(target);
                spliced.extend(pending);
                pending = spliced;
            } else if !meta.is_dir() {
                if pending.is_empty() {
                    return Ok(Outcome::Found { is_dir: false });
                }
                return Ok(Outcome::Failed(Unresolved::NotADirectory(path_of(&runtime_bytes(&cur)))));
            }
        }
        Ok(if self.to_slug(&cur).is_some() { Outcome::Found { is_dir: true } } else { Outcome::External })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_expansion() {
        let o = b"/app/store/x/bin";
        assert_eq!(expand_origin(b"$ORIGIN/../lib", o), b"/app/store/x/bin/../lib");
        assert_eq!(expand_origin(b"${ORIGIN}/lib", o), b"/app/store/x/bin/lib");
        assert_eq!(expand_origin(b"$ORIGINAL", o), b"$ORIGINAL");
        assert_eq!(expand_origin(b"$ORIGIN", o), o);
        assert_eq!(expand_origin(b"/x/$LIB", o), b"/x/$LIB");
    }

    #[test]
    fn lexical_helpers() {
        assert_eq!(parent(b"/app/store/g/lib/ld.so"), Some(b"/app/store/g/lib".to_vec()));
        assert_eq!(parent(b"/ld.so"), Some(b"/".to_vec()));
        assert_eq!(parent(b"ld.so"), None);
        let r = Resolver::new(Path::new("/slug"), "/app/").unwrap();
        assert!(r.in_prefix(b"/app"));
        assert!(r.in_prefix(b"/app/store/x"));
        assert!(r.in_prefix(b"/x/../app/store"));
        assert!(!r.in_prefix(b"/app/../etc"));
        assert!(!r.in_prefix(b"/application"));
        assert!(!r.in_prefix(b"app/store"));
        assert!(Resolver::new(Path::new("/slug"), "app").is_err());
        assert!(Resolver::new(Path::new("/slug"), "/app/../x").is_err());
        assert_eq!(components(b"a//b/").into_iter().collect::<Vec<_>>(), [b"a".to_vec(), b"b".to_vec(), b".".to_vec()]);
    }
}
