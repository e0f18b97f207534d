//! The Shardcar control service. This release runs planned and emergency reparents
//! against the topology (`shardcar-control reparent`) and the failover orchestrator
//! (`shardcar-control orchestrate`, also inside `shardcar local`); configuration
//! streaming and federation build on it.

mod http;
pub mod orchestrator;
pub mod reparent;

pub use orchestrator::OrchestratorOptions;
pub use reparent::{
    emergency_reparent, planned_reparent, EmergencyReport, ReparentError, ReparentOptions,
    ReparentReport,
};
