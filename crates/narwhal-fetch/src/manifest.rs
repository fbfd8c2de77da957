//! `<dest>/.narwhal/manifest.json`: what narwhal put in a destination.
//!
//! For each store path: the NarHash and NarSize it had in the cache (what
//! signatures vouch for) and the NAR hash of the tree as relocated on disk,
//! so the tree can be checked later without the cache.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Error;

pub const MANIFEST_PATH: &str = ".narwhal/manifest.json";
/// narwhal's own directory in a destination: the manifest and the lock.
pub const META_DIR: &str = ".narwhal";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    /// The store directory the paths were built for.
    pub store_dir: String,
    /// The directory they were relocated to (equal to `store_dir` when not relocated).
    pub prefix: String,
    /// By base name (`<hash>-<name>`).
    pub paths: BTreeMap<String, ManifestEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManifestEntry {
    pub nar_hash: String,
    pub nar_size: u64,
    pub relocated_nar_hash: String,
    pub references: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Manifest {
    pub fn load(dest: &Path) -> Result<Option<Self>, Error> {
        let path = dest.join(MANIFEST_PATH);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|source| Error::Manifest { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io { what: "cannot read", path, source }),
        }
    }

    /// Writes the manifest through a temporary file and a rename.
    pub fn save(&self, dest: &Path) -> Result<(), Error> {
        let path = dest.join(MANIFEST_PATH);
        let dir = dest.join(META_DIR);
        fs::create_dir_all(&dir).map_err(|source| Error::Io { what: "cannot create", path: dir.clone(), source })?;
        let mut json =
            serde_json::to_vec_pretty(self).map_err(|source| Error::Manifest { path: path.clone(), source })?;
        json.push(b'\n');
        narwhal_formats::temp::write_atomic(&path, &json, 0o666, true).map_err(|source| Error::Io {
            what: "cannot write",
            path: path.clone(),
            source,
        })
    }
}
