//! Properties of the NAR code that need no Nix: any tree survives
//! dump -> unpack -> dump byte for byte, and the typed writer agrees with the dumper;
//! and every parser survives arbitrary input (`never_panics`).

#![allow(clippy::unwrap_used)]

mod never_panics;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use narwhal_formats::nar::{self, Listing, ListingNode, Writer};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Tree {
    File { executable: bool, contents: Vec<u8> },
    Symlink(Vec<u8>),
    Dir(BTreeMap<Vec<u8>, Tree>),
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    // Any bytes but '/' and NUL, never "." or ".."; includes non-UTF-8.
    proptest::collection::vec(1u8..=255, 1..12)
        .prop_map(|v| v.into_iter().map(|b| if b == b'/' { b'_' } else { b }).collect::<Vec<u8>>())
        .prop_filter("not . or ..", |n| n != b"." && n != b"..")
}

fn tree() -> impl Strategy<Value = Tree> {
    let leaf = prop_oneof![
        (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(executable, contents)| Tree::File { executable, contents }),
        proptest::collection::vec(1u8..=255, 1..40).prop_map(Tree::Symlink),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| proptest::collection::btree_map(name(), inner, 0..6).prop_map(Tree::Dir))
}

fn materialise(t: &Tree, at: &Path) {
    use std::os::unix::ffi::OsStrExt as _;
    match t {
        Tree::File { executable, contents } => {
            std::fs::write(at, contents).unwrap();
            let mode = if *executable { 0o755 } else { 0o644 };
            std::fs::set_permissions(at, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        Tree::Symlink(target) => std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), at).unwrap(),
        Tree::Dir(entries) => {
            std::fs::create_dir(at).unwrap();
            for (n, child) in entries {
                materialise(child, &at.join(std::ffi::OsStr::from_bytes(n)));
            }
        }
    }
}

/// The same tree through the typed writer.
fn write_typed(t: &Tree) -> Vec<u8> {
    fn node<'w>(
        t: &Tree,
        n: nar::NodeWriter<&'w mut dyn std::io::Write>,
    ) -> std::io::Result<nar::Finished<&'w mut dyn std::io::Write>> {
        match t {
            Tree::File { executable, contents } => n.regular_bytes(*executable, contents),
            Tree::Symlink(target) => n.symlink(target),
            Tree::Dir(entries) => {
                let mut d = n.directory()?;
                for (name, child) in entries {
                    d.entry(name, |n| node(child, n))?;
                }
                d.close()
            }
        }
    }
    let mut out = Vec::new();
    let root = Writer::new(&mut out as &mut dyn std::io::Write).unwrap();
    let _ = node(t, root).unwrap();
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn dump_unpack_dump_is_identity(t in tree()) {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        materialise(&t, &src);
        let mut first = Vec::new();
        nar::dump(&src, &mut first).unwrap();
        prop_assert_eq!(&first, &write_typed(&t));
        let dest = tmp.path().join("dest");
        nar::unpack(&mut first.as_slice(), &dest).unwrap();
        let mut second = Vec::new();
        nar::dump(&dest, &mut second).unwrap();
        prop_assert_eq!(&first, &second);
        // Every prefix is rejected and leaves nothing.
        let cut = first.len() / 2;
        let bad = tmp.path().join("bad");
        prop_assert!(nar::unpack(&mut &first[..cut], &bad).is_err());
        prop_assert!(std::fs::symlink_metadata(&bad).is_err());
        let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        prop_assert_eq!(names.len(), 2, "{:?}", names);
    }
}

#[test]
fn writer_refuses_unsorted_and_invalid_names() {
    let mut out = Vec::new();
    let root = Writer::new(&mut out as &mut dyn std::io::Write).unwrap();
    let mut d = root.directory().unwrap();
    d.entry(b"b", |n| n.regular_bytes(false, b"")).unwrap();
    assert!(d.entry(b"a", |n| n.regular_bytes(false, b"")).is_err());
    assert!(d.entry(b"b", |n| n.regular_bytes(false, b"")).is_err());
    assert!(d.entry(b"..", |n| n.regular_bytes(false, b"")).is_err());
    assert!(d.entry(b"x/y", |n| n.regular_bytes(false, b"")).is_err());
}

#[test]
fn listing_records_offsets_into_the_nar() {
    let t = Tree::Dir(BTreeMap::from([
        (b"a".to_vec(), Tree::File { executable: true, contents: b"hello".to_vec() }),
        (b"l".to_vec(), Tree::Symlink(b"a".to_vec())),
    ]));
    let bytes = write_typed(&t);
    let listing = Listing::read(&mut bytes.as_slice()).unwrap();
    let Some(ListingNode::Regular { executable: true, size: 5, nar_offset }) = listing.lookup(b"/a") else {
        panic!("{listing:?}")
    };
    let at = usize::try_from(*nar_offset).unwrap();
    assert_eq!(&bytes[at..at + 5], b"hello");
    assert_eq!(listing.lookup(b"l"), Some(&ListingNode::Symlink { target: b"a".to_vec() }));
    assert_eq!(listing.lookup(b"/a/x"), None);
}
