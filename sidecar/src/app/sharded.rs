//! The command loop's sharded path: each statement is planned by the filter and executed
//! on the shards the plan names — relayed raw when one shard answers the client's own
//! text, otherwise read whole from every shard and merged. Also the session state that
//! routing needs: the default keyspace, per-shard connections, the open transaction and
//! the SET statements replayed on every shard connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use shardcar_filter::plan::{
    self, merge::Row, Materialize, MergeSpec, Merger, Plan, PlanContext, PlanError, Route,
    Transaction,
};
use shardcar_filter::protocol::column::ColumnDefinition;
use shardcar_filter::protocol::constants::{column_type, status};
use shardcar_filter::protocol::error_codes;
use shardcar_filter::protocol::packet::Packet;
use shardcar_filter::protocol::resultset::{encode_text_row_cells, ResultSetWriter, RowFormat};
use shardcar_filter::protocol::{Command, ErrPacket, OkPacket};
use tracing::{debug, warn};

use super::endpoints::{self, Buffered};
use super::relay::{FailoverRetry, RelayGuard};
use super::router::{self, Router, ShardError, ShardKey, ShardResult};
use super::session::{End, Session};
use super::twopc::Xid;
use super::upstream::{Upstream, UpstreamSettings};
use crate::config::TransactionMode;
use crate::metrics::ErrorOrigin;

/// Routing state of one session.
#[derive(Debug)]
pub(super) struct Routed {
    pub router: Arc<Router>,
    pub(super) conns: HashMap<ShardKey, Upstream>,
    pub default_keyspace: Option<String>,
    /// Shards of the open transaction, in the order they joined; `None` outside one.
    tx: Option<Vec<ShardKey>>,
    /// How the session's transactions commit across shards (`SET transaction_mode`).
    pub(super) mode: TransactionMode,
    /// The XA id of the open twopc transaction, once a shard joined it.
    pub(super) xid: Option<Xid>,
    /// The statement that opened the transaction, replayed on each shard that joins.
    begin: Vec<u8>,
    /// SET statements, replayed on every new shard connection.
    sets: Vec<Vec<u8>>,
    autocommit: bool,
    last_insert_id: LastInsertId,
    /// This statement's `/* shardcar: max_merge_rows=N */`, bounded by
    /// [`MAX_MERGE_ROWS_HINT`].
    pub(super) statement_max_rows: Option<usize>,
    /// `USE ks:shard`: every statement but session statements goes to this shard of the
    /// default keyspace, unrouted (Vitess shard targeting).
    target_shard: Option<usize>,
    /// Prepared statements by the id the client knows.
    pub(super) statements: HashMap<u32, super::prepared::Prepared>,
    pub(super) next_statement_id: u32,
    /// The term each primary connection was opened in: a newer term means the primary
    /// moved and the connection goes to the old one.
    terms: HashMap<ShardKey, u64>,
    /// `USE ks@replica` (or `topology.reads: replica`): reads outside transactions go
    /// to replicas.
    read_replicas: bool,
    /// This statement's `/* shardcar: target=replica|primary */`.
    statement_target: Option<bool>,
    /// Replica connections by shard, with the replica's alias.
    replica_conns: HashMap<ShardKey, (String, Upstream)>,
    /// Read-your-writes: the GTID of the session's last write to each shard, and the
    /// replica last seen to have applied it.
    last_writes: HashMap<ShardKey, (String, Option<String>)>,
    /// The shards that failed the last statement run whole (for the failover retry).
    failed: Vec<ShardKey>,
    /// A replica failed the last read run whole (it goes again to the primaries).
    replica_failed: bool,
}

impl Routed {
    pub fn new(router: Arc<Router>, database: Option<String>) -> Self {
        Routed {
            conns: HashMap::new(),
            default_keyspace: database,
            tx: None,
            mode: router.mode,
            xid: None,
            begin: b"BEGIN".to_vec(),
            sets: Vec::new(),
            autocommit: true,
            last_insert_id: LastInsertId::None,
            statement_max_rows: None,
            target_shard: None,
            statements: HashMap::new(),
            next_statement_id: 1,
            terms: HashMap::new(),
            read_replicas: router.replica_reads,
            statement_target: None,
            replica_conns: HashMap::new(),
            last_writes: HashMap::new(),
            failed: Vec::new(),
            replica_failed: false,
            router,
        }
    }

    /// Whether this statement's reads go to replicas: outside transactions, as the
    /// statement's hint or else the session says.
    fn reads_from_replicas(&self) -> bool {
        self.tx.is_none() && self.statement_target.unwrap_or(self.read_replicas)
    }

    /// Closes the session's connection to shard `key`'s primary (it broke, or the
    /// primary moved): statements prepared on it must be prepared again.
    pub(super) fn forget(&mut self, key: &ShardKey) {
        self.conns.remove(key);
        for stmt in self.statements.values_mut() {
            stmt.forget_shard(key);
        }
    }

    /// The shards of the open transaction, in the order they joined.
    pub(super) fn tx_shards(&self) -> Option<&Vec<ShardKey>> {
        self.tx.as_ref()
    }

    /// Whether a transaction is open.
    fn in_any_transaction(&self) -> bool {
        self.tx.is_some()
    }

    /// Whether shard `key` is part of the open transaction.
    fn in_transaction(&self, key: &ShardKey) -> bool {
        self.tx.as_ref().is_some_and(|t| t.contains(key))
    }

    pub(super) fn status_flags(&self) -> u16 {
        let mut s = 0;
        if self.autocommit {
            s |= status::AUTOCOMMIT;
        }
        if self
            .tx
            .as_ref()
            .is_some_and(|t| self.autocommit || !t.is_empty())
        {
            s |= status::IN_TRANS;
        }
        s
    }

    /// Closes every shard connection.
    pub async fn close(&mut self) {
        for (_, up) in self.conns.drain() {
            up.quit().await;
        }
        for (_, (_, up)) in self.replica_conns.drain() {
            up.quit().await;
        }
    }
}

/// The most rows a `/* shardcar: max_merge_rows=N */` comment may ask a merge to hold.
const MAX_MERGE_ROWS_HINT: usize = 10_000_000;

/// How deep materializations may nest, and how many steps one statement may take.
const MAX_MATERIALIZE_DEPTH: usize = 8;
const MAX_MATERIALIZE_STEPS: usize = 16;

/// Who knows the session's `LAST_INSERT_ID()`: the sidecar (ids it took from a sequence or
/// saw in a combined OK), or the shard that ran the last statement relayed raw.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LastInsertId {
    None,
    Sidecar(u64),
    Shard(ShardKey),
}

/// A combined answer, before it is sent.
#[derive(Debug)]
pub(super) enum Outcome {
    Ok(OkPacket),
    Rows(Vec<ColumnDefinition>, Vec<Row>, u16),
}

pub(super) fn err(code: error_codes::ErrorCode, msg: impl Into<String>) -> ErrPacket {
    ErrPacket::new(code, msg)
}

impl Session {
    /// Whether the session has a transaction open.
    pub(super) fn in_any_transaction(&self) -> bool {
        self.routed.as_ref().is_some_and(Routed::in_any_transaction)
    }

    pub(super) fn routed(&mut self) -> Result<&mut Routed, End> {
        self.routed
            .as_mut()
            .ok_or(End::Refused("routing state missing"))
    }

