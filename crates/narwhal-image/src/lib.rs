//! OCI images from Nix closures, with no Docker and no Nix.
//!
//! Inside an image `/nix/store` stays where it is, so no relocation is needed: each layer is a
//! tar written straight from the NAR streams of its store paths ([`tar`]), compressed and hashed on
//! the way into the OCI layout ([`oci`]), with nothing unpacked to disk. NAR entries are sorted by
//! bytes and every tar header field is fixed, so the same closure and options give the same layer
//! digests, config and manifest, byte for byte, whether the NARs come from a binary cache or the
//! local store.
//!
//! Layering ([`plan`]) is written for re-pushes: a path whose bytes did not change lands in a
//! layer with the same digest again, so a registry already has it.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod archive;
pub mod oci;
pub mod read;
pub mod registry;
pub mod report;
pub mod source;
pub mod tar;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use narwhal_formats::hash::{Algorithm, Encoding, Hash, HashingWriter};
use narwhal_formats::nar;
use narwhal_formats::store_path::{StoreDir, StorePath};
use narwhal_formats::tee::{Progress, Tee};
use thiserror::Error;

pub use crate::oci::History;
use crate::oci::{Descriptor, ImageConfig, Layout, Manifest, RootFs, RunConfig};
pub use crate::source::{CacheSource, ExportSource, LocalSource, NarSource};

/// The `created_by` of every layer narwhal writes: how `--previous` tells them from a base's.
pub const CREATED_BY: &str = "narwhal image";

/// The most layers an image may have: overlay mounts stop near 127 lower directories.
pub const MAX_LAYERS: usize = 125;
/// The default budget, leaving room for a base image's layers.
pub const DEFAULT_MAX_LAYERS: usize = 70;
/// Paths smaller than this share layers instead of taking one each.
pub const DEFAULT_FLOOR: u64 = 1 << 20;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0} exists and is not an OCI image layout (it has no oci-layout file)")]
    NotALayout(PathBuf),
    #[error("invalid {what} in {path}: {why}")]
    Invalid { what: &'static str, path: PathBuf, why: String },
    #[error("cannot write the layer holding {path}")]
    Layer {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("the NAR of {path}")]
    Nar {
        path: String,
        #[source]
        source: nar::Error,
    },
    #[error(transparent)]
    Store(#[from] narwhal_store::StoreError),
    #[error("the entrypoint {entrypoint} is not in {root}")]
    NoEntrypoint { entrypoint: String, root: String },
    #[error("--max-layers {0} is outside 1 to {MAX_LAYERS}")]
    MaxLayers(usize),
    #[error("{path} is not in the closure's sources")]
    NoSource { path: String },
    #[error("the export {what}")]
    Export {
        what: String,
        #[source]
        source: narwhal_formats::export::Error,
    },
    #[error("{path} appears twice in the export {what}, with different NARs")]
    ExportConflict { what: String, path: String },
    #[error("invalid {file}: {why}")]
    Config { file: String, why: String },
    #[error("cannot use the image {image}: {why}")]
    Image { image: String, why: String },
    #[error("the image {0} is not there")]
    ImageNotFound(String),
    #[error("--max-layers {max} leaves no layer for the closure after the base image's {base}")]
    BaseTooTall { max: usize, base: usize },
    #[error(transparent)]
    Registry(Box<registry::RegistryError>),
    #[error("{0} cannot be written: Docker's v2s2 format has no such media type")]
    Unsupported(&'static str),
}

impl Error {
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Self::NotALayout(_) => Some("name a new directory, or an OCI layout written by narwhal, skopeo or umoci"),
            Self::NoEntrypoint { .. } => {
                Some("give --entrypoint relative to the first root (bin/server) or as an absolute path in the closure")
            }
            Self::Nar { source, .. } if !source.is_visitor_error() => {
                Some("the cache or store holds a NAR that does not match its narinfo; push the path again")
            }
            Self::Store(e) => e.hint(),
            Self::Registry(e) => e.hint(),
            Self::ImageNotFound(_) => Some(
                "check the name and tag (skopeo inspect IMAGE shows what is there); name a layout as oci:DIR:TAG, a registry image as docker://HOST/REPO:TAG",
            ),
            Self::Image { .. } => Some("name an OCI image layout as oci:DIR[:TAG], or a registry image as docker://HOST/REPO[:TAG]"),
            Self::Config { .. } => Some(
                "the [image] table takes to, base, entrypoint, cmd, env, user, workdir, labels, ports, max-layers, compression (gzip, zstd, none), format (oci, v2s2), arch",
            ),
            Self::BaseTooTall { .. } => Some("raise --max-layers (at most 125), or use a base image with fewer layers"),
            Self::Export { .. } | Self::ExportConflict { .. } => {
                Some("write the export again: narwhal export ROOT -o FILE (or nix-store --export $(nix-store -qR ROOT))")
            }
            _ => None,
        }
    }
}

