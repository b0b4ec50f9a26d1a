//! The standalone binary: its first stdout line, the demo cluster, SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Reads the first stdout line, `listening http://ADDR:PORT`.
fn banner(child: &mut std::process::Child) -> std::net::SocketAddr {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim_end()
        .strip_prefix("listening http://")
        .unwrap_or_else(|| panic!("first line: {line:?}"))
        .parse()
        .unwrap()
}

#[test]
fn cli_prints_the_url_serves_the_demo_cluster_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_volt-mock-server"))
        .args(["--listen", "127.0.0.1:0", "--ping-interval-ms", "5000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = banner(&mut child);
    let (mut c, h) = Client::open(addr);
    assert_eq!(h["pingInterval"], 5000);
    assert!(c
        .register("demo-cluster", "demo-password")
        .starts_with("40/daemon,"));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20)); // polling a child process, not synchronising
    }
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("demo-cluster"), "{err}");
}

#[test]
fn cli_rejects_bad_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_volt-mock-server"))
        .args(["--bogus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[test]
fn cli_documents_and_accepts_the_recording_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_volt-mock-server"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in ["--no-history", "--record-frames", "--history-limit"] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_volt-mock-server"))
        .args([
            "--no-history",
            "--history-limit",
            "10",
            "--cluster",
            "c1:pw1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = banner(&mut child);
    let mut c = Client::registered(addr, "c1", "pw1");
    c.send(r#"42/daemon,["command",{"requestId":"r1","command":"echo","payload":{"x":1}}]"#);
    assert_eq!(
        c.recv_text(),
        r#"42/daemon,["command-response",{"requestId":"r1","ok":true,"data":{"x":1}}]"#
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A running binary, killed (and reaped) when the test ends, pass or fail.
struct Running {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary, reads the banner.
fn start(args: &[&str], env: &[(&str, &str)]) -> Running {
    let mut child = binary(args, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = banner(&mut child);
    Running { child, addr }
}

/// The binary with `args` and `env`, and no VOLT_MOCK_* inherited from the
/// test's own environment.
fn binary(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_volt-mock-server"));
    for (key, _) in std::env::vars() {
        if key.starts_with("VOLT_MOCK_") {
            cmd.env_remove(key);
        }
    }
    cmd.args(args).envs(env.iter().copied());
    cmd
}

fn run_to_end(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    binary(args, env).output().unwrap()
}

#[test]
fn cli_prints_its_version() {
    let out = run_to_end(&["--version"], &[]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim_end(),
        format!("volt-mock-server {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn cli_help_lists_every_flag_with_its_env_var_and_hides_secret_values() {
    let out = run_to_end(
        &["--help"],
        &[
            ("VOLT_MOCK_ADMIN_TOKEN", "s3cret-admin"),
            ("VOLT_MOCK_CLUSTER", "c1:s3cret-pw"),
        ],
    );
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for (flag, var) in [
        ("--listen", "VOLT_MOCK_LISTEN"),
        ("--cluster", "VOLT_MOCK_CLUSTER"),
        ("--enrollment-token", "VOLT_MOCK_ENROLLMENT_TOKEN"),
        ("--rotate-password", "VOLT_MOCK_ROTATE_PASSWORD"),
        ("--ping-interval-ms", "VOLT_MOCK_PING_INTERVAL_MS"),
        ("--ping-timeout-ms", "VOLT_MOCK_PING_TIMEOUT_MS"),
        ("--max-payload", "VOLT_MOCK_MAX_PAYLOAD"),
        ("--tls-cert", "VOLT_MOCK_TLS_CERT"),
        ("--tls-key", "VOLT_MOCK_TLS_KEY"),
        ("--tls-client-ca", "VOLT_MOCK_TLS_CLIENT_CA"),
        ("--admin-token", "VOLT_MOCK_ADMIN_TOKEN"),
        (
            "--max-connections-per-ip",
            "VOLT_MOCK_MAX_CONNECTIONS_PER_IP",
        ),
        ("--history-limit", "VOLT_MOCK_HISTORY_LIMIT"),
        ("--record-frames", "VOLT_MOCK_RECORD_FRAMES"),
        ("--no-history", "VOLT_MOCK_NO_HISTORY"),
        ("--config", "VOLT_MOCK_CONFIG"),
    ] {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{flag} ")))
            .unwrap_or_else(|| panic!("{flag} missing from --help:\n{help}"));
        assert!(line.contains(var), "{var} missing from {line:?}");
    }
    assert!(
        !help.contains("s3cret"),
        "a secret leaked into --help:\n{help}"
    );
}

#[test]
fn cli_reads_clusters_and_settings_from_the_environment() {
    let server = start(
        &[],
        &[
            ("VOLT_MOCK_CLUSTER", "env-a:pw-a,env-b:pw-b"),
            ("VOLT_MOCK_PING_INTERVAL_MS", "4321"),
            ("VOLT_MOCK_ADMIN_TOKEN", "tok"),
        ],
    );
    let (mut a, handshake) = Client::open(server.addr);
    assert_eq!(handshake["pingInterval"], 4321);
    assert!(a.register("env-a", "pw-a").starts_with("40/daemon,"));
    let _b = Client::registered(server.addr, "env-b", "pw-b");
    let (status, _) = admin(server.addr, "GET", "/admin/daemons", "");
    assert_eq!(status, 401, "VOLT_MOCK_ADMIN_TOKEN guards the admin API");
}

#[test]
fn cli_treats_an_empty_environment_variable_as_unset() {
    let server = start(
        &[],
        &[
            ("VOLT_MOCK_LISTEN", ""),
            ("VOLT_MOCK_CLUSTER", ""),
            ("VOLT_MOCK_ADMIN_TOKEN", ""),
            ("VOLT_MOCK_PING_INTERVAL_MS", ""),
        ],
    );
    let (mut c, handshake) = Client::open(server.addr);
    assert_eq!(handshake["pingInterval"], 25000);
    assert!(c
        .register("demo-cluster", "demo-password")
        .starts_with("40/daemon,"));
    let (status, _) = admin(server.addr, "GET", "/admin/daemons", "");
    assert_eq!(status, 200, "an empty admin token must not guard the API");
}

#[test]
fn cli_flag_wins_over_its_environment_variable() {
    let server = start(
        &["--cluster", "flag-c:pw:with:colons,and,commas"],
        &[("VOLT_MOCK_CLUSTER", "env-c:pw")],
    );
    let (mut c, _) = Client::open(server.addr);
    assert!(c
        .register("flag-c", "pw:with:colons,and,commas")
        .starts_with("40/daemon,"));
    let (mut e, _) = Client::open(server.addr);
    assert!(e.register("env-c", "pw").starts_with("44/daemon,"));
}

/// Arguments, environment, and what stderr must say.
type UsageCase<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn cli_bad_usage_exits_2_with_a_clear_message_and_no_secret() {
    let cases: &[UsageCase] = &[
        (&["--bogus"], &[], "unexpected argument '--bogus'"),
        (&["--ping-interval-ms", "x"], &[], "--ping-interval-ms"),
        (&["--ping-interval-ms", "0"], &[], "--ping-interval-ms"),
        (&["--listen", "nowhere"], &[], "--listen"),
        (&["--cluster", "no-colon-s3cret"], &[], "ID:PASSWORD"),
        (&[], &[("VOLT_MOCK_CLUSTER", ":s3cret")], "ID:PASSWORD"),
        (&["--tls-cert", "/nonexistent"], &[], "--tls-key"),
        (&["--tls-client-ca", "/nonexistent"], &[], "--tls-cert"),
        (
            &[],
            &[("VOLT_MOCK_TLS_CLIENT_CA", "/nonexistent")],
            "--tls-cert",
        ),
        (&[], &[("VOLT_MOCK_NO_HISTORY", "maybe")], "--no-history"),
        (
            &["--config", "/nonexistent/scenario.json"],
            &[],
            "cannot read",
        ),
    ];
    for (args, env, expected) in cases {
        let out = run_to_end(args, env);
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(err.contains(expected), "{args:?} {env:?}: {err}");
        assert!(!err.contains("s3cret"), "{args:?}: a secret leaked: {err}");
    }
}

fn scenario_file(name: &str, json: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("{name}-{}.json", std::process::id()));
    std::fs::write(&path, json).unwrap();
    path
}

#[test]
fn cli_config_file_preloads_clusters_responders_faults_and_enrollment() {
    let path = scenario_file(
        "scenario",
        r#"{
          "clusters": [{"teamClusterId": "cfg-c", "daemonPassword": "cfg-pw"}],
          "enrollment": {"tokens": ["t1"], "rotateTo": "rotated", "failStatus": 503},
          "responders": {"status": {"ok": true, "data": {"up": true}}},
          "faults": {"dropOnCommand": "crash"}
        }"#,
    );
    let server = start(
        &["--config", path.to_str().unwrap(), "--cluster", "flag-c:pw"],
        &[],
    );
    let mut c = Client::registered(server.addr, "cfg-c", "cfg-pw");
    c.send(r#"42/daemon,["command",{"requestId":"r1","command":"status"}]"#);
    assert_eq!(
        c.recv_text(),
        r#"42/daemon,["command-response",{"requestId":"r1","ok":true,"data":{"up":true}}]"#
    );
    let _flag = Client::registered(server.addr, "flag-c", "pw");
    let (_, faults) = admin(server.addr, "GET", "/admin/faults", "");
    assert_eq!(faults["dropOnCommand"], "crash");
    let (_, enrollment) = admin(server.addr, "GET", "/admin/enrollment", "");
    assert_eq!(enrollment["tokens"], serde_json::json!(["t1"]));
    assert_eq!(enrollment["rotateTo"], "rotated");
    assert_eq!(enrollment["failStatus"], 503);
}

#[test]
fn cli_config_file_is_also_read_from_the_environment() {
    let path = scenario_file(
        "env-scenario",
        r#"{"clusters": [{"teamClusterId": "e", "daemonPassword": "p"}]}"#,
    );
    let server = start(&[], &[("VOLT_MOCK_CONFIG", path.to_str().unwrap())]);
    let _c = Client::registered(server.addr, "e", "p");
}

#[test]
fn cli_rejects_a_bad_config_file_with_exit_2_naming_the_problem() {
    for (name, json, expected) in [
        (
            "unknown-key",
            r#"{"clusterz": []}"#,
            "unknown field `clusterz`",
        ),
        ("not-json", "{", "--config"),
        (
            "bad-responder",
            r#"{"responders": {"x": {"ok": "yes"}}}"#,
            "responder \"x\"",
        ),
        ("bad-fault", r#"{"faults": {"stopPings": 3}}"#, "--config"),
        (
            "no-password",
            r#"{"clusters": [{"teamClusterId": "a"}]}"#,
            "daemonPassword",
        ),
        (
            "empty-id",
            r#"{"clusters": [{"teamClusterId": "", "daemonPassword": "x"}]}"#,
            "teamClusterId",
        ),
    ] {
        let path = scenario_file(name, json);
        let out = run_to_end(&["--config", path.to_str().unwrap()], &[]);
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(out.stdout.is_empty(), "{name}");
        assert!(err.contains(expected), "{name}: {err}");
    }
}
