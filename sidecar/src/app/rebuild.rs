//! Rebuilding a tablet from another one: replaces this mysqld's data with a consistent
//! logical copy of a source tablet (`mariadb-dump --single-transaction --gtid`) and
//! makes it replicate from the copy's GTID position.
//!
//! This is how a tablet with errant transactions rejoins its shard: an old primary that
//! committed something no replica received (an unacknowledged write at a crash, a
//! heartbeat while cut off) cannot replicate from the new primary — MariaDB refuses with
//! error 1236 because the new primary never had those GTIDs. The rebuild discards them:
//! its report and log name the discarded position so an operator can look for them in
//! the old binary logs' backup. It is destructive by design and runs only when asked
//! (the tablet action, or an orchestrator started with `--rebuild-errant`).
//!
//! Steps: read-only, replication forgotten; dump the source's non-system databases to a
//! file; drop this server's non-system databases and `RESET MASTER` (its binary logs go,
//! with the errant GTIDs); load the copy without binary logging; set `gtid_slave_pos` to
//! the copy's position and replicate from the source with `MASTER_USE_GTID=slave_pos`.
//!
//! The dba account must exist with the same password on the source and hold what
//! `mariadb-dump` needs there (`SELECT`, `SHOW VIEW`, `TRIGGER`, `EVENT`, `LOCK TABLES`,
//! `RELOAD`, `BINLOG MONITOR`).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::Serialize;

use super::probe::{query, query_rows};
use super::upstream::{LoginParams, Upstream, UpstreamSettings};
use crate::config::{join_host_port, Endpoint};

/// Schemas a rebuild never copies or drops: the server's own.
const SYSTEM_SCHEMAS: &str = "'mysql', 'information_schema', 'performance_schema', 'sys'";
/// More databases than this on one tablet is not a shard this tool should copy.
const MAX_DATABASES: usize = 10_000;
/// The line `mariadb-dump --gtid --master-data=2` writes with the copy's position.
const POSITION_LINE: &str = "-- SET GLOBAL gtid_slave_pos='";

/// What a rebuild did.
#[derive(Debug, Serialize)]
pub struct Report {
    /// This server's GTID position before the rebuild: what it had, errant part included.
    pub discarded_position: String,
    /// The copy's position, now this server's `gtid_slave_pos`.
    pub copied_position: String,
    pub databases: Vec<String>,
    pub copy_bytes: u64,
    pub duration_ms: u64,
}

/// The command-line clients a rebuild runs.
#[derive(Debug, Clone)]
pub struct Clients {
    pub dump: PathBuf,
    pub load: PathBuf,
}

impl Clients {
    /// `mariadb-dump` and `mariadb` from `dir`, or from `PATH` when `None`.
    pub fn in_dir(dir: Option<&Path>) -> Clients {
        let at = |name: &str| dir.map_or_else(|| PathBuf::from(name), |d| d.join(name));
        Clients {
            dump: at("mariadb-dump"),
            load: at("mariadb"),
        }
    }
}

