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
