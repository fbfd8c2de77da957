use std::io::Write as _;

use narwhal_relocate::Relocation;
use proptest::prelude::*;

/// Byte by byte, leftmost first, never looking at what it wrote.
fn naive(from: &[u8], to: &[u8], input: &[u8]) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(input.len());
    let mut replacements = 0;
    let mut i = 0;
    while i < input.len() {
        if input[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
            replacements += 1;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    (out, replacements)
}

/// Feeds `input` to a writer in pieces of the given sizes (cycling; the
/// remainder in one last write).
fn stream(relocation: &Relocation, input: &[u8], sizes: &[usize]) -> (Vec<u8>, u64) {
    let mut writer = relocation.writer(Vec::new());
    let mut rest = input;
    for size in sizes.iter().cycle().take(input.len()) {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at((*size).min(rest.len()));
        writer.write_all(chunk).unwrap();
        rest = tail;
    }
    writer.write_all(rest).unwrap();
    writer.finish().unwrap()
}

/// A store directory and a target of the same length or shorter (padded).
/// Some directories overlap themselves (`/a/a`) to exercise leftmost-first.
fn relocation() -> impl Strategy<Value = Relocation> {
    let from = prop_oneof![
        Just("/nix/store".to_owned()),
        Just("/a/a".to_owned()),
        Just("/aa".to_owned()),
        Just("/a/a/a".to_owned()),
        Just("/ab/ab".to_owned()),
        "/[ab/]{0,6}[ab]",
    ];
    (from, "/[a-c/]{0,10}", any::<bool>()).prop_filter_map("valid pair", |(from, to, cut)| {
        let to = if cut { to.trim_end_matches('/').to_owned() } else { to };
        let to: String = to.chars().take(from.len()).collect();
        let to = if to.len() > 1 { to.trim_end_matches('/').to_owned() } else { to };
        Relocation::new(&from, &to, true).ok()
    })
}

/// Bytes drawn mostly from the characters of store directories, with whole
/// copies of `from` and of its prefixes spliced in.
fn input(from: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![4 => prop::sample::select(b"/abnixstore".to_vec()), 1 => any::<u8>()];
    let piece = prop_oneof![
        3 => prop::collection::vec(byte, 0..40),
        2 => Just(from.clone()),
        1 => (1..from.len()).prop_map(move |n| from[..n].to_vec()),
    ];
    prop::collection::vec(piece, 0..30).prop_map(|pieces| pieces.concat())
}

fn case() -> impl Strategy<Value = (Relocation, Vec<u8>, Vec<usize>)> {
    relocation().prop_flat_map(|r| {
        let from = r.from().as_bytes().to_vec();
        (Just(r), input(from), prop::collection::vec(0usize..24, 1..12))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn streaming_equals_whole_buffer_and_naive((relocation, input, sizes) in case()) {
        let mut whole = input.clone();
        let replacements = relocation.rewrite_in_place(&mut whole);
        let (reference, reference_replacements) = naive(relocation.from().as_bytes(), relocation.to(), &input);
        prop_assert_eq!(&whole, &reference);
        prop_assert_eq!(replacements, reference_replacements);

        let (streamed, streamed_replacements) = stream(&relocation, &input, &sizes);
        prop_assert_eq!(streamed.len(), input.len());
        prop_assert_eq!(&streamed, &whole);
        prop_assert_eq!(streamed_replacements, replacements as u64);

        prop_assert_eq!(relocation.rewrite_target(&input), whole);
    }
}

#[test]
fn relocation_strategy_covers_padding_and_identity() {
    // The targets above are trimmed and cut; make sure the shapes that matter exist.
    let r = Relocation::new("/a/a", "/a", true).unwrap();
    assert_eq!(r.to(), b"/a//");
    assert_eq!(naive(b"/a/a", r.to(), b"x/a/a/a/a"), (b"x/a///a//".to_vec(), 2));
    assert!(Relocation::new("/aa", "/aa", false).unwrap().is_identity());
}

/// A 64 MiB stream with an occurrence every few KiB, some across the writer's
/// block boundaries, in large and odd-sized writes. No timing assertion: the
/// release-mode figure comes from `examples/throughput.rs`.
#[test]
fn large_stream_sanity() {
    const LEN: usize = 64 << 20;
    let relocation = Relocation::new("/nix/store", "/app/store", false).unwrap();
    let mut input = vec![0u8; LEN];
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for chunk in input.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let bytes = state.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
    let mut planted = 0;
    let mut at = 17;
    while at + 10 <= LEN {
        input[at..at + 10].copy_from_slice(b"/nix/store");
        planted += 1;
        at += 4093;
    }
    let mut whole = input.clone();
    let replacements = relocation.rewrite_in_place(&mut whole);
    assert!(replacements >= planted, "{replacements} < {planted}");

    for sizes in [&[LEN][..], &[1 << 20], &[(1 << 20) + 7, 5, 262_139]] {
        let mut writer = relocation.writer(Vec::with_capacity(LEN));
        let mut rest = &input[..];
        for size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at((*size).min(rest.len()));
            writer.write_all(chunk).unwrap();
            rest = tail;
        }
        let (out, n) = writer.finish().unwrap();
        assert_eq!(n, replacements as u64, "sizes {sizes:?}");
        assert!(out == whole, "sizes {sizes:?}: output differs");
    }
}
