//! Issue 7, bad input: every malformed thing a server can send the daemon.
//! Each is reported to `on_error` (PROTOCOL_ERROR, or ENROLLMENT_FAILED for
//! enrollment), the client stays up or reconnects where the contract says so
//! (oversize frames, invalid UTF-8), and nothing panics anywhere.

mod reliability_support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use reliability_support::{record, scripted_session, Ev, Recorder};
use serde_json::json;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::Message;
use volt_daemon_client::{
    ClusterDaemonClient, ClusterDaemonClientOptions, CommandResult, DaemonClientError,
    DaemonClientErrorCode as Code, DaemonCredentials, EnrollmentOptions,
};
use volt_testkit::{
    client_options, fail_on_unexpected_panics, unexpected_panics, Direction, MockServer, RawFrame,
    ServerEvent, DEFAULT_CLUSTER, DEFAULT_PASSWORD,
};

const LONG: Duration = Duration::from_secs(10);

struct Setup {
    server: MockServer,
    client: ClusterDaemonClient,
    events: Recorder,
}

fn setup(tweak: impl FnOnce(&mut ClusterDaemonClientOptions)) -> Setup {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let mut options = client_options(&server, DEFAULT_CLUSTER, DEFAULT_PASSWORD);
    tweak(&mut options);
    let client = ClusterDaemonClient::new(options).unwrap();
    client.register_handler_fn("echo", |p, _| Ok(CommandResult::data(p)));
    let events = record(&client);
    client.connect().unwrap();
    events.wait(LONG, Ev::is_connected);
    Setup {
        server,
        client,
        events,
    }
}

impl Setup {
    /// Both directions still work on the same connection.
    fn assert_still_serving(&self) {
        assert!(self.client.is_ready());
        assert_eq!(
            self.client
                .send_command("echo", Some(json!("still here")))
                .unwrap(),
            Some(json!("still here"))
        );
        let r = self
            .server
            .dispatch(DEFAULT_CLUSTER, "echo", json!({"ok": 1}));
        assert_eq!((r.status, r.data), (200, Some(json!({"ok": 1}))));
    }

    /// Sends each frame group; each must be reported as PROTOCOL_ERROR and
    /// leave the connection up.
    fn expect_protocol_errors(&self, cases: &[Vec<RawFrame>]) {
        for frames in cases {
            for f in frames {
                self.server.send_raw(DEFAULT_CLUSTER, f.clone()).unwrap();
            }
            let (_, e) = self.events.wait(LONG, |e| e.is_error(Code::ProtocolError));
            eprintln!("{frames:?} -> {e:?}");
            self.assert_still_serving();
        }
        assert_eq!(
            self.events.count(Ev::is_disconnected),
            0,
            "{:?}",
            self.events.all()
        );
        assert_eq!(self.server.stats().connections_total, 1);
        self.client.disconnect();
        assert_eq!(unexpected_panics(), 0);
    }
}

fn text(s: &str) -> Vec<RawFrame> {
    vec![RawFrame::Text(s.into())]
}

fn texts(list: &[&str]) -> Vec<Vec<RawFrame>> {
    list.iter().map(|s| text(s)).collect()
}

#[test]
fn malformed_engine_io_packets_are_protocol_errors_and_the_client_stays_up() {
    setup(|_| {}).expect_protocol_errors(&texts(&[
        "",
        "x",
        "9",
        "7probe",
        "0",
        "0{not json",
        r#"0{"sid":"again","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#,
        "4",
    ]));
}

#[test]
fn malformed_socket_io_packets_are_protocol_errors_and_the_client_stays_up() {
    setup(|_| {}).expect_protocol_errors(&texts(&[
        "4x",
        "47/daemon,[]",
        "42/daemon",
        "42/daemon,[",
        "42/daemon,{}",
        "42/daemon,[]",
        "42/daemon,[1]",
        "42/daemon,\"text\"",
        "42/daemon,12x[\"message\",{}]",
        "43/daemon,[]",
        "46/daemon,[]",
        "40/daemon,{\"sid\":\"again\"}",
        "44/daemon,{\"message\":\"late\"}",
        "42/other,[\"message\",{\"type\":\"x\"}]",
        "42/daemon,[\"message\",{\"type\":\"x\"}] trailing",
    ]));
}

