//! The db role's session: statements of many client sessions multiplexed over the
//! backend pool, with the protection decided in `shardcar_filter::guard`.
//!
//! For each statement the session analyses the text, applies the query rules, borrows a
//! connection from the pool unless it already holds one, brings that connection to the
//! session's state (COM_RESET_CONNECTION when another session left state behind, the
//! session's SET assignments, its default database), rewrites what needs rewriting (a
//! row limit, session functions whose values the session tracked), relays the response
//! raw under a deadline and result limits, and gives the connection back unless a pin
//! rule says the session must keep it. Timers between statements end a held
//! next-statement pin and roll back transactions past their timeouts.

use super::pool::{Budget, FormatKey, Pool, Ticket, Want};
use super::protect::{Consolidator, HotRows, Join, RowTurn, Shared, Shedder};
use super::relay::{RelayGuard, Response};
use super::router::{read_result, ShardResult};
use super::running::{KillRefusal, Registration, Sessions};
use super::session::Capture;
use super::session::{End, Session, FORMAT_CAPABILITIES};
use super::upstream::{self, Upstream};
use crate::admin::{DebugReply, DebugRequest};
use crate::config::{DbConfig, LimitsConfig};
use shardcar_filter::guard::access::{AccessCache, AccessPolicy, Identity};
use shardcar_filter::guard::hotrow::row_key;
use shardcar_filter::guard::kill::{parse_kill, Kill, KillError, KillScope};
use shardcar_filter::guard::pins::{Outcome, PinReason, Pins};
use shardcar_filter::guard::refusal;
use shardcar_filter::guard::rules::{fingerprint_of, Decision, RuleSet, Subject};
use shardcar_filter::guard::statement::{
    analyze, substitute_session_functions, use_database, with_limit, Kind, Limit, SessionValues,
    Statement,
};
use shardcar_filter::guard::vars::{parse_set, SessionVars, SetEffect};
use shardcar_filter::protocol::constants::status;
use shardcar_filter::protocol::error_codes;
use shardcar_filter::protocol::packet::{write_packet, Packet};
use shardcar_filter::protocol::{Command, ErrPacket, OkPacket};
use shardcar_filter::sql::lexer::shardcar_hint;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// The reloadable part of the db configuration.
#[derive(Debug)]
pub struct Policy {
    pub limits: LimitsConfig,
    pub rules: RuleSet,
    pub access: AccessPolicy,
    pub hold_next: Duration,
}

impl Policy {
    /// Compiles the policy from a validated `db` section.
    pub fn from_config(db: &DbConfig) -> Result<Self, crate::config::ConfigError> {
        Ok(Policy {
            limits: db.limits.clone(),
            rules: db.validate()?,
            access: AccessPolicy::new(db.access.clone()),
            hold_next: Duration::from_millis(db.pool.hold_next_statement_ms),
        })
    }
}

/// State shared by every session of the db role.
pub struct Guard {
    pub pool: Arc<Pool>,
    policy: RwLock<Arc<Policy>>,
    hot_rows: Arc<HotRows>,
    consolidator: Arc<Consolidator>,
    shedder: Arc<Shedder>,
    pub sessions: Arc<Sessions>,
    /// What each statement shape reads and writes, for the access policy.
    access_cache: AccessCache,
    epoch: Instant,
}