    /// Plans and runs one `COM_QUERY` in sharded mode.
    pub(super) async fn routed_query(&mut self, packet: &Packet) -> Result<(), End> {
        let text = String::from_utf8_lossy(packet.payload.get(1..).unwrap_or_default());
        let hint = shardcar_filter::sql::lexer::shardcar_hint(&text, "max_merge_rows")
            .and_then(|v| v.parse::<usize>().ok())
            .map(|n| n.clamp(1, MAX_MERGE_ROWS_HINT));
        let statement_target = shardcar_filter::sql::lexer::shardcar_hint(&text, "target")
            .and_then(|t| match t.to_ascii_lowercase().as_str() {
                "replica" | "rdonly" => Some(true),
                "primary" | "master" => Some(false),
                _ => None,
            });
        let (router, default_keyspace, target) = {
            let r = self.routed()?;
            r.statement_max_rows = hint;
            r.statement_target = statement_target;
            (r.router.clone(), r.default_keyspace.clone(), r.target_shard)
        };
        if let (Some(shard), Some(ks)) = (target, default_keyspace.clone()) {
            let words = shardcar_filter::sql::lexer::leading_words(&text, 1);
            let session_statement = matches!(
                words.first().map(String::as_str),
                Some(
                    "BEGIN"
                        | "START"
                        | "COMMIT"
                        | "ROLLBACK"
                        | "SAVEPOINT"
                        | "RELEASE"
                        | "SET"
                        | "USE"
                )
            );
            if !session_statement {
                return self.run_route(Route::pass(&ks, vec![shard]), packet).await;
            }
        }
        let cache_key = match router.cached_route(default_keyspace.as_deref(), &text) {
            Ok(route) => {
                self.shared.metrics.plan_cache(true);
                return self.run_route(route, packet).await;
            }
            Err(key) => key,
        };
        self.shared.metrics.plan_cache(false);
        let ctx = PlanContext {
            default_keyspace: default_keyspace.as_deref(),
        };
        let planned = plan::plan(&router.schema(), &text, &ctx);
        if let (Some(key), Ok(p)) = (cache_key, planned.as_ref()) {
            router.remember(key, ctx.default_keyspace, p);
        }
        debug!(statement = %text, plan = ?planned, "planned");
        let metrics = self.shared.metrics.clone();
        match planned {
            Err(e) => {
                metrics.routed("refused");
                self.refuse(&e).await
            }
            Ok(Plan::Route(route)) => self.run_route(route, packet).await,
            Ok(p @ (Plan::Insert(_) | Plan::Materialize(_) | Plan::AllShards { .. })) => {
                match self.outcome_of(p, &text).await {
                    Some(outcome) => self.respond(outcome).await,
                    None => Ok(()),
                }
            }
            Ok(Plan::Transaction(t)) => {
                metrics.routed("local");
                self.transaction(t, &packet.payload[1..]).await
            }
            Ok(Plan::Set { autocommit }) => {
                metrics.routed("local");
                self.set(&packet.payload[1..], autocommit).await
            }
            Ok(Plan::TransactionMode(mode)) => {
                metrics.routed("local");
                self.set_transaction_mode(&mode).await
            }
            Ok(Plan::Use(target)) => {
                metrics.routed("local");
                self.use_target(target).await
            }
            Ok(Plan::Answer { columns, rows }) => {
                metrics.routed("local");
                self.send_rows(&columns, rows, 0).await
            }
            Ok(Plan::SessionValue { function, column }) => {
                metrics.routed("local");
                let r = self.routed()?;
                let (col, value) = match function {
                    plan::SessionFunction::Database => (
                        ColumnDefinition::new(column.as_str(), column_type::VAR_STRING),
                        r.default_keyspace.clone().map(String::into_bytes),
                    ),
                    plan::SessionFunction::TransactionMode => (
                        ColumnDefinition::new(column.as_str(), column_type::VAR_STRING),
                        Some(r.mode.session_name().as_bytes().to_vec()),
                    ),
                    plan::SessionFunction::LastInsertId => {
                        let id = match r.last_insert_id.clone() {
                            LastInsertId::None => 0,
                            LastInsertId::Sidecar(id) => id,
                            LastInsertId::Shard(key) => {
                                // The shard's own connection value, exactly as MySQL keeps it.
                                return self.passthrough(&key, packet).await;
                            }
                        };
                        let mut c = ColumnDefinition::new(column.as_str(), column_type::LONGLONG);
                        c.flags |= shardcar_filter::protocol::constants::column_flags::UNSIGNED
                            | shardcar_filter::protocol::constants::column_flags::NOT_NULL;
                        (c, Some(id.to_string().into_bytes()))
                    }
                };
                self.send_rows(&[col], vec![vec![value]], 0).await
            }
            Ok(Plan::ShowDatabases) => {
                metrics.routed("local");
                let mut names: Vec<Vec<u8>> = vec![b"information_schema".to_vec()];
                names.extend(
                    router
                        .schema()
                        .keyspaces()
                        .map(|k| k.name.clone().into_bytes()),
                );
                let rows = names.into_iter().map(|n| vec![Some(n)]).collect();
                let col = ColumnDefinition::new("Database", column_type::VAR_STRING);
                self.send_rows(&[col], rows, 0).await
            }
        }
    }

    /// Runs a plan that needs no raw relay and returns its combined answer; `None` for
    /// plans answered another way (session statements).
    pub(super) async fn outcome_of(
        &mut self,
        plan: Plan,
        text: &str,
    ) -> Option<Result<Outcome, ErrPacket>> {
        let router = self.router_ref().ok()?;
        match plan {
            Plan::Route(mut route) => {
                if let Err(e) = Box::pin(self.narrow_by_lookup(&mut route, 0)).await {
                    return Some(Err(e));
                }
                if let Some(owner) = route.owner_rows.take() {
                    return Some(Box::pin(self.owner_write(route, &owner, text, 0)).await);
                }
                let jobs = Self::jobs(&route, text.as_bytes());
                Some(
                    self.execute(jobs, route.merge, route.replicated, None)
                        .await,
                )
            }
            Plan::Insert(mut insert) => {
                self.shared.metrics.routed("multi");
                let mut first_id = None;
                if let Some(need) = insert.sequence.clone() {
                    match router
                        .next_ids(&need.keyspace, &need.table, need.count)
                        .await
                    {
                        Ok(first) => first_id = insert.fill_sequence(first),
                        Err(e) => {
                            return Some(Err(err(
                                error_codes::ER_UNKNOWN_ERROR,
                                format!("could not get sequence values: {e}"),
                            )))
                        }
                    }
                }
                let (mut statements, writes) = match insert.statements(&router.schema()) {
                    Ok(s) => s,
                    Err(e) => return Some(Err(e.to_err_packet())),
                };
                let skipped = match Box::pin(self.lookup_writes_before(&writes, 0)).await {
                    Ok(skipped) => skipped,
                    Err(e) => return Some(Err(e)),
                };
                // One warning per skipped row, as MySQL gives per ignored duplicate.
                let skipped_warnings = u16::try_from(skipped.len()).unwrap_or(u16::MAX);
                if !skipped.is_empty() {
                    // Rows whose unique lookup value is another row's: INSERT IGNORE skips
                    // them as MySQL would; an upsert would have to update that other row.
                    if insert.is_upsert() {
                        return Some(Err(err(
                            error_codes::ER_NOT_SUPPORTED_YET,
                            "This version of Shardcar doesn't yet support 'INSERT ... ON DUPLICATE KEY UPDATE of a row whose unique lookup vindex value belongs to a row of another shard'",
                        )));
                    }
                    if insert.drop_rows(&skipped) == 0 {
                        let ok = OkPacket {
                            warnings: skipped_warnings,
                            ..OkPacket::default()
                        };
                        return Some(Ok(Outcome::Ok(ok)));
                    }
                    statements = match insert.statements(&router.schema()) {
                        Ok((s, _)) => s,
                        Err(e) => return Some(Err(e.to_err_packet())),
                    };
                }
                let jobs: Vec<(ShardKey, Vec<u8>)> = statements
                    .into_iter()
                    .map(|(i, sql)| ((insert.keyspace.clone(), i), sql.into_bytes()))
                    .collect();
                let mut outcome = self
                    .execute(jobs, None, insert.is_replicated(), first_id)
                    .await;
                if let Ok(Outcome::Ok(ok)) = &mut outcome {
                    ok.warnings = ok.warnings.saturating_add(skipped_warnings);
                }
                Box::pin(self.lookup_writes_after(&writes, outcome.is_ok(), 0)).await;
                Some(outcome)
            }
            Plan::Materialize(m) => Some(Box::pin(self.materialize(m, 0)).await),
            Plan::AllShards { keyspace } => {
                self.shared.metrics.routed("multi");
                let n = router
                    .schema()
                    .keyspace(&keyspace)
                    .map_or(0, |k| k.shards.len());
                let jobs = (0..n)
                    .map(|i| ((keyspace.clone(), i), text.as_bytes().to_vec()))
                    .collect();
                Some(self.execute(jobs, None, true, None).await)
            }
            _ => None,
        }
    }

