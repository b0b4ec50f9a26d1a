//! Helpers shared by the reliability and security tests (issue 7): a
//! recorder of client callbacks with timestamps, a lock that serialises the
//! tests that count threads or measure memory, and small scripted servers.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tungstenite::{Message, WebSocket};
use volt_daemon_client::ClusterDaemonClient;
use volt_testkit::ClientRecorder;

/// Tests that count threads (`/proc/self/task`) or read peak RSS must not
/// overlap with other tests of the same binary: they hold this.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// One callback invocation (the testkit's `ClientEvent`).
pub use volt_testkit::ClientEvent as Ev;

/// The testkit's [`ClientRecorder`], with this suite's panicking wait.
pub struct Recorder(ClientRecorder);

/// Registers recording callbacks on `client`.
pub fn record(client: &ClusterDaemonClient) -> Recorder {
    Recorder(ClientRecorder::attach(client))
}

impl Recorder {
    /// Waits for the next event past the cursor that `pred` accepts, moves
    /// the cursor past it and returns it with its time. Panics (with every
    /// event seen) after `timeout`.
    pub fn wait(&self, timeout: Duration, pred: impl Fn(&Ev) -> bool) -> (Instant, Ev) {
        self.0
            .wait_for("matching", pred, timeout)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Every event so far.
    pub fn all(&self) -> Vec<Ev> {
        self.0.events()
    }

    /// How many events so far `pred` accepts.
    pub fn count(&self, pred: impl Fn(&Ev) -> bool) -> usize {
        self.0.count(pred)
    }
}

/// A WebSocket server session scripted by the test: accepts one TCP
/// connection on `listener`, upgrades it, sends the open packet and accepts
/// the registration. For what the mock server cannot send (invalid UTF-8).
pub fn scripted_session(listener: &TcpListener, ping_interval_ms: u64) -> WebSocket<TcpStream> {
    let (tcp, _) = listener.accept().expect("accept");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut ws = tungstenite::accept(tcp).expect("WebSocket upgrade");
    ws.send(Message::text(format!(
        r#"0{{"sid":"scripted","upgrades":[],"pingInterval":{ping_interval_ms},"pingTimeout":20000,"maxPayload":1000000}}"#
    )))
    .unwrap();
    let reg = ws.read().expect("registration");
    assert!(
        reg.to_text().unwrap_or("").starts_with("40/daemon,"),
        "{reg:?}"
    );
    ws.send(Message::text(r#"40/daemon,{"sid":"scripted-io"}"#))
        .unwrap();
    ws
}
