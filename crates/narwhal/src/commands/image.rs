//! `narwhal image`: an OCI image of closures, from binary caches or the local Nix store.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};
use narwhal_formats::store_path::{StoreDir, StorePath};
use narwhal_image::oci::{Layout, RunConfig};
use narwhal_image::read::{self, ImageRef, Store};
use narwhal_image::registry::{PushReport, Reference, Registry};
use narwhal_image::{
    CacheSource, ExportSource, Format, ImageOptions, LayerCompression, LayerMemo, LocalSource, NarSource, PathEntry,
};
use narwhal_store::BinaryCache;

use super::fetch::{count, human, substituters, trusted_keys};
use crate::cli::ImageArgs;
use crate::output::stdout;
use crate::progress::ImageProgress;

/// Where an image goes.
enum Destination {
    /// `oci:DIR[:TAG]`.
    Layout(PathBuf, Option<String>),
    /// `oci-archive:FILE[:TAG]`.
    OciArchive(PathBuf, Option<String>),
    /// `docker-archive:FILE[:[NAME:]TAG]`: the name (else the first root's) and tag of `RepoTags`.
    DockerArchive(PathBuf, Option<(Option<String>, String)>),
    Registry(Reference),
}

const DESTINATIONS: &str =
    "oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:[NAME:]TAG] or docker://HOST/REPO[:TAG]";

fn destination(to: &str) -> anyhow::Result<Destination> {
    if to.starts_with("docker://") {
        return Ok(Destination::Registry(Reference::parse(to)?));
    }
    if let Some(rest) = to.strip_prefix("oci:") {
        let (dir, tag) = path_and_tag(to, rest)?;
        return Ok(Destination::Layout(dir, tag));
    }
    if let Some(rest) = to.strip_prefix("oci-archive:") {
        let (file, tag) = path_and_tag(to, rest)?;
        check_parent(&file)?;
        return Ok(Destination::OciArchive(file, tag));
    }
    if let Some(rest) = to.strip_prefix("docker-archive:") {
        // As skopeo reads it: the file ends at the first ':', the rest is NAME:TAG; a lone TAG
        // takes the first root's name.
        let (file, reference) = match rest.split_once(':') {
            Some((file, r)) => (file, Some(r)),
            None => (rest, None),
        };
        if file.is_empty() {
            bail!("the image destination {to:?} names no file: use docker-archive:FILE[:[NAME:]TAG]");
        }
        let repo_tag = match reference {
            None => None,
            Some(r) => {
                let (name, tag) = match r.rsplit_once(':') {
                    Some((name, tag)) => (Some(name.to_owned()), tag),
                    None => (None, r),
                };
                let probe = format!("docker://localhost/{}:{tag}", name.as_deref().unwrap_or("image"));
                if Reference::parse(&probe).is_err() {
                    bail!(
                        "invalid name or tag {r:?} in {to:?}: use lowercase NAME (a-z 0-9 . _ - /) and a TAG of A-Z a-z 0-9 . _ -"
                    );
                }
                Some((name, tag.to_owned()))
            }
        };
        let file = PathBuf::from(file);
        check_parent(&file)?;
        return Ok(Destination::DockerArchive(file, repo_tag));
    }
    bail!("unsupported image destination {to:?}: use {DESTINATIONS}")
}

/// `DIR[:TAG]` or `FILE[:TAG]` after the transport.
fn path_and_tag(to: &str, rest: &str) -> anyhow::Result<(PathBuf, Option<String>)> {
    let (dir, tag) = read::path_and_tag(rest);
    if dir.is_empty() {
        bail!("the image destination {to:?} names no path: use {DESTINATIONS}");
    }
    if let Some(t) = tag {
        if !narwhal_image::registry::is_tag(t) {
            bail!("invalid tag {t:?}: use up to 128 characters of A-Z a-z 0-9 . _ -, not starting with . or -");
        }
    }
    Ok((PathBuf::from(dir), tag.map(str::to_owned)))
}

