//! The writing half of the I/O loop (on `volt-conn`): the registration,
//! each turn's writes (pongs and 503s first, then the outbox, one flush),
//! and the graceful close.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use serde_json::json;

use super::session::Io;
use super::socket::Wire;
use super::state::End;
use super::transport::Reactor;
use crate::error::DaemonClientError;
use crate::outbox::{Frames, OutboxReceiver};
use crate::protocol::socket::{Packet, PacketType};
use crate::protocol::websocket::append_close;
use crate::Shared;

impl Io {
    /// Queues the registration; the loop's first turn flushes it. Its
    /// frame carries the password: the trace log shows it redacted.
    pub(crate) fn send_connect(&mut self, shared: &Shared) -> Result<(), DaemonClientError> {
        let creds = &shared.options.credentials;
        let auth = json!({
            "teamClusterId": creds.team_cluster_id,
            "daemonPassword": shared.registration_password(),
            "installedVersion": creds.installed_version,
            "client": concat!(env!("CARGO_PKG_NAME"), "/", env!("CARGO_PKG_VERSION")),
        });
        let mut text = String::from("4");
        Packet::new(
            PacketType::Connect,
            self.state.namespace().to_owned(),
            Some(auth),
        )
        .encode_into(&mut text);
        log::trace!("> 40{},{{<auth redacted>}}", self.state.namespace());
        let mut bytes = Vec::new();
        Frames {
            text: &text,
            attachments: &[],
        }
        .append_to(&mut bytes);
        self.socket
            .wire
            .lock()
            .stream
            .write(&bytes)
            .map(drop)
            .map_err(|e| {
                DaemonClientError::connection(format!("sending the registration failed: {e}"))
            })
    }

    /// This turn's writes: replies first, then everything the outbox
    /// holds (unless the socket is blocked), then one flush.
    pub(crate) fn write_turn(
        &mut self,
        wire: &mut Wire,
        out_rx: Option<&mut OutboxReceiver>,
    ) -> Result<(), End> {
        let lost = |e: io::Error| {
            log::info!("write failed: {e}");
            End::Lost("transport close")
        };
        for out in self.replies.drain(..) {
            log::trace!("> {}", out.text);
            Frames::from(&out).append_to(&mut self.reply_bytes);
        }
        if !self.reply_bytes.is_empty() {
            let written = wire.stream.write(&self.reply_bytes);
            self.reply_bytes.clear();
            written.map_err(lost)?;
        }
        if let Some(rx) = out_rx.filter(|_| !self.socket.is_blocked()) {
            rx.drain_into(&mut wire.stream).map_err(lost)?;
        }
        self.socket.flush(wire).map_err(lost)
    }

    /// Sends `41` (when registered) and a close frame, then flushes for a
    /// short while: a best effort, the socket is dropped right after.
    pub(crate) fn close_gracefully(&mut self, reactor: &mut Reactor, registered: bool) {
        let socket = self.socket.clone();
        let mut wire = socket.wire.lock();
        let mut bytes = Vec::new();
        if registered {
            let mut text = String::from("4");
            Packet::new(
                PacketType::Disconnect,
                self.state.namespace().to_owned(),
                None,
            )
            .encode_into(&mut text);
            Frames {
                text: &text,
                attachments: &[],
            }
            .append_to(&mut bytes);
        }
        append_close(&mut bytes, Some(rand::random()));
        let _ = wire.stream.write(&bytes);
        let until = Instant::now() + Duration::from_millis(200);
        // Through the shared flush: a blocked socket is polled for writability.
        while socket.flush(&mut wire).is_ok() && socket.is_blocked() && Instant::now() < until {
            let _ = reactor.poll.poll(
                &mut reactor.events,
                Some(until.saturating_duration_since(Instant::now())),
            );
        }
    }
}
