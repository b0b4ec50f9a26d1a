//! The real socket.io-client 4.8.4 (`ref-daemon.js`) against our mock
//! server (in process, `volt-testkit`'s `MockServer`): registration,
//! commands and replies, reverse commands with data / body / stream,
//! messages both ways, ping/pong with a short interval, kick, transport
//! loss, ping timeout, and rejected registrations.

use std::time::Duration;

use serde_json::{json, Value};
use volt_interop::{counter_bytes, RefDaemon, WAIT};
use volt_testkit::{wait_until, Faults, MockServer, RejectRegistration, Responder, ServerEvent};

const CLUSTER: &str = "c1";
const PASSWORD: &str = "pw-1";

fn mock() -> MockServer {
    volt_interop::watch_background_panics();
    MockServer::builder().cluster(CLUSTER, PASSWORD).start()
}

/// ref-daemon.js against `server`, registered.
fn real_daemon(server: &MockServer) -> RefDaemon {
    let d = RefDaemon::spawn(&server.url(), CLUSTER, PASSWORD, Some("1.4.2"));
    d.expect_event("connected", WAIT);
    d
}

fn no_unexpected_panics(server: &MockServer) {
    volt_interop::assert_no_background_panics();
    assert_eq!(server.stats().protocol_errors, 0, "{:?}", server.events());
}

#[test]
fn real_client_registers_and_the_mock_sees_its_auth() {
    let server = mock();
    let daemon = real_daemon(&server);
    let connected = daemon.events()[0].clone();
    match server
        .expect_event(|e| matches!(e, ServerEvent::Registered { .. }), WAIT)
        .expect("registered")
    {
        ServerEvent::Registered {
            cluster,
            sid,
            installed_version,
            client,
            ..
        } => {
            assert_eq!(cluster, CLUSTER);
            assert_eq!(installed_version.as_deref(), Some("1.4.2"));
            assert_eq!(client.as_deref(), Some("ref-daemon/0.1.0"));
            assert_eq!(
                connected["sid"], sid,
                "the namespace sid reached the client"
            );
        }
        _ => unreachable!(),
    }
    let daemons = server.daemons();
    assert_eq!(daemons.len(), 1);
    assert_eq!(daemons[0].team_cluster_id, CLUSTER);
    no_unexpected_panics(&server);
}

#[test]
fn real_client_commands_get_their_replies_ok_rejected_and_timed_out() {
    let server = mock();
    let daemon = real_daemon(&server);

    let payload = json!({"a": 1, "b": [1, 2, {"c": null}], "s": "é \"q\" \\ \n"});
    let r = daemon.command("echo", Some(payload.clone()));
    assert_eq!(r["response"]["ok"], true, "{r}");
    assert_eq!(r["response"]["data"], payload);
    assert_eq!(r["response"]["requestId"], r["requestId"]);

    let r = daemon.command("echo", None);
    assert_eq!(r["response"]["ok"], true, "{r}");
    assert!(r["response"].get("data").is_none(), "{r}");

    server.set_responder("get-volume", Responder::err("NOT_FOUND", "no such volume"));
    let r = daemon.command("get-volume", Some(json!({"volume": "v1"})));
    assert_eq!(r["response"]["ok"], false, "{r}");
    assert_eq!(
        r["response"]["error"],
        json!({"code": "NOT_FOUND", "message": "no such volume"})
    );

    server.set_responder("void", Responder::NoReply);
    daemon.send(&json!({"op": "command", "id": "t", "command": "void", "timeoutMs": 300}));
    let r = daemon.expect(|e| e["event"] == "reply" && e["id"] == "t", WAIT);
    assert_eq!(r["error"]["code"], "COMMAND_TIMEOUT", "{r}");

    // A heartbeat from the real client is counted, with its payload.
    let r = daemon.command("runtime.heartbeat", Some(json!({"load": 0.5})));
    assert_eq!(r["response"]["ok"], true, "{r}");
    server
        .wait_for_heartbeats(CLUSTER, 1, WAIT)
        .expect("a heartbeat");
    assert_eq!(
        server.daemons()[0].last_heartbeat,
        Some(json!({"load": 0.5}))
    );

    let received = server.received_commands(CLUSTER);
    assert!(received
        .iter()
        .any(|c| c["command"] == "echo" && c.get("payload").is_none()));
    no_unexpected_panics(&server);
}

