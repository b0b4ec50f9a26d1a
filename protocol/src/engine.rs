//! Engine.IO protocol v4 over WebSocket: one packet per text frame, binary
//! frames carry raw Socket.IO attachments with no prefix.

use serde::{Deserialize, Serialize};

use super::DecodeError;

/// The handshake the server sends in its open packet (`0{...}`).
///
/// ```
/// use volt_protocol::engine::{EnginePacket, Handshake};
/// let p = EnginePacket::decode(r#"0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#).unwrap();
/// let EnginePacket::Open(h) = p else { panic!() };
/// assert_eq!(h.ping_interval, 25000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Handshake {
    /// The Engine.IO session id.
    pub sid: String,
    /// Transports the server offers to upgrade to (always empty over WebSocket).
    #[serde(default)]
    pub upgrades: Vec<String>,
    /// Milliseconds between the server's pings.
    pub ping_interval: u64,
    /// Milliseconds the server waits for a pong (and the client, past the interval, for a ping).
    pub ping_timeout: u64,
    /// Largest frame the server accepts, in bytes.
    #[serde(default = "default_max_payload")]
    pub max_payload: u64,
}

fn default_max_payload() -> u64 {
    1_000_000
}

impl Handshake {
    /// How long the client may go without a ping before it declares the
    /// connection lost: `pingInterval + pingTimeout`.
    pub fn ping_deadline(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.ping_interval.saturating_add(self.ping_timeout))
    }
}

/// One Engine.IO packet carried by a text frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnginePacket<'a> {
    /// `0{handshake}`: the server opened the session.
    Open(Handshake),
    /// `1`: close (not used over WebSocket, but decoded).
    Close,
    /// `2[data]`: ping, server to client.
    Ping(&'a str),
    /// `3[data]`: pong, client to server.
    Pong(&'a str),
    /// `4<socket.io packet>`: a message.
    Message(&'a str),
    /// `5`: upgrade (never used here, decoded for completeness).
    Upgrade,
    /// `6`: noop.
    Noop,
}

impl<'a> EnginePacket<'a> {
    /// Decodes one text frame.
    ///
    /// ```
    /// use volt_protocol::engine::EnginePacket;
    /// assert_eq!(EnginePacket::decode("2").unwrap(), EnginePacket::Ping(""));
    /// assert_eq!(EnginePacket::decode("4hello").unwrap(), EnginePacket::Message("hello"));
    /// assert!(EnginePacket::decode("x").is_err());
    /// ```
    pub fn decode(text: &'a str) -> Result<Self, DecodeError> {
        let mut chars = text.chars();
        let kind = chars.next().ok_or(DecodeError::Empty)?;
        let rest = chars.as_str();
        Ok(match kind {
            '0' => EnginePacket::Open(
                serde_json::from_str(rest).map_err(|e| DecodeError::BadHandshake(e.to_string()))?,
            ),
            '1' => EnginePacket::Close,
            '2' => EnginePacket::Ping(rest),
            '3' => EnginePacket::Pong(rest),
            '4' => EnginePacket::Message(rest),
            '5' => EnginePacket::Upgrade,
            '6' => EnginePacket::Noop,
            other => return Err(DecodeError::BadEnginePacketType(other)),
        })
    }

    /// Encodes the packet as the text of one frame.
    ///
    /// ```
    /// use volt_protocol::engine::EnginePacket;
    /// assert_eq!(EnginePacket::Pong("").encode(), "3");
    /// ```
    pub fn encode(&self) -> String {
        match self {
            EnginePacket::Open(h) => {
                let mut s = String::from("0");
                s.push_str(&serde_json::to_string(h).expect("a handshake always serializes"));
                s
            }
            EnginePacket::Close => "1".into(),
            EnginePacket::Ping(d) => format!("2{d}"),
            EnginePacket::Pong(d) => format!("3{d}"),
            EnginePacket::Message(d) => format!("4{d}"),
            EnginePacket::Upgrade => "5".into(),
            EnginePacket::Noop => "6".into(),
        }
    }
}

/// A WebSocket frame as the Engine.IO layer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsFrame {
    /// A text frame: one Engine.IO packet.
    Text(String),
    /// A binary frame: one Socket.IO attachment.
    Binary(Vec<u8>),
}

impl WsFrame {
    /// The frame's payload size in bytes (what `maxPayload` limits).
    pub fn len(&self) -> usize {
        match self {
            WsFrame::Text(t) => t.len(),
            WsFrame::Binary(b) => b.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
