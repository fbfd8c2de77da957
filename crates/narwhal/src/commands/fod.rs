//! `narwhal fod gradle|maven|check`: a cache laid out for a fixed-output derivation, its hash.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use narwhal_fod::check::{self, Finding, Severity};
use narwhal_formats::hash::Algorithm;
use narwhal_formats::nar;

use super::{check_parent, fetch::human};
use crate::cli::FodCommand;
use crate::errors::VerificationFailed;
use crate::output::{eprintln_line, stdout, write_atomic};

pub fn run(cmd: FodCommand) -> anyhow::Result<()> {
    match cmd {
        FodCommand::Gradle { gradle_user_home, out, init_script } => {
            if let Some(script) = &init_script {
                check_parent(script)?;
            }
            let summary = narwhal_fod::gradle::layout(&gradle_user_home, &out)
                .with_context(|| format!("cannot lay out {} as a repository", gradle_user_home.display()))?;
            report_layout(&summary, &out);
            if let Some(script) = &init_script {
                write_atomic(script, narwhal_fod::GRADLE_INIT_SCRIPT.as_bytes(), 0o644, true)
                    .with_context(|| format!("cannot write the init script {}", script.display()))?;
                eprintln_line(&format!(
                    "wrote {}: build offline with `{}=<the derivation's path> gradle --offline --init-script {}`",
                    script.display(),
                    narwhal_fod::REPO_ENV,
                    script.display()
                ));
            }
            print_hash(&out)
        }
        FodCommand::Maven { m2_repo, out } => {
            let summary = narwhal_fod::maven::layout(&m2_repo, &out)
                .with_context(|| format!("cannot lay out {} as a repository", m2_repo.display()))?;
            report_layout(&summary, &out);
            print_hash(&out)
        }
        FodCommand::Check { dir } => {
            let findings = findings(&dir)?;
            let mut stdout = stdout();
            for f in &findings {
                writeln!(stdout, "{}: {f}", label(f))?;
            }
            stdout.flush()?;
            let failing = findings.iter().filter(|f| f.severity() == Severity::Fails).count();
            if failing > 0 {
                return Err(VerificationFailed(format!(
                    "{failing} of the {} findings in {} would make a fixed-output derivation fail",
                    findings.len(),
                    dir.display()
                ))
                .into());
            }
            Ok(())
        }
    }
}

fn findings(dir: &Path) -> anyhow::Result<Vec<Finding>> {
    if !dir.is_dir() {
        anyhow::bail!("{} is not a directory", dir.display());
    }
    check::check(dir, &check::Options::for_this_machine()).with_context(|| format!("cannot check {}", dir.display()))
}

fn label(f: &Finding) -> &'static str {
    match f.severity() {
        Severity::Fails => "fails",
        Severity::Drifts => "drifts",
    }
}

fn report_layout(summary: &narwhal_fod::Summary, out: &Path) {
    eprintln_line(&format!(
        "laid out {} files ({}) in {}; left out {} volatile files, {} duplicates",
        summary.files,
        human(summary.bytes),
        out.display(),
        summary.left_out,
        summary.duplicates
    ));
}

/// Checks OUT (warnings on stderr), then prints its hash and the derivation's attributes.
fn print_hash(out: &Path) -> anyhow::Result<()> {
    for f in findings(out)? {
        eprintln_line(&format!("warning: {}: {f}", label(&f)));
    }
    let (hash, _) =
        nar::dump_to_hash(out, Algorithm::Sha256).with_context(|| format!("cannot hash {}", out.display()))?;
    let mut stdout = stdout();
    writeln!(stdout, "{}", hash.to_sri())?;
    writeln!(stdout)?;
    write!(stdout, "{}", narwhal_fod::fixed_output_attributes(&hash))?;
    stdout.flush()?;
    Ok(())
}
