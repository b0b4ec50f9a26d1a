//! The one error type of the codec: every malformed input becomes a value
//! that names what was wrong, never a panic.

use thiserror::Error;

/// Why a frame or packet could not be decoded.
///
/// ```
/// use volt_protocol::{socket::Packet, DecodeError, Limits};
/// let err = Packet::decode("9", &Limits::default()).unwrap_err();
/// assert_eq!(err, DecodeError::BadPacketType('9'));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame was empty: every packet starts with a type digit.
    #[error("empty packet")]
    Empty,
    /// The first character is not an Engine.IO packet type.
    #[error("bad Engine.IO packet type {0:?}")]
    BadEnginePacketType(char),
    /// The first character is not a Socket.IO packet type.
    #[error("bad Socket.IO packet type {0:?}")]
    BadPacketType(char),
    /// The namespace is malformed (not `/...` up to a comma).
    #[error("bad namespace: {0}")]
    BadNamespace(String),
    /// The ack id is not a number that fits in 64 bits.
    #[error("bad ack id")]
    BadAckId,
    /// The attachment count of a binary packet is missing or not a number.
    #[error("bad attachment count")]
    BadAttachmentCount,
    /// The JSON part does not parse.
    #[error("bad JSON: {0}")]
    BadJson(String),
    /// The Engine.IO open packet is not a valid handshake.
    #[error("bad handshake: {0}")]
    BadHandshake(String),
    /// The JSON is valid but not of the shape the packet type allows.
    #[error("bad payload for {packet}: {reason}")]
    BadPayload {
        /// The packet type or event whose payload is wrong.
        packet: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A binary packet announces more attachments than the limit.
    #[error("too many attachments: {count} (limit {max})")]
    TooManyAttachments {
        /// Announced attachments.
        count: u64,
        /// The configured limit.
        max: usize,
    },
    /// A placeholder refers to an attachment that does not exist.
    #[error("placeholder {num} out of range ({count} attachments)")]
    PlaceholderOutOfRange {
        /// The placeholder's `num`.
        num: u64,
        /// Attachments carried by the packet.
        count: usize,
    },
    /// A frame is larger than the incoming limit.
    #[error("frame of {size} bytes over the limit of {max} bytes")]
    FrameTooLarge {
        /// The frame's size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A binary frame arrived while no binary packet header was waiting for it.
    #[error("binary frame with no header waiting")]
    UnexpectedBinary,
    /// A text frame arrived while a binary packet still waited for attachments.
    #[error("text frame while {missing} attachment(s) were still expected")]
    MissingAttachments {
        /// How many attachments had not arrived.
        missing: usize,
    },
    /// An event whose name this protocol does not know.
    #[error("unknown event {0:?}")]
    UnknownEvent(String),
}

impl DecodeError {
    pub(crate) fn payload(packet: impl Into<String>, reason: impl Into<String>) -> Self {
        DecodeError::BadPayload {
            packet: packet.into(),
            reason: reason.into(),
        }
    }
}