#[test]
fn envelopes_of_the_wrong_shape_are_protocol_errors_and_the_client_stays_up() {
    setup(|_| {}).expect_protocol_errors(&texts(&[
        // command-response: needs an object with a string requestId and a boolean ok.
        r#"42/daemon,["command-response"]"#,
        r#"42/daemon,["command-response",{}]"#,
        r#"42/daemon,["command-response",[]]"#,
        r#"42/daemon,["command-response",{"requestId":1,"ok":true}]"#,
        r#"42/daemon,["command-response",{"requestId":"r","ok":"yes"}]"#,
        // reverse-command: needs string requestId and command (no reply).
        r#"42/daemon,["reverse-command",{"command":"echo"}]"#,
        r#"42/daemon,["reverse-command",{"requestId":"r1"}]"#,
        r#"42/daemon,["reverse-command",{"requestId":7,"command":"echo"}]"#,
        r#"42/daemon,["reverse-command",5]"#,
        // message: needs an object with a string type.
        r#"42/daemon,["message",{"no":"type"}]"#,
        r#"42/daemon,["message",{"type":5}]"#,
        r#"42/daemon,["message","session-close"]"#,
        // Events only daemons send.
        r#"42/daemon,["command",{"requestId":"r","command":"x"}]"#,
        r#"42/daemon,["reverse-response",{"requestId":"r","command":"x","status":200}]"#,
        r#"42/daemon,["reverse-stream-end",{"requestId":"r","chunks":0}]"#,
    ]));
}

#[test]
fn unknown_event_name_is_a_protocol_error_and_the_client_stays_up() {
    setup(|_| {}).expect_protocol_errors(&texts(&[
        r#"42/daemon,["no-such-event",{}]"#,
        r#"42/daemon,["",{}]"#,
    ]));
}

