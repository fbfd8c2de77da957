//! `narwhal slug`: a closure laid out as a Heroku slug.
//!
//! ```text
//! APP_DIR/store/<hash>-<name>/…   the closure, relocated to PREFIX (/app/store)
//! APP_DIR/result[-N] -> store/…   the roots, as nix-build names them
//! APP_DIR/.profile.d/narwhal.sh   puts result/bin on PATH at run time
//! APP_DIR/.narwhal/bin/run_result.sh   the older buildpack's launcher
//! ```

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use narwhal_slug::{Rules, HEROKU_SLUG_LIMIT};

use super::fetch::{fetch_into, human};
use crate::cli::SlugArgs;
use crate::output::{stdout, write_atomic};

/// The `result` links made, in root order.
pub fn run(args: &SlugArgs) -> anyhow::Result<Vec<PathBuf>> {
    let runtime_root = args.runtime_root.trim_end_matches('/');
    if !narwhal_relocate::is_plain_dir(runtime_root) {
        bail!(
            "--runtime-root {:?} must be an absolute, normalised path of letters, digits and / . _ - + @ , = only (such as /app): the scripts narwhal writes hold it unquoted",
            args.runtime_root
        );
    }
    let prefix = args.prefix.clone().unwrap_or_else(|| format!("{runtime_root}/store"));
    refuse_symlinks(&args.app_dir)?;
    // What can fail without the closure fails before it is downloaded.
    refuse_taken_result_names(&args.app_dir, args.roots.len().max(1))?;
    let rules = read_rules(&args.app_dir)?;
    let _lock = lock_app_dir(&args.app_dir)?;
    let store = args.app_dir.join("store");
    let fetched = fetch_into(&args.roots, &args.source, &store, Some(&prefix), args.pad)?;

    let links =
        result_links(&args.app_dir, &fetched.roots.iter().map(|r| r.base_name().to_owned()).collect::<Vec<_>>())?;
    write_profile(&args.app_dir, runtime_root, &links)?;
    if let Some(rules) = rules {
        prune(&args.app_dir, &rules)?;
    }
    report(&args.app_dir, runtime_root)?;

    let mut out = stdout();
    for l in &links {
        writeln!(out, "{}", l.display())?;
    }
    out.flush()?;
    Ok(links)
}

/// The names narwhal writes in an app directory. Any of them as a symlink
/// would have narwhal write through it, outside the app: refused.
fn refuse_symlinks(app_dir: &Path) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(app_dir).with_context(|| format!("cannot read the app directory {}", app_dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read the app directory {}", app_dir.display()))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let ours = matches!(&*name, "store" | ".profile.d" | ".narwhal") || name.starts_with("result");
        if ours && entry.file_type().is_ok_and(|t| t.is_symlink()) && !is_result_link(&name, &entry.path()) {
            bail!(
                "{} is a symlink; narwhal writes {name} itself and never through a symlink (it could point outside the app): remove it from the app",
                entry.path().display()
            );
        }
    }
    Ok(())
}

/// Whether `name` is a `result` link narwhal made (`result[-N]` -> `store/…`), which it replaces.
fn is_result_link(name: &str, path: &Path) -> bool {
    let numbered = name.strip_prefix("result-").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    (name == "result" || numbered)
        && std::fs::read_link(path).is_ok_and(|t| {
            let mut parts = t.components();
            parts.next() == Some(std::path::Component::Normal("store".as_ref()))
                && matches!(parts.next(), Some(std::path::Component::Normal(_)))
                && parts.next().is_none()
        })
}

/// Locks the app directory for this slug alone (`.narwhal/lock`), removing
/// the temporary names a killed slug left beside the files it writes.
fn lock_app_dir(app_dir: &Path) -> anyhow::Result<narwhal_store::lock::DirLock> {
    let meta = app_dir.join(".narwhal");
    match std::fs::create_dir(&meta) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(e).with_context(|| format!("cannot create {}", meta.display()));
        }
        _ => {}
    }
    let bin = meta.join("bin");
    let waiting = |m: &str| eprintln_line(m);
    let lock = narwhal_store::lock::DirLock::exclusive(
        app_dir,
        ".narwhal/lock",
        &[&meta, &bin],
        super::lock_wait()?,
        "narwhal slug",
        &waiting,
    )?;
    // Beside the app's own files, only the temporary names of the result links and the profile script are narwhal's.
    for (dir, own) in [(app_dir.to_owned(), ".result"), (app_dir.join(".profile.d"), ".narwhal.sh")] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with(own) && narwhal_formats::temp::is_temp(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Ok(lock)
}

/// The name of the `i`th result link (from 0): `result`, `result-2`, …
fn result_name(i: usize) -> String {
    if i == 0 {
        "result".to_owned()
    } else {
        format!("result-{}", i + 1)
    }
}

/// Refuses an app whose first `n` result names are taken by something other than a link.
fn refuse_taken_result_names(app_dir: &Path, n: usize) -> anyhow::Result<()> {
    for i in 0..n {
        let link = app_dir.join(result_name(i));
        if link.symlink_metadata().is_ok_and(|m| !m.file_type().is_symlink()) {
            bail!("{} exists and is not a symlink; narwhal will not replace it (rename it in the app)", link.display());
        }
    }
    Ok(())
}

