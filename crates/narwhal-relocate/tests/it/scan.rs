use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use narwhal_relocate::scan::{
    scan_compressed_with_limit, MAX_DECOMPRESSED_BYTES, SCAN_CHUNK_LEN, SNIFF_LEN, WHOLE_INFLATE_MAX,
};
use narwhal_relocate::{scan_compressed, scan_compressed_bytes, sniff, BytesScanner, Compression, Finding, ScanError};

const NEEDLE: &[u8] = b"/nix/store";
const REFERENCE: &[u8] = b"/nix/store/0c0lms2yc6z5qnlqz8i3dlfa9ak4s9ys-hello-2.12.1/bin/hello";

/// Text that looks like a file from a closure but names no store path:
/// almost-needles included.
fn filler(len: usize) -> Vec<u8> {
    let line = b"see /nix/stor and /nix store and /usr/share/doc for details; ";
    line.iter().copied().cycle().take(len).collect()
}

/// `filler` with `REFERENCE` written so its needle starts at `at`.
fn with_reference(len: usize, at: usize) -> Vec<u8> {
    let mut data = filler(len);
    data[at..at + REFERENCE.len()].copy_from_slice(REFERENCE);
    data
}

/// Runs `program args`, feeding `stdin`, and returns its stdout.
fn run(program: &str, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let feeder = std::thread::spawn(move || input.write_all(&stdin).unwrap());
    let output = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(output.status.success(), "{program} {args:?}: {}", output.status);
    output.stdout
}

fn gzip(data: &[u8]) -> Vec<u8> {
    run("/usr/bin/gzip", &["-c", "-6"], data)
}

fn xz(data: &[u8]) -> Vec<u8> {
    run("/usr/bin/xz", &["-c", "-6"], data)
}

/// Runs a Python script with `dir` as its working directory.
fn python(dir: &Path, script: &str) {
    let status = Command::new("python3").arg("-c").arg(script).current_dir(dir).status().unwrap();
    assert!(status.success(), "python3 failed: {script}");
}

fn write(dir: &Path, name: &str, contents: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, contents).unwrap();
    path
}

fn found(path: &Path, format: Compression, member: Option<&str>) -> Finding {
    Finding { path: path.to_owned(), format, member: member.map(str::to_owned) }
}

fn scan(path: &Path) -> Option<Finding> {
    scan_compressed(path, NEEDLE).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Offsets that put the needle at, just before, and across the scanner's
/// 64 KiB read boundary, and far from it.
const BOUNDARY_OFFSETS: [usize; 5] = [0, 1000, SCAN_CHUNK_LEN - 4, SCAN_CHUNK_LEN - 10, 3 * SCAN_CHUNK_LEN + 5];

#[test]
fn gzip_with_and_without_a_reference() {
    let dir = tempfile::tempdir().unwrap();
    let clean = write(dir.path(), "clean.gz", &gzip(&filler(300_000)));
    assert_eq!(scan(&clean), None);
    for at in BOUNDARY_OFFSETS {
        let path = write(dir.path(), &format!("ref-{at}.gz"), &gzip(&with_reference(300_000, at)));
        assert_eq!(scan(&path), Some(found(&path, Compression::Gzip, None)), "at {at}");
    }
}

#[test]
fn gzip_reference_in_a_later_member() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = gzip(&filler(100_000));
    data.extend(gzip(&with_reference(100_000, 50_000)));
    let path = write(dir.path(), "two-members.gz", &data);
    assert_eq!(scan(&path), Some(found(&path, Compression::Gzip, None)));
}

/// A gzip file scanned from memory (inflated whole when it is small enough)
/// and from disk (streamed) gives the same answer.
fn scan_both_ways(dir: &Path, name: &str, data: &[u8]) -> Option<Finding> {
    let path = write(dir, name, data);
    let from_disk = scan(&path);
    let from_memory = scan_compressed_bytes(&path, data, NEEDLE).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(from_memory, from_disk, "{name}: in memory and from disk disagree");
    from_disk
}

