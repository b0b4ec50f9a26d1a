//! The VOLT envelopes: the events of the contract and their JSON bodies.
//! Correlation is by `requestId`; Socket.IO acks are not used.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::binary::{placeholder, placeholder_num, Complete};
use super::json;
use super::message::TeamClusterDaemonMessage;
use super::socket::{encode_header, PacketType};
use super::DecodeError;

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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReverseResponseOut<'a> {
    request_id: &'a str,
    command: &'a str,
    status: u16,
    headers: &'a Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a ErrorBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReverseResponseIn {
    request_id: String,
    command: String,
    #[serde(default = "default_status")]
    status: u16,
    #[serde(default)]
    headers: Map<String, Value>,
    #[serde(default, deserialize_with = "present")]
    data: Option<Value>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default, deserialize_with = "lenient_error")]
    error: Option<ErrorBody>,
}

fn default_status() -> u16 {
    200
}

/// Keeps `"data": null` apart from an absent `data`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
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

    /// Reads an event from a complete `EVENT`/`BINARY_EVENT` packet.
    ///
    /// ```
    /// use volt_protocol::{envelope::VoltEvent, Decoder, Incoming, Limits};
    /// let mut d = Decoder::new(Limits::default());
    /// let Some(Incoming::Packet(p)) = d.text(r#"42/daemon,["command-response",{"requestId":"r1","ok":true}]"#).unwrap() else { panic!() };
    /// let VoltEvent::CommandResponse(r) = VoltEvent::from_packet(p).unwrap() else { panic!() };
    /// assert!(r.ok && r.data.is_none());
    /// ```
    pub fn from_packet(complete: Complete) -> Result<VoltEvent, DecodeError> {
        let Complete {
            packet,
            attachments,
        } = complete;
        if !matches!(
            packet.packet_type,
            PacketType::Event | PacketType::BinaryEvent
        ) {
            return Err(DecodeError::payload(
                format!("{:?}", packet.packet_type),
                "not an event",
            ));
        }
        let Some(Value::Array(mut args)) = packet.data else {
            return Err(DecodeError::payload("EVENT", "must be an array"));
        };
        if args.is_empty() {
            return Err(DecodeError::payload("EVENT", "has no name"));
        }
        let name = match args.remove(0) {
            Value::String(s) => s,
            other => return Err(DecodeError::UnknownEvent(other.to_string())),
        };
        let arg = if args.is_empty() {
            Value::Null
        } else {
            args.swap_remove(0)
        };
        Self::from_args(&name, arg, attachments)
    }

    /// Reads an event from its name, first argument and attachments.
    pub fn from_args(
        name: &str,
        arg: Value,
        mut attachments: Vec<Vec<u8>>,
    ) -> Result<VoltEvent, DecodeError> {
        let bad = |e: serde_json::Error| DecodeError::payload(name, e.to_string());
        Ok(match name {
            names::COMMAND => VoltEvent::Command(serde_json::from_value(arg).map_err(bad)?),
            names::COMMAND_RESPONSE => {
                VoltEvent::CommandResponse(serde_json::from_value(arg).map_err(bad)?)
            }
            names::REVERSE_COMMAND => {
                VoltEvent::ReverseCommand(serde_json::from_value(arg).map_err(bad)?)
            }
            names::REVERSE_RESPONSE => {
                let r: ReverseResponseIn = serde_json::from_value(arg).map_err(bad)?;
                let body = match (r.data, r.body, r.stream) {
                    (None, None, None | Some(false)) => ReplyBody::None,
                    (Some(d), None, None | Some(false)) => ReplyBody::Data(d),
                    (None, Some(b), None | Some(false)) => {
                        ReplyBody::Body(take_attachment(name, &b, &mut attachments)?)
                    }
                    (None, None, Some(true)) => ReplyBody::Stream,
                    _ => {
                        return Err(DecodeError::payload(
                            name,
                            "data, body and stream are mutually exclusive",
                        ))
                    }
                };
                VoltEvent::ReverseResponse(ReverseResponse {
                    request_id: r.request_id,
                    command: r.command,
                    status: r.status,
                    headers: r.headers,
                    body,
                    error: r.error,
                })
            }
            names::REVERSE_STREAM => {
                #[derive(Deserialize)]
                #[serde(rename_all = "camelCase")]
                struct In {
                    request_id: String,
                    seq: u64,
                    chunk: Value,
                }
                let s: In = serde_json::from_value(arg).map_err(bad)?;
                VoltEvent::ReverseStream(ReverseStream {
                    chunk: take_attachment(name, &s.chunk, &mut attachments)?,
                    request_id: s.request_id,
                    seq: s.seq,
                })
            }
            names::REVERSE_STREAM_END => {
                VoltEvent::ReverseStreamEnd(serde_json::from_value(arg).map_err(bad)?)
            }
            names::MESSAGE => {
                VoltEvent::Message(TeamClusterDaemonMessage::from_value(arg).map_err(bad)?)
            }
            other => return Err(DecodeError::UnknownEvent(other.to_owned())),
        })
    }

    /// Encodes the event for `namespace`, moving its bytes (no copy of a
    /// body or chunk).
    ///
    /// ```
    /// use volt_protocol::envelope::{CommandRequest, VoltEvent};
    /// let out = VoltEvent::Command(CommandRequest {
    ///     request_id: "r1".into(), command: "echo".into(), payload: None,
    /// }).encode("/daemon");
    /// assert_eq!(out.text, r#"42/daemon,["command",{"requestId":"r1","command":"echo"}]"#);
    /// ```
    pub fn encode(self, namespace: &str) -> Outgoing {
        let name = self.name();
        match self {
            VoltEvent::Command(c) => Outgoing::text(event_frame_of(namespace, name, &c, 0)),
            VoltEvent::CommandResponse(c) => Outgoing::text(event_frame_of(namespace, name, &c, 0)),
            VoltEvent::ReverseCommand(c) => Outgoing::text(event_frame_of(namespace, name, &c, 0)),
            VoltEvent::ReverseStreamEnd(c) => {
                Outgoing::text(event_frame_of(namespace, name, &c, 0))
            }
            VoltEvent::Message(m) => Outgoing::text(event_frame_of(namespace, name, &m, 0)),
            VoltEvent::ReverseStream(s) => {
                #[derive(Serialize)]
                #[serde(rename_all = "camelCase")]
                struct Out<'a> {
                    request_id: &'a str,
                    seq: u64,
                    chunk: Value,
                }
                let out = Out {
                    request_id: &s.request_id,
                    seq: s.seq,
                    chunk: placeholder(0),
                };
                Outgoing {
                    text: event_frame_of(namespace, name, &out, 1),
                    attachments: vec![s.chunk],
                }
            }
            VoltEvent::ReverseResponse(r) => {
                let (data, body, stream, attachments) = match r.body {
                    ReplyBody::None => (None, None, None, Vec::new()),
                    ReplyBody::Data(d) => (Some(d), None, None, Vec::new()),
                    ReplyBody::Body(b) => (None, Some(placeholder(0)), None, vec![b]),
                    ReplyBody::Stream => (None, None, Some(true), Vec::new()),
                };
                let out = ReverseResponseOut {
                    request_id: &r.request_id,
                    command: &r.command,
                    status: r.status,
                    headers: &r.headers,
                    data: data.as_ref(),
                    body,
                    stream,
                    error: r.error.as_ref(),
                };
                Outgoing {
                    text: event_frame_of(namespace, name, &out, attachments.len()),
                    attachments,
                }
            }
        }
    }
}

