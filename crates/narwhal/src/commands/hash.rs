//! `narwhal hash path|file|convert`.

use std::fs::File;
use std::io::{self, Write as _};

use anyhow::Context as _;
use narwhal_formats::hash::{Algorithm, Encoding, Hash, Hasher};
use narwhal_formats::nar;

use crate::cli::{self, HashAlgo, HashCommand, HashFormat};
use crate::output::stdout;

pub fn algorithm(a: HashAlgo) -> Algorithm {
    match a {
        HashAlgo::Md5 => Algorithm::Md5,
        HashAlgo::Sha1 => Algorithm::Sha1,
        HashAlgo::Sha256 => Algorithm::Sha256,
        HashAlgo::Sha512 => Algorithm::Sha512,
    }
}

/// What `nix hash` prints for each flag: a bare digest, or SRI by default.
fn render(h: &Hash, f: &HashFormat) -> String {
    if f.base32 {
        h.encode(Encoding::Nix32)
    } else if f.base16 {
        h.encode(Encoding::Base16)
    } else if f.base64 {
        h.encode(Encoding::Base64)
    } else {
        h.to_sri()
    }
}

pub fn run(cmd: HashCommand) -> anyhow::Result<()> {
    let mut out = stdout();
    match cmd {
        HashCommand::Path { paths, format } => {
            for path in paths {
                let (h, _) = nar::dump_to_hash(&path, algorithm(format.algo))?;
                writeln!(out, "{}", render(&h, &format))?;
            }
        }
        HashCommand::File { files, format } => {
            for path in files {
                let mut hasher = Hasher::new(algorithm(format.algo));
                let mut f = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
                io::copy(&mut f, &mut hasher).with_context(|| format!("cannot read {}", path.display()))?;
                writeln!(out, "{}", render(&hasher.finish(), &format))?;
            }
        }
        HashCommand::Convert { hashes, to, algo } => {
            for s in hashes {
                let h = Hash::parse(&s, algo.map(algorithm)).with_context(|| format!("cannot convert {s:?}"))?;
                let line = match to {
                    cli::Encoding::Sri => h.to_sri(),
                    cli::Encoding::Nix32 => h.encode(Encoding::Nix32),
                    cli::Encoding::Base16 => h.encode(Encoding::Base16),
                    cli::Encoding::Base64 => h.encode(Encoding::Base64),
                };
                writeln!(out, "{line}")?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