/// One store path of the closure.
#[derive(Debug, Clone)]
pub struct PathEntry {
    pub path: StorePath,
    pub nar_hash: Hash,
    pub nar_size: u64,
}

/// How layers are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    /// What every registry and client takes (Heroku's included).
    Gzip,
    Zstd,
    None,
}

/// Which manifest and media types an image is written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Oci,
    /// Docker's image manifest v2 schema 2: what Heroku's registry (and older clients) take. Same
    /// documents, Docker's media types; layers only gzip or uncompressed.
    V2s2,
}

impl Format {
    pub fn manifest_type(self) -> &'static str {
        match self {
            Self::Oci => oci::MEDIA_MANIFEST,
            Self::V2s2 => "application/vnd.docker.distribution.manifest.v2+json",
        }
    }

    pub fn config_type(self) -> &'static str {
        match self {
            Self::Oci => oci::MEDIA_CONFIG,
            Self::V2s2 => "application/vnd.docker.container.image.v1+json",
        }
    }

    /// A layer media type of either format (a base image's) as this format names it.
    pub fn convert(self, media_type: &str) -> Result<String, Error> {
        let compression = match media_type {
            "application/vnd.oci.image.layer.v1.tar+gzip" | "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
                LayerCompression::Gzip
            }
            "application/vnd.oci.image.layer.v1.tar+zstd" => LayerCompression::Zstd,
            "application/vnd.oci.image.layer.v1.tar" | "application/vnd.docker.image.rootfs.diff.tar" => {
                LayerCompression::None
            }
            other => return Ok(other.to_owned()),
        };
        Ok(self.layer_type(compression)?.to_owned())
    }

    pub fn layer_type(self, compression: LayerCompression) -> Result<&'static str, Error> {
        Ok(match (self, compression) {
            (Self::Oci, LayerCompression::Gzip) => "application/vnd.oci.image.layer.v1.tar+gzip",
            (Self::Oci, LayerCompression::Zstd) => "application/vnd.oci.image.layer.v1.tar+zstd",
            (Self::Oci, LayerCompression::None) => "application/vnd.oci.image.layer.v1.tar",
            (Self::V2s2, LayerCompression::Gzip) => "application/vnd.docker.image.rootfs.diff.tar.gzip",
            (Self::V2s2, LayerCompression::None) => "application/vnd.docker.image.rootfs.diff.tar",
            (Self::V2s2, LayerCompression::Zstd) => return Err(Error::Unsupported("zstd layers in a v2s2 image")),
        })
    }
}

/// What goes into the image besides its layers.
#[derive(Debug, Clone)]
pub struct ImageOptions {
    pub max_layers: usize,
    pub floor: u64,
    pub compression: LayerCompression,
    pub format: Format,
    pub jobs: usize,
    pub config: RunConfig,
    /// `amd64`, `arm64`, … (GOARCH names, as the spec asks).
    pub architecture: String,
    /// RFC 3339; fixed (not the time of the build) so that images are reproducible.
    pub created: String,
    /// A path that must exist in the closure: (store path, path inside it), the entrypoint.
    pub must_exist: Option<(StorePath, Vec<u8>)>,
    /// The layers of the previous image (store path base names, bottom first), kept where they
    /// still hold only paths of this closure: see [`plan`].
    pub previous: Vec<Vec<String>>,
    /// A base image's layers, below the closure's.
    pub base: Option<Base>,
}

/// The part of a base image that goes into a new one: its layers (already in the layout) with
/// their diffIDs and history, first.
#[derive(Debug, Clone, Default)]
pub struct Base {
    pub layers: Vec<Descriptor>,
    pub diff_ids: Vec<String>,
    pub history: Vec<History>,
}