#[test]
fn real_client_answers_reverse_commands_with_data_body_and_stream() {
    let server = mock();
    let daemon = real_daemon(&server);

    let r = server
        .try_dispatch(CLUSTER, "echo", json!({"dir": "/var/log"}))
        .expect("echo");
    assert_eq!(
        (r.status, r.data.clone()),
        (200, Some(json!({"dir": "/var/log"})))
    );
    assert_eq!(r.command, "echo");
    daemon.expect_event("reverse-command", WAIT);

    let r = server
        .try_dispatch(CLUSTER, "headers", Value::Null)
        .expect("headers");
    assert_eq!(r.status, 201);
    assert_eq!(r.headers.get("x-test"), Some(&json!("1")));
    assert_eq!(r.data, Some(json!({"created": true})));

    let r = server
        .try_dispatch(CLUSTER, "blob", json!({"size": 3000}))
        .expect("blob");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, Some(counter_bytes(3000, 0)), "the attachment bytes");
    assert_eq!(r.data, None);

    let r = server
        .try_dispatch(CLUSTER, "chunks", json!({"count": 20, "size": 100}))
        .expect("chunks");
    assert_eq!(r.status, 200);
    assert_eq!(r.chunks, Some(20));
    assert_eq!(r.stream_chunks.len(), 20);
    assert!(r.stream_chunks.iter().all(|c| c.len() == 100));
    assert_eq!(r.stream, Some(counter_bytes(2000, 0)));
    assert_eq!(r.error, None);

    let r = server
        .try_dispatch(CLUSTER, "fail-stream", Value::Null)
        .expect("fail-stream");
    assert_eq!(r.chunks, Some(2));
    assert_eq!(
        r.error.as_ref().map(|e| e.code.as_str()),
        Some("HANDLER_ERROR")
    );

    let r = server
        .try_dispatch(CLUSTER, "no-such-handler", Value::Null)
        .expect("404");
    assert_eq!(r.status, 404);
    assert_eq!(
        r.error.as_ref().map(|e| e.code.as_str()),
        Some("UNKNOWN_COMMAND")
    );

    let r = server
        .try_dispatch(CLUSTER, "boom", Value::Null)
        .expect("500");
    assert_eq!(r.status, 500);
    assert_eq!(
        r.error.as_ref().map(|e| e.code.as_str()),
        Some("HANDLER_ERROR")
    );
    no_unexpected_panics(&server);
}

#[test]
fn messages_flow_both_ways_with_the_real_client() {
    let server = mock();
    let daemon = real_daemon(&server);

    let known = json!({"type": "session-input", "sessionId": "s1", "chunkBase64": "aGk=", "extraField": 42});
    server.send_message(CLUSTER, &known).expect("sent");
    assert_eq!(daemon.expect_event("message", WAIT)["message"], known);
    let unknown = json!({"type": "brand-new-type", "x": [1]});
    server.send_message(CLUSTER, &unknown).expect("sent");
    assert_eq!(daemon.expect_event("message", WAIT)["message"], unknown);

    let to_server = [
        json!({"type": "tunnel-state", "tunnelId": "t1", "state": "open"}),
        json!({"type": "future-daemon-type", "y": {"z": 1}}),
    ];
    for m in &to_server {
        daemon.emit(m);
    }
    for m in &to_server {
        match server
            .expect_event(|e| matches!(e, ServerEvent::Message { .. }), WAIT)
            .expect("a message")
        {
            ServerEvent::Message { message, .. } => assert_eq!(&message, m),
            _ => unreachable!(),
        }
    }
    assert_eq!(server.received_messages(CLUSTER), to_server.to_vec());
    no_unexpected_panics(&server);
}

