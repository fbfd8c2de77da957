//! `narwhal verify`: a cache (`--in URL [PATH...]`, optionally repaired `--from` another), or a
//! deployed directory against its manifest.

use std::io::Write as _;
use std::path::Path;

use anyhow::{bail, Context as _};
use narwhal_fetch::verify::TreeProblem;
use narwhal_formats::signature::PublicKey;
use narwhal_gc::verify::{Report, VerifyOptions};
use narwhal_store::CacheUrl;

use super::gc::GcProgress;
use crate::cli::VerifyArgs;
use crate::errors::VerificationFailed;
use crate::output::stdout;

pub fn run(args: &VerifyArgs) -> anyhow::Result<()> {
    match &args.cache {
        Some(cache) => verify_cache(cache, args),
        None => match args.targets.as_slice() {
            [dir] => verify_dir(Path::new(dir), args),
            _ => bail!("give one deployed directory, or --in CACHE (and store paths to check in it)"),
        },
    }
}

fn verify_cache(cache: &str, args: &VerifyArgs) -> anyhow::Result<()> {
    let trusted = args
        .trusted_public_keys
        .iter()
        .filter(|k| !k.is_empty())
        .map(|k| PublicKey::parse(k).with_context(|| format!("invalid trusted public key {k:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let dest = narwhal_store::open_writer(&CacheUrl::parse(cache)?, &crate::settings::store()?)?;
    let from = match &args.from {
        Some(f) => Some(narwhal_store::open_cache(
            &CacheUrl::parse(f)?,
            &crate::settings::http()?,
            &crate::settings::store()?,
        )?),
        None => None,
    };
    let progress = GcProgress::new(args.no_progress || args.json);
    let temp_dir = narwhal_formats::temp::dir_in(&std::env::temp_dir(), "narwhal-verify")?;
    let opts = VerifyOptions {
        trusted,
        contents: args.contents,
        jobs: super::jobs_or_cores(args.jobs).max(4),
        repair_from: from.as_deref(),
        temp_dir: temp_dir.path().to_owned(),
        reporter: &progress,
    };
    let report = narwhal_gc::verify::verify(dest.as_ref(), &args.targets, &opts);
    progress.finish();
    let report = report?;
    print_report(&report, args.json)?;
    if report.failed() {
        let wrong = report.findings.iter().filter(|f| !f.repaired).count();
        return Err(VerificationFailed(format!(
            "{wrong} problem(s) in {} ({} paths checked)",
            report.cache, report.checked
        ))
        .into());
    }
    Ok(())
}

fn print_report(report: &Report, json: bool) -> anyhow::Result<()> {
    let mut out = stdout();
    if json {
        crate::output::print_json(report)?;
    } else {
        let mut last = None;
        for f in &report.findings {
            if last != Some(f.problem) {
                let n = report.findings.iter().filter(|g| g.problem == f.problem).count();
                writeln!(out, "{} ({n}):", f.problem.describe())?;
                last = Some(f.problem);
            }
            let repaired = if f.repaired { " (repaired)" } else { "" };
            writeln!(out, "  {} {}{repaired}", f.path, f.detail)?;
        }
    }
    out.flush()?;
    let ok = report.findings.is_empty();
    let signatures = if report.signatures_checked { "" } else { " (signatures not checked: no --trusted-public-key)" };
    let mut err = std::io::stderr().lock();
    if ok {
        writeln!(err, "{}: {} paths verified{signatures}", report.cache, report.checked)?;
    }
    Ok(())
}

fn verify_dir(dir: &Path, args: &VerifyArgs) -> anyhow::Result<()> {
    let root = narwhal_fetch::verify::tree_root(dir).ok_or_else(|| narwhal_fetch::Error::NoManifest(dir.to_owned()))?;
    let (checked, problems) = narwhal_fetch::verify::verify_tree(&root, super::jobs_or_cores(args.jobs))?;
    let mut out = stdout();
    if args.json {
        let list: Vec<serde_json::Value> = problems
            .iter()
            .map(|(name, p)| {
                let (problem, detail) = describe(p);
                serde_json::json!({ "path": name, "problem": problem, "detail": detail })
            })
            .collect();
        crate::output::print_json(&serde_json::json!({ "dir": root, "checked": checked, "problems": list }))?;
    } else {
        for (name, p) in &problems {
            let (problem, detail) = describe(p);
            writeln!(out, "{problem}: {} {detail}", root.join(name).display())?;
        }
    }
    out.flush()?;
    if !problems.is_empty() {
        return Err(VerificationFailed(format!(
            "{} of {checked} paths in {} do not match the manifest",
            problems.len(),
            root.display()
        ))
        .into());
    }
    let _ = writeln!(std::io::stderr().lock(), "{}: {checked} paths match the manifest", root.display());
    Ok(())
}

fn describe(p: &TreeProblem) -> (&'static str, String) {
    match p {
        TreeProblem::Missing => ("missing", String::new()),
        TreeProblem::Changed { expected, actual } => {
            ("changed", format!("(NAR hash {actual}, the manifest says {expected})"))
        }
        TreeProblem::Unreadable(why) => ("unreadable", why.clone()),
        TreeProblem::Unlisted => ("not in the manifest", String::new()),
    }
}
