//! Turning an error into one line of cause, a hint, and an exit code.
//!
//! Exit codes: 0 success (a closed output pipe counts as success), 1 the
//! command failed on its input or environment, 2 the command line was wrong
//! (clap reports those itself).

use std::io::{self, Write as _};
use std::process::ExitCode;

use narwhal_formats::{hash, nar, narinfo, signature};

/// The text after `error:`: every cause in the chain, joined.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let s = cause.to_string();
        // Some sources repeat their parent's text; print each piece once.
        if !parts.last().is_some_and(|p| p.ends_with(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

/// A hint for the first cause narwhal knows how to help with.
pub fn hint(err: &anyhow::Error) -> Option<&'static str> {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<narwhal_fetch::Error>() {
            if let Some(h) = e.hint() {
                return Some(h);
            }
        }
        if let Some(e) = cause.downcast_ref::<narwhal_push::Error>() {
            if let Some(h) = e.hint() {
                return Some(h);
            }
        }
        if let Some(e) = cause.downcast_ref::<narwhal_store::local::LocalError>() {
            if let Some(h) = e.hint() {
                return Some(h);
            }
        }
        if let Some(e) = cause.downcast_ref::<narwhal_serve::config::ConfigError>() {
            if let Some(h) = e.hint() {
                return Some(h);
            }
        }
        if let Some(e) = cause.downcast_ref::<narwhal_store::StoreError>() {
            if let Some(h) = e.hint() {
                return Some(h);
            }
        }
        if cause.downcast_ref::<narwhal_relocate::Error>().is_some() {
            return Some("the prefix must be an absolute directory no longer than the store directory (/nix/store: 10 bytes), such as /app/store; pass --pad to pad a shorter one with '/'");
        }
        if let Some(e) = cause.downcast_ref::<nar::Error>() {
            return Some(match e.kind {
                nar::ErrorKind::Truncated => "the archive is incomplete; copy or download it again",
                nar::ErrorKind::BadMagic => {
                    "this is not a NAR; make one with `narwhal nar dump PATH` or `nix-store --dump PATH`"
                }
                nar::ErrorKind::Visitor(_) => "check free space and permissions at the destination",
                _ => {
                    "the archive is corrupt or was not written by Nix or narwhal; fetch it again from a trusted source"
                }
            });
        }
        if cause.downcast_ref::<signature::Error>().is_some() {
            return Some(
                "key files hold `name:base64`, as written by `narwhal key generate` or `nix-store --generate-binary-cache-key`",
            );
        }
        if let Some(e) = cause.downcast_ref::<hash::Error>() {
            return match e {
                hash::Error::MissingAlgorithm { .. } => {
                    Some("give the algorithm with --type, or write the hash as `sha256-…` (SRI)")
                }
                _ => None,
            };
        }
        if cause.downcast_ref::<narinfo::Error>().is_some() {
            return Some("the narinfo is corrupt; compare it with what `nix copy --to file://…` writes");
        }
    }
    None
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| c.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe))
}

pub fn report(err: &anyhow::Error) -> ExitCode {
    if is_broken_pipe(err) {
        return ExitCode::SUCCESS;
    }
    let mut stderr = io::stderr().lock();
    let _ = writeln!(stderr, "error: {}", one_line(err));
    if let Some(h) = hint(err) {
        let _ = writeln!(stderr, "hint: {h}");
    }
    ExitCode::from(1)
}
