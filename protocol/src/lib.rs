//! The VOLT wire codec, free of I/O: WebSocket frames, Engine.IO v4,
//! Socket.IO v5 and the VOLT envelopes. The client (`volt-daemon-client`)
//! and the mock server (`volt-mock-server`) both speak through it, so each
//! layer is testable without a socket.
//!
//! ```
//! use volt_protocol::{Decoder, Incoming, Limits};
//!
//! let mut decoder = Decoder::new(Limits::default());
//! // The server's Socket.IO ping, as Engine.IO sends it in a text frame.
//! assert_eq!(decoder.text("2").unwrap(), Some(Incoming::Ping(String::new())));
//! ```
//!
//! Layers, bottom up:
//! - [`websocket`]: RFC 6455 frames in (reassembled messages) and out;
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
pub mod id_hash;
pub mod json;
pub mod message;
pub mod socket;
pub mod websocket;

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