#[test]
fn gzip_in_memory_agrees_with_streaming_for_every_layout() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let gz = |name: &str, data: &[u8]| scan_both_ways(d, name, data);
    assert_eq!(gz("clean.gz", &gzip(&filler(300_000))), None);
    for at in BOUNDARY_OFFSETS {
        assert!(gz(&format!("ref-{at}.gz"), &gzip(&with_reference(300_000, at))).is_some(), "at {at}");
    }
    // Larger than what is inflated whole: streamed from memory too.
    let big = WHOLE_INFLATE_MAX + 1000;
    assert!(gz("big.gz", &gzip(&with_reference(big, big - REFERENCE.len()))).is_some());
    assert_eq!(gz("big-clean.gz", &gzip(&filler(big))), None);

    // Several members: the reference only in a later one, also between two
    // identical members (same CRC-32 and size as the last, which the trailer holds).
    let (clean, reference) = (gzip(&filler(100_000)), gzip(&with_reference(100_000, 50_000)));
    assert!(gz("second.gz", &[clean.clone(), reference.clone()].concat()).is_some());
    assert!(gz("middle.gz", &[clean.clone(), reference.clone(), clean.clone()].concat()).is_some());
    assert_eq!(gz("clean-twice.gz", &[clean.clone(), clean.clone()].concat()), None);
    // An empty member at the end (as BGZF files have).
    assert!(gz("empty-last.gz", &[reference.clone(), gzip(b"")].concat()).is_some());
    assert_eq!(gz("empty.gz", &gzip(b"")), None);

    // Damage: both report the same decode error, or both find what precedes it.
    let path = write(d, "truncated.gz", &clean[..clean.len() / 2]);
    let in_memory = scan_compressed_bytes(&path, &clean[..clean.len() / 2], NEEDLE).unwrap_err();
    assert!(matches!(in_memory, ScanError::Decode { format: Compression::Gzip, .. }), "{in_memory:?}");
    let early = gzip(&with_reference(300_000, 10));
    assert!(gz("cut-after-ref.gz", &early[..early.len() / 2]).is_some());
    let mut lying = gzip(&filler(5000));
    let n = lying.len();
    lying[n - 4..].copy_from_slice(&7u32.to_le_bytes());
    let err = scan_compressed_bytes(&path, &lying, NEEDLE).unwrap_err();
    assert!(matches!(err, ScanError::Decode { format: Compression::Gzip, .. }), "a wrong size in the trailer: {err:?}");

    // One scanner for many files keeps no state between them.
    let mut scanner = BytesScanner::new(NEEDLE).unwrap();
    for (data, expect) in [(&reference, true), (&clean, false), (&reference, true), (&clean, false)] {
        assert_eq!(scanner.scan(&path, data).unwrap().is_some(), expect);
    }
}

#[test]
fn truncated_gzip_is_a_decode_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = gzip(&filler(300_000));
    let path = write(dir.path(), "truncated.gz", &data[..data.len() / 2]);
    let err = scan_compressed(&path, NEEDLE).unwrap_err();
    assert!(
        matches!(&err, ScanError::Decode { path: p, format: Compression::Gzip, member: None, .. } if *p == path),
        "{err:?}"
    );
    assert!(err.to_string().contains("truncated.gz"), "{err}");
}

#[test]
fn reference_before_the_truncation_is_still_found() {
    let dir = tempfile::tempdir().unwrap();
    let data = gzip(&with_reference(300_000, 10));
    let path = write(dir.path(), "truncated.gz", &data[..data.len() / 2]);
    assert_eq!(scan(&path), Some(found(&path, Compression::Gzip, None)));
}

#[test]
fn xz_with_and_without_a_reference() {
    let dir = tempfile::tempdir().unwrap();
    let clean = write(dir.path(), "clean.xz", &xz(&filler(300_000)));
    assert_eq!(scan(&clean), None);
    for at in BOUNDARY_OFFSETS {
        let path = write(dir.path(), &format!("ref-{at}.xz"), &xz(&with_reference(300_000, at)));
        assert_eq!(scan(&path), Some(found(&path, Compression::Xz, None)), "at {at}");
    }
    let mut concatenated = xz(&filler(1000));
    concatenated.extend(xz(REFERENCE));
    let path = write(dir.path(), "concatenated.xz", &concatenated);
    assert_eq!(scan(&path), Some(found(&path, Compression::Xz, None)));
}