/// An archive's directory must exist before anything is built.
fn check_parent(file: &Path) -> anyhow::Result<()> {
    let parent = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        bail!("the directory {} of the image archive does not exist; create it first", parent.display());
    }
    if file.is_dir() {
        bail!("{} is a directory; name a file for the image archive", file.display());
    }
    Ok(())
}

/// A repository name from a store path's name: lowercase, other characters as '-'.
fn image_name(root: &StorePath) -> String {
    let name: String = root
        .name()
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' })
        .collect();
    let name = name.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if name.is_empty() {
        "image".to_owned()
    } else {
        name.to_owned()
    }
}

#[allow(clippy::too_many_lines)] // the steps of one command, in order
pub fn run(args: &ImageArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let args = &with_config(args)?;
    let to = args.to.clone().unwrap_or_default();
    let store_dir = StoreDir::default();
    let destination = destination(&to)?;
    let mut roots =
        args.roots.iter().map(|r| super::store_path_arg(&store_dir, r)).collect::<anyhow::Result<Vec<_>>>()?;
    let jobs = super::jobs_or_cores(args.jobs);

    // The closure, and where its NARs come from.
    let subs;
    let (paths, source): (Vec<PathEntry>, Box<dyn NarSource + '_>);
    if let Some(export) = &args.from_export {
        let (entries, export_source) = read_export(export, args.no_verify, &store_dir, &mut roots, jobs)?;
        paths = entries;
        source = Box::new(export_source);
    } else if args.from.is_empty() {
        if roots.is_empty() {
            bail!("no root given");
        }
        let local = narwhal_push::LocalStore::open(&args.store_db, store_dir.clone(), PathBuf::from("/nix/store"))?;
        paths = local
            .closure(&roots)?
            .into_iter()
            .map(|i| PathEntry { path: i.path, nar_hash: i.nar_hash, nar_size: i.nar_size })
            .collect();
        source = Box::new(LocalSource { real_dir: PathBuf::from(store_dir.as_str()) });
    } else {
        if roots.is_empty() {
            bail!("no root given");
        }
        let trusted = trusted_keys(args.no_verify, &args.trusted_public_keys)?;
        subs = substituters(&args.from, &crate::settings::http()?)?;
        if subs.store_dir != store_dir {
            bail!("the caches hold paths of {}, not {store_dir}", subs.store_dir);
        }
        let closure = narwhal_fetch::walk_closure(&subs, &roots, trusted.as_deref(), (jobs * 4).max(8))?;
        paths = closure
            .iter()
            .map(|cp| PathEntry { path: cp.info.path.clone(), nar_hash: cp.info.nar_hash, nar_size: cp.info.nar_size })
            .collect();
        let caches: Vec<&dyn BinaryCache> = subs.list.iter().map(|s| s.cache.as_ref()).collect();
        let infos = closure.into_iter().map(|cp| (cp.info.path.clone(), (cp.substituter, cp.info))).collect();
        source = Box::new(CacheSource { caches, infos });
    }
    let first = roots.first().context("no root given")?;

    let mut opts = image_options(args, &store_dir, &roots, jobs)?;
    if matches!(destination, Destination::DockerArchive(..)) {
        // As `docker save` writes them: uncompressed layers, Docker's media types.
        opts.compression = LayerCompression::None;
        opts.format = Format::V2s2;
    }

    // Anything but a layout is built in a layout of its own, removed afterwards.
    let staging;
    let (dir, tag) = match &destination {
        Destination::Layout(dir, tag) => (dir.clone(), tag.clone()),
        other => {
            staging = narwhal_formats::temp::dir_in(&std::env::temp_dir(), "narwhal-image")
                .context("cannot create a temporary directory")?;
            let tag = match other {
                Destination::Registry(reference) => Some(reference.tag.clone()),
                Destination::OciArchive(_, tag) => tag.clone(),
                _ => None,
            };
            (staging.path().join("layout"), tag)
        }
    };
    let layout = Layout::open(&dir)?;
    let progress = Arc::new(ImageProgress::new(args.no_progress));
    // A layer the destination has and the memo knows is not built again; blobs pushed before to
    // another repository of the registry are mounted from there.
    let memo_file = memo_file();
    let mut memo = memo_file.as_deref().map(read_memo).unwrap_or_default();
    let registry = match &destination {
        Destination::Registry(reference) => {
            let creds = registry_credentials(args.creds.as_deref(), &reference.host)?;
            let mut registry = Registry::new(reference.clone(), creds, args.insecure)?;
            registry.set_reporter(progress.clone());
            registry.set_mount_sources(memo.mount_sources(&reference.host));
            Some(registry)
        }
        _ => None,
    };
    let arch = opts.architecture.clone();
    // The image this one replaces, for stable layers (step 2 of `narwhal_image::plan`).
    let previous = match &args.previous {
        Some(name) => {
            let image = ImageRef::parse(name)?;
            let opened = Opened::new(&image, args)?;
            let found = read::read_image(&opened.store(), image_tag(&image), &arch, name)?;
            Some(found.ok_or_else(|| narwhal_image::Error::ImageNotFound(name.to_owned()))?)
        }
        None => match (&destination, &registry) {
            (Destination::Registry(reference), Some(r)) => {
                read::read_image(&Store::Registry(r), Some(&reference.tag), &arch, &to)?
            }
            (Destination::Layout(dir, Some(tag)), _) => {
                read::read_image(&Store::Layout(dir.clone()), Some(tag), &arch, &to)?
            }
            _ => None,
        },
    };
    opts.previous = previous.map(|p| read::narwhal_layers(&p.config)).unwrap_or_default();
    // A base image: its layers into the layout, its config under this one's.
    if let Some(name) = &args.base {
        let image = ImageRef::parse(name)?;
        let opened = Opened::new(&image, args)?;
        let store = opened.store();
        let existing = read::read_image(&store, image_tag(&image), &arch, name)?
            .ok_or_else(|| narwhal_image::Error::ImageNotFound(name.to_owned()))?;
        read::copy_layers(&store, &existing.layers, &layout, name)?;
        read::merge_base_config(&mut opts.config, &existing.config);
        opts.base = Some(read::base_of(&existing, name)?);
    }
    let present = |blob: &narwhal_image::oci::Descriptor| match &registry {
        Some(r) => r.has_blob(blob),
        None => layout.has_blob(blob),
    };
    let (built, reuse) = narwhal_image::build(
        &layout,
        &store_dir,
        &paths,
        &roots,
        source.as_ref(),
        &opts,
        tag.as_deref(),
        &mut memo,
        &present,
        progress.as_ref(),
    )?;
    layout.finish()?;
    let mut pushed = PushReport::default();
    match (&destination, &registry) {
        (Destination::Registry(reference), Some(registry)) => {
            let layout = Layout::open(&dir)?;
            let mut blobs = built.layers.clone();
            blobs.push(built.config.clone());
            pushed = registry.push(&layout, &built.manifest, &blobs, jobs.max(2))?;
            memo.record_push(&reference.host, &reference.repository, blobs.iter().map(|b| b.digest.as_str()));
        }
        (Destination::OciArchive(file, _), _) => narwhal_image::archive::write_oci_archive(&dir, file)?,
        (Destination::DockerArchive(file, repo_tag), _) => {
            let name = repo_tag.as_ref().map(|(n, _)| n.clone().unwrap_or_else(|| image_name(first)));
            let repo_tag = repo_tag.as_ref().zip(name.as_deref()).map(|((_, t), n)| (n, t.as_str()));
            narwhal_image::archive::write_docker_archive(&Layout::open(&dir)?, &built, repo_tag, file)?;
        }
        _ => {}
    }
    if let Some(file) = &memo_file {
        write_memo(file, &memo);
    }
    let bytes: u64 = built.layers.iter().map(|l| l.size).sum();
    let seconds = started.elapsed().as_secs_f64();
    let mut summary = format!(
        "{} in {} ({}): {} built, {} reused",
        count(paths.len(), "path"),
        count(built.layers.len(), "layer"),
        human(bytes),
        reuse.built,
        reuse.reused
    );
    if registry.is_some() {
        let _ = write!(
            summary,
            "; pushed to {to}: {} blobs uploaded ({}), {} mounted, {} already there",
            pushed.uploaded,
            human(pushed.uploaded_bytes),
            pushed.mounted,
            pushed.skipped
        );
    }
    progress.line(&format!("{summary}, in {seconds:.1} s"));
    let mut out = stdout();
    if args.json {
        let layers: Vec<serde_json::Value> = built
            .layers
            .iter()
            .zip(&built.diff_ids)
            .zip(&built.contents)
            .map(|((l, diff_id), paths)| {
                serde_json::json!({
                    "digest": l.digest,
                    "bytes": l.size,
                    "media_type": l.media_type,
                    "diff_id": diff_id,
                    "paths": paths.iter().map(|p| store_dir.display(p).to_string()).collect::<Vec<_>>(),
                })
            })
            .collect();
        let value = serde_json::json!({
            "destination": to,
            "manifest": built.manifest.digest,
            "config": built.config.digest,
            "paths": paths.len(),
            "layers": layers,
            "built": reuse.built,
            "reused": reuse.reused,
            "uploaded": pushed.uploaded,
            "mounted": pushed.mounted,
            "skipped": pushed.skipped,
            "bytes_sent": pushed.uploaded_bytes,
            "seconds": seconds,
        });
        crate::output::print_json(&value)?;
    } else {
        writeln!(out, "{}", built.manifest.digest)?;
    }
    out.flush()?;
    Ok(())
}

/// narwhal.toml's `[image]` table: defaults for the flags of the same names (a flag given wins;
/// `env`, `labels` and `ports` add to the flags'). Every key is optional; unknown keys are errors.
///
/// ```toml
/// [image]
/// to = "docker://registry.heroku.com/my-app/web"
/// base = "oci:base:latest"
/// entrypoint = "bin/server"
/// cmd = ["--port", "5000"]
/// env = { LANG = "C.UTF-8" }
/// user = "65534:65534"
/// workdir = "/"
/// labels = { "org.opencontainers.image.source" = "https://github.com/me/app" }
/// ports = ["5000/tcp"]
/// max-layers = 70
/// compression = "gzip"   # gzip, zstd, none
/// format = "v2s2"        # oci, v2s2
/// arch = "amd64"
/// ```
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ImageToml {
    to: Option<String>,
    base: Option<String>,
    entrypoint: Option<String>,
    #[serde(default)]
    cmd: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    user: Option<String>,
    workdir: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    ports: Vec<String>,
    max_layers: Option<usize>,
    compression: Option<String>,
    format: Option<String>,
    arch: Option<String>,
}

/// The whole file: only `[image]` is read here (the buildpack reads the rest).
#[derive(Debug, Default, serde::Deserialize)]
struct NarwhalToml {
    #[serde(default)]
    image: Option<ImageToml>,
}

/// `args` with what they leave unset taken from narwhal.toml's `[image]` table (`--config`, else
/// `./narwhal.toml` when it exists), checked as the flags are.
fn with_config(args: &ImageArgs) -> anyhow::Result<ImageArgs> {
    let (file, required) = match &args.config {
        Some(f) => (f.clone(), true),
        None => (PathBuf::from("narwhal.toml"), false),
    };
    let bad = |why: String| narwhal_image::Error::Config { file: file.display().to_string(), why };
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => None,
        Err(e) => return Err(bad(e.to_string()).into()),
    };
    let table = match text {
        Some(text) => {
            toml::from_str::<NarwhalToml>(&text).map_err(|e| bad(e.message().to_owned()))?.image.unwrap_or_default()
        }
        None => ImageToml::default(),
    };
    let mut out = args.clone();
    let pick = |flag: &Option<String>, file: &Option<String>| flag.clone().or_else(|| file.clone());
    out.to = pick(&args.to, &table.to);
    out.base = pick(&args.base, &table.base);
    out.entrypoint = pick(&args.entrypoint, &table.entrypoint);
    out.user = pick(&args.user, &table.user);
    out.workdir = pick(&args.workdir, &table.workdir);
    out.arch = pick(&args.arch, &table.arch);
    if out.cmd.is_empty() {
        out.cmd = table.cmd;
    }
    out.env = table.env.iter().map(|(k, v)| format!("{k}={v}")).chain(args.env.iter().cloned()).collect();
    out.label = table.labels.iter().map(|(k, v)| format!("{k}={v}")).chain(args.label.iter().cloned()).collect();
    out.port = table.ports.into_iter().chain(args.port.iter().cloned()).collect();
    if out.max_layers.is_none() {
        if let Some(n) = table.max_layers {
            if n == 0 || n > narwhal_image::MAX_LAYERS {
                return Err(bad(format!("max-layers = {n} is outside 1 to {}", narwhal_image::MAX_LAYERS)).into());
            }
            out.max_layers = Some(n);
        }
    }
    let one_of = |key: &str, value: Option<String>, allowed: &[&str]| -> anyhow::Result<Option<String>> {
        match value {
            Some(v) if !allowed.contains(&v.as_str()) => {
                Err(bad(format!("{key} = {v:?} is not one of {}", allowed.join(", "))).into())
            }
            v => Ok(v),
        }
    };
    out.compression = match &args.compression {
        Some(c) => Some(c.clone()),
        None => one_of("compression", table.compression, &["gzip", "zstd", "none"])?,
    };
    out.format = match &args.format {
        Some(f) => Some(f.clone()),
        None => one_of("format", table.format, &["oci", "v2s2"])?,
    };
    if out.to.is_none() {
        bail!(
            "no destination: give --to oci:DIR[:TAG], docker://HOST/REPO[:TAG], … (or `to` in narwhal.toml's [image] table)"
        );
    }
    Ok(out)
}