/// Decodes the JSON array of a plain (non-binary) event straight into a
/// [`VoltEvent`], without building a `Value` tree for the envelope: the hot
/// path of both peers. Gives the same result as decoding the packet and
/// calling [`VoltEvent::from_packet`]; `None` when the array is not one this
/// path handles (a binary event, a non-string name, bad JSON), so the caller
/// falls back to the general path, which names the error.
///
/// ```
/// use volt_protocol::envelope::{decode_event_array, VoltEvent};
/// let e = decode_event_array(r#"["command-response",{"requestId":"r1","ok":true,"data":[1]}]"#);
/// assert!(matches!(e, Some(Ok(VoltEvent::CommandResponse(r))) if r.request_id == "r1"));
/// ```
pub fn decode_event_array(json: &str) -> Option<Result<VoltEvent, DecodeError>> {
    let mut de = serde_json::Deserializer::from_str(json);
    let event = serde::Deserializer::deserialize_seq(&mut de, EventArray).ok()?;
    de.end().ok()?;
    Some(event)
}

/// Decodes the JSON array of a plain event when it is a well-formed
/// `command-response`, without parsing its `data`; `None` for any other
/// array, which [`decode_event_array`] then handles. Agrees with it on
/// every field: `data` parses to the value `decode_event_array` gives.
///
/// ```
/// use volt_protocol::envelope::decode_command_response;
/// let r = decode_command_response(r#"["command-response",{"requestId":"r1","ok":true,"data":{"a":[1]}}]"#).unwrap();
/// assert_eq!((r.request_id.as_ref(), r.ok), ("r1", true));
/// assert_eq!(r.data.unwrap().get(), r#"{"a":[1]}"#);
/// assert!(decode_command_response(r#"["message",{"type":"x"}]"#).is_none());
/// ```
pub fn decode_command_response(json: &str) -> Option<CommandResponseRef<'_>> {
    decode_named(json, names::COMMAND_RESPONSE)
}

