//! `shardcar-control`: the control service. This foundation release only reports its
//! version; topology, configuration streaming and failover arrive with later issues.

use clap::Parser;

/// The Shardcar control service.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    println!("shardcar-control {}", env!("CARGO_PKG_VERSION"));
    Ok(())
}