/// What was built.
#[derive(Debug, Clone)]
pub struct Built {
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    /// For each layer, the digest of its tar (the config's `rootfs.diff_ids`).
    pub diff_ids: Vec<String>,
    /// For each layer, the store paths it holds.
    pub contents: Vec<Vec<StorePath>>,
}

/// Groups `paths` into layers (indexes into `paths`), bottom first, at most `max_layers`.
///
/// 1. Each root gets a layer of its own, last (the app changes most often; nothing above it
///    needs re-pushing when it does). If there are more roots than layers, they share the last.
/// 2. Stability across versions (`previous`, the layers of the image this one replaces, as
///    store path base names): a previous layer whose paths are all still in the closure (and
///    none is now a root) is kept as it was, in its place. A store path names its contents, so
///    the same paths give the same tar and the same digest: the registry has that layer. A
///    previous layer that lost a path dissolves, and its other paths are placed as new ones. If
///    the kept layers leave no room for the rest, the smallest kept ones dissolve first.
/// 3. The other paths of at least `floor` bytes get a layer each, largest first, as the budget
///    allows: such a layer's digest depends on that path alone, so it is reused whenever the path
///    is unchanged, whatever else changed (unlike size cohorts or a popularity ranking, where one
///    changed path moves the others).
/// 4. The rest (small paths, and large ones past the budget) go into a few shared layers chosen by
///    their store path hash, not by rank: a path stays in the same bucket across versions, so a
///    change re-uploads only its bucket. The number of buckets is an eighth of the budget left
///    (at least one), and empty buckets are dropped.
pub fn plan(
    paths: &[PathEntry],
    roots: &[StorePath],
    max_layers: usize,
    floor: u64,
    previous: &[Vec<String>],
) -> Vec<Vec<usize>> {
    let max_layers = max_layers.max(1);
    let is_root = |p: &StorePath| roots.contains(p);
    let mut root_idx: Vec<usize> = Vec::new();
    for r in roots {
        if let Some(i) = paths.iter().position(|e| &e.path == r) {
            if !root_idx.contains(&i) {
                root_idx.push(i);
            }
        }
    }
    let others: Vec<usize> = (0..paths.len()).filter(|&i| !is_root(&paths[i].path)).collect();
    if max_layers == 1 {
        let mut all = others;
        all.extend(root_idx);
        return vec![all];
    }
    // The roots' layers, and what is left for their dependencies (at least one layer).
    let root_layers: Vec<Vec<usize>> = if root_idx.len() < max_layers {
        root_idx.iter().map(|&i| vec![i]).collect()
    } else {
        let (own, shared) = root_idx.split_at(max_layers - 2);
        let mut layers: Vec<Vec<usize>> = own.iter().map(|&i| vec![i]).collect();
        layers.push(shared.to_vec());
        layers
    };
    let budget = max_layers - root_layers.len();
    let (kept, rest) = keep_previous(paths, &others, previous, budget);
    let mut layers = kept;
    let left = budget - layers.len();
    layers.extend(plan_rest(paths, rest, left, floor));
    layers.extend(root_layers);
    layers
}

/// Step 2 of [`plan`]: the previous layers kept (within `budget`, leaving a layer for the rest
/// when there is a rest), and the paths of `others` left to place.
fn keep_previous(
    paths: &[PathEntry],
    others: &[usize],
    previous: &[Vec<String>],
    budget: usize,
) -> (Vec<Vec<usize>>, Vec<usize>) {
    let by_name: BTreeMap<&str, usize> = others.iter().map(|&i| (paths[i].path.base_name(), i)).collect();
    let mut placed = vec![false; paths.len()];
    let mut kept: Vec<Vec<usize>> = Vec::new();
    for layer in previous {
        let members: Option<Vec<usize>> = layer.iter().map(|n| by_name.get(n.as_str()).copied()).collect();
        let Some(members) = members else { continue };
        if members.is_empty() || members.iter().any(|&i| placed[i]) {
            continue;
        }
        for &i in &members {
            placed[i] = true;
        }
        kept.push(members);
    }
    let mut rest: Vec<usize> = others.iter().copied().filter(|&i| !placed[i]).collect();
    loop {
        let room = usize::from(!rest.is_empty());
        if kept.len() + room <= budget {
            break;
        }
        let size = |l: &Vec<usize>| l.iter().map(|&i| paths[i].nar_size).sum::<u64>();
        let Some((smallest, _)) = kept.iter().enumerate().min_by_key(|(_, l)| size(l)) else { break };
        rest.extend(kept.remove(smallest));
    }
    (kept, rest)
}

