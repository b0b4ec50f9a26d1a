//! Harness for the interoperability tests: our client and our mock server
//! against the real socket.io 4.8.4 packages, through the Node scripts in
//! this folder.
//!
//! - [`RefServer`]: `node ref-server.js` (the real socket.io server) on an
//!   ephemeral port, driven through its HTTP admin API ([`Admin`], the same
//!   API as our mock server's).
//! - [`RefDaemon`]: `node ref-daemon.js` (the real socket.io-client), driven
//!   by JSON lines on its stdin, its stdout events read by a thread into a
//!   channel and waited on with [`RefDaemon::expect`].
//! - [`client_options`], [`ClientEvents`], [`register_reference_handlers`]:
//!   our client set up like `ref-daemon.js`.
//! - [`transcript`]: frame transcripts, masking and the flows of the
//!   frame-level check.
//!
//! Every child process is killed and reaped on drop, and keeps its stdin
//! open while it lives (the Node scripts exit when it closes, so a test
//! process that dies never leaks them). The pinned Node packages are
//! installed with `npm ci` when `node_modules` is missing or older than the
//! lockfile, once per process and under a file lock. A missing `node` or
//! `npm` is a test failure (a panic), never a skip.
#![cfg(unix)]

pub mod transcript;

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use parking_lot::Mutex;
use serde_json::{json, Value};
use volt_daemon_client::{
    ClusterDaemonClient, ClusterDaemonClientOptions, CommandResult, DaemonClientError,
    DaemonCredentials, HandlerError, TeamClusterDaemonMessage,
};

/// How long any wait for something that must happen may take.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long a Node script may take to start (cold caches, a loaded machine).
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `npm ci` may take (or another process's install may be waited for).
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);

/// `interop/` (this crate's folder, which is also the Node project).
pub fn interop_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------
// Node and the pinned packages

static NODE_READY: OnceLock<()> = OnceLock::new();

/// Makes sure `node` and `npm` exist and `interop/node_modules` matches the
/// lockfile (running `npm ci` when it is missing or older than
/// `package-lock.json`). Once per process; parallel processes serialise the
/// install on `interop/.npm-install.lock`. Panics (fails the test) when a
/// tool is missing or the install fails.
pub fn ensure_node_deps() {
    NODE_READY.get_or_init(|| {
        let version = tool_version("node");
        let major: u32 = version
            .trim()
            .trim_start_matches('v')
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        assert!(
            major >= 18,
            "the interop tests need Node 18+ (20 recommended); `node --version` says {version:?}"
        );
        tool_version("npm");
        if !node_modules_up_to_date() {
            let _lock = InstallLock::acquire(&interop_dir().join(".npm-install.lock"));
            // Another process may have installed while we waited.
            if !node_modules_up_to_date() {
                npm_ci();
            }
        }
        assert!(
            interop_dir()
                .join("node_modules/socket.io/package.json")
                .is_file()
                && interop_dir()
                    .join("node_modules/socket.io-client/package.json")
                    .is_file(),
            "interop/node_modules has no socket.io / socket.io-client after npm ci"
        );
    });
}

fn tool_version(tool: &str) -> String {
    match Command::new(tool).arg("--version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        Ok(out) => panic!(
            "`{tool} --version` failed ({}): {}. The interop tests need Node 20+ and npm; \
             a missing tool fails them, it never skips them.",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!(
            "`{tool}` is required by the interop tests but cannot be run ({e}). Install \
             Node.js 20+ with npm (they must be on PATH); a missing tool fails these \
             tests, it never skips them."
        ),
    }
}

