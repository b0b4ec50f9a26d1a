//! Binary attachments: byte buffers inside a payload travel as separate
//! binary frames, replaced in the JSON by `{"_placeholder":true,"num":n}`.

use serde_json::{Map, Value};

use super::socket::{Packet, PacketType};
use super::DecodeError;

/// A payload tree that may hold byte buffers, as a socket.io payload can.
///
/// ```
/// use volt_protocol::binary::{deconstruct, reconstruct, BinaryValue};
/// let v = BinaryValue::Array(vec![BinaryValue::Json("blob".into()), BinaryValue::Bytes(vec![1, 2])]);
/// let (json, buffers) = deconstruct(v.clone());
/// assert_eq!(json, serde_json::json!(["blob", {"_placeholder": true, "num": 0}]));
/// assert_eq!(reconstruct(json, &buffers).unwrap(), v);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum BinaryValue {
    /// A JSON value with no buffers inside.
    Json(Value),
    /// A byte buffer.
    Bytes(Vec<u8>),
    /// An array whose items may hold buffers.
    Array(Vec<BinaryValue>),
    /// An object whose values may hold buffers.
    Object(Vec<(String, BinaryValue)>),
}

/// The JSON that stands for attachment `num`.
pub fn placeholder(num: usize) -> Value {
    let mut m = Map::with_capacity(2);
    m.insert("_placeholder".into(), Value::Bool(true));
    m.insert("num".into(), Value::from(num));
    Value::Object(m)
}

/// The attachment index a placeholder object refers to, if `v` is one.
pub fn placeholder_num(v: &Value) -> Option<u64> {
    let obj = v.as_object()?;
    if obj.get("_placeholder")? != &Value::Bool(true) {
        return None;
    }
    obj.get("num")?.as_u64()
}

/// Replaces every buffer with a placeholder, numbering them in depth-first
/// order, and returns the JSON with the buffers in that order.
pub fn deconstruct(value: BinaryValue) -> (Value, Vec<Vec<u8>>) {
    let mut buffers = Vec::new();
    let json = deconstruct_into(value, &mut buffers);
    (json, buffers)
}

fn deconstruct_into(value: BinaryValue, buffers: &mut Vec<Vec<u8>>) -> Value {
    match value {
        BinaryValue::Json(v) => v,
        BinaryValue::Bytes(b) => {
            buffers.push(b);
            placeholder(buffers.len() - 1)
        }
        BinaryValue::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| deconstruct_into(v, buffers))
                .collect(),
        ),
        BinaryValue::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k, deconstruct_into(v, buffers)))
                .collect(),
        ),
    }
}

