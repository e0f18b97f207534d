//! Prepared statements in sharded mode. A statement is prepared on the shard that will run
//! it, lazily per shard, under the id the client knows; COM_STMT_EXECUTE binds the values,
//! plans with them (so `WHERE id = ?` goes to one shard) and either relays the execute to
//! that shard raw, or runs the statement with its values inlined as text (scatter,
//! multi-row INSERT, materialization) and answers in the binary protocol.
//! Session statements (BEGIN, COMMIT, SET ...) prepared without parameters are emulated.

use std::collections::HashMap;

use shardcar_filter::plan::cache::{self, Template};
use shardcar_filter::plan::{self, params, Plan, PlanContext, PlanError};
use shardcar_filter::protocol::error_codes;
use shardcar_filter::protocol::exchange::{ResponseKind, ResponseScanner, Scan};
use shardcar_filter::protocol::packet::{write_packet, Packet};
use shardcar_filter::protocol::resultset::{ResultSetWriter, RowFormat};
use shardcar_filter::protocol::stmt::{cursor_type, ParamType, StmtExecute, StmtPrepareOk};
use shardcar_filter::protocol::value::Value as ProtoValue;
use shardcar_filter::protocol::{Command, ErrPacket};
use tokio::io::AsyncReadExt;

use super::relay::FailoverRetry;
use super::router::ShardKey;
use super::session::{End, Session};
use super::sharded::{err, lost, Outcome};
use super::upstream;

/// One prepared statement of a session.
#[derive(Debug)]
pub(super) struct Prepared {
    sql: String,
    num_params: u16,
    /// Parameter types of the last execute (clients send them once).
    types: Option<Vec<ParamType>>,
    /// The statement's id on each shard it is prepared on.
    shards: HashMap<ShardKey, u32>,
    /// A session statement run through the text path.
    emulated: bool,
    /// COM_STMT_SEND_LONG_DATA was used: not supported across shards.
    long_data: bool,
    /// How executes route without planning: `None` until the first execute checked the
    /// template against the planner, `Some(None)` when the shape has none.
    template: Option<Option<Template>>,
}

impl Prepared {
    /// The statement is no longer prepared on shard `key` (its connection was closed).
    pub(super) fn forget_shard(&mut self, key: &ShardKey) {
        self.shards.remove(key);
    }
}

