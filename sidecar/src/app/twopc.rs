//! Two-phase commit across shards over MariaDB XA (`transaction_mode: twopc`).
//!
//! A session's twopc transaction is one XA transaction with a branch on every shard it
//! reaches, all under one xid: the gtrid names the transaction, the bqual names the shard
//! that keeps its decision (the first shard to join). COMMIT on one shard is a one-phase
//! `XA COMMIT`. On several, every shard but the first is ended and prepared; the first then
//! writes a `commit` row into its `twopc_decisions` table inside its own branch and
//! commits in one phase, so the decision becomes durable exactly when that shard's writes
//! do; then the prepared branches commit. A crash anywhere leaves each branch committed,
//! rolled back (it was never prepared: mysqld drops it with the connection), or prepared
//! and in doubt.
//!
//! The resolver finishes branches in doubt. It lists the prepared branches on every
//! shard's primary (`XA RECOVER`), commits those whose decision row says `commit`, and
//! rolls back those that have waited `abort_after_ms` with no decision — after inserting
//! an `abort` row, so that a coordinator that is only slow finds the key taken and rolls
//! back instead of committing. Decision rows whose branches are all finished are deleted
//! (`abort` rows only after ten abort periods, for a coordinator that is slower still).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shardcar_filter::plan::merge::Row;
use shardcar_filter::protocol::error_codes;
use shardcar_filter::protocol::{ErrPacket, OkPacket};
use shardcar_filter::sql::literal::quote_string;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::router::{self, quote_ident, Router, ShardKey, ShardResult};
use super::session::{End, Session};
use super::sharded::{err, lost, session_statement};
use super::upstream::{LoginParams, Upstream};
use crate::config::{Endpoint, TransactionMode, TwopcConfig};
use crate::metrics::Metrics;

/// The XA format id of Shardcar's xids ("SCAR"); `XA RECOVER` rows with another belong to
/// someone else.
pub const FORMAT_ID: u32 = 0x5343_4152;

/// The decision table, in the configured database of every shard.
const TABLE: &str = "twopc_decisions";

/// Most decision rows one resolver round deletes per statement.
const DELETE_BATCH: usize = 500;

/// Two-phase commit state the router shares between sessions.
#[derive(Debug)]
pub struct Twopc {
    pub config: TwopcConfig,
    /// Random per process, so that the xids of different sidecars never meet.
    boot: u64,
    next: AtomicU64,
    /// Shards whose decision table is known to exist.
    ready: Mutex<HashSet<ShardKey>>,
}

/// One XA transaction id of a twopc transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Xid {
    gtrid: String,
    /// `keyspace/shard` of the shard that keeps the decision.
    bqual: String,
}

impl Xid {
    /// The xid as XA statements take it: `'gtrid','bqual',format`.
    fn literal(&self) -> String {
        format!(
            "{},{},{FORMAT_ID}",
            quote_string(self.gtrid.as_bytes()),
            quote_string(self.bqual.as_bytes())
        )
    }

    /// The keyspace and shard name that keep the decision.
    fn decider(&self) -> Option<(&str, &str)> {
        self.bqual.split_once('/')
    }

    /// An `XA RECOVER` row (formatID, gtrid_length, bqual_length, data) of ours.
    fn from_recovered(row: &Row) -> Option<Xid> {
        let cell = |i: usize| -> Option<&[u8]> { row.get(i)?.as_deref() };
        let number =
            |i: usize| -> Option<usize> { std::str::from_utf8(cell(i)?).ok()?.parse().ok() };
        if number(0)? != FORMAT_ID as usize {
            return None;
        }
        let (gtrid_len, bqual_len) = (number(1)?, number(2)?);
        let data = cell(3)?;
        if data.len() != gtrid_len + bqual_len {
            return None;
        }
        let (gtrid, bqual) = data.split_at(gtrid_len);
        Some(Xid {
            gtrid: String::from_utf8(gtrid.to_vec()).ok()?,
            bqual: String::from_utf8(bqual.to_vec()).ok()?,
        })
    }
}

impl Twopc {
    pub fn new(config: TwopcConfig) -> Self {
        Twopc {
            config,
            boot: rand::random(),
            next: AtomicU64::new(1),
            ready: Mutex::new(HashSet::new()),
        }
    }

