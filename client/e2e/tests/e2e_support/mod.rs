//! Helpers shared by the end-to-end test binaries (`e2e_*.rs`): a test
//! client against the testkit's `MockServer`, a recorder of the client's
//! callbacks, and bounded waits (a deadlock fails the test, never hangs it).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use parking_lot::Mutex;
use volt_daemon_client::{
    ClusterDaemonClient, ClusterDaemonClientOptions, DaemonClientError, DaemonClientErrorCode,
    TeamClusterDaemonMessage,
};
use volt_testkit::{client_options, MockServer, ServerEvent, DEFAULT_CLUSTER, DEFAULT_PASSWORD};

/// How long any wait for something that must happen may take.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long we watch for something that must NOT happen (a reconnection, ...).
/// Longer than the test clients' largest reconnection delay (200 ms).
pub const QUIET: Duration = Duration::from_millis(600);

/// Options for the default cluster of `server`.
pub fn options(server: &MockServer) -> ClusterDaemonClientOptions {
    client_options(server, DEFAULT_CLUSTER, DEFAULT_PASSWORD)
}

/// A client for `server` (options tweaked by `tweak`), not connected.
pub fn client_with(
    server: &MockServer,
    tweak: impl FnOnce(&mut ClusterDaemonClientOptions),
) -> ClusterDaemonClient {
    let mut o = options(server);
    tweak(&mut o);
    ClusterDaemonClient::new(o).expect("valid options")
}

/// Connects `client` on a helper thread, failing the test if it does not
/// return within `WAIT` (a deadlock) or returns an error.
pub fn connect(client: &ClusterDaemonClient) {
    let c = client.clone();
    bounded("connect()", WAIT * 2, move || c.connect()).expect("connect() succeeds");
}

/// A connected client for `server` with default test options.
pub fn connected(server: &MockServer) -> ClusterDaemonClient {
    connected_with(server, |_| {})
}

/// A connected client for `server`, options tweaked by `tweak`.
pub fn connected_with(
    server: &MockServer,
    tweak: impl FnOnce(&mut ClusterDaemonClientOptions),
) -> ClusterDaemonClient {
    let c = client_with(server, tweak);
    connect(&c);
    assert!(c.is_ready());
    c
}

/// Disconnects on a helper thread; a deadlock fails the test.
pub fn disconnect(client: &ClusterDaemonClient) {
    let c = client.clone();
    bounded("disconnect()", WAIT, move || c.disconnect());
}

/// Runs `f` on a helper thread and waits up to `timeout` for it: a call that
/// deadlocks fails the test instead of hanging it.
pub fn bounded<T: Send + 'static>(
    what: &str,
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::Builder::new()
        .name(format!("bounded: {what}"))
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawn a helper thread");
    match rx.recv_timeout(timeout) {
        Ok(v) => v,
        Err(RecvTimeoutError::Timeout) => {
            panic!("{what} did not return within {timeout:?} (deadlock?)")
        }
        Err(RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

/// Receives from `rx` within `timeout`, or fails the test saying what was awaited.
pub fn recv<T>(rx: &Receiver<T>, what: &str, timeout: Duration) -> T {
    rx.recv_timeout(timeout)
        .unwrap_or_else(|e| panic!("{what}: nothing within {timeout:?} ({e})"))
}

/// One client callback, as recorded.
#[derive(Debug, Clone)]
pub enum Cb {
    Connected,
    Disconnected(String),
    Error(DaemonClientError),
    Message(TeamClusterDaemonMessage),
    PasswordRotated(String),
}

impl Cb {
    pub fn is_error(&self, code: DaemonClientErrorCode) -> bool {
        matches!(self, Cb::Error(e) if e.code() == code)
    }
}

/// Records every callback of a client, in order: as a channel to wait on
/// and as a log to look at after `disconnect()` returned.
pub struct Recorder {
    rx: Receiver<Cb>,
    log: Arc<Mutex<Vec<Cb>>>,
}

impl Recorder {
    /// Registers the recording callbacks on `client`.
    pub fn attach(client: &ClusterDaemonClient) -> Recorder {
        let (tx, rx) = crossbeam_channel::unbounded();
        let log = Arc::new(Mutex::new(Vec::new()));
        let push = {
            let log = log.clone();
            move |cb: Cb| {
                log.lock().push(cb.clone());
                let _ = tx.send(cb);
            }
        };
        let p = push.clone();
        client.on_connected(move || p(Cb::Connected));
        let p = push.clone();
        client.on_disconnected(move |r| p(Cb::Disconnected(r.to_owned())));
        let p = push.clone();
        client.on_error(move |e| p(Cb::Error(e.clone())));
        let p = push.clone();
        client.on_message(move |m| p(Cb::Message(m.clone())));
        let p = push;
        client.on_password_rotated(move |pw| p(Cb::PasswordRotated(pw.to_owned())));
        Recorder { rx, log }
    }

    /// Waits for the next callback accepted by `pred` (skipping others).
    pub fn expect(&self, what: &str, mut pred: impl FnMut(&Cb) -> bool) -> Cb {
        let deadline = Instant::now() + WAIT;
        let mut skipped = Vec::new();
        loop {
            match self.rx.recv_deadline(deadline) {
                Ok(cb) if pred(&cb) => return cb,
                Ok(cb) => skipped.push(cb),
                Err(_) => panic!("no {what} callback within {WAIT:?}; skipped: {skipped:?}"),
            }
        }
    }

    /// Waits for the next callback, whatever it is.
    pub fn next(&self, what: &str) -> Cb {
        recv(&self.rx, what, WAIT)
    }

    /// Fails if a callback accepted by `pred` arrives within `window`.
    pub fn expect_none(&self, what: &str, window: Duration, mut pred: impl FnMut(&Cb) -> bool) {
        let deadline = Instant::now() + window;
        while let Ok(cb) = self.rx.recv_deadline(deadline) {
            assert!(!pred(&cb), "unexpected {what} callback: {cb:?}");
        }
    }

    /// Every callback so far, in order.
    pub fn log(&self) -> Vec<Cb> {
        self.log.lock().clone()
    }
}

/// How many events of the log `pred` accepts.
pub fn count_events(server: &MockServer, pred: impl Fn(&ServerEvent) -> bool) -> usize {
    server.events().iter().filter(|e| pred(e)).count()
}

pub fn is_registered(e: &ServerEvent) -> bool {
    matches!(e, ServerEvent::Registered { .. })
}

/// Waits for a registration at or after `mark`; returns its connection id.
pub fn wait_registered(server: &MockServer, mark: u64) -> u64 {
    match server
        .expect_event_from(mark, is_registered, WAIT)
        .unwrap_or_else(|e| panic!("{e}"))
    {
        ServerEvent::Registered { conn, .. } => conn,
        _ => unreachable!(),
    }
}

/// The auth objects of the `40/daemon,{...}` frames the server received, in order.
pub fn registration_auths(server: &MockServer) -> Vec<serde_json::Value> {
    server
        .all_frames()
        .into_iter()
        .filter(|f| f.dir == volt_testkit::Direction::In)
        .filter_map(|f| match f.frame {
            volt_testkit::RawFrame::Text(t) => t
                .strip_prefix("40/daemon,")
                .and_then(|j| serde_json::from_str(j).ok()),
            _ => None,
        })
        .collect()
}
