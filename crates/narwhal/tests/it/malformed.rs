//! Malformed NARs are rejected with the problem and its offset, and leave
//! nothing behind.

use narwhal_testkit::{fixture, nix_dump, tempdir};

use crate::{entries, fails, narwhal};

/// A wire string.
fn s(bytes: &[u8]) -> Vec<u8> {
    let mut v = (bytes.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(bytes);
    v.resize(v.len() + (8 - bytes.len() % 8) % 8, 0);
    v
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.iter().flat_map(|p| s(p)).collect()
}

fn file_node(contents: &[u8]) -> Vec<u8> {
    cat(&[b"(", b"type", b"regular", b"contents", contents, b")"])
}

/// A directory NAR body (no magic) with the given (name, node bytes) entries, in the given order.
fn dir_node(entries: &[(&[u8], Vec<u8>)]) -> Vec<u8> {
    let mut v = cat(&[b"(", b"type", b"directory"]);
    for (name, node) in entries {
        v.extend(cat(&[b"entry", b"(", b"name", name, b"node"]));
        v.extend_from_slice(node);
        v.extend(s(b")"));
    }
    v.extend(s(b")"));
    v
}

fn nar(body: &[u8]) -> Vec<u8> {
    let mut v = s(b"nix-archive-1");
    v.extend_from_slice(body);
    v
}

/// Unpacks `bytes`, expects failure mentioning `needle`, and checks nothing was left.
fn rejected(bytes: &[u8], needle: &str) -> String {
    let tmp = tempdir();
    let file = tmp.path().join("bad.nar");
    std::fs::write(&file, bytes).unwrap();
    let dest = tmp.path().join("dest");
    let err = fails(narwhal().args(["nar", "unpack"]).arg(&file).arg(&dest));
    assert!(err.contains("invalid NAR at byte "), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("error: ")).count(), 1, "{err}");
    assert!(!dest.exists() && !dest.is_symlink(), "destination exists after: {err}");
    assert_eq!(entries(tmp.path()), ["bad.nar"], "leftovers after: {err}");
    // Listing refuses it too, without touching anything.
    fails(narwhal().args(["nar", "ls", "-R"]).arg(&file));
    err
}