/// An image to read, opened: a layout's directory, or a registry with its host's credentials.
struct Opened {
    dir: PathBuf,
    registry: Option<Registry>,
}

impl Opened {
    fn new(image: &ImageRef, args: &ImageArgs) -> anyhow::Result<Self> {
        Ok(match image {
            ImageRef::Layout { dir, .. } => Self { dir: dir.clone(), registry: None },
            ImageRef::Registry(reference) => {
                let creds = registry_credentials(args.creds.as_deref(), &reference.host)?;
                let registry = Registry::new(reference.clone(), creds, args.insecure)?;
                Self { dir: PathBuf::new(), registry: Some(registry) }
            }
        })
    }

    fn store(&self) -> Store<'_> {
        match &self.registry {
            Some(r) => Store::Registry(r),
            None => Store::Layout(self.dir.clone()),
        }
    }
}

fn image_tag(image: &ImageRef) -> Option<&str> {
    match image {
        ImageRef::Layout { tag, .. } => tag.as_deref(),
        ImageRef::Registry(reference) => Some(&reference.tag),
    }
}

/// The closure of `roots` (else the export's last path, put in `roots`) from the export stream
/// `export` (a file, or `-`), read and checked as `fetch --from-export` does.
fn read_export(
    export: &str,
    no_verify: bool,
    store_dir: &StoreDir,
    roots: &mut Vec<StorePath>,
    jobs: usize,
) -> anyhow::Result<(Vec<PathEntry>, ExportSource)> {
    if !no_verify {
        bail!(
            "an export ({export}) carries no signatures, so narwhal cannot verify it; pass --no-verify to trust it as whoever wrote it (its NAR hashes are computed and checked again as layers are written), or build from a signed binary cache with --from"
        );
    }
    let (source, exported) = if export == "-" {
        ExportSource::read(&mut std::io::stdin().lock(), export, store_dir)?
    } else {
        let mut file = std::fs::File::open(export).with_context(|| format!("cannot open the export {export}"))?;
        ExportSource::read(&mut file, export, store_dir)?
    };
    *roots = narwhal_fetch::check_export_closure(&exported, &BTreeSet::new(), roots, export, store_dir)?;
    let by_path: BTreeMap<&StorePath, &narwhal_formats::export::ExportedPath> =
        exported.iter().map(|p| (&p.path, p)).collect();
    let closure = narwhal_store::closure::walk(
        roots,
        jobs,
        |p: &StorePath| {
            by_path
                .get(p)
                .copied()
                .ok_or_else(|| anyhow::anyhow!("{} is not in the export {export}", store_dir.display(p)))
        },
        |p| &p.references,
    )?;
    let paths = closure
        .into_iter()
        .map(|p| PathEntry { path: p.path.clone(), nar_hash: p.nar_hash, nar_size: p.nar_size })
        .collect();
    Ok((paths, source))
}

