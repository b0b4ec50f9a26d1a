//! Helpers shared by the end-to-end test binaries (`e2e_*.rs`): a test
//! client against the testkit's `MockServer`, a recorder of the client's
//! callbacks, and bounded waits (a deadlock fails the test, never hangs it).
#![allow(dead_code)]

use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use volt_daemon_client::{ClusterDaemonClient, ClusterDaemonClientOptions};
use volt_testkit::{
    client_options, ClientRecorder, MockServer, ServerEvent, DEFAULT_CLUSTER, DEFAULT_PASSWORD,
};

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

/// One client callback, as recorded (the testkit's `ClientEvent`).
pub use volt_testkit::ClientEvent as Cb;

/// The testkit's [`ClientRecorder`] with this suite's waits: each bounded
/// by [`WAIT`], a miss failing the test with every callback seen.
pub struct Recorder(ClientRecorder);

impl Recorder {
    /// Registers the recording callbacks on `client`.
    pub fn attach(client: &ClusterDaemonClient) -> Recorder {
        Recorder(ClientRecorder::attach(client))
    }

    /// Waits for the next callback accepted by `pred` (skipping others).
    pub fn expect(&self, what: &str, pred: impl FnMut(&Cb) -> bool) -> Cb {
        self.0
            .wait_for(what, pred, WAIT)
            .map(|(_, cb)| cb)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits for the next callback, whatever it is.
    pub fn next(&self, what: &str) -> Cb {
        self.expect(what, |_| true)
    }

    /// Fails if a callback accepted by `pred` arrives within `window`.
    pub fn expect_none(&self, what: &str, window: Duration, pred: impl FnMut(&Cb) -> bool) {
        if let Err(cb) = self.0.expect_none(what, window, pred) {
            panic!("unexpected {what} callback: {cb:?}");
        }
    }

    /// Every callback so far, in order.
    pub fn log(&self) -> Vec<Cb> {
        self.0.events()
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
