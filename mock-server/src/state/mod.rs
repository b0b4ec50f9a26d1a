//! All of the server's protocol state, apart from any I/O: clusters,
//! sessions and registrations, responders, faults, enrollment, history,
//! frame recording and the reassembly of replies to reverse commands.
//!
//! Every input (a frame that arrived, a timer that fired, a request from
//! the admin API) is a method call; what the server must do in answer
//! (frames to write, connections to close or cut, timers to arm) is
//! queued as [`Action`]s, which the caller drains with
//! [`State::swap_actions`] and carries out. So every rule is unit-tested
//! without a socket (see `tests.rs`).

mod admin;
mod commands;
mod protocol;
mod reverse;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use volt_protocol::id_hash::IdMap;
use volt_protocol::{Decoder, Limits};

use crate::config::ServerConfig;
use crate::events::Logged;
use crate::model::*;
use crate::timers::TimerKind;
use crate::wire::command_response_prefix;

use reverse::Pending;

/// What the I/O side must do, in order.
#[derive(Debug, PartialEq)]
pub(crate) enum Action {
    /// Write a frame to a connection (it is already recorded).
    Send(u64, RawFrame),
    /// Send an empty close frame, then let the connection linger.
    Close(u64),
    /// Cut the TCP connection without a close frame (its session already
    /// ended); write out what is queued first when `flush`.
    Cut { conn: u64, flush: bool },
    /// Arm a timer; it comes back through [`State::on_timer`].
    Timer {
        at: Instant,
        conn: u64,
        kind: TimerKind,
    },
    /// Read the connection again on this wake (it was frozen).
    Read(u64),
}

/// A daemon's registration on our namespace.
pub(crate) struct Reg {
    /// Shared with every history entry of this connection (no copy each).
    pub cluster: Arc<str>,
    /// Its cluster's index in [`State`]'s histories.
    pub history: usize,
    /// What `GET /admin/daemons` shows of it, kept up to date.
    pub info: DaemonInfo,
}

/// One connection's Engine.IO / Socket.IO session, from the open packet
/// until it ends (then it is gone, and the connection's data is ignored).
pub(crate) struct Session {
    decoder: Decoder,
    reg: Option<Reg>,
    next_ping: Instant,
    pong_deadline: Option<Instant>,
    frames_in: u64,
    /// The verified subject of the client certificate (`--tls-client-ca`).
    client_subject: Option<String>,
}

/// What the cluster's daemons sent, newest last, bounded by the history limit.
#[derive(Default)]
pub(crate) struct Received {
    pub messages: VecDeque<Value>,
    /// Each request's envelope as JSON text ([`crate::wire::write_envelope`]),
    /// shared with the event log; [`crate::wire::parse_envelope`] turns one
    /// into the JSON the admin API and the handle show.
    pub commands: VecDeque<Arc<str>>,
}

/// The server's state (owned by the event loop thread).
pub(crate) struct State {
    cfg: ServerConfig,
    sessions: IdMap<u64, Session>,
    clusters: HashMap<String, String>,
    enrollment: EnrollmentSettings,
    responders: HashMap<String, Responder>,
    faults: Faults,
    by_cluster: HashMap<String, Vec<u64>>,
    /// Each cluster's history, found through `history_of` (by name) or a
    /// registration's index (no hashing per command).
    histories: Vec<Received>,
    history_of: HashMap<String, usize>,
    pending: HashMap<String, Pending>,
    frames: VecDeque<FrameRecord>,
    events: Vec<Logged>,
    stats: Stats,
    out: Vec<Action>,
    limits: Limits,
    /// [`command_response_prefix`] of our namespace.
    response_prefix: String,
    /// Reused by [`crate::wire::command_response_frame`].
    scratch: Vec<u8>,
    /// Reused by [`crate::wire::write_envelope`].
    rec_scratch: Vec<u8>,
}

