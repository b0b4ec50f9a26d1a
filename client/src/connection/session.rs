//! One live connection's I/O loop on `volt-conn`: the loop itself (when to
//! sleep, when to read, when to write), what it holds, and its writing
//! half (the registration, each turn's writes, the graceful close). The
//! reader is its other half (reader.rs); the outbox the writes drain is
//! below the connection (`crate::wire::outbox`).
//!
//! The writing half sits here rather than in a file of its own so that a
//! command on the loaded path goes through one file of the connection's
//! loop, not two, on top of the outbox (docs/ARCHITECTURE.md, "A command's
//! round trip").

use std::convert::Infallible;
use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::state::{End, State};
use crate::error::DaemonClientError;
use crate::events::EventSink;
use crate::pending::Link;
use crate::protocol::envelope::Outgoing;
use crate::protocol::socket::{Packet, PacketType};
use crate::protocol::websocket::append_close;
use crate::reverse_channel::JobSender;
use crate::slot::Slot;
use crate::stats::Arrival;
use crate::wire::outbox::{Frames, Outbox, OutboxReceiver};
use crate::wire::socket::{SharedSocket, Wire};
use crate::wire::transport::Reactor;
use crate::write_policy;
use crate::Shared;

/// Frames read, or outbox items written, per loop turn before the thread
/// looks at the other direction: neither starves the other.
pub(crate) const BATCH: usize = 256;

/// What handling input decided.
pub(crate) enum Flow {
    /// Read on.
    Continue,
    /// The phase changed ([`Action::Settled`](super::state::Action)): stop
    /// this turn's reading, so nothing read after the server's answer is
    /// handled before the loop's caller has acted on it.
    Settled,
    /// The session is over.
    End(End),
}

/// How registration ended.
pub(crate) enum Registration {
    /// The server accepted: serve next.
    Accepted,
    /// The server refused, or never answered within the deadline.
    Refused(DaemonClientError),
    /// The session ended first.
    Ended(End),
}

/// The live socket and everything the loop needs to route what it reads.
pub(crate) struct Io {
    /// The socket; the connection thread locks it for one turn at a time.
    pub(crate) socket: Arc<SharedSocket>,
    /// Written by this thread at the end of the turn (pongs, 503 BUSY):
    /// it drains the outbox, so it must never wait on it.
    pub(crate) replies: Vec<Outgoing>,
    /// `replies` and pongs, framed (kept for its capacity).
    pub(crate) reply_bytes: Vec<u8>,
    /// Callers whose replies were read this turn, woken once the socket is
    /// let go: a woken caller then finds it free to write its next command.
    pub(crate) to_wake: Vec<Arc<Slot>>,
    pub(crate) ping_window: Duration,
    pub(crate) last_ping: Instant,
    pub(crate) events: EventSink,
    pub(crate) jobs: JobSender,
    pub(crate) outbox: Outbox,
    pub(crate) link: Arc<Link>,
    /// When the bytes being read came off the socket: where the round
    /// trips of the answers among them end.
    pub(crate) arrival: Arrival,
    /// Phase, namespace and the ids seen: what inbound packets mean.
    pub(crate) state: State,
}

impl Io {
    /// Runs the loop until the state machine decides the registration (its
    /// deadline is the state's).
    pub(crate) fn register(&mut self, reactor: &mut Reactor) -> Registration {
        match self.run(reactor, None, State::registration) {
            Ok(Ok(())) => Registration::Accepted,
            Ok(Err(e)) => Registration::Refused(e),
            Err(end) => Registration::Ended(end),
        }
    }

    /// Runs the loop while serving, draining `out_rx`: nothing leaves that
    /// phase, so only the session's end returns.
    pub(crate) fn serve(&mut self, reactor: &mut Reactor, out_rx: &mut OutboxReceiver) -> End {
        let Err(end) = self.run(reactor, Some(out_rx), |_| None::<Infallible>);
        end
    }

