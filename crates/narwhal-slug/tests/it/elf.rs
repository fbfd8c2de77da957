//! The ELF reader against `patchelf`'s view of real host files, before and
//! after patchelf rewrites them, and on garbage.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use narwhal_slug::elf::{self, DynamicInfo};
use proptest::prelude::*;

use crate::run;

fn patchelf(args: &[&str], file: &Path) -> Option<Vec<u8>> {
    let out = Command::new("patchelf")
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run patchelf: {e} (Debian: apt-get install patchelf)"));
    out.status.success().then(|| out.stdout.strip_suffix(b"\n").unwrap_or(&out.stdout).to_vec())
}

/// What patchelf reports must be what we parse.
fn assert_agrees_with_patchelf(file: &Path) {
    let info = elf::parse_file(&fs::File::open(file).unwrap()).unwrap();
    assert_eq!(info, elf::parse_bytes(&fs::read(file).unwrap()).unwrap(), "{}", file.display());
    assert_eq!(info.interpreter, patchelf(&["--print-interpreter"], file), "{}", file.display());
    // patchelf fails on files without a dynamic section.
    let needed = patchelf(&["--print-needed"], file).unwrap_or_default();
    let needed: Vec<Vec<u8>> = needed.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect();
    assert_eq!(info.needed, needed, "{}", file.display());
    let rpath = patchelf(&["--print-rpath"], file).unwrap_or_default();
    assert_eq!(info.runpath.clone().or(info.rpath.clone()).unwrap_or_default(), rpath, "{}", file.display());
}

/// Some dynamically linked host files: executables and shared libraries.
pub fn host_elves() -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from("/bin/ls")];
    for dir in ["/usr/bin", "/lib/x86_64-linux-gnu"] {
        let mut names: Vec<PathBuf> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        out.extend(
            names
                .into_iter()
                .filter(|p| p.symlink_metadata().is_ok_and(|m| m.is_file()))
                .filter(|p| fs::read(p).is_ok_and(|b| b.starts_with(b"\x7fELF")))
                .step_by(7)
                .take(12),
        );
    }
    out
}

#[test]
fn host_files_agree_with_patchelf() {
    let files = host_elves();
    assert!(files.len() > 20, "{files:?}");
    for file in files {
        assert_agrees_with_patchelf(&file);
    }
}

#[test]
fn patched_files_agree_with_patchelf() {
    let tmp = tempfile::tempdir().unwrap();
    let long_rpath = (0..60).map(|i| format!("/app/store/{i:032}-lib-{i}/lib")).collect::<Vec<_>>().join(":");
    // One change per patchelf run: patchelf 0.14 mixes up strings when one
    // run both adds a needed library and sets the run path.
    let cases: [&[&[&str]]; 5] = [
        &[&["--set-interpreter", "/app/store/00000000000000000000000000000000-glibc/lib/ld-linux-x86-64.so.2"]],
        &[&["--set-rpath", "$ORIGIN/../lib:/app/store/11111111111111111111111111111111-x/lib"]],
        &[&["--force-rpath", "--set-rpath", "/app/store/22222222222222222222222222222222-y/lib"]],
        &[&["--add-needed", "libextra.so.9"], &["--set-rpath", &long_rpath]],
        &[&["--remove-needed", "libc.so.6"]],
    ];
    for (i, runs) in cases.iter().enumerate() {
        let file = tmp.path().join(format!("ls-{i}"));
        fs::copy("/bin/ls", &file).unwrap();
        for args in *runs {
            run(Command::new("patchelf").args(*args).arg(&file));
        }
        assert_agrees_with_patchelf(&file);
    }
    let forced = elf::parse_file(&fs::File::open(tmp.path().join("ls-2")).unwrap()).unwrap();
    assert_eq!(
        (forced.runpath, forced.rpath.as_deref()),
        (None, Some(&b"/app/store/22222222222222222222222222222222-y/lib"[..]))
    );
    let long = elf::parse_file(&fs::File::open(tmp.path().join("ls-3")).unwrap()).unwrap();
    assert_eq!(long.runpath, Some(long_rpath.into_bytes()));
}