/// Replaces the data of the mysqld behind `local` (as the dba account `dba`) with a copy
/// of `source_host:source_port`, then replicates from it. `change_master` is the
/// `CHANGE MASTER TO` statement that points this server at the source.
pub async fn rebuild(
    local: &mut Upstream,
    dba: &Arc<UpstreamSettings>,
    source: (&str, u16),
    clients: &Clients,
    change_master: &str,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    query(local, "SET GLOBAL read_only = 1").await?;
    query(local, "STOP ALL SLAVES").await?;
    query(local, "RESET SLAVE ALL").await?;
    let discarded_position = single_value(local, "SELECT @@global.gtid_current_pos").await?;

    let address = join_host_port(source.0, source.1);
    let source_settings = Arc::new(UpstreamSettings {
        endpoint: Endpoint::Tcp(address.clone()),
        display: address,
        database: None,
        ..(**dba).clone()
    });
    let mut remote = Upstream::connect(&source_settings, LoginParams::default())
        .await
        .with_context(|| format!("connecting to the source {}", source_settings.display))?;
    let databases = user_databases(&mut remote).await;
    remote.quit().await;
    let databases = databases?;
    if databases.is_empty() {
        bail!(
            "the source {} has no databases to copy",
            source_settings.display
        );
    }

    let dir = tempfile::Builder::new()
        .prefix("shardcar-rebuild-")
        .tempdir()
        .context("creating a directory for the copy")?;
    let copy = dir.path().join("copy.sql");
    dump(clients, dba, source, &databases, &copy).await?;
    let copied_position = copy_position(&copy)?;
    let copy_bytes = std::fs::metadata(&copy).map_or(0, |m| m.len());

    query(local, "SET SESSION sql_log_bin = 0").await?;
    for db in user_databases(local).await? {
        query(local, &format!("DROP DATABASE {}", quote_name(&db))).await?;
    }
    query(local, "RESET MASTER").await?;
    load(clients, dba, &copy).await?;
    query(
        local,
        &format!(
            "SET GLOBAL gtid_slave_pos = '{}'",
            copied_position.replace('\'', "")
        ),
    )
    .await?;
    query(local, change_master).await?;
    query(local, "START SLAVE").await?;
    Ok(Report {
        discarded_position,
        copied_position,
        databases,
        copy_bytes,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// The server's databases other than its system schemas.
async fn user_databases(c: &mut Upstream) -> anyhow::Result<Vec<String>> {
    let (_, rows) = query_rows(
        c,
        &format!(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA \
             WHERE SCHEMA_NAME NOT IN ({SYSTEM_SCHEMAS}) ORDER BY SCHEMA_NAME"
        ),
        MAX_DATABASES,
    )
    .await?;
    Ok(rows
        .iter()
        .filter_map(|r| r.first()?.as_deref())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect())
}

async fn single_value(c: &mut Upstream, sql: &str) -> anyhow::Result<String> {
    let (_, rows) = query(c, sql).await?;
    Ok(rows
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.as_deref())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default())
}

/// Dumps `databases` of the source into `out`: one consistent snapshot, with routines,
/// events and triggers, and the snapshot's GTID position as a comment.
async fn dump(
    clients: &Clients,
    dba: &UpstreamSettings,
    source: (&str, u16),
    databases: &[String],
    out: &Path,
) -> anyhow::Result<()> {
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut cmd = tokio::process::Command::new(&clients.dump);
    cmd.arg(format!("--host={}", source.0))
        .arg(format!("--port={}", source.1))
        .arg(format!("--user={}", dba.user))
        .args([
            "--protocol=TCP",
            "--single-transaction",
            "--gtid",
            "--master-data=2",
            "--routines",
            "--events",
            "--triggers",
            "--databases",
        ])
        .args(databases)
        .stdout(Stdio::from(file));
    run(cmd, dba, "copying the source with mariadb-dump").await
}

/// Loads the copy into the local mysqld without writing it to the binary log.
async fn load(clients: &Clients, dba: &UpstreamSettings, copy: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::open(copy).with_context(|| format!("opening {}", copy.display()))?;
    let mut cmd = tokio::process::Command::new(&clients.load);
    match &dba.endpoint {
        Endpoint::Tcp(_) => {
            let host = dba.endpoint.host().unwrap_or("127.0.0.1");
            let port = dba.endpoint.port().unwrap_or(3306);
            cmd.arg(format!("--host={host}"))
                .arg(format!("--port={port}"))
                .arg("--protocol=TCP");
        }
        Endpoint::Unix(path) => {
            cmd.arg(format!("--socket={}", path.display()));
        }
    }
    cmd.arg(format!("--user={}", dba.user))
        .arg("--init-command=SET SESSION sql_log_bin = 0")
        .arg("--batch")
        .stdin(Stdio::from(file));
    run(cmd, dba, "loading the copy with mariadb").await
}

/// Runs a client with the dba password in its environment; fails with its stderr.
async fn run(
    mut cmd: tokio::process::Command,
    dba: &UpstreamSettings,
    what: &str,
) -> anyhow::Result<()> {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    // Not `output()`: tokio's replaces the file set as stdout with a pipe.
    let child = cmd
        .env("MYSQL_PWD", String::from_utf8_lossy(&dba.password).as_ref())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("{what}: cannot run {program}"))?;
    let output = child
        .wait_with_output()
        .await
        .with_context(|| format!("{what}: waiting for {program}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!("{what} failed ({}): {}", output.status, stderr.trim());
    }
    Ok(())
}

/// The copy's GTID position, from the comment `mariadb-dump --gtid --master-data=2`
/// writes after the data.
fn copy_position(copy: &Path) -> anyhow::Result<String> {
    let file = std::fs::File::open(copy).with_context(|| format!("opening {}", copy.display()))?;
    let mut position = None;
    // The replication comments the dump did write, for the error when none names one.
    let mut comments = Vec::new();
    for line in std::io::BufReader::new(file).split(b'\n') {
        let line = line.with_context(|| format!("reading {}", copy.display()))?;
        if let Some(rest) = line.strip_prefix(POSITION_LINE.as_bytes()) {
            position = parse_position(rest);
        } else if line.starts_with(b"-- ")
            && line.windows(6).any(|w| w == b"MASTER")
            && comments.len() < 4
        {
            comments.push(String::from_utf8_lossy(&line).into_owned());
        }
    }
    position.ok_or_else(|| {
        anyhow::anyhow!(
            "the copy names no GTID position (no `{POSITION_LINE}` line; its replication comments: {comments:?})"
        )
    })
}

/// `0-1-5,1-2-3';` → `0-1-5,1-2-3`, refusing anything that is not a GTID list.
fn parse_position(rest: &[u8]) -> Option<String> {
    let end = rest.iter().position(|&b| b == b'\'')?;
    let value = std::str::from_utf8(&rest[..end]).ok()?;
    value
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b'-' || b == b',')
        .then(|| value.to_string())
}

/// A quoted identifier.
fn quote_name(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_position_comes_from_the_last_position_comment() {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("copy.sql");
        std::fs::write(
            &copy,
            "-- CHANGE MASTER TO MASTER_USE_GTID=slave_pos;\n\
             INSERT INTO t VALUES ('-- SET GLOBAL gtid_slave_pos=''9-9-9''');\n\
             -- SET GLOBAL gtid_slave_pos='0-200-13,1-5-7';\n",
        )
        .unwrap();
        assert_eq!(copy_position(&copy).unwrap(), "0-200-13,1-5-7");
        std::fs::write(&copy, "-- SET GLOBAL gtid_slave_pos='0-1-2 OR 1';\n").unwrap();
        assert!(copy_position(&copy).is_err());
        std::fs::write(&copy, "CREATE TABLE t (id INT);\n").unwrap();
        assert!(copy_position(&copy).is_err());
    }

    #[test]
    fn names_and_addresses_are_quoted() {
        assert_eq!(quote_name("a`b"), "`a``b`");
        assert_eq!(join_host_port("::1", 3306), "[::1]:3306");
        assert_eq!(join_host_port("10.0.0.5", 3306), "10.0.0.5:3306");
        assert_eq!(join_host_port("[::1]", 3306), "[::1]:3306");
    }
}