    pub(super) async fn refuse(&mut self, e: &PlanError) -> Result<(), End> {
        let packet = e.to_err_packet();
        self.shared.metrics.error(packet.code, ErrorOrigin::Sidecar);
        self.send_err(&packet).await
    }

    pub(super) async fn send_err(&mut self, e: &ErrPacket) -> Result<(), End> {
        self.client
            .send_error(1, e, &self.shared.metrics)
            .await
            .map_err(|_| End::ClientGone)
    }

    pub(super) async fn send_ok(&mut self, mut ok: OkPacket) -> Result<(), End> {
        if let Some(routed) = self.routed.as_ref() {
            ok.status |= routed.status_flags();
        }
        let payload = ok.encode(self.auth.capabilities);
        let mut out = Vec::with_capacity(payload.len() + 4);
        let mut seq = 1;
        shardcar_filter::protocol::packet::write_packet(&mut out, &mut seq, &payload);
        self.client
            .send(&out, &self.shared.metrics)
            .await
            .map_err(|_| End::ClientGone)
    }

    pub(super) async fn send_rows(
        &mut self,
        columns: &[ColumnDefinition],
        rows: Vec<Row>,
        warnings: u16,
    ) -> Result<(), End> {
        let status = self.routed()?.status_flags();
        let mut w = ResultSetWriter::new(self.auth.capabilities, RowFormat::Text, 1);
        let mut out = Vec::new();
        w.columns(&mut out, columns, status);
        let mut payload = Vec::new();
        for row in &rows {
            payload.clear();
            let cells: Vec<Option<&[u8]>> = row.iter().map(|c| c.as_deref()).collect();
            encode_text_row_cells(&cells, &mut payload);
            w.raw_row(&mut out, &payload);
            if out.len() > 256 * 1024 {
                self.client
                    .send(&out, &self.shared.metrics)
                    .await
                    .map_err(|_| End::ClientGone)?;
                out.clear();
            }
        }
        w.finish(&mut out, status, warnings);
        self.client
            .send(&out, &self.shared.metrics)
            .await
            .map_err(|_| End::ClientGone)
    }

    /// The connection to shard `key`'s primary, opened (and given the session's SET
    /// statements) when missing. A connection from an older term is replaced — inside a
    /// transaction that ends the transaction with a retryable error — and while the
    /// shard is between primaries the failover buffer holds the statement.
    pub(super) async fn shard_conn(&mut self, key: &ShardKey) -> Result<&mut Upstream, ErrPacket> {
        self.primary_conn(key, None).await
    }

    /// As [`Session::shard_conn`]; with `failed_term`, the primary of that term just
    /// failed the statement, so only a newer one will do.
    pub(super) async fn primary_conn(
        &mut self,
        key: &ShardKey,
        failed_term: Option<u64>,
    ) -> Result<&mut Upstream, ErrPacket> {
        let missing = || err(error_codes::ER_UNKNOWN_ERROR, "routing state missing");
        let routed = self.routed.as_ref().ok_or_else(missing)?;
        let router = routed.router.clone();
        if let Some(&term) = routed.terms.get(key) {
            let now = router.directory.snapshot().shard(key).map_or(0, |s| s.term);
            if now > term || failed_term.is_some() {
                let in_tx = routed.in_transaction(key);
                self.drop_conn(key);
                if in_tx {
                    let _ = self.finish_transaction(b"ROLLBACK").await;
                    let r = self.routed.as_mut().ok_or_else(missing)?;
                    r.tx = if r.autocommit { None } else { Some(Vec::new()) };
                    self.shared.metrics.failover.aborted_transaction();
                    return Err(err(
                        error_codes::ER_LOCK_DEADLOCK,
                        format!(
                            "Transaction rolled back: the primary of {}/{} changed (term {term} to {}); retry the transaction",
                            key.0,
                            router.shard_name(key),
                            now.max(term + 1)
                        ),
                    ));
                }
            }
        }
        let mut after = failed_term;
        let mut attempts = 0;
        while !self
            .routed
            .as_ref()
            .ok_or_else(missing)?
            .conns
            .contains_key(key)
        {
            let name = router.shard_name(key);
            let (settings, term, buffered) = router
                .directory
                .primary(key, &name, after)
                .await
                .inspect_err(|_| {
                    self.shared.metrics.failover.buffer("failed");
                })?;
            if let Buffered::Waited(d) = buffered {
                self.shared.metrics.failover.buffer("served");
                self.shared.metrics.failover.buffer_wait(d.as_secs_f64());
                debug!(keyspace = %key.0, shard = %name, waited_ms = d.as_millis() as u64, "buffered statement goes to the new primary");
            }
            match self.open_shard_conn(&settings).await {
                Ok(up) => {
                    let r = self.routed.as_mut().ok_or_else(missing)?;
                    r.conns.insert(key.clone(), up);
                    r.terms.insert(key.clone(), term);
                }
                // The primary (or its mysqld) is unreachable: nothing ran, so wait for the
                // next primary, as for a statement it refused.
                Err(e)
                    if router.directory.is_dynamic()
                        && endpoints::not_executed(e.code)
                        && attempts < 5 =>
                {
                    attempts += 1;
                    self.shared.metrics.failover.buffer("retried");
                    debug!(keyspace = %key.0, shard = %name, error = %e.message, "the primary is unreachable; waiting for the next one");
                    after = Some(term);
                }
                Err(e) => return Err(e),
            }
        }
        self.routed
            .as_mut()
            .ok_or_else(missing)?
            .conns
            .get_mut(key)
            .ok_or_else(|| err(error_codes::ER_UNKNOWN_ERROR, "shard connection missing"))
    }

