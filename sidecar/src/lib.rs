//! The Shardcar sidecar: a thin tokio driver around `shardcar-filter`.
pub mod admin;
pub mod config;
pub mod metrics;
pub mod shutdown;
pub mod tls;
pub mod app;
pub mod net;
pub mod local;