pub(crate) fn new_sid() -> String {
    let bytes: [u8; 15] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl State {
    /// The state a server starts with.
    pub(crate) fn new(cfg: &ServerConfig) -> State {
        State {
            clusters: cfg.clusters.iter().cloned().collect(),
            enrollment: EnrollmentSettings {
                tokens: cfg.enrollment_tokens.clone(),
                rotate_to: cfg.rotate_password.clone(),
                fail_status: None,
            },
            sessions: IdMap::default(),
            responders: HashMap::new(),
            faults: Faults::default(),
            by_cluster: HashMap::new(),
            histories: Vec::new(),
            history_of: HashMap::new(),
            pending: HashMap::new(),
            frames: VecDeque::new(),
            events: Vec::new(),
            stats: Stats::default(),
            out: Vec::new(),
            limits: Limits {
                max_frame_bytes: cfg.max_payload,
                ..Limits::default()
            },
            response_prefix: command_response_prefix(&cfg.namespace),
            scratch: Vec::new(),
            rec_scratch: Vec::new(),
            cfg: cfg.clone(),
        }
    }

    /// Hands over the queued actions: `batch` (empty) takes them and the
    /// state keeps `batch`'s buffer for the next ones.
    pub(crate) fn swap_actions(&mut self, batch: &mut Vec<Action>) {
        debug_assert!(batch.is_empty());
        std::mem::swap(&mut self.out, batch);
    }

    /// Whether actions are queued.
    pub(crate) fn has_actions(&self) -> bool {
        !self.out.is_empty()
    }

    /// The events logged since the last call (the caller drains them).
    pub(crate) fn events_mut(&mut self) -> &mut Vec<Logged> {
        &mut self.events
    }

    /// The counters.
    pub(crate) fn stats(&self) -> Stats {
        self.stats
    }

    /// A frame went out on the wire.
    pub(crate) fn note_frame_out(&mut self) {
        self.stats.frames_out += 1;
    }

    /// A WebSocket connection is gone.
    pub(crate) fn note_ws_closed(&mut self) {
        self.stats.connections = self.stats.connections.saturating_sub(1);
    }

    /// Logs an event.
    pub(crate) fn emit(&mut self, e: ServerEvent) {
        self.events.push(Logged::Event(Box::new(e)));
    }

    /// Whether connection `id` has a live session (its data is read).
    pub(crate) fn is_live(&self, id: u64) -> bool {
        self.sessions.contains_key(&id)
    }

    /// Whether `stopPings` freezes every connection (no reads, no pings).
    pub(crate) fn frozen(&self) -> bool {
        self.faults.stop_pings
    }

    /// Applies `refuseConnections` to an upgrade: `true` when it is refused
    /// (the count goes down).
    pub(crate) fn refuse_upgrade(&mut self) -> bool {
        if self.faults.refuse_connections == 0 {
            return false;
        }
        self.faults.refuse_connections -= 1;
        true
    }

    fn reg(&self, id: u64) -> Option<&Reg> {
        self.sessions.get(&id).and_then(|s| s.reg.as_ref())
    }

    fn reg_mut(&mut self, id: u64) -> Option<&mut Reg> {
        self.sessions.get_mut(&id).and_then(|s| s.reg.as_mut())
    }

    fn cluster_of(&self, id: u64) -> Option<String> {
        self.reg(id).map(|r| r.cluster.to_string())
    }

    fn timer(&mut self, at: Instant, conn: u64, kind: TimerKind) {
        self.out.push(Action::Timer { at, conn, kind });
    }

    /// Records a frame (with [`ServerConfig::record_frames`]).
    fn record(&mut self, id: u64, dir: Direction, frame: &RawFrame) {
        if !self.cfg.record_frames {
            return;
        }
        if self.frames.len() >= self.cfg.history_limit {
            self.frames.pop_front();
        }
        let cluster = self.cluster_of(id);
        self.frames.push_back(FrameRecord {
            conn: id,
            cluster,
            dir,
            frame: frame.clone(),
        });
    }

    /// Queues a frame for connection `id` (recorded now).
    fn send(&mut self, id: u64, frame: RawFrame) {
        self.record(id, Direction::Out, &frame);
        self.out.push(Action::Send(id, frame));
    }

    fn send_text(&mut self, id: u64, text: String) {
        self.send(id, RawFrame::Text(text));
    }

    /// A WebSocket connection opened: its session starts with the
    /// Engine.IO open packet and the first ping timer.
    pub(crate) fn open(&mut self, id: u64, peer: SocketAddr, now: Instant) {
        let interval = self.cfg.ping_interval;
        self.sessions.insert(
            id,
            Session {
                decoder: Decoder::new(self.limits.clone()),
                reg: None,
                next_ping: now + interval,
                pong_deadline: None,
                frames_in: 0,
                client_subject: None,
            },
        );
        self.stats.connections += 1;
        self.stats.connections_total += 1;
        let engine_sid = new_sid();
        let open = format!(
            "0{{\"sid\":\"{engine_sid}\",\"upgrades\":[],\"pingInterval\":{},\"pingTimeout\":{},\"maxPayload\":{}}}",
            interval.as_millis(),
            self.cfg.ping_timeout.as_millis(),
            self.cfg.max_payload
        );
        self.send_text(id, open);
        self.emit(ServerEvent::Connected {
            conn: id,
            engine_sid,
            peer,
        });
        self.timer(now + interval, id, TimerKind::Heartbeat);
    }

    /// Records the verified subject of the connection's client certificate.
    pub(crate) fn set_client_subject(&mut self, id: u64, subject: Option<String>) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.client_subject = subject;
        }
    }

    /// The session of a connection ends (unregister, fail its pending
    /// reverse commands, log `Disconnected`). Idempotent.
    pub(crate) fn end_session(&mut self, id: u64, reason: &str) {
        let Some(session) = self.sessions.remove(&id) else {
            return;
        };
        let cluster = session.reg.map(|r| r.cluster.to_string());
        if let Some(c) = &cluster {
            self.unlink(c, id);
        }
        self.fail_pending(id, reason);
        self.emit(ServerEvent::Disconnected {
            conn: id,
            cluster,
            reason: reason.into(),
        });
    }

    /// Ends the session and cuts the connection without a close frame.
    fn cut(&mut self, id: u64, reason: &str) {
        self.end_session(id, reason);
        self.out.push(Action::Cut {
            conn: id,
            flush: false,
        });
    }

    /// Ends the session and closes the connection with an empty close frame.
    fn close(&mut self, id: u64, reason: &str) {
        self.end_session(id, reason);
        self.out.push(Action::Close(id));
    }

    /// The transport of a live session failed: logs `error` (when it is a
    /// protocol error) and ends the session.
    pub(crate) fn transport_failed(&mut self, id: u64, error: Option<String>, reason: &str) {
        if !self.is_live(id) {
            return;
        }
        if let Some(e) = error {
            self.protocol_error(id, e);
        }
        self.end_session(id, reason);
    }

    /// Ends connection `id`'s registration (its Engine.IO session stays):
    /// fails its pending reverse commands; the cluster it had.
    fn unregister(&mut self, id: u64, reason: &str) -> Option<String> {
        let reg = self.sessions.get_mut(&id).and_then(|s| s.reg.take())?;
        self.unlink(&reg.cluster, id);
        self.fail_pending(id, reason);
        Some(reg.cluster.to_string())
    }

    fn unlink(&mut self, cluster: &str, id: u64) {
        if let Some(v) = self.by_cluster.get_mut(cluster) {
            v.retain(|c| *c != id);
            if v.is_empty() {
                self.by_cluster.remove(cluster);
            }
        }
    }

    fn protocol_error(&mut self, id: u64, error: String) {
        log::debug!("connection {id}: protocol error: {error}");
        self.stats.protocol_errors += 1;
        let cluster = self.cluster_of(id);
        self.emit(ServerEvent::ProtocolError {
            conn: id,
            cluster,
            error,
        });
    }

    /// A timer of the protocol fired (the I/O side keeps its own).
    pub(crate) fn on_timer(&mut self, conn: u64, kind: TimerKind, now: Instant) {
        match kind {
            TimerKind::Heartbeat => self.heartbeat_timer(conn, now),
            TimerKind::Send(text) => {
                if self.reg(conn).is_some() {
                    self.send_text(conn, text);
                }
            }
            TimerKind::DispatchTimeout(rid) => self.dispatch_timed_out(&rid),
            TimerKind::HeadTimeout | TimerKind::CloseLinger => {}
        }
    }

    fn heartbeat_timer(&mut self, id: u64, now: Instant) {
        if self.faults.stop_pings {
            return;
        }
        let timeout = self.cfg.ping_timeout;
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        if let Some(deadline) = s.pong_deadline {
            if now >= deadline {
                self.close(id, "ping timeout");
            }
            return;
        }
        if now >= s.next_ping {
            let deadline = now + timeout;
            s.pong_deadline = Some(deadline);
            self.send_text(id, "2".into());
            self.timer(deadline, id, TimerKind::Heartbeat);
        }
    }

    fn on_pong(&mut self, id: u64, now: Instant) {
        let interval = self.cfg.ping_interval;
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        if s.pong_deadline.take().is_none() {
            return; // an unsolicited pong: ignored, as engine.io does
        }
        let at = now + interval;
        s.next_ping = at;
        self.timer(at, id, TimerKind::Heartbeat);
    }

    /// Applies a new fault set (thawing frozen connections when needed).
    pub(crate) fn set_faults(&mut self, faults: Faults, now: Instant) {
        let was_frozen = self.faults.stop_pings;
        self.faults = faults;
        if was_frozen && !self.faults.stop_pings {
            let at = now + self.cfg.ping_interval;
            let ids: Vec<u64> = self.sessions.keys().copied().collect();
            for id in ids {
                if let Some(s) = self.sessions.get_mut(&id) {
                    s.pong_deadline = None;
                    s.next_ping = at;
                }
                self.timer(at, id, TimerKind::Heartbeat);
                self.out.push(Action::Read(id));
            }
        }
    }

    /// The server stops: every pending reverse command fails.
    pub(crate) fn stop(&mut self) {
        for (_, p) in self.pending.drain() {
            let _ = p.reply.send(Err(DispatchError::Stopped));
        }
    }

    /// How long until `at`, for a delayed reply (`None`: send it now).
    fn delay_of(delay: Option<Duration>) -> Option<Duration> {
        delay.filter(|d| !d.is_zero())
    }
}