#[test]
fn truncated_xz_is_a_decode_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = xz(&filler(300_000));
    let path = write(dir.path(), "truncated.xz", &data[..data.len() - 20]);
    let err = scan_compressed(&path, NEEDLE).unwrap_err();
    assert!(matches!(err, ScanError::Decode { format: Compression::Xz, .. }), "{err:?}");
}

#[test]
fn zip_tool_deflated_and_stored() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "README", &filler(5000));
    write(dir.path(), "clean.txt", &filler(200_000));
    write(dir.path(), "lib.txt", &with_reference(200_000, SCAN_CHUNK_LEN - 3));
    for (flag, name) in [("-6", "deflated.zip"), ("-0", "stored.zip")] {
        let status = Command::new("/usr/bin/zip")
            .args(["-q", flag, name, "README", "clean.txt", "lib.txt"])
            .current_dir(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        let path = dir.path().join(name);
        assert_eq!(scan(&path), Some(found(&path, Compression::Zip, Some("lib.txt"))), "{name}");

        let clean = format!("clean-{name}");
        let status = Command::new("/usr/bin/zip")
            .args(["-q", flag, &clean, "README", "clean.txt"])
            .current_dir(dir.path())
            .status();
        assert!(status.unwrap().success());
        assert_eq!(scan(&dir.path().join(&clean)), None, "{clean}");
    }
}

/// Entries are inflated whole up to the size the central directory gives; an
/// entry that inflates to more than that is streamed instead, so its
/// reference is still found.
#[test]
fn zip_entry_larger_than_its_directory_says_is_still_scanned() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "ref", &with_reference(150_000, 120_000));
    python(
        dir.path(),
        r#"
import struct, zipfile
with zipfile.ZipFile("understated.zip", "w", zipfile.ZIP_DEFLATED) as z:
    z.write("ref")
data = bytearray(open("understated.zip", "rb").read())
cd = data.rfind(b"PK\x01\x02")
data[cd + 24:cd + 28] = struct.pack("<I", 1000)
open("understated.zip", "wb").write(data)
"#,
    );
    let path = dir.path().join("understated.zip");
    assert_eq!(scan(&path), Some(found(&path, Compression::Zip, Some("ref"))));
    let data = fs::read(&path).unwrap();
    assert_eq!(scan_compressed_bytes(&path, &data, NEEDLE).unwrap(), Some(found(&path, Compression::Zip, Some("ref"))));
}

#[test]
fn python_zipfile_entries() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "clean", &filler(150_000));
    write(dir.path(), "ref", &with_reference(150_000, 2 * SCAN_CHUNK_LEN - 7));
    python(
        dir.path(),
        r#"
import zipfile
clean, ref = open("clean", "rb").read(), open("ref", "rb").read()
for method, tag in [(zipfile.ZIP_DEFLATED, "deflated"), (zipfile.ZIP_STORED, "stored")]:
    with zipfile.ZipFile(f"app-{tag}.jar", "w", method) as z:
        z.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
        z.writestr("com/example/", "")
        z.writestr("com/example/Clean.class", clean)
        z.writestr("com/example/Paths.class", ref)
    with zipfile.ZipFile(f"clean-{tag}.jar", "w", method) as z:
        z.writestr("com/example/Clean.class", clean)
# Mixed: the reference sits in a stored entry after a deflated one.
with zipfile.ZipFile("mixed.zip", "w") as z:
    z.writestr("a", clean, compress_type=zipfile.ZIP_DEFLATED)
    z.writestr("b", ref, compress_type=zipfile.ZIP_STORED)
"#,
    );
    for tag in ["deflated", "stored"] {
        let path = dir.path().join(format!("app-{tag}.jar"));
        assert_eq!(scan(&path), Some(found(&path, Compression::Zip, Some("com/example/Paths.class"))), "{tag}");
        assert_eq!(scan(&dir.path().join(format!("clean-{tag}.jar"))), None, "{tag}");
    }
    let mixed = dir.path().join("mixed.zip");
    assert_eq!(scan(&mixed), Some(found(&mixed, Compression::Zip, Some("b"))));
}