fn mtime(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// `node_modules/.package-lock.json` (written by every npm install) exists
/// and is not older than `package-lock.json`.
fn node_modules_up_to_date() -> bool {
    let lock = interop_dir().join("package-lock.json");
    let stamp = interop_dir().join("node_modules/.package-lock.json");
    match (mtime(&lock), mtime(&stamp)) {
        (Some(lock), Some(stamp)) => stamp >= lock,
        (None, _) => panic!("interop/package-lock.json is missing"),
        _ => false,
    }
}

fn npm_ci() {
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(interop_dir())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `npm ci` in interop/: {e}"));
    assert!(
        out.status.success(),
        "`npm ci` in interop/ failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An exclusive lock file (created with `create_new`, holding our pid),
/// removed on drop. A lock whose process is gone is stale and taken over.
struct InstallLock(PathBuf);

impl InstallLock {
    fn acquire(path: &Path) -> InstallLock {
        let deadline = Instant::now() + INSTALL_TIMEOUT;
        loop {
            match OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut f) => {
                    let _ = writeln!(f, "{}", std::process::id());
                    return InstallLock(path.to_owned());
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = fs::read_to_string(path)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok());
                    if let Some(pid) = holder {
                        if !Path::new(&format!("/proc/{pid}")).exists() {
                            let _ = fs::remove_file(path); // stale: its holder died
                            continue;
                        }
                    }
                    assert!(
                        Instant::now() < deadline,
                        "waited {INSTALL_TIMEOUT:?} for the npm install lock {} (held by pid {holder:?})",
                        path.display()
                    );
                    // Retry pacing while another process runs `npm ci`.
                    thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("cannot create the lock file {}: {e}", path.display()),
            }
        }
    }
}

impl Drop for InstallLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

// ---------------------------------------------------------------------------
// Child processes

/// A Node script with piped stdio: stdout lines arrive on a channel (read by
/// a thread), stderr is kept for failure messages, stdin stays open until
/// drop. Dropping it kills and reaps the process.
struct NodeChild {
    name: String,
    child: Child,
    stdin: Mutex<Option<ChildStdin>>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

/// Most stderr kept per child (the tail).
const STDERR_KEEP: usize = 64 * 1024;

impl NodeChild {
    fn spawn(script: &str, args: &[String]) -> NodeChild {
        ensure_node_deps();
        let mut child = Command::new("node")
            .arg(script)
            .args(args)
            .current_dir(interop_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `node {script}`: {e}"));
        let name = format!("{script}[{}]", child.id());
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr_pipe = child.stderr.take().expect("piped stderr");
        let (tx, lines) = crossbeam_channel::unbounded();
        thread::Builder::new()
            .name(format!("stdout {name}"))
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
            .expect("spawn a stdout reader");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        thread::Builder::new()
            .name(format!("stderr {name}"))
            .spawn(move || {
                let mut pipe = stderr_pipe;
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut s = sink.lock();
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if s.len() > STDERR_KEEP {
                        let mut cut = s.len() - STDERR_KEEP;
                        while !s.is_char_boundary(cut) {
                            cut += 1;
                        }
                        s.drain(..cut);
                    }
                }
            })
            .expect("spawn a stderr reader");
        let stdin = child.stdin.take();
        NodeChild {
            name,
            child,
            stdin: Mutex::new(stdin),
            lines,
            stderr,
        }
    }

    fn write_line(&self, line: &str) {
        let mut stdin = self.stdin.lock();
        let pipe = stdin
            .as_mut()
            .unwrap_or_else(|| panic!("{}: stdin is closed", self.name));
        pipe.write_all(line.as_bytes())
            .and_then(|()| pipe.write_all(b"\n"))
            .and_then(|()| pipe.flush())
            .unwrap_or_else(|e| {
                panic!(
                    "{}: cannot write to stdin ({e}); stderr:\n{}",
                    self.name,
                    self.stderr()
                )
            });
    }

    fn stderr(&self) -> String {
        self.stderr.lock().clone()
    }
}

impl Drop for NodeChild {
    fn drop(&mut self) {
        self.stdin.lock().take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// The reference server and its admin API

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

// ---------------------------------------------------------------------------
// Events with a cursor

/// Events arriving on a channel, kept in order; [`expect`](Self::expect)
/// waits for the first one past the cursor that matches and moves the
/// cursor past it, so successive calls see successive events.
pub struct Events<T> {
    rx: Receiver<T>,
    state: Mutex<(Vec<T>, usize)>,
}

impl<T: Clone + std::fmt::Debug> Events<T> {
    fn new(rx: Receiver<T>) -> Self {
        Events {
            rx,
            state: Mutex::new((Vec::new(), 0)),
        }
    }

    /// Waits up to `timeout` for a matching event; `None` when none came.
    pub fn try_expect(&self, mut matcher: impl FnMut(&T) -> bool, timeout: Duration) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock();
        let mut scan = state.1;
        loop {
            let (seen, cursor) = &mut *state;
            while scan < seen.len() {
                if matcher(&seen[scan]) {
                    *cursor = scan + 1;
                    return Some(seen[scan].clone());
                }
                scan += 1;
            }
            // What is already queued first, then block for the next one.
            if let Ok(e) = self.rx.try_recv() {
                seen.push(e);
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            match self.rx.recv_timeout(deadline - now) {
                Ok(e) => seen.push(e),
                // Timed out, or the source is gone: nothing more will come.
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Every event received so far (the cursor is left alone).
    pub fn all(&self) -> Vec<T> {
        let mut state = self.state.lock();
        while let Ok(e) = self.rx.try_recv() {
            state.0.push(e);
        }
        state.0.clone()
    }
}

// ---------------------------------------------------------------------------
// The reference daemon

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

// ---------------------------------------------------------------------------
// Our client, set up like ref-daemon.js

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

/// The processes whose command line mentions `needle` (Linux `/proc`), for
/// leak checks.
pub fn processes_matching(needle: &str) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = fs::read(e.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        cmdline.contains(needle).then_some(pid)
    })
    .collect()
}

// ---------------------------------------------------------------------------
// Panics on background threads

static BACKGROUND_PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Counts panics on the client's and the mock server's own threads (named
/// `volt-…`), except those whose message contains `expected panic`: the
/// client catches handler panics on purpose, so a panic there would
/// otherwise go unnoticed. Unlike the testkit's process-wide counter, a
/// failing assertion on another test's thread does not count, so one
/// failing test does not fail the others. Idempotent.
pub fn watch_background_panics() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let background = thread::current()
                .name()
                .is_some_and(|n| n.starts_with("volt-"));
            if background && !message.contains("expected panic") {
                BACKGROUND_PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            default(info);
        }));
    });
}

/// Fails when [`watch_background_panics`] has seen a panic.
#[track_caller]
pub fn assert_no_background_panics() {
    assert_eq!(
        BACKGROUND_PANICS.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a client or mock server thread panicked (see the output above)"
    );
}
