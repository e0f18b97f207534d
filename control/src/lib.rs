//! The Shardcar control service. This release runs planned and emergency reparents
//! against the topology (`shardcar-control reparent`, or `POST /reparent` on its API) and
//! the failover orchestrator (`shardcar-control orchestrate`, also inside `shardcar
//! local`); configuration streaming and federation build on it.

pub mod api;
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