/// Steps 3 and 4 of [`plan`]: `others` in at most `budget` layers (at least one).
fn plan_rest(paths: &[PathEntry], mut others: Vec<usize>, budget: usize, floor: u64) -> Vec<Vec<usize>> {
    let budget = budget.max(1);
    others.sort_by(|&a, &b| paths[b].nar_size.cmp(&paths[a].nar_size).then_with(|| paths[a].path.cmp(&paths[b].path)));
    let big = others.iter().take_while(|&&i| paths[i].nar_size >= floor).count();
    let needs_buckets = big < others.len() || big > budget;
    let buckets = if needs_buckets { (budget / 8).max(1) } else { 0 };
    let solo = big.min(budget - buckets);
    let mut layers: Vec<Vec<usize>> = others[..solo].iter().map(|&i| vec![i]).collect();
    let mut shared: Vec<Vec<usize>> = vec![Vec::new(); buckets];
    for &i in &others[solo..] {
        shared[bucket_of(&paths[i].path, buckets)].push(i);
    }
    layers.extend(shared.into_iter().filter(|b| !b.is_empty()));
    layers
}

/// The bucket of a path: from its hash part (already uniformly random), so it does not move.
fn bucket_of(path: &StorePath, buckets: usize) -> usize {
    let sum = path.hash_part().bytes().fold(0usize, |acc, b| acc.wrapping_mul(31).wrapping_add(usize::from(b)));
    sum % buckets.max(1)
}

/// Layers built before, by what went into them (the paths and their NarHashes, the store directory,
/// the format and the compression), so that a layer the destination already has is not tarred and
/// compressed again: a re-push of an unchanged closure is a closure walk and HEAD requests.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct LayerMemo {
    pub layers: BTreeMap<String, MemoLayer>,
    /// For each blob pushed (by digest), the `HOST/REPOSITORY`s it went to: where a push to
    /// another repository of the same registry mounts it from instead of uploading it.
    #[serde(default)]
    pub pushed: BTreeMap<String, BTreeSet<String>>,
}

/// What a layer came out as.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemoLayer {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    pub diff_id: String,
}

impl LayerMemo {
    /// The most layers remembered; past it the memo starts again (it is only a shortcut).
    pub const MAX: usize = 10_000;

    /// The repositories of `host` known to hold each blob, for [`registry::Registry::set_mount_sources`].
    pub fn mount_sources(&self, host: &str) -> BTreeMap<String, Vec<String>> {
        let prefix = format!("{host}/");
        self.pushed
            .iter()
            .map(|(digest, repos)| {
                (digest.clone(), repos.iter().filter_map(|r| r.strip_prefix(&prefix)).map(str::to_owned).collect())
            })
            .collect()
    }

    /// Records that `host/repository` now holds `digests`.
    pub fn record_push<'d>(&mut self, host: &str, repository: &str, digests: impl IntoIterator<Item = &'d str>) {
        if self.pushed.len() > Self::MAX {
            self.pushed.clear();
        }
        for d in digests {
            let repos = self.pushed.entry(d.to_owned()).or_default();
            // A few repositories per blob are enough to mount from.
            if repos.len() < 8 {
                repos.insert(format!("{host}/{repository}"));
            }
        }
    }

    /// The key of a layer holding `members` (sorted), as `opts` writes it.
    fn key(store_dir: &StoreDir, members: &[&PathEntry], opts: &ImageOptions) -> String {
        let mut h = narwhal_formats::hash::Hasher::new(Algorithm::Sha256);
        let layer_type = opts.format.layer_type(opts.compression).unwrap_or("");
        h.update(format!("narwhal-layer-v1\n{store_dir}\n{layer_type}\n{}\n", tar::MTIME).as_bytes());
        for m in members {
            h.update(format!("{} {}\n", m.path, m.nar_hash).as_bytes());
        }
        h.finish().encode(Encoding::Base16)
    }
}

