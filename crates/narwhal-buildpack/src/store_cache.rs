//! The CNB's `closure` cache layer (`store` is a name the spec reserves): the closure as it was unpacked and
//! relocated to `/workspace`, kept between builds, so a rebuild fetches only
//! what changed and unpacks nothing else.
//!
//! The layer holds `<hash>-<name>` trees and `.narwhal/manifest.json` (the
//! fetch's manifest, for exactly the trees it lists). The image's store is
//! still the app directory: [`restore`] puts each path the new closure uses
//! into it by hard-linking the layer's files (a copy per file where links
//! cannot cross: `/layers` and `/workspace` may be different volumes), before
//! the fetch, which then finds them present. [`update`] brings the layer in
//! line with the app directory after the fetch.
//!
//! What makes the layer trustworthy:
//! - a tree the layer's manifest lists is complete under its final name:
//!   trees are linked under a temporary name ([`narwhal_formats::temp`]) and
//!   renamed into place before the manifest lists them, and the manifest
//!   stops listing a tree before it is removed; anything the manifest does not
//!   list is removed by the next [`update`];
//! - a restored tree is hashed again ([`narwhal_formats::nar::dump_to_hash`])
//!   and deployed only if it matches the relocated NAR hash recorded when it
//!   was fetched and verified; one that does not is discarded with a line
//!   saying so and fetched again. The files are shared with the app
//!   directory (hard links) and NAR modes are 0644/0755, so a later buildpack
//!   writing into a store file in place changes the cached copy too: this
//!   check is what catches it, as it catches a tampered cache.
//!
//! In the app directory the invariant of every destination holds: a tree
//! appears under its final name only after its manifest lists it.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use narwhal_fetch::{ClosurePath, Manifest, ManifestEntry};
use narwhal_formats::hash::Algorithm;
use narwhal_formats::tree::{Walk, WalkError};

use crate::cnb::STORE;
use crate::errors::Error;
use crate::log::Log;

/// The store directory the layer's paths were built for.
const STORE_DIR: &str = "/nix/store";

/// What [`restore`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Restored {
    /// Paths verified and linked into the app directory.
    pub linked: usize,
    /// Paths of the layer that did not match their recorded hash, discarded.
    pub discarded: usize,
}

/// Links every path of `closure` the layer holds, verified, into `app_dir` and lists it in the app
/// directory's manifest, so the fetch finds it present. Prints why anything was discarded.
pub fn restore(layer: &Path, app_dir: &Path, closure: &[ClosurePath], log: &dyn Log) -> Result<Restored, Error> {
    let Some(mut cached) = load(layer, log)? else { return Ok(Restored::default()) };
    let wanted: BTreeMap<&str, String> =
        closure.iter().map(|cp| (cp.info.path.base_name(), cp.info.nar_hash.to_string())).collect();
    let mut candidates: Vec<(String, ManifestEntry)> = cached
        .paths
        .iter()
        .filter(|(base, e)| wanted.get(base.as_str()) == Some(&e.nar_hash))
        .filter(|(base, _)| fs::symlink_metadata(layer.join(base)).is_ok())
        .map(|(b, e)| (b.clone(), e.clone()))
        .collect();
    // A path is hashed as one stream, so the longest one starts at once.
    candidates.sort_by(|(a, ea), (b, eb)| largest_first((a, ea), (b, eb)));
    let jobs = crate::source::jobs_or_cores(None);
    // Each path is linked into the app directory under a temporary name while it is hashed, and
    // goes under its final name only once it matched and the app's manifest lists it.
    let checked = narwhal_store::parallel::try_map(&candidates, jobs, |(base, entry)| {
        let src = layer.join(base);
        let staging = match fs::symlink_metadata(app_dir.join(base)) {
            Ok(_) => None,
            Err(_) => Some(
                narwhal_formats::temp::dir_in(app_dir, base).map_err(Error::io("create a directory in", app_dir))?,
            ),
        };
        let (linked, hashed) = narwhal_store::parallel::join(
            || staging.as_ref().map(|tmp| link_tree(&src, tmp.path())),
            || narwhal_formats::nar::dump_to_hash(&src, Algorithm::Sha256),
        );
        let bad = match hashed {
            Ok((hash, _)) if hash.to_string() == entry.relocated_nar_hash => None,
            Ok((hash, _)) => Some(format!("its files hash to {hash}, not the {} recorded", entry.relocated_nar_hash)),
            Err(e) => Some(format!("it cannot be read ({e})")),
        };
        match (bad, linked) {
            // (Dropping the staging removes it.)
            (None, Some(Err(e))) => Err(e),
            (Some(why), _) => {
                // A store path that is one file has replaced the temporary directory with
                // itself: removed as whatever it now is.
                if let Some(tmp) = staging {
                    remove(&tmp.keep())?;
                }
                Ok(Err(why))
            }
            (None, _) => Ok(Ok(staging)),
        }
    })?;
    let mut app = Manifest::load(app_dir)?.unwrap_or_else(empty);
    let mut staged = Vec::new();
    let mut restored = Restored::default();
    for ((base, entry), verdict) in candidates.into_iter().zip(checked) {
        match verdict {
            Err(why) => {
                log.detail(&format!("discarding the cached {base}: {why}; fetching it again"));
                cached.paths.remove(&base);
                restored.discarded += 1;
            }
            Ok(None) => {}
            Ok(Some(tmp)) => {
                app.paths.insert(base.clone(), entry);
                staged.push((tmp, base));
            }
        }
    }
    if restored.discarded > 0 {
        // The layer stops listing what failed; `update` removes the trees.
        cached.save(layer)?;
    }
    if staged.is_empty() {
        return Ok(restored);
    }
    // Listed first, then renamed into place whole.
    app.save(app_dir)?;
    for (tmp, base) in staged {
        let target = app_dir.join(&base);
        fs::rename(tmp.keep(), &target).map_err(Error::io("move into place", &target))?;
        restored.linked += 1;
    }
    Ok(restored)
}

