//! One live connection's I/O loop on `volt-conn`: the loop itself (when to
//! sleep, when to read, when to write) and what it holds. The reader and
//! the writer are its two halves (reader.rs, writer.rs).

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::socket::SharedSocket;
use super::state::{End, State};
use super::transport::Reactor;
use crate::error::DaemonClientError;
use crate::events::EventSink;
use crate::outbox::{Outbox, OutboxReceiver};
use crate::pending::Link;
use crate::protocol::envelope::Outgoing;
use crate::reverse_channel::JobSender;
use crate::slot::Slot;
use crate::write_policy;

/// Frames read, or outbox items written, per loop turn before the thread
/// looks at the other direction: neither starves the other.
pub(crate) const BATCH: usize = 256;

/// What handling input decided.
pub(crate) enum Flow {
    Continue,
    Registered,
    Rejected(DaemonClientError),
    End(End),
}

/// How the loop ended: a decided [`Flow`], by type.
pub(crate) enum Outcome {
    /// Only while registering: the server accepted.
    Registered,
    /// Only while registering: the server refused, or never answered.
    Rejected(DaemonClientError),
    /// The session is over.
    End(End),
}

impl Flow {
    fn outcome(self) -> Option<Outcome> {
        match self {
            Flow::Continue => None,
            Flow::Registered => Some(Outcome::Registered),
            Flow::Rejected(e) => Some(Outcome::Rejected(e)),
            Flow::End(end) => Some(Outcome::End(end)),
        }
    }
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
    /// Phase, namespace and the ids seen: what inbound packets mean.
    pub(crate) state: State,
}

impl Io {
    /// The loop: until a decisive flow. `out_rx` is drained once ready;
    /// `deadline` bounds registration.
    pub(crate) fn run(
        &mut self,
        reactor: &mut Reactor,
        mut out_rx: Option<&mut OutboxReceiver>,
        deadline: Option<Instant>,
    ) -> Outcome {
        let mut again = true;
        // When to look at a socket lent to callers (socket.rs).
        let mut look_at_lent = None;
        loop {
            let timeout = self.sleep_for(out_rx.as_deref(), deadline, look_at_lent, again);
            if let Err(e) = reactor.poll.poll(&mut reactor.events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("poll failed: {e}");
                    return Outcome::End(End::Lost("transport error"));
                }
            }
            if reactor.stop.load(Ordering::Acquire) {
                return Outcome::End(End::Stopped);
            }
            let socket = self.socket.clone();
            if socket.is_broken() {
                return Outcome::End(End::Lost("transport error"));
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
            if let Some(outcome) = flow.outcome() {
                return outcome;
            }
            let was_blocked = socket.is_blocked();
            if let Err(end) = self.write_turn(&mut wire, out_rx.as_deref_mut()) {
                return Outcome::End(end);
            }
            drop(wire);
            // A socket that just became writable again may have left events
            // in the outbox whose senders did not wake us (still armed).
            let blocked = socket.is_blocked();
            let unblocked = was_blocked && !blocked;
            again = more_to_read || unblocked;
            let now = Instant::now();
            if now >= self.last_ping + self.ping_window {
                return Outcome::End(End::Lost("ping timeout"));
            }
            if deadline.is_some_and(|d| now >= d) {
                return Outcome::Rejected(DaemonClientError::connection(
                    "registration got no answer within connect_timeout",
                ));
            }
        }
    }

    /// How long this turn's poll may sleep: until the ping deadline, the
    /// registration deadline, the next look at a lent socket, or the write
    /// policy's cap; not at all when `again` (or, when uncapped, when
    /// something is queued: see `OutboxReceiver::sleep_uncapped`).
    fn sleep_for(
        &self,
        out_rx: Option<&OutboxReceiver>,
        deadline: Option<Instant>,
        look_at_lent: Option<Instant>,
        mut again: bool,
    ) -> Duration {
        let ping_deadline = self.last_ping + self.ping_window;
        let mut wake = deadline.map_or(ping_deadline, |d| d.min(ping_deadline));
        if let Some(at) = look_at_lent {
            wake = wake.min(at);
        }
        // Senders may queue without waking us (Flush::Lazy) while there is
        // a cap; without one, they are told we sleep.
        let cap = out_rx.and_then(|_| write_policy::poll_cap(self.link.pending_count()));
        if let Some(cap) = cap {
            wake = wake.min(Instant::now() + cap);
        }
        if let Some(rx) = out_rx.filter(|_| cap.is_none() && !again) {
            // Not while blocked: writability wakes us then.
            if !self.socket.is_blocked() && !rx.sleep_uncapped() {
                again = true;
            }
        }
        #[cfg(test)]
        if !again && out_rx.is_some() {
            *self.link.last_sleep.lock() = Some((self.link.pending_count(), cap.is_some()));
        }
        if again {
            Duration::ZERO
        } else {
            wake.saturating_duration_since(Instant::now())
        }
    }
}