#[test]
fn bad_binary_packets_are_protocol_errors_and_the_client_stays_up() {
    let placeholder =
        |num: i64| format!(r#"["message",{{"type":"x","b":{{"_placeholder":true,"num":{num}}}}}]"#);
    let bin = |b: &[u8]| RawFrame::Binary(b.to_vec());
    setup(|_| {}).expect_protocol_errors(&[
        // A binary frame with no header waiting for it.
        vec![bin(&[1, 2, 3])],
        // A header promising 3 attachments, 1 attachment, then text.
        vec![
            RawFrame::Text(format!("453-/daemon,{}", placeholder(0))),
            bin(&[1]),
            RawFrame::Text(r#"42/daemon,["message",{"type":"x"}]"#.into()),
        ],
        // Attachment counts out of range.
        text(&format!(
            "4599999999999999999999-/daemon,{}",
            placeholder(0)
        )),
        text(&format!("45100000-/daemon,{}", placeholder(0))),
        text(&format!("45-1-/daemon,{}", placeholder(0))),
        text(&format!("45x-/daemon,{}", placeholder(0))),
        // Placeholders out of range.
        vec![
            RawFrame::Text(format!("451-/daemon,{}", placeholder(5))),
            bin(&[9]),
        ],
        vec![
            RawFrame::Text(format!("451-/daemon,{}", placeholder(-1))),
            bin(&[9]),
        ],
        vec![RawFrame::Text(format!("450-/daemon,{}", placeholder(0)))],
    ]);
}

#[test]
fn reverse_command_flood_with_duplicate_request_ids_gets_one_reply_per_id() {
    let s = setup(|_| {});
    const COPIES: usize = 200;
    for _ in 0..COPIES {
        s.server
            .send_raw_text(
                DEFAULT_CLUSTER,
                r#"42/daemon,["reverse-command",{"requestId":"dup-1","command":"echo","payload":1}]"#,
            )
            .unwrap();
    }
    // Each copy after the first is refused as a protocol error.
    for _ in 1..COPIES {
        s.events.wait(LONG, |e| e.is_error(Code::ProtocolError));
    }
    s.assert_still_serving();
    let replies = s
        .server
        .frames(DEFAULT_CLUSTER)
        .into_iter()
        .filter(|f| {
            f.dir == Direction::In
                && matches!(&f.frame, RawFrame::Text(t) if t.contains("reverse-response") && t.contains("dup-1"))
        })
        .count();
    assert_eq!(replies, 1, "exactly one reverse-response per requestId");
    assert_eq!(s.events.count(Ev::is_disconnected), 0);
    s.client.disconnect();
    assert_eq!(unexpected_panics(), 0);
}

#[test]
fn frames_over_max_incoming_frame_bytes_close_and_reconnect() {
    let s = setup(|o| o.socket.max_incoming_frame_bytes = 4096);
    let big_text = format!(
        r#"42/daemon,["message",{{"type":"x","pad":"{}"}}]"#,
        "a".repeat(10_000)
    );
    for frame in [
        RawFrame::Text(big_text),
        RawFrame::Binary(vec![0u8; 10_000]),
    ] {
        let conns = s.server.stats().connections_total;
        s.server.send_raw(DEFAULT_CLUSTER, frame).unwrap();
        s.events.wait(LONG, |e| e.is_error(Code::ProtocolError));
        s.events
            .wait(LONG, |e| e.is_disconnected_with("protocol error"));
        s.events.wait(LONG, Ev::is_connected);
        assert_eq!(s.server.stats().connections_total, conns + 1);
        s.assert_still_serving();
    }
    s.client.disconnect();
    assert_eq!(unexpected_panics(), 0);
}

#[test]
fn invalid_utf8_in_a_text_frame_closes_and_reconnects() {
    fail_on_unexpected_panics();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut options = ClusterDaemonClientOptions::new(
        &url,
        &url,
        DaemonCredentials::new(DEFAULT_CLUSTER, DEFAULT_PASSWORD),
    );
    options.socket.reconnect_base_delay = Duration::from_millis(20);
    options.socket.reconnect_max_delay = Duration::from_millis(200);
    options.socket.rng_seed = Some(volt_testkit::TEST_RNG_SEED);
    let client = ClusterDaemonClient::new(options).unwrap();
    let events = record(&client);
    let server = std::thread::spawn(move || {
        let mut ws = scripted_session(&listener, 25_000);
        ws.send(Message::Frame(Frame::message(
            vec![b'4', b'2', 0xff, 0xfe, 0xfd],
            OpCode::Data(Data::Text),
            true,
        )))
        .unwrap();
        // The client closes this connection and registers again.
        let second = scripted_session(&listener, 25_000);
        (ws, second)
    });
    client.connect().unwrap();
    events.wait(LONG, |e| e.is_error(Code::ProtocolError));
    events.wait(LONG, |e| e.is_disconnected_with("protocol error"));
    events.wait(LONG, Ev::is_connected);
    assert!(client.is_ready());
    let _sessions = server.join().unwrap();
    client.disconnect();
    assert_eq!(unexpected_panics(), 0);
}

/// An HTTP server for one enrollment request: answers `response`, or never
/// answers when it is `None` (the connection is held open until the test ends).
fn http_responder(response: Option<String>) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let h = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        read_request(&mut conn);
        match response {
            Some(r) => {
                let _ = conn.write_all(r.as_bytes());
            }
            None => {
                // Hold the connection until the client gives up on it.
                let mut rest = Vec::new();
                conn.set_read_timeout(Some(LONG)).unwrap();
                let _ = conn.read_to_end(&mut rest);
            }
        }
    });
    (url, h)
}

