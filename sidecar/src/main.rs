//! The `shardcar` binary: parses the command line, sets up logging and the tokio
//! runtime, and hands over to a role (`app`, `db`, `local`) or a small tool.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use shardcar::config::{AppConfig, AppOverrides, ConfigError};
use shardcar_filter::protocol::auth;

#[derive(Debug, Parser)]
#[command(
    name = "shardcar",
    version,
    about = "Shardcar, a MySQL-aware sidecar proxy"
)]
struct Cli {
    /// Tokio worker threads (default: the available parallelism).
    #[arg(long, global = true, env = "SHARDCAR_THREADS", value_name = "N")]
    threads: Option<usize>,
    /// Log line format; the level comes from RUST_LOG (default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the app role: applications connect here as if to one MySQL server.
    App {
        /// The YAML configuration file (see docs/configuration.md).
        #[arg(long, env = "SHARDCAR_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        overrides: AppOverrides,
    },
    /// Run the db role beside one mysqld: client sessions multiplexed over a protected
    /// pool (timeouts, row limits, query rules). The `db` section of the configuration
    /// reloads while running.
    Db {
        /// The YAML configuration file (see docs/configuration.md and docs/db-role.md).
        #[arg(long, env = "SHARDCAR_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        overrides: AppOverrides,
    },
    /// Run a local cluster on loopback (real mariadbd per keyspace, the sidecar in
    /// front), like Vitess's vttestserver. With no keyspace: a demo.
    Local(shardcar::local::LocalArgs),
    /// Print `native_hash` and `sha2_hash` lines for a user entry, reading the
    /// password from a file or standard input.
    HashPassword {
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Load and validate a configuration, print `ok` or the first error.
    CheckConfig {
        #[arg(long, env = "SHARDCAR_CONFIG", value_name = "FILE", required = true)]
        config: Option<PathBuf>,
        #[command(flatten)]
        overrides: AppOverrides,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.log_format)?;
    match cli.command {
        Cmd::App { config, overrides } => {
            let config = load_app_config(config.as_deref(), &overrides)?;
            runtime(cli.threads)?
                .block_on(async { shardcar::app::run(config, shardcar::shutdown::install()).await })
        }
        Cmd::Db { config, overrides } => {
            let loaded = load_app_config(config.as_deref(), &overrides)?;
            runtime(cli.threads)?.block_on(async {
                shardcar::app::run_db(loaded, config, shardcar::shutdown::install()).await
            })
        }
        Cmd::Local(args) => runtime(cli.threads)?.block_on(shardcar::local::run(args)),
        Cmd::HashPassword { password_file } => hash_password(password_file.as_deref()),
        Cmd::CheckConfig { config, overrides } => {
            match load_app_config(config.as_deref(), &overrides) {
                Ok(_) => println!("ok"),
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
            }
            Ok(())
        }
    }
}

fn load_app_config(path: Option<&Path>, o: &AppOverrides) -> Result<AppConfig, ConfigError> {
    let mut config = AppConfig::load(path)?;
    config.apply_overrides(o);
    config.validate()?;
    Ok(config)
}

fn init_tracing(format: LogFormat) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    }
    .map_err(|e| anyhow::anyhow!("cannot initialise logging: {e}"))
}

fn runtime(threads: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let threads = match threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("shardcar-worker")
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
}

fn hash_password(file: Option<&Path>) -> anyhow::Result<()> {
    let mut password = match file {
        Some(f) => std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?,
        None => {
            if std::io::stdin().is_terminal() {
                eprintln!("password (then Enter and Ctrl-D):");
            }
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("cannot read the password from standard input")?;
            buf
        }
    };
    while matches!(password.last(), Some(b'\n' | b'\r')) {
        password.pop();
    }
    let native = auth::format_native_hash(&auth::native_password_hash(&password));
    let sha2 = hex::encode(auth::sha2_password_hash(&password));
    println!("native_hash: \"{native}\"");
    println!("sha2_hash: \"{sha2}\"");
    Ok(())
}
