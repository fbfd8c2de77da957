//! Reading images that exist already: the previous image at a destination (whose layering a new
//! build keeps, [`crate::plan`]) and base images (whose layers go first). An image is named as
//! skopeo names it, `oci:DIR[:TAG]` or `docker://HOST/REPO[:TAG]`; an index (a multi-platform
//! image) gives the manifest of the platform asked for. Every document is size-bounded and every
//! blob read is checked against its digest.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use narwhal_formats::hash::{Algorithm, Encoding, HashingWriter};
use serde::Deserialize;

use crate::oci::{self, Descriptor, Index, Layout};
use crate::registry::{Reference, Registry, RegistryError};
use crate::Error;

/// The largest manifest, index or config read.
pub const MAX_DOCUMENT: u64 = 8 << 20;
const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// `DIR[:TAG]` after `oci:`: a tag has no '/' (`oci:/srv/images/app:v1`, but `oci:./dir` has none).
pub fn path_and_tag(rest: &str) -> (&str, Option<&str>) {
    match rest.rsplit_once(':') {
        Some((dir, tag)) if !tag.contains('/') && !dir.is_empty() => (dir, Some(tag)),
        _ => (rest, None),
    }
}

/// An image to read.
#[derive(Debug, Clone)]
pub enum ImageRef {
    Layout { dir: PathBuf, tag: Option<String> },
    Registry(Reference),
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<Self, Error> {
        if s.starts_with("docker://") {
            return Ok(Self::Registry(Reference::parse(s)?));
        }
        let Some(rest) = s.strip_prefix("oci:") else {
            return Err(Error::Image {
                image: s.to_owned(),
                why: "name it as oci:DIR[:TAG] or docker://HOST/REPO[:TAG]".to_owned(),
            });
        };
        let (dir, tag) = path_and_tag(rest);
        if dir.is_empty() || tag.is_some_and(|t| !crate::registry::is_tag(t)) {
            return Err(Error::Image { image: s.to_owned(), why: "name it as oci:DIR[:TAG]".to_owned() });
        }
        Ok(Self::Layout { dir: PathBuf::from(dir), tag: tag.map(str::to_owned) })
    }
}

/// Where an image's documents and blobs are read from.
pub enum Store<'r> {
    Layout(PathBuf),
    Registry(&'r Registry),
}