/// How many layers a build wrote and how many it took from the memo.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reuse {
    pub built: usize,
    pub reused: usize,
}

/// Builds the image of the closure `paths` (with `roots` on top) into `layout`, tagged `tag`.
/// The tag moves only once every blob is in; on error the layout's tags stay as they were.
/// A layer in `memo` that `present` says the destination has is not built again (roots' layers
/// always are: the entrypoint check reads them); every layer built is recorded in `memo`.
#[allow(clippy::too_many_arguments, clippy::too_many_lines)]
pub fn build(
    layout: &Layout,
    store_dir: &StoreDir,
    paths: &[PathEntry],
    roots: &[StorePath],
    source: &dyn NarSource,
    opts: &ImageOptions,
    tag: Option<&str>,
    memo: &mut LayerMemo,
    present: &(dyn Fn(&Descriptor) -> bool + Sync),
    reporter: &dyn report::Reporter,
) -> Result<(Built, Reuse), Error> {
    if opts.max_layers == 0 || opts.max_layers > MAX_LAYERS {
        return Err(Error::MaxLayers(opts.max_layers));
    }
    opts.format.layer_type(opts.compression)?;
    let base_layers = opts.base.as_ref().map_or(0, |b| b.layers.len());
    let own_layers = opts
        .max_layers
        .checked_sub(base_layers)
        .filter(|&n| n > 0)
        .ok_or(Error::BaseTooTall { max: opts.max_layers, base: base_layers })?;
    let plan = plan(paths, roots, own_layers, opts.floor, &opts.previous);
    let memo_ref = &*memo;
    let indexed: Vec<(usize, &Vec<usize>)> = plan.iter().enumerate().collect();
    let outcomes = narwhal_store::parallel::try_map(&indexed, opts.jobs, |&(index, layer)| {
        let mut members: Vec<&PathEntry> = layer.iter().map(|&i| &paths[i]).collect();
        members.sort_by(|a, b| a.path.cmp(&b.path));
        let key = LayerMemo::key(store_dir, &members, opts);
        let has_root = members.iter().any(|m| roots.contains(&m.path));
        if let Some(known) = memo_ref.layers.get(&key).filter(|_| !has_root) {
            let descriptor = Descriptor {
                media_type: known.media_type.clone(),
                digest: known.digest.clone(),
                size: known.size,
                annotations: BTreeMap::new(),
            };
            if present(&descriptor) {
                let paths = members.iter().map(|e| e.path.clone()).collect();
                reporter.layer_done(index, &descriptor, false);
                let out = LayerOut { descriptor, diff_id: known.diff_id.clone(), paths, seen: BTreeMap::new() };
                return Ok::<_, Error>((key, out, false));
            }
        }
        let names: Vec<StorePath> = members.iter().map(|m| m.path.clone()).collect();
        reporter.layer_started(index, &names, members.iter().map(|m| m.nar_size).sum());
        let progress = |n: u64| reporter.layer_progress(index, n);
        let out = build_layer(layout, store_dir, &members, source, opts, &progress)?;
        reporter.layer_done(index, &out.descriptor, true);
        Ok((key, out, true))
    })?;
    let mut reuse = Reuse::default();
    if memo.layers.len() > LayerMemo::MAX {
        memo.layers.clear();
    }
    let mut layers = Vec::with_capacity(outcomes.len());
    for (key, out, built) in outcomes {
        if built {
            reuse.built += 1;
            let d = &out.descriptor;
            let entry = MemoLayer {
                media_type: d.media_type.clone(),
                digest: d.digest.clone(),
                size: d.size,
                diff_id: out.diff_id.clone(),
            };
            memo.layers.insert(key, entry);
        } else {
            reuse.reused += 1;
        }
        layers.push(out);
    }
    if let Some((root, inner)) = &opts.must_exist {
        let found = layers.iter().any(|l| l.seen.get(root).is_some_and(|seen| seen.iter().any(|p| p == inner)));
        if !found {
            return Err(Error::NoEntrypoint {
                entrypoint: String::from_utf8_lossy(inner).into_owned(),
                root: store_dir.display(root).to_string(),
            });
        }
    }
    // A base image's layers first, as the format names them.
    let base = opts.base.clone().unwrap_or_default();
    let mut all_layers: Vec<Descriptor> = Vec::with_capacity(base.layers.len() + layers.len());
    for d in &base.layers {
        all_layers.push(Descriptor { media_type: opts.format.convert(&d.media_type)?, ..d.clone() });
    }
    all_layers.extend(layers.iter().map(|l| l.descriptor.clone()));
    let mut diff_ids = base.diff_ids.clone();
    diff_ids.extend(layers.iter().map(|l| l.diff_id.clone()));
    let mut history = base.history.clone();
    history.extend(layers.iter().map(|l| History {
        created: opts.created.clone(),
        created_by: CREATED_BY.to_owned(),
        comment: l.paths.iter().map(StorePath::to_string).collect::<Vec<_>>().join(" "),
        empty_layer: false,
    }));
    let config = ImageConfig {
        created: opts.created.clone(),
        architecture: opts.architecture.clone(),
        os: "linux".to_owned(),
        config: opts.config.clone(),
        rootfs: RootFs { kind: "layers".to_owned(), diff_ids: diff_ids.clone() },
        history,
    };
    let (manifest_desc, config_desc) = commit_image(layout, &config, &all_layers, opts.format, tag)?;
    let mut contents: Vec<Vec<StorePath>> = vec![Vec::new(); base.layers.len()];
    contents.extend(layers.into_iter().map(|l| l.paths));
    let built = Built { manifest: manifest_desc, config: config_desc, layers: all_layers, diff_ids, contents };
    Ok((built, reuse))
}

