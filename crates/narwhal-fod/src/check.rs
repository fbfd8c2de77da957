//! What in a tree would make a fixed-output derivation fail, or its hash drift between captures.
//!
//! Fails (Nix refuses the output): a reference to a store path (in a file's bytes or a symlink's
//! target: a fixed-output derivation may not depend on anything), and special files (FIFOs,
//! sockets, devices: a NAR cannot hold them).
//!
//! Drifts (the next capture hashes differently): files whose name says they record the capture
//! (`_remote.repositories`, `*.lastUpdated`, locks, Gradle's `*.bin` indexes), contents that embed
//! the capture time (the date line `java.util.Properties` writes) or the machine (its host name),
//! symlinks to absolute paths outside the tree, and permissions the store does not keep (it keeps
//! only whether the owner may execute a file, so setuid/setgid/sticky bits and execute bits for
//! group or others alone are lost).

use std::fmt;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use narwhal_formats::nixbase32;
use narwhal_formats::tree::Walk;

use crate::layout::kind_of;
use crate::Error;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Nix would refuse the output.
    Fails,
    /// The output would hash differently next time.
    Drifts,
}

/// One thing found, with the file (relative to the tree checked).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Finding {
    StoreReference { path: PathBuf, reference: String },
    SpecialFile { path: PathBuf, kind: &'static str },
    VolatileName { path: PathBuf, pattern: &'static str, why: &'static str },
    Timestamp { path: PathBuf, pattern: &'static str, line: String },
    Machine { path: PathBuf, pattern: String },
    AbsoluteSymlink { path: PathBuf, target: PathBuf },
    Permissions { path: PathBuf, mode: u32, why: &'static str },
}

impl Finding {
    pub fn severity(&self) -> Severity {
        match self {
            Finding::StoreReference { .. } | Finding::SpecialFile { .. } => Severity::Fails,
            _ => Severity::Drifts,
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            Finding::StoreReference { path, .. }
            | Finding::SpecialFile { path, .. }
            | Finding::VolatileName { path, .. }
            | Finding::Timestamp { path, .. }
            | Finding::Machine { path, .. }
            | Finding::AbsoluteSymlink { path, .. }
            | Finding::Permissions { path, .. } => path,
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path().display();
        match self {
            Finding::StoreReference { reference, .. } => {
                write!(f, "{p}: references {reference}, which a fixed-output derivation may not")
            }
            Finding::SpecialFile { kind, .. } => write!(f, "{p}: is a {kind}, which a store path cannot hold"),
            Finding::VolatileName { pattern, why, .. } => write!(f, "{p}: matches {pattern}: {why}"),
            Finding::Timestamp { pattern, line, .. } => {
                write!(f, "{p}: embeds the capture time ({pattern}: {line:?})")
            }
            Finding::Machine { pattern, .. } => write!(f, "{p}: embeds this machine's host name {pattern:?}"),
            Finding::AbsoluteSymlink { target, .. } => {
                write!(f, "{p}: is a symlink to {}, outside the tree", target.display())
            }
            Finding::Permissions { mode, why, .. } => write!(f, "{p}: mode {mode:04o}: {why}"),
        }
    }
}

/// What a check looks for that depends on the machine.
#[derive(Debug, Clone)]
pub struct Options {
    /// The store directory whose paths are references (`/nix/store`).
    pub store_dir: String,
    /// This machine's host name; names shorter than 4 bytes are not looked for (they match by chance).
    pub hostname: Option<String>,
}

impl Options {
    /// `/nix/store` and the host name the kernel reports.
    pub fn for_this_machine() -> Self {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|s| s.trim().to_owned());
        Options { store_dir: "/nix/store".into(), hostname }
    }
}

/// Names that record a capture, with what they are.
const VOLATILE_NAMES: &[(&str, &str)] = &[
    ("_remote.repositories", "Maven's record of which repository each file came from (and when)"),
    ("resolver-status.properties", "Maven's times of its last update checks"),
    ("*.lastUpdated", "Maven's time of its last download attempt"),
    ("*.lock", "a lock file"),
    ("*.bin", "one of Gradle's binary indexes"),
    ("gc.properties", "Gradle's time of its last cache cleanup"),
];

/// Files read as text for timestamps and host names: larger ones are archives, not records.
const TEXT_LIMIT: u64 = 1 << 20;

/// Checks the tree at `dir`.
pub fn check(dir: &Path, options: &Options) -> Result<Vec<Finding>, Error> {
    let mut found = Vec::new();
    let store_prefix = format!("{}/", options.store_dir.trim_end_matches('/'));
    let hostname = options.hostname.as_deref().filter(|h| h.len() >= 4);
    for entry in Walk::new(dir) {
        let entry = entry?;
        let rel = entry.path.strip_prefix(dir).unwrap_or(&entry.path).to_path_buf();
        let meta = &entry.meta;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o7000 != 0 && !meta.is_symlink() {
            found.push(Finding::Permissions {
                path: rel.clone(),
                mode,
                why: "the store drops setuid, setgid and sticky bits",
            });
        }
        if meta.is_symlink() {
            let target =
                std::fs::read_link(&entry.path).map_err(|source| Error::Read { path: entry.path.clone(), source })?;
            let bytes = target.as_os_str().as_encoded_bytes();
            if let Some(reference) = store_references(bytes, store_prefix.as_bytes()).into_iter().next() {
                found.push(Finding::StoreReference { path: rel, reference });
            } else if target.is_absolute() {
                found.push(Finding::AbsoluteSymlink { path: rel, target });
            }
        } else if meta.is_file() {
            if mode & 0o011 != 0 && mode & 0o100 == 0 {
                found.push(Finding::Permissions {
                    path: rel.clone(),
                    mode,
                    why: "executable for group or others only: the store keeps the owner's bit, so it becomes not executable",
                });
            }
            if let Some(name) = rel.file_name().and_then(|n| n.to_str()) {
                if let Some((pattern, why)) = VOLATILE_NAMES.iter().find(|(p, _)| matches_name(p, name)) {
                    found.push(Finding::VolatileName { path: rel.clone(), pattern, why });
                }
            }
            check_contents(&entry.path, &rel, meta.len(), store_prefix.as_bytes(), hostname, &mut found)?;
        } else if !meta.is_dir() {
            found.push(Finding::SpecialFile { path: rel, kind: kind_of(meta) });
        }
    }
    Ok(found)
}

fn matches_name(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => name.ends_with(suffix) && name.len() > suffix.len(),
        None => name == pattern,
    }
}

/// Scans a file's bytes for store paths and, in small text files, for timestamps and the host name.
fn check_contents(
    path: &Path,
    rel: &Path,
    len: u64,
    store_prefix: &[u8],
    hostname: Option<&str>,
    found: &mut Vec<Finding>,
) -> Result<(), Error> {
    let read_err = |source| Error::Read { path: path.to_path_buf(), source };
    let mut f = crate::layout::open_regular(path)?;
    // Chunks overlap by the length of a reference, so none is missed at a chunk's edge.
    let overlap = store_prefix.len() + nixbase32::encoded_len(20) + 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut kept = 0;
    let mut reference = None;
    let mut text: Option<Vec<u8>> = (len <= TEXT_LIMIT).then(Vec::new);
    loop {
        let n = f.read(buf.get_mut(kept..).unwrap_or_default()).map_err(read_err)?;
        if n == 0 {
            break;
        }
        let window = buf.get(..kept + n).unwrap_or_default();
        if let Some(t) = &mut text {
            t.extend_from_slice(buf.get(kept..kept + n).unwrap_or_default());
        }
        if reference.is_none() {
            reference = store_references(window, store_prefix).into_iter().next();
        }
        let keep_from = window.len().saturating_sub(overlap);
        buf.copy_within(keep_from..kept + n, 0);
        kept = kept + n - keep_from;
    }
    if let Some(reference) = reference {
        found.push(Finding::StoreReference { path: rel.to_path_buf(), reference });
    }
    let Some(text) = text.filter(|t| !t.contains(&0)) else { return Ok(()) };
    for line in text.split(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(line.trim_ascii());
        if is_properties_date(&line) {
            found.push(Finding::Timestamp {
                path: rel.to_path_buf(),
                pattern: "the date comment java.util.Properties writes",
                line: line.into_owned(),
            });
            break;
        }
    }
    if let Some(host) = hostname {
        if memchr::memmem::find(&text, host.as_bytes()).is_some() {
            found.push(Finding::Machine { path: rel.to_path_buf(), pattern: host.to_owned() });
        }
    }
    Ok(())
}

/// Every `<store>/<32 nix32 characters>-<name>` in `bytes`, as `<store>/<hash>-<name start>`.
fn store_references(bytes: &[u8], store_prefix: &[u8]) -> Vec<String> {
    let hash_len = nixbase32::encoded_len(20);
    memchr::memmem::find_iter(bytes, store_prefix)
        .filter_map(|at| {
            let rest = bytes.get(at + store_prefix.len()..)?;
            let hash = rest.get(..hash_len)?;
            if !hash.iter().all(|b| nixbase32::ALPHABET.contains(b)) || rest.get(hash_len) != Some(&b'-') {
                return None;
            }
            let name_len = rest
                .get(hash_len + 1..)?
                .iter()
                .take(64)
                .take_while(|b| b.is_ascii_alphanumeric() || b"+-._?=".contains(b))
                .count();
            let reference = bytes.get(at..at + store_prefix.len() + hash_len + 1 + name_len)?;
            Some(String::from_utf8_lossy(reference).into_owned())
        })
        .collect()
}

/// `#Wed Dec 02 14:33:42 UTC 2026`: the comment `Properties.store` writes first.
fn is_properties_date(line: &str) -> bool {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let Some(rest) = line.strip_prefix('#') else { return false };
    let parts: Vec<&str> = rest.split(' ').filter(|p| !p.is_empty()).collect();
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let [day, month, date, time, zone, year] = parts.as_slice() else { return false };
    DAYS.contains(day)
        && MONTHS.contains(month)
        && (digits(date, 1) || digits(date, 2))
        && time.len() == 8
        && time.split(':').all(|p| digits(p, 2))
        && !zone.is_empty()
        && digits(year, 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_references_need_a_hash_and_a_dash() {
        let s = b"x /nix/store/0123456789abcdfghijklmnpqrsvwxyz-jdk-17/bin y /nix/store/short-z /nix/store/";
        assert_eq!(store_references(s, b"/nix/store/"), ["/nix/store/0123456789abcdfghijklmnpqrsvwxyz-jdk-17"]);
        assert!(store_references(b"/nix/store/0123456789abcdfghijklmnpqrsvwxyzz", b"/nix/store/").is_empty());
    }

    #[test]
    fn properties_dates() {
        assert!(is_properties_date("#Wed Dec 02 14:33:42 UTC 2026"));
        assert!(is_properties_date("#Mon Jan 5 01:02:03 CET 1999"));
        assert!(!is_properties_date("#NOTE: This is a Maven Resolver internal implementation file"));
        assert!(!is_properties_date("Wed Dec 02 14:33:42 UTC 2026"));
    }

    #[test]
    fn a_reference_across_a_chunk_edge_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let mut content = vec![b'a'; (1 << 20) - 20];
        content.extend_from_slice(b"/nix/store/0123456789abcdfghijklmnpqrsvwxyz-x");
        content.extend_from_slice(&[0; 100]);
        std::fs::write(dir.path().join("f"), &content).unwrap();
        let found = check(dir.path(), &Options { store_dir: "/nix/store".into(), hostname: None }).unwrap();
        assert!(matches!(found.as_slice(), [Finding::StoreReference { .. }]), "{found:?}");
    }
}
