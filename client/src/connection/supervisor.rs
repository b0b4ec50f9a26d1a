//! The `volt-conn` thread's outer loop: open the socket, register, serve,
//! and reconnect with backoff after a transport loss.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mio::{Poll, Waker};

use super::session::{Io, Registration};
use super::socket::SharedSocket;
use super::state::{End, State};
use super::transport::{self, Reactor, Target, WAKER};
use super::writer::{outbox, Outbox, OutboxReceiver};
use crate::backoff::Backoff;
use crate::error::{DaemonClientError, DaemonClientErrorCode};
use crate::events::{ClientEvent, EventSink};
use crate::heartbeat::Heartbeat;
use crate::protocol::{Decoder, Limits};
use crate::reverse_channel::JobSender;
use crate::worker::Worker;
use crate::Shared;

/// What the connection thread needs.
pub(crate) struct ConnContext {
    pub(crate) shared: Arc<Shared>,
    pub(crate) events: EventSink,
    pub(crate) jobs: JobSender,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) first: Option<Sender<Result<(), DaemonClientError>>>,
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
                    shared.link.stats.clone(),
                )
            })
            .map_err(|e| DaemonClientError::connection(format!("socket registration: {e}")))?;
        let (outbox, mut out_rx) = outbox(self.waker.clone(), max_payload, socket.clone());
        let mut io = Io {
            socket,
            replies: Vec::new(),
            reply_bytes: Vec::new(),
            to_wake: Vec::new(),
            ping_window: opened.handshake.ping_deadline(),
            last_ping: Instant::now(),
            events: self.ctx.events.clone(),
            jobs: self.ctx.jobs.clone(),
            outbox: outbox.clone(),
            link: shared.link.clone(),
            state: State::new(&opts.socket.namespace, deadline),
        };
        let result = self.register_and_serve(&mut io, &mut out_rx, outbox);
        io.socket.deregister();
        result
    }

    fn register_and_serve(
        &mut self,
        io: &mut Io,
        out_rx: &mut OutboxReceiver,
        outbox: Outbox,
    ) -> Result<(End, bool), DaemonClientError> {
        let shared = self.ctx.shared.clone();
        let opts = &shared.options;
        io.send_connect(&shared)?;
        match io.register(&mut self.reactor) {
            Registration::Accepted => {}
            Registration::Refused(e) => return Err(e),
            Registration::Ended(End::Stopped) => {
                io.close_gracefully(&mut self.reactor, false);
                return Err(DaemonClientError::connection(
                    "registration interrupted by disconnect()",
                ));
            }
            Registration::Ended(end) => {
                return Err(DaemonClientError::connection(format!(
                    "connection lost during registration ({})",
                    end.reason()
                )))
            }
        }
        log::info!(
            "registered cluster {} on {}",
            opts.credentials.team_cluster_id,
            opts.socket.namespace
        );
        shared.link.attach(outbox, &opts.socket.namespace);
        shared.link.stats.registered(self.ctx.first.is_none());
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
        let end = io.serve(&mut self.reactor, out_rx);
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