#[test]
fn ping_pong_with_a_short_interval_holds_over_many_intervals() {
    volt_interop::watch_background_panics();
    let server = MockServer::builder()
        .cluster(CLUSTER, PASSWORD)
        .ping_interval(Duration::from_millis(100))
        .ping_timeout(Duration::from_millis(500))
        .start();
    let daemon = real_daemon(&server);
    let pongs = || {
        server
            .frames(CLUSTER)
            .iter()
            .filter(|f| f.frame == volt_testkit::RawFrame::Text("3".into()))
            .count()
    };
    // 20 pongs: 20 ping intervals, about 2 s.
    assert!(
        wait_until(Duration::from_secs(10), || pongs() >= 20),
        "only {} pongs",
        pongs()
    );
    assert!(
        !server
            .events()
            .iter()
            .any(|e| matches!(e, ServerEvent::Disconnected { .. })),
        "{:?}",
        server.events()
    );
    assert!(
        !daemon.events().iter().any(|e| e["event"] == "disconnected"),
        "{:?}",
        daemon.events()
    );
    let r = daemon.command("echo", Some(json!("still here")));
    assert_eq!(r["response"]["data"], "still here");
    no_unexpected_panics(&server);
}

#[test]
fn a_frozen_mock_makes_the_real_client_time_out_its_pings() {
    volt_interop::watch_background_panics();
    let server = MockServer::builder()
        .cluster(CLUSTER, PASSWORD)
        .ping_interval(Duration::from_millis(200))
        .ping_timeout(Duration::from_millis(300))
        .start();
    let daemon = real_daemon(&server);
    server.set_faults(Faults {
        stop_pings: true,
        ..Faults::default()
    });
    assert_eq!(
        daemon.expect_event("disconnected", WAIT)["reason"],
        "ping timeout"
    );
    no_unexpected_panics(&server);
}

#[test]
fn kick_disconnects_the_real_client_with_io_server_disconnect() {
    let server = mock();
    let daemon = real_daemon(&server);
    assert_eq!(server.kick(CLUSTER), Ok(1));
    assert_eq!(
        daemon.expect_event("disconnected", WAIT)["reason"],
        "io server disconnect"
    );
    // socket.io-client closes the connection itself.
    server
        .expect_event(|e| matches!(e, ServerEvent::Disconnected { .. }), WAIT)
        .expect("the connection ends");
    assert_eq!(server.stats().connections, 0);
    assert_eq!(server.stats().connections_total, 1);
    no_unexpected_panics(&server);
}

#[test]
fn transport_drop_makes_the_real_client_see_transport_close() {
    let server = mock();
    let daemon = real_daemon(&server);
    assert_eq!(server.drop_transport(CLUSTER), Ok(1));
    assert_eq!(
        daemon.expect_event("disconnected", WAIT)["reason"],
        "transport close"
    );
    no_unexpected_panics(&server);
}

#[test]
fn wrong_password_gets_connect_error_with_invalid_credentials() {
    let server = mock();
    let daemon = RefDaemon::spawn(&server.url(), CLUSTER, "wrong-password", None);
    let e = daemon.expect_event("connect_error", WAIT);
    assert_eq!(e["message"], "invalid credentials", "{e}");
    assert_eq!(e["data"]["code"], "INVALID_CREDENTIALS", "{e}");
    assert!(server.daemons().is_empty());
    // An unknown cluster too.
    let daemon = RefDaemon::spawn(&server.url(), "no-such-cluster", PASSWORD, None);
    let e = daemon.expect_event("connect_error", WAIT);
    assert_eq!(e["data"]["code"], "INVALID_CREDENTIALS", "{e}");
    no_unexpected_panics(&server);
}

#[test]
fn rejection_without_a_code_gets_connect_error_without_data() {
    let server = mock();
    server.set_faults(Faults {
        reject_registration: Some(RejectRegistration {
            code: None,
            message: Some("maintenance".into()),
        }),
        ..Faults::default()
    });
    let daemon = RefDaemon::spawn(&server.url(), CLUSTER, PASSWORD, None);
    let e = daemon.expect_event("connect_error", WAIT);
    assert_eq!(e["message"], "maintenance", "{e}");
    assert!(e.get("data").is_none(), "no data: {e}");
    no_unexpected_panics(&server);
}
