//! The `volt-conn` thread's outer loop: open the socket, register, serve,
//! and reconnect with backoff after a transport loss.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mio::{Poll, Waker};

use super::failover::Failover;
use super::session::{Io, Registration};
use super::state::{End, State};
use crate::backoff::Backoff;
use crate::connection_state::ConnectionState;
use crate::endpoint::Target;
use crate::error::{DaemonClientError, DaemonClientErrorCode};
use crate::events::{ClientEvent, EventSink};
use crate::heartbeat::Heartbeat;
use crate::protocol::{Decoder, Limits};
use crate::reverse_channel::JobSender;
use crate::stats::Arrival;
use crate::wire::outbox::{outbox, Outbox, OutboxReceiver};
use crate::wire::socket::SharedSocket;
use crate::wire::transport::{self, Reactor, WAKER};
use crate::worker::Worker;
use crate::Shared;

/// What the connection thread needs.
pub(crate) struct ConnContext {
    pub(crate) shared: Arc<Shared>,
    pub(crate) events: EventSink,
    pub(crate) jobs: JobSender,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) first: Option<Sender<Result<(), DaemonClientError>>>,
    /// Whether this thread enrolls (when still due) before connecting:
    /// `connect_in_background()` and a retrying `connect()`.
    pub(crate) enroll: bool,
}

/// What the loop does after an attempt or a session.
enum Next {
    /// Back off, then try again (the reason is the state change's).
    Retry(String),
    /// Try the next URL at once (a first connect walking its URLs).
    RetryNow,
    /// Nothing more.
    Stop,
}

/// Whether a failure is worth another attempt: not a refused registration,
/// not an enrollment the server answered 4xx.
fn retryable(e: &DaemonClientError) -> bool {
    match e.code() {
        DaemonClientErrorCode::SocketRegistrationFailed => false,
        DaemonClientErrorCode::EnrollmentFailed => {
            !e.status().is_some_and(|s| (400..500).contains(&s))
        }
        _ => true,
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
        shared.link.stats.count_io_on_this_thread();
        let socket = &shared.options.socket;
        let urls: Vec<&str> = std::iter::once(shared.options.control_socket_url.as_str())
            .chain(socket.fallback_urls.iter().map(String::as_str))
            .collect();
        let mut backoff = Backoff::new(
            socket.reconnect_base_delay,
            socket.reconnect_max_delay,
            socket.randomization_factor,
            socket.rng_seed,
        );
        let mut plan = Failover::new(urls.len());
        let mut initial = true;
        loop {
            let url = urls[plan.current()];
            let next = match self.attempt(url, plan.attempt()) {
                Ok(end) => {
                    initial = false;
                    plan.registered();
                    self.after_loss(&end)
                }
                Err(e) => {
                    plan.failed();
                    self.after_failure(e, initial, &plan)
                }
            };
            let reason = match next {
                Next::Stop => return,
                Next::RetryNow => continue,
                Next::Retry(reason) => reason,
            };
            if let Some(max) = socket.max_reconnect_attempts {
                if plan.failures() >= max {
                    let attempts = plan.failures();
                    let e = DaemonClientError::connection(format!(
                        "gave up reconnecting after {attempts} attempts (max_reconnect_attempts)"
                    ));
                    shared.fail_state(&self.ctx.events, ConnectionState::GaveUp { attempts }, &e);
                    self.ctx.events.error(e);
                    return;
                }
            }
            let delay = backoff.delay(plan.round());
            let attempt = plan.attempt();
            log::info!("reconnecting in {delay:?} (attempt {attempt})");
            self.set_state(ConnectionState::Reconnecting { attempt, delay }, reason);
            if !self.sleep(delay) {
                return;
            }
        }
    }

    fn set_state(&self, state: ConnectionState, reason: impl Into<String>) {
        self.ctx.shared.set_state(&self.ctx.events, state, reason);
    }

    /// One attempt: enrollment when it is this thread's to do and still
    /// due, then a session on `url`. `Ok` once it registered and ended.
    fn attempt(&mut self, url: &str, attempt: u32) -> Result<End, DaemonClientError> {
        let shared = self.ctx.shared.clone();
        if self.ctx.enroll && shared.enrollment_due() {
            self.set_state(ConnectionState::Enrolling, "enrollment due");
            if let Some(new_password) = shared.enroll_if_due()? {
                shared.report_rotation(&self.ctx.events, new_password);
            }
        }
        let reason = if attempt == 1 {
            "connecting"
        } else {
            "retrying"
        };
        let url_owned = url.to_owned();
        self.set_state(
            ConnectionState::Connecting {
                attempt,
                url: url_owned,
            },
            reason,
        );
        self.session(url).map(|(end, _registered)| end)
    }

    /// After a registered connection ended.
    fn after_loss(&mut self, end: &End) -> Next {
        let reason = end.reason();
        if !matches!(end, End::Lost(_)) || !self.ctx.shared.options.socket.reconnect {
            let state = ConnectionState::Disconnected {
                reason: reason.to_owned(),
            };
            self.set_state(state, reason);
            return Next::Stop;
        }
        Next::Retry(reason.to_owned())
    }

    /// After an attempt that never became ready: retried (reported to
    /// `on_error`), or the end (given to a waiting `connect()`, else to
    /// `on_error`).
    fn after_failure(&mut self, e: DaemonClientError, initial: bool, plan: &Failover) -> Next {
        if self.ctx.stop.load(Ordering::Acquire) {
            match self.ctx.first.take() {
                Some(first) => drop(first.send(Err(e))),
                None => self.ctx.events.error(e),
            }
            return Next::Stop;
        }
        let retry_initial = self.ctx.shared.options.socket.retry_initial_connect;
        // Without retry_initial_connect, a first connect still tries each
        // URL once, one after the other.
        let first_round = usize::try_from(plan.failures()).is_ok_and(|f| f < plan.len());
        if retryable(&e) && (!initial || retry_initial || first_round) {
            let reason = e.to_string();
            self.ctx.events.error(e);
            return if initial && !retry_initial {
                Next::RetryNow
            } else {
                Next::Retry(reason)
            };
        }
        let state = ConnectionState::Disconnected {
            reason: e.to_string(),
        };
        self.ctx.shared.fail_state(&self.ctx.events, state, &e);
        match self.ctx.first.take() {
            Some(first) => drop(first.send(Err(e))),
            None => self.ctx.events.error(e),
        }
        Next::Stop
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

    /// One connection to `url`, from opening to its end. `Err` when it
    /// never became ready; otherwise why it ended and whether registration
    /// succeeded.
    fn session(&mut self, url: &str) -> Result<(End, bool), DaemonClientError> {
        let shared = self.ctx.shared.clone();
        let opts = &shared.options;
        let target =
            Target::parse(url, &opts.socket.path).map_err(DaemonClientError::connection)?;
        let deadline = Instant::now() + opts.socket.connect_timeout;
        let opened = transport::open(&mut self.reactor, &target, &opts.socket, deadline)?;
        self.set_state(ConnectionState::Registering, "transport open");
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
            arrival: Arrival::default(),
            state: State::new(&opts.socket.namespace, deadline),
        };
        let result = self.register_and_serve(&mut io, &mut out_rx, outbox, url);
        io.socket.deregister();
        result
    }

    fn register_and_serve(
        &mut self,
        io: &mut Io,
        out_rx: &mut OutboxReceiver,
        outbox: Outbox,
        url: &str,
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
        let ready = ConnectionState::Ready {
            since: Instant::now(),
            url: url.to_owned(),
        };
        self.set_state(ready, "registered");
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