/// Stores the config and the manifest of `layers`, then moves `tag` to it: the image's commit point.
/// Returns the manifest's and the config's descriptors.
pub fn commit_image(
    layout: &Layout,
    config: &ImageConfig,
    layers: &[Descriptor],
    format: Format,
    tag: Option<&str>,
) -> Result<(Descriptor, Descriptor), Error> {
    let config_bytes = json(config)?;
    let config_desc = Descriptor {
        media_type: format.config_type().to_owned(),
        digest: layout.put_blob(&config_bytes)?,
        size: config_bytes.len() as u64,
        annotations: BTreeMap::new(),
    };
    let manifest = Manifest {
        schema_version: 2,
        media_type: format.manifest_type().to_owned(),
        config: config_desc.clone(),
        layers: layers.to_vec(),
    };
    let manifest_bytes = json(&manifest)?;
    let manifest_desc = Descriptor {
        media_type: format.manifest_type().to_owned(),
        digest: layout.put_blob(&manifest_bytes)?,
        size: manifest_bytes.len() as u64,
        annotations: BTreeMap::new(),
    };
    layout.set_tag(manifest_desc.clone(), tag)?;
    Ok((manifest_desc, config_desc))
}

/// One entry of a [`files_layer`], by its path inside the image (no leading `/`).
pub enum FileEntry {
    Dir(String),
    /// A host file copied in.
    File {
        name: String,
        from: PathBuf,
        executable: bool,
    },
    Symlink {
        name: String,
        target: String,
    },
}

/// An uncompressed layer of `entries`, in order, stored in `layout` (a buildpack image's layer:
/// the same files give the same bytes). Returns its descriptor; its diffID is its digest.
pub fn files_layer(layout: &Layout, entries: &[FileEntry]) -> Result<Descriptor, Error> {
    let mut temp = layout.temp_blob()?;
    let layer_err = |path: &str| {
        let path = path.to_owned();
        move |source| Error::Layer { path, source }
    };
    let (hash, size) = {
        let hashing = HashingWriter::new(Algorithm::Sha256, BufWriter::new(temp.as_file_mut()));
        let mut tar = tar::TarWriter::new(hashing);
        for entry in entries {
            match entry {
                FileEntry::Dir(name) => tar.directory(name.as_bytes()).map_err(layer_err(name))?,
                FileEntry::Symlink { name, target } => {
                    tar.symlink(name.as_bytes(), target.as_bytes()).map_err(layer_err(name))?;
                }
                FileEntry::File { name, from, executable } => {
                    let mut file = std::fs::File::open(from).map_err(|source| Error::Io {
                        what: "cannot read",
                        path: from.clone(),
                        source,
                    })?;
                    let len = file
                        .metadata()
                        .map_err(|source| Error::Io { what: "cannot read", path: from.clone(), source })?
                        .len();
                    tar.file(name.as_bytes(), *executable, len, &mut file).map_err(layer_err(name))?;
                }
            }
        }
        let (hash, size, mut out) = tar.finish().map_err(layer_err("the end of the layer"))?.finish();
        io::Write::flush(&mut out).map_err(layer_err("the layer"))?;
        (hash, size)
    };
    let digest = format!("sha256:{}", hash.encode(Encoding::Base16));
    layout.commit_blob(temp, &digest)?;
    Ok(Descriptor {
        media_type: "application/vnd.oci.image.layer.v1.tar".to_owned(),
        digest,
        size,
        annotations: BTreeMap::new(),
    })
}

