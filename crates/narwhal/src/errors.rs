//! Turning an error into one line of cause, a hint, and an exit code; and a
//! panic (a bug) into one line and its own exit code.
//!
//! Exit codes: 0 success (a closed output pipe counts as success), 1 the
//! command failed on its input or environment, 2 the command line was wrong
//! (clap reports those itself), 3 verification failed (a signature or a hash
//! did not match), 70 an internal error (`EX_SOFTWARE` of sysexits.h).

use std::io::{self, Write as _};
use std::process::ExitCode;

use narwhal_formats::{hash, nar, narinfo, signature};

/// The text after `error:`: every cause in the chain, joined.
pub fn one_line(err: &anyhow::Error) -> String {
    join_causes(err.chain())
}

/// [`one_line`] of an error that is not (yet) an `anyhow::Error`, as retry lines show it.
pub fn chain_line(err: &(dyn std::error::Error + 'static)) -> String {
    join_causes(std::iter::successors(Some(err), |e| e.source()))
}

fn join_causes<'a>(chain: impl Iterator<Item = &'a (dyn std::error::Error + 'static)>) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in chain {
        let s = cause.to_string();
        // Some sources repeat their parent's text; print each piece once.
        if !parts.last().is_some_and(|p| p.ends_with(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

/// `hint` of `cause` when it is an `E`.
fn hint_of<E: std::error::Error + 'static>(
    cause: &(dyn std::error::Error + 'static),
    hint: fn(&E) -> Option<&'static str>,
) -> Option<&'static str> {
    cause.downcast_ref::<E>().and_then(hint)
}

/// A hint for the first cause narwhal knows how to help with.
pub fn hint(err: &anyhow::Error) -> Option<&'static str> {
    // A full disk, wherever in the chain: no library's hint about its input applies then.
    let full = |e: &std::io::Error| {
        e.kind() == std::io::ErrorKind::StorageFull || e.kind() == std::io::ErrorKind::QuotaExceeded
    };
    if err.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(full)) {
        return Some("the disk is full: free space where narwhal writes (the destination, and $TMPDIR for temporary files), then run it again");
    }
    for cause in err.chain() {
        // The libraries' own hints, one per error variant.
        let own = hint_of(cause, narwhal_fetch::Error::hint)
            .or_else(|| hint_of(cause, narwhal_push::Error::hint))
            .or_else(|| hint_of(cause, narwhal_localstore::LocalError::hint))
            .or_else(|| hint_of(cause, narwhal_serve::config::ConfigError::hint))
            .or_else(|| hint_of(cause, narwhal_image::registry::RegistryError::hint))
            .or_else(|| hint_of(cause, narwhal_image::Error::hint))
            .or_else(|| hint_of(cause, narwhal_gc::Error::hint))
            .or_else(|| hint_of(cause, narwhal_store::pin::PinsError::hint))
            .or_else(|| hint_of(cause, narwhal_store::StoreError::hint))
            .or_else(|| hint_of(cause, narwhal_fod::Error::hint));
        if own.is_some() {
            return own;
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

/// The command failed on its input or environment.
pub const EXIT_FAILED: u8 = 1;
/// A signature or a hash did not match.
pub const EXIT_VERIFICATION: u8 = 3;
/// A bug: a panic.
pub const EXIT_INTERNAL: u8 = 70;

/// A check that found content it cannot trust, for commands whose whole job is checking
/// (`narinfo verify`): exits with [`EXIT_VERIFICATION`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct VerificationFailed(pub String);

/// Whether `err` says that something did not verify (as opposed to not being reachable or readable).
fn is_verification(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        if let Some(e) = cause.downcast_ref::<narwhal_fetch::Error>() {
            return match e {
                narwhal_fetch::Error::HashMismatch { .. } => true,
                narwhal_fetch::Error::NotFound { tried, .. } => tried.iter().any(|f| f.why.is_signature()),
                // A NAR whose narinfo committed to its hashes but that does not even decompress or
                // parse cannot match them: its bytes are not the ones signed.
                narwhal_fetch::Error::Download { source, .. } => source.kind() == io::ErrorKind::InvalidData,
                narwhal_fetch::Error::Unpack { source: nar::UnpackError::Nar(e), .. } => {
                    !matches!(e.kind, nar::ErrorKind::Visitor(_) | nar::ErrorKind::Io(_))
                }
                _ => false,
            };
        }
        if let Some(e) = cause.downcast_ref::<narwhal_push::Error>() {
            return matches!(e, narwhal_push::Error::SourceHash { .. } | narwhal_push::Error::Modified { .. });
        }
        if let Some(narwhal_image::Error::Nar { source, .. }) = cause.downcast_ref::<narwhal_image::Error>() {
            // A NAR that does not parse or does not hash as its narinfo (or the database) says.
            return !matches!(source.kind, nar::ErrorKind::Visitor(_));
        }
        cause.is::<VerificationFailed>()
    })
}

/// An error a front end already printed in its own style (the buildpack's ` !     ` lines); `report`
/// prints nothing more and exits with the code the error would have had.
#[derive(Debug, thiserror::Error)]
#[error("reported")]
pub struct Reported(u8);

impl Reported {
    pub fn wrap(err: &anyhow::Error) -> anyhow::Error {
        let code = if is_verification(err) { EXIT_VERIFICATION } else { EXIT_FAILED };
        anyhow::Error::new(Self(code))
    }
}

pub fn report(err: &anyhow::Error) -> ExitCode {
    if is_broken_pipe(err) {
        return ExitCode::SUCCESS;
    }
    if let Some(Reported(code)) = err.downcast_ref::<Reported>() {
        return ExitCode::from(*code);
    }
    let mut stderr = io::stderr().lock();
    let _ = writeln!(stderr, "error: {}", one_line(err));
    if let Some(h) = hint(err) {
        let _ = writeln!(stderr, "hint: {h}");
    }
    ExitCode::from(if is_verification(err) { EXIT_VERIFICATION } else { EXIT_FAILED })
}

/// Makes a panic print one line instead of a backtrace (unless `RUST_BACKTRACE` asks for one).
/// `main` catches the unwind and exits with [`EXIT_INTERNAL`]; the server answers 500 and goes on.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
            default(info);
        }
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("a panic");
        // std re-raises a scoped thread's panic in the thread that waits for it: the first line said it.
        if message == "a scoped thread panicked" {
            return;
        }
        let location = info.location().map_or_else(String::new, |l| format!(" at {}:{}", l.file(), l.line()));
        let _ = writeln!(
            io::stderr().lock(),
            "internal error: {message}{location}; please report it with the command that caused it \
             (RUST_BACKTRACE=1 shows where it happened)"
        );
    }));
}