/// Makes the layer hold exactly what the app directory's manifest lists (the closure just
/// deployed): paths no longer used removed, new ones linked in, anything unlisted removed.
/// Returns (added, removed).
pub fn update(layer: &Path, app_dir: &Path) -> Result<(usize, usize), Error> {
    let app = Manifest::load(app_dir)?.unwrap_or_else(empty);
    let mut cached = match Manifest::load(layer) {
        Ok(Some(m)) if m.store_dir == STORE_DIR && m.prefix == STORE => m,
        _ => empty(),
    };
    let before = cached.paths.len();
    cached.paths.retain(|base, e| app.paths.get(base) == Some(e));
    let removed = before - cached.paths.len();
    // Stop listing first, then remove: the manifest never lists a partial tree.
    cached.save(layer)?;
    let meta = ".narwhal";
    for name in narwhal_formats::tree::sorted_names(layer).map_err(Error::io("read", layer))? {
        let listed = name.to_str().is_some_and(|n| n == meta || cached.paths.contains_key(n));
        if !listed {
            remove(&layer.join(&name))?;
        }
    }
    let mut new: Vec<(&String, &ManifestEntry)> = app
        .paths
        .iter()
        .filter(|(base, _)| !cached.paths.contains_key(*base) && fs::symlink_metadata(app_dir.join(base)).is_ok())
        .collect();
    new.sort_by(|a, b| largest_first(*a, *b));
    // Linked in parallel, each under a temporary name, renamed into place, then listed (what a
    // failure leaves renamed but unlisted, the next update removes).
    narwhal_store::parallel::try_map(&new, crate::source::jobs_or_cores(None), |(base, _)| {
        let tmp = narwhal_formats::temp::dir_in(layer, base).map_err(Error::io("create a directory in", layer))?;
        link_tree(&app_dir.join(base), tmp.path())?;
        let target = layer.join(base);
        fs::rename(tmp.keep(), &target).map_err(Error::io("move into place", &target))
    })?;
    let added = new.len();
    for (base, entry) in new {
        cached.paths.insert(base.clone(), entry.clone());
    }
    if added > 0 {
        cached.save(layer)?;
    }
    Ok((added, removed))
}

/// The layer's manifest, or `None` (the layer emptied, with the reason printed) when there is none
/// or it cannot be trusted.
fn load(layer: &Path, log: &dyn Log) -> Result<Option<Manifest>, Error> {
    let why = match Manifest::load(layer) {
        Ok(Some(m)) if m.store_dir == STORE_DIR && m.prefix == STORE => return Ok(Some(m)),
        Ok(None) => return Ok(None),
        Ok(Some(m)) => format!("it is for {} relocated to {}, not {STORE_DIR} to {STORE}", m.store_dir, m.prefix),
        Err(e) => format!("its manifest is not readable ({e})"),
    };
    log.detail(&format!("discarding the cached store: {why}"));
    for name in narwhal_formats::tree::sorted_names(layer).map_err(Error::io("read", layer))? {
        remove(&layer.join(name))?;
    }
    Ok(None)
}

/// The order paths are worked on in parallel: the largest first (the longest job starts at once),
/// then by name.
fn largest_first(a: (&String, &ManifestEntry), b: (&String, &ManifestEntry)) -> std::cmp::Ordering {
    b.1.nar_size.cmp(&a.1.nar_size).then_with(|| a.0.cmp(b.0))
}

fn empty() -> Manifest {
    Manifest { version: 1, store_dir: STORE_DIR.to_owned(), prefix: STORE.to_owned(), paths: BTreeMap::new() }
}

