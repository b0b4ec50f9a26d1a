//! Where the connection is ([`ConnectionState`]), each change of it
//! ([`StateChange`]), and the cell that holds it: one lock, so a change and
//! its report are made together and reported in the order they were made.
//! No I/O here: the cell is told how to report (`post`), and waiters
//! (`wait_ready`) sleep on its condition variable.

use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::DaemonClientError;

/// Where the client's connection is. [`ClusterDaemonClient::state`] gives a
/// snapshot; [`ClusterDaemonClient::on_state_change`] reports each change.
///
/// `attempt` counts connection attempts from 1, since the start or since
/// the last registered connection was lost; it goes back to 1 once one
/// registers.
///
/// ```
/// use volt_daemon_client::ConnectionState;
/// let s = ConnectionState::Connecting { attempt: 1, url: "ws://127.0.0.1:8080".into() };
/// assert!(!s.is_ready() && !s.is_terminal());
/// assert!(ConnectionState::Idle.is_terminal());
/// assert_eq!(s.url(), Some("ws://127.0.0.1:8080"));
/// ```
///
/// [`ClusterDaemonClient::state`]: crate::ClusterDaemonClient::state
/// [`ClusterDaemonClient::on_state_change`]: crate::ClusterDaemonClient::on_state_change
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Never connected, or not since `new()`.
    Idle,
    /// The enrollment request is in progress.
    Enrolling,
    /// Opening the socket (TCP, TLS, WebSocket, Engine.IO) to `url`.
    Connecting {
        /// 1 for the first attempt in a row.
        attempt: u32,
        /// The control socket URL tried.
        url: String,
    },
    /// The socket is open; the registration (`40`) awaits the server's answer.
    Registering,
    /// Connected and registered: commands flow.
    Ready {
        /// When the registration was accepted.
        since: Instant,
        /// The control socket URL in use.
        url: String,
    },
    /// Waiting `delay` before attempt `attempt`.
    Reconnecting {
        /// The attempt that comes after the delay.
        attempt: u32,
        /// The backoff delay.
        delay: Duration,
    },
    /// Not connected, and nothing will reconnect: `disconnect()`, a kick
    /// (`io server disconnect`), a refused registration, a failed connect
    /// that is not retried, or a loss with reconnection off.
    Disconnected {
        /// Why (`io client disconnect`, `io server disconnect`, the error, ...).
        reason: String,
    },
    /// `max_reconnect_attempts` failed attempts in a row: nothing will
    /// reconnect.
    GaveUp {
        /// The attempts made.
        attempts: u32,
    },
}

impl ConnectionState {
    /// Whether the client is connected and registered.
    ///
    /// ```
    /// # use volt_daemon_client::ConnectionState;
    /// assert!(!ConnectionState::Registering.is_ready());
    /// ```
    pub fn is_ready(&self) -> bool {
        matches!(self, ConnectionState::Ready { .. })
    }

    /// Whether nothing is under way: idle, disconnected or given up. Only
    /// `connect()` leaves such a state.
    ///
    /// ```
    /// # use volt_daemon_client::ConnectionState;
    /// assert!(ConnectionState::GaveUp { attempts: 3 }.is_terminal());
    /// assert!(!ConnectionState::Enrolling.is_terminal());
    /// ```
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            ConnectionState::Idle
                | ConnectionState::Disconnected { .. }
                | ConnectionState::GaveUp { .. }
        )
    }

    /// The URL being tried or in use, when there is one.
    ///
    /// ```
    /// # use volt_daemon_client::ConnectionState;
    /// assert_eq!(ConnectionState::Idle.url(), None);
    /// ```
    pub fn url(&self) -> Option<&str> {
        match self {
            ConnectionState::Connecting { url, .. } | ConnectionState::Ready { url, .. } => {
                Some(url)
            }
            _ => None,
        }
    }
}

/// One change of [`ConnectionState`], as given to `on_state_change`.
///
/// ```
/// use volt_daemon_client::{ConnectionState, StateChange};
/// fn log(change: &StateChange) {
///     println!("{:?} -> {:?}: {}", change.previous, change.state, change.reason);
/// }
/// # let _ = log;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateChange {
    /// The new state.
    pub state: ConnectionState,
    /// The state before.
    pub previous: ConnectionState,
    /// Why it changed (`connect() called`, `registered`, `transport close`,
    /// the error of a failed attempt, ...). Never holds a secret.
    pub reason: String,
    /// When it changed, read on the thread that changed it: callbacks run
    /// later on `volt-events`, so this is the time to measure with (how
    /// long a backoff really waited, how long a state lasted).
    pub at: Instant,
}

