//! The steps both buildpacks take before the fetch: the private cache's
//! netrc, what to deploy, building on push, and where the closure comes from.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use narwhal_formats::store_path::StorePath;

use crate::config::Config;
use crate::errors::Error;
use crate::log::Log;
use crate::settings::{with_vars, Env};
use crate::source::{s3_object, Source};
use crate::write_atomic;

/// NARWHAL_NETRC as a file for this build only: outside the app and the
/// build cache, readable by this user only (a temporary file of
/// [`narwhal_formats::temp`]), removed when dropped. HTTP caches read it first
/// of the settings' netrc files, as Nix reads its netrc-file.
pub struct TempNetrc {
    _file: narwhal_formats::temp::TempPath,
}

impl TempNetrc {
    /// Writes the netrc and puts it first in `env`'s netrc files.
    pub fn write(text: &str, env: &mut Env) -> Result<Self, Error> {
        use std::io::Write as _;
        let dir = std::env::temp_dir();
        let mut file = narwhal_formats::temp::file_with_mode(&dir, "narwhal-netrc".as_ref(), 0o600)
            .map_err(Error::io("create a file in", &dir))?;
        file.write_all(text.as_bytes()).map_err(Error::io("write", file.path()))?;
        let path = file.into_temp_path();
        env.store.netrc_files.insert(0, path.to_path_buf());
        Ok(Self { _file: path })
    }
}

/// What to deploy: explicit roots, else the pin (for `revision`, the commit being built, when known).
pub fn roots(config: &Config, revision: Option<&str>) -> Result<Vec<String>, Error> {
    if !config.roots.is_empty() {
        return Ok(config.roots.clone());
    }
    match &config.pin {
        Some(pin) => Ok(vec![match revision {
            Some(rev) if !rev.is_empty() => format!("pin:{pin}@{rev}"),
            _ => format!("pin:{pin}"),
        }]),
        None => Err(Error::NothingToDeploy),
    }
}

/// The export named in the configuration, a file in the app unless absolute or `s3://`.
pub fn export_location(config: &Config, app_dir: &Path) -> Option<String> {
    config.export.clone().map(|e| {
        if e.starts_with("s3://") || Path::new(&e).is_absolute() {
            e
        } else {
            app_dir.join(e).display().to_string()
        }
    })
}

/// What to fetch and from where: the roots and the [`Source`], announced as a step.
pub fn plan(
    config: &Config,
    app_dir: &Path,
    revision: Option<&str>,
    downloads: Option<PathBuf>,
    env: &Env,
    log: &dyn Log,
) -> Result<(Vec<String>, Source), Error> {
    let export = export_location(config, app_dir);
    let roots = if let Some(export) = &export {
        let what = if config.roots.is_empty() { "the last path".to_owned() } else { config.roots.join(" ") };
        log.step(&format!("Deploying {what} from the export {export}"));
        log.detail("an export carries no signatures: it is trusted as whoever could write it");
        config.roots.clone()
    } else {
        let roots = roots(config, revision)?;
        if config.substituters.is_empty() {
            return Err(Error::NoCaches);
        }
        log.step(&format!("Deploying {} from {}", roots.join(" "), config.substituters.join(" ")));
        roots
    };
    let source = Source {
        from: config.substituters.clone(),
        no_verify: config.no_verify || export.is_some(),
        from_export: export,
        s3_env: config.s3_env.clone(),
        trusted_public_keys: config.trusted_public_keys.clone(),
        cache_dir: downloads,
        // The build cache keeps only what the current closure uses.
        prune_cache: true,
        jobs: None,
        wait: config.wait,
        store: env.store.clone(),
        http: env.http.clone(),
    };
    Ok((roots, source))
}

/// Whether `program` is on PATH.
pub fn which(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// Builds with the app's Nix (its output goes to this process's stderr), then deploys from a
/// signed cache of what was built, kept in `state`. With an `s3://` export configured, the
/// closure is stored there too, as the older buildpack did after a build.
pub fn build_with_nix(
    app_dir: &Path,
    state: &Path,
    config: &mut Config,
    env: &Env,
    log: &dyn Log,
) -> Result<(), Error> {
    let out_link = state.join("nix-result");
    let out = Command::new("nix-build")
        .current_dir(app_dir)
        .args(config.build.flags.split_whitespace())
        .arg("--out-link")
        .arg(&out_link)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| Error::Spawn { program: "nix-build", source })?;
    if !out.status.success() {
        return Err(Error::NixBuild { status: out.status.to_string() });
    }
    let built: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    let (sec, public) = (state.join("local-build.sec"), state.join("local-build.pub"));
    if !sec.exists() {
        let key = narwhal_formats::signature::SecretKey::generate("narwhal-local-build-1")?;
        write_atomic(&sec, key.to_string().as_bytes(), 0o600)?;
        write_atomic(&public, key.public_key().to_string().as_bytes(), 0o644)?;
    }
    let cache = state.join("local-cache");
    let url = format!("file://{}?compression=zstd&secret-key={}", cache.display(), sec.display());
    let status = Command::new("nix")
        .args(["copy", "--to", &url])
        .args(&built)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|source| Error::Spawn { program: "nix", source })?;
    if !status.success() {
        return Err(Error::NixCopy { status: status.to_string() });
    }
    log.detail(&format!("built {}", built.join(" ")));
    if let Some(export) = config.export.take() {
        if export.starts_with("s3://") {
            log.step(&format!("Storing the closure at {export}"));
            export_to_s3(&built, &export, &with_vars(&env.store, &config.s3_env), &env.http)?;
        }
    }
    config.roots = built;
    config.substituters.insert(0, format!("file://{}", cache.display()));
    config.trusted_public_keys.push(std::fs::read_to_string(&public).map_err(Error::io("read", &public))?);
    Ok(())
}

/// The closure of `paths` in the local Nix store as a `nix-store --export` stream at `url`
/// (`s3://bucket/key`): through a temporary file, so a large closure goes up as a multipart
/// upload and the object appears whole or not at all.
pub fn export_to_s3(
    paths: &[String],
    url: &str,
    settings: &narwhal_store::Settings,
    http: &narwhal_store::http::HttpOptions,
) -> Result<(), Error> {
    let (bucket, key) = s3_object(url, settings, http)?;
    let local = narwhal_push::LocalStore::open_default()?;
    let roots = paths
        .iter()
        .map(|p| {
            local
                .store_dir()
                .split_path(p.trim_end_matches('/'))
                .map(|(path, _)| path)
                .map_err(|source| Error::StorePath { path: p.clone(), source })
        })
        .collect::<Result<Vec<StorePath>, _>>()?;
    let closure = local.closure(&roots)?;
    // Removed when dropped ([`narwhal_formats::temp`]), whatever happens.
    let dir = std::env::temp_dir();
    let (file, tmp) =
        narwhal_formats::temp::file_in(&dir, "narwhal-export").map_err(Error::io("create", &dir))?.into_parts();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    narwhal_push::export(&local, &closure, &mut out)?;
    std::io::Write::flush(&mut out).map_err(Error::io("write", &tmp))?;
    drop(out);
    bucket.put_file(&key, &tmp, "application/octet-stream")?;
    Ok(())
}
