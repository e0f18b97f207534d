//! The MySQL client/server protocol, both sides: framing, the connection phase (greeting,
//! TLS upgrade, authentication), commands and their responses, result sets.
//!
//! The types here decode borrowed payloads and encode into `Vec<u8>`; the state machines
//! take payloads in and return what to send, so a driver only moves bytes.

pub mod auth;
pub mod client;
pub mod column;
pub mod constants;
pub mod error_codes;
pub mod exchange;
pub mod handshake;
pub mod packet;
pub mod response;
pub mod resultset;
pub mod server;
pub mod stmt;
pub mod value;
pub mod wire;

pub use constants::{capabilities, status, Command};
pub use error_codes::ErrorCode;
pub use packet::{FrameError, Packet, PacketAssembler, PacketHeader};
pub use response::{EofPacket, ErrPacket, OkPacket};
pub use wire::{DecodeError, DecodeResult, Reader};