fn json(value: &impl serde::Serialize) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value)
        .map_err(|e| Error::Layer { path: "the image config".to_owned(), source: io::Error::other(e) })
}

struct LayerOut {
    descriptor: Descriptor,
    diff_id: String,
    paths: Vec<StorePath>,
    /// Every entry of each path in the layer, relative to the path.
    seen: BTreeMap<StorePath, Vec<Vec<u8>>>,
}

/// One layer: `nix/`, `nix/store/`, then each path's NAR as tar entries; compressed, hashed both
/// ways (diffID of the tar, digest of the blob) and stored under its digest.
fn build_layer(
    layout: &Layout,
    store_dir: &StoreDir,
    members: &[&PathEntry],
    source: &dyn NarSource,
    opts: &ImageOptions,
    progress: &dyn Fn(u64),
) -> Result<LayerOut, Error> {
    let first = members.first().map_or_else(String::new, |e| store_dir.display(&e.path).to_string());
    let layer_err = |source| Error::Layer { path: first.clone(), source };
    let temp = layout.temp_blob()?;
    let file = temp.as_file().try_clone().map_err(layer_err)?;
    let blob = HashingWriter::new(Algorithm::Sha256, BufWriter::with_capacity(1 << 20, file));
    let compressor = Compressor::new(opts.compression, blob).map_err(layer_err)?;
    let chunked = Chunked { inner: compressor, buf: Vec::with_capacity(CHUNK) };
    let mut tar = tar::TarWriter::new(HashingWriter::new(Algorithm::Sha256, chunked));
    let store = store_dir.as_str().trim_start_matches('/').as_bytes().to_vec();
    let mut parents = Vec::new();
    for part in store.split(|&b| b == b'/') {
        if !parents.is_empty() {
            parents.push(b'/');
        }
        parents.extend_from_slice(part);
        tar.directory(&parents).map_err(layer_err)?;
    }
    let mut seen = BTreeMap::new();
    for entry in members {
        let mut prefix = store.clone();
        prefix.push(b'/');
        prefix.extend_from_slice(entry.path.base_name().as_bytes());
        let full = store_dir.display(&entry.path).to_string();
        let mut visitor = tar::NarToTar { tar: &mut tar, prefix, seen: Vec::new() };
        let mut reader = Tee::new(source.open(entry)?, Progress::new(progress));
        nar::parse_to_end(&mut reader, &mut visitor).map_err(|source| Error::Nar { path: full.clone(), source })?;
        seen.insert(entry.path.clone(), visitor.seen);
    }
    let diff = tar.finish().map_err(layer_err)?;
    let (diff_hash, _, chunked) = diff.finish();
    let blob = chunked.finish().map_err(layer_err)?;
    let (blob_hash, blob_size, mut buffered) = blob.finish();
    buffered.flush().map_err(layer_err)?;
    let digest = format!("sha256:{}", blob_hash.encode(Encoding::Base16));
    layout.commit_blob(temp, &digest)?;
    Ok(LayerOut {
        descriptor: Descriptor {
            media_type: opts.format.layer_type(opts.compression)?.to_owned(),
            digest,
            size: blob_size,
            annotations: BTreeMap::new(),
        },
        diff_id: format!("sha256:{}", diff_hash.encode(Encoding::Base16)),
        paths: members.iter().map(|e| e.path.clone()).collect(),
        seen,
    })
}

/// What the compressor is fed at a time. Deflate's output depends on how its input was split into
/// writes, and those follow the source's reads (a pipe from a dump, a decompressor's buffer): fixed
/// chunks make a layer's bytes depend on the tar alone, so the same closure gives the same digests
/// from a cache and from the local store.
const CHUNK: usize = 256 * 1024;

