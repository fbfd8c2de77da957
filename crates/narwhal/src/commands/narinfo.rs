//! `narwhal narinfo sign|verify`.

use std::io::Write as _;

use anyhow::Context as _;
use narwhal_formats::narinfo::NarInfo;
use narwhal_formats::signature::{PublicKey, SecretKey};
use narwhal_formats::store_path::StoreDir;

use super::read_text;
use crate::cli::NarinfoCommand;
use crate::output::{stdout, write_atomic};

pub fn run(cmd: NarinfoCommand) -> anyhow::Result<()> {
    match cmd {
        NarinfoCommand::Sign { key_file, store_dir, files } => {
            let store_dir = StoreDir::new(store_dir)?;
            let key = SecretKey::parse(&read_text(&key_file)?)
                .with_context(|| format!("invalid secret key file {}", key_file.display()))?;
            // Parse everything first: a bad file leaves every file unchanged.
            let mut infos = Vec::new();
            for f in &files {
                let info = NarInfo::parse(&read_text(f)?, &store_dir)
                    .with_context(|| format!("invalid narinfo {}", f.display()))?;
                infos.push(info);
            }
            for (f, mut info) in files.iter().zip(infos) {
                info.sign(&key).with_context(|| format!("cannot sign {}", f.display()))?;
                write_atomic(f, info.to_string().as_bytes(), 0o644, true)
                    .with_context(|| format!("cannot write {}", f.display()))?;
            }
        }
        NarinfoCommand::Verify { keys, store_dir, files } => {
            let store_dir = StoreDir::new(store_dir)?;
            let keys = keys
                .iter()
                .map(|k| PublicKey::parse(k).with_context(|| format!("invalid --trusted-public-key {k:?}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut out = stdout();
            let mut bad = 0;
            for f in &files {
                let info = NarInfo::parse(&read_text(f)?, &store_dir)
                    .with_context(|| format!("invalid narinfo {}", f.display()))?;
                let signers = info.valid_signers(&keys);
                if signers.is_empty() {
                    bad += 1;
                    writeln!(out, "{}\tno valid signature by a trusted key", f.display())?;
                } else {
                    writeln!(out, "{}\tsigned by {}", f.display(), signers.join(","))?;
                }
            }
            out.flush()?;
            if bad > 0 {
                return Err(crate::errors::VerificationFailed(format!(
                    "{bad} of {} narinfo files lack a valid signature by a trusted key",
                    files.len()
                ))
                .into());
            }
        }
    }
    Ok(())
}
