//! The `volt-conn` thread: it owns the connection state machine. It opens
//! the socket, registers, runs the I/O loop (the only reader and writer of
//! the socket), and reconnects with backoff after a transport loss.
//!
//! One thread does both reading and writing because a TLS stream cannot be
//! split: the thread sleeps in `mio::Poll`, woken by the socket or by the
//! outbox's waker, reads until the socket would block, then drains the
//! outbox in one batch and flushes once.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mio::{Poll, Waker};
use serde_json::{json, Value};
use std::io::Write;

use crate::backoff::Backoff;
use crate::error::{DaemonClientError, DaemonClientErrorCode};
use crate::events::{ClientEvent, EventSink};
use crate::heartbeat::Heartbeat;
use crate::outbox::{outbox, Frames, Outbox, OutboxReceiver};
use crate::pending::Link;
use crate::protocol::envelope::{
    decode_command_response, decode_event_array, scan_command_response, Outgoing, VoltEvent,
};
use crate::protocol::socket::{Packet, PacketType};
use crate::protocol::websocket::{self, FrameError};
use crate::protocol::websocket::{append_close, append_pong};
use crate::protocol::{DecodeError, Decoder, Incoming, Limits};
use crate::reverse_channel::{error_reply, Job, JobSender};
use crate::slot::Slot;
use crate::transport::{self, Reactor, Target, WAKER};
use crate::wire::{SharedSocket, Wire};
use crate::worker::Worker;
use crate::write_policy;
use crate::Shared;

/// Frames read, or outbox items written, per loop turn before the thread
/// looks at the other direction: neither starves the other.
const BATCH: usize = 256;

/// What the connection thread needs.
pub(crate) struct ConnContext {
    pub(crate) shared: Arc<Shared>,
    pub(crate) events: EventSink,
    pub(crate) jobs: JobSender,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) first: Option<Sender<Result<(), DaemonClientError>>>,
}

/// Why a live session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// `disconnect()`.
    Stopped,
    /// The server sent `41`: no reconnect.
    Kicked,
    /// Transport loss or protocol failure: reconnect.
    Lost(&'static str),
}

impl End {
    fn reason(&self) -> &'static str {
        match self {
            End::Stopped => "io client disconnect",
            End::Kicked => "io server disconnect",
            End::Lost(r) => r,
        }
    }
}

/// Creates the poll and its waker; the waker is how other threads reach the
/// connection thread.
pub(crate) fn reactor(stop: Arc<AtomicBool>) -> io::Result<(Reactor, Arc<Waker>)> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    Ok((
        Reactor {
            poll,
            events: mio::Events::with_capacity(64),
            stop,
        },
        waker,
    ))
}

pub(crate) fn spawn(ctx: ConnContext, reactor: Reactor, waker: Arc<Waker>) -> io::Result<Worker> {
    Worker::spawn("volt-conn", move || {
        Supervisor {
            ctx,
            reactor,
            waker,
        }
        .run()
    })
}

struct Supervisor {
    ctx: ConnContext,
    reactor: Reactor,
    waker: Arc<Waker>,
}

impl Supervisor {
    fn run(mut self) {
        let shared = self.ctx.shared.clone();
        let socket = &shared.options.socket;
        let mut backoff = Backoff::new(
            socket.reconnect_base_delay,
            socket.reconnect_max_delay,
            socket.randomization_factor,
            socket.rng_seed,
        );
        let mut attempt: u32 = 0;
        loop {
            match self.session() {
                Ok((end, registered)) => {
                    if registered {
                        attempt = 0;
                    }
                    if !matches!(end, End::Lost(_)) {
                        return;
                    }
                }
                Err(e) => {
                    if let Some(first) = self.ctx.first.take() {
                        let _ = first.send(Err(e));
                        return;
                    }
                    let rejected = e.code() == DaemonClientErrorCode::SocketRegistrationFailed;
                    self.ctx.events.error(e);
                    if rejected || self.ctx.stop.load(Ordering::Acquire) {
                        return;
                    }
                }
            }
            if !socket.reconnect {
                return;
            }
            if socket
                .max_reconnect_attempts
                .is_some_and(|max| attempt >= max)
            {
                self.ctx.events.error(DaemonClientError::connection(format!(
                    "gave up reconnecting after {attempt} attempts (max_reconnect_attempts)"
                )));
                return;
            }
            let delay = backoff.delay(attempt);
            attempt = attempt.saturating_add(1);
            log::info!("reconnecting in {delay:?} (attempt {attempt})");
            if !self.sleep(delay) {
                return;
            }
        }
    }

