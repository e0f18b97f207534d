//! The fuzz bodies on stable Rust: each runs over its seed corpus, then over inputs
//! mutated from the seeds by a deterministic PRNG (bit flips, byte sets, interesting
//! values, insertions, deletions, splices, truncations). The same seeds and the same
//! mutations every run, so a failure reproduces; `FUZZ_ITERATIONS` and `FUZZ_SEED`
//! change how many and which.
//!
//! `cargo test --release --no-default-features` (from `fuzz/`).

use shardcar_fuzz::seeds::{body, for_target};
use shardcar_fuzz::Rng;

fn iterations() -> usize {
    std::env::var("FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

fn base_seed() -> u64 {
    std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5ead_c0de)
}

const INTERESTING: [u8; 10] = [0x00, 0x01, 0x02, 0x03, 0x04, 0x7f, 0xfb, 0xfc, 0xfe, 0xff];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next_u64() as u8;
            }
            2 if len > 0 => {
                let i = rng.below(len);
                input[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            3 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(8);
                for _ in 0..n {
                    input.insert(i, rng.next_u64() as u8);
                }
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(16));
                input.drain(i..i + n);
            }
            5 if len > 0 => {
                input.truncate(rng.below(len));
            }
            6 => {
                // Splice a piece of another seed in.
                let other = &seeds[rng.below(seeds.len())];
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let b = a + rng.below(other.len() - a + 1);
                    let i = rng.below(len + 1);
                    input.splice(i..i, other[a..b].iter().copied());
                }
            }
            7 if len >= 2 => {
                // Little-endian 16-bit interesting value (lengths, sequence ids).
                let i = rng.below(len - 1);
                let v: u16 = [0, 1, 0xff, 0x100, 0xfff, 0xffff][rng.below(6)];
                input[i..i + 2].copy_from_slice(&v.to_le_bytes());
            }
            _ if len > 1 => {
                // Copy a run within the input.
                let a = rng.below(len);
                let n = 1 + rng.below((len - a).min(32));
                let piece: Vec<u8> = input[a..a + n].to_vec();
                let i = rng.below(len + 1);
                input.splice(i..i, piece);
            }
            _ => input.push(rng.next_u64() as u8),
        }
    }
}

fn run(target: &str) {
    let seeds = for_target(target);
    assert!(!seeds.is_empty(), "{target} has seeds");
    let f = body(target);
    for seed in &seeds {
        f(seed);
    }
    let mut rng = Rng::new(base_seed() ^ target.len() as u64);
    let n = iterations();
    for i in 0..n {
        let mut input = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, &mut input, &seeds);
        let result = std::panic::catch_unwind(|| f(&input));
        if let Err(e) = result {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!(
                "{target}: input #{i} panicked: {msg}\nreproducer ({} bytes): {:02x?}",
                input.len(),
                input
            );
        }
    }
    eprintln!("{target}: {} seeds + {n} mutated inputs", seeds.len());
}

#[test]
fn packet_assembler() {
    run("packet_assembler");
}

#[test]
fn server_handshake() {
    run("server_handshake");
}

#[test]
fn client_handshake() {
    run("client_handshake");
}

#[test]
fn response_scanner() {
    run("response_scanner");
}

#[test]
fn decoders() {
    run("decoders");
}

#[test]
fn planner() {
    run("planner");
}

#[test]
fn guard() {
    run("guard");
}

#[test]
fn stream_filter() {
    run("stream_filter");
}
