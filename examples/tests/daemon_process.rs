//! `examples/daemon.rs` as a process against the standalone mock server
//! binary: it fails over from a dead URL, enrolls and saves the rotated
//! password, logs stats, serves a reverse command, and on SIGTERM reports
//! its drain and exits 0.
//!
//! The test builds the example and the mock server binary itself (with the
//! `cargo` that runs it), unless `VOLT_DAEMON_EXAMPLE_BIN` or
//! `VOLT_MOCK_SERVER_BIN` names them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

/// `target/<profile>`, where this test, the examples and the workspace's
/// binaries are built.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// A binary of this workspace, built now by cargo (a `cargo test` that
/// names only this test, or only builds examples in test mode as
/// `--all-targets` does, would otherwise leave it missing or stale), or
/// the one `env_var` names.
fn binary(env_var: &str, relative: &str, build: &[&str]) -> PathBuf {
    if let Some(path) = std::env::var_os(env_var) {
        return PathBuf::from(path);
    }
    let dir = profile_dir();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.arg("build").arg("--quiet").args(build);
    if dir.ends_with("release") {
        command.arg("--release");
    }
    let status = command.status().expect("cargo runs");
    assert!(status.success(), "`cargo build {}` failed", build.join(" "));
    dir.join(relative)
}

/// A child whose stdout lines arrive on a channel; killed when dropped.
struct Process {
    child: Child,
    lines: Receiver<String>,
}

impl Process {
    fn start(command: &mut Command) -> Process {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Process { child, lines }
    }

    /// The next line starting with `prefix` (others are skipped), with the
    /// prefix cut off; fails at the deadline.
    fn expect_line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.trim().to_owned();
                    }
                }
                Err(e) => panic!("no line starting with {prefix:?} within {WAIT:?} ({e})"),
            }
        }
    }

    /// Waits for the exit, within the deadline.
    fn wait_exit(mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "still running after {WAIT:?}");
            std::thread::yield_now();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POSTs `body` to the mock server's admin API; the response body.
fn admin_post(addr: &str, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("admin API");
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).expect("admin response");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

/// The standalone mock server (enrollment rotates the password); its URL.
fn start_mock_server() -> (Process, String) {
    let mock = binary(
        "VOLT_MOCK_SERVER_BIN",
        "volt-mock-server",
        &["-p", "volt-mock-server", "--bin", "volt-mock-server"],
    );
    let server = Process::start(Command::new(mock).args([
        "--listen",
        "127.0.0.1:0",
        "--cluster",
        "c1:initial",
        "--enrollment-token",
        "tok",
        "--rotate-password",
        "rotated-pw",
    ]));
    let url = server.expect_line("listening ");
    (server, url)
}

/// The example, told to try a dead URL first and then `url`.
fn start_daemon(url: &str, password_file: &std::path::Path) -> Process {
    let daemon = binary(
        "VOLT_DAEMON_EXAMPLE_BIN",
        "examples/daemon",
        &["-p", "volt-examples", "--example", "daemon"],
    );
    // A port nothing listens on comes first: the daemon moves on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    Process::start(
        Command::new(daemon)
            .env("VOLT_URL", &dead_url)
            .env("VOLT_FALLBACK_URLS", url)
            .env("VOLT_SERVER_URL", url)
            .env("VOLT_CLUSTER", "c1")
            .env("VOLT_PASSWORD", "initial")
            .env("VOLT_ENROLLMENT_TOKEN", "tok")
            .env("VOLT_PASSWORD_FILE", password_file)
            .env("VOLT_STATS_EVERY_MS", "100"),
    )
}

/// A reverse command served, then a stats line that shows it.
fn check_serving(daemon: &Process, addr: &str) {
    let reply = admin_post(
        addr,
        "/admin/daemons/c1/commands",
        r#"{"command":"daemon.info"}"#,
    );
    let reply: Value = serde_json::from_str(&reply).expect("a JSON reply");
    assert_eq!(reply["status"], 200, "{reply}");
    assert_eq!(reply["data"]["served"], 1, "{reply}");
    let stats: Value = loop {
        let line: Value = serde_json::from_str(&daemon.expect_line("stats ")).unwrap();
        if line["reverse_commands"]["status_2xx"] == 1 {
            break line;
        }
    };
    assert!(stats["uptime_ms"].is_u64(), "{stats}");
    assert!(stats["bytes_in"].as_u64().unwrap() > 0, "{stats}");
}

#[test]
fn the_daemon_fails_over_serves_logs_stats_and_on_sigterm_drains_a_slow_handler_and_exits_0() {
    let (_server, url) = start_mock_server();
    let addr = url.trim_start_matches("http://").to_owned();
    let dir = std::env::temp_dir().join(format!("volt-daemon-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let password_file = dir.join("password");
    let _ = std::fs::remove_file(&password_file);
    let daemon = start_daemon(&url, &password_file);
    assert_eq!(daemon.expect_line("connected "), url);
    let saved = std::fs::read_to_string(&password_file).unwrap();
    assert_eq!(saved, "rotated-pw");
    check_serving(&daemon, &addr);

    // A slow handler is running when SIGTERM arrives: the drain lets it
    // finish, and the server gets its reply.
    let slow = std::thread::spawn(move || {
        let body = r#"{"command":"daemon.sleep","payload":{"ms":300}}"#;
        admin_post(&addr, "/admin/daemons/c1/commands", body)
    });
    assert_eq!(daemon.expect_line("sleeping "), "300 ms");
    let pid = daemon.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    assert_eq!(daemon.expect_line("signal "), "SIGTERM");
    let report: Value = serde_json::from_str(&daemon.expect_line("drained ")).unwrap();
    assert_eq!(report["clean"], true, "{report}");
    assert_eq!(report["handlers_finished"], 1, "{report}");
    assert_eq!(report["handlers_cut_off"], 0, "{report}");
    assert_eq!(report["reverse_commands_answered"], 2, "{report}");
    let slow: Value = serde_json::from_str(&slow.join().unwrap()).unwrap();
    assert_eq!(slow["status"], 200, "{slow}");
    assert_eq!(slow["data"]["slept_ms"], 300, "{slow}");
    daemon.expect_line("exit 0");
    assert_eq!(daemon.wait_exit().code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}
