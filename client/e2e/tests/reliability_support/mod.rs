//! Helpers shared by the reliability and security tests (issue 7): a
//! recorder of client callbacks with timestamps, a lock that serialises the
//! tests that count threads or measure memory, and small scripted servers.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use tungstenite::{Message, WebSocket};
use volt_daemon_client::{ClusterDaemonClient, DaemonClientError, DaemonClientErrorCode};

/// Tests that count threads (`/proc/self/task`) or read peak RSS must not
/// overlap with other tests of the same binary: they hold this.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// One callback invocation.
#[derive(Debug, Clone)]
pub enum Ev {
    Connected,
    Disconnected(String),
    Error(DaemonClientError),
    Message(String),
}

impl Ev {
    pub fn is_connected(&self) -> bool {
        matches!(self, Ev::Connected)
    }
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Ev::Disconnected(_))
    }
    pub fn is_disconnected_with(&self, reason: &str) -> bool {
        matches!(self, Ev::Disconnected(r) if r == reason)
    }
    pub fn is_error(&self, code: DaemonClientErrorCode) -> bool {
        matches!(self, Ev::Error(e) if e.code() == code)
    }
}

/// Records every callback of a client, in order, with the time it ran.
pub struct Recorder {
    rx: Receiver<(Instant, Ev)>,
    seen: Mutex<Vec<(Instant, Ev)>>,
    /// Index of the next event `wait` looks at.
    cursor: Mutex<usize>,
}

/// Registers recording callbacks on `client`.
pub fn record(client: &ClusterDaemonClient) -> Recorder {
    let (tx, rx) = crossbeam_channel::unbounded();
    let t = tx.clone();
    client.on_connected(move || {
        let _ = t.send((Instant::now(), Ev::Connected));
    });
    let t = tx.clone();
    client.on_disconnected(move |r| {
        let _ = t.send((Instant::now(), Ev::Disconnected(r.to_owned())));
    });
    let t = tx.clone();
    client.on_error(move |e| {
        let _ = t.send((Instant::now(), Ev::Error(e.clone())));
    });
    client.on_message(move |m| {
        let _ = tx.send((Instant::now(), Ev::Message(m.message_type().to_owned())));
    });
    Recorder {
        rx,
        seen: Mutex::new(Vec::new()),
        cursor: Mutex::new(0),
    }
}

impl Recorder {
    fn pull(&self) {
        let mut seen = self.seen.lock().unwrap();
        seen.extend(self.rx.try_iter());
    }

    /// Waits for the next event past the cursor that `pred` accepts, moves
    /// the cursor past it and returns it with its time. Panics (with every
    /// event seen) after `timeout`.
    pub fn wait(&self, timeout: Duration, pred: impl Fn(&Ev) -> bool) -> (Instant, Ev) {
        let deadline = Instant::now() + timeout;
        let mut cursor = self.cursor.lock().unwrap();
        loop {
            self.pull();
            {
                let seen = self.seen.lock().unwrap();
                if let Some(i) = (*cursor..seen.len()).find(|&i| pred(&seen[i].1)) {
                    *cursor = i + 1;
                    return seen[i].clone();
                }
            }
            match self
                .rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(e) => self.seen.lock().unwrap().push(e),
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    if Instant::now() >= deadline {
                        panic!(
                            "no matching client event within {timeout:?}; seen: {:#?}",
                            self.all()
                        );
                    }
                }
            }
        }
    }

    /// Every event so far.
    pub fn all(&self) -> Vec<Ev> {
        self.pull();
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// How many events so far `pred` accepts.
    pub fn count(&self, pred: impl Fn(&Ev) -> bool) -> usize {
        self.all().iter().filter(|e| pred(e)).count()
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