    /// Logs in to `settings` for this session and replays its SET statements.
    async fn open_shard_conn(
        &mut self,
        settings: &Arc<UpstreamSettings>,
    ) -> Result<Upstream, ErrPacket> {
        let sets = self
            .routed
            .as_ref()
            .map(|r| r.sets.clone())
            .unwrap_or_default();
        let params = self.login_params(settings.database.clone());
        let started = Instant::now();
        let result = Upstream::connect(settings, params).await;
        self.shared
            .metrics
            .upstream_connect(result.is_ok(), started.elapsed().as_secs_f64());
        let mut up = result.map_err(|e| e.to_err_packet())?;
        let caps_now = up.session.capabilities;
        for set in sets {
            session_statement(&mut up, &set, caps_now).await?;
        }
        Ok(up)
    }

    /// A replica of shard `key` for a read (`USE ks@replica`), with its alias: the kept
    /// connection while its replica stays healthy and under the lag threshold, else a new
    /// one to the best replica; `None` when none qualifies (the read goes to the primary).
    async fn take_replica(&mut self, key: &ShardKey) -> Option<(String, Upstream)> {
        let routed = self.routed.as_mut()?;
        let router = routed.router.clone();
        let snapshot = router.directory.snapshot();
        let chosen = snapshot
            .shard(key)?
            .replica(&router.cell, router.max_replica_lag_ms)
            .cloned();
        let chosen = match (routed.replica_conns.remove(key), chosen) {
            (Some((alias, up)), Some(c)) if alias == c.alias => return Some((alias, up)),
            (Some((_, up)), chosen) => {
                up.quit().await;
                chosen?
            }
            (None, chosen) => chosen?,
        };
        match self.open_shard_conn(&chosen.settings).await {
            Ok(up) => Some((chosen.alias, up)),
            Err(e) => {
                warn!(replica = %chosen.alias, error = %e.message, "replica unreachable; reading from the primary");
                None
            }
        }
    }

    /// [`Session::take_replica`], with read-your-writes: a replica that has not applied
    /// the session's last write to the shard within the configured wait is passed over
    /// (kept for later) and the read goes to the primary.
    async fn replica_for_read(&mut self, key: &ShardKey) -> Option<(String, Upstream)> {
        let (alias, mut up) = self.take_replica(key).await?;
        let routed = self.routed.as_mut()?;
        let (Some(wait), Some((gtid, seen_by))) = (
            routed.router.read_your_writes,
            routed.last_writes.get(key).cloned(),
        ) else {
            return Some((alias, up));
        };
        if seen_by.as_deref() == Some(alias.as_str()) {
            return Some((alias, up));
        }
        let sql = format!(
            "SELECT MASTER_GTID_WAIT('{}', {})",
            gtid.replace(['\'', '\\'], ""),
            wait.as_secs_f64()
        );
        let caps = self.auth.capabilities;
        let answer = router::query(&mut up, sql.as_bytes(), caps, 1).await;
        let reached = matches!(&answer, Ok(ShardResult::Rows { rows, .. })
            if rows.first().and_then(|r| r.first()).and_then(|v| v.as_deref()) == Some(b"0"));
        let routed = self.routed.as_mut()?;
        if reached {
            routed
                .last_writes
                .insert(key.clone(), (gtid, Some(alias.clone())));
            return Some((alias, up));
        }
        self.shared.metrics.failover.replica_behind();
        match answer {
            Ok(_) => {
                routed.replica_conns.insert(key.clone(), (alias, up));
            }
            Err(_) => up.quit().await,
        }
        None
    }

    /// With read-your-writes, records the GTID of the session's last write (MariaDB's
    /// `@@last_gtid`) on each of `keys`' primaries, outside transactions (a transaction's
    /// is recorded at its COMMIT).
    pub(super) async fn note_writes(&mut self, keys: &[ShardKey]) {
        let caps = self.auth.capabilities;
        let Some(routed) = self.routed.as_mut() else {
            return;
        };
        if routed.router.read_your_writes.is_none() || routed.tx.is_some() {
            return;
        }
        for key in keys {
            let Some(up) = routed.conns.get_mut(key) else {
                continue;
            };
            let gtid = match router::query(up, b"SELECT @@last_gtid", caps, 1).await {
                Ok(ShardResult::Rows { rows, .. }) => rows
                    .first()
                    .and_then(|r| r.first())
                    .and_then(|v| v.as_deref())
                    .map(|v| String::from_utf8_lossy(v).into_owned()),
                Ok(_) => None,
                Err(_) => {
                    routed.forget(key);
                    None
                }
            };
            if let Some(gtid) = gtid.filter(|g| !g.is_empty()) {
                routed.last_writes.insert(key.clone(), (gtid, None));
            }
        }
    }

    /// Makes `keys` part of the open transaction (sending its BEGIN to shards that join),
    /// refusing a second shard in `single` mode.
    pub(super) async fn join_transaction(&mut self, keys: &[ShardKey]) -> Result<(), ErrPacket> {
        let Some(routed) = self.routed.as_ref() else {
            return Ok(());
        };
        let Some(tx) = routed.tx.clone() else {
            return Ok(());
        };
        let explicit = routed.autocommit;
        let begin = routed.begin.clone();
        let router = routed.router.clone();
        let mode = routed.mode;
        let mut joined = tx;
        for key in keys {
            if joined.contains(key) {
                continue;
            }
            if mode == TransactionMode::Single && !joined.is_empty() {
                return Err(err(
                    error_codes::ER_NOT_SUPPORTED_YET,
                    format!(
                        "This version of Shardcar doesn't yet support 'a transaction across shards in transaction_mode single' (the transaction is on {}/{}, the statement needs {}/{})",
                        joined[0].0, router.shard_name(&joined[0]), key.0, router.shard_name(key)
                    ),
                ));
            }
            if mode == TransactionMode::Twopc {
                self.xa_start(key, explicit).await?;
            } else {
                let caps = self.auth.capabilities;
                let up = self.shard_conn(key).await?;
                if explicit {
                    session_statement(up, &begin, caps).await?;
                }
            }
            joined.push(key.clone());
        }
        if let Some(r) = self.routed.as_mut() {
            r.tx = Some(joined);
        }
        Ok(())
    }

    async fn run_route(&mut self, mut route: Route, packet: &Packet) -> Result<(), End> {
        if let Err(e) = self.narrow_by_lookup(&mut route, 0).await {
            return self.respond(Err(e)).await;
        }
        if route.owner_rows.is_some() {
            let text = String::from_utf8_lossy(&packet.payload[1..]).into_owned();
            return match self.outcome_of(Plan::Route(route), &text).await {
                Some(outcome) => self.respond(outcome).await,
                None => Ok(()),
            };
        }
        if route.is_passthrough() {
            let keys = route_keys(&route);
            let to_replica = !route.write && self.routed()?.reads_from_replicas();
            if to_replica {
                if let Some(replica) = self.replica_for_read(&keys[0]).await {
                    self.shared.metrics.routed("replica");
                    self.shared.metrics.shard_queries(1);
                    return self.relay_on_replica(&keys[0], replica, packet).await;
                }
                self.shared.metrics.failover.replica_read(false);
            }
            if let Err(e) = self.join_transaction(&keys).await {
                return self.send_err(&e).await;
            }
            if route.write {
                if let Some(r) = self.routed.as_mut() {
                    r.last_insert_id = LastInsertId::Shard(keys[0].clone());
                }
            }
            self.shared.metrics.routed("passthrough");
            self.shared.metrics.shard_queries(1);
            let retry = if route.write {
                FailoverRetry::NotExecuted
            } else {
                FailoverRetry::Any
            };
            self.relay_retrying(&keys[0], Command::Query, packet, retry)
                .await?;
            if route.write {
                self.note_writes(&keys[..1]).await;
            }
            return Ok(());
        }
        let jobs = Self::jobs(&route, &packet.payload[1..]);
        self.shared.metrics.routed(if route.merge.is_some() {
            "scatter"
        } else {
            "multi"
        });
        self.run_on_shards(jobs, route.merge, route.replicated, None)
            .await
    }