    /// A new xid whose decision `keyspace/shard` keeps.
    fn xid(&self, keyspace: &str, shard: &str) -> Result<Xid, ErrPacket> {
        let bqual = format!("{keyspace}/{shard}");
        // XA limits each part to 64 bytes.
        if bqual.len() > 64 {
            return Err(err(
                error_codes::ER_NOT_SUPPORTED_YET,
                format!("This version of Shardcar doesn't yet support 'twopc on keyspace {keyspace}: its name is too long for an XA branch qualifier'"),
            ));
        }
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        Ok(Xid {
            gtrid: format!("shardcar-{:016x}-{seq}", self.boot),
            bqual,
        })
    }

    /// The decision table, qualified.
    fn table(&self) -> String {
        format!(
            "{}.{}",
            quote_ident(&self.config.database),
            quote_ident(TABLE)
        )
    }

    /// The statements that create the decision table when it is missing.
    fn ddl(&self) -> [String; 2] {
        [
            format!(
                "CREATE DATABASE IF NOT EXISTS {}",
                quote_ident(&self.config.database)
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (gtrid VARBINARY(64) NOT NULL PRIMARY KEY, \
                 decision VARCHAR(8) NOT NULL, decided_at TIMESTAMP(3) NOT NULL DEFAULT \
                 CURRENT_TIMESTAMP(3)) ENGINE=InnoDB",
                self.table()
            ),
        ]
    }

    /// Creates the decision table on `up` (shard `key`) unless it is known to exist.
    async fn ensure_table(
        &self,
        key: &ShardKey,
        up: &mut Upstream,
        caps: u32,
    ) -> Result<(), ErrPacket> {
        if self.ready_set().contains(key) {
            return Ok(());
        }
        for sql in self.ddl() {
            session_statement(up, sql.as_bytes(), caps).await?;
        }
        self.ready_set().insert(key.clone());
        Ok(())
    }

    fn ready_set(&self) -> std::sync::MutexGuard<'_, HashSet<ShardKey>> {
        self.ready
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The statement recording `decision` for `xid`.
    fn record(&self, xid: &Xid, decision: &str, ignore: bool) -> String {
        format!(
            "INSERT {}INTO {} (gtrid, decision) VALUES ({}, '{decision}')",
            if ignore { "IGNORE " } else { "" },
            self.table(),
            quote_string(xid.gtrid.as_bytes())
        )
    }
}

/// How one XA step on a session's shard connection failed.
enum StepError {
    /// The shard answered with an ERR.
    Refused(ErrPacket),
    /// The connection is gone (the shard drops a branch that was not prepared with it).
    Lost,
}

impl StepError {
    fn into_err(self) -> ErrPacket {
        match self {
            StepError::Refused(e) => e,
            StepError::Lost => lost(),
        }
    }
}

/// The ERR for a COMMIT that rolled the whole transaction back because `cause`.
fn rolled_back(cause: StepError, key: &ShardKey, shard: &str) -> ErrPacket {
    let e = cause.into_err();
    ErrPacket {
        message: format!(
            "COMMIT failed on {}/{shard} and the transaction was rolled back on every shard (twopc): {}",
            key.0, e.message
        ),
        ..e
    }
}

impl Session {
    /// `SET transaction_mode = '...'`.
    pub(super) async fn set_transaction_mode(&mut self, name: &str) -> Result<(), End> {
        let router = self.routed()?.router.clone();
        let mode = match TransactionMode::from_session(name, router.mode) {
            Some(TransactionMode::Twopc) if router.twopc.is_none() => {
                return self
                    .send_err(&err(
                        error_codes::ER_WRONG_VALUE_FOR_VAR,
                        format!("Variable 'transaction_mode' can't be set to the value of '{name}': two-phase commit is not enabled (sharding.twopc.enabled)"),
                    ))
                    .await
            }
            Some(mode) => mode,
            None => {
                return self
                    .send_err(&err(
                        error_codes::ER_WRONG_VALUE_FOR_VAR,
                        format!("Variable 'transaction_mode' can't be set to the value of '{name}'"),
                    ))
                    .await
            }
        };
        let r = self.routed()?;
        if r.tx_shards().is_some_and(|t| !t.is_empty()) && r.mode != mode {
            return self
                .send_err(&err(
                    error_codes::ER_CANT_CHANGE_TX_CHARACTERISTICS,
                    "Transaction characteristics can't be changed while a transaction is in progress",
                ))
                .await;
        }
        r.mode = mode;
        self.send_ok(OkPacket::default()).await
    }

