//! `narwhal key generate|public`.

use std::io::Write as _;

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
            for p in [&secret, &public] {
                if p.symlink_metadata().is_ok() {
                    bail!(
                        "{} already exists; narwhal does not overwrite keys (remove it or pick another file)",
                        p.display()
                    );
                }
            }
            let key = SecretKey::generate(&name)?;
            // Nix writes both files without a trailing newline.
            write_atomic(&secret, key.to_string().as_bytes(), 0o600, false)
                .with_context(|| format!("cannot write {}", secret.display()))?;
            write_atomic(&public, key.public_key().to_string().as_bytes(), 0o644, false)
                .with_context(|| format!("cannot write {}", public.display()))?;
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
