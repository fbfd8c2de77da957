//! The steps on the app directory after (and around) the fetch: result
//! links, launch scripts, pruning, checks and sizes. A slug keeps the store
//! at `<app>/store` ([`Layout::Slug`], `/app/store` at run time); a CNB beside
//! the app's files ([`Layout::Flat`], `/workspace/<hash>-<name>`).
//!
//! ```text
//! APP_DIR/store/<hash>-<name>/…   the closure, relocated to PREFIX (/app/store)
//! APP_DIR/result[-N] -> store/…   the roots, as nix-build names them
//! APP_DIR/.profile.d/narwhal.sh   puts result/bin on PATH at run time
//! APP_DIR/.narwhal/bin/run_result.sh   the older buildpack's launcher
//! ```

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use narwhal_formats::store_path::StorePath;
use narwhal_slug::{Layout, Rules, SizeReport, HEROKU_SLUG_LIMIT};
use narwhal_store::lock::DirLock;

use crate::errors::Error;
use crate::log::{human, Log};
use crate::write_atomic;

/// Checks a runtime root (`/app`, `/workspace`): it ends up unquoted in scripts.
pub fn runtime_root(root: &str) -> Result<&str, Error> {
    let trimmed = root.trim_end_matches('/');
    if narwhal_relocate::is_plain_dir(trimmed) {
        Ok(trimmed)
    } else {
        Err(Error::RuntimeRoot(root.to_owned()))
    }
}

