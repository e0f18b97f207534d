//! The configuration stream between the control service and the sidecars (gRPC package
//! `shardcar.config.v1`, in `proto/`): the generated messages and service, the
//! versioned [`View`] both ends hold, and conversions from the topology's records.

pub mod convert;
pub mod parts;
pub mod view;

/// The generated messages, client and server.
#[allow(missing_debug_implementations, clippy::all)]
pub mod pb {
    tonic::include_proto!("shardcar.config.v1");
}

pub use parts::{split, PartError, Parts, PART_BYTES};
pub use view::{ApplyError, View};