/// Decodes the JSON array of a plain event when it is a well-formed
/// `command`, without parsing its `payload`; `None` for any other array,
/// which [`decode_event_array`] then handles. For a server (the mock
/// server's `echo`) that sends the payload back as it came.
///
/// ```
/// use volt_protocol::envelope::decode_command_ref;
/// let c = decode_command_ref(r#"["command",{"requestId":"r1","command":"echo","payload":{"a": 1}}]"#).unwrap();
/// assert_eq!((c.request_id.as_ref(), c.command.as_ref()), ("r1", "echo"));
/// assert_eq!(c.payload.unwrap().get(), r#"{"a": 1}"#);
/// assert!(decode_command_ref(r#"["message",{"type":"x"}]"#).is_none());
/// ```
pub fn decode_command_ref(json: &str) -> Option<CommandRequestRef<'_>> {
    decode_named(json, names::COMMAND)
}

/// A successful `command-response` in the shape every peer sends in
/// practice, found by [`scan_command_response`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedResponse<'a> {
    /// The request this answers (no escapes in it).
    pub request_id: &'a str,
    /// `data` as it appears in the frame: one JSON value by its structure
    /// (brackets and strings balance), not yet validated. `None` when absent.
    pub data: Option<&'a str>,
}

/// The reply shape every peer sends in practice, read without a JSON
/// parser: exactly `["command-response",{"requestId":"<id>","ok":true}]`
/// or the same with `,"data":<value>` last. `None` for anything else (other
/// key order, whitespace, escapes in the id, `ok:false`, extra fields),
/// which [`decode_command_response`] then reads.
///
/// `data` is delimited, not validated: its brackets and strings must
/// balance and close exactly at its end, but whether it is valid JSON is
/// found out by whoever parses it, which reports the error for that
/// command (where a full parse here would have dropped the frame and left
/// the command to time out). This scan is the whole cost of a reply on the
/// connection thread.
///
/// ```
/// use volt_protocol::envelope::scan_command_response;
/// let r = scan_command_response(r#"["command-response",{"requestId":"r1","ok":true,"data":{"a":"}"}}]"#).unwrap();
/// assert_eq!((r.request_id, r.data), ("r1", Some(r#"{"a":"}"}"#)));
/// // An extra field after `data`: not this shape.
/// assert!(scan_command_response(r#"["command-response",{"requestId":"r1","ok":true,"data":1,"x":2}]"#).is_none());
/// ```
pub fn scan_command_response(json: &str) -> Option<ScannedResponse<'_>> {
    let rest = json.strip_prefix(r#"["command-response",{"requestId":""#)?;
    // The id ends at its quote; an escape or a raw control character (not
    // valid JSON) means another path must read it.
    let end = rest
        .bytes()
        .position(|b| b == b'"' || b == b'\\' || b < 0x20)?;
    let (request_id, rest) = rest.split_at(end);
    let rest = rest.strip_prefix(r#"","ok":true"#)?;
    if rest == "}]" {
        return Some(ScannedResponse {
            request_id,
            data: None,
        });
    }
    let data = rest.strip_prefix(r#","data":"#)?.strip_suffix("}]")?;
    is_one_value(data.as_bytes()).then_some(ScannedResponse {
        request_id,
        data: Some(data),
    })
}

/// Whether `b` is one JSON value by its structure: a string, or brackets
/// that close exactly at the end, or a bare scalar (number or literal).
fn is_one_value(b: &[u8]) -> bool {
    match b.first() {
        None => false,
        Some(b'"') => string_end(b, 0) == Some(b.len() - 1),
        Some(b'{' | b'[') => closes_at_end(b),
        Some(_) => b
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'+' | b'-')),
    }
}