/// The buildpack directory `dir` (see `narwhal_buildpack::cnb::package`) as a buildpack image at
/// `to`: one layer holding `/cnb/buildpacks/<id>/<version>/`, and the labels pack and the
/// lifecycle read (`io.buildpacks.buildpackage.metadata`, `io.buildpacks.buildpack.layers`).
/// Returns the manifest's digest.
pub fn buildpack_image(dir: &Path, version: &str, to: &str) -> anyhow::Result<String> {
    use narwhal_buildpack::cnb::{BUILDPACK_API, BUILDPACK_ID};
    use narwhal_image::FileEntry;
    let destination = destination(to)?;
    let staging;
    let (layout_dir, tag) = match &destination {
        Destination::Layout(d, tag) => (d.clone(), tag.clone()),
        Destination::Registry(reference) => {
            staging = narwhal_formats::temp::dir_in(&std::env::temp_dir(), "narwhal-image")
                .context("cannot create a temporary directory")?;
            (staging.path().join("layout"), Some(reference.tag.clone()))
        }
        Destination::OciArchive(..) | Destination::DockerArchive(..) => {
            bail!("a buildpack image goes to oci:DIR[:TAG] or docker://HOST/REPO[:TAG], not to {to}")
        }
    };
    let layout = Layout::open(&layout_dir)?;
    let base = format!("cnb/buildpacks/{}/{version}", BUILDPACK_ID.replace('/', "_"));
    let mut entries: Vec<FileEntry> = Vec::new();
    let mut at = String::new();
    for part in base.split('/') {
        at = if at.is_empty() { part.to_owned() } else { format!("{at}/{part}") };
        entries.push(FileEntry::Dir(at.clone()));
    }
    entries.push(FileEntry::File {
        name: format!("{base}/buildpack.toml"),
        from: dir.join("buildpack.toml"),
        executable: false,
    });
    entries.push(FileEntry::Dir(format!("{base}/bin")));
    entries.push(FileEntry::File {
        name: format!("{base}/bin/narwhal"),
        from: dir.join("bin/narwhal"),
        executable: true,
    });
    for phase in ["build", "detect"] {
        entries.push(FileEntry::Symlink { name: format!("{base}/bin/{phase}"), target: "narwhal".to_owned() });
    }
    let layer = narwhal_image::files_layer(&layout, &entries)?;
    let targets = serde_json::json!([{ "os": "linux", "arch": "amd64" }]);
    let metadata = serde_json::json!({ "id": BUILDPACK_ID, "version": version, "name": "narwhal", "targets": targets });
    let entry = serde_json::json!({
        "api": BUILDPACK_API, "name": "narwhal", "targets": targets, "layerDiffID": layer.digest,
    });
    let mut versions = serde_json::Map::new();
    versions.insert(version.to_owned(), entry);
    let mut layers = serde_json::Map::new();
    layers.insert(BUILDPACK_ID.to_owned(), serde_json::Value::Object(versions));
    let layers = serde_json::Value::Object(layers);
    let mut run = RunConfig::default();
    run.labels.insert("io.buildpacks.buildpackage.metadata".to_owned(), metadata.to_string());
    run.labels.insert("io.buildpacks.buildpack.layers".to_owned(), layers.to_string());
    let created = "1980-01-01T00:00:01Z".to_owned();
    let config = narwhal_image::oci::ImageConfig {
        created: created.clone(),
        architecture: "amd64".to_owned(),
        os: "linux".to_owned(),
        config: run,
        rootfs: narwhal_image::oci::RootFs { kind: "layers".to_owned(), diff_ids: vec![layer.digest.clone()] },
        history: vec![narwhal_image::oci::History {
            created,
            created_by: "narwhal buildpack package-cnb".to_owned(),
            comment: format!("{BUILDPACK_ID} {version}"),
            empty_layer: false,
        }],
    };
    let (manifest, config) =
        narwhal_image::commit_image(&layout, &config, std::slice::from_ref(&layer), Format::Oci, tag.as_deref())?;
    layout.finish()?;
    if let Destination::Registry(reference) = &destination {
        let creds = registry_credentials(None, &reference.host)?;
        let registry = Registry::new(reference.clone(), creds, false)?;
        let report = registry.push(&Layout::open(&layout_dir)?, &manifest, &[layer, config], 2)?;
        let _ = writeln!(
            std::io::stderr().lock(),
            "pushed {}/{}:{}: {} blobs uploaded ({}), {} mounted, {} already there",
            reference.host,
            reference.repository,
            reference.tag,
            report.uploaded,
            human(report.uploaded_bytes),
            report.mounted,
            report.skipped
        );
    }
    Ok(manifest.digest)
}

