//! The reading half of the I/O loop (on `volt-conn`): frames off the
//! socket, the hot path for replies (scanned, then borrowed, then parsed),
//! everything else through the decoder and the state machine, whose
//! decisions it carries out.

use std::io;
use std::time::Instant;

use super::session::{Flow, Io, BATCH};
use super::state::{Action, End};
use crate::error::DaemonClientError;
use crate::events::ClientEvent;
use crate::job::Job;
use crate::protocol::envelope::{
    decode_command_response, decode_event_array, scan_command_response, Outgoing,
};
use crate::protocol::websocket::{self, append_pong, FrameError};
use crate::protocol::{DecodeError, Decoder, Incoming};
use crate::wire::socket::Wire;

impl Io {
    /// Reads up to a batch of messages; the flag says the socket may hold
    /// more.
    pub(crate) fn read_batch(&mut self, wire: &mut Wire) -> (Flow, bool) {
        let Wire {
            stream,
            reader,
            decoder,
            ..
        } = wire;
        let mut handled = 0;
        while handled < BATCH {
            let flow = match reader.next_message() {
                Ok(Some(message)) => {
                    handled += 1;
                    self.link.stats.frames_in(1);
                    self.on_message(message, decoder)
                }
                Ok(None) => match reader.fill(stream) {
                    Ok(0) => Flow::End(End::Lost("transport close")),
                    Ok(n) => {
                        self.link.stats.bytes_in(n);
                        self.arrival.read_again();
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return (Flow::Continue, false)
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        log::info!("read failed: {e}");
                        Flow::End(End::Lost("transport close"))
                    }
                },
                Err(e @ FrameError::TooLarge { .. }) => {
                    self.events.error(DaemonClientError::protocol(format!(
                        "incoming frame over max_incoming_frame_bytes: {e}"
                    )));
                    Flow::End(End::Lost("protocol error"))
                }
                Err(e) => {
                    self.events.error(DaemonClientError::protocol(format!(
                        "WebSocket protocol violation: {e}"
                    )));
                    Flow::End(End::Lost("protocol error"))
                }
            };
            if !matches!(flow, Flow::Continue) {
                return (flow, true);
            }
        }
        (Flow::Continue, true)
    }

    fn on_message(&mut self, message: websocket::Message<'_>, decoder: &mut Decoder) -> Flow {
        use websocket::Message;
        match message {
            Message::Text(text) => {
                log::trace!("< {text}");
                self.on_text(text, decoder)
            }
            Message::Binary(bytes) => {
                log::trace!("< <binary {} bytes>", bytes.len());
                let decoded = decoder.binary(bytes.to_vec());
                self.on_decoded(decoded)
            }
            Message::Ping(payload) => {
                append_pong(&mut self.reply_bytes, payload, Some(rand::random()));
                self.link.stats.frames_out(1);
                Flow::Continue
            }
            Message::Pong => Flow::Continue,
            Message::Close => Flow::End(End::Lost("transport close")),
        }
    }

    fn on_text(&mut self, text: &str, decoder: &mut Decoder) -> Flow {
        if let Some(json) = decoder
            .event_json(text, self.state.namespace())
            .filter(|_| self.state.is_serving())
        {
            if let Some(response) = scan_command_response(json) {
                let slot = self.link.complete_scanned(response, &mut self.arrival);
                self.to_wake.extend(slot);
                return Flow::Continue;
            }
            if let Some(response) = decode_command_response(json) {
                let slot = self.link.complete_raw(response, &mut self.arrival);
                self.to_wake.extend(slot);
                return Flow::Continue;
            }
            match decode_event_array(json) {
                Some(Ok(event)) => {
                    let action = self.state.on_event(event);
                    return self.apply(action);
                }
                Some(Err(e)) => {
                    self.events.error(DaemonClientError::protocol(e));
                    return Flow::Continue;
                }
                None => {}
            }
        }
        let decoded = decoder.text(text);
        self.on_decoded(decoded)
    }

    fn on_decoded(&mut self, decoded: Result<Option<Incoming>, DecodeError>) -> Flow {
        match decoded {
            Ok(None) => Flow::Continue,
            Ok(Some(incoming)) => {
                let action = self.state.on_incoming(incoming);
                self.apply(action)
            }
            Err(e @ DecodeError::FrameTooLarge { .. }) => {
                self.events.error(DaemonClientError::protocol(e));
                Flow::End(End::Lost("protocol error"))
            }
            Err(e) => {
                self.events.error(DaemonClientError::protocol(format!(
                    "malformed frame dropped: {e}"
                )));
                Flow::Continue
            }
        }
    }

    /// Carries out what the state machine decided.
    fn apply(&mut self, action: Action) -> Flow {
        match action {
            Action::None => {}
            Action::Pong(text) => {
                self.last_ping = Instant::now();
                self.replies.push(Outgoing {
                    text,
                    attachments: Vec::new(),
                });
            }
            Action::Settled => return Flow::Settled,
            Action::End(end) => return Flow::End(end),
            Action::Complete(r) => {
                let slot = self.link.complete(r, &mut self.arrival);
                self.to_wake.extend(slot);
            }
            Action::Dispatch(command) => {
                let job = Job {
                    command,
                    outbox: self.outbox.clone(),
                    namespace: self.state.namespace().to_owned(),
                };
                if let Err(job) = self.jobs.offer(job) {
                    log::warn!(
                        "handler pool saturated: {} answered 503",
                        job.command.command
                    );
                    let reply = self.state.busy_reply(&job.command);
                    self.link.stats.reverse_replied(503, 1);
                    self.replies.push(reply);
                }
            }
            Action::Message(m) => {
                self.link.stats.message_in();
                self.events.post(ClientEvent::Message(m));
            }
            Action::Report(e) => self.events.error(e),
        }
        Flow::Continue
    }
}
