//! The wire codec, free of I/O: Engine.IO v4, Socket.IO v5 and the VOLT
//! envelopes. The client and the mock server both speak through it, so each
//! layer is testable without a socket.
//!
//! Layers, bottom up:
//! - [`engine`]: Engine.IO packets in WebSocket text frames;
//! - [`socket`]: Socket.IO packets inside Engine.IO messages;
//! - [`binary`]: attachments (placeholders and reassembly);
//! - [`decoder`]: frames in, complete packets out, with limits;
//! - [`envelope`]: the VOLT events (`command`, `reverse-response`, ...);
//! - [`message`]: the `message` event's typed payload;
//! - [`json`]: a fast JSON writer with `serde_json`'s exact output.

pub mod binary;
pub mod decoder;
pub mod engine;
pub mod envelope;
mod error;
pub mod json;
pub mod message;
pub mod socket;

pub use decoder::{Decoder, Incoming};
pub use error::DecodeError;

/// Bounds on what the decoder accepts, so hostile input cannot make it
/// allocate without limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame accepted, text or binary, in bytes.
    pub max_frame_bytes: usize,
    /// Most attachments a binary packet may announce.
    pub max_attachments: usize,
    /// Longest namespace accepted, in bytes.
    pub max_namespace_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 16 * 1024 * 1024,
            max_attachments: 16,
            max_namespace_bytes: 256,
        }
    }
}
