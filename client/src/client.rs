//! `ClusterDaemonClient`: the public handle, its lifecycle (connect,
//! disconnect, drain, drop) and the calls that go through the link.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use serde_json::Value;

use crate::connection::{self, ConnContext};
use crate::connection_state::{ConnectionState, StateCell};
use crate::drain::{draining_error, refuse_all, DrainReport};
use crate::error::{DaemonClientError, DaemonClientErrorCode};
use crate::events::{Callbacks, ClientEvent};
use crate::options::ClusterDaemonClientOptions;
use crate::pending::{Link, PendingCommand};
use crate::protocol::envelope::VoltEvent;
use crate::protocol::message::TeamClusterDaemonMessage;
use crate::reverse_channel::Handlers;
use crate::shared::{ConnThread, Runtime, Shared};
use crate::stats::ClientStats;
use crate::wire::OutboxError;
use crate::worker::Worker;

/// How often the wait for commands in flight looks again (they have no
/// signal of their own to wait on).
const LOOK_AGAIN: Duration = Duration::from_millis(2);

struct Inner {
    shared: Arc<Shared>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.disconnect();
    }
}

/// The daemon-side client of the VOLT control plane: blocking, thread-safe,
/// cheap to clone (clones share one connection).
///
/// ```no_run
/// use volt_daemon_client::*;
///
/// let options = ClusterDaemonClientOptions::new(
///     "http://127.0.0.1:8080",
///     "ws://127.0.0.1:8080",
///     DaemonCredentials::new("cluster-1", "password"),
/// );
/// let client = ClusterDaemonClient::new(options)?;
/// client.register_handler_fn("echo", |payload, _ctx| Ok(CommandResult::data(payload)));
/// client.on_message(|m| println!("message: {}", m.message_type()));
/// client.connect()?;
/// let stats = client.send_command("get-container-stats", Some(serde_json::json!({"id": "c1"})))?;
/// println!("{stats:?}");
/// client.disconnect();
/// # Ok::<(), DaemonClientError>(())
/// ```
#[derive(Clone)]
pub struct ClusterDaemonClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ClusterDaemonClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterDaemonClient")
            .field(
                "team_cluster_id",
                &self.inner.shared.options.credentials.team_cluster_id,
            )
            .field("ready", &self.is_ready())
            .finish()
    }
}

