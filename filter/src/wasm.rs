//! The proxy-wasm network filter (feature `wasm`, built as a `cdylib` for
//! `wasm32-wasip1` by `scripts/build-wasm.sh`): a thin driver of
//! [`crate::stream::ConnectionFilter`] for Envoy and Istio.
//!
//! The root context compiles the plugin configuration ([`crate::stream::policy`]); each
//! TCP connection gets a stream context that hands every read of either direction to
//! its `ConnectionFilter` and replaces the read buffer when the filter changed, held or
//! dropped bytes. Held bytes are taken out of Envoy's buffer rather than left in it
//! (`Action::Pause`), so a statement arriving in many reads never trips Envoy's
//! read-buffer watermark. Events become Envoy metrics:
//!
//! - `shardcar.mysql.kind.<kind>.table.<table>.statements` and `.errors` (counters),
//!   `shardcar.mysql.kind.<kind>.latency_us` (histogram);
//! - `shardcar.mysql.refused.reason.<rule|access_policy|max_statement_bytes>`,
//!   `shardcar.mysql.rule_logged.rule.<rule>`, `shardcar.mysql.rows_limited`,
//!   `shardcar.mysql.rewritten`;
//! - `shardcar.mysql.connections`, `shardcar.mysql.tls_connections`,
//!   `shardcar.mysql.opaque_bytes`, `shardcar.mysql.protocol_errors`.

use crate::stream::policy::StreamPolicy;
use crate::stream::{ConnectionFilter, Event, Forward, Peer};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, RootContext, StreamContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root {
            policy: Arc::new(StreamPolicy::default()),
            metrics: Rc::new(RefCell::new(Metrics::default())),
        })
    });
}}

fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

/// Metric ids by name, defined on first use, and the table labels handed out so far.
#[derive(Default)]
struct Metrics {
    ids: HashMap<String, u32>,
    /// The statement metrics (statements, errors, latency) of a kind and table, so
    /// that the hot path builds no names.
    statements: HashMap<(&'static str, Option<String>), [Option<u32>; 3]>,
    tables: HashSet<String>,
    max_tables: usize,
}

impl Metrics {
    fn id(&mut self, kind: MetricType, name: String) -> Option<u32> {
        if let Some(id) = self.ids.get(&name) {
            return Some(*id);
        }
        let id = hostcalls::define_metric(kind, &name).ok()?;
        self.ids.insert(name, id);
        Some(id)
    }

    fn count(&mut self, name: String, by: i64) {
        if let Some(id) = self.id(MetricType::Counter, name) {
            let _ = hostcalls::increment_metric(id, by);
        }
    }

    fn statement_ids(&mut self, kind: &'static str, table: Option<String>) -> [Option<u32>; 3] {
        let key = (kind, table);
        if let Some(ids) = self.statements.get(&key) {
            return *ids;
        }
        let label = self.table_label(key.1.as_deref());
        let base = format!("shardcar.mysql.kind.{kind}.table.{label}");
        let ids = [
            self.id(MetricType::Counter, format!("{base}.statements")),
            self.id(MetricType::Counter, format!("{base}.errors")),
            self.id(
                MetricType::Histogram,
                format!("shardcar.mysql.kind.{kind}.latency_us"),
            ),
        ];
        // Bounded like the labels: kinds are a fixed set, tables are capped, and
        // statements on tables past the cap share the `other` label's ids.
        if self.statements.len() < 64 * (self.max_tables + 2) {
            self.statements.insert(key, ids);
        }
        ids
    }

    /// A bounded table label: the first `max_tables` distinct tables by name.
    fn table_label(&mut self, table: Option<&str>) -> String {
        let Some(table) = table else {
            return "none".into();
        };
        let label = sanitize(table);
        if self.tables.contains(&label) {
            return label;
        }
        if self.tables.len() < self.max_tables {
            self.tables.insert(label.clone());
            return label;
        }
        "other".into()
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Login { .. } => {}
            Event::Tls => self.count("shardcar.mysql.tls_connections".into(), 1),
            Event::Opaque { bytes } => self.count(
                "shardcar.mysql.opaque_bytes".into(),
                i64::try_from(bytes).unwrap_or(i64::MAX),
            ),
            Event::Statement(s) => {
                let [statements, errors, latency] = self.statement_ids(s.kind, s.table);
                if let Some(id) = statements {
                    let _ = hostcalls::increment_metric(id, 1);
                }
                if let (Some(id), Some(_)) = (errors, s.error) {
                    let _ = hostcalls::increment_metric(id, 1);
                }
                if let Some(id) = latency {
                    let _ = hostcalls::record_metric(id, s.latency_ns / 1_000);
                }
            }
            Event::Refused { reason, .. } => self.count(
                format!("shardcar.mysql.refused.reason.{}", sanitize(reason.label())),
                1,
            ),
            Event::RuleLogged { rule } => self.count(
                format!("shardcar.mysql.rule_logged.rule.{}", sanitize(&rule)),
                1,
            ),
            Event::Rewritten => self.count("shardcar.mysql.rewritten".into(), 1),
            Event::RowLimited { .. } => self.count("shardcar.mysql.rows_limited".into(), 1),
            Event::ProtocolError { message } => {
                log(
                    LogLevel::Warn,
                    &format!("shardcar: {message}; forwarding unread"),
                );
                self.count("shardcar.mysql.protocol_errors".into(), 1);
            }
        }
    }
}