/// Where the layer memo lives: `$XDG_CACHE_HOME/narwhal` or `~/.cache/narwhal`; none without either.
fn memo_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("narwhal/image-layers-v1.json"))
}

/// The memo, or an empty one when it is missing or unreadable (it is only a shortcut).
fn read_memo(file: &Path) -> LayerMemo {
    std::fs::read(file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// Saves the memo atomically; a failure only costs the shortcut next time.
fn write_memo(file: &Path, memo: &LayerMemo) {
    let Some(dir) = file.parent() else { return };
    let Ok(bytes) = serde_json::to_vec(memo) else { return };
    if std::fs::create_dir_all(dir).is_ok() {
        let _ = crate::output::write_atomic(file, &bytes, 0o644, true);
    }
}

/// Credentials for `host`: the flag or its variable (`USER:PASSWORD`), else the registry's entry in
/// the docker/skopeo auth files (`$REGISTRY_AUTH_FILE`, then `~/.docker/config.json`), else none.
/// An auth file that exists but cannot be read as one is an error, not "no credentials".
fn registry_credentials(flag: Option<&str>, host: &str) -> anyhow::Result<Option<(String, String)>> {
    if let Some(c) = flag {
        let Some((user, pass)) = c.split_once(':') else {
            bail!("invalid --creds (or NARWHAL_REGISTRY_CREDS): use USER:PASSWORD");
        };
        return Ok(Some((user.to_owned(), pass.to_owned())));
    }
    let files = [
        std::env::var_os("REGISTRY_AUTH_FILE").filter(|f| !f.is_empty()).map(PathBuf::from),
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json")),
    ];
    for file in files.into_iter().flatten() {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("cannot read the registry credentials in {}", file.display())))
            }
        };
        let name = file.display().to_string();
        if let Some(creds) = narwhal_image::registry::credentials_from_auth_file(&text, host, &name)? {
            return Ok(Some(creds));
        }
    }
    Ok(None)
}

