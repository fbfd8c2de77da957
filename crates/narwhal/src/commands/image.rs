//! `narwhal image`: an OCI image of closures, from binary caches or the local Nix store.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _};
use narwhal_formats::store_path::{StoreDir, StorePath};
use narwhal_image::oci::{Layout, RunConfig};
use narwhal_image::registry::{Reference, Registry};
use narwhal_image::{
    Built, CacheSource, Format, ImageOptions, LayerCompression, LayerMemo, LocalSource, NarSource, PathEntry,
};
use narwhal_store::BinaryCache;

use super::fetch::{count, human, substituters, trusted_keys};
use crate::cli::ImageArgs;
use crate::output::stdout;

/// Where an image goes.
enum Destination {
    Layout(PathBuf, Option<String>),
    Registry(Reference),
}

fn destination(to: &str) -> anyhow::Result<Destination> {
    if to.starts_with("docker://") {
        return Ok(Destination::Registry(Reference::parse(to)?));
    }
    let (dir, tag) = layout_destination(to)?;
    Ok(Destination::Layout(dir, tag))
}

/// `oci:DIR[:TAG]`.
fn layout_destination(to: &str) -> anyhow::Result<(PathBuf, Option<String>)> {
    let Some(rest) = to.strip_prefix("oci:") else {
        bail!(
            "unsupported image destination {to:?}: use oci:DIR[:TAG] (an OCI image layout) or docker://HOST/REPO[:TAG]"
        );
    };
    // A tag has no '/': `oci:/srv/images/app:v1`, but `oci:./dir` has none.
    let (dir, tag) = match rest.rsplit_once(':') {
        Some((dir, tag)) if !tag.contains('/') && !dir.is_empty() => (dir, Some(tag.to_owned())),
        _ => (rest, None),
    };
    if dir.is_empty() {
        bail!("the image destination {to:?} names no directory: use oci:DIR[:TAG]");
    }
    if let Some(t) = &tag {
        if !narwhal_image::registry::is_tag(t) {
            bail!("invalid tag {t:?}: use up to 128 characters of A-Z a-z 0-9 . _ -, not starting with . or -");
        }
    }
    Ok((PathBuf::from(dir), tag))
}

pub fn run(args: &ImageArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let destination = destination(&args.to)?;
    let store_dir = StoreDir::default();
    let roots = args.roots.iter().map(|r| super::store_path_arg(&store_dir, r)).collect::<anyhow::Result<Vec<_>>>()?;
    if roots.is_empty() {
        bail!("no root given");
    }
    let jobs = super::jobs_or_cores(args.jobs);

    let opts = image_options(args, &store_dir, &roots, jobs)?;

    // The closure, and where its NARs come from.
    let subs;
    let (paths, source): (Vec<PathEntry>, Box<dyn NarSource + '_>);
    if args.from.is_empty() {
        let local = narwhal_push::LocalStore::open(&args.store_db, store_dir.clone(), PathBuf::from("/nix/store"))?;
        paths = local
            .closure(&roots)?
            .into_iter()
            .map(|i| PathEntry { path: i.path, nar_hash: i.nar_hash, nar_size: i.nar_size })
            .collect();
        source = Box::new(LocalSource { real_dir: PathBuf::from(store_dir.as_str()) });
    } else {
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

    // A registry push goes through a layout of its own, removed afterwards.
    let staging;
    let (dir, tag) = match &destination {
        Destination::Layout(dir, tag) => (dir.clone(), tag.clone()),
        Destination::Registry(reference) => {
            staging = tempfile::Builder::new()
                .prefix("narwhal-image-")
                .tempdir()
                .context("cannot create a temporary directory")?;
            (staging.path().join("layout"), Some(reference.tag.clone()))
        }
    };
    let layout = Layout::open(&dir)?;
    let registry = match &destination {
        Destination::Registry(reference) => {
            let creds = registry_credentials(args.creds.as_deref(), &reference.host)?;
            Some(Registry::new(reference.clone(), creds, args.insecure)?)
        }
        Destination::Layout(..) => None,
    };
    // A layer the destination has and the memo knows is not built again.
    let memo_file = memo_file();
    let mut memo = memo_file.as_deref().map(read_memo).unwrap_or_default();
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
    )?;
    layout.finish()?;
    if let Some(file) = &memo_file {
        write_memo(file, &memo);
    }
    let _ = writeln!(std::io::stderr().lock(), "{} layers built, {} reused", reuse.built, reuse.reused);
    if let (Destination::Registry(reference), Some(registry)) = (&destination, &registry) {
        push(registry, reference, &dir, &built, jobs)?;
    }
    let bytes: u64 = built.layers.iter().map(|l| l.size).sum();
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "{} in {} ({}), in {:.1} s",
        count(paths.len(), "path"),
        count(built.layers.len(), "layer"),
        human(bytes),
        started.elapsed().as_secs_f64()
    );
    if args.json {
        let layers: Vec<serde_json::Value> = built
            .layers
            .iter()
            .zip(&built.contents)
            .map(|(l, paths)| {
                let paths: Vec<String> = paths.iter().map(|p| store_dir.display(p).to_string()).collect();
                serde_json::json!({ "digest": l.digest, "bytes": l.size, "paths": paths })
            })
            .collect();
        return Ok(crate::output::print_json(&serde_json::json!({
            "version": 1,
            "destination": args.to,
            "manifest_digest": built.manifest.digest,
            "config_digest": built.config.digest,
            "layers": layers,
            "layers_built": reuse.built,
            "layers_reused": reuse.reused,
            "paths": paths.len(),
            "bytes": bytes,
            "seconds": started.elapsed().as_secs_f64(),
        }))?);
    }
    let mut out = stdout();
    writeln!(out, "{}", built.manifest.digest)?;
    out.flush()?;
    Ok(())
}