/// Written to a pipe, zipfile cannot seek back, so local headers carry no
/// sizes and each entry is followed by a data descriptor; only the central
/// directory knows where stored data ends.
#[test]
fn streamed_zip_with_data_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "ref", &with_reference(100_000, 70_000));
    python(
        dir.path(),
        r#"
import io, zipfile
class Unseekable(io.RawIOBase):
    def __init__(self, f): self.f = f
    def writable(self): return True
    def write(self, b): return self.f.write(b)
with open("streamed.zip", "wb") as out:
    with zipfile.ZipFile(Unseekable(out), "w") as z:
        for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            with z.open(f"clean-{method}", "w") as e: e.write(b"x" * 70000)
        with z.open("ref", "w") as e: e.write(open("ref", "rb").read())
"#,
    );
    let path = dir.path().join("streamed.zip");
    let bytes = fs::read(&path).unwrap();
    assert_eq!(bytes[6] & 0x08, 0x08, "the first local header should defer its sizes to a data descriptor");
    assert_eq!(scan(&path), Some(found(&path, Compression::Zip, Some("ref"))));
}

/// More than 65535 entries force the zip64 end of central directory.
#[test]
fn zip64_end_of_central_directory() {
    let dir = tempfile::tempdir().unwrap();
    python(
        dir.path(),
        r#"
import zipfile
with zipfile.ZipFile("many.zip", "w", zipfile.ZIP_STORED) as z:
    for i in range(70000):
        z.writestr(f"{i}", b"x")
    z.writestr("last", b"prefix /nix/store/abc")
"#,
    );
    let path = dir.path().join("many.zip");
    let bytes = fs::read(&path).unwrap();
    assert!(bytes.windows(4).any(|w| w == b"PK\x06\x06"), "expected a zip64 end record");
    assert_eq!(scan(&path), Some(found(&path, Compression::Zip, Some("last"))));
}

#[test]
fn zip_entries_that_cannot_be_scanned() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "secret.txt", REFERENCE);
    let status = Command::new("/usr/bin/zip")
        .args(["-q", "-P", "hunter2", "encrypted.zip", "secret.txt"])
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let err = scan_compressed(&dir.path().join("encrypted.zip"), NEEDLE).unwrap_err();
    assert!(matches!(&err, ScanError::EncryptedZipEntry { member, .. } if member == "secret.txt"), "{err:?}");

    python(
        dir.path(),
        r#"
import zipfile
with zipfile.ZipFile("bzip2.zip", "w") as z:
    z.writestr("hidden", b"/nix/store/abc", compress_type=zipfile.ZIP_BZIP2)
    z.writestr("plain", b"nothing here", compress_type=zipfile.ZIP_DEFLATED)
with zipfile.ZipFile("bzip2-and-ref.zip", "w") as z:
    z.writestr("hidden", b"nothing", compress_type=zipfile.ZIP_BZIP2)
    z.writestr("visible", b"/nix/store/abc", compress_type=zipfile.ZIP_DEFLATED)
"#,
    );
    let err = scan_compressed(&dir.path().join("bzip2.zip"), NEEDLE).unwrap_err();
    assert!(
        matches!(&err, ScanError::UnsupportedZipMethod { member, method: 12, .. } if member == "hidden"),
        "{err:?}"
    );
    assert!(err.to_string().contains("method 12"), "{err}");
    // A finding elsewhere in the archive wins over what could not be scanned.
    let path = dir.path().join("bzip2-and-ref.zip");
    assert_eq!(scan(&path), Some(found(&path, Compression::Zip, Some("visible"))));
}

