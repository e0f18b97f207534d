//! The Shardcar control service: planned and emergency reparents against the topology
//! (`shardcar-control reparent`, or `POST /reparent` on its API), the failover
//! orchestrator (`shardcar-control orchestrate`, also inside `shardcar local`), the
//! configuration streams the sidecars follow ([`config`], `--config-listen`) and the
//! sidecar-injection webhook.

pub mod api;
pub mod config;
pub mod crd;
mod http;
pub mod http_server;
pub mod inject;
pub mod orchestrator;
pub mod reparent;
pub mod webhook;

pub use api::{Api, ControlMetrics};
pub use orchestrator::OrchestratorOptions;
pub use reparent::{
    emergency_reparent, planned_reparent, EmergencyReport, ReparentError, ReparentOptions,
    ReparentReport,
};

/// The value behind `m`, even if a holder panicked (every value guarded here stays
/// consistent).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