    /// Opens shard `key`'s branch of the session's twopc transaction. The first shard to
    /// join names the xid and keeps the decision; `explicit` says the client opened the
    /// transaction with BEGIN (under `autocommit=0` an implicit one may be open on the
    /// connection, and is ended first).
    pub(super) async fn xa_start(
        &mut self,
        key: &ShardKey,
        explicit: bool,
    ) -> Result<(), ErrPacket> {
        let router = self.router_ref()?;
        let twopc = router.twopc.clone().ok_or_else(|| {
            err(
                error_codes::ER_UNKNOWN_ERROR,
                "two-phase commit is not enabled",
            )
        })?;
        let caps = self.auth.capabilities;
        let existing = self.routed.as_ref().and_then(|r| r.xid.clone());
        let xid = match existing {
            Some(x) => x,
            None => {
                let x = twopc.xid(&key.0, &router.shard_name(key))?;
                let up = self.shard_conn(key).await?;
                twopc.ensure_table(key, up, caps).await?;
                x
            }
        };
        let up = self.shard_conn(key).await?;
        let start = format!("XA START {}", xid.literal());
        match session_statement(up, start.as_bytes(), caps).await {
            Err(e) if e.code == error_codes::ER_XAER_OUTSIDE.code && !explicit => {
                session_statement(up, b"COMMIT", caps).await?;
                session_statement(up, start.as_bytes(), caps).await?;
            }
            r => r?,
        }
        if let Some(r) = self.routed.as_mut() {
            r.xid = Some(xid);
        }
        Ok(())
    }

    /// Runs one XA step on the session's connection to `key`.
    async fn xa_step(&mut self, key: &ShardKey, sql: &str) -> Result<(), StepError> {
        let caps = self.auth.capabilities;
        let Some(up) = self.routed.as_mut().and_then(|r| r.conns.get_mut(key)) else {
            return Err(StepError::Lost);
        };
        match router::query(up, sql.as_bytes(), caps, 1).await {
            Ok(ShardResult::Err(e)) => Err(StepError::Refused(e)),
            Ok(_) => Ok(()),
            Err(e) => {
                warn!(shard = ?key, error = %e, statement = sql, "shard lost during two-phase commit");
                self.drop_conn(key);
                Err(StepError::Lost)
            }
        }
    }

    /// Runs `steps` in order on the session's connection to `key`, up to the first that
    /// fails.
    async fn xa_steps(&mut self, key: &ShardKey, steps: &[String]) -> Result<(), StepError> {
        for sql in steps {
            self.xa_step(key, sql).await?;
        }
        Ok(())
    }

    /// Rolls back every branch of `shards` (whatever state each is in; a lost one was
    /// rolled back by its mysqld, or is left prepared for the resolver).
    async fn xa_rollback(&mut self, shards: &[ShardKey], xid: &Xid) {
        let lit = xid.literal();
        for key in shards {
            // END fails harmlessly on a branch already ended or prepared.
            if let Err(StepError::Lost) = self.xa_step(key, &format!("XA END {lit}")).await {
                continue;
            }
            if let Err(StepError::Refused(e)) =
                self.xa_step(key, &format!("XA ROLLBACK {lit}")).await
            {
                debug!(shard = ?key, error = %e.message, "XA ROLLBACK refused");
            }
        }
    }