/// Whether the bracket opened at `b[0]` closes at the last byte.
fn closes_at_end(b: &[u8]) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return i == b.len() - 1;
                }
            }
            b'"' => match string_end(b, i) {
                Some(end) => i = end,
                None => return false,
            },
            _ => {}
        }
        i += 1;
    }
    false
}

/// The index of the quote closing the string that opens at `b[start]`.
/// Strings are most of a typical reply, so this jumps from one quote or
/// backslash to the next (`memchr2`, SIMD) instead of stepping bytes.
fn string_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < b.len() {
        i += memchr::memchr2(b'"', b'\\', &b[i..])?;
        if b[i] == b'"' {
            return Some(i);
        }
        i += 2;
    }
    None
}

/// An event array `[name, arg, ...]` whose name is `self.0`, read as its
/// argument `T` (borrowing from the frame); anything else is an error, and
/// the caller falls back to the general path.
struct NamedArray<T>(&'static str, std::marker::PhantomData<T>);

/// Decodes `json` as the event array named `name` with a `T` argument.
fn decode_named<'de, T: Deserialize<'de>>(json: &'de str, name: &'static str) -> Option<T> {
    let mut de = serde_json::Deserializer::from_str(json);
    let arg = serde::Deserializer::deserialize_seq(
        &mut de,
        NamedArray::<T>(name, std::marker::PhantomData),
    )
    .ok()?;
    de.end().ok()?;
    Some(arg)
}

impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for NamedArray<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a {} array", self.0)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        use serde::de::{Error, IgnoredAny};
        let name: Cow<'de, str> = seq
            .next_element()?
            .ok_or_else(|| A::Error::custom("empty event array"))?;
        if name != self.0 {
            return Err(A::Error::custom("another event"));
        }
        let arg = seq
            .next_element()?
            .ok_or_else(|| A::Error::custom("no argument"))?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(arg)
    }
}

struct EventArray;

impl<'de> serde::de::Visitor<'de> for EventArray {
    type Value = Result<VoltEvent, DecodeError>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an event array")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        use serde::de::{Error, IgnoredAny};
        let name: std::borrow::Cow<'de, str> = seq
            .next_element()?
            .ok_or_else(|| A::Error::custom("empty event array"))?;
        fn typed<'de, A: serde::de::SeqAccess<'de>, T: Deserialize<'de>>(
            seq: &mut A,
            name: &str,
        ) -> Result<Result<T, DecodeError>, A::Error> {
            // A shape error is a decoded answer (the envelope is wrong), not
            // a reason to fall back.
            let arg: Value = seq.next_element()?.unwrap_or(Value::Null);
            Ok(T::deserialize(arg).map_err(|e| DecodeError::payload(name, e.to_string())))
        }
        let event = match name.as_ref() {
            names::COMMAND_RESPONSE => match seq.next_element::<CommandResponse>() {
                Ok(Some(r)) => Ok(VoltEvent::CommandResponse(r)),
                // Wrong shape: let the general path say what is wrong.
                _ => return Err(A::Error::custom("fall back")),
            },
            names::COMMAND => match seq.next_element::<CommandRequest>() {
                Ok(Some(r)) => Ok(VoltEvent::Command(r)),
                _ => return Err(A::Error::custom("fall back")),
            },
            names::REVERSE_COMMAND => match seq.next_element::<ReverseCommand>() {
                Ok(Some(r)) => Ok(VoltEvent::ReverseCommand(r)),
                _ => return Err(A::Error::custom("fall back")),
            },
            names::REVERSE_STREAM_END => typed(&mut seq, &name)?.map(VoltEvent::ReverseStreamEnd),
            _ => {
                let arg: Value = seq.next_element()?.unwrap_or(Value::Null);
                VoltEvent::from_args(&name, arg, Vec::new())
            }
        };
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(event)
    }
}

