//! The reference server (`node ref-server.js`) and its HTTP admin API.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::node::NodeChild;
use crate::*;

/// `node ref-server.js --listen 127.0.0.1:0 [flags]`: the real socket.io
/// server speaking the VOLT contract. Killed on drop.
pub struct RefServer {
    url: String,
    admin: Admin,
    process: NodeChild,
}

impl std::fmt::Debug for RefServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefServer")
            .field("url", &self.url)
            .field("process", &self.process.name)
            .finish()
    }
}

impl RefServer {
    /// Starts it with these extra flags (`--cluster ID:PW`,
    /// `--ping-interval-ms N`, ...; see interop/README.md) and waits for its
    /// `listening http://ADDR:PORT` line.
    pub fn start(flags: &[&str]) -> RefServer {
        let mut args = vec!["--listen".to_owned(), "127.0.0.1:0".to_owned()];
        args.extend(flags.iter().map(|s| (*s).to_owned()));
        let process = NodeChild::spawn("ref-server.js", &args);
        let line = match process.lines.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(e) => panic!(
                "{} printed no `listening` line within {START_TIMEOUT:?} ({e}); stderr:\n{}",
                process.name,
                process.stderr()
            ),
        };
        let url = line
            .strip_prefix("listening ")
            .filter(|u| u.starts_with("http://"))
            .unwrap_or_else(|| {
                panic!(
                    "{}: unexpected first line {line:?}; stderr:\n{}",
                    process.name,
                    process.stderr()
                )
            })
            .to_owned();
        RefServer {
            admin: Admin::new(&url),
            url,
            process,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its admin API.
    pub fn admin(&self) -> &Admin {
        &self.admin
    }

    /// What it wrote to stderr so far (`REF_SERVER_DEBUG=1` makes it talk).
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// The Node process id (to check it is gone after drop).
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }
}

/// An HTTP answer of the admin API.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpReply {
    /// The status.
    pub status: u16,
    /// The JSON body (`Null` when empty, a string when not JSON).
    pub body: Value,
}

impl HttpReply {
    /// The body, after checking the status.
    #[track_caller]
    pub fn expect_status(self, status: u16) -> Value {
        assert_eq!(
            self.status, status,
            "unexpected HTTP status; body: {}",
            self.body
        );
        self.body
    }
}

/// A client of the admin API shared by `ref-server.js` and our mock server
/// (`mock-server/src/http.rs`). Transport errors panic; HTTP error statuses
/// are returned.
#[derive(Debug, Clone)]
pub struct Admin {
    base: String,
    agent: ureq::Agent,
}

impl Admin {
    /// For the server at `base` (`http://127.0.0.1:PORT`).
    pub fn new(base: &str) -> Admin {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Admin {
            base: base.trim_end_matches('/').to_owned(),
            agent,
        }
    }

