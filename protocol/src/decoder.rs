//! The frame decoder: WebSocket frames in, complete Engine.IO / Socket.IO
//! packets out. It holds the only state of the codec (a binary packet
//! waiting for its attachments) and enforces the incoming limits.

use super::binary::{Complete, Reassembler};
use super::engine::{EnginePacket, Handshake};
use super::envelope::{decode_event_array, VoltEvent};
use super::socket::Packet;
use super::{DecodeError, Limits};

/// What one frame (or a binary packet's last frame) decoded to.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// The server opened the Engine.IO session.
    Open(Handshake),
    /// Engine.IO close.
    Close,
    /// Engine.IO ping, with its optional data (`probe`).
    Ping(String),
    /// Engine.IO pong.
    Pong(String),
    /// Engine.IO noop or upgrade: nothing to do.
    Noop,
    /// A complete Socket.IO packet and its attachments.
    Packet(Complete),
}

/// Turns WebSocket frames into packets, one frame at a time.
///
/// ```
/// use volt_protocol::{Decoder, Incoming, Limits};
/// let mut d = Decoder::new(Limits::default());
/// assert_eq!(d.text("2").unwrap(), Some(Incoming::Ping(String::new())));
/// assert!(d.text(r#"451-/daemon,["x",{"_placeholder":true,"num":0}]"#).unwrap().is_none());
/// let Some(Incoming::Packet(p)) = d.binary(vec![7]).unwrap() else { panic!() };
/// assert_eq!(p.attachments, vec![vec![7]]);
/// assert!(d.binary(vec![8]).is_err()); // nothing waits for it
/// ```
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    reassembler: Reassembler,
}

impl Decoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            reassembler: Reassembler::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Decodes a text frame. `Ok(None)` means a binary header now waits for
    /// its attachments.
    pub fn text(&mut self, text: &str) -> Result<Option<Incoming>, DecodeError> {
        if let Err(e) = self.check_size(text.len()) {
            self.reassembler.reset();
            return Err(e);
        }
        // A text frame in the middle of an attachment sequence breaks it:
        // the half packet is dropped and reported.
        if let Some(missing) = self.reassembler.abandon() {
            return Err(DecodeError::MissingAttachments { missing });
        }
        Ok(Some(match EnginePacket::decode(text)? {
            EnginePacket::Open(h) => Incoming::Open(h),
            EnginePacket::Close => Incoming::Close,
            EnginePacket::Ping(d) => Incoming::Ping(d.to_owned()),
            EnginePacket::Pong(d) => Incoming::Pong(d.to_owned()),
            EnginePacket::Upgrade | EnginePacket::Noop => Incoming::Noop,
            EnginePacket::Message(m) => {
                let packet = Packet::decode(m, &self.limits)?;
                match self.reassembler.start(packet)? {
                    Some(done) => Incoming::Packet(done),
                    None => return Ok(None),
                }
            }
        }))
    }

    /// The hot path: a text frame holding a plain `EVENT` on `namespace`
    /// (`42<nsp>,[...]`, no ack id) decoded straight into a [`VoltEvent`].
    /// `None` for anything else, or anything it cannot decode: call
    /// [`text`](Self::text), which handles every frame and names every error.
    pub fn event_fast_path(
        &self,
        text: &str,
        namespace: &str,
    ) -> Option<Result<VoltEvent, DecodeError>> {
        decode_event_array(self.event_json(text, namespace)?)
    }

    /// The JSON array of a text frame holding a plain `EVENT` on
    /// `namespace` (`42<nsp>,[...]`, no ack id), for the hot-path decoders
    /// ([`decode_event_array`], [`decode_command_response`]); `None` for
    /// any other frame, or while a binary packet awaits its attachments.
    ///
    /// [`decode_command_response`]: super::envelope::decode_command_response
    ///
    /// ```
    /// use volt_protocol::{Decoder, Limits};
    /// let d = Decoder::new(Limits::default());
    /// assert_eq!(d.event_json(r#"42/daemon,["message",{}]"#, "/daemon"), Some(r#"["message",{}]"#));
    /// assert_eq!(d.event_json(r#"421["message",{}]"#, "/"), None); // an ack id
    /// ```
    pub fn event_json<'t>(&self, text: &'t str, namespace: &str) -> Option<&'t str> {
        if self.reassembler.is_waiting() || text.len() > self.limits.max_frame_bytes {
            return None;
        }
        let rest = text.strip_prefix("42")?;
        let json = if namespace == "/" {
            rest
        } else {
            rest.strip_prefix(namespace)?.strip_prefix(',')?
        };
        json.starts_with('[').then_some(json)
    }

    /// Decodes a binary frame: the next attachment of the waiting packet.
    pub fn binary(&mut self, bytes: Vec<u8>) -> Result<Option<Incoming>, DecodeError> {
        if let Err(e) = self.check_size(bytes.len()) {
            self.reassembler.reset();
            return Err(e);
        }
        Ok(self.reassembler.push_binary(bytes)?.map(Incoming::Packet))
    }

    /// Forgets any half-received packet (after a reconnect).
    pub fn reset(&mut self) {
        self.reassembler.reset();
    }

    fn check_size(&self, size: usize) -> Result<(), DecodeError> {
        if size > self.limits.max_frame_bytes {
            return Err(DecodeError::FrameTooLarge {
                size,
                max: self.limits.max_frame_bytes,
            });
        }
        Ok(())
    }
}
