//! The reference daemon (`node ref-daemon.js`, the real socket.io-client).

use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use crate::node::NodeChild;
use crate::*;

/// `node ref-daemon.js`: the real socket.io-client speaking the VOLT
/// contract, driven by JSON lines (see interop/README.md). Killed on drop.
pub struct RefDaemon {
    process: NodeChild,
    events: Events<Value>,
    next_id: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for RefDaemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefDaemon")
            .field("process", &self.process.name)
            .finish()
    }
}

impl RefDaemon {
    /// Starts it against the server at `url` (it connects at once).
    pub fn spawn(
        url: &str,
        cluster: &str,
        password: &str,
        installed_version: Option<&str>,
    ) -> RefDaemon {
        let mut args: Vec<String> = ["--url", url, "--cluster", cluster, "--password", password]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        if let Some(v) = installed_version {
            args.extend(["--installed-version".to_owned(), v.to_owned()]);
        }
        let process = NodeChild::spawn("ref-daemon.js", &args);
        let (tx, rx) = crossbeam_channel::unbounded();
        let lines = process.lines.clone();
        thread::Builder::new()
            .name(format!("events {}", process.name))
            .spawn(move || {
                for line in lines.iter() {
                    let v = serde_json::from_str(&line)
                        .unwrap_or_else(|_| json!({ "event": "non-json-line", "line": line }));
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            })
            .expect("spawn an event parser");
        RefDaemon {
            process,
            events: Events::new(rx),
            next_id: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// Writes one op (`{"op":"command",...}`, ...) to its stdin.
    pub fn send(&self, op: &Value) {
        self.process.write_line(&op.to_string());
    }

    /// Waits up to `timeout` for the next event past the cursor that
    /// `matcher` accepts; panics (with the events seen and the stderr) when
    /// none comes.
    #[track_caller]
    pub fn expect(&self, matcher: impl FnMut(&Value) -> bool, timeout: Duration) -> Value {
        self.events.try_expect(matcher, timeout).unwrap_or_else(|| {
            panic!(
                "{}: no matching event within {timeout:?}; events so far:\n{}\nstderr:\n{}",
                self.process.name,
                self.events
                    .all()
                    .iter()
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
                self.process.stderr()
            )
        })
    }

    /// Waits for the next event named `name` (`connected`, `disconnected`, ...).
    #[track_caller]
    pub fn expect_event(&self, name: &str, timeout: Duration) -> Value {
        self.expect(|e| e["event"] == name, timeout)
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Value> {
        self.events.all()
    }

    /// Sends a command (`None`: no payload) and waits for its `reply` event.
    #[track_caller]
    pub fn command(&self, command: &str, payload: Option<Value>) -> Value {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut op = json!({ "op": "command", "id": id, "command": command });
        if let Some(p) = payload {
            op["payload"] = p;
        }
        self.send(&op);
        self.expect(|e| e["event"] == "reply" && e["id"] == id, WAIT * 2)
    }

    /// Emits a `message` and waits until ref-daemon says it went out.
    #[track_caller]
    pub fn emit(&self, message: &Value) {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.send(&json!({ "op": "message", "id": id, "message": message }));
        self.expect(|e| e["event"] == "sent" && e["id"] == id, WAIT);
    }
}
