//! The Shardcar sidecar: a thin tokio driver around `shardcar-filter`.