/// The image's options from the flags: config, entrypoint check, compression and format.
fn image_options(
    args: &ImageArgs,
    store_dir: &StoreDir,
    roots: &[StorePath],
    jobs: usize,
) -> anyhow::Result<ImageOptions> {
    let first = roots.first().cloned().context("no root given")?;
    let config = run_config(args, store_dir, roots)?;
    let must_exist = match &args.entrypoint {
        None => None,
        // A base image may hold it: only paths in the store are checked then.
        Some(e) if e.starts_with('/') && args.base.is_some() && store_dir.split_path(e).is_err() => None,
        Some(e) if e.starts_with('/') => {
            let (path, inner) = store_dir.split_path(e).with_context(|| {
                format!("the entrypoint {e} is not in the store; give it relative to the root (or give a --base image that has it)")
            })?;
            Some((path, inner.trim_start_matches('/').as_bytes().to_vec()))
        }
        Some(e) => Some((first.clone(), e.trim_start_matches("./").as_bytes().to_vec())),
    };
    let compression = match args.compression.as_deref().unwrap_or("gzip") {
        "zstd" => LayerCompression::Zstd,
        "none" => LayerCompression::None,
        _ => LayerCompression::Gzip,
    };
    let format = if args.format.as_deref() == Some("v2s2") { Format::V2s2 } else { Format::Oci };
    Ok(ImageOptions {
        max_layers: args.max_layers.unwrap_or(narwhal_image::DEFAULT_MAX_LAYERS),
        floor: narwhal_image::DEFAULT_FLOOR,
        compression,
        format,
        jobs,
        config,
        architecture: args.arch.clone().unwrap_or_else(|| "amd64".to_owned()),
        created: args.created.clone(),
        must_exist,
        previous: Vec::new(),
        base: None,
    })
}