    /// Sleeps for `delay` unless stopped; false when stopped.
    fn sleep(&mut self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            match self.reactor.wait(until) {
                Ok(()) => continue,
                Err(transport::Interrupted::Deadline) => return true,
                Err(transport::Interrupted::Stopped) => return false,
            }
        }
    }

    /// One connection, from opening to its end. `Err` when it never became
    /// ready; otherwise why it ended and whether registration succeeded.
    fn session(&mut self) -> Result<(End, bool), DaemonClientError> {
        let shared = self.ctx.shared.clone();
        let opts = &shared.options;
        let target = Target::parse(&opts.control_socket_url, &opts.socket)
            .map_err(DaemonClientError::connection)?;
        let deadline = Instant::now() + opts.socket.connect_timeout;
        let opened = transport::open(&mut self.reactor, &target, &opts.socket, deadline)?;
        let max_payload = usize::try_from(opened.handshake.max_payload).unwrap_or(usize::MAX);
        let decoder = Decoder::new(Limits {
            max_frame_bytes: opts.socket.max_incoming_frame_bytes,
            ..Limits::default()
        });
        let registry = self.reactor.poll.registry().try_clone();
        let socket = registry
            .and_then(|registry| {
                SharedSocket::new(
                    opened.stream,
                    opened.reader,
                    decoder,
                    registry,
                    &opts.socket.namespace,
                )
            })
            .map_err(|e| DaemonClientError::connection(format!("socket registration: {e}")))?;
        let (outbox, mut out_rx) = outbox(self.waker.clone(), max_payload, socket.clone());
        let mut io = Io {
            socket,
            replies: Vec::new(),
            reply_bytes: Vec::new(),
            to_wake: Vec::new(),
            namespace: opts.socket.namespace.clone(),
            ping_window: opened.handshake.ping_deadline(),
            last_ping: Instant::now(),
            events: self.ctx.events.clone(),
            jobs: self.ctx.jobs.clone(),
            outbox: outbox.clone(),
            link: shared.link.clone(),
            registered: false,
            reverse_ids: RecentIds::default(),
        };
        let result = self.register_and_serve(&mut io, &mut out_rx, outbox, deadline);
        io.socket.deregister();
        result
    }

    fn register_and_serve(
        &mut self,
        io: &mut Io,
        out_rx: &mut OutboxReceiver,
        outbox: Outbox,
        deadline: Instant,
    ) -> Result<(End, bool), DaemonClientError> {
        let shared = self.ctx.shared.clone();
        let opts = &shared.options;
        io.send_connect(&shared)?;
        match io.run(&mut self.reactor, None, Some(deadline)) {
            Flow::Registered => io.registered = true,
            Flow::Rejected(e) => return Err(e),
            Flow::End(End::Stopped) => {
                io.close_gracefully(&mut self.reactor, false);
                return Err(DaemonClientError::connection(
                    "registration interrupted by disconnect()",
                ));
            }
            Flow::End(end) => {
                return Err(DaemonClientError::connection(format!(
                    "connection lost during registration ({})",
                    end.reason()
                )))
            }
            Flow::Continue => unreachable!("run() returns only on a decisive flow"),
        }
        log::info!(
            "registered cluster {} on {}",
            opts.credentials.team_cluster_id,
            opts.socket.namespace
        );
        shared.link.attach(outbox, &opts.socket.namespace);
        if let Some(first) = self.ctx.first.take() {
            let _ = first.send(Ok(()));
        }
        self.ctx.events.post(ClientEvent::Connected);
        let heartbeat = Heartbeat::spawn(
            shared.link.clone(),
            opts.heartbeat.clone(),
            opts.command_timeout,
            self.ctx.events.clone(),
            opts.socket.rng_seed,
        )
        .map_err(|e| {
            self.ctx.events.error(DaemonClientError::connection(format!(
                "this connection runs without heartbeats: spawning volt-heartbeat failed: {e}"
            )))
        })
        .ok();
        let end = match io.run(&mut self.reactor, Some(out_rx), None) {
            Flow::End(end) => end,
            _ => End::Lost("protocol error"),
        };
        shared
            .link
            .detach(&format!("connection lost ({})", end.reason()));
        if let Some(h) = heartbeat {
            h.stop();
        }
        if end == End::Stopped {
            io.close_gracefully(&mut self.reactor, true);
        }
        log::info!("disconnected: {}", end.reason());
        self.ctx
            .events
            .post(ClientEvent::Disconnected(end.reason().to_owned()));
        Ok((end, true))
    }
}

