//! The general decoding path: a VOLT event from a decoded Socket.IO packet
//! (its name, first argument and attachments).

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::{
    lenient_error, names, ErrorBody, ReplyBody, ReverseResponse, ReverseStream, VoltEvent,
};
use crate::binary::{placeholder_num, Complete};
use crate::message::TeamClusterDaemonMessage;
use crate::socket::PacketType;
use crate::DecodeError;

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

impl VoltEvent {
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
}

/// Takes the attachment a placeholder `v` of `event` points at.
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
