//! The VOLT envelopes: the events of the contract and their JSON bodies.
//! Correlation is by `requestId`; Socket.IO acks are not used.

//! The types live here; what reads and writes them is split by concern:
//! - `decode`: the general path, from a decoded packet (`VoltEvent::from_packet`);
//! - `fast_decode`: the hot-path decoders straight from an event array's JSON;
//! - `scan`: the reply shape every peer sends, read without a JSON parser;
//! - `encode`: events to frames (`VoltEvent::encode`, `encode_command`, ...).

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::message::TeamClusterDaemonMessage;

mod decode;
mod encode;
mod fast_decode;
mod scan;

pub use encode::{encode_command, encode_command_into, event_frame};
pub use fast_decode::{decode_command_ref, decode_command_response, decode_event_array};
pub use scan::{scan_command_response, ScannedResponse};

/// Event names of the contract.
pub mod names {
    /// Daemon → server command.
    pub const COMMAND: &str = "command";
    /// Server → daemon answer to a command.
    pub const COMMAND_RESPONSE: &str = "command-response";
    /// Server → daemon command.
    pub const REVERSE_COMMAND: &str = "reverse-command";
    /// Daemon → server answer to a reverse command.
    pub const REVERSE_RESPONSE: &str = "reverse-response";
    /// One chunk of a streamed answer.
    pub const REVERSE_STREAM: &str = "reverse-stream";
    /// The end of a streamed answer.
    pub const REVERSE_STREAM_END: &str = "reverse-stream-end";
    /// Fire-and-forget message, both ways.
    pub const MESSAGE: &str = "message";
}

/// An error as the wire carries it: `{"code","message"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code, e.g. `NOT_FOUND`.
    #[serde(default)]
    pub code: String,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
}

impl ErrorBody {
    /// An error body.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// Reads an optional error leniently: anything but an object counts as absent,
/// so an odd `error` never turns a reply into a protocol error.
fn lenient_error<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ErrorBody>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(v.and_then(|v| serde_json::from_value(v).ok()))
}

/// `command`: the daemon asks the server to do something.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandRequest {
    /// UUID v4 correlating the response.
    pub request_id: String,
    /// The command name.
    pub command: String,
    /// Arguments; omitted on the wire when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
}

/// `command-response`: the server's one answer to a `command`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandResponse {
    /// The request this answers.
    pub request_id: String,
    /// Success or rejection.
    pub ok: bool,
    /// The result, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// Why, on rejection.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_error"
    )]
    pub error: Option<ErrorBody>,
}

/// A `command-response` as the hot path reads it: borrowed from the frame,
/// `data` left as raw JSON for whoever waits on the command to parse. The
/// thread that reads the socket then allocates nothing for the reply's
/// body, and the waiter's own thread owns (and frees) the parsed value.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandResponseRef<'a> {
    /// The request this answers.
    #[serde(borrow)]
    pub request_id: Cow<'a, str>,
    /// Success or rejection.
    pub ok: bool,
    /// The result, on success, unparsed (`null` reads as `None`).
    #[serde(default, borrow)]
    pub data: Option<&'a RawValue>,
    /// Why, on rejection.
    #[serde(default, deserialize_with = "lenient_error")]
    pub error: Option<ErrorBody>,
}

/// A `command` borrowed from its frame, `payload` unparsed: what
/// [`decode_command_ref`] gives.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandRequestRef<'a> {
    /// UUID v4 correlating the response.
    #[serde(borrow)]
    pub request_id: Cow<'a, str>,
    /// The command name.
    #[serde(borrow)]
    pub command: Cow<'a, str>,
    /// Arguments, unparsed (`null` reads as `None`, as for
    /// [`CommandRequest`]).
    #[serde(default, borrow)]
    pub payload: Option<&'a RawValue>,
}

/// `reverse-command`: the server asks the daemon to do something.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReverseCommand {
    /// Correlates the reply.
    pub request_id: String,
    /// The command name, which selects the handler.
    pub command: String,
    /// Arguments, when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
}

/// What a `reverse-response` carries besides status and headers.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyBody {
    /// Status and headers only.
    None,
    /// `data`: a JSON value.
    Data(Value),
    /// `body`: bytes, sent as one binary attachment.
    Body(Vec<u8>),
    /// `stream: true`: chunks follow as `reverse-stream` events.
    Stream,
}

/// `reverse-response`: the daemon's one reply to a `reverse-command`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReverseResponse {
    /// The request this answers.
    pub request_id: String,
    /// The command it answers.
    pub command: String,
    /// HTTP-like status, 200 by default.
    pub status: u16,
    /// Headers, `{}` by default.
    pub headers: Map<String, Value>,
    /// Data, body, stream or nothing.
    pub body: ReplyBody,
    /// Why it failed, for 4xx/5xx replies.
    pub error: Option<ErrorBody>,
}

/// `reverse-stream`: one chunk of a streamed reply.
#[derive(Debug, Clone, PartialEq)]
pub struct ReverseStream {
    /// The request this belongs to.
    pub request_id: String,
    /// 0, 1, 2, ... in order.
    pub seq: u64,
    /// The chunk's bytes (one binary attachment).
    pub chunk: Vec<u8>,
}

/// `reverse-stream-end`: the end of a streamed reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReverseStreamEnd {
    /// The request this ends.
    pub request_id: String,
    /// How many chunks were sent.
    pub chunks: u64,
    /// Set when the stream ended early on an error.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_error"
    )]
    pub error: Option<ErrorBody>,
}

/// One VOLT event, either direction.
#[derive(Debug, Clone, PartialEq)]
pub enum VoltEvent {
    /// `command`.
    Command(CommandRequest),
    /// `command-response`.
    CommandResponse(CommandResponse),
    /// `reverse-command`.
    ReverseCommand(ReverseCommand),
    /// `reverse-response`.
    ReverseResponse(ReverseResponse),
    /// `reverse-stream`.
    ReverseStream(ReverseStream),
    /// `reverse-stream-end`.
    ReverseStreamEnd(ReverseStreamEnd),
    /// `message`.
    Message(TeamClusterDaemonMessage),
}

/// An event ready to send: the text frame (Engine.IO prefix included) and
/// the binary frames that follow it. They must go out back to back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The text frame.
    pub text: String,
    /// Attachments, one binary frame each, in order.
    pub attachments: Vec<Vec<u8>>,
}

impl Outgoing {
    /// A text frame with no attachments.
    pub fn text(text: String) -> Self {
        Outgoing {
            text,
            attachments: Vec::new(),
        }
    }
}

impl VoltEvent {
    /// The event name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            VoltEvent::Command(_) => names::COMMAND,
            VoltEvent::CommandResponse(_) => names::COMMAND_RESPONSE,
            VoltEvent::ReverseCommand(_) => names::REVERSE_COMMAND,
            VoltEvent::ReverseResponse(_) => names::REVERSE_RESPONSE,
            VoltEvent::ReverseStream(_) => names::REVERSE_STREAM,
            VoltEvent::ReverseStreamEnd(_) => names::REVERSE_STREAM_END,
            VoltEvent::Message(_) => names::MESSAGE,
        }
    }
}
