//! Our client against the real socket.io 4.8.4 server (`ref-server.js`),
//! every section of the contract (`volt-protocol.md`): enrollment,
//! registration, heartbeats, commands, reverse commands, messages, kick,
//! transport loss, ping timeout and a short ping interval held for seconds.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use volt_daemon_client::{
    ClusterDaemonClient, ClusterDaemonClientOptions, CommandResult, DaemonClientErrorCode,
    DaemonCredentials, EnrollmentOptions, TeamClusterDaemonMessage,
};
use volt_interop::{
    client_options, connect, counter_bytes, record_events, register_reference_handlers,
    ClientEvent, ClientEvents, RefServer, WAIT,
};

const CLUSTER: &str = "c1";
const PASSWORD: &str = "pw-1";
/// How long we watch for something that must NOT happen (a reconnection):
/// longer than the test clients' largest reconnection delay (200 ms).
const QUIET: Duration = Duration::from_millis(600);

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("valid base64")
}

/// A real socket.io server serving `CLUSTER`, with `flags` on top.
fn server(flags: &[&str]) -> RefServer {
    volt_interop::watch_background_panics();
    let cluster = format!("{CLUSTER}:{PASSWORD}");
    let mut all = vec!["--cluster", cluster.as_str()];
    all.extend_from_slice(flags);
    RefServer::start(&all)
}

/// Our client for `server` (options tweaked), with the reference handlers
/// and its callbacks recorded; not connected.
fn client_with(
    server: &RefServer,
    tweak: impl FnOnce(&mut ClusterDaemonClientOptions),
) -> (ClusterDaemonClient, ClientEvents) {
    let mut o = client_options(server.url(), CLUSTER, PASSWORD);
    tweak(&mut o);
    let client = ClusterDaemonClient::new(o).expect("valid options");
    register_reference_handlers(&client);
    let events = record_events(&client);
    (client, events)
}

/// Our client, connected to `server`.
fn connected(server: &RefServer) -> (ClusterDaemonClient, ClientEvents) {
    let (client, events) = client_with(server, |_| {});
    connect(&client);
    events.expect_connected(WAIT);
    (client, events)
}

fn no_unexpected_panics() {
    volt_interop::assert_no_background_panics();
}

// ---------------------------------------------------------------------------
// §1 Enrollment