/// Statement shapes whose table access is remembered.
const ACCESS_CACHE_SIZE: usize = 4_096;

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl Guard {
    pub fn new(pool: Arc<Pool>, policy: Policy, db: &DbConfig) -> Arc<Self> {
        let metrics = pool.metrics().clone();
        Arc::new(Guard {
            hot_rows: HotRows::new(db.hot_rows.clone(), metrics.clone()),
            consolidator: Consolidator::new(db.consolidation.clone()),
            shedder: Shedder::new(db.load.clone(), metrics),
            pool,
            policy: RwLock::new(Arc::new(policy)),
            sessions: Sessions::new(),
            access_cache: AccessCache::new(ACCESS_CACHE_SIZE),
            epoch: Instant::now(),
        })
    }

    pub fn policy(&self) -> Arc<Policy> {
        match self.policy.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Installs a reloaded policy; sessions see it from their next statement.
    pub fn set_policy(&self, policy: Policy) {
        match self.policy.write() {
            Ok(mut p) => *p = Arc::new(policy),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(policy),
        }
    }

    /// `/debug/pool`, `hot_rows`, `load`, `queries` and `rules` as JSON, and the action
    /// `POST /debug/queries/kill?id=N[&connection=true]`.
    pub fn debug_page(&self, request: &DebugRequest<'_>) -> DebugReply {
        if request.name == "queries/kill" {
            return if request.post {
                self.debug_kill(request)
            } else {
                DebugReply::WrongMethod
            };
        }
        if request.post {
            return DebugReply::WrongMethod;
        }
        let page = match request.name {
            "pool" => serde_json::to_string_pretty(&self.pool.snapshot()).ok(),
            "queries" => serde_json::to_string_pretty(&self.sessions.running()).ok(),
            "hot_rows" => {
                let rows: Vec<serde_json::Value> = self
                    .hot_rows
                    .snapshot()
                    .into_iter()
                    .map(|(row, waiting)| serde_json::json!({"row": row, "waiting": waiting}))
                    .collect();
                serde_json::to_string_pretty(&rows).ok()
            }
            "load" => {
                let (inflight, adaptive) = self.shedder.snapshot();
                serde_json::to_string_pretty(&serde_json::json!({
                    "inflight": inflight,
                    "adaptive_limit": adaptive.map(|a| a.0),
                    "baseline_latency_us": adaptive.map(|a| a.1),
                }))
                .ok()
            }
            "rules" => {
                let policy = self.policy();
                let rules: Vec<&str> = policy.rules.names().collect();
                serde_json::to_string_pretty(&serde_json::json!({
                    "rules": rules,
                    "limits": policy.limits,
                }))
                .ok()
            }
            _ => None,
        };
        page.map_or(DebugReply::NotFound, DebugReply::Json)
    }

    /// Kills a session's statement (or, with `connection=true`, the session) for an
    /// operator.
    fn debug_kill(&self, request: &DebugRequest<'_>) -> DebugReply {
        let Some(id) = request.param("id").and_then(|v| v.parse::<u32>().ok()) else {
            return DebugReply::BadRequest("id=<session id> is required".to_string());
        };
        let connection = matches!(request.param("connection"), Some("true" | "1" | ""));
        match self.sessions.kill(id, connection, None) {
            Ok(()) => {
                self.pool.metrics().guard.killed("admin");
                info!(session = id, connection, "killed from the admin endpoint");
                DebugReply::Json(
                    serde_json::json!({"killed": id, "connection": connection}).to_string(),
                )
            }
            Err(_) => DebugReply::NotFound,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A timer a session waits on between statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timer {
    /// Give back a connection held for the next statement.
    HoldNext,
    /// Roll back a transaction open too long.
    Transaction,
    /// Roll back a transaction idle too long.
    IdleInTransaction,
}

/// The db-role state of one client session.
pub(super) struct Pooled {
    pub(super) guard: Arc<Guard>,
    ticket: Option<Ticket>,
    pins: Pins,
    vars: SessionVars,
    database: Option<String>,
    connection_id: u32,
    last_insert_id: u64,
    row_count: i64,
    found_rows: Option<u64>,
    /// The last statement used SQL_CALC_FOUND_ROWS.
    calc_found_rows: bool,
    olap: bool,
    tx_started: Option<Instant>,
    last_activity: Instant,
    /// The error the next statement gets after the sidecar rolled back a transaction.
    aborted: Option<ErrPacket>,
    pinned: Option<PinReason>,
    /// The hot row this session's transaction queued for (one per transaction).
    row_turn: Option<RowTurn>,
    /// This session in the registry that KILL and `/debug/queries` use.
    pub(super) registration: Registration,
}

impl Pooled {
    fn new(
        guard: Arc<Guard>,
        database: Option<String>,
        connection_id: u32,
        registration: Registration,
    ) -> Self {
        Pooled {
            registration,
            guard,
            ticket: None,
            pins: Pins::default(),
            vars: SessionVars::default(),
            database,
            connection_id,
            last_insert_id: 0,
            row_count: -1,
            found_rows: Some(0),
            calc_found_rows: false,
            olap: false,
            tx_started: None,
            last_activity: Instant::now(),
            aborted: None,
            pinned: None,
            row_turn: None,
        }
    }

    fn values(&self) -> SessionValues {
        SessionValues {
            last_insert_id: Some(self.last_insert_id),
            row_count: Some(self.row_count),
            found_rows: self.found_rows,
            connection_id: Some(self.connection_id),
        }
    }

    /// Status flags for answers the sidecar gives itself.
    pub(super) fn status_flags(&self) -> u16 {
        let mut s = 0;
        if self.vars.value("autocommit").is_none_or(|v| {
            !(v == "0" || v.eq_ignore_ascii_case("off") || v.eq_ignore_ascii_case("false"))
        }) {
            s |= status::AUTOCOMMIT;
        }
        if self.pins.in_transaction() {
            s |= status::IN_TRANS;
        }
        s
    }

    /// The next timer to wait on while no statement runs, if any.
    pub(super) fn next_timer(&self, holding: bool) -> Option<(Instant, Timer)> {
        // Most sessions between statements have no timer: skip the policy lock for them.
        let holding_next = holding && self.pins.reason() == Some(PinReason::NextStatement);
        if !self.pins.in_transaction() && !holding_next {
            return None;
        }
        let policy = self.guard.policy();
        let l = &policy.limits;
        let mut best: Option<(Instant, Timer)> = None;
        let mut consider = |at: Instant, t: Timer| {
            if best.is_none_or(|(b, _)| at < b) {
                best = Some((at, t));
            }
        };
        if self.pins.in_transaction() {
            if let Some(started) = self.tx_started {
                if l.transaction_timeout_ms > 0 {
                    consider(
                        started + Duration::from_millis(l.transaction_timeout_ms),
                        Timer::Transaction,
                    );
                }
            }
            if l.idle_in_transaction_timeout_ms > 0 {
                consider(
                    self.last_activity + Duration::from_millis(l.idle_in_transaction_timeout_ms),
                    Timer::IdleInTransaction,
                );
            }
        } else if holding && self.pins.reason() == Some(PinReason::NextStatement) {
            consider(self.last_activity + policy.hold_next, Timer::HoldNext);
        }
        best
    }

    fn format(&self, capabilities: u32, collation: u8) -> FormatKey {
        FormatKey {
            capabilities: capabilities & FORMAT_CAPABILITIES,
            collation,
        }
    }

    fn note_pin(&mut self) {
        let now = self.pins.reason();
        if let (Some(r), None) = (now, self.pinned) {
            self.guard.pool.metrics().guard.pinned(r.name());
        }
        self.pinned = now;
    }
}

fn err(code: error_codes::ErrorCode, message: impl Into<String>) -> ErrPacket {
    ErrPacket::new(code, message)
}

impl Session {
    /// The db-role state for this session, registered under its connection id.
    pub(super) fn new_pooled(&self, guard: Arc<Guard>, database: Option<String>) -> Pooled {
        let registration = guard.sessions.register(
            self.connection_id,
            &self.auth.user,
            &self.client_identity(),
            self.client.peer,
        );
        Pooled::new(guard, database, self.connection_id, registration)
    }

    /// `KILL [QUERY] id` or COM_PROCESS_KILL: the ids clients see are the sidecar's
    /// sessions, so the sidecar applies it to the session named, which kills its own
    /// statement on mysqld. A session may kill its own user's sessions, as in MySQL
    /// without the PROCESS privilege.
    async fn pooled_kill(&mut self, kill: Result<Kill, KillError>) -> Result<(), End> {
        let kill = match kill {
            Ok(k) => k,
            Err(KillError::Unsupported(form)) => {
                let e = err(
                    error_codes::ER_NOT_SUPPORTED_YET,
                    format!("This version of Shardcar doesn't yet support 'KILL {form}'"),
                );
                return self.send_err(&e).await;
            }
            Err(KillError::Malformed) => {
                let e = err(
                    error_codes::ER_PARSE_ERROR,
                    "You have an error in your SQL syntax near 'KILL': expected KILL [CONNECTION | QUERY] <id>",
                );
                return self.send_err(&e).await;
            }
        };
        let connection = kill.scope == KillScope::Connection;
        if kill.id == self.connection_id {
            if !connection {
                return self.send_ok(OkPacket::default()).await;
            }
            self.shared.metrics.guard.killed("client");
            let e = err(error_codes::ER_CONNECTION_KILLED, "Connection was killed");
            self.send_err(&e).await?;
            return Err(End::Killed);
        }
        let sessions = self.pooled()?.guard.sessions.clone();
        match sessions.kill(kill.id, connection, Some(&self.auth.user)) {
            Ok(()) => {
                self.shared.metrics.guard.killed("client");
                let status = self.pooled()?.status_flags();
                self.send_ok(OkPacket {
                    status,
                    ..Default::default()
                })
                .await
            }
            Err(KillRefusal::NoSuchSession) => {
                let e = err(
                    error_codes::ER_NO_SUCH_THREAD,
                    format!("Unknown thread id: {}", kill.id),
                );
                self.send_err(&e).await
            }
            Err(KillRefusal::NotOwner) => {
                let e = err(
                    error_codes::ER_KILL_DENIED_ERROR,
                    format!("You are not owner of thread {}", kill.id),
                );
                self.send_err(&e).await
            }
        }
    }

    fn pooled(&mut self) -> Result<&mut Pooled, End> {
        self.pooled
            .as_mut()
            .ok_or(End::Refused("not a pooled session"))
    }

    /// One command of a db-role session.
    pub(super) async fn pooled_command(
        &mut self,
        command: Command,
        packet: &Packet,
    ) -> Result<(), End> {
        self.pooled()?.last_activity = Instant::now();
        let result = match command {
            Command::Query => self.pooled_query(packet).await,
            Command::Ping => {
                let status = self.pooled()?.status_flags();
                self.send_ok(OkPacket {
                    status,
                    ..Default::default()
                })
                .await
            }
            Command::ResetConnection => self.pooled_reset(packet).await,
            Command::InitDb => {
                let db = String::from_utf8_lossy(packet.payload.get(1..).unwrap_or_default())
                    .into_owned();
                let response = self
                    .pooled_run(command, &packet.payload, None, Budget::Statement)
                    .await?;
                if !response.failed() {
                    let p = self.pooled()?;
                    p.database = Some(db.clone());
                    if let Some(t) = p.ticket.as_mut() {
                        t.state.database = Some(db);
                    }
                }
                self.after_statement(None, None, response).await
            }
            Command::StmtPrepare => {
                let response = self
                    .pooled_run(command, &packet.payload, None, Budget::Transaction)
                    .await?;
                if response.prepared.is_some() {
                    self.pooled()?.pins.prepared();
                }
                self.after_statement(None, None, response).await
            }
            Command::StmtClose => {
                if self.upstream.is_some() {
                    self.forward(command, packet).await?;
                    self.pooled()?.pins.closed();
                    self.give_back_if_free();
                }
                Ok(())
            }
            Command::ProcessKill => {
                let id = packet
                    .payload
                    .get(1..5)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(u32::from_le_bytes);
                let kill = id
                    .map(|id| Kill {
                        id,
                        scope: KillScope::Connection,
                    })
                    .ok_or(KillError::Malformed);
                self.pooled_kill(kill).await
            }
            Command::StmtExecute | Command::StmtFetch => {
                let policy = self.pooled()?.guard.policy();
                let guard = self.relay_guard(&policy, None, false);
                let response = self
                    .pooled_run(command, &packet.payload, Some(&guard), Budget::Statement)
                    .await?;
                self.after_statement(None, None, response).await
            }
            _ => {
                let response = self
                    .pooled_run(command, &packet.payload, None, Budget::Statement)
                    .await?;
                self.after_statement(None, None, response).await
            }
        };
        if let Some(p) = self.pooled.as_mut() {
            p.last_activity = Instant::now();
        }
        result
    }

    /// COM_QUERY in a db-role session.
    async fn pooled_query(&mut self, packet: &Packet) -> Result<(), End> {
        if let Some(e) = self.pooled()?.aborted.take() {
            return self.send_err(&e).await;
        }
        let body = packet.payload.get(1..).unwrap_or_default();
        let Ok(text) = std::str::from_utf8(body) else {
            // Not UTF-8 (binary literals): analysed for pins only, never rewritten.
            let lossy = String::from_utf8_lossy(body).into_owned();
            let st = analyze(&lossy);
            return self
                .pooled_statement(&lossy, &st, packet.payload.clone(), false)
                .await;
        };
        let guard = self.pooled()?.guard.clone();
        let policy = guard.policy();
        let mut st = analyze(text);
        let mut owned: Option<String> = None;
        if !policy.rules.is_empty() {
            let entry = self.pooled()?.registration.entry.clone();
            let client = entry.client.as_str();
            let who = Subject {
                user: &self.auth.user,
                client,
            };
            let verdict = policy.rules.evaluate_each(who, text, &st, guard.now_ms());
            let metrics = self.shared.metrics.clone();
            for rule in &verdict.logged {
                metrics.guard.rule(rule, "log");
                info!(rule = %rule, user = %self.auth.user, statement = %text, "query rule matched");
            }
            match verdict.action {
                Decision::Run => {}
                Decision::Deny { rule, message } => {
                    metrics.guard.rule(&rule, "deny");
                    return self.send_err(&refusal::rule_denied(&rule, &message)).await;
                }
                Decision::RateLimited { rule } => {
                    metrics.guard.rule(&rule, "rate_limit");
                    return self.send_err(&refusal::rate_limited(&rule)).await;
                }
            }
            if let Some(new) = verdict.rewritten {
                metrics.guard.rule("rewrite", "rewrite");
                st = analyze(&new);
                owned = Some(new);
            }
        }
        let text = owned.as_deref().unwrap_or(text);
        if !policy.access.is_empty() {
            if let Err(e) = self.check_access(&policy.access, text, &st) {
                return self.send_err(&e).await;
            }
        }
        if st.kind == Kind::Kill {
            return self.pooled_kill(parse_kill(text)).await;
        }
        if st.kind == Kind::Set {
            if let SetEffect::Session(a) = parse_set(text) {
                if let [only] = a.as_slice() {
                    if only.name == "workload" {
                        return self.set_workload(&only.text).await;
                    }
                }
            }
        }
        let olap = self.pooled()?.olap
            || shardcar_hint(text, "workload").is_some_and(|w| w.eq_ignore_ascii_case("olap"));
        let mut payload = Vec::with_capacity(text.len() + 24);
        payload.push(Command::Query as u8);
        match self.row_limited_text(&policy.limits, &st, text, olap) {
            Some(limited) => payload.extend_from_slice(limited.as_bytes()),
            None => payload.extend_from_slice(text.as_bytes()),
        }
        self.pooled_statement(text, &st, payload, olap).await
    }

    /// The statement with ` LIMIT max_rows+1` added when it is a SELECT that could return
    /// more than `max_rows` rows and does not say otherwise.
    fn row_limited_text(
        &self,
        limits: &LimitsConfig,
        st: &Statement,
        text: &str,
        olap: bool,
    ) -> Option<String> {
        if olap || limits.max_rows == 0 {
            return None;
        }
        let at = st.limit_at?;
        if matches!(st.limit, Limit::Rows(n) if n <= limits.max_rows) {
            return None;
        }
        // mysqld applies a smaller sql_select_limit itself.
        let select_limit = self
            .pooled
            .as_ref()
            .and_then(|p| p.vars.value("sql_select_limit"))
            .and_then(|v| v.parse::<u64>().ok());
        if select_limit.is_some_and(|n| n <= limits.max_rows) {
            return None;
        }
        Some(with_limit(text, at, limits.max_rows.saturating_add(1)))
    }

    /// `SET workload = 'olap' | 'oltp'` (as in Vitess): answered by the sidecar.
    async fn set_workload(&mut self, assignment: &str) -> Result<(), End> {
        let value = assignment
            .split_once('=')
            .map(|(_, v)| v.trim().trim_matches(['\'', '"']).to_ascii_lowercase())
            .unwrap_or_default();
        let olap = match value.as_str() {
            "olap" => true,
            "oltp" | "dba" => false,
            other => {
                let e = err(
                    error_codes::ER_WRONG_ARGUMENTS,
                    format!(
                        "Variable 'workload' can't be set to the value of '{other}' (olap or oltp)"
                    ),
                );
                return self.send_err(&e).await;
            }
        };
        let p = self.pooled()?;
        p.olap = olap;
        let status = p.status_flags();
        self.send_ok(OkPacket {
            status,
            ..Default::default()
        })
        .await
    }

    /// Runs one analysed COM_QUERY statement (`payload` is what goes to mysqld).
    async fn pooled_statement(
        &mut self,
        text: &str,
        st: &Statement,
        payload: Vec<u8>,
        olap: bool,
    ) -> Result<(), End> {
        let set = (st.kind == Kind::Set).then(|| parse_set(text));
        let guard = self.pooled()?.guard.clone();
        let mut lead = None;
        if let Some(key) = self.consolidation_key(st, &payload) {
            match guard.consolidator.join(key) {
                Join::Follow(follow) => match follow.result().await {
                    Some(shared) => {
                        self.shared.metrics.guard.consolidated("follower");
                        if self
                            .client
                            .send(&shared.bytes, &self.shared.metrics)
                            .await
                            .is_err()
                        {
                            return Err(End::ClientGone);
                        }
                        return self
                            .after_statement(Some(st), set.as_ref(), shared.response)
                            .await;
                    }
                    None => self.shared.metrics.guard.consolidated("fallback"),
                },
                Join::Lead(l) => {
                    self.capture = Some(Capture {
                        max: guard.consolidator.max_bytes(),
                        ..Default::default()
                    });
                    lead = Some(l);
                }
            }
        }
        let slot = if guard.shedder.active() && self.upstream.is_none() {
            let fingerprint = guard
                .shedder
                .wants_fingerprint()
                .then(|| fingerprint_of(text));
            match guard.shedder.admit(&self.auth.user, fingerprint) {
                Ok(slot) => Some(slot),
                Err(e) => {
                    self.capture = None;
                    return self.send_err(&e).await;
                }
            }
        } else {
            None
        };
        if guard.hot_rows.enabled() && self.pooled()?.row_turn.is_none() {
            if let Some(key) = row_key(text, st) {
                match guard.hot_rows.turn(key).await {
                    Ok(turn) => self.pooled()?.row_turn = Some(turn),
                    Err(e) => {
                        self.capture = None;
                        return self.send_err(&e).await;
                    }
                }
            }
        }
        let budget = self.budget_for(st, olap)?;
        if let Err(e) = self.lend(budget).await {
            self.capture = None;
            self.pooled()?.row_turn = None;
            return self.send_err(&e).await;
        }
        let payload = match self.substituted(st, text) {
            Some(new) => {
                let mut p = Vec::with_capacity(new.len() + 1);
                p.push(Command::Query as u8);
                p.extend_from_slice(new.as_bytes());
                p
            }
            None => payload,
        };
        let policy = guard.policy();
        let relay_guard =
            self.relay_guard(&policy, st.max_execution_ms, olap || !st.kind.reads_only());
        let started = Instant::now();
        let response = self
            .pooled_run(Command::Query, &payload, Some(&relay_guard), budget)
            .await;
        if let Some(slot) = slot {
            slot.done(started.elapsed());
        }
        let capture = self.capture.take();
        let response = response?;
        if let Some(lead) = lead {
            let shared = capture
                .filter(|c| !c.spoiled && !response.failed() && !response.killed)
                .map(|c| Shared {
                    bytes: c.bytes,
                    response,
                });
            self.shared.metrics.guard.consolidated(if shared.is_some() {
                "leader"
            } else {
                "fallback"
            });
            lead.finish(shared);
        }
        if !response.failed() {
            if st.kind == Kind::Use {
                let db = use_database(text);
                let p = self.pooled()?;
                p.database = db.clone();
                if let Some(t) = p.ticket.as_mut() {
                    t.state.database = db;
                }
            }
            if let Some(SetEffect::Session(assignments)) = &set {
                let p = self.pooled()?;
                if p.vars.apply(assignments).is_err() {
                    p.pins.pin_for_session(PinReason::UntrackedSet);
                }
                let key = p.vars.key();
                if let Some(t) = p.ticket.as_mut() {
                    t.state.vars_key = key;
                }
            }
        }
        self.after_statement(Some(st), set.as_ref(), response).await
    }

    /// The relay limits for a statement: its timeout (hint or policy) and, outside OLAP
    /// and for reads, the row and byte limits.
    fn relay_guard(&self, policy: &Policy, hint_ms: Option<u64>, unlimited: bool) -> RelayGuard {
        let l = &policy.limits;
        let timeout_ms = match hint_ms {
            Some(ms) if ms > 0 => {
                if l.max_statement_timeout_ms > 0 {
                    ms.min(l.max_statement_timeout_ms)
                } else {
                    ms
                }
            }
            _ => l.statement_timeout_ms,
        };
        let mut deadline =
            (timeout_ms > 0).then(|| Instant::now() + Duration::from_millis(timeout_ms));
        if let Some(p) = self.pooled.as_ref() {
            if let (Some(started), true) = (p.tx_started, l.transaction_timeout_ms > 0) {
                let tx_end = started + Duration::from_millis(l.transaction_timeout_ms);
                deadline = Some(deadline.map_or(tx_end, |d| d.min(tx_end)));
            }
        }
        RelayGuard {
            deadline,
            timeout_ms,
            max_rows: (!unlimited && l.max_rows > 0).then_some(l.max_rows),
            max_bytes: (!unlimited && l.max_result_bytes > 0).then_some(l.max_result_bytes),
            mode: l.max_rows_mode,
            failover: None,
        }
    }

    /// The key under which identical reads share one execution, when this one may: a
    /// SELECT outside any transaction or pin, reading no session state and calling
    /// nothing nondeterministic. The key holds everything the result depends on.
    fn consolidation_key(&self, st: &Statement, payload: &[u8]) -> Option<Vec<u8>> {
        let p = self.pooled.as_ref()?;
        let e = &st.effects;
        if !p.guard.consolidator.enabled()
            || st.kind != Kind::Select
            || self.upstream.is_some()
            || e.session_functions
            || e.nondeterministic
            || e.locking_read
            || e.sets_user_variable
            || e.calc_found_rows
            || e.multi
            || p.status_flags() & status::AUTOCOMMIT == 0
        {
            return None;
        }
        let mut key = Vec::with_capacity(payload.len() + 64);
        key.extend_from_slice(&(self.auth.capabilities & FORMAT_CAPABILITIES).to_le_bytes());
        key.push(self.auth.collation);
        key.extend_from_slice(&p.vars.key().to_le_bytes());
        key.extend_from_slice(&[u8::from(p.olap)]);
        key.extend_from_slice(p.database.as_deref().unwrap_or("").as_bytes());
        key.push(0);
        key.extend_from_slice(self.auth.user.as_bytes());
        key.push(0);
        key.extend_from_slice(payload);
        Some(key)
    }

    /// Which budget a statement borrows from when the session holds no connection.
    fn budget_for(&mut self, st: &Statement, olap: bool) -> Result<Budget, End> {
        let p = self.pooled()?;
        let opens = matches!(st.kind, Kind::Begin | Kind::LockTables | Kind::Prepare)
            || st.effects.xa_open
            || st.effects.named_lock
            || st.effects.temporary_table
            || p.status_flags() & status::AUTOCOMMIT == 0;
        Ok(if opens {
            Budget::Transaction
        } else if olap {
            Budget::Stream
        } else {
            Budget::Statement
        })
    }

    /// Session functions replaced by the values the session tracked.
    fn substituted(&self, st: &Statement, text: &str) -> Option<String> {
        let p = self.pooled.as_ref()?;
        if !st.effects.session_functions {
            return None;
        }
        if !matches!(
            st.kind,
            Kind::Select
                | Kind::Insert
                | Kind::Update
                | Kind::Delete
                | Kind::Replace
                | Kind::Do
                | Kind::Set
        ) {
            return None;
        }
        let values = SessionValues {
            // After SQL_CALC_FOUND_ROWS the session kept its connection: mysqld knows.
            found_rows: p.found_rows.filter(|_| !p.calc_found_rows),
            ..p.values()
        };
        substitute_session_functions(text, &values)
    }

    /// Borrows a connection for the session (unless it holds one) and brings it to the
    /// session's state.
    async fn lend(&mut self, budget: Budget) -> Result<(), ErrPacket> {
        if self.upstream.is_some() {
            return Ok(());
        }
        let capabilities = self.auth.capabilities;
        let collation = self.auth.collation;
        let Some(p) = self.pooled.as_ref() else {
            return Err(err(error_codes::ER_UNKNOWN_ERROR, "not a pooled session"));
        };
        let want = Want {
            format: p.format(capabilities, collation),
            vars_key: p.vars.key(),
            database: p.database.as_deref(),
            session: p.connection_id,
        };
        let pool = p.guard.pool.clone();
        let (mut conn, mut ticket) = pool.acquire(budget, want).await?;
        let metrics = self.shared.metrics.clone();
        let caps = conn.session.capabilities;
        let state = &mut ticket.state;
        let (replay, key, database) = (p.vars.replay(), p.vars.key(), p.database.clone());
        let needs_reset = state.dirty || (state.vars_key != 0 && state.vars_key != key);
        let prepared: Result<(), ErrPacket> = async {
            if needs_reset {
                metrics.guard.reset();
                backend(&mut conn, &[Command::ResetConnection as u8], caps).await?;
                state.vars_key = 0;
                state.dirty = false;
            }
            if let (Some(db), false) = (&database, state.database == database) {
                let mut payload = vec![Command::InitDb as u8];
                payload.extend_from_slice(db.as_bytes());
                backend(&mut conn, &payload, caps).await?;
                state.database = database.clone();
            }
            if let (Some(sql), true) = (replay, state.vars_key != key) {
                metrics.guard.replay();
                let mut payload = vec![Command::Query as u8];
                payload.extend_from_slice(sql.as_bytes());
                backend(&mut conn, &payload, caps).await?;
                state.vars_key = key;
            }
            Ok(())
        }
        .await;
        match prepared {
            Ok(()) => {
                if let Some(p) = self.pooled.as_mut() {
                    p.ticket = Some(ticket);
                }
                self.upstream = Some(conn);
                Ok(())
            }
            Err(e) => {
                // A broken or refused preparation: the connection's state is unknown.
                pool.release(conn, ticket, false);
                Err(e)
            }
        }
    }

    /// At login with a default database: check it exists (mysqld's error otherwise).
    pub(super) async fn pooled_check_database(&mut self) -> Result<(), ErrPacket> {
        self.lend(Budget::Statement).await?;
        self.give_back_if_free();
        Ok(())
    }

    /// Sends a command on the session's borrowed connection and relays the answer.
    async fn pooled_run(
        &mut self,
        command: Command,
        payload: &[u8],
        guard: Option<&RelayGuard>,
        budget: Budget,
    ) -> Result<Response, End> {
        if let Err(e) = self.lend(budget).await {
            self.send_err(&e).await?;
            return Ok(Response::refused(e.code));
        }
        let default = RelayGuard::default();
        if let Some(p) = self.pooled.as_ref() {
            let text = match command {
                Command::Query => payload.get(1..).unwrap_or_default(),
                other => other.name().as_bytes(),
            };
            let backend = self.upstream.as_ref().map(|u| u.session.connection_id);
            p.registration.entry.started(text, backend);
        }
        let response = self
            .forward_with(command, payload, guard.unwrap_or(&default))
            .await;
        if let Some(p) = self.pooled.as_ref() {
            p.registration.entry.finished();
        }
        let response = response?;
        if let Some(p) = self.pooled.as_mut() {
            if let Some(t) = p.ticket.as_mut() {
                t.state.uses += 1;
                t.state.last_session = p.connection_id;
            }
        }
        Ok(response)
    }

    /// Updates pins, tracked values and transaction timing after a statement, and gives
    /// the connection back if nothing pins it.
    async fn after_statement(
        &mut self,
        st: Option<&Statement>,
        set: Option<&SetEffect>,
        response: Response,
    ) -> Result<(), End> {
        let killed = response.killed;
        let p = self.pooled()?;
        let outcome = Outcome {
            status: response.status,
            warnings: response.warnings,
            failed: response.failed(),
        };
        match st {
            Some(st) => {
                p.pins.after_query(st, set, outcome);
                if !response.failed() {
                    p.calc_found_rows = st.effects.calc_found_rows;
                    if let Some(ok) = response.ok {
                        if ok.last_insert_id != 0 {
                            p.last_insert_id = ok.last_insert_id;
                        }
                        p.row_count = if st.kind.writes() {
                            i64::try_from(ok.affected_rows).unwrap_or(i64::MAX)
                        } else {
                            0
                        };
                    } else if response.result_set {
                        p.row_count = -1;
                        p.found_rows = Some(response.rows);
                    }
                }
            }
            None => {
                // Other commands only change the transaction flag when they succeed.
                if !response.failed() && response.status != 0 {
                    p.pins.after_command(outcome);
                }
            }
        }
        if p.pins.in_transaction() {
            p.tx_started.get_or_insert_with(Instant::now);
        } else {
            p.tx_started = None;
            // The next one in the row's queue may go.
            p.row_turn = None;
        }
        p.note_pin();
        if killed && p.pins.reason().is_none() {
            // A KILL that raced the statement's end could hit the connection's next
            // statement: do not lend it again.
            self.return_connection(false);
            return Ok(());
        }
        self.give_back_if_free();
        Ok(())
    }

    /// Gives the connection back when no pin holds it.
    fn give_back_if_free(&mut self) {
        if self
            .pooled
            .as_ref()
            .is_some_and(|p| p.pins.reason().is_none())
        {
            self.return_connection(true);
        }
    }

    /// Returns the borrowed connection to the pool (closed when not `reusable`).
    fn return_connection(&mut self, reusable: bool) {
        let Some(p) = self.pooled.as_mut() else {
            return;
        };
        let (Some(conn), Some(ticket)) = (self.upstream.take(), p.ticket.take()) else {
            return;
        };
        p.guard.pool.release(conn, ticket, reusable);
    }

    /// The borrowed connection is gone (lost, or dropped after a client left mid-statement).
    pub(super) fn pooled_connection_lost(&mut self) {
        if let Some(p) = self.pooled.as_mut() {
            if let Some(t) = p.ticket.take() {
                p.guard.pool.forget(t);
            }
        }
    }

    /// At the end of a session (or COM_CHANGE_USER): a connection the session still
    /// holds carries its state (an open transaction, locks, temporary tables), so it is
    /// reset now — not when someone else takes it — and returned clean.
    pub(super) async fn pooled_end(&mut self) {
        let Some(mut conn) = self.upstream.take() else {
            return;
        };
        let Some(p) = self.pooled.as_mut() else {
            return;
        };
        p.row_turn = None;
        let Some(mut ticket) = p.ticket.take() else {
            return;
        };
        if p.pins.in_xa() {
            // A reset does not end an XA transaction cleanly (a prepared one stays
            // attached to the connection); closing does, as for a client of mysqld
            // itself: an active branch rolls back, a prepared one waits for XA COMMIT or
            // XA ROLLBACK from any session.
            p.guard.pool.release(conn, ticket, false);
            return;
        }
        let caps = conn.session.capabilities;
        let reset = backend(&mut conn, &[Command::ResetConnection as u8], caps).await;
        self.shared.metrics.guard.reset();
        ticket.state.vars_key = 0;
        ticket.state.dirty = false;
        ticket.state.last_session = 0;
        p.guard.pool.release(conn, ticket, reset.is_ok());
    }

    /// COM_RESET_CONNECTION from the client: forget the session's state.
    async fn pooled_reset(&mut self, packet: &Packet) -> Result<(), End> {
        let held = self.upstream.is_some();
        if held {
            let response = self
                .pooled_run(
                    Command::ResetConnection,
                    &packet.payload,
                    None,
                    Budget::Statement,
                )
                .await?;
            if let Some(t) = self.pooled()?.ticket.as_mut() {
                t.state.vars_key = 0;
                t.state.dirty = response.failed();
            }
        }
        let p = self.pooled()?;
        p.pins.clear();
        p.vars.clear();
        p.last_insert_id = 0;
        p.row_count = -1;
        p.found_rows = Some(0);
        p.calc_found_rows = false;
        p.olap = false;
        p.tx_started = None;
        p.aborted = None;
        p.row_turn = None;
        p.note_pin();
        if held {
            self.give_back_if_free();
            Ok(())
        } else {
            let status = self.pooled()?.status_flags();
            self.send_ok(OkPacket {
                status,
                ..Default::default()
            })
            .await
        }
    }

    /// A timer between statements fired.
    pub(super) async fn pooled_timer(&mut self, timer: Timer) -> Result<(), End> {
        match timer {
            Timer::HoldNext => {
                self.pooled()?.pins.drop_next_statement();
                self.pooled()?.note_pin();
                self.give_back_if_free();
            }
            Timer::Transaction | Timer::IdleInTransaction => {
                let policy = self.pooled()?.guard.policy();
                let (what, ms) = if timer == Timer::Transaction {
                    ("transaction", policy.limits.transaction_timeout_ms)
                } else {
                    (
                        "idle_in_transaction",
                        policy.limits.idle_in_transaction_timeout_ms,
                    )
                };
                self.shared.metrics.guard.timeout(what);
                warn!(user = %self.auth.user, timeout_ms = ms, kind = what, "rolling back a transaction past its timeout");
                if let Some(conn) = self.upstream.as_mut() {
                    let caps = conn.session.capabilities;
                    let mut payload = vec![Command::Query as u8];
                    payload.extend_from_slice(b"ROLLBACK");
                    let rolled_back = backend(conn, &payload, caps).await;
                    if rolled_back.is_err() {
                        self.upstream = None;
                        self.pooled_connection_lost();
                    }
                }
                let message = if timer == Timer::Transaction {
                    format!("Transaction rolled back by Shardcar: open longer than db.limits.transaction_timeout_ms ({ms} ms)")
                } else {
                    format!("Transaction rolled back by Shardcar: idle longer than db.limits.idle_in_transaction_timeout_ms ({ms} ms)")
                };
                let p = self.pooled()?;
                p.aborted = Some(err(error_codes::ER_QUERY_INTERRUPTED, message));
                let rollback = analyze("ROLLBACK");
                p.pins.after_query(
                    &rollback,
                    None,
                    Outcome {
                        status: status::AUTOCOMMIT,
                        ..Default::default()
                    },
                );
                p.tx_started = None;
                p.row_turn = None;
                p.note_pin();
                self.give_back_if_free();
            }
        }
        Ok(())
    }

    /// The access policy's verdict on a statement, as the ERR a refusal sends.
    fn check_access(
        &self,
        access: &AccessPolicy,
        text: &str,
        st: &Statement,
    ) -> Result<(), ErrPacket> {
        let Some(p) = self.pooled.as_ref() else {
            return Ok(());
        };
        let tables = p
            .guard
            .access_cache
            .table_access(text, st, p.database.as_deref());
        let who = Identity {
            user: &self.auth.user,
            certificate: self.client.certificate.as_deref(),
        };
        let host = self.client.peer.ip();
        match access.check(who, &tables, st) {
            Ok(()) => Ok(()),
            Err(denied) => {
                self.shared.metrics.guard.shed("access_denied");
                Err(refusal::access_denied(
                    &denied,
                    &self.auth.user,
                    &host.to_string(),
                ))
            }
        }
    }

    /// Who the client is for query rules: its certificate identity under mTLS, else its
    /// address.
    fn client_identity(&self) -> String {
        match &self.client.certificate {
            Some(c) => c.clone(),
            None => self.client.peer.ip().to_string(),
        }
    }
}

/// Runs one command on a backend connection the session is preparing and reads its
/// whole answer; an ERR is returned as the error the client gets.
pub(super) async fn backend(
    conn: &mut Upstream,
    payload: &[u8],
    caps: u32,
) -> Result<(), ErrPacket> {
    let mut out = Vec::with_capacity(payload.len() + 4);
    let mut seq = 0;
    write_packet(&mut out, &mut seq, payload);
    // The client's statement has not been sent: say so with a code that means "not
    // executed" (an app sidecar sends it to the next primary during a failover).
    let lost = || {
        err(
            error_codes::ER_CONNECT_TO_FOREIGN_DATA_SOURCE,
            "Lost connection to MySQL server while preparing a pooled connection (the statement was not sent)",
        )
    };
    upstream::write_flush(&mut conn.stream, &out)
        .await
        .map_err(|_| lost())?;
    match read_result(conn, caps, 0).await {
        Ok(ShardResult::Err(e)) => Err(e),
        Ok(_) => Ok(()),
        Err(_) => Err(lost()),
    }
}