/// Pushes the image built in the layout at `dir` to the registry.
fn push(registry: &Registry, reference: &Reference, dir: &Path, built: &Built, jobs: usize) -> anyhow::Result<()> {
    let layout = Layout::open(dir)?;
    let mut blobs = built.layers.clone();
    blobs.push(built.config.clone());
    let report = registry.push(&layout, &built.manifest, &blobs, jobs.max(2))?;
    let _ = writeln!(
        std::io::stderr().lock(),
        "pushed {}/{}:{}: {} blobs uploaded ({}), {} already there",
        reference.host,
        reference.repository,
        reference.tag,
        report.uploaded,
        human(report.uploaded_bytes),
        report.skipped
    );
    Ok(())
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
/// the docker/skopeo auth file (`$REGISTRY_AUTH_FILE`, `~/.docker/config.json`), else none.
fn registry_credentials(flag: Option<&str>, host: &str) -> anyhow::Result<Option<(String, String)>> {
    if let Some(c) = flag {
        let Some((user, pass)) = c.split_once(':') else {
            bail!("invalid --creds (or NARWHAL_REGISTRY_CREDS): use USER:PASSWORD");
        };
        return Ok(Some((user.to_owned(), pass.to_owned())));
    }
    let files = [
        std::env::var_os("REGISTRY_AUTH_FILE").map(PathBuf::from),
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json")),
    ];
    for file in files.into_iter().flatten() {
        if let Ok(text) = std::fs::read_to_string(&file) {
            if let Some(creds) = narwhal_image::registry::credentials_from_auth_file(&text, host) {
                return Ok(Some(creds));
            }
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
        Some(e) if e.starts_with('/') => {
            let (path, inner) = store_dir
                .split_path(e)
                .with_context(|| format!("the entrypoint {e} is not in the store; give it relative to the root"))?;
            Some((path, inner.trim_start_matches('/').as_bytes().to_vec()))
        }
        Some(e) => Some((first.clone(), e.trim_start_matches("./").as_bytes().to_vec())),
    };
    let compression = match args.compression.as_str() {
        "zstd" => LayerCompression::Zstd,
        "none" => LayerCompression::None,
        _ => LayerCompression::Gzip,
    };
    let format = if args.format == "v2s2" { Format::V2s2 } else { Format::Oci };
    Ok(ImageOptions {
        max_layers: args.max_layers,
        floor: narwhal_image::DEFAULT_FLOOR,
        compression,
        format,
        jobs,
        config,
        architecture: args.arch.clone(),
        created: args.created.clone(),
        must_exist,
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
        user: args.user.clone(),
        exposed_ports: ports,
        env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        entrypoint,
        cmd: args.cmd.clone(),
        working_dir: args.workdir.clone().unwrap_or_default(),
        labels,
    })
}