#[test]
fn truncated_zip_is_malformed() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a", &filler(10_000));
    let status = Command::new("/usr/bin/zip").args(["-q", "a.zip", "a"]).current_dir(dir.path()).status().unwrap();
    assert!(status.success());
    let data = fs::read(dir.path().join("a.zip")).unwrap();
    let path = write(dir.path(), "cut.zip", &data[..data.len() - 30]);
    let err = scan_compressed(&path, NEEDLE).unwrap_err();
    assert!(matches!(err, ScanError::MalformedZip { .. }), "{err:?}");
}

#[test]
fn uncompressed_and_empty_files_are_not_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let plain = write(dir.path(), "plain", REFERENCE);
    assert_eq!(scan(&plain), None);
    assert_eq!(scan(&write(dir.path(), "empty", b"")), None);
    assert_eq!(scan(&write(dir.path(), "short", b"\x1f")), None);
    let err = scan_compressed(&dir.path().join("missing"), NEEDLE).unwrap_err();
    assert!(matches!(err, ScanError::Io { .. }), "{err:?}");
    assert!(matches!(scan_compressed(&plain, b""), Err(ScanError::InvalidNeedle(0))));
}

#[test]
fn sniff_agrees_with_the_tools() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "f", b"data");
    let status = Command::new("/usr/bin/zip").args(["-q", "f.zip", "f"]).current_dir(dir.path()).status().unwrap();
    assert!(status.success());
    let zip = fs::read(dir.path().join("f.zip")).unwrap();
    assert_eq!(sniff(&gzip(b"data")[..SNIFF_LEN]), Some(Compression::Gzip));
    assert_eq!(sniff(&xz(b"data")[..SNIFF_LEN]), Some(Compression::Xz));
    assert_eq!(sniff(&zip[..SNIFF_LEN]), Some(Compression::Zip));
    assert_eq!(sniff(&b"#!/nix/store/x-bash/bin/sh"[..SNIFF_LEN]), None);
}

#[test]
fn the_limit_stops_a_bomb() {
    let dir = tempfile::tempdir().unwrap();
    let zeros = vec![0u8; 4 << 20];
    let bomb = write(dir.path(), "bomb.gz", &gzip(&zeros));
    let err = scan_compressed_with_limit(&bomb, NEEDLE, 1 << 20).unwrap_err();
    assert!(matches!(err, ScanError::LimitReached { limit, .. } if limit == 1 << 20), "{err:?}");
    assert!(err.to_string().contains("1048576"), "{err}");
    // Ending exactly at the limit is a complete scan.
    assert_eq!(scan_compressed_with_limit(&bomb, NEEDLE, 4 << 20).unwrap(), None);

    // The budget is for the whole archive, not per entry.
    python(
        dir.path(),
        r#"
import zipfile
with zipfile.ZipFile("bomb.zip", "w", zipfile.ZIP_DEFLATED) as z:
    for i in range(8):
        z.writestr(f"{i}", bytes(256 * 1024))
"#,
    );
    let err = scan_compressed_with_limit(&dir.path().join("bomb.zip"), NEEDLE, 1 << 20).unwrap_err();
    assert!(matches!(err, ScanError::LimitReached { .. }), "{err:?}");
}

/// The documented limit itself: 1 GiB of zeros plus a reference after it.
#[test]
fn the_default_limit_is_one_gib() {
    assert_eq!(MAX_DECOMPRESSED_BYTES, 1 << 30);
    let dir = tempfile::tempdir().unwrap();
    python(
        dir.path(),
        r#"
import zlib
c = zlib.compressobj(1, zlib.DEFLATED, 31)
with open("bomb.gz", "wb") as out:
    block = bytes(1 << 20)
    for _ in range(1 << 10):
        out.write(c.compress(block))
    out.write(c.compress(b"/nix/store/abc"))
    out.write(c.flush())
"#,
    );
    let err = scan_compressed(&dir.path().join("bomb.gz"), NEEDLE).unwrap_err();
    assert!(matches!(err, ScanError::LimitReached { limit: MAX_DECOMPRESSED_BYTES, .. }), "{err:?}");
}