struct Chunked<W: Write> {
    inner: Compressor<W>,
    buf: Vec<u8>,
}

impl<W: Write> Chunked<W> {
    fn finish(mut self) -> io::Result<W> {
        if !self.buf.is_empty() {
            self.inner.write_all(&self.buf)?;
        }
        self.inner.finish()
    }
}

impl<W: Write> Write for Chunked<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.inner.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum Compressor<W: Write> {
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    None(W),
}

impl<W: Write> Compressor<W> {
    fn new(compression: LayerCompression, inner: W) -> io::Result<Self> {
        Ok(match compression {
            // No file name and mtime 0 in the gzip header: the same tar gives the same bytes.
            LayerCompression::Gzip => Self::Gzip(flate2::GzBuilder::new().write(inner, flate2::Compression::new(6))),
            // One thread: zstd's output then depends on the input and level alone.
            LayerCompression::Zstd => Self::Zstd(zstd::stream::write::Encoder::new(inner, 3)?),
            LayerCompression::None => Self::None(inner),
        })
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Self::Gzip(e) => e.finish(),
            Self::Zstd(e) => e.finish(),
            Self::None(w) => Ok(w),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Gzip(e) => e.write(buf),
            Self::Zstd(e) => e.write(buf),
            Self::None(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Gzip(e) => e.flush(),
            Self::Zstd(e) => e.flush(),
            Self::None(w) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(c: char, size: u64) -> PathEntry {
        let path = StorePath::from_base_name(&format!("{}-p{c}", c.to_string().repeat(32))).unwrap();
        PathEntry { path, nar_hash: Hash::of(Algorithm::Sha256, b""), nar_size: size }
    }

    #[test]
    fn plan_gives_roots_and_large_paths_their_own_layers_and_buckets_the_rest() {
        let paths: Vec<PathEntry> =
            vec![entry('a', 10), entry('b', 5 << 20), entry('c', 3 << 20), entry('d', 100), entry('f', 2 << 20)];
        let roots = vec![paths[4].path.clone()];
        let layers = plan(&paths, &roots, 70, 1 << 20, &[]);
        assert_eq!(
            layers,
            vec![vec![1], vec![2], vec![3, 0], vec![4]],
            "in a bucket by size; build sorts each layer by path"
        );
        // Two layers: everything below the root shares one.
        assert_eq!(plan(&paths, &roots, 2, 1 << 20, &[]), vec![vec![1, 2, 3, 0], vec![4]]);
        assert_eq!(plan(&paths, &roots, 1, 1 << 20, &[]).len(), 1);
        // A bucket does not depend on which other paths there are.
        let fewer: Vec<PathEntry> = vec![paths[0].clone(), paths[4].clone()];
        assert_eq!(plan(&fewer, &roots, 70, 1 << 20, &[]), vec![vec![0], vec![1]]);
    }

    #[test]
    fn plan_keeps_the_previous_layers_that_still_hold_only_closure_paths() {
        let paths: Vec<PathEntry> =
            vec![entry('a', 10), entry('b', 5 << 20), entry('c', 3 << 20), entry('d', 100), entry('f', 2 << 20)];
        let roots = vec![paths[4].path.clone()];
        let name = |i: usize| paths[i].path.base_name().to_owned();
        let gone = format!("{}-gone", "g".repeat(32));
        // a+b were one layer, c+d another; d's layer also held a path that is gone now.
        let previous = vec![vec![name(0), name(1)], vec![name(2), name(3), gone], vec![name(4)]];
        let layers = plan(&paths, &roots, 70, 1 << 20, &previous);
        assert_eq!(layers, vec![vec![0, 1], vec![2], vec![3], vec![4]], "{layers:?}");
        // Too few layers for every kept one: the smallest dissolves.
        let previous = vec![vec![name(0)], vec![name(1)], vec![name(2)], vec![name(3)]];
        let layers = plan(&paths, &roots, 4, 1 << 20, &previous);
        assert_eq!(layers.len(), 4, "{layers:?}");
        assert_eq!(&layers[..2], &[vec![1], vec![2]], "{layers:?}");
        assert_eq!(layers.last(), Some(&vec![4]));
    }
}
