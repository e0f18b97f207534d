//! Writes the seed corpus of every fuzz target to `corpus/<target>/` (next to
//! `Cargo.toml`), one file per seed, named by index. Run it before the first
//! `cargo fuzz run`; libFuzzer then grows the corpus in the same directories.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for target in shardcar_fuzz::seeds::TARGETS {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        let seeds = shardcar_fuzz::seeds::for_target(target);
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:03}")), seed)?;
        }
        println!("{}: {} seeds in {}", target, seeds.len(), dir.display());
    }
    Ok(())
}