/// `result`, `result-2`, … as relative links into `store/`, replaced atomically.
fn result_links(app_dir: &Path, bases: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    refuse_taken_result_names(app_dir, bases.len())?;
    let mut links = Vec::new();
    for (i, base) in bases.iter().enumerate() {
        let name = result_name(i);
        let link = app_dir.join(&name);
        let tmp = narwhal_formats::temp::beside(app_dir, &name);
        std::os::unix::fs::symlink(Path::new("store").join(base), &tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        std::fs::rename(&tmp, &link).with_context(|| format!("cannot create {}", link.display()))?;
        links.push(link);
    }
    Ok(links)
}

/// `.profile.d/narwhal.sh` and the `run_result.sh` launcher of the older buildpack.
fn write_profile(app_dir: &Path, runtime_root: &str, links: &[PathBuf]) -> anyhow::Result<()> {
    let profile_d = app_dir.join(".profile.d");
    std::fs::create_dir_all(&profile_d).with_context(|| format!("cannot create {}", profile_d.display()))?;
    let mut path = String::new();
    for l in links {
        let name = l.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let _ = write!(path, "{runtime_root}/{name}/bin:");
    }
    let script = format!(
        "# Written by narwhal: the deployed closure's programs come first on PATH.\nexport PATH=\"{path}{runtime_root}/.narwhal/bin:$PATH\"\n"
    );
    write_atomic(&profile_d.join("narwhal.sh"), script.as_bytes(), 0o644, true)
        .with_context(|| format!("cannot write {}", profile_d.join("narwhal.sh").display()))?;

    let bin = app_dir.join(".narwhal/bin");
    std::fs::create_dir_all(&bin).with_context(|| format!("cannot create {}", bin.display()))?;
    let launcher = format!(
        "#!/bin/sh\n# Written by narwhal, for Procfiles of the older Nix buildpacks:\n#   run_result.sh bin/server         runs {runtime_root}/result/bin/server\n#   run_result.sh NAME bin/server    runs {runtime_root}/result-NAME/bin/server\nif [ $# -ge 2 ] && [ -e \"{runtime_root}/result-$1\" ]; then\n  out=\"{runtime_root}/result-$1\"; shift\nelse\n  out=\"{runtime_root}/result\"\nfi\nprog=\"$1\"; shift\nexec \"$out/$prog\" \"$@\"\n"
    );
    let target = bin.join("run_result.sh");
    write_atomic(&target, launcher.as_bytes(), 0o755, true)
        .with_context(|| format!("cannot write {}", target.display()))?;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The rules of `APP_DIR/.slugexclude`, when there is one.
fn read_rules(app_dir: &Path) -> anyhow::Result<Option<Rules>> {
    let file = app_dir.join(".slugexclude");
    let text = match std::fs::read(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    Ok(Some(Rules::parse(&text).with_context(|| format!("invalid {}", file.display()))?))
}

/// Applies the rules of `APP_DIR/.slugexclude`.
fn prune(app_dir: &Path, rules: &Rules) -> anyhow::Result<()> {
    let report = narwhal_slug::prune(app_dir, rules).context("cannot prune the slug")?;
    eprintln_line(&format!(".slugexclude removed {} entries, {}", report.removed.len(), human(report.bytes_freed)));
    Ok(())
}

/// Warns about what will not resolve at run time, and reports sizes.
fn report(app_dir: &Path, runtime_root: &str) -> anyhow::Result<()> {
    for problem in narwhal_slug::check(app_dir, runtime_root).context("cannot check the slug")? {
        eprintln_line(&format!("warning: {problem}"));
    }
    let sizes = narwhal_slug::size_report(app_dir).context("cannot measure the slug")?;
    for line in size_lines(&sizes, 10) {
        eprintln_line(&line);
    }
    if sizes.total > HEROKU_SLUG_LIMIT {
        eprintln_line(
            "warning: the closure alone is over the limit uncompressed; if the slug is refused, prune it with .slugexclude",
        );
    }
    Ok(())
}

/// The size report as lines: the `top` largest store paths, then the total against Heroku's limit.
fn size_lines(sizes: &narwhal_slug::SizeReport, top: usize) -> Vec<String> {
    let mut lines = vec!["store paths by size (uncompressed):".to_owned()];
    for p in sizes.paths.iter().take(top) {
        lines.push(format!("  {:>10}  {}", human(p.bytes), p.name.to_string_lossy()));
    }
    if sizes.paths.len() > top {
        lines.push(format!("  … and {} more", sizes.paths.len() - top));
    }
    lines.push(format!(
        "total {} uncompressed; Heroku limits the compressed slug to {}",
        human(sizes.total),
        heroku_limit()
    ));
    lines
}

/// Heroku's slug limit as Heroku's documentation writes it.
fn heroku_limit() -> String {
    #[allow(clippy::cast_precision_loss)]
    let gb = HEROKU_SLUG_LIMIT as f64 / 1e9;
    format!("{gb} GB")
}

/// `narwhal size DIR`: the store paths in DIR by size, as a table on stderr or JSON on stdout.
pub fn size(dir: &Path, json: bool) -> anyhow::Result<()> {
    let base = dir.parent().unwrap_or(dir);
    let sizes =
        narwhal_slug::store_size_report(dir, base).with_context(|| format!("cannot measure {}", dir.display()))?;
    if json {
        let paths: Vec<serde_json::Value> = sizes
            .paths
            .iter()
            .map(|p| serde_json::json!({ "name": p.name.to_string_lossy(), "bytes": p.bytes }))
            .collect();
        return Ok(crate::output::print_json(&serde_json::json!({
            "version": 1,
            "dir": dir.display().to_string(),
            "paths": paths,
            "total_bytes": sizes.total,
            "tar_gz_upper_bound_bytes": sizes.tar_gz_upper_bound(),
            "heroku_limit_bytes": HEROKU_SLUG_LIMIT,
        }))?);
    }
    let mut out = stdout();
    for line in size_lines(&sizes, usize::MAX) {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

fn eprintln_line(s: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{s}");
}