/// Puts the buffers back where their placeholders stand.
pub fn reconstruct(value: Value, buffers: &[Vec<u8>]) -> Result<BinaryValue, DecodeError> {
    if !contains_placeholder(&value) {
        return Ok(BinaryValue::Json(value));
    }
    if let Some(num) = placeholder_num(&value) {
        let buf = usize::try_from(num)
            .ok()
            .and_then(|i| buffers.get(i))
            .ok_or(DecodeError::PlaceholderOutOfRange {
                num,
                count: buffers.len(),
            })?;
        return Ok(BinaryValue::Bytes(buf.clone()));
    }
    Ok(match value {
        Value::Array(items) => BinaryValue::Array(
            items
                .into_iter()
                .map(|v| reconstruct(v, buffers))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(fields) => BinaryValue::Object(
            fields
                .into_iter()
                .map(|(k, v)| Ok((k, reconstruct(v, buffers)?)))
                .collect::<Result<_, DecodeError>>()?,
        ),
        other => BinaryValue::Json(other),
    })
}

fn contains_placeholder(v: &Value) -> bool {
    placeholder_num(v).is_some()
        || match v {
            Value::Array(items) => items.iter().any(contains_placeholder),
            Value::Object(fields) => fields.values().any(contains_placeholder),
            _ => false,
        }
}

/// Checks that every placeholder in `v` is below `count`.
pub fn check_placeholders(v: &Value, count: usize) -> Result<(), DecodeError> {
    if let Some(num) = placeholder_num(v) {
        return if num < count as u64 {
            Ok(())
        } else {
            Err(DecodeError::PlaceholderOutOfRange { num, count })
        };
    }
    match v {
        Value::Array(items) => items.iter().try_for_each(|i| check_placeholders(i, count)),
        Value::Object(fields) => fields
            .values()
            .try_for_each(|i| check_placeholders(i, count)),
        _ => Ok(()),
    }
}

/// A binary packet with all of its attachments.
#[derive(Debug, Clone, PartialEq)]
pub struct Complete {
    /// The header packet.
    pub packet: Packet,
    /// The attachments, in order.
    pub attachments: Vec<Vec<u8>>,
}

/// Collects the binary frames that follow a binary packet header.
///
/// ```
/// use volt_protocol::{binary::Reassembler, socket::Packet, Limits};
/// let limits = Limits::default();
/// let header = Packet::decode(r#"51-/daemon,["blob",{"_placeholder":true,"num":0}]"#, &limits).unwrap();
/// let mut r = Reassembler::default();
/// assert!(r.start(header).unwrap().is_none());
/// let done = r.push_binary(vec![1, 2, 3]).unwrap().unwrap();
/// assert_eq!(done.attachments, vec![vec![1, 2, 3]]);
/// ```
#[derive(Debug, Default)]
pub struct Reassembler {
    waiting: Option<Complete>,
}

impl Reassembler {
    /// Whether a header is waiting for binary frames.
    pub fn is_waiting(&self) -> bool {
        self.waiting.is_some()
    }

    /// Takes a decoded packet. A packet with no attachments is complete at
    /// once; a binary header waits for its frames.
    pub fn start(&mut self, packet: Packet) -> Result<Option<Complete>, DecodeError> {
        if let Some(missing) = self.abandon() {
            return Err(DecodeError::MissingAttachments { missing });
        }
        // Placeholders mean something only in binary packets; elsewhere a
        // `{"_placeholder":true,...}` object is ordinary data (as in JS).
        if let (true, Some(data)) = (packet.packet_type.is_binary(), &packet.data) {
            check_placeholders(data, packet.attachments)?;
        }
        if packet.attachments == 0 {
            return Ok(Some(Complete {
                packet,
                attachments: Vec::new(),
            }));
        }
        self.waiting = Some(Complete {
            attachments: Vec::with_capacity(packet.attachments),
            packet,
        });
        Ok(None)
    }

    /// Takes one binary frame.
    pub fn push_binary(&mut self, bytes: Vec<u8>) -> Result<Option<Complete>, DecodeError> {
        let w = self.waiting.as_mut().ok_or(DecodeError::UnexpectedBinary)?;
        w.attachments.push(bytes);
        if w.attachments.len() == w.packet.attachments {
            return Ok(self.waiting.take());
        }
        Ok(None)
    }

    /// Forgets a half-received packet (after the connection was lost).
    pub fn reset(&mut self) {
        self.waiting = None;
    }

    /// Drops a half-received packet, returning how many attachments it
    /// still missed, or `None` when nothing was waiting.
    pub fn abandon(&mut self) -> Option<usize> {
        self.waiting
            .take()
            .map(|w| w.packet.attachments - w.attachments.len())
    }
}

/// Builds the packet for an event whose arguments may hold buffers: an
/// `EVENT` when there are none, else a `BINARY_EVENT` with its attachments.
pub fn event_packet(namespace: &str, args: BinaryValue) -> (Packet, Vec<Vec<u8>>) {
    let (json, buffers) = deconstruct(args);
    let packet_type = if buffers.is_empty() {
        PacketType::Event
    } else {
        PacketType::BinaryEvent
    };
    let mut packet = Packet::new(packet_type, namespace, Some(json));
    packet.attachments = buffers.len();
    (packet, buffers)
}
