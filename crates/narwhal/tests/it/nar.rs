//! `narwhal nar …` against `nix-store --dump`, `nix nar ls` and `nix nar cat`.

use narwhal_testkit::{format_fixtures, nix, nix_dump, run, tempdir};

use crate::{entries, narwhal, ok};

#[test]
fn dump_is_byte_identical_to_nix_store_dump() {
    for (name, path) in format_fixtures() {
        let ours = ok(narwhal().args(["nar", "dump"]).arg(&path));
        let theirs = nix_dump(&path);
        assert!(
            ours == theirs,
            "{name}: narwhal nar dump differs from nix-store --dump ({} vs {} bytes)",
            ours.len(),
            theirs.len()
        );
    }
}

#[test]
fn unpack_of_dump_reproduces_the_tree() {
    let tmp = tempdir();
    for (name, path) in format_fixtures() {
        let nar_file = tmp.path().join(format!("{name}.nar"));
        std::fs::write(&nar_file, nix_dump(&path)).unwrap();
        let dest = tmp.path().join(format!("{name}.out"));
        ok(narwhal().args(["nar", "unpack"]).arg(&nar_file).arg(&dest));
        // Nix dumps the unpacked tree to the same bytes: contents, exec bits,
        // symlink targets, names and structure all survived.
        assert!(nix_dump(&dest) == nix_dump(&path), "{name}: unpacked tree differs");
        // Also from standard input.
        let dest2 = tmp.path().join(format!("{name}.stdin"));
        let f = std::fs::File::open(&nar_file).unwrap();
        run(narwhal().args(["nar", "unpack", "-"]).arg(&dest2).stdin(f));
        assert!(nix_dump(&dest2) == nix_dump(&path), "{name}: unpacked from stdin differs");
    }
    // No temporary names were left behind.
    assert!(entries(tmp.path()).iter().all(|n| !n.contains(".tmp-")), "{:?}", entries(tmp.path()));
}

#[test]
fn unpack_refuses_an_existing_destination() {
    let tmp = tempdir();
    let nar_file = tmp.path().join("x.nar");
    std::fs::write(&nar_file, nix_dump(&narwhal_testkit::fixture("symlinks"))).unwrap();
    let dest = tmp.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("keep"), "mine").unwrap();
    let err = crate::fails(narwhal().args(["nar", "unpack"]).arg(&nar_file).arg(&dest));
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read_to_string(dest.join("keep")).unwrap(), "mine");
    assert_eq!(entries(&dest), ["keep"]);
}

#[test]
fn ls_matches_nix_nar_ls() {
    let tmp = tempdir();
    for (name, path) in format_fixtures() {
        let nar_file = tmp.path().join(format!("{name}.nar"));
        std::fs::write(&nar_file, nix_dump(&path)).unwrap();
        for flags in [&["-R"][..], &["-lR"], &[]] {
            let ours = ok(narwhal().args(["nar", "ls"]).args(flags).arg(&nar_file).arg("/"));
            let theirs = run(nix("nix").args(["nar", "ls"]).args(flags).arg(&nar_file).arg("/"));
            assert!(
                ours == theirs,
                "{name} {flags:?}:\nours:\n{}\nnix:\n{}",
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs)
            );
        }
    }
}

#[test]
fn cat_matches_nix_nar_cat() {
    let tmp = tempdir();
    let path = narwhal_testkit::fixture("mixed");
    let nar_file = tmp.path().join("mixed.nar");
    std::fs::write(&nar_file, nix_dump(&path)).unwrap();
    for inner in ["/bin/sh", "/bin/run", "/lib/empty", "/share/doc/os-release"] {
        let ours = ok(narwhal().args(["nar", "cat"]).arg(&nar_file).arg(inner));
        let theirs = run(nix("nix").args(["nar", "cat"]).arg(&nar_file).arg(inner));
        assert!(ours == theirs, "{inner}");
    }
    let err = crate::fails(narwhal().args(["nar", "cat"]).arg(&nar_file).arg("/nope"));
    assert!(err.contains("\"/nope\" is not in"), "{err}");
    let err = crate::fails(narwhal().args(["nar", "cat"]).arg(&nar_file).arg("/lib/run-link"));
    assert!(err.contains("is a symlink"), "{err}");
}
