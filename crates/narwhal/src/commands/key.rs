//! `narwhal key generate|public`.

use std::io::Write as _;
use std::path::Path;

use anyhow::{bail, Context as _};
use narwhal_formats::signature::SecretKey;

use super::read_text;
use crate::cli::KeyCommand;
use crate::output::{stdout, write_atomic};

pub fn run(cmd: KeyCommand) -> anyhow::Result<()> {
    match cmd {
        KeyCommand::Generate { name, secret, public } => {
            if name.is_empty() || name.contains(':') {
                bail!("key name {name:?} must be non-empty and contain no ':'");
            }
            if same_file(&secret, &public) {
                bail!(
                    "--secret and --public both name {}; give the two halves of the key two files (such as cache.sec and cache.pub)",
                    secret.display()
                );
            }
            for p in [&secret, &public] {
                if p.symlink_metadata().is_ok() {
                    bail!(
                        "{} already exists; narwhal does not overwrite keys (remove it or pick another file)",
                        p.display()
                    );
                }
                super::check_parent(p)?;
            }
            let key = SecretKey::generate(&name)?;
            // Nix writes both files without a trailing newline.
            write_atomic(&secret, key.to_string().as_bytes(), 0o600, false)
                .with_context(|| format!("cannot write {}", secret.display()))?;
            if let Err(e) = write_atomic(&public, key.public_key().to_string().as_bytes(), 0o644, false) {
                // Both halves or neither.
                let _ = std::fs::remove_file(&secret);
                return Err(e).with_context(|| format!("cannot write {}", public.display()));
            }
        }
        KeyCommand::Public { secret } => {
            let key = SecretKey::parse(&read_text(&secret)?)
                .with_context(|| format!("invalid key file {}", secret.display()))?;
            let mut out = stdout();
            writeln!(out, "{}", key.public_key())?;
            out.flush()?;
        }
    }
    Ok(())
}

/// Whether `a` and `b` name the same file (after `.`, `..` and symlinked directories).
fn same_file(a: &Path, b: &Path) -> bool {
    let resolved = |p: &Path| {
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let dir = std::fs::canonicalize(dir).or_else(|_| std::path::absolute(dir)).ok()?;
        Some(dir.join(p.file_name()?))
    };
    a == b || resolved(a).is_some_and(|x| Some(x) == resolved(b))
}
