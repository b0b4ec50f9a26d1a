//! Our client, set up like `ref-daemon.js`: options, recorded callbacks,
//! the reference handlers.

use std::io::Read;
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};
use volt_daemon_client::{
    ClusterDaemonClient, ClusterDaemonClientOptions, CommandResult, DaemonClientError,
    DaemonCredentials, HandlerError, TeamClusterDaemonMessage,
};

use crate::*;

/// Options for our client against the server at `url`: the testkit's test
/// timings (5 s command and connect timeouts, 20–200 ms reconnection
/// backoff, 30 s heartbeats, a fixed rng seed).
pub fn client_options(url: &str, cluster: &str, password: &str) -> ClusterDaemonClientOptions {
    let mut o =
        ClusterDaemonClientOptions::new(url, url, DaemonCredentials::new(cluster, password));
    o.command_timeout = Duration::from_secs(5);
    o.socket.connect_timeout = Duration::from_secs(5);
    o.socket.reconnect_base_delay = Duration::from_millis(20);
    o.socket.reconnect_max_delay = Duration::from_millis(200);
    o.socket.rng_seed = Some(volt_testkit::TEST_RNG_SEED);
    o
}

/// What our client's callbacks reported.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// `on_connected`.
    Connected,
    /// `on_disconnected` with its reason.
    Disconnected(String),
    /// `on_message`.
    Message(TeamClusterDaemonMessage),
    /// `on_error`.
    Error(DaemonClientError),
    /// `on_password_rotated`.
    PasswordRotated(String),
}

/// Records every callback of a client; see [`Events`].
pub type ClientEvents = Events<ClientEvent>;

/// Hooks every callback of `client` (before `connect()`).
pub fn record_events(client: &ClusterDaemonClient) -> ClientEvents {
    let (tx, rx) = crossbeam_channel::unbounded();
    let t = tx.clone();
    client.on_connected(move || {
        let _ = t.send(ClientEvent::Connected);
    });
    let t = tx.clone();
    client.on_disconnected(move |r| {
        let _ = t.send(ClientEvent::Disconnected(r.to_owned()));
    });
    let t = tx.clone();
    client.on_message(move |m| {
        let _ = t.send(ClientEvent::Message(m.clone()));
    });
    let t = tx.clone();
    client.on_error(move |e| {
        let _ = t.send(ClientEvent::Error(e.clone()));
    });
    client.on_password_rotated(move |p| {
        let _ = tx.send(ClientEvent::PasswordRotated(p.to_owned()));
    });
    Events::new(rx)
}

impl Events<ClientEvent> {
    /// [`try_expect`](Self::try_expect) that panics with the events seen.
    #[track_caller]
    pub fn expect(
        &self,
        matcher: impl FnMut(&ClientEvent) -> bool,
        timeout: Duration,
    ) -> ClientEvent {
        self.try_expect(matcher, timeout).unwrap_or_else(|| {
            panic!(
                "no matching client event within {timeout:?}; events so far: {:#?}",
                self.all()
            )
        })
    }

    /// Waits for the next `on_disconnected`; returns its reason.
    #[track_caller]
    pub fn expect_disconnected(&self, timeout: Duration) -> String {
        match self.expect(|e| matches!(e, ClientEvent::Disconnected(_)), timeout) {
            ClientEvent::Disconnected(r) => r,
            _ => unreachable!(),
        }
    }

    /// Waits for the next `on_connected`.
    #[track_caller]
    pub fn expect_connected(&self, timeout: Duration) {
        self.expect(|e| matches!(e, ClientEvent::Connected), timeout);
    }

    /// Waits for the next message; returns its wire object.
    #[track_caller]
    pub fn expect_message(&self, timeout: Duration) -> Value {
        match self.expect(|e| matches!(e, ClientEvent::Message(_)), timeout) {
            ClientEvent::Message(m) => m.to_value().expect("a message serializes"),
            _ => unreachable!(),
        }
    }
}

/// `count` bytes `(start + i) % 256`, as ref-daemon.js makes them.
pub fn counter_bytes(count: usize, start: usize) -> Vec<u8> {
    (0..count).map(|i| ((start + i) % 256) as u8).collect()
}

fn size_arg(payload: &Value, name: &str, default: usize) -> usize {
    payload
        .get(name)
        .and_then(Value::as_u64)
        .map_or(default, |v| v as usize)
}

/// A reader that yields `data` and then fails (a stream that breaks).
struct FailingReader {
    data: std::io::Cursor<Vec<u8>>,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.data.read(buf)? {
            0 => Err(std::io::Error::other("disk on fire")),
            n => Ok(n),
        }
    }
}

/// Registers on our client the reverse-command handlers ref-daemon.js has,
/// with the same results: `echo` (data = payload, nothing without one),
/// `blob` (`payload.size` (16) counter bytes as a body), `chunks` (a stream
/// of `count * size` (3 * 3) counter bytes; our client cuts it into chunks of
/// `min(64 KiB, maxPayload)`), `fail-stream` (`2 * size` bytes, then a read
/// error), `headers` (201, `x-test: 1`, data = payload or
/// `{"created":true}`), `boom` (a handler error), `sleep` (echo after
/// `payload.ms` (1000) ms).
pub fn register_reference_handlers(client: &ClusterDaemonClient) {
    fn echo(payload: Value) -> CommandResult {
        if payload.is_null() {
            CommandResult::empty()
        } else {
            CommandResult::data(payload)
        }
    }
    client.register_handler_fn("echo", |p, _| Ok(echo(p)));
    client.register_handler_fn("blob", |p, _| {
        Ok(CommandResult::body(counter_bytes(
            size_arg(&p, "size", 16),
            0,
        )))
    });
    client.register_handler_fn("chunks", |p, _| {
        let n = size_arg(&p, "count", 3) * size_arg(&p, "size", 3);
        Ok(CommandResult::stream(std::io::Cursor::new(counter_bytes(
            n, 0,
        ))))
    });
    client.register_handler_fn("fail-stream", |p, _| {
        let n = 2 * size_arg(&p, "size", 3);
        Ok(CommandResult::stream(FailingReader {
            data: std::io::Cursor::new(counter_bytes(n, 0)),
        }))
    });
    client.register_handler_fn("headers", |p, _| {
        let data = if p.is_null() {
            json!({ "created": true })
        } else {
            p
        };
        Ok(CommandResult::data(data)
            .with_status(201)
            .with_header("x-test", "1"))
    });
    client.register_handler_fn("boom", |_, _| -> Result<CommandResult, HandlerError> {
        Err("boom: handler failed".into())
    });
    client.register_handler_fn("sleep", |p, _| {
        thread::sleep(Duration::from_millis(size_arg(&p, "ms", 1000) as u64));
        Ok(echo(p))
    });
}

/// Connects `client` (blocking, bounded by its connect timeout) and panics
/// with the error when it fails.
#[track_caller]
pub fn connect(client: &ClusterDaemonClient) {
    if let Err(e) = client.connect() {
        panic!("connect() failed: {e:?}");
    }
    assert!(
        client.is_ready(),
        "connect() returned but the client is not ready"
    );
}