/// What handling input decided.
enum Flow {
    Continue,
    Registered,
    Rejected(DaemonClientError),
    End(End),
}

/// The live socket and everything the loop needs to route what it reads.
struct Io {
    /// The socket; the connection thread locks it for one turn at a time.
    socket: Arc<SharedSocket>,
    /// Written by this thread at the end of the turn (pongs, 503 BUSY):
    /// it drains the outbox, so it must never wait on it.
    replies: Vec<Outgoing>,
    /// `replies` and pongs, framed (kept for its capacity).
    reply_bytes: Vec<u8>,
    /// Callers whose replies were read this turn, woken once the socket is
    /// let go: a woken caller then finds it free to write its next command.
    to_wake: Vec<Arc<Slot>>,
    namespace: String,
    ping_window: Duration,
    last_ping: Instant,
    events: EventSink,
    jobs: JobSender,
    outbox: Outbox,
    link: Arc<Link>,
    registered: bool,
    /// Reverse-command request ids seen on this connection: a repeated one
    /// is refused, so each id gets exactly one reply.
    reverse_ids: RecentIds,
}

/// The last [`RecentIds::CAPACITY`] ids, oldest forgotten first.
#[derive(Default)]
struct RecentIds {
    set: std::collections::HashSet<String>,
    order: std::collections::VecDeque<String>,
}

impl RecentIds {
    const CAPACITY: usize = 4096;

    /// Records `id`; false when it was already there.
    fn insert(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() == Self::CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.set.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }
}

impl Io {
    fn registering(&self) -> bool {
        !self.registered
    }