    /// Relays the client's query to one shard and its answer back, raw.
    async fn passthrough(&mut self, key: &ShardKey, packet: &Packet) -> Result<(), End> {
        self.relay_on(key, Command::Query, packet).await
    }

    /// Relays `packet` (a `command`) to shard `key`'s primary and its answer back raw,
    /// through the same forwarding the unsharded role uses: the shard's connection stands
    /// in as the session's upstream for the command.
    pub(super) async fn relay_on(
        &mut self,
        key: &ShardKey,
        command: Command,
        packet: &Packet,
    ) -> Result<(), End> {
        self.relay_retrying(key, command, packet, FailoverRetry::NotExecuted)
            .await
    }

    /// [`Session::relay_on`]; outside a transaction, when the primary fails the command
    /// in a way `retry` allows before anything reached the client, the command waits in
    /// the failover buffer for the next primary and goes there.
    async fn relay_retrying(
        &mut self,
        key: &ShardKey,
        command: Command,
        packet: &Packet,
        retry: FailoverRetry,
    ) -> Result<(), End> {
        let mut failed_term = None;
        loop {
            if let Err(e) = self.primary_conn(key, failed_term).await {
                return self.send_err(&e).await;
            }
            match self
                .relay_once(key, command, &packet.payload, Some(retry))
                .await?
            {
                Some(term) => failed_term = Some(term),
                None => return Ok(()),
            }
        }
    }

    /// Relays `payload` to the open connection of shard `key`'s primary and its answer
    /// back. With `retry` (and outside a transaction, with a topology that can name a new
    /// primary), a failure of the primary that reached nothing to the client returns the
    /// term of the primary that failed, with the connection closed, instead.
    pub(super) async fn relay_once(
        &mut self,
        key: &ShardKey,
        command: Command,
        payload: &[u8],
        retry: Option<FailoverRetry>,
    ) -> Result<Option<u64>, End> {
        let r = self.routed()?;
        let failover = retry.filter(|_| r.router.directory.is_dynamic() && r.tx.is_none());
        let term = r.terms.get(key).copied().unwrap_or(0);
        let guard = RelayGuard {
            failover,
            ..RelayGuard::default()
        };
        self.upstream = r.conns.remove(key);
        let result = self.forward_with(command, payload, &guard).await;
        let up = self.upstream.take();
        let r = self.routed()?;
        match (result, up) {
            (Ok(response), up) if response.failover => {
                if let Some(up) = up {
                    up.quit().await;
                }
                r.forget(key);
                self.shared.metrics.failover.buffer("retried");
                Ok(Some(term))
            }
            (result, Some(up)) => {
                r.conns.insert(key.clone(), up);
                result.map(|_| None)
            }
            (result, None) => {
                r.forget(key);
                result.map(|_| None)
            }
        }
    }

    /// Relays a read to a replica of shard `key` and keeps the connection for the next.
    async fn relay_on_replica(
        &mut self,
        key: &ShardKey,
        (alias, up): (String, Upstream),
        packet: &Packet,
    ) -> Result<(), End> {
        self.shared.metrics.failover.replica_read(true);
        self.upstream = Some(up);
        let result = self.forward(Command::Query, packet).await;
        if let Some(up) = self.upstream.take() {
            self.routed()?
                .replica_conns
                .insert(key.clone(), (alias, up));
        }
        result
    }

    /// Runs `jobs` (see [`Session::execute`]) and answers the client.
    async fn run_on_shards(
        &mut self,
        jobs: Vec<(ShardKey, Vec<u8>)>,
        merge: Option<MergeSpec>,
        replicated: bool,
        first_insert_id: Option<i64>,
    ) -> Result<(), End> {
        let outcome = self.execute(jobs, merge, replicated, first_insert_id).await;
        self.respond(outcome).await
    }

    pub(super) async fn respond(&mut self, outcome: Result<Outcome, ErrPacket>) -> Result<(), End> {
        match outcome {
            Ok(Outcome::Ok(ok)) => self.send_ok(ok).await,
            Ok(Outcome::Rows(columns, rows, warnings)) => {
                self.send_rows(&columns, rows, warnings).await
            }
            Err(e) => {
                self.shared.metrics.error(e.code, ErrorOrigin::Upstream);
                self.send_err(&e).await
            }
        }
    }

    /// Sends one statement per shard (each joining the open transaction first), reads
    /// every answer whole and combines them: the first error, the merged rows, or the
    /// summed OK packets.
    pub(super) async fn execute(
        &mut self,
        jobs: Vec<(ShardKey, Vec<u8>)>,
        merge: Option<MergeSpec>,
        replicated: bool,
        first_insert_id: Option<i64>,
    ) -> Result<Outcome, ErrPacket> {
        let mut attempts = 0;
        let mut on_replicas = merge.is_some()
            && self
                .routed
                .as_ref()
                .is_some_and(Routed::reads_from_replicas);
        loop {
            let result = self
                .execute_once(
                    &jobs,
                    merge.clone(),
                    replicated,
                    first_insert_id,
                    on_replicas,
                )
                .await;
            let Err(e) = result else {
                let tracks_writes = self
                    .routed
                    .as_ref()
                    .is_some_and(|r| r.router.read_your_writes.is_some());
                if merge.is_none() && tracks_writes {
                    let keys: Vec<ShardKey> = jobs.iter().map(|(k, _)| k.clone()).collect();
                    self.note_writes(&keys).await;
                }
                return result;
            };
            let r = self.routed.as_mut().ok_or_else(|| e.clone())?;
            // A replica failed the read: it goes again, to the primaries.
            if on_replicas && std::mem::take(&mut r.replica_failed) && attempts < 3 {
                on_replicas = false;
                attempts += 1;
                continue;
            }
            // A failover: outside a transaction, a statement no shard ran (one shard, or a
            // read) goes again once the failed shards have new primaries.
            let failed = std::mem::take(&mut r.failed);
            let read = merge.is_some();
            let retry = r.router.directory.is_dynamic()
                && r.tx.is_none()
                && attempts < 3
                && !failed.is_empty()
                && (endpoints::not_executed(e.code) && (jobs.len() == 1 || read)
                    || read && endpoints::connection_broke(e.code));
            if !retry {
                return Err(e);
            }
            attempts += 1;
            self.shared.metrics.failover.buffer("retried");
            for key in failed {
                let term = self
                    .routed
                    .as_ref()
                    .and_then(|r| r.terms.get(&key).copied());
                self.drop_conn(&key);
                self.primary_conn(&key, Some(term.unwrap_or(0))).await?;
            }
        }
    }