    /// Ends the session's twopc transaction on `shards` (in the order they joined):
    /// commits it (in one phase on one shard, two otherwise) or rolls it back.
    pub(super) async fn finish_xa(
        &mut self,
        xid: Xid,
        shards: &[ShardKey],
        commit: bool,
    ) -> Result<(), ErrPacket> {
        let metrics = self.shared.metrics.clone();
        if !commit {
            self.xa_rollback(shards, &xid).await;
            return Ok(());
        }
        let Some((first, rest)) = shards.split_first() else {
            return Ok(());
        };
        let router = self.router_ref()?;
        let lit = xid.literal();
        let name = |key: &ShardKey| router.shard_name(key);
        let end = format!("XA END {lit}");
        let one_phase = format!("XA COMMIT {lit} ONE PHASE");
        if rest.is_empty() {
            if let Err(e) = self.xa_steps(first, &[end, one_phase]).await {
                self.xa_rollback(shards, &xid).await;
                metrics.twopc_commit("rolled_back");
                return Err(e.into_err());
            }
            metrics.twopc_commit("one_phase");
            return Ok(());
        }
        // Phase one: every shard but the decider prepares. The resolver may abort a
        // branch it has seen prepared for `abort_after_ms`; a phase one that took that
        // long rolls back rather than race it.
        let phase_one = Instant::now();
        for key in rest {
            let prepare = format!("XA PREPARE {lit}");
            if let Err(e) = self.xa_steps(key, &[end.clone(), prepare]).await {
                self.xa_rollback(shards, &xid).await;
                metrics.twopc_commit("rolled_back");
                return Err(rolled_back(e, key, &name(key)));
            }
        }
        // The decision, durable with the decider's own commit.
        let twopc = router.twopc.clone().ok_or_else(lost)?;
        if phase_one.elapsed() >= Duration::from_millis(twopc.config.abort_after_ms) {
            self.xa_rollback(shards, &xid).await;
            metrics.twopc_commit("rolled_back");
            return Err(err(
                error_codes::ER_XA_RBROLLBACK,
                format!(
                    "XA_RBROLLBACK: preparing the transaction's shards took longer than sharding.twopc.abort_after_ms ({} ms); it was rolled back on every shard",
                    twopc.config.abort_after_ms
                ),
            ));
        }
        let record = twopc.record(&xid, "commit", false);
        match self.xa_steps(first, &[record, end, one_phase]).await {
            Ok(()) => {}
            Err(StepError::Lost) => {
                metrics.twopc_commit("unknown");
                warn!(xid = %xid.gtrid, "the deciding shard was lost while committing; the resolver finishes the transaction");
                return Err(err(
                    error_codes::ER_ERROR_DURING_COMMIT,
                    format!(
                        "COMMIT's outcome is unknown: {}/{} was lost while recording the decision; every shard will be committed or rolled back alike by the resolver (xid {})",
                        first.0,
                        name(first),
                        xid.gtrid
                    ),
                ));
            }
            Err(e) => {
                if let StepError::Refused(p) = &e {
                    if p.code == error_codes::ER_NO_SUCH_TABLE.code {
                        twopc.ready_set().remove(first);
                    }
                }
                self.xa_rollback(shards, &xid).await;
                metrics.twopc_commit("rolled_back");
                return Err(rolled_back(e, first, &name(first)));
            }
        }
        // Phase two: the decision stands; a branch that does not commit now is committed
        // by the resolver.
        for key in rest {
            if let Err(e) = self.xa_step(key, &format!("XA COMMIT {lit}")).await {
                let message = match e {
                    StepError::Refused(p) => p.message,
                    StepError::Lost => "connection lost".to_string(),
                };
                warn!(xid = %xid.gtrid, shard = ?key, error = %message, "a prepared branch did not commit; the resolver commits it");
            }
        }
        metrics.twopc_commit("committed");
        Ok(())
    }
}

/// Finishes in-doubt branches on every shard, once per `resolve_interval_ms`, until
/// `shutdown`.
pub async fn resolve(
    router: Arc<Router>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(twopc) = router.twopc.clone() else {
        return;
    };
    let interval = Duration::from_millis(twopc.config.resolve_interval_ms);
    let mut resolver = Resolver {
        twopc,
        conns: HashMap::new(),
        seen: HashMap::new(),
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            break;
        }
        resolver.round(&router, &metrics).await;
    }
    for (_, (_, up)) in resolver.conns.drain() {
        up.quit().await;
    }
}

/// The resolver's state between rounds.
struct Resolver {
    twopc: Arc<Twopc>,
    /// One connection per shard primary, with the endpoint it was opened to.
    conns: HashMap<ShardKey, (Endpoint, Upstream)>,
    /// When each prepared branch with no decision was first seen.
    seen: HashMap<(ShardKey, Xid), Instant>,
}

