//! Measures the streaming writer: `cargo run --release -p narwhal-relocate --example throughput`.
//!
//! Two inputs of 256 MiB: pseudo-random bytes with `/nix/store` every 4093
//! bytes, and `/nix/stor/nix/store/usr/` repeated (an occurrence every 24
//! bytes after a near miss, a worst case). Each is written in chunks of
//! several sizes to `io::sink()` and to a preallocated `Vec`; best of five.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::cast_precision_loss)]

use std::io::{self, Write as _};
use std::time::{Duration, Instant};

use narwhal_relocate::Relocation;

const LEN: usize = 256 << 20;
const RUNS: usize = 5;

fn main() {
    let relocation = Relocation::new("/nix/store", "/app/store", false).unwrap();
    let random = random_input();
    let dense: Vec<u8> = b"/nix/stor/nix/store/usr/".iter().copied().cycle().take(LEN).collect();
    for (name, input) in [("random", &random), ("dense", &dense)] {
        println!("{name}:");
        measure(&relocation, input);
    }
}

fn random_input() -> Vec<u8> {
    let mut input = vec![0u8; LEN];
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for chunk in input.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    for at in (17..LEN - 10).step_by(4093) {
        input[at..at + 10].copy_from_slice(b"/nix/store");
    }
    input
}

fn measure(relocation: &Relocation, input: &[u8]) {
    let mb_per_s = |d: Duration| LEN as f64 / 1e6 / d.as_secs_f64();

    let best = (0..RUNS)
        .map(|_| {
            let mut copy = input.to_vec();
            let start = Instant::now();
            relocation.rewrite_in_place(&mut copy);
            start.elapsed()
        })
        .min()
        .unwrap();
    println!("rewrite_in_place            {:>8.0} MB/s", mb_per_s(best));

    let mut out = Vec::with_capacity(LEN);
    for chunk in [4 << 10, 64 << 10, 1 << 20, 16 << 20, LEN] {
        let to_sink = (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                let mut writer = relocation.writer(io::sink());
                for piece in input.chunks(chunk) {
                    writer.write_all(piece).unwrap();
                }
                writer.finish().unwrap();
                start.elapsed()
            })
            .min()
            .unwrap();
        let to_vec = (0..RUNS)
            .map(|_| {
                out.clear();
                let start = Instant::now();
                let mut writer = relocation.writer(&mut out);
                for piece in input.chunks(chunk) {
                    writer.write_all(piece).unwrap();
                }
                writer.finish().unwrap();
                start.elapsed()
            })
            .min()
            .unwrap();
        println!(
            "writer, {:>9} B writes  {:>8.0} MB/s to sink, {:>8.0} MB/s to Vec",
            chunk,
            mb_per_s(to_sink),
            mb_per_s(to_vec)
        );
    }
}