/// Encodes a `command` without building an owned envelope first: the
/// frame is written in one buffer, field by field, exactly as
/// `VoltEvent::Command(..).encode(namespace)` would write it.
///
/// ```
/// use volt_protocol::envelope::{encode_command, CommandRequest, VoltEvent};
/// let payload = serde_json::json!({"id": "c1"});
/// let fast = encode_command("/daemon", "r1", "stats", Some(&payload));
/// let slow = VoltEvent::Command(CommandRequest {
///     request_id: "r1".into(), command: "stats".into(), payload: Some(payload),
/// }).encode("/daemon");
/// assert_eq!(fast, slow.text);
/// ```
pub fn encode_command(
    namespace: &str,
    request_id: &str,
    command: &str,
    payload: Option<&Value>,
) -> String {
    let mut text = String::with_capacity(96 + namespace.len() + command.len());
    encode_command_into(&mut text, namespace, request_id, command, payload);
    text
}

/// [`encode_command`], appending to `text` (a buffer reused across
/// commands allocates nothing once grown).
///
/// ```
/// use volt_protocol::envelope::{encode_command, encode_command_into};
/// let mut buf = String::new();
/// encode_command_into(&mut buf, "/", "r1", "ping", None);
/// assert_eq!(buf, encode_command("/", "r1", "ping", None));
/// ```
pub fn encode_command_into(
    text: &mut String,
    namespace: &str,
    request_id: &str,
    command: &str,
    payload: Option<&Value>,
) {
    frame_prefix(text, namespace, names::COMMAND, 0);
    let mut bytes = std::mem::take(text).into_bytes();
    // The field order and omission of `CommandRequest`'s Serialize.
    bytes.extend_from_slice(b"{\"requestId\":");
    json::write_str(&mut bytes, request_id);
    bytes.extend_from_slice(b",\"command\":");
    json::write_str(&mut bytes, command);
    if let Some(payload) = payload {
        bytes.extend_from_slice(b",\"payload\":");
        json::write_value(&mut bytes, payload);
    }
    bytes.extend_from_slice(b"}]");
    // Everything written is UTF-8: a `str` prefix, then JSON.
    *text = String::from_utf8(bytes).unwrap_or_default();
}

/// The text frame of an event: `4` + header + `["name",<json>]`, where
/// `json` is the already-serialized argument.
pub fn event_frame(namespace: &str, name: &str, json: &str, attachments: usize) -> String {
    let mut text = String::with_capacity(json.len() + namespace.len() + name.len() + 12);
    frame_prefix(&mut text, namespace, name, attachments);
    text.push_str(json);
    text.push(']');
    text
}

/// Like [`event_frame`], serializing `arg` straight into the frame (no
/// intermediate string: this is on every command's path).
fn event_frame_of<T: Serialize + ?Sized>(
    namespace: &str,
    name: &str,
    arg: &T,
    attachments: usize,
) -> String {
    let mut text = String::with_capacity(128);
    frame_prefix(&mut text, namespace, name, attachments);
    let mut bytes = text.into_bytes();
    // The envelopes hold only strings, numbers, maps and JSON values, which
    // always serialize; serde_json writes UTF-8.
    let _ = serde_json::to_writer(&mut bytes, arg);
    bytes.push(b']');
    String::from_utf8(bytes).unwrap_or_default()
}

/// `4` + header + `["name",`.
fn frame_prefix(text: &mut String, namespace: &str, name: &str, attachments: usize) {
    text.push('4');
    let packet_type = if attachments == 0 {
        PacketType::Event
    } else {
        PacketType::BinaryEvent
    };
    encode_header(text, packet_type, attachments, namespace, None);
    text.push('[');
    if name
        .chars()
        .all(|c| c != '"' && c != '\\' && !c.is_control())
    {
        text.push('"');
        text.push_str(name);
        text.push('"');
    } else {
        text.push_str(&Value::from(name).to_string());
    }
    text.push(',');
}

fn take_attachment(
    event: &str,
    v: &Value,
    attachments: &mut [Vec<u8>],
) -> Result<Vec<u8>, DecodeError> {
    let num = placeholder_num(v)
        .ok_or_else(|| DecodeError::payload(event, "expected a binary placeholder"))?;
    let count = attachments.len();
    let slot = usize::try_from(num)
        .ok()
        .and_then(|i| attachments.get_mut(i))
        .ok_or(DecodeError::PlaceholderOutOfRange { num, count })?;
    Ok(std::mem::take(slot))
}