fn offset_of(err: &str) -> u64 {
    let rest = err.split("invalid NAR at byte ").nth(1).unwrap();
    rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

#[test]
fn truncated_anywhere_is_rejected() {
    let good = nix_dump(&fixture("mixed"));
    let mut cut = 0;
    let step = (good.len() / 97).max(1);
    while cut < good.len() {
        let err = rejected(&good[..cut], "truncated");
        assert!(offset_of(&err) <= cut as u64, "{err}");
        cut += step;
    }
    rejected(&good[..good.len() - 1], "truncated");
}

#[test]
fn trailing_data_is_rejected() {
    let mut bytes = nix_dump(&fixture("symlinks"));
    let end = bytes.len();
    bytes.extend_from_slice(b"extra");
    let err = rejected(&bytes, "unexpected data after the end");
    assert_eq!(offset_of(&err), end as u64);
}

#[test]
fn bad_magic_and_tokens_are_rejected() {
    rejected(&s(b"nix-archive-2"), "not a NAR");
    rejected(b"", "truncated");
    rejected(&nar(&cat(&[b"(", b"type", b"fifo", b")"])), "expected a node type");
    rejected(&nar(&cat(&[b"(", b"kind"])), "expected 'type', found \"kind\"");
    rejected(&nar(&cat(&[b"(", b"type", b"regular", b"executable", b"yes"])), "an empty string after 'executable'");
}

#[test]
fn absurd_lengths_are_rejected_before_allocation() {
    // A magic claiming 2^60 bytes.
    let mut bytes = (1u64 << 60).to_le_bytes().to_vec();
    bytes.extend_from_slice(b"nix-arch");
    rejected(&bytes, "not a NAR");
    // A keyword claiming 2^62 bytes.
    let mut bytes = nar(&s(b"("));
    bytes.extend_from_slice(&(1u64 << 62).to_le_bytes());
    let err = rejected(&bytes, "expected 'type', found a string of 4611686018427387904 bytes");
    assert_eq!(offset_of(&err), 40);
    // A name claiming 2^40 bytes.
    let mut body = cat(&[b"(", b"type", b"directory", b"entry", b"(", b"name"]);
    body.extend_from_slice(&(1u64 << 40).to_le_bytes());
    rejected(&nar(&body), "is longer than 255 bytes");
    // File contents claiming 2^62 bytes, with 8 present: truncated, not an allocation failure.
    let mut body = cat(&[b"(", b"type", b"regular", b"contents"]);
    body.extend_from_slice(&(1u64 << 62).to_le_bytes());
    body.extend_from_slice(b"12345678");
    rejected(&nar(&body), "truncated");
    // A symlink target of 5000 bytes.
    let long = vec![b'x'; 5000];
    rejected(&nar(&cat(&[b"(", b"type", b"symlink", b"target", &long, b")"])), "longer than 4095");
}

#[test]
fn non_zero_padding_is_rejected() {
    // In file contents: 3 bytes then 5 padding bytes, one of them set.
    let mut bytes = nar(&file_node(b"abc"));
    let contents_at = bytes.windows(3).position(|w| w == b"abc").unwrap();
    bytes[contents_at + 4] = 1;
    let err = rejected(&bytes, "padding bytes are not zero");
    assert_eq!(offset_of(&err), (contents_at + 3) as u64);
    // In a name.
    let mut bytes = nar(&dir_node(&[(b"abc", file_node(b""))]));
    let name_at = bytes.windows(3).position(|w| w == b"abc").unwrap();
    bytes[name_at + 7] = 0xff;
    rejected(&bytes, "padding bytes are not zero");
    // In the magic.
    let mut bytes = nar(&file_node(b""));
    bytes[8 + 13] = 1;
    rejected(&bytes, "padding bytes are not zero");
}

#[test]
fn bad_names_are_rejected() {
    for (name, why) in [
        (&b""[..], "is empty"),
        (b".", "is '.' or '..'"),
        (b"..", "is '.' or '..'"),
        (b"a/b", "contains '/'"),
        (b"../../etc", "contains '/'"),
        (b"a\0b", "contains NUL"),
    ] {
        let err = rejected(&nar(&dir_node(&[(name, file_node(b"x"))])), why);
        assert_eq!(offset_of(&err), 128, "{err}");
    }
    let long = vec![b'n'; 256];
    rejected(&nar(&dir_node(&[(&long, file_node(b"x"))])), "is longer than 255 bytes");
    let ok = vec![b'n'; 255];
    let tmp = tempdir();
    let file = tmp.path().join("ok.nar");
    std::fs::write(&file, nar(&dir_node(&[(&ok, file_node(b"x"))]))).unwrap();
    crate::ok(narwhal().args(["nar", "unpack"]).arg(&file).arg(tmp.path().join("d")));
}

#[test]
fn unsorted_and_duplicate_entries_are_rejected() {
    let err = rejected(&nar(&dir_node(&[(b"b", file_node(b"1")), (b"a", file_node(b"2"))])), "does not sort after");
    assert!(err.contains("in /") || err.contains("entry \"a\""), "{err}");
    rejected(&nar(&dir_node(&[(b"a", file_node(b"1")), (b"a", file_node(b"2"))])), "appears twice");
    // Byte order, not locale order: "B" < "a" is sorted, "a" < "B" is not.
    rejected(&nar(&dir_node(&[(b"a", file_node(b"1")), (b"B", file_node(b"2"))])), "does not sort after");
    // A symlink then a directory of the same name, which would lead writes through the link.
    let link = cat(&[b"(", b"type", b"symlink", b"target", b"/etc", b")"]);
    rejected(&nar(&dir_node(&[(b"x", link), (b"x", dir_node(&[(b"passwd", file_node(b"pwned"))]))])), "appears twice");
}

#[test]
fn excessive_depth_is_rejected() {
    let mut node = file_node(b"bottom");
    for _ in 0..1030 {
        node = dir_node(&[(b"d", node)]);
    }
    rejected(&nar(&node), "deeper than 1024");
}

#[test]
fn errors_name_the_entry_path() {
    let inner = dir_node(&[(b"z", file_node(b"1")), (b"y", file_node(b"2"))]);
    let err = rejected(&nar(&dir_node(&[(b"sub", inner)])), "does not sort after");
    assert!(err.contains("(in /sub)"), "{err}");
}
