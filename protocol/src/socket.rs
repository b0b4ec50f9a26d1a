//! Socket.IO protocol v5 packets: `<type>[<n>-][<nsp>,][<ack id>][<json>]`.

use serde_json::Value;

use super::{DecodeError, Limits};

/// The seven Socket.IO packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// `0`: join a namespace (client) or accept the join (server).
    Connect,
    /// `1`: leave a namespace, or be kicked from it.
    Disconnect,
    /// `2`: an event with JSON arguments.
    Event,
    /// `3`: the acknowledgement of an event.
    Ack,
    /// `4`: the server refused the join.
    ConnectError,
    /// `5`: an event whose arguments carry binary attachments.
    BinaryEvent,
    /// `6`: an acknowledgement that carries binary attachments.
    BinaryAck,
}

impl PacketType {
    /// The digit that starts the packet.
    pub fn digit(self) -> char {
        match self {
            PacketType::Connect => '0',
            PacketType::Disconnect => '1',
            PacketType::Event => '2',
            PacketType::Ack => '3',
            PacketType::ConnectError => '4',
            PacketType::BinaryEvent => '5',
            PacketType::BinaryAck => '6',
        }
    }

    fn from_digit(c: char) -> Result<Self, DecodeError> {
        Ok(match c {
            '0' => PacketType::Connect,
            '1' => PacketType::Disconnect,
            '2' => PacketType::Event,
            '3' => PacketType::Ack,
            '4' => PacketType::ConnectError,
            '5' => PacketType::BinaryEvent,
            '6' => PacketType::BinaryAck,
            other => return Err(DecodeError::BadPacketType(other)),
        })
    }

    /// Whether packets of this type announce binary attachments.
    pub fn is_binary(self) -> bool {
        matches!(self, PacketType::BinaryEvent | PacketType::BinaryAck)
    }

    fn name(self) -> &'static str {
        match self {
            PacketType::Connect => "CONNECT",
            PacketType::Disconnect => "DISCONNECT",
            PacketType::Event => "EVENT",
            PacketType::Ack => "ACK",
            PacketType::ConnectError => "CONNECT_ERROR",
            PacketType::BinaryEvent => "BINARY_EVENT",
            PacketType::BinaryAck => "BINARY_ACK",
        }
    }
}

/// One Socket.IO packet (the part after the Engine.IO `4`).
///
/// ```
/// use volt_protocol::{socket::{Packet, PacketType}, Limits};
/// let p = Packet::decode(r#"2/daemon,["message",{"type":"x"}]"#, &Limits::default()).unwrap();
/// assert_eq!(p.packet_type, PacketType::Event);
/// assert_eq!(p.namespace, "/daemon");
/// assert_eq!(p.encode(), r#"2/daemon,["message",{"type":"x"}]"#);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// What kind of packet this is.
    pub packet_type: PacketType,
    /// The namespace, `/` when the packet names none.
    pub namespace: String,
    /// The ack id, when the sender wants an acknowledgement.
    pub id: Option<u64>,
    /// The JSON payload, when there is one.
    pub data: Option<Value>,
    /// How many binary frames follow (binary types only).
    pub attachments: usize,
}

impl Packet {
    /// A packet with no ack id and no attachments.
    pub fn new(packet_type: PacketType, namespace: impl Into<String>, data: Option<Value>) -> Self {
        Packet {
            packet_type,
            namespace: namespace.into(),
            id: None,
            data,
            attachments: 0,
        }
    }

