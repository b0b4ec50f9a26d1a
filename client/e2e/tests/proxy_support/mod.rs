//! A real HTTP proxy for the tests: `node interop/proxy-server.mjs`, on the
//! npm package `proxy` pinned in `interop/package-lock.json` (installed by
//! `scripts/test` with `npm ci --prefix interop`). A missing `node` or a
//! missing package fails the test loudly; it never skips it.
#![allow(dead_code)] // each test binary uses its own part

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use parking_lot::Mutex;

/// How long the proxy may take to start on a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// `interop/`, where the script and its `node_modules` are.
fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop")
}

/// A running proxy, killed and reaped on drop.
pub struct Proxy {
    child: Child,
    /// Held open: the script exits when its stdin closes.
    _stdin: ChildStdin,
    port: u16,
    lines: Receiver<String>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    /// A proxy on an ephemeral port; with `auth` (`user:password`), it
    /// answers 407 to any other credentials.
    pub fn start(auth: Option<&str>) -> Proxy {
        Proxy::start_on(0, auth)
    }

    /// A proxy on `port` (0: ephemeral), retried until it can bind it.
    pub fn start_on(port: u16, auth: Option<&str>) -> Proxy {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match Proxy::try_start(port, auth) {
                Ok(p) => return p,
                Err(e) if Instant::now() < deadline && port != 0 => {
                    eprintln!("proxy did not start on {port} yet ({e}); again");
                    thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("the test proxy did not start: {e}"),
            }
        }
    }

    fn try_start(port: u16, auth: Option<&str>) -> Result<Proxy, String> {
        let dir = interop_dir();
        assert!(
            dir.join("node_modules/proxy/package.json").is_file(),
            "{}/node_modules/proxy is missing: run `npm ci --prefix interop` (scripts/test \
             does); a missing package fails the proxy tests, it never skips them",
            dir.display()
        );
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("proxy-server.mjs"))
            .args(["--port", &port.to_string()])
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(auth) = auth {
            cmd.args(["--auth", auth]);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "`node` is required by the proxy tests but cannot be run ({e}); a missing \
                 tool fails these tests, it never skips them"
            )
        });
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = crossbeam_channel::unbounded();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = Arc::clone(&seen);
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                seen2.lock().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let mut proxy = Proxy {
            child,
            _stdin: stdin,
            port: 0,
            lines: rx,
            seen,
        };
        let first = proxy
            .next_line(START_TIMEOUT)
            .ok_or("it printed no `listening PORT` line")?;
        proxy.port = first
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("unexpected first line {first:?}"))?;
        Ok(proxy)
    }

    fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// The proxy's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits for a request line (`CONNECT host:port allowed|denied`)
    /// containing `needle`, seen before or within `timeout`.
    pub fn expect(&self, needle: &str, timeout: Duration) -> String {
        if let Some(l) = self.seen.lock().iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let deadline = Instant::now() + timeout;
        while let Some(line) = self.next_line(deadline.saturating_duration_since(Instant::now())) {
            if line.contains(needle) {
                return line;
            }
        }
        panic!(
            "the proxy saw no request with {needle:?} within {timeout:?}; it saw {:?}",
            self.requests()
        )
    }

    /// Every request line so far.
    pub fn requests(&self) -> Vec<String> {
        self.seen
            .lock()
            .iter()
            .filter(|l| !l.starts_with("listening "))
            .cloned()
            .collect()
    }

    /// Kills the proxy at once (every tunnel through it dies with it).
    pub fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}
