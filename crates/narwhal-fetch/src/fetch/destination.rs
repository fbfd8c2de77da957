//! The destination: opened and locked for one fetch (system directories
//! refused, what killed fetches left removed), what is already there, and the
//! commit: the manifest first, then the trees renamed into place.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use narwhal_formats::hash::{Algorithm, Hash};
use narwhal_formats::nar;
use narwhal_store::lock::DirLock;

use super::{Done, FetchOptions, Summary};
use crate::closure::ClosurePath;
use crate::error::Error;
use crate::manifest::Manifest;
use crate::report::Source;

/// Saves the manifest (which lists `trees` already), then renames the trees
/// into place: a tree is never under its final name without its entry, so a
/// fetch killed at any point leaves nothing a rerun could not trust. A listed
/// path whose tree is missing is fetched again.
pub(crate) fn commit_trees(
    manifest: &Manifest,
    trees: Vec<(nar::Pending, PathBuf)>,
    opts: &FetchOptions<'_>,
) -> Result<(), Error> {
    manifest.save(&opts.dest)?;
    let mut first_error = None;
    for (tree, dest) in trees {
        if let Err(source) = tree.commit_to(&dest) {
            first_error.get_or_insert(Error::Unpack {
                path: dest.display().to_string(),
                cache: "the destination".to_owned(),
                source,
            });
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Settles the paths whose final name is already taken by a tree the
/// manifest does not list (left by a version of narwhal that renamed trees
/// before recording them, or put there by hand): such a tree is kept, and
/// recorded, when its NAR hash is the one just computed for the path (the
/// relocated hash); otherwise that path fails as [`Error::Unmanaged`] and is
/// not recorded.
pub(crate) fn reconcile(done: Vec<Done>, dest: &Path) -> (Vec<Done>, Result<(), Error>) {
    let mut kept = Vec::with_capacity(done.len());
    let mut first_error = None;
    for mut d in done {
        let target = dest.join(&d.base);
        if fs::symlink_metadata(&target).is_err() {
            kept.push(d);
            continue;
        }
        match nar::dump_to_hash(&target, Algorithm::Sha256) {
            Ok((hash, _)) if hash.to_string() == d.entry.relocated_nar_hash => {
                // The same tree: keep the one in place.
                d.tree = None;
                kept.push(d);
            }
            _ => {
                first_error.get_or_insert(Error::Unmanaged(target));
            }
        }
    }
    (kept, first_error.map_or(Ok(()), Err))
}

/// Creates the destination, locks it for this fetch alone (removing what
/// killed fetches left there) and reads its manifest, which must be for the
/// same store directory and prefix.
pub(crate) fn open_destination(opts: &FetchOptions<'_>, store_dir: &str) -> Result<(Manifest, DirLock), Error> {
    check_destination(&opts.dest)?;
    fs::create_dir_all(&opts.dest).map_err(|source| Error::Io {
        what: "cannot create",
        path: opts.dest.clone(),
        source,
    })?;
    let meta = opts.dest.join(crate::manifest::META_DIR);
    match fs::create_dir(&meta) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            return Err(Error::Io { what: "cannot create", path: meta, source: e });
        }
        _ => {}
    }
    if !fs::symlink_metadata(&meta).is_ok_and(|m| m.is_dir()) {
        return Err(Error::NotADirectory(meta));
    }
    let warn = |m: &str| opts.reporter.waiting(m);
    let lock_file = format!("{}/lock", crate::manifest::META_DIR);
    let lock =
        DirLock::exclusive(&opts.dest, &lock_file, &[&opts.dest, &meta], opts.lock_wait, "narwhal fetch", &warn)?;
    let prefix = String::from_utf8_lossy(opts.relocation.to()).into_owned();
    let manifest = Manifest::load(&opts.dest)?.unwrap_or_else(|| Manifest {
        version: 1,
        store_dir: store_dir.to_owned(),
        prefix: prefix.clone(),
        paths: std::collections::BTreeMap::new(),
    });
    if manifest.prefix != prefix || manifest.store_dir != store_dir {
        return Err(Error::Conflict {
            path: opts.dest.clone(),
            what: "prefix",
            existing: format!("{} -> {}", manifest.store_dir, manifest.prefix),
            wanted: format!("{store_dir} -> {prefix}"),
        });
    }
    Ok((manifest, lock))
}

/// Directories a fetch must never write into: the system's own. A
/// destination is a directory of its own (`./store`, `APP_DIR/store`).
const SYSTEM_DIRS: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/media",
    "/mnt",
    "/nix",
    "/nix/store",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/usr/bin",
    "/usr/lib",
    "/usr/lib64",
    "/usr/libexec",
    "/usr/local",
    "/usr/local/bin",
    "/usr/local/lib",
    "/usr/sbin",
    "/usr/share",
    "/var",
    "/var/lib",
    "/var/tmp",
];

/// Refuses a destination that is (or resolves to) a system directory.
fn check_destination(dest: &Path) -> Result<(), Error> {
    let absolute = std::path::absolute(dest).map_err(|source| Error::Io {
        what: "cannot resolve",
        path: dest.to_owned(),
        source,
    })?;
    // Lexically first (`/usr/../etc`), then as the file system resolves it (`/bin` -> `/usr/bin`).
    let mut lexical = PathBuf::from("/");
    for c in absolute.components() {
        match c {
            std::path::Component::ParentDir => {
                lexical.pop();
            }
            std::path::Component::Normal(n) => lexical.push(n),
            _ => {}
        }
    }
    let resolved = fs::canonicalize(&lexical).ok();
    for candidate in std::iter::once(&lexical).chain(resolved.as_ref()) {
        if SYSTEM_DIRS.iter().any(|d| candidate == Path::new(d)) {
            return Err(Error::SystemDirectory(dest.to_owned()));
        }
    }
    Ok(())
}

/// The paths not yet in the destination; the others are checked against the
/// manifest (a path written from another NAR is an error). A tree the
/// manifest does not list is fetched again and compared (see [`reconcile`]).
pub(super) fn still_missing<'c>(
    closure: &'c [ClosurePath],
    manifest: &Manifest,
    opts: &FetchOptions<'_>,
    summary: &mut Summary,
) -> Result<Vec<&'c ClosurePath>, Error> {
    let mut todo = Vec::new();
    for cp in closure {
        if is_present(&opts.dest, manifest, cp.info.path.base_name(), cp.info.nar_hash)? {
            summary.present += 1;
            opts.reporter.finished(&cp.info.path, Source::Present);
        } else {
            todo.push(cp);
        }
    }
    Ok(todo)
}

/// Whether `<dest>/<base>` is already there as narwhal wrote it from a NAR
/// with `nar_hash` (per the manifest); an error if the manifest lists it from
/// another NAR. `false` for a tree the manifest does not list: it is checked
/// once the path's NAR hash is known ([`reconcile`]).
pub(crate) fn is_present(dest: &Path, manifest: &Manifest, base: &str, nar_hash: Hash) -> Result<bool, Error> {
    let target = dest.join(base);
    if fs::symlink_metadata(&target).is_err() {
        return Ok(false);
    }
    match manifest.paths.get(base) {
        Some(e) if e.nar_hash == nar_hash.to_string() => Ok(true),
        Some(e) => Err(Error::Conflict {
            path: target,
            what: "NarHash",
            existing: e.nar_hash.clone(),
            wanted: nar_hash.to_string(),
        }),
        None => Ok(false),
    }
}
