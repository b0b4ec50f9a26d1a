//! Encoding: VOLT events to Socket.IO text frames (and attachments).

use serde::Serialize;
use serde_json::{Map, Value};

use super::{names, ErrorBody, Outgoing, ReplyBody, VoltEvent};
use crate::binary::placeholder;
use crate::json;
use crate::socket::{encode_header, PacketType};

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

impl VoltEvent {
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
