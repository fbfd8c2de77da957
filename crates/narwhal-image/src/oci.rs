//! OCI image documents (image-spec 1.1: descriptors, the image config, the manifest, the index)
//! and the image layout on disk. Fields are written in one fixed order by serde, so the same image
//! gives the same bytes and digests.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use narwhal_formats::temp::{NamedTempFile, TempDir};
use serde::{Deserialize, Serialize};

use crate::Error;

pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// The annotation that names a manifest's tag in an OCI layout's index.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// The image config (`application/vnd.oci.image.config.v1+json`).
#[derive(Debug, Clone, Serialize)]
pub struct ImageConfig {
    pub created: String,
    pub architecture: String,
    pub os: String,
    pub config: RunConfig,
    pub rootfs: RootFs,
    pub history: Vec<History>,
}

/// What a runtime starts, as `docker inspect` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunConfig {
    #[serde(rename = "User", skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(rename = "ExposedPorts", skip_serializing_if = "BTreeMap::is_empty")]
    pub exposed_ports: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(rename = "Env", skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(rename = "Entrypoint", skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    #[serde(rename = "Cmd", skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    #[serde(rename = "WorkingDir", skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    #[serde(rename = "Labels", skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct History {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub created: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub created_by: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub comment: String,
    /// A base image's entries that made no layer (`ENV`, `CMD`) say so.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// `sha256:<hex>` of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    let mut h = narwhal_formats::hash::Hasher::new(narwhal_formats::hash::Algorithm::Sha256);
    h.update(bytes);
    format!("sha256:{}", h.finish().encode(narwhal_formats::hash::Encoding::Base16))
}

/// An OCI image layout being written: blobs go in as they are finished (each under a temporary
/// name, then renamed to its digest), and the index last, so a reader sees the old image or the
/// new one, never a tag that points at missing blobs. A new layout is built in a temporary
/// directory beside its final name and renamed there by [`Self::finish`]: a failed build leaves
/// nothing behind.
pub struct Layout {
    dir: PathBuf,
    staged: Option<(TempDir, PathBuf)>,
}

impl Layout {
    /// Opens `dir`, an existing OCI layout or a directory still to be made (empty, or absent).
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let io = |source| Error::Io { what: "cannot create the OCI layout", path: dir.to_owned(), source };
        match fs::read_to_string(dir.join("oci-layout")) {
            Ok(_) => {
                fs::create_dir_all(dir.join("blobs/sha256")).map_err(io)?;
                Ok(Self { dir: dir.to_owned(), staged: None })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if dir.exists() && fs::read_dir(dir).map_err(io)?.next().is_some() {
                    return Err(Error::NotALayout(dir.to_owned()));
                }
                let parent = match dir.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                fs::create_dir_all(parent).map_err(io)?;
                let name = dir.file_name().unwrap_or(std::ffi::OsStr::new("layout"));
                let staging = narwhal_formats::temp::dir_in(parent, name).map_err(io)?;
                let work = staging.path().to_owned();
                fs::create_dir_all(work.join("blobs/sha256")).map_err(io)?;
                write_file(&work.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
                Ok(Self { dir: work, staged: Some((staging, dir.to_owned())) })
            }
            Err(source) => Err(Error::Io { what: "cannot read", path: dir.join("oci-layout"), source }),
        }
    }

    /// Puts a new layout under its final name (an existing one was updated in place already).
    pub fn finish(self) -> Result<(), Error> {
        if let Some((staging, dest)) = self.staged {
            let work = staging.keep();
            // An empty directory of that name (allowed by `open`) gives way.
            let _ = fs::remove_dir(&dest);
            if let Err(source) = fs::rename(&work, &dest) {
                let _ = fs::remove_dir_all(&work);
                return Err(Error::Io { what: "cannot move the OCI layout into place at", path: dest, source });
            }
        }
        Ok(())
    }

    /// Whether the layout holds `blob` (a file of its size under its digest).
    pub fn has_blob(&self, blob: &Descriptor) -> bool {
        fs::metadata(self.blob_path(&blob.digest)).is_ok_and(|m| m.len() == blob.size)
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
    }

    /// A temporary file in the blobs directory, to be [`Self::commit_blob`]ted under its digest.
    pub fn temp_blob(&self) -> Result<NamedTempFile, Error> {
        let dir = self.dir.join("blobs/sha256");
        narwhal_formats::temp::file_in(&dir, "blob").map_err(|source| Error::Io {
            what: "cannot create a temporary blob in",
            path: dir,
            source,
        })
    }

    /// Moves a finished temporary blob to its digest's name (the same bytes may be there already).
    pub fn commit_blob(&self, temp: NamedTempFile, digest: &str) -> Result<(), Error> {
        let path = self.blob_path(digest);
        temp.persist(&path).map_err(|e| Error::Io { what: "cannot store the blob", path, source: e.error })?;
        Ok(())
    }

    /// Stores a small blob (a config, a manifest).
    pub fn put_blob(&self, bytes: &[u8]) -> Result<String, Error> {
        let digest = digest_of(bytes);
        let mut temp = self.temp_blob()?;
        temp.write_all(bytes).map_err(|source| Error::Io {
            what: "cannot write",
            path: temp.path().to_owned(),
            source,
        })?;
        self.commit_blob(temp, &digest)?;
        Ok(digest)
    }

    /// Points `tag` (or, without one, the index's only untagged entry) at `manifest`, keeping the
    /// index's other entries: the commit point of the image.
    pub fn set_tag(&self, manifest: Descriptor, tag: Option<&str>) -> Result<(), Error> {
        let path = self.dir.join("index.json");
        let mut index = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Index>(&bytes).map_err(|e| Error::Invalid {
                what: "index.json",
                path: path.clone(),
                why: e.to_string(),
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Index { schema_version: 2, media_type: Some(MEDIA_INDEX.to_owned()), manifests: Vec::new() }
            }
            Err(source) => return Err(Error::Io { what: "cannot read", path, source }),
        };
        index.manifests.retain(|m| m.annotations.get(REF_NAME).map(String::as_str) != tag);
        let mut manifest = manifest;
        if let Some(tag) = tag {
            manifest.annotations.insert(REF_NAME.to_owned(), tag.to_owned());
        }
        index.manifests.push(manifest);
        let bytes = serde_json::to_vec(&index).map_err(|e| Error::Invalid {
            what: "index.json",
            path: path.clone(),
            why: e.to_string(),
        })?;
        write_file(&path, &bytes)
    }
}

/// Writes `bytes` to `path` through a temporary file beside it and a rename.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    narwhal_formats::temp::write_atomic(path, bytes, 0o666, true).map_err(|source| Error::Io {
        what: "cannot write",
        path: path.to_owned(),
        source,
    })
}
