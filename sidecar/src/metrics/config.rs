//! Metrics of the app role's configuration stream from the control service.

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The configuration-stream series, registered into the sidecar's registry.
pub struct ConfigMetrics {
    version: Gauge<i64, AtomicI64>,
    connected: Gauge<i64, AtomicI64>,
    updates: Family<ResultLabels, Counter>,
}

impl std::fmt::Debug for ConfigMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigMetrics").finish_non_exhaustive()
    }
}

impl ConfigMetrics {
    pub(super) fn register(reg: &mut Registry) -> Self {
        let version = Gauge::<i64, AtomicI64>::default();
        reg.register(
            "shardcar_config_version",
            "The configuration version applied (a topology revision; 0 before the first)",
            version.clone(),
        );
        let connected = Gauge::<i64, AtomicI64>::default();
        reg.register(
            "shardcar_config_stream_connected",
            "1 while the configuration stream to the control service is open",
            connected.clone(),
        );
        let updates = Family::<ResultLabels, Counter>::default();
        reg.register(
            "shardcar_config_updates",
            "Configuration updates received, by result: applied (ACKed), rejected (NACKed; the last good configuration keeps serving)",
            updates.clone(),
        );
        ConfigMetrics {
            version,
            connected,
            updates,
        }
    }

    pub fn applied(&self, version: u64) {
        self.version.set(i64::try_from(version).unwrap_or(i64::MAX));
        self.updates
            .get_or_create(&ResultLabels { result: "applied" })
            .inc();
    }

    pub fn rejected(&self) {
        self.updates
            .get_or_create(&ResultLabels { result: "rejected" })
            .inc();
    }

    pub fn connected(&self, up: bool) {
        self.connected.set(i64::from(up));
    }
}