    /// Decodes the text of a Socket.IO packet and checks that its payload has
    /// the shape its type allows.
    pub fn decode(text: &str, limits: &Limits) -> Result<Self, DecodeError> {
        let mut cur = Cursor { s: text, i: 0 };
        let type_char = cur.next_char().ok_or(DecodeError::Empty)?;
        let packet_type = PacketType::from_digit(type_char)?;

        let mut attachments = 0usize;
        if packet_type.is_binary() {
            let digits = cur.take_while(|c| c.is_ascii_digit());
            if digits.is_empty() || cur.next_char() != Some('-') {
                return Err(DecodeError::BadAttachmentCount);
            }
            let count: u64 = digits
                .parse()
                .map_err(|_| DecodeError::TooManyAttachments {
                    count: u64::MAX,
                    max: limits.max_attachments,
                })?;
            if count > limits.max_attachments as u64 {
                return Err(DecodeError::TooManyAttachments {
                    count,
                    max: limits.max_attachments,
                });
            }
            attachments = count as usize;
        }

        let namespace = if cur.peek() == Some('/') {
            let nsp = cur.take_while(|c| c != ',');
            cur.next_char(); // the comma, when present
            if nsp.len() > limits.max_namespace_bytes {
                return Err(DecodeError::BadNamespace(format!(
                    "{} bytes, over the limit of {}",
                    nsp.len(),
                    limits.max_namespace_bytes
                )));
            }
            nsp.to_owned()
        } else {
            "/".to_owned()
        };

        let digits = cur.take_while(|c| c.is_ascii_digit());
        let id = if digits.is_empty() {
            None
        } else {
            Some(digits.parse::<u64>().map_err(|_| DecodeError::BadAckId)?)
        };

        let rest = cur.rest();
        let data = if rest.is_empty() {
            None
        } else {
            Some(
                serde_json::from_str::<Value>(rest)
                    .map_err(|e| DecodeError::BadJson(e.to_string()))?,
            )
        };

        let packet = Packet {
            packet_type,
            namespace,
            id,
            data,
            attachments,
        };
        packet.check_payload()?;
        Ok(packet)
    }

    /// The payload rules of socket.io-parser: which JSON each type may carry.
    fn check_payload(&self) -> Result<(), DecodeError> {
        let bad = |reason: &str| Err(DecodeError::payload(self.packet_type.name(), reason));
        match (self.packet_type, &self.data) {
            (PacketType::Connect, None | Some(Value::Object(_))) => Ok(()),
            (PacketType::Connect, _) => bad("must be an object or absent"),
            (PacketType::Disconnect, None) => Ok(()),
            (PacketType::Disconnect, _) => bad("must be absent"),
            (PacketType::ConnectError, Some(Value::Object(_) | Value::String(_))) => Ok(()),
            (PacketType::ConnectError, _) => bad("must be an object or a string"),
            (PacketType::Event | PacketType::BinaryEvent, Some(Value::Array(args))) => {
                match args.first() {
                    Some(Value::String(_) | Value::Number(_)) => Ok(()),
                    _ => bad("must be an array starting with the event name"),
                }
            }
            (PacketType::Event | PacketType::BinaryEvent, _) => bad("must be an array"),
            (PacketType::Ack | PacketType::BinaryAck, Some(Value::Array(_))) => Ok(()),
            (PacketType::Ack | PacketType::BinaryAck, _) => bad("must be an array"),
        }
    }

    /// Encodes the packet (without the Engine.IO `4`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends the encoded packet to `out`, so a caller can put the
    /// Engine.IO prefix in front without a second copy.
    pub fn encode_into(&self, out: &mut String) {
        self.encode_header_into(out);
        if let Some(data) = &self.data {
            out.push_str(&data.to_string());
        }
    }

    /// Appends everything before the JSON payload: type, attachment count,
    /// namespace and ack id.
    pub fn encode_header_into(&self, out: &mut String) {
        encode_header(
            out,
            self.packet_type,
            self.attachments,
            &self.namespace,
            self.id,
        );
    }
}

/// Appends `<type>[<n>-][<nsp>,][<id>]` to `out`.
pub fn encode_header(
    out: &mut String,
    packet_type: PacketType,
    attachments: usize,
    namespace: &str,
    id: Option<u64>,
) {
    use std::fmt::Write;
    out.push(packet_type.digit());
    if packet_type.is_binary() {
        let _ = write!(out, "{attachments}-");
    }
    if namespace != "/" && !namespace.is_empty() {
        out.push_str(namespace);
        out.push(',');
    }
    if let Some(id) = id {
        let _ = write!(out, "{id}");
    }
}

struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<char> {
        self.s[self.i..].chars().next()
    }
    fn next_char(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += c.len_utf8();
        Some(c)
    }
    fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let start = self.i;
        while let Some(c) = self.peek() {
            if !f(c) {
                break;
            }
            self.i += c.len_utf8();
        }
        &self.s[start..self.i]
    }
    fn rest(&self) -> &'a str {
        &self.s[self.i..]
    }
}
