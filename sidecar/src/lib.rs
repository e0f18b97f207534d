//! The Shardcar sidecar: a thin tokio driver around `shardcar-filter`.
pub mod admin;
pub mod app;
pub mod config;
pub mod local;
pub mod metrics;
pub mod net;
pub mod shutdown;
pub mod tls;