/// Recreates the tree `src` in the existing directory `dest`: directories made, symlinks copied,
/// files hard-linked (copied, mode and all, where a link cannot be made: another volume, or a
/// file this user may not link).
fn link_tree(src: &Path, dest: &Path) -> Result<(), Error> {
    let mut seen_root = false;
    for entry in Walk::new(src) {
        let entry = entry.map_err(walk_error)?;
        // (`dest.join("")` would end in a slash, which a store path that is one file cannot have.)
        let target = match entry.path.strip_prefix(src) {
            Ok(rel) if !rel.as_os_str().is_empty() => dest.join(rel),
            _ => dest.to_path_buf(),
        };
        let ft = entry.meta.file_type();
        if !seen_root && !ft.is_dir() {
            // A store path that is one file or symlink: the directory `dest` stands for it.
            fs::remove_dir(dest).map_err(Error::io("remove", dest))?;
        }
        if ft.is_dir() {
            if seen_root {
                fs::create_dir(&target).map_err(Error::io("create", &target))?;
            }
        } else if ft.is_symlink() {
            let to = fs::read_link(&entry.path).map_err(Error::io("read", &entry.path))?;
            std::os::unix::fs::symlink(to, &target).map_err(Error::io("create", &target))?;
        } else if ft.is_file() {
            link_or_copy(&entry.path, &target)?;
        } else {
            return Err(Error::io("link", &entry.path)(io::Error::other(format!(
                "a {} has no place in a store path",
                narwhal_formats::tree::kind(ft)
            ))));
        }
        seen_root = true;
    }
    Ok(())
}

fn link_or_copy(src: &Path, target: &Path) -> Result<(), Error> {
    match fs::hard_link(src, target) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.kind(), io::ErrorKind::CrossesDevices | io::ErrorKind::PermissionDenied) => {
            fs::copy(src, target).map(drop).map_err(Error::io("copy to", target))
        }
        Err(e) => Err(Error::io("link to", target)(e)),
    }
}

fn walk_error(e: WalkError) -> Error {
    match e {
        WalkError::Io { path, source } => Error::io("read", path)(source),
        WalkError::TooDeep { path } => {
            Error::io("read", path.clone())(io::Error::other("it is nested too deep for a store path"))
        }
    }
}

/// Removes `path`, a tree or a file, whatever it is.
fn remove(path: &Path) -> Result<(), Error> {
    let removed = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    removed.map_err(Error::io("remove", path))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    fn entry(n: &str) -> ManifestEntry {
        ManifestEntry {
            nar_hash: format!("sha256:{n}"),
            nar_size: 1,
            relocated_nar_hash: format!("sha256:r{n}"),
            references: Vec::new(),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn update_links_what_the_app_lists_and_removes_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let (app, layer) = (tmp.path().join("app"), tmp.path().join("layer"));
        fs::create_dir_all(app.join("aaa-tree/bin")).unwrap();
        fs::write(app.join("aaa-tree/bin/x"), "x").unwrap();
        std::os::unix::fs::symlink("bin/x", app.join("aaa-tree/link")).unwrap();
        fs::write(app.join("bbb-file"), "b").unwrap();
        std::os::unix::fs::symlink("aaa-tree", app.join("ccc-link")).unwrap();
        let mut m = empty();
        for b in ["aaa-tree", "bbb-file", "ccc-link"] {
            m.paths.insert(b.to_owned(), entry(b));
        }
        m.save(&app).unwrap();
        // What an earlier build left: a path no longer used, listed; an unlisted tree and a temporary
        // one, as a killed build leaves them.
        fs::create_dir_all(layer.join("ddd-old")).unwrap();
        fs::create_dir_all(layer.join("eee-unlisted")).unwrap();
        fs::create_dir_all(layer.join(".aaa-tree.tmp-1-abcdefgh/bin")).unwrap();
        let mut old = empty();
        old.paths.insert("ddd-old".to_owned(), entry("ddd-old"));
        old.save(&layer).unwrap();

        assert_eq!(update(&layer, &app).unwrap(), (3, 1));
        let names: Vec<String> = narwhal_formats::tree::sorted_names(&layer)
            .unwrap()
            .into_iter()
            .map(|n| n.into_string().unwrap())
            .collect();
        assert_eq!(names, [".narwhal", "aaa-tree", "bbb-file", "ccc-link"]);
        assert_eq!(Manifest::load(&layer).unwrap().unwrap(), m);
        let ino = |p: &Path| fs::metadata(p).unwrap().ino();
        assert_eq!(ino(&layer.join("aaa-tree/bin/x")), ino(&app.join("aaa-tree/bin/x")), "hard-linked");
        assert_eq!(ino(&layer.join("bbb-file")), ino(&app.join("bbb-file")));
        assert_eq!(fs::read_link(layer.join("aaa-tree/link")).unwrap(), Path::new("bin/x"));
        assert_eq!(fs::read_link(layer.join("ccc-link")).unwrap(), Path::new("aaa-tree"));
        // Nothing changed: nothing added or removed.
        assert_eq!(update(&layer, &app).unwrap(), (0, 0));
    }
}