fn statement_id(payload: &[u8]) -> Option<u32> {
    let b = payload.get(1..5)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn unknown(id: u32, what: &str) -> ErrPacket {
    err(
        error_codes::ER_UNKNOWN_STMT_HANDLER,
        format!("Unknown prepared statement handler ({id}) given to {what}"),
    )
}

impl Session {
    /// Prepares `sql` on shard `key`: the raw response and the shard's statement id (none
    /// when the shard answered with an error).
    async fn prepare_on(
        &mut self,
        key: &ShardKey,
        sql: &[u8],
    ) -> Result<(Vec<u8>, Option<u32>, u16), ErrPacket> {
        let caps = self.auth.capabilities;
        let up = self.shard_conn(key).await?;
        let mut payload = Vec::with_capacity(sql.len() + 1);
        payload.push(Command::StmtPrepare as u8);
        payload.extend_from_slice(sql);
        let mut out = Vec::with_capacity(payload.len() + 4);
        let mut seq = 0;
        write_packet(&mut out, &mut seq, &payload);
        if upstream::write_flush(&mut up.stream, &out).await.is_err() {
            self.drop_conn(key);
            return Err(lost());
        }
        let mut scanner =
            ResponseScanner::after_command(ResponseKind::Prepare, caps, seq.wrapping_sub(1));
        let mut response = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let Some(up) = self.routed.as_mut().and_then(|r| r.conns.get_mut(key)) else {
                return Err(lost());
            };
            let n = match up.stream.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    self.drop_conn(key);
                    return Err(lost());
                }
                Ok(n) => n,
            };
            match scanner.feed(&buf[..n]) {
                Ok(Scan::Complete { consumed }) => {
                    response.extend_from_slice(&buf[..consumed]);
                    break;
                }
                Ok(_) => response.extend_from_slice(&buf[..n]),
                Err(_) => {
                    self.drop_conn(key);
                    return Err(lost());
                }
            }
        }
        let info = scanner.prepared();
        Ok((
            response,
            info.map(|i| i.statement_id),
            info.map_or(0, |i| i.num_params),
        ))
    }

    pub(super) async fn routed_prepare(&mut self, packet: &Packet) -> Result<(), End> {
        let sql = packet.payload.get(1..).unwrap_or_default().to_vec();
        let text = String::from_utf8_lossy(&sql).into_owned();
        let router = self.routed()?.router.clone();
        let default_keyspace = self.routed()?.default_keyspace.clone();
        let ctx = PlanContext {
            default_keyspace: default_keyspace.as_deref(),
        };
        let id = {
            let r = self.routed()?;
            let id = r.next_statement_id;
            r.next_statement_id = r.next_statement_id.wrapping_add(1).max(1);
            id
        };
        let key = match plan::plan(&router.schema(), &text, &ctx) {
            Err(e) => return self.refuse(&e).await,
            Ok(Plan::Route(r)) => (r.keyspace.clone(), r.shards.first().copied().unwrap_or(0)),
            Ok(Plan::Insert(i)) => (i.keyspace.clone(), 0),
            Ok(
                Plan::Transaction(_) | Plan::Set { .. } | Plan::TransactionMode(_) | Plan::Use(_),
            ) if !text.contains('?') => {
                self.routed()?.statements.insert(
                    id,
                    Prepared {
                        sql: text,
                        num_params: 0,
                        types: None,
                        shards: HashMap::new(),
                        emulated: true,
                        long_data: false,
                        template: Some(None),
                    },
                );
                let ok = StmtPrepareOk {
                    statement_id: id,
                    num_columns: 0,
                    num_params: 0,
                    warnings: 0,
                };
                let mut out = Vec::new();
                let mut seq = 1;
                write_packet(&mut out, &mut seq, &ok.encode());
                return self
                    .client
                    .send(&out, &self.shared.metrics)
                    .await
                    .map_err(|_| End::ClientGone);
            }
            Ok(_) => {
                let e = PlanError::unsupported(
                    "preparing this statement on a sharded keyspace (use the text protocol)",
                );
                return self.refuse(&e).await;
            }
        };
        let (mut response, shard_id, num_params) = match self.prepare_on(&key, &sql).await {
            Ok(r) => r,
            Err(e) => return self.send_err(&e).await,
        };
        if let Some(shard_id) = shard_id {
            // The first packet's payload starts with 0x00 and the statement id.
            if let Some(slot) = response.get_mut(5..9) {
                slot.copy_from_slice(&id.to_le_bytes());
            }
            let mut shards = HashMap::new();
            shards.insert(key, shard_id);
            self.routed()?.statements.insert(
                id,
                Prepared {
                    sql: text,
                    num_params,
                    types: None,
                    shards,
                    emulated: false,
                    long_data: false,
                    template: None,
                },
            );
        }
        self.client
            .send(&response, &self.shared.metrics)
            .await
            .map_err(|_| End::ClientGone)
    }

    pub(super) async fn routed_execute(&mut self, packet: &Packet) -> Result<(), End> {
        let Some(id) = statement_id(&packet.payload) else {
            return self.send_err(&unknown(0, "mysqld_stmt_execute")).await;
        };
        let Some(stmt) = self.routed()?.statements.get(&id) else {
            return self.send_err(&unknown(id, "mysqld_stmt_execute")).await;
        };
        if stmt.emulated {
            let mut payload = vec![Command::Query as u8];
            payload.extend_from_slice(stmt.sql.as_bytes());
            let query = Packet {
                seq: 0,
                last_seq: 0,
                payload,
            };
            return self.routed_query(&query).await;
        }
        if stmt.long_data {
            let e = PlanError::unsupported("COM_STMT_SEND_LONG_DATA on a sharded keyspace");
            return self.refuse(&e).await;
        }
        let (sql, num_params, types) = (stmt.sql.clone(), stmt.num_params, stmt.types.clone());
        self.routed()?.statement_max_rows = None;
        let exec = match StmtExecute::decode(&packet.payload, num_params, types.as_deref(), &[]) {
            Ok(e) => e,
            Err(_) => {
                let e = err(
                    error_codes::ER_WRONG_ARGUMENTS,
                    "Incorrect arguments to mysqld_stmt_execute",
                );
                return self.send_err(&e).await;
            }
        };
        if exec.flags & (cursor_type::READ_ONLY | cursor_type::FOR_UPDATE | cursor_type::SCROLLABLE)
            != 0
        {
            let e = PlanError::unsupported("cursors on a sharded keyspace");
            return self.refuse(&e).await;
        }
        if let Some(s) = self.routed()?.statements.get_mut(&id) {
            s.types = Some(exec.param_types.clone());
        }
        let values: Vec<ProtoValue> = exec
            .params
            .iter()
            .map(|p| p.clone().unwrap_or(ProtoValue::Null))
            .collect();
        let router = self.routed()?.router.clone();
        let default_keyspace = self.routed()?.default_keyspace.clone();
        let ctx = PlanContext {
            default_keyspace: default_keyspace.as_deref(),
        };
        let vindex_values: Vec<_> = values.iter().map(params::vindex_value).collect();
        let known = self
            .routed()?
            .statements
            .get(&id)
            .and_then(|s| s.template.clone());
        if let Some(Some(t)) = &known {
            if let Some(route) = t.route_params(&router.schema(), &vindex_values) {
                self.shared.metrics.plan_cache(true);
                let key = (route.keyspace.clone(), route.shards[0]);
                return self.execute_on(id, key, exec).await;
            }
        }
        self.shared.metrics.plan_cache(false);
        let planned = plan::plan_with_params(&router.schema(), &sql, &ctx, &vindex_values);
        if known.is_none() {
            // Keep the template only when it routes this execute exactly as the planner did.
            let template = cache::template(&router.schema(), &sql, &ctx).filter(|t| {
                matches!(&planned, Ok(Plan::Route(r)) if r.is_passthrough()
                    && t.route_params(&router.schema(), &vindex_values).as_ref() == Some(r))
            });
            if let Some(s) = self.routed()?.statements.get_mut(&id) {
                s.template = Some(template);
            }
        }
        if let Ok(Plan::Route(route)) = &planned {
            if route.is_passthrough() {
                let key = (route.keyspace.clone(), route.shards[0]);
                return self.execute_on(id, key, exec).await;
            }
        }
        // Anything else runs as text with the values inlined, answered in binary rows.
        let Some(bound) = params::bind(&sql, &values) else {
            let e = err(
                error_codes::ER_WRONG_ARGUMENTS,
                "Incorrect arguments to mysqld_stmt_execute",
            );
            return self.send_err(&e).await;
        };
        let outcome = match plan::plan(&router.schema(), &bound, &ctx) {
            Err(e) => return self.refuse(&e).await,
            Ok(p) => self.outcome_of(p, &bound).await,
        };
        match outcome {
            Some(Ok(Outcome::Rows(columns, rows, warnings))) => {
                let status = self.routed()?.status_flags();
                let mut w = ResultSetWriter::new(self.auth.capabilities, RowFormat::Binary, 1);
                let mut out = Vec::new();
                w.columns(&mut out, &columns, status);
                for row in &rows {
                    let mut values = Vec::with_capacity(row.len());
                    for (cell, col) in row.iter().zip(columns.iter()) {
                        match ProtoValue::from_text(cell.as_deref(), col) {
                            Ok(v) => values.push(v),
                            Err(e) => {
                                return self
                                    .send_err(&err(
                                        error_codes::ER_UNKNOWN_ERROR,
                                        format!("cannot encode a merged row: {e}"),
                                    ))
                                    .await
                            }
                        }
                    }
                    if let Err(e) = w.row(&mut out, &values) {
                        return self
                            .send_err(&err(
                                error_codes::ER_UNKNOWN_ERROR,
                                format!("cannot encode a merged row: {e}"),
                            ))
                            .await;
                    }
                }
                w.finish(&mut out, status, warnings);
                self.client
                    .send(&out, &self.shared.metrics)
                    .await
                    .map_err(|_| End::ClientGone)
            }
            Some(other) => self.respond(other).await,
            None => {
                let e = PlanError::unsupported(
                    "executing this prepared statement on a sharded keyspace",
                );
                self.refuse(&e).await
            }
        }
    }

    /// Relays an execute to the one shard that answers it, preparing it there first when
    /// needed. Outside a transaction, when the primary fails it before answering (a
    /// failover), the statement is prepared on the next primary and executed there.
    async fn execute_on(&mut self, id: u32, key: ShardKey, exec: StmtExecute) -> Result<(), End> {
        if let Err(e) = self.join_transaction(std::slice::from_ref(&key)).await {
            return self.send_err(&e).await;
        }
        let mut failed_term = None;
        loop {
            if let Err(e) = self.primary_conn(&key, failed_term).await {
                return self.send_err(&e).await;
            }
            let Some(payload) = self.execute_payload(id, &key, exec.clone()).await? else {
                return Ok(());
            };
            self.shared.metrics.routed("passthrough");
            self.shared.metrics.shard_queries(1);
            let retry = Some(FailoverRetry::NotExecuted);
            match self
                .relay_once(&key, Command::StmtExecute, &payload, retry)
                .await?
            {
                Some(term) => failed_term = Some(term),
                None => {
                    if self.prepared_writes(id) {
                        self.note_writes(std::slice::from_ref(&key)).await;
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Whether prepared statement `id` may write (anything but a read), for
    /// read-your-writes.
    fn prepared_writes(&self, id: u32) -> bool {
        let Some(p) = self.routed.as_ref().and_then(|r| r.statements.get(&id)) else {
            return false;
        };
        let words = shardcar_filter::sql::lexer::leading_words(&p.sql, 1);
        !matches!(
            words.first().map(String::as_str),
            Some("SELECT" | "SHOW" | "DESCRIBE" | "DESC" | "EXPLAIN" | "WITH")
        )
    }

    /// The COM_STMT_EXECUTE payload for shard `key`, preparing the statement there when
    /// needed; `None` when the client already got an error.
    async fn execute_payload(
        &mut self,
        id: u32,
        key: &ShardKey,
        mut exec: StmtExecute,
    ) -> Result<Option<Vec<u8>>, End> {
        let known = self
            .routed()?
            .statements
            .get(&id)
            .and_then(|s| s.shards.get(key).copied());
        let shard_id = match known {
            Some(s) => s,
            None => {
                let sql = self
                    .routed()?
                    .statements
                    .get(&id)
                    .map(|s| s.sql.clone().into_bytes())
                    .unwrap_or_default();
                match self.prepare_on(key, &sql).await {
                    Ok((_, Some(s), _)) => {
                        if let Some(stmt) = self.routed()?.statements.get_mut(&id) {
                            stmt.shards.insert(key.clone(), s);
                        }
                        s
                    }
                    Ok((response, None, _)) => {
                        // The shard refused to prepare it: pass its ERR on.
                        let mut p = shardcar_filter::protocol::PacketAssembler::new(1 << 24);
                        p.extend(&response);
                        let e = match p.next_packet() {
                            Ok(Some(pk)) => {
                                ErrPacket::decode(&pk.payload).unwrap_or_else(|_| lost())
                            }
                            _ => lost(),
                        };
                        self.send_err(&e).await?;
                        return Ok(None);
                    }
                    Err(e) => {
                        self.send_err(&e).await?;
                        return Ok(None);
                    }
                }
            }
        };
        exec.statement_id = shard_id;
        exec.new_params_bound = exec.new_params_bound || !exec.param_types.is_empty();
        match exec.encode() {
            Ok(p) => Ok(Some(p)),
            Err(_) => {
                let e = err(
                    error_codes::ER_WRONG_ARGUMENTS,
                    "Incorrect arguments to mysqld_stmt_execute",
                );
                self.send_err(&e).await?;
                Ok(None)
            }
        }
    }

    pub(super) async fn routed_close(&mut self, packet: &Packet) -> Result<(), End> {
        let Some(id) = statement_id(&packet.payload) else {
            return Ok(());
        };
        let Some(stmt) = self.routed()?.statements.remove(&id) else {
            return Ok(());
        };
        for (key, shard_id) in stmt.shards {
            let mut payload = vec![Command::StmtClose as u8];
            payload.extend_from_slice(&shard_id.to_le_bytes());
            let mut out = Vec::new();
            let mut seq = 0;
            write_packet(&mut out, &mut seq, &payload);
            if let Some(up) = self.routed()?.conns.get_mut(&key) {
                if upstream::write_flush(&mut up.stream, &out).await.is_err() {
                    self.drop_conn(&key);
                }
            }
        }
        Ok(())
    }

    pub(super) async fn routed_reset(&mut self, packet: &Packet) -> Result<(), End> {
        let Some(id) = statement_id(&packet.payload) else {
            return self.send_err(&unknown(0, "mysqld_stmt_reset")).await;
        };
        match self.routed()?.statements.get_mut(&id) {
            Some(s) => s.long_data = false,
            None => return self.send_err(&unknown(id, "mysqld_stmt_reset")).await,
        }
        self.send_ok(Default::default()).await
    }

    /// COM_STMT_SEND_LONG_DATA has no response; the next execute reports the refusal.
    pub(super) fn routed_long_data(&mut self, packet: &Packet) -> Result<(), End> {
        if let Some(id) = statement_id(&packet.payload) {
            if let Some(s) = self.routed()?.statements.get_mut(&id) {
                s.long_data = true;
            }
        }
        Ok(())
    }
}