    /// Queues the registration; the loop's first turn flushes it. Its
    /// frame carries the password: the trace log shows it redacted.
    fn send_connect(&mut self, shared: &Shared) -> Result<(), DaemonClientError> {
        let creds = &shared.options.credentials;
        let auth = json!({
            "teamClusterId": creds.team_cluster_id,
            "daemonPassword": *shared.password.read(),
            "installedVersion": creds.installed_version,
            "client": concat!(env!("CARGO_PKG_NAME"), "/", env!("CARGO_PKG_VERSION")),
        });
        let mut text = String::from("4");
        Packet::new(PacketType::Connect, self.namespace.clone(), Some(auth)).encode_into(&mut text);
        log::trace!("> 40{},{{<auth redacted>}}", self.namespace);
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

    /// The loop: until a decisive flow. `out_rx` is drained once ready;
    /// `deadline` bounds registration.
    fn run(
        &mut self,
        reactor: &mut Reactor,
        mut out_rx: Option<&mut OutboxReceiver>,
        deadline: Option<Instant>,
    ) -> Flow {
        let mut again = true;
        // When to look at a socket lent to callers (wire.rs).
        let mut look_at_lent = None;
        loop {
            let ping_deadline = self.last_ping + self.ping_window;
            let mut wake = deadline.map_or(ping_deadline, |d| d.min(ping_deadline));
            if let Some(at) = look_at_lent {
                wake = wake.min(at);
            }
            // Senders may queue without waking us (Flush::Lazy) while
            // there is a cap; without one, they are told we sleep.
            let cap = out_rx
                .as_ref()
                .and_then(|_| write_policy::poll_cap(self.link.pending_count()));
            let capped = cap.is_some();
            if let Some(cap) = cap {
                wake = wake.min(Instant::now() + cap);
            }
            if let Some(rx) = out_rx.as_deref().filter(|_| !capped && !again) {
                // Not while blocked: writability wakes us then.
                if !self.socket.is_blocked() && !rx.sleep_uncapped() {
                    again = true;
                }
            }
            #[cfg(test)]
            if !again && out_rx.is_some() {
                *self.link.last_sleep.lock() = Some((self.link.pending_count(), capped));
            }
            let timeout = if again {
                Duration::ZERO
            } else {
                wake.saturating_duration_since(Instant::now())
            };
            if let Err(e) = reactor.poll.poll(&mut reactor.events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("poll failed: {e}");
                    return Flow::End(End::Lost("transport error"));
                }
            }
            if reactor.stop.load(Ordering::Acquire) {
                return Flow::End(End::Stopped);
            }
            let socket = self.socket.clone();
            if socket.is_broken() {
                return Flow::End(End::Lost("transport error"));
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
            if !matches!(flow, Flow::Continue) {
                return flow;
            }
            let was_blocked = socket.is_blocked();
            if let Err(flow) = self.write_turn(&mut wire, out_rx.as_deref_mut()) {
                return flow;
            }
            drop(wire);
            // A socket that just became writable again may have left events
            // in the outbox whose senders did not wake us (still armed).
            let blocked = socket.is_blocked();
            let unblocked = was_blocked && !blocked;
            again = more_to_read || unblocked;
            let now = Instant::now();
            if now >= self.last_ping + self.ping_window {
                return Flow::End(End::Lost("ping timeout"));
            }
            if deadline.is_some_and(|d| now >= d) {
                return Flow::Rejected(DaemonClientError::connection(
                    "registration got no answer within connect_timeout",
                ));
            }
        }
    }

    /// This turn's writes: replies first, then everything the outbox
    /// holds (unless the socket is blocked), then one flush.
    fn write_turn(
        &mut self,
        wire: &mut Wire,
        out_rx: Option<&mut OutboxReceiver>,
    ) -> Result<(), Flow> {
        let lost = |e: io::Error| {
            log::info!("write failed: {e}");
            Flow::End(End::Lost("transport close"))
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

    /// Reads up to a batch of messages; the flag says the socket may hold
    /// more.
    fn read_batch(&mut self, wire: &mut Wire) -> (Flow, bool) {
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
                    self.on_message(message, decoder)
                }
                Ok(None) => match reader.fill(stream) {
                    Ok(0) => Flow::End(End::Lost("transport close")),
                    Ok(_) => continue,
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
                Flow::Continue
            }
            Message::Pong => Flow::Continue,
            Message::Close => Flow::End(End::Lost("transport close")),
        }
    }

    fn on_text(&mut self, text: &str, decoder: &mut Decoder) -> Flow {
        if let Some(json) = decoder
            .event_json(text, &self.namespace)
            .filter(|_| self.registered)
        {
            if let Some(response) = scan_command_response(json) {
                self.to_wake.extend(self.link.complete_scanned(response));
                return Flow::Continue;
            }
            if let Some(response) = decode_command_response(json) {
                self.to_wake.extend(self.link.complete_raw(response));
                return Flow::Continue;
            }
            match decode_event_array(json) {
                Some(Ok(event)) => return self.on_event(event),
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
            Ok(Some(incoming)) => self.on_incoming(incoming),
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

    fn on_incoming(&mut self, incoming: Incoming) -> Flow {
        match incoming {
            Incoming::Ping(data) => {
                self.last_ping = Instant::now();
                self.replies.push(Outgoing {
                    text: format!("3{data}"),
                    attachments: Vec::new(),
                });
                Flow::Continue
            }
            Incoming::Pong(_) | Incoming::Noop => Flow::Continue,
            Incoming::Close => Flow::End(End::Lost("transport close")),
            Incoming::Open(_) => {
                self.events.error(DaemonClientError::protocol(
                    "a second Engine.IO open packet",
                ));
                Flow::Continue
            }
            Incoming::Packet(complete) => self.on_packet(complete),
        }
    }

    fn on_packet(&mut self, complete: crate::protocol::binary::Complete) -> Flow {
        let packet = &complete.packet;
        if packet.namespace != self.namespace {
            if self.registering() && packet.packet_type == PacketType::ConnectError {
                return Flow::Rejected(rejection(packet.data.as_ref()));
            }
            self.events.error(DaemonClientError::protocol(format!(
                "packet for namespace {:?} dropped",
                packet.namespace
            )));
            return Flow::Continue;
        }
        match packet.packet_type {
            PacketType::Connect if self.registering() => Flow::Registered,
            PacketType::ConnectError if self.registering() => {
                Flow::Rejected(rejection(packet.data.as_ref()))
            }
            PacketType::Disconnect => Flow::End(End::Kicked),
            PacketType::Event | PacketType::BinaryEvent if !self.registering() => {
                match VoltEvent::from_packet(complete) {
                    Ok(event) => self.on_event(event),
                    Err(e) => {
                        self.events.error(DaemonClientError::protocol(e));
                        Flow::Continue
                    }
                }
            }
            other => {
                self.events.error(DaemonClientError::protocol(format!(
                    "unexpected {other:?} packet{}",
                    if self.registering() {
                        " during registration"
                    } else {
                        ""
                    }
                )));
                Flow::Continue
            }
        }
    }

    fn on_event(&mut self, event: VoltEvent) -> Flow {
        match event {
            VoltEvent::CommandResponse(r) => self.to_wake.extend(self.link.complete(r)),
            VoltEvent::ReverseCommand(cmd) if !self.reverse_ids.insert(&cmd.request_id) => {
                self.events.error(DaemonClientError::protocol(format!(
                    "reverse-command {:?} repeats requestId {:?}: dropped (it has its reply)",
                    cmd.command, cmd.request_id
                )));
            }
            VoltEvent::ReverseCommand(cmd) => {
                let job = Job {
                    command: cmd,
                    outbox: self.outbox.clone(),
                    namespace: self.namespace.clone(),
                };
                if let Err(job) = self.jobs.offer(job) {
                    let cmd = job.command;
                    log::warn!("handler pool saturated: {} answered 503", cmd.command);
                    let reply =
                        error_reply(&cmd, 503, "BUSY", "the handler pool is saturated".into());
                    self.replies.push(reply.encode(&self.namespace));
                }
            }
            VoltEvent::Message(m) => self.events.post(ClientEvent::Message(m)),
            other => self.events.error(DaemonClientError::protocol(format!(
                "the server sent a {:?} event, which only daemons send",
                other.name()
            ))),
        }
        Flow::Continue
    }

    /// Sends `41` (when registered) and a close frame, then flushes for a
    /// short while: a best effort, the socket is dropped right after.
    fn close_gracefully(&mut self, reactor: &mut Reactor, registered: bool) {
        let socket = self.socket.clone();
        let mut wire = socket.wire.lock();
        let mut bytes = Vec::new();
        if registered {
            let mut text = String::from("4");
            Packet::new(PacketType::Disconnect, self.namespace.clone(), None)
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

/// The error for a `44`: the server's message and `data.code`.
fn rejection(data: Option<&Value>) -> DaemonClientError {
    let message = match data {
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => v.get("message").and_then(Value::as_str).map(str::to_owned),
        None => None,
    };
    let code = data
        .and_then(|v| v.get("data"))
        .and_then(|d| d.get("code"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    DaemonClientError::new(
        DaemonClientErrorCode::SocketRegistrationFailed,
        "the server refused the registration",
    )
    .with_server(code, message)
}
