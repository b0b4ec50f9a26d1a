//! The standalone binary: its first stdout line, the demo cluster, SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn cli_prints_the_url_serves_the_demo_cluster_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_volt-mock-server"))
        .args(["--listen", "127.0.0.1:0", "--ping-interval-ms", "5000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim_end()
        .strip_prefix("listening http://")
        .unwrap_or_else(|| panic!("first line: {line:?}"));
    let addr: std::net::SocketAddr = addr.parse().unwrap();
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
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: std::net::SocketAddr = line
        .trim_end()
        .strip_prefix("listening http://")
        .unwrap_or_else(|| panic!("first line: {line:?}"))
        .parse()
        .unwrap();
    let mut c = Client::registered(addr, "c1", "pw1");
    c.send(r#"42/daemon,["command",{"requestId":"r1","command":"echo","payload":{"x":1}}]"#);
    assert_eq!(
        c.recv_text(),
        r#"42/daemon,["command-response",{"requestId":"r1","ok":true,"data":{"x":1}}]"#
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