/// The names narwhal writes in an app directory. Any of them as a symlink
/// would have narwhal write through it, outside the app: refused.
pub fn refuse_symlinks(app_dir: &Path, layout: Layout) -> Result<(), Error> {
    let entries = std::fs::read_dir(app_dir).map_err(Error::io("read the app directory", app_dir))?;
    for entry in entries {
        let entry = entry.map_err(Error::io("read the app directory", app_dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let ours = matches!(&*name, "store" | ".profile.d" | ".narwhal") || name.starts_with("result");
        if ours && entry.file_type().is_ok_and(|t| t.is_symlink()) && !is_result_link(&name, &entry.path(), layout) {
            return Err(Error::Symlink { path: entry.path(), name: name.into_owned() });
        }
    }
    Ok(())
}

/// Whether `name` is a `result` link narwhal made (`result[-N]` -> `store/…`, or -> `<hash>-<name>` in
/// a flat store), which it replaces.
fn is_result_link(name: &str, path: &Path, layout: Layout) -> bool {
    let numbered = name.strip_prefix("result-").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    (name == "result" || numbered)
        && std::fs::read_link(path).is_ok_and(|t| {
            let mut parts = t.components();
            if layout == Layout::Slug && parts.next() != Some(Component::Normal("store".as_ref())) {
                return false;
            }
            let base = parts.next();
            let flat_ok = layout == Layout::Slug
                || matches!(base, Some(Component::Normal(n)) if narwhal_slug::is_store_path_name(n.as_encoded_bytes()));
            matches!(base, Some(Component::Normal(_))) && flat_ok && parts.next().is_none()
        })
}

/// Locks the app directory for this deploy alone (`.narwhal/lock`), removing
/// the temporary names a killed deploy left beside the files it writes.
pub fn lock_app_dir(app_dir: &Path, wait: Duration, log: &dyn Log) -> Result<DirLock, Error> {
    let meta = app_dir.join(".narwhal");
    match std::fs::create_dir(&meta) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(Error::io("create", &meta)(e)),
        _ => {}
    }
    let bin = meta.join("bin");
    let waiting = |m: &str| log.detail(m);
    let lock = DirLock::exclusive(app_dir, ".narwhal/lock", &[&meta, &bin], wait, "narwhal slug", &waiting)?;
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

/// Refuses an app whose first `n` result names are taken by something other than a link, so it
/// fails before the closure is downloaded.
pub fn refuse_taken_result_names(app_dir: &Path, n: usize) -> Result<(), Error> {
    for i in 0..n {
        let link = app_dir.join(result_name(i));
        if link.symlink_metadata().is_ok_and(|m| !m.file_type().is_symlink()) {
            return Err(Error::NotALink(link));
        }
    }
    Ok(())
}

/// `result`, `result-2`, … as relative links to the roots, replaced atomically.
pub fn result_links(app_dir: &Path, layout: Layout, roots: &[StorePath]) -> Result<Vec<PathBuf>, Error> {
    refuse_taken_result_names(app_dir, roots.len())?;
    let mut links = Vec::new();
    for (i, root) in roots.iter().enumerate() {
        let name = result_name(i);
        let link = app_dir.join(&name);
        let target = match layout {
            Layout::Slug => Path::new("store").join(root.base_name()),
            Layout::Flat => PathBuf::from(root.base_name()),
        };
        // Under a temporary name (narwhal_formats::temp, removed on drop), then renamed over the old link.
        let tmp = narwhal_formats::temp::make_in(app_dir, &name, |tmp| std::os::unix::fs::symlink(&target, tmp))
            .map_err(Error::io("create a link in", app_dir))?;
        tmp.into_temp_path().persist(&link).map_err(|e| Error::io("create", &link)(e.error))?;
        links.push(link);
    }
    Ok(links)
}

/// `<runtime_root>/result/bin:<runtime_root>/result-2/bin:…`, the roots' programs for PATH.
pub fn result_bin_path(runtime_root: &str, links: &[PathBuf]) -> String {
    let mut path = String::new();
    for l in links {
        let name = l.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !path.is_empty() {
            path.push(':');
        }
        let _ = write!(path, "{runtime_root}/{name}/bin");
    }
    path
}

/// `.profile.d/narwhal.sh` and the `run_result.sh` launcher of the older buildpack.
pub fn write_profile(app_dir: &Path, runtime_root: &str, links: &[PathBuf]) -> Result<(), Error> {
    let profile_d = app_dir.join(".profile.d");
    std::fs::create_dir_all(&profile_d).map_err(Error::io("create", &profile_d))?;
    let mut path = result_bin_path(runtime_root, links);
    if !path.is_empty() {
        path.push(':');
    }
    let script = format!(
        "# Written by narwhal: the deployed closure's programs come first on PATH.\nexport PATH=\"{path}{runtime_root}/.narwhal/bin:$PATH\"\n"
    );
    let file = profile_d.join("narwhal.sh");
    write_atomic(&file, script.as_bytes(), 0o644)?;
    write_launcher(app_dir, runtime_root)
}

/// `.narwhal/bin/run_result.sh`, for Procfiles of the older Nix buildpacks.
pub fn write_launcher(app_dir: &Path, runtime_root: &str) -> Result<(), Error> {
    let bin = app_dir.join(".narwhal/bin");
    std::fs::create_dir_all(&bin).map_err(Error::io("create", &bin))?;
    let launcher = format!(
        "#!/bin/sh\n# Written by narwhal, for Procfiles of the older Nix buildpacks:\n#   run_result.sh bin/server         runs {runtime_root}/result/bin/server\n#   run_result.sh NAME bin/server    runs {runtime_root}/result-NAME/bin/server\nif [ $# -ge 2 ] && [ -e \"{runtime_root}/result-$1\" ]; then\n  out=\"{runtime_root}/result-$1\"; shift\nelse\n  out=\"{runtime_root}/result\"\nfi\nprog=\"$1\"; shift\nexec \"$out/$prog\" \"$@\"\n"
    );
    let target = bin.join("run_result.sh");
    write_atomic(&target, launcher.as_bytes(), 0o755)?;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).map_err(Error::io("chmod", &target))
}

/// `APP_DIR/.slugexclude`, parsed, when there is one (checked before anything is downloaded).
pub fn slugexclude(app_dir: &Path) -> Result<Option<Rules>, Error> {
    let file = app_dir.join(".slugexclude");
    let text = match std::fs::read(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", &file)(e)),
    };
    Rules::parse(&text).map(Some).map_err(|source| Error::Slugexclude { file, source })
}

/// Applies `.slugexclude`, when there is one.
pub fn prune(app_dir: &Path, layout: Layout, log: &dyn Log) -> Result<(), Error> {
    let Some(rules) = slugexclude(app_dir)? else { return Ok(()) };
    let report = narwhal_slug::prune_layout(app_dir, layout, &rules).map_err(Error::Prune)?;
    log.detail(&format!(".slugexclude removed {} entries, {}", report.removed.len(), human(report.bytes_freed)));
    Ok(())
}

/// Warns about what will not resolve at run time, and reports sizes.
pub fn report(app_dir: &Path, runtime_root: &str, layout: Layout, log: &dyn Log) -> Result<SizeReport, Error> {
    // Two walks of the same tree, side by side.
    let (sizes, problems) = narwhal_store::parallel::join(
        || narwhal_slug::size_report_layout(app_dir, layout),
        || narwhal_slug::check_layout(app_dir, runtime_root, layout),
    );
    for problem in problems.map_err(Error::Check)? {
        log.warning(&problem.to_string());
    }
    let sizes = sizes.map_err(Error::Size)?;
    for line in size_lines(&sizes, 10, layout == Layout::Slug) {
        log.detail(&line);
    }
    if layout == Layout::Slug && sizes.total > HEROKU_SLUG_LIMIT {
        log.warning(
            "the closure alone is over the limit uncompressed; if the slug is refused, prune it with .slugexclude",
        );
    }
    Ok(sizes)
}

/// The size report as lines: the `top` largest store paths, then the total (against Heroku's
/// limit for a slug).
pub fn size_lines(sizes: &SizeReport, top: usize, slug: bool) -> Vec<String> {
    let mut lines = vec!["store paths by size (uncompressed):".to_owned()];
    for p in sizes.paths.iter().take(top) {
        lines.push(format!("  {:>10}  {}", human(p.bytes), p.name.to_string_lossy()));
    }
    if sizes.paths.len() > top {
        lines.push(format!("  … and {} more", sizes.paths.len() - top));
    }
    lines.push(if slug {
        format!(
            "total {} uncompressed; Heroku limits the compressed slug to {}",
            human(sizes.total),
            human(HEROKU_SLUG_LIMIT)
        )
    } else {
        format!("total {} uncompressed", human(sizes.total))
    });
    lines
}
