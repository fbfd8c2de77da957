//! Maven's local repository (`~/.m2/repository`) laid out for a fixed-output derivation.
//!
//! The local repository is already in Maven's layout; what must go is what records the capture
//! rather than the dependencies: `_remote.repositories` (which repository each file came from, and
//! when: Maven then refuses the file offline under any other repository id), `*.lastUpdated` and
//! `resolver-status.properties` (times of the last checks), lock files and hidden folders. The
//! cached listings `maven-metadata-<repository id>.xml` become `maven-metadata-local.xml`, which
//! Maven reads whatever repositories the offline build names, so version ranges resolve from the
//! captured listings; two listings of one artifact that differ are refused as a conflict. A file
//! with a `.sha1` beside it is checked against it.

use std::path::{Path, PathBuf};

use narwhal_formats::tree::Walk;

use crate::layout::{check_out, component, kind_of, Expected, Plan, Summary};
use crate::Error;

/// The listing Maven reads for the local repository.
const LOCAL_METADATA: &str = "maven-metadata-local.xml";

/// Whether a file of the local repository records the capture, not a dependency.
// Maven writes these names exactly so; a differently cased name is someone else's file.
#[allow(clippy::case_sensitive_file_extension_comparisons)]
pub(crate) fn is_volatile(name: &str) -> bool {
    name == "_remote.repositories"
        || name == "resolver-status.properties"
        || name.ends_with(".lastUpdated")
        || name.ends_with(".lock")
        // Checksums of a listing under its repository id, which is renamed.
        || (name.starts_with("maven-metadata-") && (name.ends_with(".xml.sha1") || name.ends_with(".xml.md5")))
}

/// Lays out the local repository `m2` in the new directory `out`.
#[allow(clippy::case_sensitive_file_extension_comparisons)] // as in `is_volatile`
pub fn layout(m2: &Path, out: &Path) -> Result<Summary, Error> {
    if !m2.is_dir() {
        return Err(Error::NotADirectory { path: m2.to_path_buf() });
    }
    check_out(out, m2)?;
    let mut plan = Plan::default();
    for entry in Walk::new(m2) {
        let entry = entry?;
        let Ok(rel) = entry.path.strip_prefix(m2) else { continue };
        if rel.as_os_str().is_empty() || entry.meta.is_dir() {
            continue;
        }
        if rel.iter().any(|c| c.as_encoded_bytes().starts_with(b".")) {
            // `.locks/`, `.cache/` and other hidden entries are the tools' own.
            plan.left_out += 1;
            continue;
        }
        if !entry.meta.is_file() {
            return Err(Error::Unexpected {
                path: entry.path,
                found: kind_of(&entry.meta),
                expected: "regular files and directories",
            });
        }
        let mut target = PathBuf::new();
        for part in rel {
            target.push(component(part, &entry.path, "path component")?);
        }
        let name = target.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if is_volatile(&name) {
            plan.left_out += 1;
            continue;
        }
        if name.starts_with("maven-metadata-") && name.ends_with(".xml") {
            target.set_file_name(LOCAL_METADATA);
        }
        let expected = sidecar_sha1(&entry.path)?;
        plan.add(target, entry.path, expected);
    }
    plan.write(out)
}

/// The SHA-1 in `<path>.sha1`, when there is one (its first word: some servers add the file name).
fn sidecar_sha1(path: &Path) -> Result<Expected, Error> {
    let mut sidecar = path.as_os_str().to_owned();
    sidecar.push(".sha1");
    let sidecar = PathBuf::from(sidecar);
    if !std::fs::symlink_metadata(&sidecar).is_ok_and(|m| m.is_file()) {
        return Ok(Expected::Nothing);
    }
    let bytes = crate::metadata::read_bounded(&sidecar)?;
    let word = bytes.split(u8::is_ascii_whitespace).find(|w| !w.is_empty()).unwrap_or_default();
    match std::str::from_utf8(word) {
        Ok(hex) if hex.len() == 40 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(Expected::Sidecar(hex.to_ascii_lowercase()))
        }
        _ => Err(Error::Metadata { path: sidecar, why: "it does not start with a SHA-1 (40 hex digits)".into() }),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn drops_the_records_of_the_capture_and_checks_sidecars() {
        let tmp = tempfile::tempdir().unwrap();
        let m2 = tmp.path().join("m2");
        let v = m2.join("org/example/lib/1.0");
        fs::create_dir_all(&v).unwrap();
        fs::create_dir_all(m2.join(".locks")).unwrap();
        fs::write(m2.join(".locks/x.lock"), "").unwrap();
        fs::write(v.join("lib-1.0.jar"), "jar").unwrap();
        // printf jar | sha1sum
        fs::write(v.join("lib-1.0.jar.sha1"), "96de9d6f4d0a6f6c5e1ba5c4e4fbb6f1b6e0b5a6  lib-1.0.jar\n").unwrap();
        fs::write(v.join("_remote.repositories"), "#Wed Dec 02 14:33:42 UTC 2026\n").unwrap();
        fs::write(v.join("lib-1.0.pom.lastUpdated"), "").unwrap();
        fs::write(m2.join("org/example/lib/maven-metadata-central.xml"), "<metadata/>").unwrap();
        fs::write(m2.join("org/example/lib/resolver-status.properties"), "").unwrap();

        let err = layout(&m2, &tmp.path().join("bad")).unwrap_err();
        assert!(matches!(err, Error::Checksum { .. }), "{err}");
        assert!(!tmp.path().join("bad").exists());

        let sha1 = narwhal_formats::hash::Hash::of(narwhal_formats::hash::Algorithm::Sha1, b"jar")
            .encode(narwhal_formats::hash::Encoding::Base16);
        fs::write(v.join("lib-1.0.jar.sha1"), format!("{sha1}\n")).unwrap();
        let out = tmp.path().join("out");
        let summary = layout(&m2, &out).unwrap();
        assert_eq!((summary.files, summary.left_out), (3, 4));
        assert!(out.join("org/example/lib/1.0/lib-1.0.jar").is_file());
        assert!(out.join("org/example/lib/1.0/lib-1.0.jar.sha1").is_file());
        assert_eq!(fs::read_to_string(out.join("org/example/lib/maven-metadata-local.xml")).unwrap(), "<metadata/>");
    }

    #[test]
    fn two_different_listings_of_one_artifact_conflict() {
        let tmp = tempfile::tempdir().unwrap();
        let m2 = tmp.path().join("m2");
        fs::create_dir_all(m2.join("g/a")).unwrap();
        fs::write(m2.join("g/a/maven-metadata-central.xml"), "<metadata>1</metadata>").unwrap();
        fs::write(m2.join("g/a/maven-metadata-mirror.xml"), "<metadata>2</metadata>").unwrap();
        let err = layout(&m2, &tmp.path().join("out")).unwrap_err();
        assert!(matches!(err, Error::Conflict { .. }), "{err}");
    }
}