/// An image read: its manifest's layers and its config.
#[derive(Debug, Clone)]
pub struct Existing {
    pub manifest: Descriptor,
    pub layers: Vec<Descriptor>,
    pub config: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestIn {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<PlatformDescriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlatformDescriptor {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    architecture: String,
    os: String,
}

/// The image `tag` names in `store` (without a tag, a layout's only image), for `architecture`
/// when it is an index; `None` when there is no such image. `name` is the image as the user
/// wrote it, for messages.
pub fn read_image(store: &Store, tag: Option<&str>, architecture: &str, name: &str) -> Result<Option<Existing>, Error> {
    let bad = |why: String| Error::Image { image: name.to_owned(), why };
    let (mut descriptor, mut bytes) = match store {
        Store::Layout(dir) => {
            let index_path = dir.join("index.json");
            let text = match std::fs::read(&index_path) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(source) => return Err(Error::Io { what: "cannot read", path: index_path, source }),
            };
            let index: Index = serde_json::from_slice(&text).map_err(|e| bad(format!("index.json: {e}")))?;
            let found: Vec<&Descriptor> = match tag {
                Some(t) => index
                    .manifests
                    .iter()
                    .filter(|m| m.annotations.get(oci::REF_NAME).map(String::as_str) == Some(t))
                    .collect(),
                None => index.manifests.iter().collect(),
            };
            let Some(d) = found.last() else { return Ok(None) };
            if tag.is_none() && found.len() > 1 {
                return Err(bad("the layout holds several images: name one as oci:DIR:TAG".to_owned()));
            }
            let bytes = read_layout_blob(dir, d, MAX_DOCUMENT, name)?;
            ((*d).clone(), bytes)
        }
        Store::Registry(registry) => {
            let tag = tag.unwrap_or("latest");
            let Some((media_type, bytes)) = registry.get_manifest(tag)? else { return Ok(None) };
            let descriptor = Descriptor {
                media_type,
                digest: oci::digest_of(&bytes),
                size: bytes.len() as u64,
                annotations: std::collections::BTreeMap::new(),
            };
            (descriptor, bytes)
        }
    };
    // An index: the platform's manifest (one level; an index of indexes is refused).
    for _ in 0..2 {
        let doc: ManifestIn = serde_json::from_slice(&bytes).map_err(|e| bad(format!("its manifest: {e}")))?;
        if let Some(list) = doc.manifests {
            let pick = list
                .iter()
                .find(|m| m.platform.as_ref().is_some_and(|p| p.os == "linux" && p.architecture == architecture))
                .ok_or_else(|| bad(format!("it has no linux/{architecture} image")))?;
            descriptor = Descriptor {
                media_type: pick.media_type.clone(),
                digest: pick.digest.clone(),
                size: pick.size,
                annotations: std::collections::BTreeMap::new(),
            };
            bytes = match store {
                Store::Layout(dir) => read_layout_blob(dir, &descriptor, MAX_DOCUMENT, name)?,
                Store::Registry(registry) => {
                    let (_, b) = registry
                        .get_manifest(&descriptor.digest)?
                        .ok_or_else(|| bad(format!("its index names {}, which is missing", descriptor.digest)))?;
                    if oci::digest_of(&b) != descriptor.digest {
                        return Err(bad(format!("the manifest {} does not hash to its digest", descriptor.digest)));
                    }
                    b
                }
            };
            continue;
        }
        let is_index = matches!(doc.media_type.as_deref(), Some(oci::MEDIA_INDEX | MEDIA_DOCKER_LIST));
        let config = doc.config.filter(|_| !is_index).ok_or_else(|| bad("its manifest names no config".to_owned()))?;
        let mut config_bytes = Vec::new();
        copy_blob(store, &config, &mut config_bytes, name)?;
        let config: serde_json::Value =
            serde_json::from_slice(&config_bytes).map_err(|e| bad(format!("its config: {e}")))?;
        return Ok(Some(Existing { manifest: descriptor, layers: doc.layers, config }));
    }
    Err(bad("an index names another index".to_owned()))
}

fn read_layout_blob(dir: &Path, d: &Descriptor, limit: u64, name: &str) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    copy_blob(&Store::Layout(dir.to_owned()), &Descriptor { size: d.size.min(limit), ..d.clone() }, &mut out, name)?;
    Ok(out)
}

/// Copies the blob `d` from `store` into `out`, checking its size and digest.
fn copy_blob(store: &Store, d: &Descriptor, out: &mut dyn Write, name: &str) -> Result<(), Error> {
    let bad = |why: String| Error::Image { image: name.to_owned(), why };
    let hex = d
        .digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| bad(format!("the digest {:?} is not sha256", d.digest)))?;
    let mut hashing = HashingWriter::new(Algorithm::Sha256, out);
    match store {
        Store::Layout(dir) => {
            let path = dir.join("blobs/sha256").join(hex);
            let file = std::fs::File::open(&path).map_err(|source| Error::Io {
                what: "cannot read the blob",
                path: path.clone(),
                source,
            })?;
            io::copy(&mut file.take(d.size + 1), &mut hashing).map_err(|source| Error::Io {
                what: "cannot read the blob",
                path,
                source,
            })?;
        }
        Store::Registry(registry) => {
            registry.get_blob(&d.digest, &mut hashing, d.size)?;
        }
    }
    let (hash, size, _) = hashing.finish();
    let actual = format!("sha256:{}", hash.encode(Encoding::Base16));
    if size != d.size || actual != d.digest {
        return Err(bad(format!("the blob {} holds {size} bytes hashing to {actual}, not {} bytes", d.digest, d.size)));
    }
    Ok(())
}

/// Puts the blobs `layers` of an image in `store` into `layout` (those it lacks), checked.
pub fn copy_layers(store: &Store, layers: &[Descriptor], layout: &Layout, name: &str) -> Result<(), Error> {
    for d in layers {
        if layout.has_blob(d) {
            continue;
        }
        let temp = layout.temp_blob()?;
        let mut file = io::BufWriter::new(temp.as_file().try_clone().map_err(|source| Error::Io {
            what: "cannot write",
            path: temp.path().to_owned(),
            source,
        })?);
        copy_blob(store, d, &mut file, name)?;
        file.flush().map_err(|source| Error::Io { what: "cannot write", path: temp.path().to_owned(), source })?;
        drop(file);
        layout.commit_blob(temp, &d.digest)?;
    }
    Ok(())
}