impl Resolver {
    async fn round(&mut self, router: &Router, metrics: &Metrics) {
        let schema = router.schema();
        let keys: Vec<ShardKey> = schema
            .keyspaces()
            .flat_map(|k| (0..k.shards.len()).map(move |i| (k.name.clone(), i)))
            .collect();
        // Decision rows first, branches second: a row that exists now had all its
        // branches prepared before it, so one that no shard lists below is finished.
        let mut complete = true;
        let mut decided: Vec<(ShardKey, Vec<String>)> = Vec::new();
        // `abort` rows outlive their branches by ten abort periods, so that a coordinator
        // still preparing (however slowly) finds the key taken.
        let select = format!(
            "SELECT gtrid FROM {} WHERE decision = 'commit' OR decided_at < NOW(3) - INTERVAL {} SECOND",
            self.twopc.table(),
            self.twopc.config.abort_after_ms.saturating_mul(10) / 1000
        );
        for key in &keys {
            match self.query(router, key, &select).await {
                Some(rows) => {
                    decided.push((key.clone(), rows.iter().filter_map(text_cell).collect()))
                }
                None => complete = false,
            }
        }
        let mut prepared: Vec<(ShardKey, Xid)> = Vec::new();
        for key in &keys {
            match self.query(router, key, "XA RECOVER").await {
                Some(rows) => prepared.extend(
                    rows.iter()
                        .filter_map(Xid::from_recovered)
                        .map(|x| (key.clone(), x)),
                ),
                None => complete = false,
            }
        }
        self.seen.retain(|branch, _| prepared.contains(branch));
        let mut in_doubt = 0;
        for (key, xid) in &prepared {
            match self.decision(router, key, xid).await {
                Some(commit) => self.finish(router, key, xid, commit, metrics).await,
                None => in_doubt += 1,
            }
        }
        metrics.twopc_in_doubt(in_doubt);
        if !complete {
            return;
        }
        let live: HashSet<&str> = prepared.iter().map(|(_, x)| x.gtrid.as_str()).collect();
        for (key, gtrids) in decided {
            let done: Vec<&String> = gtrids
                .iter()
                .filter(|g| !live.contains(g.as_str()))
                .collect();
            for batch in done.chunks(DELETE_BATCH) {
                let list: Vec<String> = batch.iter().map(|g| quote_string(g.as_bytes())).collect();
                let delete = format!(
                    "DELETE FROM {} WHERE gtrid IN ({})",
                    self.twopc.table(),
                    list.join(", ")
                );
                if self.query(router, &key, &delete).await.is_none() {
                    break;
                }
            }
        }
    }

    /// The decision for `xid` (prepared on `key`): `Some(true)` to commit, `Some(false)`
    /// to roll back, `None` to wait. A branch undecided for `abort_after_ms` is decided
    /// `abort` here, unless the coordinator's `commit` row lands first.
    async fn decision(&mut self, router: &Router, key: &ShardKey, xid: &Xid) -> Option<bool> {
        let (keyspace, shard) = xid.decider()?;
        let index = router
            .schema()
            .keyspace(keyspace)?
            .shards
            .iter()
            .position(|s| s.name.eq_ignore_ascii_case(shard))?;
        let decider = (keyspace.to_string(), index);
        let select = format!(
            "SELECT decision FROM {} WHERE gtrid = {}",
            self.twopc.table(),
            quote_string(xid.gtrid.as_bytes())
        );
        let rows = self.query(router, &decider, &select).await?;
        if let Some(d) = rows.first().and_then(text_cell) {
            return Some(d == "commit");
        }
        let first_seen = *self
            .seen
            .entry((key.clone(), xid.clone()))
            .or_insert_with(Instant::now);
        if first_seen.elapsed() < Duration::from_millis(self.twopc.config.abort_after_ms) {
            return None;
        }
        // Waits (briefly: the connection's lock wait timeout) while a coordinator's commit
        // row is still uncommitted; either way one row wins.
        let abort = self.twopc.record(xid, "abort", true);
        self.query(router, &decider, &abort).await?;
        let rows = self.query(router, &decider, &select).await?;
        rows.first().and_then(text_cell).map(|d| d == "commit")
    }

