//! The connection's state for the user: `state()`, a connect that returns
//! at once (`connect_in_background`), `wait_ready`, and how the client
//! records each change (posted in order to `on_state_change`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::connection_state::ConnectionState;
use crate::error::DaemonClientError;
use crate::events::{ClientEvent, EventSink};
use crate::{ClusterDaemonClient, Shared};

impl ClusterDaemonClient {
    /// Where the connection is now (a snapshot).
    ///
    /// ```
    /// # use volt_daemon_client::*;
    /// # let client = ClusterDaemonClient::new(ClusterDaemonClientOptions::new(
    /// #     "http://127.0.0.1:8080", "ws://127.0.0.1:8080", DaemonCredentials::new("cluster-1", "pw"),
    /// # )).unwrap();
    /// assert_eq!(client.state(), ConnectionState::Idle);
    /// if let ConnectionState::Ready { since, url } = client.state() {
    ///     println!("on {url} for {:?}", since.elapsed());
    /// }
    /// ```
    pub fn state(&self) -> ConnectionState {
        self.shared().state.get()
    }

    /// Starts connecting on the connection thread and returns at once:
    /// enrollment (when due), then the socket and registration, retried as
    /// `connect()` retries them (with `socket.retry_initial_connect`, until
    /// one succeeds or `max_reconnect_attempts` is spent; without it, each
    /// URL once). Failures go to `on_error`; [`wait_ready`](Self::wait_ready)
    /// and [`state`](Self::state) tell how it goes. A no-op when ready or
    /// already connecting. `disconnect()` during a background enrollment
    /// waits for that request to end (bounded by `enrollment.timeout`).
    ///
    /// ```no_run
    /// # use volt_daemon_client::*;
    /// # use std::time::Duration;
    /// # let options = ClusterDaemonClientOptions::new(
    /// #     "http://127.0.0.1:8080", "ws://127.0.0.1:8080", DaemonCredentials::new("cluster-1", "pw"),
    /// # );
    /// let options = options.with_socket(SocketOptions::default().with_retry_initial_connect(true));
    /// let client = ClusterDaemonClient::new(options)?;
    /// client.connect_in_background()?;
    /// // ... start the rest of the daemon meanwhile ...
    /// client.wait_ready(Duration::from_secs(60))?;
    /// # Ok::<(), DaemonClientError>(())
    /// ```
    pub fn connect_in_background(&self) -> Result<(), DaemonClientError> {
        self.shared().connect_in_background()
    }

    /// Waits until the client is ready: `Ok` at once when it is; the error
    /// that ended the connect (a refused registration, `GaveUp`, ...) when
    /// nothing is connecting any more; `SOCKET_NOT_READY` when `timeout`
    /// passes first or when nothing was started.
    ///
    /// ```
    /// # use volt_daemon_client::*;
    /// # use std::time::Duration;
    /// # let client = ClusterDaemonClient::new(ClusterDaemonClientOptions::new(
    /// #     "http://127.0.0.1:8080", "ws://127.0.0.1:8080", DaemonCredentials::new("cluster-1", "pw"),
    /// # )).unwrap();
    /// // Nothing was started: fails at once.
    /// let e = client.wait_ready(Duration::from_secs(10)).unwrap_err();
    /// assert_eq!(e.code(), DaemonClientErrorCode::SocketNotReady);
    /// ```
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), DaemonClientError> {
        let deadline = Instant::now().checked_add(timeout);
        self.shared().state.wait_ready(deadline)
    }
}

impl Shared {
    /// Moves to `state` and posts the change for `on_state_change`.
    pub(crate) fn set_state(
        &self,
        sink: &EventSink,
        state: ConnectionState,
        reason: impl Into<String>,
    ) {
        self.state
            .set(state, reason, |c| sink.post(ClientEvent::StateChanged(c)));
    }

    /// Moves to a terminal `state` because of `error` (what `wait_ready`
    /// then reports); nothing when the state is already terminal.
    pub(crate) fn fail_state(
        &self,
        sink: &EventSink,
        state: ConnectionState,
        error: &DaemonClientError,
    ) {
        self.state.fail(state, error.clone(), |c| {
            sink.post(ClientEvent::StateChanged(c))
        });
    }

    /// A connect() span failed with `error` on this side of the thread.
    pub(crate) fn fail_span(&self, error: &DaemonClientError) {
        let sink = self.runtime.lock().as_ref().map(|r| r.sink.clone());
        if let Some(sink) = sink {
            let state = ConnectionState::Disconnected {
                reason: error.to_string(),
            };
            self.fail_state(&sink, state, error);
        }
    }

    pub(crate) fn connect_in_background(self: &Arc<Self>) -> Result<(), DaemonClientError> {
        let teardown = {
            let _one_at_a_time = self.connecting.lock();
            if self.link.is_ready() {
                return Ok(());
            }
            let running = self
                .runtime
                .lock()
                .as_ref()
                .is_some_and(|r| r.conn.is_some());
            if running && !self.state.get().is_terminal() {
                return Ok(());
            }
            let generation = self.generation.load(Ordering::Acquire);
            let started = self.ensure_runtime().and_then(|()| {
                self.mark_started();
                self.spawn_conn(generation, None, true)
            });
            match started {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.fail_span(&e);
                    (self.take_runtime(), e)
                }
            }
        };
        let (runtime, e) = teardown;
        if let Some(runtime) = runtime {
            self.stop_runtime(runtime);
        }
        Err(e)
    }

    /// The first state of a background connect, set before it returns (so
    /// `wait_ready` right after it waits).
    fn mark_started(&self) {
        let Some(sink) = self.runtime.lock().as_ref().map(|r| r.sink.clone()) else {
            return;
        };
        let state = if self.enrollment_due() {
            ConnectionState::Enrolling
        } else {
            ConnectionState::Connecting {
                attempt: 1,
                url: self.options.control_socket_url.clone(),
            }
        };
        self.set_state(&sink, state, "connect_in_background() called");
    }
}