/// A metric-name segment: lower-case letters, digits and `_`, at most 64 bytes.
fn sanitize(label: &str) -> String {
    label
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

struct Root {
    policy: Arc<StreamPolicy>,
    metrics: Rc<RefCell<Metrics>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        match StreamPolicy::from_json(&config) {
            Ok(policy) => {
                for field in &policy.not_applied {
                    log(
                        LogLevel::Warn,
                        &format!("shardcar: queryPolicy.limits.{field} needs the db-role sidecar; not applied by the wasm filter"),
                    );
                }
                self.metrics.borrow_mut().max_tables = policy.max_metric_tables;
                self.policy = Arc::new(policy);
                true
            }
            Err(e) => {
                log(LogLevel::Error, &format!("shardcar: {e}"));
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::StreamContext)
    }

    fn create_stream_context(&self, _context_id: u32) -> Option<Box<dyn StreamContext>> {
        Some(Box::new(Connection {
            filter: None,
            policy: Arc::clone(&self.policy),
            metrics: Rc::clone(&self.metrics),
        }))
    }
}

struct Connection {
    /// Created on the first data, once the peer's properties are known.
    filter: Option<ConnectionFilter>,
    policy: Arc<StreamPolicy>,
    metrics: Rc<RefCell<Metrics>>,
}

impl Context for Connection {}

impl Connection {
    fn property(&self, path: &[&str]) -> Option<String> {
        let bytes = self.get_property(path.to_vec())?;
        let text = String::from_utf8(bytes).ok()?;
        (!text.is_empty()).then_some(text)
    }

    fn filter(&mut self) -> &mut ConnectionFilter {
        if self.filter.is_none() {
            let peer = Peer {
                address: self.property(&["source", "address"]).unwrap_or_default(),
                certificate: self
                    .property(&["connection", "uri_san_peer_certificate"])
                    .or_else(|| self.property(&["connection", "dns_san_peer_certificate"]))
                    .or_else(|| self.property(&["connection", "subject_peer_certificate"])),
            };
            self.metrics
                .borrow_mut()
                .count("shardcar.mysql.connections".into(), 1);
            self.filter = Some(ConnectionFilter::new(Arc::clone(&self.policy), peer));
        }
        let policy = &self.policy;
        self.filter
            .get_or_insert_with(|| ConnectionFilter::new(Arc::clone(policy), Peer::default()))
    }

    fn now_ns(&self) -> u64 {
        self.get_current_time()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    fn flush_events(&mut self) {
        let Some(filter) = self.filter.as_mut() else {
            return;
        };
        let mut metrics = self.metrics.borrow_mut();
        for event in filter.drain_events() {
            metrics.event(event);
        }
    }
}

impl StreamContext for Connection {
    fn on_downstream_data(&mut self, size: usize, _end_of_stream: bool) -> Action {
        if size == 0 {
            return Action::Continue;
        }
        let Some(data) = self.get_downstream_data(0, size) else {
            return Action::Continue;
        };
        let now = self.now_ns();
        if let Forward::Replace(bytes) = self.filter().client_data(&data, now) {
            self.set_downstream_data(0, size, &bytes);
        }
        self.flush_events();
        Action::Continue
    }

    fn on_upstream_data(&mut self, size: usize, _end_of_stream: bool) -> Action {
        if size == 0 {
            return Action::Continue;
        }
        let Some(data) = self.get_upstream_data(0, size) else {
            return Action::Continue;
        };
        let now = self.now_ns();
        if let Forward::Replace(bytes) = self.filter().server_data(&data, now) {
            self.set_upstream_data(0, size, &bytes);
        }
        self.flush_events();
        Action::Continue
    }
}