impl ClusterDaemonClient {
    /// Validates `options`; starts nothing.
    pub fn new(options: ClusterDaemonClientOptions) -> Result<Self, DaemonClientError> {
        options.validate()?;
        let password = RwLock::new(options.credentials.daemon_password.clone());
        Ok(ClusterDaemonClient {
            inner: Arc::new(Inner {
                shared: Arc::new(Shared {
                    options,
                    password,
                    enrolled: AtomicBool::new(false),
                    link: Arc::new(Link::default()),
                    handlers: Arc::new(Handlers::default()),
                    callbacks: Arc::new(Callbacks::default()),
                    runtime: Mutex::new(None),
                    connecting: Mutex::new(()),
                    generation: AtomicU64::new(0),
                    state: StateCell::default(),
                    rotation_ack: Mutex::new(None),
                    drain: Arc::default(),
                }),
            }),
        })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    #[cfg(test)]
    pub(crate) fn link(&self) -> &Arc<Link> {
        &self.shared().link
    }

    /// Enrollment (once, when configured), then socket, registration and
    /// heartbeat. Returns once ready, or with the first error: a failed
    /// first connect is not retried, unless `socket.retry_initial_connect`
    /// (then it is [`connect_in_background`](Self::connect_in_background)
    /// followed by [`wait_ready`](Self::wait_ready) with no timeout, and
    /// `disconnect()` from another thread ends it). With
    /// `socket.fallback_urls`, a first connect that is not retried tries
    /// each URL once. A no-op when already ready.
    ///
    /// ```no_run
    /// # use volt_daemon_client::*;
    /// # let client = ClusterDaemonClient::new(ClusterDaemonClientOptions::new(
    /// #     "http://127.0.0.1:8080", "ws://127.0.0.1:8080", DaemonCredentials::new("cluster-1", "pw"),
    /// # )).unwrap();
    /// match client.connect() {
    ///     Ok(()) => assert!(client.is_ready()),
    ///     Err(e) => eprintln!("{} ({:?})", e, e.server_code()),
    /// }
    /// ```
    pub fn connect(&self) -> Result<(), DaemonClientError> {
        self.shared().connect()
    }

    /// Disconnects gracefully (`41`, close frame), stops reconnection and
    /// joins every thread before returning. Idempotent.
    ///
    /// ```
    /// # use volt_daemon_client::*;
    /// # let client = ClusterDaemonClient::new(ClusterDaemonClientOptions::new(
    /// #     "http://127.0.0.1:8080", "ws://127.0.0.1:8080", DaemonCredentials::new("cluster-1", "pw"),
    /// # )).unwrap();
    /// client.disconnect();
    /// client.disconnect(); // nothing left to do
    /// assert!(!client.is_ready());
    /// ```
    pub fn disconnect(&self) {
        self.shared().disconnect();
    }

    /// Whether the client is connected and registered.
    ///
    /// ```
    /// # use volt_daemon_client::*;
    /// # let client = ClusterDaemonClient::new(ClusterDaemonClientOptions::new(
    /// #     "http://127.0.0.1:8080", "ws://127.0.0.1:8080", DaemonCredentials::new("cluster-1", "pw"),
    /// # )).unwrap();
    /// assert!(!client.is_ready()); // nothing starts before connect()
    /// ```
    pub fn is_ready(&self) -> bool {
        self.shared().link.is_ready()
    }

    /// Sends a command and waits for its reply, up to `command_timeout`.
    ///
    /// ```no_run
    /// # use volt_daemon_client::*;
    /// # let client = ClusterDaemonClient::new(ClusterDaemonClientOptions::new(
    /// #     "http://127.0.0.1:8080", "ws://127.0.0.1:8080", DaemonCredentials::new("cluster-1", "pw"),
    /// # )).unwrap();
    /// let stats = client.send_command("get-container-stats", Some(serde_json::json!({"id": "c1"})))?;
    /// match client.send_command("reboot", None) {
    ///     Err(e) if e.code() == DaemonClientErrorCode::CommandRejected => {
    ///         eprintln!("refused: {:?} {:?}", e.server_code(), e.server_message())
    ///     }
    ///     other => println!("{other:?}"),
    /// }
    /// # Ok::<(), DaemonClientError>(())
    /// ```
    pub fn send_command(
        &self,
        command: &str,
        payload: Option<Value>,
    ) -> Result<Option<Value>, DaemonClientError> {
        self.start_command(command, payload)?.wait()
    }

    /// Sends a command and waits for its reply, up to `timeout`.
    ///
    /// ```no_run
    /// # use volt_daemon_client::*;
    /// # let client = ClusterDaemonClient::new(ClusterDaemonClientOptions::new(
    /// #     "http://127.0.0.1:8080", "ws://127.0.0.1:8080", DaemonCredentials::new("cluster-1", "pw"),
    /// # )).unwrap();
    /// let r = client.send_command_with_timeout("ping", None, std::time::Duration::from_millis(500));
    /// if let Err(e) = r {
    ///     assert!(matches!(e.code(), DaemonClientErrorCode::CommandTimeout | DaemonClientErrorCode::SocketNotReady));
    /// }
    /// ```
    pub fn send_command_with_timeout(
        &self,
        command: &str,
        payload: Option<Value>,
        timeout: Duration,
    ) -> Result<Option<Value>, DaemonClientError> {
        self.start_command_with_timeout(command, payload, timeout)?
            .wait()
    }

    /// Sends a command now; [`PendingCommand::wait`] gives its outcome.
    /// `SOCKET_NOT_READY` at once when not ready, or while
    /// [`drain`](Self::drain) runs ("draining").
    ///
    /// ```
    /// # use volt_daemon_client::*;
    /// # let client = ClusterDaemonClient::new(ClusterDaemonClientOptions::new(
    /// #     "http://127.0.0.1:8080", "ws://127.0.0.1:8080", DaemonCredentials::new("cluster-1", "pw"),
    /// # )).unwrap();
    /// // Not connected: refused at once, nothing sent.
    /// let err = client.start_command("echo", None).unwrap_err();
    /// assert_eq!(err.code(), DaemonClientErrorCode::SocketNotReady);
    /// ```
    pub fn start_command(
        &self,
        command: &str,
        payload: Option<Value>,
    ) -> Result<PendingCommand, DaemonClientError> {
        let timeout = self.shared().options.command_timeout;
        self.start_command_with_timeout(command, payload, timeout)
    }

    /// Like [`start_command`](Self::start_command) with its own timeout.
    pub fn start_command_with_timeout(
        &self,
        command: &str,
        payload: Option<Value>,
        timeout: Duration,
    ) -> Result<PendingCommand, DaemonClientError> {
        if self.shared().drain.is_draining() {
            return Err(draining_error());
        }
        self.shared().link.start_pending(command, payload, timeout)
    }

    /// Sends a typed command and reads the reply into `T` (`Option<T>` for
    /// commands that may answer without data).
    ///
    /// ```no_run
    /// # use volt_daemon_client::*;
    /// # let client = ClusterDaemonClient::new(ClusterDaemonClientOptions::new(
    /// #     "http://127.0.0.1:8080", "ws://127.0.0.1:8080", DaemonCredentials::new("cluster-1", "pw"),
    /// # )).unwrap();
    /// #[derive(serde::Deserialize)]
    /// struct Stats { cpu: f64 }
    /// let stats: Stats = client.send_command_as("get-container-stats", None)?;
    /// println!("cpu {}", stats.cpu);
    /// # Ok::<(), DaemonClientError>(())
    /// ```
    pub fn send_command_as<T: serde::de::DeserializeOwned>(
        &self,
        command: &str,
        payload: Option<Value>,
    ) -> Result<T, DaemonClientError> {
        let data = self.send_command(command, payload)?.unwrap_or(Value::Null);
        serde_json::from_value(data).map_err(|e| {
            DaemonClientError::protocol(format!(
                "the reply to {command:?} does not have the expected shape: {e}"
            ))
        })
    }

    /// Sends a fire-and-forget message. `EMIT_FAILED` when not ready or when
    /// it cannot be queued; `PAYLOAD_TOO_LARGE` over the server's `maxPayload`;
    /// `SOCKET_NOT_READY` ("draining") while [`drain`](Self::drain) runs.
    ///
    /// ```
    /// # use volt_daemon_client::*;
    /// # let client = ClusterDaemonClient::new(ClusterDaemonClientOptions::new(
    /// #     "http://127.0.0.1:8080", "ws://127.0.0.1:8080", DaemonCredentials::new("cluster-1", "pw"),
    /// # )).unwrap();
    /// let msg: TeamClusterDaemonMessage = serde_json::from_value(serde_json::json!({
    ///     "type": "tunnel-state", "tunnelId": "t1", "state": "open"
    /// })).unwrap();
    /// // Not connected yet:
    /// assert_eq!(client.emit(&msg).unwrap_err().code(), DaemonClientErrorCode::EmitFailed);
    /// ```
    pub fn emit(&self, message: &TeamClusterDaemonMessage) -> Result<(), DaemonClientError> {
        if self.shared().drain.is_draining() {
            return Err(draining_error());
        }
        let emit_failed =
            |why: &str| DaemonClientError::new(DaemonClientErrorCode::EmitFailed, why);
        let Some((outbox, namespace)) = self.shared().link.outbox() else {
            return Err(emit_failed("the client is not connected and registered"));
        };
        let out = VoltEvent::Message(message.clone()).encode(&namespace);
        let deadline = std::time::Instant::now() + self.shared().options.command_timeout;
        let sent = outbox.send(&out, deadline);
        sent.inspect(|()| self.shared().link.stats.message_out())
            .map_err(|e| match e {
                OutboxError::TooLarge { size, max } => DaemonClientError::new(
                    DaemonClientErrorCode::PayloadTooLarge,
                    format!("message is {size} bytes; the server accepts {max}"),
                ),
                OutboxError::Timeout => emit_failed("the outgoing queue stayed full"),
                OutboxError::Closed => emit_failed("the connection was lost"),
            })
    }

    /// The team cluster id.
    ///
    /// ```
    /// # use volt_daemon_client::*;
    /// # let client = ClusterDaemonClient::new(ClusterDaemonClientOptions::new(
    /// #     "http://127.0.0.1:8080", "ws://127.0.0.1:8080", DaemonCredentials::new("cluster-1", "pw"),
    /// # )).unwrap();
    /// assert_eq!(client.team_cluster_id(), "cluster-1");
    /// ```
    pub fn team_cluster_id(&self) -> String {
        self.shared().options.credentials.team_cluster_id.clone()
    }

    /// The current daemon password (the rotated one after enrollment rotated it).
    ///
    /// ```
    /// # use volt_daemon_client::*;
    /// # let client = ClusterDaemonClient::new(ClusterDaemonClientOptions::new(
    /// #     "http://127.0.0.1:8080", "ws://127.0.0.1:8080", DaemonCredentials::new("cluster-1", "pw"),
    /// # )).unwrap();
    /// assert_eq!(client.daemon_password(), "pw");
    /// ```
    pub fn daemon_password(&self) -> String {
        self.shared().password.read().clone()
    }

    /// A snapshot of the client's figures: commands and their outcomes,
    /// reverse commands by status class, messages, bytes and frames,
    /// reconnections, queues, and the command round-trip latency. Cheap:
    /// a few dozen relaxed loads and one short lock of the pending table
    /// (a 4 KiB copy of the histogram). Counting costs the command path
    /// no atomic instruction (see `docs/ARCHITECTURE.md`).
    ///
    /// ```
    /// # use volt_daemon_client::*;
    /// # let client = ClusterDaemonClient::new(ClusterDaemonClientOptions::new(
    /// #     "http://127.0.0.1:8080", "ws://127.0.0.1:8080", DaemonCredentials::new("cluster-1", "pw"),
    /// # )).unwrap();
    /// let stats = client.stats();
    /// assert_eq!(stats.commands_in_flight, 0);
    /// println!("{}", serde_json::to_string(&stats).unwrap()); // one line for the log
    /// ```
    pub fn stats(&self) -> ClientStats {
        let shared = self.shared();
        let queued = shared
            .runtime
            .lock()
            .as_ref()
            .map_or(0, |r| r.pool.queued());
        let link = &shared.link;
        let mut stats = link.snapshot(queued);
        if let ConnectionState::Ready { url, .. } = shared.state.get() {
            stats.url = Some(url);
        }
        stats
    }

    /// Commands awaiting a reply (diagnostics).
    pub fn pending_commands(&self) -> usize {
        self.shared().link.pending_count()
    }
}

impl ClusterDaemonClient {
    /// Leaves cleanly: from now on commands and emits fail at once
    /// (`SOCKET_NOT_READY`, "draining") and reverse commands are answered
    /// 503 `DRAINING`; reverse commands (streams included) and commands
    /// already in flight get until `timeout` to finish; then it disconnects
    /// as [`disconnect`](Self::disconnect) does (which, like it, waits for
    /// handlers still running). Heartbeats go on meanwhile. The client can
    /// `connect()` again afterwards.
    ///
    /// ```no_run
    /// # use volt_daemon_client::*;
    /// # let client = ClusterDaemonClient::new(ClusterDaemonClientOptions::new(
    /// #     "http://127.0.0.1:8080", "ws://127.0.0.1:8080", DaemonCredentials::new("cluster-1", "pw"),
    /// # )).unwrap();
    /// client.connect()?;
    /// // ... on SIGTERM:
    /// let report = client.drain(std::time::Duration::from_secs(10));
    /// if !report.is_clean() {
    ///     eprintln!("cut off: {report:?}");
    /// }
    /// # Ok::<(), DaemonClientError>(())
    /// ```
    pub fn drain(&self, timeout: Duration) -> DrainReport {
        let started = Instant::now();
        let deadline = started.checked_add(timeout);
        let shared = self.shared();
        let gate = &shared.drain;
        let rx = gate.begin();
        let reply_timeout = shared.options.command_timeout;
        let refuser = Worker::spawn("volt-drain", move || refuse_all(&rx, reply_timeout))
            .map_err(|e| log::error!("spawning volt-drain failed: {e}: refusals become 503 BUSY"))
            .ok();
        let handlers = gate.in_flight();
        let commands = shared.link.pending_count();
        log::info!("draining: {handlers} reverse commands and {commands} commands in flight");
        let (handlers_left, commands_left) = loop {
            let now = Instant::now();
            let step = deadline.map_or(now + LOOK_AGAIN, |d| d.min(now + LOOK_AGAIN));
            let handlers_left = gate.wait_idle(step);
            let commands_left = shared.link.pending_count();
            let over = deadline.is_some_and(|d| Instant::now() >= d);
            if over || (handlers_left == 0 && commands_left == 0) {
                break (handlers_left, commands_left);
            }
        };
        self.disconnect();
        let refused = gate.end();
        if let Some(refuser) = refuser {
            refuser.join();
        }
        let report = DrainReport {
            handlers_finished: handlers.saturating_sub(handlers_left),
            handlers_cut_off: handlers_left.min(handlers),
            commands_finished: commands.saturating_sub(commands_left),
            commands_cut_off: commands_left.min(commands),
            reverse_commands_refused: refused,
            elapsed: started.elapsed(),
        };
        log::info!("drained: {report:?}");
        report
    }
}

impl Shared {
    fn connect(self: &Arc<Self>) -> Result<(), DaemonClientError> {
        if self.options.socket.retry_initial_connect {
            self.connect_in_background()?;
            return self.state.wait_ready(None);
        }
        let mut after = AfterConnect::default();
        let result = {
            let _one_at_a_time = self.connecting.lock();
            if self.link.is_ready() {
                return Ok(());
            }
            let result = self.try_connect(&mut after);
            if let Err(e) = &result {
                self.fail_span(e);
                // A failed connect() leaves no thread behind and nothing
                // retrying. Taken now, stopped once the lock is let go.
                after.teardown = self.take_runtime();
            }
            result
        };
        // User code (a callback, a handler) may call connect() itself: it
        // runs, and threads that run it are joined, with no lock held.
        after.run(self);
        result
    }

