//! Metrics of routing around primaries that move: the failover buffer, transactions ended
//! by a change of primary, replica reads, and (db role) tablet actions and fencing.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: String,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The failover series, registered into the sidecar's registry.
pub struct FailoverMetrics {
    buffer: Family<OutcomeLabels, Counter>,
    buffer_wait: Histogram,
    aborted_transactions: Counter,
    replica_reads: Family<TargetLabels, Counter>,
    replicas_behind: Counter,
    tablet_actions: Family<ActionLabels, Counter>,
    fenced: Family<ReasonLabels, Counter>,
    unfenced: Counter,
}

impl std::fmt::Debug for FailoverMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailoverMetrics").finish_non_exhaustive()
    }
}

impl FailoverMetrics {
    pub(super) fn register(reg: &mut Registry) -> Self {
        let buffer = Family::<OutcomeLabels, Counter>::default();
        reg.register(
            "shardcar_failover_buffer_statements",
            "Statements that met a shard between primaries, by outcome: retried (the primary failed them before the client saw anything), served (waited, then ran on the new primary), failed (the window or the buffer's size ran out)",
            buffer.clone(),
        );
        let buffer_wait = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        reg.register_with_unit(
            "shardcar_failover_buffer_wait",
            "How long buffered statements waited for a primary",
            Unit::Seconds,
            buffer_wait.clone(),
        );
        let aborted_transactions = Counter::default();
        reg.register(
            "shardcar_failover_aborted_transactions",
            "Transactions rolled back because their shard's primary changed (the client got ERR 1213, retryable)",
            aborted_transactions.clone(),
        );
        let replica_reads = Family::<TargetLabels, Counter>::default();
        reg.register(
            "shardcar_replica_reads",
            "Reads asked of replicas (USE ks@replica, target=replica, topology.reads), by where they went: replica, or primary when no replica was healthy, under the lag threshold and (read_your_writes) caught up with the session's last write",
            replica_reads.clone(),
        );
        let replicas_behind = Counter::default();
        reg.register(
            "shardcar_replica_reads_behind",
            "Replica reads sent to the primary because the replica had not applied the session's last write within read_your_writes_wait_ms",
            replicas_behind.clone(),
        );
        let tablet_actions = Family::<ActionLabels, Counter>::default();
        reg.register(
            "shardcar_tablet_actions",
            "Tablet actions (db role: demote, promote, replicate, wait_position, ...) by result",
            tablet_actions.clone(),
        );
        let fenced = Family::<ReasonLabels, Counter>::default();
        reg.register(
            "shardcar_tablet_fenced",
            "Times this primary turned its mysqld read-only, by reason: newer_term (another tablet is the primary in a term at least its own), cut_off (neither the topology nor any replica reachable before its lease could expire)",
            fenced.clone(),
        );
        let unfenced = Counter::default();
        reg.register(
            "shardcar_tablet_unfenced",
            "Times this primary made its read-only mysqld writable again, the topology having confirmed it as the primary of its term",
            unfenced.clone(),
        );
        FailoverMetrics {
            buffer,
            buffer_wait,
            aborted_transactions,
            replica_reads,
            replicas_behind,
            tablet_actions,
            fenced,
            unfenced,
        }
    }

    /// A statement met a shard between primaries: `retried`, `served` or `failed`.
    pub fn buffer(&self, outcome: &'static str) {
        self.buffer.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn buffer_wait(&self, seconds: f64) {
        self.buffer_wait.observe(seconds);
    }

    pub fn aborted_transaction(&self) {
        self.aborted_transactions.inc();
    }

    /// A read for a replica went to one (`true`) or to the primary.
    pub fn replica_read(&self, to_replica: bool) {
        let target = if to_replica { "replica" } else { "primary" };
        self.replica_reads
            .get_or_create(&TargetLabels { target })
            .inc();
    }

    /// Read-your-writes passed a replica over: it had not applied the session's write.
    pub fn replica_behind(&self) {
        self.replicas_behind.inc();
    }

    pub fn tablet_action(&self, action: &str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.tablet_actions
            .get_or_create(&ActionLabels {
                action: action.to_string(),
                result,
            })
            .inc();
    }

    /// `newer_term` or `cut_off`.
    pub fn fenced(&self, reason: &'static str) {
        self.fenced.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn unfenced(&self) {
        self.unfenced.inc();
    }
}