struct Inner {
    state: ConnectionState,
    /// Why the last connect() span ended for good, for `wait_ready`.
    failure: Option<DaemonClientError>,
}

/// The current state, its changes and the threads waiting for readiness.
pub(crate) struct StateCell {
    inner: Mutex<Inner>,
    changed: Condvar,
}

impl Default for StateCell {
    fn default() -> Self {
        StateCell {
            inner: Mutex::new(Inner {
                state: ConnectionState::Idle,
                failure: None,
            }),
            changed: Condvar::new(),
        }
    }
}

impl StateCell {
    pub(crate) fn get(&self) -> ConnectionState {
        self.inner.lock().state.clone()
    }

    /// Moves to `state` (nothing when it is the current one) and hands the
    /// change to `post` under the lock, so changes are posted in order.
    /// `post` must not block or run user code (it queues an event).
    pub(crate) fn set(
        &self,
        state: ConnectionState,
        reason: impl Into<String>,
        post: impl FnOnce(StateChange),
    ) {
        self.change(state, reason.into(), None, post);
    }

    /// Like [`set`](Self::set) to a terminal state, remembering `error` as
    /// what `wait_ready` reports; nothing when the state is already
    /// terminal (a `disconnect()` came first).
    pub(crate) fn fail(
        &self,
        state: ConnectionState,
        error: DaemonClientError,
        post: impl FnOnce(StateChange),
    ) {
        self.change(state, error.to_string(), Some(error), post);
    }

    /// One change, and with a failure its error, under one lock: a waiter
    /// woken by it sees both.
    fn change(
        &self,
        state: ConnectionState,
        reason: String,
        failure: Option<DaemonClientError>,
        post: impl FnOnce(StateChange),
    ) {
        let mut inner = self.inner.lock();
        if failure.is_some() && inner.state.is_terminal() {
            return;
        }
        if inner.state == state {
            return;
        }
        inner.failure = failure;
        let previous = std::mem::replace(&mut inner.state, state.clone());
        log::debug!("connection state: {state:?} ({reason})");
        post(StateChange {
            state,
            previous,
            reason,
            at: Instant::now(),
        });
        drop(inner);
        self.changed.notify_all();
    }

    /// Moves to `Disconnected { reason }` unless the state is already
    /// terminal.
    pub(crate) fn end(&self, reason: &str, post: impl FnOnce(StateChange)) {
        if self.inner.lock().state.is_terminal() {
            return;
        }
        let state = ConnectionState::Disconnected {
            reason: reason.to_owned(),
        };
        self.set(state, reason, post);
    }

    /// Waits until ready (`Ok`), until the state is terminal (the error
    /// that ended it, or `SOCKET_NOT_READY`), or until `deadline`
    /// (`SOCKET_NOT_READY`).
    pub(crate) fn wait_ready(&self, deadline: Option<Instant>) -> Result<(), DaemonClientError> {
        let mut inner = self.inner.lock();
        loop {
            if inner.state.is_ready() {
                return Ok(());
            }
            if inner.state.is_terminal() {
                return Err(inner.failure.clone().unwrap_or_else(|| {
                    DaemonClientError::not_ready(&format!(
                        "not connecting ({})",
                        describe(&inner.state)
                    ))
                }));
            }
            match deadline {
                Some(d) => {
                    if self.changed.wait_until(&mut inner, d).timed_out() {
                        if inner.state.is_ready() {
                            return Ok(());
                        }
                        return Err(DaemonClientError::not_ready(&format!(
                            "not ready within the timeout ({})",
                            describe(&inner.state)
                        )));
                    }
                }
                None => self.changed.wait(&mut inner),
            }
        }
    }
}