    fn try_connect(self: &Arc<Self>, after: &mut AfterConnect) -> Result<(), DaemonClientError> {
        let generation = self.generation.load(Ordering::Acquire);
        self.ensure_runtime()?;
        self.enroll_once(&mut after.rotated)?;
        let (first_tx, first_rx) = crossbeam_channel::bounded(1);
        self.spawn_conn(generation, Some(first_tx), false)?;
        // The connection thread always answers: it is bounded by connect_timeout.
        first_rx
            .recv()
            .unwrap_or_else(|_| Err(DaemonClientError::connect_interrupted()))
    }

    /// Starts `volt-conn` for the span of `generation` (unless it ended):
    /// `first` hears how the first attempt ended; `enroll` has it enroll.
    pub(crate) fn spawn_conn(
        self: &Arc<Self>,
        generation: u64,
        first: Option<crossbeam_channel::Sender<Result<(), DaemonClientError>>>,
        enroll: bool,
    ) -> Result<(), DaemonClientError> {
        let mut rt = self.runtime.lock();
        let Some(runtime) = rt.as_mut() else {
            return Err(DaemonClientError::connect_interrupted());
        };
        if self.generation.load(Ordering::Acquire) != generation {
            return Err(DaemonClientError::connect_interrupted());
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (reactor, waker) = connection::reactor(stop.clone()).map_err(|e| {
            DaemonClientError::connection(format!("creating the poller failed: {e}"))
        })?;
        let ctx = ConnContext {
            shared: self.clone(),
            events: runtime.sink.clone(),
            jobs: runtime.pool.sender(),
            stop: stop.clone(),
            first,
            enroll,
        };
        let worker = connection::spawn(ctx, reactor, waker.clone())
            .map_err(|e| DaemonClientError::connection(format!("spawning a thread failed: {e}")))?;
        runtime.conn = Some(ConnThread::new(worker, stop, waker));
        Ok(())
    }
}

/// What connect() does once it let go of its lock: anything that runs user
/// code or joins a thread that does.
#[derive(Default)]
struct AfterConnect {
    /// A rotated password no event thread was there to report.
    rotated: Option<String>,
    /// The threads of a failed attempt.
    teardown: Option<Runtime>,
}

impl AfterConnect {
    fn run(self, shared: &Shared) {
        if let Some(runtime) = self.teardown {
            shared.stop_runtime(runtime);
        }
        if let Some(new_password) = self.rotated {
            shared
                .callbacks
                .dispatch(&ClientEvent::PasswordRotated(new_password, None));
        }
    }
}