/// The image config from the flags: PATH from the roots, the labels tools read.
fn run_config(args: &ImageArgs, store_dir: &StoreDir, roots: &[StorePath]) -> anyhow::Result<RunConfig> {
    let key_value = |what: &str, s: &str| -> anyhow::Result<(String, String)> {
        match s.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => bail!("invalid {what} {s:?}: use NAME=VALUE"),
        }
    };
    let mut env: Vec<(String, String)> = Vec::new();
    let bins: Vec<String> = roots.iter().map(|r| format!("{}/bin", store_dir.display(r))).collect();
    env.push(("PATH".to_owned(), bins.join(":")));
    for e in &args.env {
        let (k, v) = key_value("--env", e)?;
        env.retain(|(name, _)| *name != k);
        env.push((k, v));
    }
    let mut labels = BTreeMap::new();
    labels.insert("org.opencontainers.image.created".to_owned(), args.created.clone());
    if let Some(rev) = &args.rev {
        labels.insert("org.opencontainers.image.revision".to_owned(), rev.clone());
    }
    if let Some(src) = &args.source_url {
        labels.insert("org.opencontainers.image.source".to_owned(), src.clone());
    }
    for l in &args.label {
        let (k, v) = key_value("--label", l)?;
        labels.insert(k, v);
    }
    let mut ports = BTreeMap::new();
    for p in &args.port {
        let (number, proto) = p.split_once('/').unwrap_or((p, "tcp"));
        if number.parse::<u16>().map_or(true, |n| n == 0) || !matches!(proto, "tcp" | "udp") {
            bail!("invalid --port {p:?}: use a port from 1 to 65535, optionally /tcp or /udp");
        }
        ports.insert(format!("{number}/{proto}"), BTreeMap::new());
    }
    let entrypoint = match &args.entrypoint {
        None => Vec::new(),
        Some(e) if e.starts_with('/') => vec![e.clone()],
        Some(e) => vec![Path::new(&store_dir.display(&roots[0]).to_string())
            .join(e.trim_start_matches("./"))
            .display()
            .to_string()],
    };
    Ok(RunConfig {
        user: args.user.clone().unwrap_or_else(|| "65534:65534".to_owned()),
        exposed_ports: ports,
        env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        entrypoint,
        cmd: args.cmd.clone(),
        working_dir: args.workdir.clone().unwrap_or_default(),
        labels,
    })
}