#[test]
fn non_elf_and_static_files() {
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("script");
    fs::write(&script, "#!/bin/sh\n").unwrap();
    assert!(matches!(elf::parse_file(&fs::File::open(&script).unwrap()), Err(elf::Error::NotElf)));
    // An object file has no program headers: nothing to judge.
    assert_eq!(elf::parse_bytes(&relocatable_object()).unwrap(), DynamicInfo::default());
}

/// Where `PT_DYNAMIC` starts in an ELF64 LE file, read by hand.
fn dynamic_offset(elf: &[u8]) -> usize {
    let word = |at: usize, n: usize| elf[at..at + n].iter().rev().fold(0usize, |acc, &b| acc << 8 | usize::from(b));
    let (phoff, phentsize, phnum) = (word(0x20, 8), word(0x36, 2), word(0x38, 2));
    (0..phnum).map(|i| phoff + i * phentsize).find(|&ph| word(ph, 4) == 2).map(|ph| word(ph + 8, 8)).unwrap()
}

/// A minimal ELF64 relocatable header.
fn relocatable_object() -> Vec<u8> {
    let mut ehdr = vec![0u8; 64];
    ehdr[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
    ehdr[16] = 1; // ET_REL
    ehdr
}

#[test]
fn every_truncation_of_a_real_binary_is_an_error_or_a_prefix() {
    let ls = fs::read("/bin/ls").unwrap();
    let full = elf::parse_bytes(&ls).unwrap();
    let mut cuts: Vec<usize> = (0..4096).collect();
    cuts.extend((4096..ls.len()).step_by(997));
    for cut in cuts {
        if let Ok(info) = elf::parse_bytes(&ls[..cut]) {
            // Whatever is read from a prefix is what the whole file says.
            assert!(info.interpreter.is_none() || info.interpreter == full.interpreter, "cut at {cut}");
            assert!(info.needed.is_empty() || info.needed == full.needed, "cut at {cut}");
        }
    }
}

proptest! {
    /// Random bytes after the ELF64 LE magic never panic.
    #[test]
    fn garbage_never_panics(tail in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut bytes = b"\x7fELF\x02\x01".to_vec();
        bytes.extend(tail);
        let _ = elf::parse_bytes(&bytes);
    }

    /// A real binary with some bytes of its headers, program headers or
    /// dynamic section overwritten never panics, in memory or as a file.
    #[test]
    fn corrupted_binaries_never_panic(
        edits in prop::collection::vec((any::<bool>(), 0usize..0x1000, any::<u64>()), 1..6),
    ) {
        let mut ls = fs::read("/bin/ls").unwrap();
        let dynamic = dynamic_offset(&ls);
        for (in_dynamic, at, value) in edits {
            let at = if in_dynamic { dynamic + at % 0x200 } else { at };
            let at = at.min(ls.len() - 8);
            ls[at..at + 8].copy_from_slice(&value.to_le_bytes());
        }
        let in_memory = elf::parse_bytes(&ls);
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, &ls).unwrap();
        let from_file = elf::parse_file(&file);
        prop_assert_eq!(format!("{in_memory:?}"), format!("{from_file:?}"));
    }
}

/// Found by fuzzing: a program header table at offset i64::MAX passed the reader's offset check, and
/// pread refused the range that ends past i64::MAX with EINVAL, so the file reader reported an I/O
/// error where the reader of bytes in memory reported a truncated file.
#[test]
fn program_headers_at_offset_i64_max_are_truncated_not_an_io_error() {
    let mut header = vec![0u8; 64];
    header[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
    header[16..20].copy_from_slice(&[3, 0, 0x3e, 0]); // ET_DYN, x86-64
    header[20..24].copy_from_slice(&1u32.to_le_bytes());
    header[32..40].copy_from_slice(&i64::MAX.to_le_bytes()); // e_phoff
    header[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    header[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    header[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("elf");
    fs::write(&path, &header).unwrap();
    let from_file = elf::parse_file(&fs::File::open(&path).unwrap());
    assert!(matches!(from_file, Err(elf::Error::Truncated { .. })), "{from_file:?}");
    let in_memory = elf::parse_bytes(&header);
    assert!(matches!(in_memory, Err(elf::Error::Truncated { .. })), "{in_memory:?}");
}