#[test]
fn enrollment_rotates_the_password_and_every_registration_uses_the_rotated_one() {
    let server = server(&[
        "--enrollment-token",
        "one-time-token",
        "--rotate-password",
        "rotated-pw",
    ]);
    let (client, events) = client_with(&server, |o| {
        o.credentials = DaemonCredentials::new(CLUSTER, PASSWORD)
            .with_enrollment_token("one-time-token")
            .with_installed_version("1.4.2");
        o.enrollment = Some(EnrollmentOptions::new(format!(
            "/api/team-clusters/{CLUSTER}/healthcheck"
        )));
    });
    connect(&client);
    assert_eq!(client.daemon_password(), "rotated-pw");
    assert!(matches!(
        events.expect(|e| matches!(e, ClientEvent::PasswordRotated(_)), WAIT),
        ClientEvent::PasswordRotated(p) if p == "rotated-pw"
    ));

    let enrollment = server.admin().enrollment();
    let requests = enrollment["requests"].as_array().expect("requests");
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r["authorization"], "Bearer one-time-token");
    assert!(r["contentType"]
        .as_str()
        .unwrap_or_default()
        .starts_with("application/json"));
    assert_eq!(r["accept"], "application/json");
    assert_eq!(
        r["body"],
        json!({"teamClusterId": CLUSTER, "enrollmentToken": "one-time-token",
               "installedVersion": "1.4.2", "daemonPassword": PASSWORD})
    );
    assert_eq!(enrollment["tokens"], json!([]), "the token is consumed");

    // The registration used the rotated password; so does the one after a
    // transport loss, with no second enrollment.
    let daemon = server.admin().wait_registered(CLUSTER);
    assert_eq!(daemon["installedVersion"], "1.4.2");
    server.admin().drop_transport(CLUSTER);
    assert_eq!(events.expect_disconnected(WAIT), "transport close");
    events.expect_connected(WAIT);
    let registrations: Vec<String> = server
        .admin()
        .frames()
        .iter()
        .filter(|f| f["dir"] == "in" && f["data"].as_str().unwrap_or("").starts_with("40"))
        .map(|f| f["data"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(registrations.len(), 2, "{registrations:?}");
    for r in &registrations {
        assert!(r.contains(r#""daemonPassword":"rotated-pw""#), "{r}");
    }
    assert_eq!(
        server.admin().enrollment()["requests"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "a reconnection never enrolls again"
    );
    no_unexpected_panics();
}

// ---------------------------------------------------------------------------
// §3 Registration

#[test]
fn registration_is_accepted_and_the_server_sees_the_client_name_and_version() {
    let server = server(&[]);
    let (client, _events) = client_with(&server, |o| {
        o.credentials = DaemonCredentials::new(CLUSTER, PASSWORD).with_installed_version("2.0.1");
    });
    connect(&client);
    let daemon = server.admin().wait_registered(CLUSTER);
    assert_eq!(daemon["installedVersion"], "2.0.1");
    assert_eq!(
        daemon["client"],
        format!("volt-daemon-client/{}", env!("CARGO_PKG_VERSION"))
    );
    // installedVersion is null (not absent) when not configured.
    let (other, _e) = client_with(&server, |_| {});
    connect(&other);
    let frames = server.admin().frames();
    let last_40 = frames
        .iter()
        .rev()
        .find(|f| f["dir"] == "in" && f["data"].as_str().unwrap_or("").starts_with("40"))
        .expect("a registration frame");
    assert!(
        last_40["data"]
            .as_str()
            .unwrap_or_default()
            .contains(r#""installedVersion":null"#),
        "{last_40}"
    );
    no_unexpected_panics();
}

#[test]
fn registration_rejected_with_data_fails_connect_with_the_server_code_and_no_retry() {
    let server = server(&[]);
    let (client, events) = client_with(&server, |o| {
        o.credentials = DaemonCredentials::new(CLUSTER, "wrong-password");
    });
    let err = client.connect().expect_err("a wrong password is rejected");
    assert_eq!(err.code(), DaemonClientErrorCode::SocketRegistrationFailed);
    assert_eq!(err.server_code(), Some("INVALID_CREDENTIALS"));
    assert_eq!(err.server_message(), Some("invalid credentials"));
    assert!(!client.is_ready());
    // No retry of a rejected registration.
    assert_eq!(
        events.try_expect(|e| matches!(e, ClientEvent::Connected), QUIET),
        None
    );
    assert_eq!(server.admin().stats()["connectionsTotal"], 1);
    assert!(server.admin().daemons().is_empty());
    no_unexpected_panics();
}

#[test]
fn registration_rejected_without_data_fails_connect_without_a_server_code() {
    let server = server(&[]);
    server
        .admin()
        .set_faults(&json!({"rejectRegistration": {"message": "maintenance"}}));
    let (client, _events) = client_with(&server, |_| {});
    let err = client.connect().expect_err("rejected");
    assert_eq!(err.code(), DaemonClientErrorCode::SocketRegistrationFailed);
    assert_eq!(err.server_code(), None);
    assert_eq!(err.server_message(), Some("maintenance"));
    let frames = server.admin().frames();
    assert!(
        frames
            .iter()
            .any(|f| f["data"] == r#"44/daemon,{"message":"maintenance"}"#),
        "the real server sent a 44 without data: {frames:?}"
    );

    // And with a custom code.
    server.admin().set_faults(
        &json!({"rejectRegistration": {"code": "CLUSTER_DISABLED", "message": "disabled"}}),
    );
    let (client, _events) = client_with(&server, |_| {});
    let err = client.connect().expect_err("rejected");
    assert_eq!(err.server_code(), Some("CLUSTER_DISABLED"));
    assert_eq!(err.server_message(), Some("disabled"));
    no_unexpected_panics();
}

// ---------------------------------------------------------------------------
// §4 Heartbeats and commands

#[test]
fn heartbeats_carry_the_payload_and_the_server_counts_them() {
    let server = server(&[]);
    let (client, _events) = client_with(&server, |o| {
        o.heartbeat.interval = Duration::from_millis(100);
        o.heartbeat.jitter = Duration::from_millis(20);
        o.heartbeat = o
            .heartbeat
            .clone()
            .with_payload_factory(|| json!({"containers": 3, "load": 0.25}));
    });
    connect(&client);
    let daemon = server
        .admin()
        .wait_heartbeats(CLUSTER, 3, Duration::from_secs(10));
    assert_eq!(
        daemon["lastHeartbeat"],
        json!({"containers": 3, "load": 0.25})
    );
    assert!(daemon["lastHeartbeatAt"].as_u64().is_some(), "{daemon}");
    let commands = server.admin().commands(CLUSTER);
    let heartbeats: Vec<&Value> = commands
        .iter()
        .filter(|c| c["command"] == "runtime.heartbeat")
        .collect();
    assert!(heartbeats.len() >= 3);
    for h in heartbeats {
        assert_eq!(h["payload"], json!({"containers": 3, "load": 0.25}));
        assert!(
            h["requestId"].as_str().is_some_and(|id| id.len() == 36),
            "{h}"
        );
    }
    no_unexpected_panics();
}

#[test]
fn command_answered_ok_returns_its_data_or_none() {
    let server = server(&[]);
    let (client, _events) = connected(&server);
    let payload = json!({"a": 1, "b": [1, 2, {"c": null}], "s": "é \"q\" \\ \n"});
    assert_eq!(
        client.send_command("echo", Some(payload.clone())).unwrap(),
        Some(payload)
    );
    assert_eq!(client.send_command("echo", None).unwrap(), None);
    server
        .admin()
        .set_responder("stats", &json!({"ok": true, "data": {"cpu": 0.5}}));
    assert_eq!(
        client.send_command("stats", None).unwrap(),
        Some(json!({"cpu": 0.5}))
    );
    // The envelope the server got leaves out an absent payload.
    let commands = server.admin().commands(CLUSTER);
    let no_payload = commands
        .iter()
        .find(|c| c["command"] == "stats")
        .expect("recorded");
    assert!(no_payload.get("payload").is_none(), "{no_payload}");
    no_unexpected_panics();
}

#[test]
fn command_rejected_carries_the_server_code_and_message() {
    let server = server(&[]);
    let (client, _events) = connected(&server);
    server.admin().set_responder(
        "get-volume",
        &json!({"ok": false, "error": {"code": "NOT_FOUND", "message": "no such volume"}}),
    );
    let err = client
        .send_command("get-volume", Some(json!({"volume": "v1"})))
        .unwrap_err();
    assert_eq!(err.code(), DaemonClientErrorCode::CommandRejected);
    assert_eq!(err.server_code(), Some("NOT_FOUND"));
    assert_eq!(err.server_message(), Some("no such volume"));
    // The built-in answer to an unknown command.
    let err = client.send_command("no-such-command", None).unwrap_err();
    assert_eq!(err.server_code(), Some("UNKNOWN_COMMAND"));
    no_unexpected_panics();
}

#[test]
fn command_without_a_reply_times_out_and_the_client_goes_on() {
    let server = server(&[]);
    let (client, _events) = connected(&server);
    server
        .admin()
        .set_responder("void", &json!({"noReply": true}));
    let started = Instant::now();
    let err = client
        .send_command_with_timeout("void", None, Duration::from_millis(300))
        .unwrap_err();
    assert_eq!(err.code(), DaemonClientErrorCode::CommandTimeout);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(client.pending_commands(), 0);
    assert_eq!(
        client.send_command("echo", Some(json!(1))).unwrap(),
        Some(json!(1))
    );
    no_unexpected_panics();
}

#[test]
fn command_in_flight_fails_at_once_when_the_transport_drops() {
    let server = server(&[]);
    let (client, events) = connected(&server);
    server
        .admin()
        .set_responder("void", &json!({"noReply": true}));
    let pending = client
        .start_command_with_timeout("void", None, Duration::from_secs(30))
        .unwrap();
    server.admin().wait_for("the command to arrive", WAIT, |a| {
        a.commands(CLUSTER)
            .iter()
            .any(|c| c["command"] == "void")
            .then_some(())
    });
    let started = Instant::now();
    server.admin().drop_transport(CLUSTER);
    let err = pending.wait().unwrap_err();
    assert_eq!(err.code(), DaemonClientErrorCode::SocketNotReady);
    assert!(started.elapsed() < WAIT, "it did not wait for its timeout");
    assert_eq!(events.expect_disconnected(WAIT), "transport close");
    no_unexpected_panics();
}

// ---------------------------------------------------------------------------
// §5 Reverse commands

#[test]
fn reverse_commands_are_answered_with_data_status_and_headers() {
    let server = server(&[]);
    let (_client, _events) = connected(&server);
    let r = server.admin().dispatch_ok(
        CLUSTER,
        "echo",
        Some(json!({"dir": "/var/log", "n": [1, "two"]})),
    );
    assert_eq!(r["command"], "echo");
    assert_eq!(r["status"], 200);
    assert_eq!(r["headers"], json!({}));
    assert_eq!(r["data"], json!({"dir": "/var/log", "n": [1, "two"]}));
    let r = server.admin().dispatch_ok(CLUSTER, "headers", None);
    assert_eq!(r["status"], 201);
    assert_eq!(r["headers"], json!({"x-test": "1"}));
    assert_eq!(r["data"], json!({"created": true}));
    // No data, body or stream: status and headers only.
    let r = server.admin().dispatch_ok(CLUSTER, "echo", None);
    assert_eq!(r["status"], 200);
    assert!(r.get("data").is_none(), "{r}");
    no_unexpected_panics();
}

#[test]
fn reverse_command_body_reaches_the_server_as_a_real_binary_buffer() {
    let server = server(&[]);
    let (client, _events) = connected(&server);
    let bytes: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let expected = bytes.clone();
    client.register_handler_fn("read-file", move |_, _| {
        Ok(CommandResult::body(bytes.clone())
            .with_header("content-type", "application/octet-stream"))
    });
    let r = server.admin().dispatch_ok(CLUSTER, "read-file", None);
    assert_eq!(r["bodyWasBuffer"], true, "not a Buffer on the server: {r}");
    assert_eq!(b64(r["bodyBase64"].as_str().expect("bodyBase64")), expected);
    assert_eq!(
        r["headers"],
        json!({"content-type": "application/octet-stream"})
    );
    // An empty body is still a Buffer.
    client.register_handler_fn("empty-file", |_, _| Ok(CommandResult::body(Vec::new())));
    let r = server.admin().dispatch_ok(CLUSTER, "empty-file", None);
    assert_eq!(r["bodyWasBuffer"], true, "{r}");
    assert_eq!(r["bodyBase64"], "");
    no_unexpected_panics();
}

#[test]
fn reverse_command_stream_of_twenty_chunks_arrives_as_buffers_in_order() {
    // maxPayload 1000: our client cuts the stream into 1000-byte chunks.
    let server = server(&["--max-payload", "1000"]);
    let (client, _events) = connected(&server);
    let data = counter_bytes(19 * 1000 + 500, 0);
    let expected = data.clone();
    client.register_handler_fn("tail-log", move |_, _| {
        Ok(CommandResult::stream(std::io::Cursor::new(data.clone())))
    });
    let r = server.admin().dispatch_ok(CLUSTER, "tail-log", None);
    assert_eq!(r["status"], 200);
    assert_eq!(r["stream"], true);
    assert_eq!(r["chunks"], 20);
    assert_eq!(r["chunkTypes"], json!(vec!["Buffer"; 20]), "{r}");
    assert_eq!(r["seqs"], json!((0..20).collect::<Vec<u32>>()));
    assert_eq!(
        b64(r["streamBase64"].as_str().expect("streamBase64")),
        expected
    );
    assert!(r.get("error").is_none(), "{r}");
    no_unexpected_panics();
}

#[test]
fn reverse_command_stream_that_breaks_ends_with_a_handler_error() {
    let server = server(&["--max-payload", "1000"]);
    let (_client, events) = connected(&server);
    let r = server
        .admin()
        .dispatch_ok(CLUSTER, "fail-stream", Some(json!({"size": 1000})));
    assert_eq!(r["chunks"], 2);
    assert_eq!(r["chunkTypes"], json!(["Buffer", "Buffer"]));
    assert_eq!(r["error"]["code"], "HANDLER_ERROR", "{r}");
    assert_eq!(
        b64(r["streamBase64"].as_str().unwrap()),
        counter_bytes(2000, 0)
    );
    events.expect(
        |e| matches!(e, ClientEvent::Error(e) if e.code() == DaemonClientErrorCode::HandlerError),
        WAIT,
    );
    no_unexpected_panics();
}

#[test]
fn reverse_command_without_a_handler_gets_404_unknown_command() {
    let server = server(&[]);
    let (_client, _events) = connected(&server);
    let r = server
        .admin()
        .dispatch_ok(CLUSTER, "no-such-handler", Some(json!({"a": 1})));
    assert_eq!(r["status"], 404);
    assert_eq!(r["command"], "no-such-handler");
    assert_eq!(r["error"]["code"], "UNKNOWN_COMMAND");
    assert_eq!(
        r["error"]["message"],
        "no handler for command no-such-handler"
    );
    no_unexpected_panics();
}

#[test]
fn reverse_command_whose_handler_fails_gets_500_handler_error() {
    let server = server(&[]);
    let (client, events) = connected(&server);
    let r = server.admin().dispatch_ok(CLUSTER, "boom", None);
    assert_eq!(r["status"], 500);
    assert_eq!(r["error"]["code"], "HANDLER_ERROR", "{r}");
    events.expect(
        |e| matches!(e, ClientEvent::Error(e) if e.code() == DaemonClientErrorCode::HandlerError),
        WAIT,
    );
    // A panicking handler too.
    client.register_handler_fn("panics", |_, _| panic!("expected panic in a handler"));
    let r = server.admin().dispatch_ok(CLUSTER, "panics", None);
    assert_eq!(r["status"], 500);
    assert_eq!(r["error"]["code"], "HANDLER_ERROR", "{r}");
    no_unexpected_panics();
}

// ---------------------------------------------------------------------------
// §6 Messages

#[test]
fn messages_flow_both_ways_including_unknown_types() {
    let server = server(&[]);
    let (client, events) = connected(&server);

    let known = json!({"type": "session-input", "sessionId": "s1", "chunkBase64": "aGk=", "extraField": 42});
    server.admin().send_message(CLUSTER, &known);
    match events.expect(|e| matches!(e, ClientEvent::Message(_)), WAIT) {
        ClientEvent::Message(TeamClusterDaemonMessage::SessionInput(m)) => {
            assert_eq!(m.session_id, "s1");
            assert_eq!(m.chunk_base64, "aGk=");
            assert_eq!(m.extra["extraField"], 42);
        }
        other => panic!("expected a session-input message, got {other:?}"),
    }
    let unknown = json!({"type": "brand-new-type", "x": [1, {"y": "z"}]});
    server.admin().send_message(CLUSTER, &unknown);
    match events.expect(|e| matches!(e, ClientEvent::Message(_)), WAIT) {
        ClientEvent::Message(TeamClusterDaemonMessage::Other(v)) => assert_eq!(v, unknown),
        other => panic!("expected an Other message, got {other:?}"),
    }

    let to_server = [
        json!({"type": "tunnel-state", "tunnelId": "t1", "state": "open"}),
        json!({"type": "session-data", "sessionId": "s1", "chunkBase64": "aGk="}),
        json!({"type": "future-daemon-type", "y": {"z": 1}}),
    ];
    for m in &to_server {
        client
            .emit(&serde_json::from_value(m.clone()).expect("a message"))
            .expect("emit");
    }
    let got = server.admin().wait_for("3 messages", WAIT, |a| {
        let list = a.messages(CLUSTER);
        (list.len() >= 3).then_some(list)
    });
    assert_eq!(got, to_server.to_vec());
    assert_eq!(server.admin().stats()["protocolErrors"], 0);
    no_unexpected_panics();
}

// ---------------------------------------------------------------------------
// §3 Kick, transport loss, ping timeout

#[test]
fn server_kick_disconnects_the_client_without_reconnection() {
    let server = server(&[]);
    let (client, events) = connected(&server);
    server.admin().kick(CLUSTER);
    assert_eq!(events.expect_disconnected(WAIT), "io server disconnect");
    server.admin().wait_no_connections();
    assert_eq!(
        events.try_expect(|e| matches!(e, ClientEvent::Connected), QUIET),
        None,
        "the client reconnected after a kick"
    );
    assert!(!client.is_ready());
    assert_eq!(server.admin().stats()["connectionsTotal"], 1);
    let err = client.send_command("echo", None).unwrap_err();
    assert_eq!(err.code(), DaemonClientErrorCode::SocketNotReady);
    // The client closed the WebSocket itself after the 41 (no frame from it).
    let frames = server.admin().frames();
    assert_eq!(
        frames.last().map(|f| f["data"].clone()),
        Some(json!("41/daemon,"))
    );
    no_unexpected_panics();
}

#[test]
fn transport_drop_reconnects_re_registers_and_handlers_still_work() {
    let server = server(&[]);
    let (client, events) = connected(&server);
    let first_sid = server.admin().wait_registered(CLUSTER)["sid"].clone();
    server.admin().drop_transport(CLUSTER);
    assert_eq!(events.expect_disconnected(WAIT), "transport close");
    events.expect_connected(WAIT);
    let second = server.admin().wait_registered(CLUSTER);
    assert_ne!(second["sid"], first_sid, "a new registration");
    assert_eq!(server.admin().stats()["connectionsTotal"], 2);
    let r = server
        .admin()
        .dispatch_ok(CLUSTER, "echo", Some(json!({"after": "reconnect"})));
    assert_eq!(r["data"], json!({"after": "reconnect"}));
    let r = server
        .admin()
        .dispatch_ok(CLUSTER, "blob", Some(json!({"size": 4})));
    assert_eq!(r["bodyWasBuffer"], true);
    assert_eq!(
        client.send_command("echo", Some(json!("again"))).unwrap(),
        Some(json!("again"))
    );
    no_unexpected_panics();
}

#[test]
fn a_frozen_server_is_detected_as_ping_timeout_and_the_client_reconnects_after() {
    let server = server(&["--ping-interval-ms", "200", "--ping-timeout-ms", "400"]);
    let (client, events) = connected(&server);
    let frozen_at = Instant::now();
    server.admin().set_faults(&json!({"stopPings": true}));
    assert_eq!(events.expect_disconnected(WAIT), "ping timeout");
    let detected_after = frozen_at.elapsed();
    // The last ping came at most pingInterval before the freeze, so the
    // client gave up between pingTimeout and pingInterval + pingTimeout
    // after it (plus scheduling slack).
    assert!(
        detected_after >= Duration::from_millis(300) && detected_after < Duration::from_secs(3),
        "ping timeout detected after {detected_after:?}"
    );
    server.admin().clear_faults();
    events.expect_connected(Duration::from_secs(10));
    assert_eq!(
        client.send_command("echo", Some(json!(7))).unwrap(),
        Some(json!(7))
    );
    no_unexpected_panics();
}

#[test]
fn a_short_ping_interval_is_held_for_seconds_without_a_drop() {
    let server = server(&["--ping-interval-ms", "200", "--ping-timeout-ms", "1000"]);
    let (client, events) = client_with(&server, |o| {
        o.heartbeat.interval = Duration::from_millis(250);
        o.heartbeat.jitter = Duration::ZERO;
    });
    connect(&client);
    // 12 heartbeats at 250 ms: about 3 s, some 15 ping intervals.
    server
        .admin()
        .wait_heartbeats(CLUSTER, 12, Duration::from_secs(15));
    let disconnects: Vec<ClientEvent> = events
        .all()
        .into_iter()
        .filter(|e| matches!(e, ClientEvent::Disconnected(_)))
        .collect();
    assert!(disconnects.is_empty(), "dropped: {disconnects:?}");
    let connections = server.admin().connections();
    assert_eq!(connections.len(), 1, "{connections:?}");
    assert_eq!(connections[0]["closedAt"], Value::Null, "{connections:?}");
    let frames = server.admin().frames();
    let pings = frames
        .iter()
        .filter(|f| f["dir"] == "out" && f["data"] == "2")
        .count();
    let pongs = frames
        .iter()
        .filter(|f| f["dir"] == "in" && f["data"] == "3")
        .count();
    assert!(pings >= 10, "only {pings} pings in {frames:?}");
    assert!(pongs + 1 >= pings, "{pings} pings, {pongs} pongs");
    assert!(
        !frames.iter().any(|f| f["dir"] == "in" && f["data"] == "2"),
        "the client must never ping"
    );
    assert!(client.is_ready());
    no_unexpected_panics();
}