/// The layers an earlier narwhal image was made of, bottom first, each as the store path base
/// names its history entry lists; layers from elsewhere (a base image) are left out.
pub fn narwhal_layers(config: &serde_json::Value) -> Vec<Vec<String>> {
    let Some(history) = config.get("history").and_then(serde_json::Value::as_array) else { return Vec::new() };
    history
        .iter()
        .filter(|h| h.get("created_by").and_then(serde_json::Value::as_str) == Some(crate::CREATED_BY))
        .filter_map(|h| h.get("comment").and_then(serde_json::Value::as_str))
        .map(|c| c.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect::<Vec<_>>())
        .filter(|names| !names.is_empty())
        .collect()
}

impl From<RegistryError> for Error {
    fn from(e: RegistryError) -> Self {
        Self::Registry(Box::new(e))
    }
}

/// Puts a base image's config under `config` (this image's): `Env` keeps the base's variables
/// that this image does not set, and `PATH` is this image's followed by the base's; `ExposedPorts`
/// and `Labels` are the union, this image's winning; `Entrypoint`, `Cmd` and `WorkingDir` come from
/// the base only when this image sets none (and the base's `Cmd` only when this image sets no
/// `Entrypoint` either, as docker does); `User` is always this image's.
pub fn merge_base_config(config: &mut crate::oci::RunConfig, base: &serde_json::Value) {
    let run = base.get("config").cloned().unwrap_or_default();
    let strings = |key: &str| -> Vec<String> {
        run.get(key)
            .and_then(serde_json::Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    let name_of = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_owned();
    let mut env: Vec<String> = Vec::new();
    for e in strings("Env") {
        let name = name_of(&e);
        match config.env.iter().find(|o| name_of(o) == name) {
            Some(own) if name == "PATH" => {
                let base_path = e.split_once('=').map_or("", |(_, v)| v);
                let own_path = own.split_once('=').map_or("", |(_, v)| v);
                if !base_path.is_empty() && !own_path.split(':').any(|p| p == base_path) {
                    env.push(format!("PATH={own_path}:{base_path}"));
                } else {
                    env.push(own.clone());
                }
            }
            Some(own) => env.push(own.clone()),
            None => env.push(e),
        }
    }
    for own in &config.env {
        if !env.iter().any(|e| name_of(e) == name_of(own)) {
            env.push(own.clone());
        }
    }
    config.env = env;
    if let Some(ports) = run.get("ExposedPorts").and_then(serde_json::Value::as_object) {
        for port in ports.keys() {
            config.exposed_ports.entry(port.clone()).or_default();
        }
    }
    if let Some(labels) = run.get("Labels").and_then(serde_json::Value::as_object) {
        for (k, v) in labels {
            if let Some(v) = v.as_str() {
                config.labels.entry(k.clone()).or_insert_with(|| v.to_owned());
            }
        }
    }
    if config.entrypoint.is_empty() {
        config.entrypoint = strings("Entrypoint");
        if config.cmd.is_empty() {
            config.cmd = strings("Cmd");
        }
    }
    if config.working_dir.is_empty() {
        if let Some(w) = run.get("WorkingDir").and_then(serde_json::Value::as_str) {
            w.clone_into(&mut config.working_dir);
        }
    }
}

/// A base image's layers, diffIDs and history, checked against each other.
pub fn base_of(existing: &Existing, name: &str) -> Result<crate::Base, Error> {
    let bad = |why: String| Error::Image { image: name.to_owned(), why };
    let diff_ids: Vec<String> = existing
        .config
        .pointer("/rootfs/diff_ids")
        .and_then(serde_json::Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    if diff_ids.len() != existing.layers.len() {
        return Err(bad(format!("its config lists {} diff_ids for {} layers", diff_ids.len(), existing.layers.len())));
    }
    let text = |h: &serde_json::Value, k: &str| h.get(k).and_then(serde_json::Value::as_str).unwrap_or("").to_owned();
    let history = existing
        .config
        .get("history")
        .and_then(serde_json::Value::as_array)
        .map(|a| {
            a.iter()
                .map(|h| crate::History {
                    created: text(h, "created"),
                    created_by: text(h, "created_by"),
                    comment: text(h, "comment"),
                    empty_layer: h.get("empty_layer").and_then(serde_json::Value::as_bool).unwrap_or(false),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(crate::Base { layers: existing.layers.clone(), diff_ids, history })
}