    /// One request; `body` is sent as JSON.
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> HttpReply {
        let url = format!("{}{path}", self.base);
        let result = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            ("POST", Some(b)) => self.agent.post(&url).send_json(b),
            ("POST", None) => self.agent.post(&url).send_empty(),
            ("PUT", Some(b)) => self.agent.put(&url).send_json(b),
            ("PUT", None) => self.agent.put(&url).send_empty(),
            _ => panic!("unsupported method {method}"),
        };
        let mut response = result.unwrap_or_else(|e| panic!("{method} {url} failed: {e}"));
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_string()
            .unwrap_or_else(|e| panic!("{method} {url}: cannot read the body: {e}"));
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        HttpReply { status, body }
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> HttpReply {
        self.request("GET", path, None)
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> HttpReply {
        self.request("POST", path, Some(body))
    }

    /// `PUT path` with a JSON body.
    pub fn put(&self, path: &str, body: &Value) -> HttpReply {
        self.request("PUT", path, Some(body))
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> HttpReply {
        self.request("DELETE", path, None)
    }

    /// `GET /admin/daemons`: the connected daemons, oldest first.
    pub fn daemons(&self) -> Vec<Value> {
        as_array(self.get("/admin/daemons").expect_status(200))
    }

    /// `POST /admin/daemons/<cluster>/commands` (a reverse command), default
    /// timeout (10 s); `None` leaves `payload` out.
    pub fn dispatch(&self, cluster: &str, command: &str, payload: Option<Value>) -> HttpReply {
        let mut body = json!({ "command": command });
        if let Some(p) = payload {
            body["payload"] = p;
        }
        self.post(&format!("/admin/daemons/{cluster}/commands"), &body)
    }

    /// A reverse command that must succeed (HTTP 200): its result.
    #[track_caller]
    pub fn dispatch_ok(&self, cluster: &str, command: &str, payload: Option<Value>) -> Value {
        self.dispatch(cluster, command, payload).expect_status(200)
    }

    /// `POST /admin/daemons/<cluster>/messages` (202).
    #[track_caller]
    pub fn send_message(&self, cluster: &str, message: &Value) {
        self.post(&format!("/admin/daemons/{cluster}/messages"), message)
            .expect_status(202);
    }

    /// `GET /admin/daemons/<cluster>/messages`.
    pub fn messages(&self, cluster: &str) -> Vec<Value> {
        as_array(
            self.get(&format!("/admin/daemons/{cluster}/messages"))
                .expect_status(200),
        )
    }

    /// `GET /admin/daemons/<cluster>/commands` (heartbeats included).
    pub fn commands(&self, cluster: &str) -> Vec<Value> {
        as_array(
            self.get(&format!("/admin/daemons/{cluster}/commands"))
                .expect_status(200),
        )
    }

    /// `POST /admin/daemons/<cluster>/kick`.
    #[track_caller]
    pub fn kick(&self, cluster: &str) {
        self.post(&format!("/admin/daemons/{cluster}/kick"), &json!({}))
            .expect_status(200);
    }

    /// `POST /admin/daemons/<cluster>/drop`.
    #[track_caller]
    pub fn drop_transport(&self, cluster: &str) {
        self.post(&format!("/admin/daemons/{cluster}/drop"), &json!({}))
            .expect_status(200);
    }

    /// `PUT /admin/responders/<command>`.
    #[track_caller]
    pub fn set_responder(&self, command: &str, responder: &Value) {
        self.put(&format!("/admin/responders/{command}"), responder)
            .expect_status(200);
    }

    /// `PUT /admin/faults` (replaces the whole set).
    #[track_caller]
    pub fn set_faults(&self, faults: &Value) {
        self.put("/admin/faults", faults).expect_status(200);
    }

    /// `DELETE /admin/faults`.
    #[track_caller]
    pub fn clear_faults(&self) {
        self.delete("/admin/faults").expect_status(200);
    }

    /// `GET /admin/frames`.
    pub fn frames(&self) -> Vec<Value> {
        as_array(self.get("/admin/frames").expect_status(200))
    }

    /// `GET /admin/enrollment`.
    pub fn enrollment(&self) -> Value {
        self.get("/admin/enrollment").expect_status(200)
    }

    /// `GET /admin/stats`.
    pub fn stats(&self) -> Value {
        self.get("/admin/stats").expect_status(200)
    }

    /// `GET /admin/connections` (ref-server only): the Engine.IO connection
    /// history with close reasons.
    pub fn connections(&self) -> Vec<Value> {
        as_array(self.get("/admin/connections").expect_status(200))
    }

    /// Polls the admin API (every 20 ms) until `probe` gives a value, up to
    /// `timeout`; panics naming `what` when it never does.
    #[track_caller]
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut(&Admin) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = probe(self) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "waited {timeout:?} for {what}; daemons: {:?}",
                self.get("/admin/daemons").body
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `cluster` is registered; returns its `/admin/daemons` entry.
    #[track_caller]
    pub fn wait_registered(&self, cluster: &str) -> Value {
        self.wait_for(&format!("{cluster} to register"), WAIT, |a| {
            a.daemons()
                .into_iter()
                .find(|d| d["teamClusterId"] == cluster)
        })
    }

    /// Waits until the server has no live WebSocket connection.
    #[track_caller]
    pub fn wait_no_connections(&self) {
        self.wait_for("every connection to close", WAIT, |a| {
            (a.stats()["connections"] == 0).then_some(())
        })
    }

    /// Waits until `cluster` has sent `n` heartbeats on its current
    /// connection; returns its `/admin/daemons` entry.
    #[track_caller]
    pub fn wait_heartbeats(&self, cluster: &str, n: u64, timeout: Duration) -> Value {
        self.wait_for(&format!("{n} heartbeats from {cluster}"), timeout, |a| {
            a.daemons().into_iter().find(|d| {
                d["teamClusterId"] == cluster && d["heartbeats"].as_u64().unwrap_or(0) >= n
            })
        })
    }
}

fn as_array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        other => panic!("expected a JSON array, got {other}"),
    }
}