fn read_request(conn: &mut TcpStream) {
    conn.set_read_timeout(Some(LONG)).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = conn.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return;
            }
        }
    }
}

fn http(status: &str, content_type: &str, body: &str) -> Option<String> {
    Some(format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ))
}

/// Connects with enrollment at a responder; returns connect()'s error and
/// how long it took. The control socket (a mock server) must stay unopened.
fn enroll_against(response: Option<String>, timeout: Duration) -> (DaemonClientError, Duration) {
    fail_on_unexpected_panics();
    let (url, responder) = http_responder(response);
    let server = MockServer::start();
    let mut options = ClusterDaemonClientOptions::new(
        &url,
        server.url(),
        DaemonCredentials::new(DEFAULT_CLUSTER, DEFAULT_PASSWORD).with_enrollment_token("tok-1"),
    );
    let mut e = EnrollmentOptions::new("/api/team-clusters/cluster-test/healthcheck");
    e.timeout = timeout;
    options.enrollment = Some(e);
    let client = ClusterDaemonClient::new(options).unwrap();
    let t = Instant::now();
    let err = client.connect().unwrap_err();
    let took = t.elapsed();
    assert!(!client.is_ready());
    assert_eq!(
        server.stats().connections_total,
        0,
        "the socket never opened"
    );
    client.disconnect();
    drop(client);
    responder.join().unwrap();
    assert_eq!(unexpected_panics(), 0);
    assert_eq!(err.code(), Code::EnrollmentFailed, "{err}");
    (err, took)
}

#[test]
fn enrollment_answered_with_html_fails_with_enrollment_failed() {
    let (err, _) = enroll_against(
        http("200 OK", "text/html", "<html><body>Welcome</body></html>"),
        LONG,
    );
    assert_eq!(err.status(), Some(200));
}

#[test]
fn enrollment_answered_with_invalid_json_fails_with_enrollment_failed() {
    let (err, _) = enroll_against(
        http("200 OK", "application/json", "{\"daemonPassword\":"),
        LONG,
    );
    assert_eq!(err.status(), Some(200));
    let (err, _) = enroll_against(http("200 OK", "application/json", "[1,2]"), LONG);
    assert_eq!(err.status(), Some(200));
}

#[test]
fn enrollment_answered_with_500_fails_with_enrollment_failed_and_the_server_message() {
    let (err, _) = enroll_against(
        http(
            "500 Internal Server Error",
            "application/json",
            r#"{"message":"database down","code":"INTERNAL"}"#,
        ),
        LONG,
    );
    assert_eq!(err.status(), Some(500));
    assert_eq!(err.server_message(), Some("database down"));
    let (err, _) = enroll_against(
        http("500 Internal Server Error", "text/html", "<h1>oops</h1>"),
        LONG,
    );
    assert_eq!(err.status(), Some(500));
}

#[test]
fn enrollment_that_hangs_past_its_timeout_fails_with_enrollment_failed() {
    let timeout = Duration::from_millis(700);
    let (err, took) = enroll_against(None, timeout);
    assert!(took >= timeout - Duration::from_millis(50), "{took:?}");
    assert!(took < timeout + Duration::from_secs(2), "{took:?}");
    assert_eq!(err.status(), None);
}

#[test]
fn mock_server_sees_no_protocol_error_from_the_client_during_bad_input() {
    // The client answers bad input without sending anything malformed back.
    let s = setup(|_| {});
    s.server
        .send_raw_text(DEFAULT_CLUSTER, r#"42/daemon,["no-such-event",{}]"#)
        .unwrap();
    s.events.wait(LONG, |e| e.is_error(Code::ProtocolError));
    s.assert_still_serving();
    assert!(!s
        .server
        .events()
        .iter()
        .any(|e| matches!(e, ServerEvent::ProtocolError { .. })));
    s.client.disconnect();
}