    /// The loop: until the session ends, or `settled` finds the phase it
    /// waits for decided. `out_rx` is drained once ready.
    fn run<T>(
        &mut self,
        reactor: &mut Reactor,
        mut out_rx: Option<&mut OutboxReceiver>,
        settled: impl Fn(&State) -> Option<T>,
    ) -> Result<T, End> {
        let mut again = true;
        // When to look at a socket lent to callers (socket.rs).
        let mut look_at_lent = None;
        loop {
            let timeout = self.sleep_for(out_rx.as_deref(), look_at_lent, again);
            if let Err(e) = reactor.poll.poll(&mut reactor.events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("poll failed: {e}");
                    return Err(End::Lost("transport error"));
                }
            }
            if reactor.stop.load(Ordering::Acquire) {
                return Err(End::Stopped);
            }
            let socket = self.socket.clone();
            if socket.is_broken() {
                return Err(End::Lost("transport error"));
            }
            let mut wire = socket.wire.lock();
            let (flow, more_to_read) = self.read_batch(&mut wire);
            look_at_lent = socket.check_lent(&mut wire, || self.link.pending_count() > 0);
            if !self.to_wake.is_empty() {
                drop(wire);
                for slot in self.to_wake.drain(..) {
                    slot.wake();
                }
                wire = socket.wire.lock();
            }
            if let Flow::End(end) = flow {
                return Err(end);
            }
            if let Some(decided) = settled(&self.state) {
                return Ok(decided);
            }
            let was_blocked = socket.is_blocked();
            self.write_turn(&mut wire, out_rx.as_deref_mut())?;
            drop(wire);
            // A socket that just became writable again may have left events
            // in the outbox whose senders did not wake us (still armed).
            let blocked = socket.is_blocked();
            let unblocked = was_blocked && !blocked;
            again = more_to_read || unblocked;
            let now = Instant::now();
            if now >= self.last_ping + self.ping_window {
                return Err(End::Lost("ping timeout"));
            }
            self.state.on_tick(now);
            if let Some(decided) = settled(&self.state) {
                return Ok(decided);
            }
        }
    }

    /// How long this turn's poll may sleep: until the ping deadline, the
    /// registration deadline (the state's), or the write policy's limit
    /// (`write_policy::sleep_limit`: the lazy-flush cap, the next look at a
    /// lent socket); not at all when `again` (or, when uncapped, when
    /// something is queued: see `OutboxReceiver::sleep_uncapped`).
    fn sleep_for(
        &self,
        out_rx: Option<&OutboxReceiver>,
        look_at_lent: Option<Instant>,
        again: bool,
    ) -> Duration {
        if again {
            return Duration::ZERO;
        }
        let deadline = self.state.registration_deadline();
        let ping_deadline = self.last_ping + self.ping_window;
        let mut wake = deadline.map_or(ping_deadline, |d| d.min(ping_deadline));
        // Senders may queue without waking us (Flush::Lazy) while there is
        // a cap; without one, they are told we sleep.
        let in_flight = out_rx.map(|_| self.link.pending_count());
        let limit = write_policy::sleep_limit(Instant::now(), in_flight, look_at_lent);
        if let Some(at) = limit.wake_by {
            wake = wake.min(at);
        }
        if let Some(rx) = out_rx.filter(|_| !limit.lazy_capped) {
            // Not while blocked: writability wakes us then.
            if !self.socket.is_blocked() && !rx.sleep_uncapped() {
                return Duration::ZERO;
            }
        }
        #[cfg(test)]
        if out_rx.is_some() {
            *self.link.last_sleep.lock() = Some((self.link.pending_count(), limit.lazy_capped));
        }
        wake.saturating_duration_since(Instant::now())
    }
}

// ---------------------------------------------------------------------------
// The writing half of the I/O loop

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
        self.socket.stats.frames_out(1);
        self.socket.stats.bytes_out(bytes.len());
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
            self.socket.stats.frames_out(1 + out.attachments.len());
        }
        if !self.reply_bytes.is_empty() {
            self.socket.stats.bytes_out(self.reply_bytes.len());
            let written = wire.stream.write(&self.reply_bytes);
            self.reply_bytes.clear();
            written.map_err(lost)?;
        }
        if let Some(rx) = out_rx.filter(|_| !self.socket.is_blocked()) {
            let (bytes, frames) = rx.drain_into(&mut wire.stream).map_err(lost)?;
            self.socket.stats.bytes_out(bytes);
            self.socket.stats.frames_out(frames);
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
        socket.stats.frames_out(1 + usize::from(registered));
        socket.stats.bytes_out(bytes.len());
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