    /// One attempt of [`Session::execute`]; the shards that failed are left in
    /// `Routed::failed` (`Routed::replica_failed` when a replica failed a read). With
    /// `on_replicas` each shard's part goes to a replica when one qualifies.
    async fn execute_once(
        &mut self,
        jobs: &[(ShardKey, Vec<u8>)],
        merge: Option<MergeSpec>,
        replicated: bool,
        first_insert_id: Option<i64>,
        on_replicas: bool,
    ) -> Result<Outcome, ErrPacket> {
        if let Some(r) = self.routed.as_mut() {
            r.failed.clear();
            r.replica_failed = false;
        }
        let keys: Vec<ShardKey> = jobs.iter().map(|(k, _)| k.clone()).collect();
        self.join_transaction(&keys).await?;
        let caps = self.auth.capabilities;
        let max_rows = self
            .routed
            .as_ref()
            .and_then(|r| r.statement_max_rows)
            .unwrap_or(self.router_ref()?.max_rows);
        self.shared.metrics.shard_queries(jobs.len() as u64);
        let mut replicas: HashMap<ShardKey, (String, Upstream)> = HashMap::new();
        if on_replicas {
            for key in &keys {
                let replica = self.replica_for_read(key).await;
                self.shared.metrics.failover.replica_read(replica.is_some());
                if let Some(r) = replica {
                    replicas.insert(key.clone(), r);
                }
            }
        }
        // Send everything first so the shards work in parallel, then read.
        let mut sent = Vec::with_capacity(jobs.len());
        for (key, sql) in jobs {
            if let Some((_, up)) = replicas.get_mut(key) {
                if router::send_query(up, sql).await.is_err() {
                    if let Some((_, up)) = replicas.remove(key) {
                        up.quit().await;
                    }
                    self.note_replica_failed();
                    self.drain(&sent, caps, &mut replicas).await;
                    self.keep_replicas(replicas);
                    return Err(not_sent());
                }
                sent.push(key.clone());
                continue;
            }
            let up = match self.shard_conn(key).await {
                Ok(up) => up,
                Err(e) => {
                    self.note_failed(key);
                    self.drain(&sent, caps, &mut replicas).await;
                    self.keep_replicas(replicas);
                    return Err(e);
                }
            };
            if router::send_query(up, sql).await.is_err() {
                self.note_failed(key);
                self.drop_conn(key);
                self.drain(&sent, caps, &mut replicas).await;
                self.keep_replicas(replicas);
                return Err(not_sent());
            }
            sent.push(key.clone());
        }
        let mut results = Vec::with_capacity(sent.len());
        let mut failure: Option<ErrPacket> = None;
        for key in &sent {
            let up = match replicas.get_mut(key) {
                Some((_, up)) => up,
                None => match self.routed.as_mut().and_then(|r| r.conns.get_mut(key)) {
                    Some(up) => up,
                    None => continue,
                },
            };
            match router::read_result(up, caps, max_rows).await {
                Ok(r) => results.push(r),
                Err(ShardError::TooManyRows(n)) => {
                    failure.get_or_insert(too_many_rows(n));
                }
                Err(e) => {
                    warn!(shard = ?key, error = %e, "shard connection failed");
                    if let Some((_, up)) = replicas.remove(key) {
                        up.quit().await;
                        self.note_replica_failed();
                    } else {
                        self.note_failed(key);
                        self.drop_conn(key);
                    }
                    failure.get_or_insert(lost());
                }
            }
        }
        let from_replica: Vec<bool> = sent.iter().map(|k| replicas.contains_key(k)).collect();
        self.keep_replicas(replicas);
        if let Some(e) = failure {
            return Err(e);
        }
        let mut first_error = None;
        for ((key, r), replica) in sent.iter().zip(&results).zip(from_replica) {
            if let ShardResult::Err(e) = r {
                if endpoints::not_executed(e.code) || endpoints::connection_broke(e.code) {
                    if replica {
                        self.note_replica_failed();
                    } else {
                        self.note_failed(key);
                    }
                }
                first_error.get_or_insert_with(|| e.clone());
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        if results.iter().all(|r| matches!(r, ShardResult::Ok(_))) {
            let mut ok = OkPacket::default();
            for r in results.iter().take(if replicated { 1 } else { usize::MAX }) {
                if let ShardResult::Ok(o) = r {
                    ok.affected_rows += o.affected_rows;
                    ok.warnings = ok.warnings.saturating_add(o.warnings);
                    ok.last_insert_id = ok.last_insert_id.max(o.last_insert_id);
                    if ok.info.is_empty() {
                        ok.info = o.info.clone();
                    }
                }
            }
            if results.len() > 1 && !replicated {
                ok.info.clear();
            }
            if let Some(id) = first_insert_id.and_then(|i| u64::try_from(i).ok()) {
                ok.last_insert_id = id;
            }
            if ok.last_insert_id != 0 {
                if let Some(r) = self.routed.as_mut() {
                    r.last_insert_id = LastInsertId::Sidecar(ok.last_insert_id);
                }
            }
            return Ok(Outcome::Ok(ok));
        }
        // Result sets: merge (or concatenate).
        let mut merger = Merger::new(merge.unwrap_or_default(), max_rows);
        let mut warnings: u16 = 0;
        let results: Vec<ShardResult> = if replicated {
            results.into_iter().take(1).collect()
        } else {
            results
        };
        for r in results {
            let ShardResult::Rows {
                columns,
                rows,
                warnings: w,
            } = r
            else {
                continue;
            };
            warnings = warnings.saturating_add(w);
            merger
                .columns(columns)
                .map_err(|e| err(error_codes::ER_UNKNOWN_ERROR, e.to_string()))?;
            for row in rows {
                merger.push(row).map_err(merge_error)?;
            }
        }
        let (columns, rows) = merger.finish().map_err(merge_error)?;
        Ok(Outcome::Rows(columns, rows, warnings))
    }

    pub(super) fn router_ref(&self) -> Result<Arc<Router>, ErrPacket> {
        self.routed
            .as_ref()
            .map(|r| r.router.clone())
            .ok_or_else(|| err(error_codes::ER_UNKNOWN_ERROR, "routing state missing"))
    }

    /// Records that shard `key` failed the statement being executed.
    fn note_failed(&mut self, key: &ShardKey) {
        if let Some(r) = self.routed.as_mut() {
            r.failed.push(key.clone());
        }
    }

    pub(super) fn drop_conn(&mut self, key: &ShardKey) {
        if let Some(r) = self.routed.as_mut() {
            r.forget(key);
        }
    }

    /// The jobs of a route: its statement (or `text`) on each of its shards, or the
    /// shard's own statement where the route has one.
    pub(super) fn jobs(route: &Route, text: &[u8]) -> Vec<(ShardKey, Vec<u8>)> {
        let sql = route.query.as_deref().map_or(text, str::as_bytes);
        route
            .shards
            .iter()
            .map(|&i| {
                let own = route
                    .shard_queries
                    .iter()
                    .find(|(shard, _)| *shard == i)
                    .map(|(_, q)| q.as_bytes());
                ((route.keyspace.clone(), i), own.unwrap_or(sql).to_vec())
            })
            .collect()
    }

    /// Plans and runs `sql` for its rows, without answering the client (the inner part of
    /// a materialization).
    pub(super) async fn collect(
        &mut self,
        sql: String,
        depth: usize,
    ) -> Result<Outcome, ErrPacket> {
        if depth > MAX_MATERIALIZE_DEPTH {
            return Err(
                PlanError::unsupported("a statement nested this deeply across shards")
                    .to_err_packet(),
            );
        }
        match self.plan_text(&sql)? {
            Plan::Materialize(m) => Box::pin(self.materialize(m, depth + 1)).await,
            p @ (Plan::Route(_) | Plan::Insert(_)) => {
                match Box::pin(self.outcome_of(p, &sql)).await {
                    Some(outcome) => outcome,
                    None => Err(PlanError::unsupported("this statement").to_err_packet()),
                }
            }
            _ => Err(
                PlanError::unsupported("this statement inside a query across shards")
                    .to_err_packet(),
            ),
        }
    }

    /// Plans and runs `sql` one level deeper than `depth`, and returns its rows; a
    /// statement that answers with an OK packet gets `no_rows`.
    pub(super) async fn collect_rows(
        &mut self,
        sql: String,
        depth: usize,
        no_rows: &str,
    ) -> Result<(Vec<ColumnDefinition>, Vec<Row>), ErrPacket> {
        match Box::pin(self.collect(sql, depth + 1)).await? {
            Outcome::Rows(columns, rows, _) => Ok((columns, rows)),
            Outcome::Ok(_) => Err(err(error_codes::ER_UNKNOWN_ERROR, no_rows)),
        }
    }

    /// Plans `sql` in the session's context.
    fn plan_text(&self, sql: &str) -> Result<Plan, ErrPacket> {
        let router = self.router_ref()?;
        let default_keyspace = self
            .routed
            .as_ref()
            .and_then(|r| r.default_keyspace.as_deref());
        let ctx = PlanContext { default_keyspace };
        plan::plan(&router.schema(), sql, &ctx).map_err(|e| e.to_err_packet())
    }

    /// Runs the inner part of `m`, puts its rows into the outer statement and runs that
    /// (materializing again where the outer statement still needs it).
    pub(super) async fn materialize(
        &mut self,
        mut m: Materialize,
        depth: usize,
    ) -> Result<Outcome, ErrPacket> {
        self.shared.metrics.routed("materialized");
        for _ in 0..MAX_MATERIALIZE_STEPS {
            let (columns, rows) = self
                .collect_rows(m.inner.clone(), depth, "a subquery returned no result set")
                .await?;
            let outer = m.outer_sql(&columns, &rows);
            debug!(statement = %outer, "materialized");
            match self.plan_text(&outer)? {
                Plan::Materialize(next) => m = next,
                Plan::Route(route) => {
                    return match Box::pin(self.outcome_of(Plan::Route(route), &outer)).await {
                        Some(outcome) => outcome,
                        None => Err(PlanError::unsupported("this statement").to_err_packet()),
                    };
                }
                _ => {
                    return Err(
                        PlanError::unsupported("this statement across shards").to_err_packet()
                    )
                }
            }
        }
        Err(
            PlanError::unsupported("a statement needing this many steps across shards")
                .to_err_packet(),
        )
    }

    /// Reads and discards the answers of statements already sent.
    async fn drain(
        &mut self,
        sent: &[ShardKey],
        caps: u32,
        replicas: &mut HashMap<ShardKey, (String, Upstream)>,
    ) {
        for key in sent {
            if let Some((_, up)) = replicas.get_mut(key) {
                if router::read_result(up, caps, 0).await.is_err() {
                    replicas.remove(key);
                }
                continue;
            }
            let Some(r) = self.routed.as_mut() else {
                return;
            };
            if let Some(up) = r.conns.get_mut(key) {
                if router::read_result(up, caps, 0).await.is_err() {
                    r.forget(key);
                }
            }
        }
    }

    /// Keeps the replica connections a statement used for the session's next reads.
    fn keep_replicas(&mut self, replicas: HashMap<ShardKey, (String, Upstream)>) {
        if let Some(r) = self.routed.as_mut() {
            r.replica_conns.extend(replicas);
        }
    }

    fn note_replica_failed(&mut self) {
        if let Some(r) = self.routed.as_mut() {
            r.replica_failed = true;
        }
    }

    async fn transaction(&mut self, t: Transaction, text: &[u8]) -> Result<(), End> {
        match t {
            Transaction::Begin => {
                // An open transaction commits implicitly, as in MySQL.
                if let Err(e) = self.finish_transaction(b"COMMIT").await {
                    return self.send_err(&e).await;
                }
                let r = self.routed()?;
                r.begin = text.to_vec();
                r.tx = Some(Vec::new());
                self.send_ok(OkPacket::default()).await
            }
            Transaction::Commit | Transaction::Rollback => {
                let verb: &[u8] = if t == Transaction::Commit {
                    b"COMMIT"
                } else {
                    b"ROLLBACK"
                };
                let result = self
                    .finish_transaction(if text.is_empty() { verb } else { text })
                    .await;
                let r = self.routed()?;
                r.tx = if r.autocommit { None } else { Some(Vec::new()) };
                match result {
                    Ok(warning) => {
                        let ok = OkPacket {
                            warnings: u16::from(warning),
                            ..OkPacket::default()
                        };
                        self.send_ok(ok).await
                    }
                    Err(e) => self.send_err(&e).await,
                }
            }
            Transaction::Savepoint => {
                let shards = self.routed()?.tx.clone().unwrap_or_default();
                if shards.is_empty() {
                    return self.send_ok(OkPacket::default()).await;
                }
                let jobs = shards.into_iter().map(|k| (k, text.to_vec())).collect();
                self.run_on_shards(jobs, None, true, None).await
            }
        }
    }

    /// Sends `verb` (COMMIT or ROLLBACK) to every shard of the open transaction, shard by
    /// shard. Returns whether a later shard failed after an earlier one committed (the
    /// client gets a warning), or the error when the first shard failed.
    async fn finish_transaction(&mut self, verb: &[u8]) -> Result<bool, ErrPacket> {
        let Some(r) = self.routed.as_mut() else {
            return Ok(false);
        };
        let shards = r.tx.take().unwrap_or_default();
        let committed = verb
            .trim_ascii_start()
            .get(..6)
            .is_some_and(|v| v.eq_ignore_ascii_case(b"COMMIT"));
        if let Some(xid) = r.xid.take() {
            self.finish_xa(xid, &shards, committed).await?;
            if committed {
                self.note_writes(&shards).await;
            }
            return Ok(false);
        }
        let caps = self.auth.capabilities;
        let mut done = 0;
        let mut first_error = None;
        for key in &shards {
            let Some(up) = self.routed.as_mut().and_then(|r| r.conns.get_mut(key)) else {
                // The connection broke during the transaction: its shard rolled back.
                first_error.get_or_insert(lost());
                continue;
            };
            match router::query(up, verb, caps, 1).await {
                Ok(ShardResult::Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Ok(_) => done += 1,
                Err(e) => {
                    warn!(shard = ?key, error = %e, "shard lost during COMMIT/ROLLBACK");
                    self.drop_conn(key);
                    first_error.get_or_insert(lost());
                }
            }
        }
        if committed && done > 0 {
            self.note_writes(&shards).await;
        }
        match first_error {
            None => Ok(false),
            Some(e) if done == 0 => Err(e),
            Some(e) => {
                warn!(error = %e.message, "transaction partially committed (transaction_mode multi)");
                Ok(true)
            }
        }
    }

    async fn set(&mut self, text: &[u8], autocommit: Option<bool>) -> Result<(), End> {
        let caps = self.auth.capabilities;
        // Try it on one shard first so that a bad SET is refused without being recorded.
        let keys: Vec<ShardKey> = self.routed()?.conns.keys().cloned().collect();
        let probe = match keys.first().cloned() {
            Some(k) => k,
            None => {
                let router = self.routed()?.router.clone();
                let ks = self
                    .routed()?
                    .default_keyspace
                    .clone()
                    .or_else(|| router.schema().keyspaces().next().map(|k| k.name.clone()));
                match ks {
                    Some(ks) => (ks, 0),
                    None => return self.send_ok(OkPacket::default()).await,
                }
            }
        };
        let mut reply = OkPacket::default();
        let mut all = vec![probe.clone()];
        all.extend(keys.into_iter().filter(|k| *k != probe));
        for (n, key) in all.iter().enumerate() {
            let up = match self.shard_conn(key).await {
                Ok(up) => up,
                Err(e) => return self.send_err(&e).await,
            };
            match router::query(up, text, caps, 1).await {
                Ok(ShardResult::Err(e)) if n == 0 => return self.send_err(&e).await,
                Ok(ShardResult::Ok(ok)) if n == 0 => reply.warnings = ok.warnings,
                Ok(_) => {}
                Err(_) => {
                    self.routed()?.forget(key);
                    return self.send_err(&lost()).await;
                }
            }
            if n == 0 {
                // The probe connection was just opened with the old SET list; record now.
                self.routed()?.sets.push(text.to_vec());
            }
        }
        let r = self.routed()?;
        if let Some(on) = autocommit {
            if on && !r.autocommit {
                // Turning autocommit on commits the open transaction (the shards did).
                r.tx = None;
            }
            r.autocommit = on;
            if !on && r.tx.is_none() {
                r.tx = Some(Vec::new());
            }
        }
        self.send_ok(reply).await
    }

    /// COM_INIT_DB in sharded mode: the keyspace (with a `:shard` or `@type` target, as
    /// `USE` takes) becomes the default.
    pub(super) async fn routed_init_db(&mut self, packet: &Packet) -> Result<(), End> {
        let name =
            String::from_utf8_lossy(packet.payload.get(1..).unwrap_or_default()).into_owned();
        match plan::UseTarget::parse(&name) {
            Some(target) => self.use_target(target).await,
            None => self.refuse(&PlanError::UnknownKeyspace(name)).await,
        }
    }

    /// `USE ks[:shard][@type]`: the session's default keyspace, shard target and whether
    /// its reads go to replicas.
    async fn use_target(&mut self, target: plan::UseTarget) -> Result<(), End> {
        let router = self.routed()?.router.clone();
        let schema = router.schema();
        let Some(keyspace) = schema.keyspace(&target.keyspace) else {
            return self
                .refuse(&PlanError::UnknownKeyspace(target.keyspace))
                .await;
        };
        let replicas = match target.tablet_type.as_deref() {
            None => router.replica_reads,
            Some("primary" | "master") => false,
            Some("replica" | "rdonly") => true,
            Some(other) => {
                let e = PlanError::UnknownKeyspace(format!("{}@{other}", target.keyspace));
                return self.refuse(&e).await;
            }
        };
        let shard = match &target.shard {
            None => None,
            Some(name) => {
                match keyspace
                    .shards
                    .iter()
                    .position(|s| s.name.eq_ignore_ascii_case(name))
                {
                    Some(i) => Some(i),
                    None => {
                        let e = PlanError::UnknownKeyspace(format!("{}:{name}", target.keyspace));
                        return self.refuse(&e).await;
                    }
                }
            }
        };
        let r = self.routed()?;
        r.default_keyspace = Some(target.keyspace);
        r.target_shard = shard;
        r.read_replicas = replicas;
        self.send_ok(OkPacket::default()).await
    }

    /// Commands other than COM_QUERY in sharded mode.
    pub(super) async fn routed_command(
        &mut self,
        command: Command,
        packet: &Packet,
    ) -> Result<(), End> {
        match command {
            Command::InitDb => self.routed_init_db(packet).await,
            Command::Ping => self.send_ok(OkPacket::default()).await,
            Command::StmtPrepare => self.routed_prepare(packet).await,
            Command::StmtExecute => self.routed_execute(packet).await,
            Command::StmtClose => self.routed_close(packet).await,
            Command::StmtReset => self.routed_reset(packet).await,
            Command::StmtSendLongData => self.routed_long_data(packet),
            Command::ResetConnection => {
                if let Some(r) = self.routed.as_mut() {
                    r.statements.clear();
                    r.close().await;
                    r.tx = None;
                    r.sets.clear();
                    r.autocommit = true;
                }
                self.send_ok(OkPacket::default()).await
            }
            Command::FieldList
            | Command::Statistics
            | Command::ProcessInfo
            | Command::Debug
            | Command::Refresh => {
                let router = self.routed()?.router.clone();
                let ks = self.routed()?.default_keyspace.clone();
                let ctx = PlanContext {
                    default_keyspace: ks.as_deref(),
                };
                match plan::plan(&router.schema(), "SELECT 1", &ctx) {
                    Ok(Plan::Route(r)) => {
                        let key = (r.keyspace.clone(), r.shards.first().copied().unwrap_or(0));
                        self.relay_on(&key, command, packet).await
                    }
                    Ok(_) => self.send_ok(OkPacket::default()).await,
                    Err(e) => self.refuse(&e).await,
                }
            }
            _ => {
                let e = PlanError::unsupported(format!(
                    "{command:?} on a sharded keyspace (use the text protocol)"
                ));
                self.refuse(&e).await
            }
        }
    }
}

/// Runs a session statement (SET, BEGIN) on one shard connection: its ERR, or a lost
/// connection, is the caller's failure.
pub(super) async fn session_statement(
    up: &mut Upstream,
    sql: &[u8],
    caps: u32,
) -> Result<(), ErrPacket> {
    match router::query(up, sql, caps, 1).await {
        Ok(ShardResult::Err(e)) => Err(e),
        Ok(_) => Ok(()),
        Err(e) => Err(err(error_codes::ER_NET_READ_ERROR, e.to_string())),
    }
}

/// The shards a route reaches, as keys.
fn route_keys(route: &Route) -> Vec<ShardKey> {
    route
        .shards
        .iter()
        .map(|&i| (route.keyspace.clone(), i))
        .collect()
}

/// Sending a statement to a shard failed: it did not run there.
fn not_sent() -> ErrPacket {
    err(
        error_codes::ER_CONNECT_TO_FOREIGN_DATA_SOURCE,
        "Lost connection to MySQL server before the statement was sent",
    )
}

pub(super) fn lost() -> ErrPacket {
    err(
        error_codes::ER_NET_READ_ERROR,
        "Lost connection to MySQL server during query",
    )
}

fn too_many_rows(n: usize) -> ErrPacket {
    err(
        error_codes::ER_TOO_BIG_SELECT,
        format!("in-memory row count exceeded allowed limit of {n} rows while merging results from several shards (sharding.max_merge_rows)"),
    )
}

fn merge_error(e: shardcar_filter::plan::merge::MergeError) -> ErrPacket {
    match e {
        shardcar_filter::plan::merge::MergeError::TooManyRows(n) => too_many_rows(n),
        other => err(error_codes::ER_UNKNOWN_ERROR, other.to_string()),
    }
}