fn describe(state: &ConnectionState) -> String {
    match state {
        ConnectionState::Idle => "connect() was not called".into(),
        ConnectionState::Disconnected { reason } => format!("disconnected: {reason}"),
        ConnectionState::GaveUp { attempts } => format!("gave up after {attempts} attempts"),
        ConnectionState::Connecting { attempt, url } => {
            format!("connecting to {url}, attempt {attempt}")
        }
        ConnectionState::Reconnecting { attempt, delay } => {
            format!("attempt {attempt} in {delay:?}")
        }
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::DaemonClientErrorCode;

    fn connecting(attempt: u32) -> ConnectionState {
        ConnectionState::Connecting {
            attempt,
            url: "ws://h".into(),
        }
    }

    #[test]
    fn changes_carry_the_previous_state_and_the_reason_and_repeats_are_not_changes() {
        let cell = StateCell::default();
        let mut seen = Vec::new();
        cell.set(connecting(1), "connect() called", |c| seen.push(c));
        cell.set(connecting(1), "again", |c| seen.push(c));
        cell.set(ConnectionState::Registering, "transport open", |c| {
            seen.push(c)
        });
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].previous, ConnectionState::Idle);
        assert_eq!(seen[1].previous, connecting(1));
        assert_eq!(seen[1].reason, "transport open");
        assert_eq!(cell.get(), ConnectionState::Registering);
    }

    #[test]
    fn end_leaves_a_terminal_state_alone() {
        let cell = StateCell::default();
        let mut seen = 0;
        cell.end("io client disconnect", |_| seen += 1);
        assert_eq!(seen, 0, "idle stays idle");
        cell.set(ConnectionState::GaveUp { attempts: 2 }, "max", |_| {});
        cell.end("io client disconnect", |_| seen += 1);
        assert_eq!(cell.get(), ConnectionState::GaveUp { attempts: 2 });
        assert_eq!(seen, 0);
    }

    #[test]
    fn wait_ready_reports_the_failure_that_ended_the_span_or_times_out() {
        let cell = StateCell::default();
        let e = cell.wait_ready(None).unwrap_err();
        assert_eq!(e.code(), DaemonClientErrorCode::SocketNotReady);
        cell.set(connecting(1), "connect() called", |_| {});
        let soon = Instant::now() + Duration::from_millis(20);
        let e = cell.wait_ready(Some(soon)).unwrap_err();
        assert!(e.to_string().contains("within the timeout"), "{e}");
        let refused = DaemonClientError::new(DaemonClientErrorCode::SocketRegistrationFailed, "no");
        let gone = ConnectionState::Disconnected {
            reason: "no".into(),
        };
        cell.fail(gone, refused.clone(), |_| {});
        assert_eq!(cell.wait_ready(None).unwrap_err(), refused);
        // A new span forgets it.
        cell.set(connecting(1), "connect() called", |_| {});
        cell.set(connecting(2), "retry", |_| {});
        cell.end("io client disconnect", |_| {});
        let e = cell.wait_ready(None).unwrap_err();
        assert_eq!(e.code(), DaemonClientErrorCode::SocketNotReady);
    }

    #[test]
    fn a_waiter_woken_by_a_failure_always_sees_its_error() {
        // The state and its error change under one lock: never the state
        // without the error (it used to be two, and wait_ready could see
        // `Disconnected` with no error yet).
        for _ in 0..200 {
            let cell = std::sync::Arc::new(StateCell::default());
            cell.set(connecting(1), "connect() called", |_| {});
            let c = cell.clone();
            let waiter = std::thread::spawn(move || c.wait_ready(None));
            let refused =
                DaemonClientError::new(DaemonClientErrorCode::SocketConnectionFailed, "refused");
            let gone = ConnectionState::Disconnected {
                reason: "refused".into(),
            };
            cell.fail(gone, refused.clone(), |_| {});
            assert_eq!(waiter.join().unwrap(), Err(refused));
        }
    }

    #[test]
    fn wait_ready_wakes_when_another_thread_makes_it_ready() {
        let cell = std::sync::Arc::new(StateCell::default());
        cell.set(connecting(1), "connect() called", |_| {});
        let c = cell.clone();
        let t =
            std::thread::spawn(move || c.wait_ready(Some(Instant::now() + Duration::from_secs(5))));
        cell.set(
            ConnectionState::Ready {
                since: Instant::now(),
                url: "ws://h".into(),
            },
            "registered",
            |_| {},
        );
        assert!(t.join().unwrap().is_ok());
    }
}
