//! `narwhal verify DIR`: a deployed tree (a fetch destination, a slug's store, a CNB workspace)
//! against its manifest: every path listed must be there with the NAR hash it had once relocated,
//! so a changed byte, a missing file or a partial copy is found.

use std::fs;
use std::path::Path;

use narwhal_formats::hash::Algorithm;
use narwhal_formats::nar;

use crate::error::Error;
use crate::manifest::{Manifest, META_DIR};

/// What is wrong with one path of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeProblem {
    /// Listed in the manifest, absent on disk.
    Missing,
    /// Its NAR hash is not the manifest's (a file changed, added or removed).
    Changed { expected: String, actual: String },
    /// It cannot be read as a NAR (a device, an unreadable file), with why.
    Unreadable(String),
    /// On disk but not in the manifest.
    Unlisted,
}

/// The directory that holds the manifest of `dir`: `dir` itself, or `dir/store` (a slug's app
/// directory); `None` when neither has one.
pub fn tree_root(dir: &Path) -> Option<std::path::PathBuf> {
    [dir.to_owned(), dir.join("store")].into_iter().find(|d| d.join(crate::manifest::MANIFEST_PATH).is_file())
}

/// Checks every path of the tree at `dest` (which holds `.narwhal/manifest.json`) on up to `jobs`
/// threads; returns the paths checked and the problems, by base name.
pub fn verify_tree(dest: &Path, jobs: usize) -> Result<(usize, Vec<(String, TreeProblem)>), Error> {
    let manifest = Manifest::load(dest)?.ok_or_else(|| Error::NoManifest(dest.to_owned()))?;
    let entries: Vec<(&String, &String)> = manifest.paths.iter().map(|(k, v)| (k, &v.relocated_nar_hash)).collect();
    let checked = narwhal_store::parallel::try_map(&entries, jobs, |(name, expected)| {
        let path = dest.join(name);
        if fs::symlink_metadata(&path).is_err() {
            return Ok::<_, Error>(Some(((*name).clone(), TreeProblem::Missing)));
        }
        Ok(match nar::dump_to_hash(&path, Algorithm::Sha256) {
            Ok((hash, _)) if hash.to_string() == **expected => None,
            Ok((hash, _)) => Some((
                (*name).clone(),
                TreeProblem::Changed { expected: (*expected).clone(), actual: hash.to_string() },
            )),
            Err(e) => Some(((*name).clone(), TreeProblem::Unreadable(e.to_string()))),
        })
    })?;
    let mut problems: Vec<(String, TreeProblem)> = checked.into_iter().flatten().collect();
    let listed = |name: &str| manifest.paths.contains_key(name);
    let on_disk =
        fs::read_dir(dest).map_err(|source| Error::Io { what: "cannot read", path: dest.to_owned(), source })?;
    for entry in on_disk.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // Only names shaped like store paths: a CNB workspace keeps the app's own files beside them.
        let store_path_like = name.len() > 33
            && name.as_bytes().get(32) == Some(&b'-')
            && name.as_bytes()[..32].iter().all(|b| narwhal_formats::nixbase32::ALPHABET.contains(b));
        if name != META_DIR && store_path_like && !listed(&name) {
            problems.push((name, TreeProblem::Unlisted));
        }
    }
    problems.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((manifest.paths.len(), problems))
}