    /// Commits or rolls back the prepared branch `xid` on `key`.
    async fn finish(
        &mut self,
        router: &Router,
        key: &ShardKey,
        xid: &Xid,
        commit: bool,
        metrics: &Metrics,
    ) {
        let (verb, kind) = if commit {
            ("COMMIT", "commit")
        } else {
            ("ROLLBACK", "rollback")
        };
        let sql = format!("XA {verb} {}", xid.literal());
        let Some((_, up)) = self.conn(router, key).await else {
            return;
        };
        let caps = up.session.capabilities;
        match router::query(up, sql.as_bytes(), caps, 1).await {
            Ok(ShardResult::Err(e))
                if e.code == error_codes::ER_XAER_NOTA.code
                    || (e.code == error_codes::ER_XA_RBROLLBACK.code && !commit) =>
            {
                debug!(xid = %xid.gtrid, shard = ?key, "branch already finished");
            }
            Ok(ShardResult::Err(e)) => {
                warn!(xid = %xid.gtrid, shard = ?key, error = %e.message, "resolver could not finish a prepared branch");
            }
            Ok(_) => {
                info!(xid = %xid.gtrid, keyspace = %key.0, shard = %router.shard_name(key), action = kind, "resolver finished a prepared branch");
                metrics.twopc_resolved(kind);
                self.seen.remove(&(key.clone(), xid.clone()));
            }
            Err(e) => {
                debug!(shard = ?key, error = %e, "resolver lost its shard connection");
                self.conns.remove(key);
            }
        }
    }

    /// Runs `sql` on shard `key`'s primary: its rows (none for an OK), or `None` when the
    /// shard refused it or is unreachable (logged).
    async fn query(&mut self, router: &Router, key: &ShardKey, sql: &str) -> Option<Vec<Row>> {
        let (_, up) = self.conn(router, key).await?;
        let caps = up.session.capabilities;
        match router::query(up, sql.as_bytes(), caps, 100_000).await {
            Ok(ShardResult::Rows { rows, .. }) => Some(rows),
            Ok(ShardResult::Ok(_)) => Some(Vec::new()),
            Ok(ShardResult::Err(e)) => {
                debug!(shard = ?key, error = %e.message, statement = sql, "resolver statement refused");
                None
            }
            Err(e) => {
                debug!(shard = ?key, error = %e, "resolver lost its shard connection");
                self.conns.remove(key);
                None
            }
        }
    }

    /// The connection to shard `key`'s current primary, opened (with a short lock wait
    /// and the decision table ensured) when missing or when the primary moved.
    async fn conn(&mut self, router: &Router, key: &ShardKey) -> Option<&mut (Endpoint, Upstream)> {
        let settings = router.settings(key)?;
        if self
            .conns
            .get(key)
            .is_some_and(|(endpoint, _)| *endpoint != settings.endpoint)
        {
            if let Some((_, up)) = self.conns.remove(key) {
                up.quit().await;
            }
        }
        if !self.conns.contains_key(key) {
            let mut up = match Upstream::connect(&settings, LoginParams::default()).await {
                Ok(up) => up,
                Err(e) => {
                    debug!(shard = ?key, error = %e, "resolver cannot reach the shard");
                    return None;
                }
            };
            let caps = up.session.capabilities;
            let setup = std::iter::once("SET SESSION innodb_lock_wait_timeout = 1".to_string())
                .chain(self.twopc.ddl());
            for sql in setup {
                if let Err(e) = session_statement(&mut up, sql.as_bytes(), caps).await {
                    warn!(shard = ?key, error = %e.message, statement = %sql, "resolver setup statement failed");
                }
            }
            self.conns
                .insert(key.clone(), (settings.endpoint.clone(), up));
        }
        self.conns.get_mut(key)
    }
}

/// The first cell of `row` as text.
fn text_cell(row: &Row) -> Option<String> {
    let cell = row.first()?.as_deref()?;
    Some(String::from_utf8_lossy(cell).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xids_read_back_from_xa_recover() {
        let twopc = Twopc::new(TwopcConfig::default());
        let xid = twopc.xid("user", "-80").expect("short names fit");
        assert!(xid.gtrid.starts_with("shardcar-"));
        assert_eq!(xid.decider(), Some(("user", "-80")));
        let data = format!("{}{}", xid.gtrid, xid.bqual).into_bytes();
        let row: Row = vec![
            Some(FORMAT_ID.to_string().into_bytes()),
            Some(xid.gtrid.len().to_string().into_bytes()),
            Some(xid.bqual.len().to_string().into_bytes()),
            Some(data),
        ];
        assert_eq!(Xid::from_recovered(&row), Some(xid.clone()));
        let mut foreign = row.clone();
        foreign[0] = Some(b"1".to_vec());
        assert_eq!(Xid::from_recovered(&foreign), None);
        assert_eq!(
            xid.literal(),
            format!("'{}','user/-80',{FORMAT_ID}", xid.gtrid)
        );
        assert_ne!(twopc.xid("user", "-80").ok(), Some(xid));
        assert!(twopc.xid(&"k".repeat(70), "-80").is_err());
    }
}
