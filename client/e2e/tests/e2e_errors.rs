//! Every error code of the contract, provoked end to end against the mock server.

mod e2e_support;

use std::time::{Duration, Instant};

use e2e_support::*;
use serde_json::json;
use volt_daemon_client::{
    ClusterDaemonClient, CommandResult, DaemonClientErrorCode as Code, EnrollmentOptions,
    TeamClusterDaemonMessage,
};
use volt_testkit::{
    fail_on_unexpected_panics, Faults, MockServer, RejectRegistration, Responder, ServerEvent,
    DEFAULT_CLUSTER,
};

#[test]
fn enrollment_rejected_by_the_server_fails_connect_with_enrollment_failed_and_opens_no_socket() {
    fail_on_unexpected_panics();
    let server = MockServer::builder().enrollment_token("good-token").start();
    let client = client_with(&server, |o| {
        o.credentials.enrollment_token = Some("wrong-token".into());
        o.enrollment = Some(EnrollmentOptions::new(
            server.enrollment_url(DEFAULT_CLUSTER),
        ));
    });
    let err = client.connect().unwrap_err();
    assert_eq!(err.code(), Code::EnrollmentFailed, "{err}");
    assert_eq!(err.status(), Some(401));
    assert_eq!(err.server_message(), Some("invalid enrollment token"));
    assert!(!client.is_ready());
    assert_eq!(
        server.stats().connections_total,
        0,
        "no socket after a failed enrollment"
    );

    server.set_enrollment_fail_status(Some(503));
    let client = client_with(&server, |o| {
        o.credentials.enrollment_token = Some("good-token".into());
        o.enrollment = Some(EnrollmentOptions::new(
            server.enrollment_url(DEFAULT_CLUSTER),
        ));
    });
    let err = client.connect().unwrap_err();
    assert_eq!(err.code(), Code::EnrollmentFailed);
    assert_eq!(err.status(), Some(503));
    assert_eq!(server.stats().connections_total, 0);
}

#[test]
fn a_refused_websocket_upgrade_fails_the_first_connect_without_retrying() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    server.set_faults(Faults {
        refuse_connections: 1,
        ..Faults::default()
    });
    let client = client_with(&server, |_| {});
    let err = client.connect().unwrap_err();
    assert_eq!(err.code(), Code::SocketConnectionFailed, "{err}");
    assert!(!client.is_ready());
    // No silent retrying in the background: the refusal was the only attempt...
    let refused = |e: &ServerEvent| matches!(e, ServerEvent::ConnectionRefused { .. });
    assert!(server.expect_event_from(0, refused, WAIT).is_ok());
    let mark = server.mark();
    assert!(server
        .expect_event_from(mark, |e| matches!(e, ServerEvent::Connected { .. }), QUIET)
        .is_err());
    assert_eq!(count_events(&server, refused), 1);
    // ...and an explicit connect() afterwards works.
    connect(&client);
    assert!(client.is_ready());
    disconnect(&client);
}

#[test]
fn nothing_listening_fails_connect_with_socket_connection_failed() {
    fail_on_unexpected_panics();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let mut o = volt_daemon_client::ClusterDaemonClientOptions::new(
        url.clone(),
        url,
        volt_daemon_client::DaemonCredentials::new("c", "p"),
    );
    o.socket.connect_timeout = Duration::from_secs(2);
    let client = ClusterDaemonClient::new(o).unwrap();
    let err = bounded("connect()", WAIT, move || client.connect()).unwrap_err();
    assert_eq!(err.code(), Code::SocketConnectionFailed, "{err}");
}

#[test]
fn a_rejected_registration_carries_the_servers_code_and_message() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    server.set_faults(Faults {
        reject_registration: Some(RejectRegistration {
            code: Some("CLUSTER_SUSPENDED".into()),
            message: Some("cluster suspended".into()),
        }),
        ..Faults::default()
    });
    let client = client_with(&server, |_| {});
    let err = client.connect().unwrap_err();
    assert_eq!(err.code(), Code::SocketRegistrationFailed, "{err}");
    assert_eq!(err.server_code(), Some("CLUSTER_SUSPENDED"));
    assert_eq!(err.server_message(), Some("cluster suspended"));
    assert!(!client.is_ready());
    // Not retried on its own.
    let mark = server.mark();
    assert!(server
        .expect_event_from(mark, |e| matches!(e, ServerEvent::Connected { .. }), QUIET)
        .is_err());

    // No data object: a message and no code.
    server.set_faults(Faults {
        reject_registration: Some(RejectRegistration {
            code: None,
            message: Some("go away".into()),
        }),
        ..Faults::default()
    });
    let err = client.connect().unwrap_err();
    assert_eq!(err.code(), Code::SocketRegistrationFailed);
    assert_eq!(err.server_code(), None);
    assert_eq!(err.server_message(), Some("go away"));
}

#[test]
fn a_wrong_password_is_rejected_with_invalid_credentials() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |o| o.credentials.daemon_password = "nope".into());
    let err = client.connect().unwrap_err();
    assert_eq!(err.code(), Code::SocketRegistrationFailed);
    assert_eq!(err.server_code(), Some("INVALID_CREDENTIALS"));
    assert_eq!(err.server_message(), Some("invalid credentials"));
}

#[test]
fn a_command_without_reply_times_out_and_leaves_nothing_pending() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    server.set_responder("silent", Responder::NoReply);
    let client = connected(&server);
    let timeout = Duration::from_millis(150);
    let started = Instant::now();
    let err = client
        .send_command_with_timeout("silent", None, timeout)
        .unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err.code(), Code::CommandTimeout, "{err}");
    assert!(elapsed >= timeout, "timed out early: {elapsed:?}");
    assert!(elapsed < WAIT, "timed out late: {elapsed:?}");
    assert_eq!(client.pending_commands(), 0);
    // The connection is still fine.
    assert_eq!(
        client.send_command("echo", Some(json!(1))).unwrap(),
        Some(json!(1))
    );
    disconnect(&client);
}

#[test]
fn a_late_reply_after_the_timeout_is_dropped_quietly() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    server.set_responder(
        "late",
        Responder::ok(json!("late")).delayed(Duration::from_millis(200)),
    );
    // Answered after the late reply went out: the client has read it by then.
    server.set_responder(
        "probe",
        Responder::ok(json!("probe")).delayed(Duration::from_millis(300)),
    );
    let client = client_with(&server, |_| {});
    let rec = Recorder::attach(&client);
    connect(&client);
    rec.expect("connected", |cb| matches!(cb, Cb::Connected));
    let err = client
        .send_command_with_timeout("late", None, Duration::from_millis(20))
        .unwrap_err();
    assert_eq!(err.code(), Code::CommandTimeout);
    assert_eq!(
        client.send_command("probe", None).unwrap(),
        Some(json!("probe"))
    );
    assert_eq!(client.pending_commands(), 0);
    // Callbacks run in order: the next one is this message, no error before it.
    server
        .send_message(DEFAULT_CLUSTER, json!({"type": "sync"}))
        .unwrap();
    let cb = rec.next("message");
    assert!(matches!(cb, Cb::Message(_)), "{cb:?}");
    disconnect(&client);
}

#[test]
fn a_rejected_command_carries_the_servers_code_and_message() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    server.set_responder(
        "get-container-stats",
        Responder::err("NOT_FOUND", "no such container"),
    );
    let client = connected(&server);
    let err = client
        .send_command("get-container-stats", Some(json!({"id": "c9"})))
        .unwrap_err();
    assert_eq!(err.code(), Code::CommandRejected, "{err}");
    assert_eq!(err.server_code(), Some("NOT_FOUND"));
    assert_eq!(err.server_message(), Some("no such container"));
    assert!(err.to_string().contains("NOT_FOUND"));
    // The mock's default for an unknown command.
    let err = client.send_command("no-such-command", None).unwrap_err();
    assert_eq!(err.code(), Code::CommandRejected);
    assert_eq!(err.server_code(), Some("UNKNOWN_COMMAND"));
    disconnect(&client);
}

#[test]
fn commands_when_not_ready_fail_at_once_with_socket_not_ready_and_send_nothing() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |o| o.command_timeout = Duration::from_secs(30));
    let check = |client: &ClusterDaemonClient| {
        let started = Instant::now();
        let err = client.send_command("echo", None).unwrap_err();
        assert_eq!(err.code(), Code::SocketNotReady, "{err}");
        let err = client.start_command("echo", None).unwrap_err();
        assert_eq!(err.code(), Code::SocketNotReady);
        assert!(started.elapsed() < Duration::from_secs(1), "not at once");
        assert_eq!(client.pending_commands(), 0);
    };
    check(&client); // never connected
    connect(&client);
    disconnect(&client);
    check(&client); // disconnected
    assert!(server.received_commands(DEFAULT_CLUSTER).is_empty());
}

#[test]
fn emit_when_not_ready_fails_with_emit_failed() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |_| {});
    let msg = TeamClusterDaemonMessage::Other(json!({"type": "x"}));
    assert_eq!(client.emit(&msg).unwrap_err().code(), Code::EmitFailed);
    connect(&client);
    client.emit(&msg).unwrap();
    disconnect(&client);
    assert_eq!(client.emit(&msg).unwrap_err().code(), Code::EmitFailed);
}

#[test]
fn a_failing_handler_is_reported_to_on_error_as_handler_error() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |_| {});
    let rec = Recorder::attach(&client);
    client.register_handler_fn("fails", |_p, _c| Err("disk on fire".into()));
    connect(&client);
    let reply = server.dispatch(DEFAULT_CLUSTER, "fails", json!(null));
    assert_eq!(reply.status, 500);
    let cb = rec.expect("HANDLER_ERROR", |cb| cb.is_error(Code::HandlerError));
    let Cb::Error(e) = cb else { unreachable!() };
    assert!(e.to_string().contains("disk on fire"), "{e}");
    disconnect(&client);
}

#[test]
fn frames_over_the_servers_max_payload_fail_with_payload_too_large() {
    fail_on_unexpected_panics();
    let server = MockServer::builder().max_payload(1024).start();
    let client = client_with(&server, |_| {});
    let rec = Recorder::attach(&client);
    client.register_handler_fn("big-data", |_p, _c| {
        Ok(CommandResult::data(json!("x".repeat(4000))))
    });
    client.register_handler_fn("big-body", |_p, _c| {
        Ok(CommandResult::body(vec![7u8; 4000]))
    });
    client.register_handler_fn("big-stream", |_p, _c| {
        Ok(CommandResult::stream(std::io::Cursor::new(vec![9u8; 3000])))
    });
    connect(&client);
    let big = json!({"blob": "y".repeat(2000)});
    let err = client.send_command("echo", Some(big.clone())).unwrap_err();
    assert_eq!(err.code(), Code::PayloadTooLarge, "{err}");
    let err = client
        .emit(&TeamClusterDaemonMessage::Other(
            json!({"type": "big", "blob": big}),
        ))
        .unwrap_err();
    assert_eq!(err.code(), Code::PayloadTooLarge, "{err}");
    assert_eq!(client.pending_commands(), 0);

    // A reply that is too large becomes a 500 HANDLER_ERROR reply.
    for cmd in ["big-data", "big-body"] {
        let reply = server.dispatch(DEFAULT_CLUSTER, cmd, json!(null));
        assert_eq!(reply.status, 500, "{cmd}: {reply:?}");
        assert_eq!(reply.error.as_ref().unwrap().code, "HANDLER_ERROR");
        rec.expect("HANDLER_ERROR", |cb| cb.is_error(Code::HandlerError));
    }
    // A stream is cut into chunks that fit.
    let reply = server.dispatch(DEFAULT_CLUSTER, "big-stream", json!(null));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.stream.as_deref(), Some(&[9u8; 3000][..]));
    assert!(reply.stream_chunks.len() >= 3);
    assert!(reply.stream_chunks.iter().all(|c| c.len() <= 1024));
    // Small things still go through.
    assert_eq!(
        client.send_command("echo", Some(json!("small"))).unwrap(),
        Some(json!("small"))
    );
    assert!(client.is_ready());
    disconnect(&client);
}

#[test]
fn malformed_server_events_are_protocol_errors_and_the_connection_stays_up() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |_| {});
    let rec = Recorder::attach(&client);
    connect(&client);
    rec.expect("connected", |cb| matches!(cb, Cb::Connected));
    for raw in [
        r#"42/daemon,["message",{"no":"type"}]"#,
        r#"42/daemon,["message",[1,2]]"#,
        r#"42/daemon,["command-response",{"ok":true}]"#,
        r#"42/daemon,["reverse-command",{"command":"x"}]"#,
    ] {
        server.send_raw_text(DEFAULT_CLUSTER, raw).unwrap();
        let cb = rec.next(raw);
        assert!(cb.is_error(Code::ProtocolError), "{raw}: {cb:?}");
    }
    assert!(client.is_ready());
    assert_eq!(
        client.send_command("echo", Some(json!(2))).unwrap(),
        Some(json!(2))
    );
    // A reply for a request nobody sent is dropped quietly.
    server
        .send_raw_text(
            DEFAULT_CLUSTER,
            r#"42/daemon,["command-response",{"requestId":"00000000-0000-4000-8000-000000000000","ok":true}]"#,
        )
        .unwrap();
    server
        .send_message(DEFAULT_CLUSTER, json!({"type": "sync"}))
        .unwrap();
    let cb = rec.next("message");
    assert!(
        matches!(cb, Cb::Message(_)),
        "no error before the message: {cb:?}"
    );
    disconnect(&client);
}

#[test]
fn an_incoming_frame_over_the_clients_limit_is_a_protocol_error_and_reconnects() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |o| o.socket.max_incoming_frame_bytes = 4096);
    let rec = Recorder::attach(&client);
    connect(&client);
    rec.expect("connected", |cb| matches!(cb, Cb::Connected));
    let mark = server.mark();
    let huge = format!(
        r#"42/daemon,["message",{{"type":"x","pad":"{}"}}]"#,
        "z".repeat(10_000)
    );
    server.send_raw_text(DEFAULT_CLUSTER, &huge).unwrap();
    rec.expect("PROTOCOL_ERROR", |cb| cb.is_error(Code::ProtocolError));
    rec.expect("disconnected", |cb| matches!(cb, Cb::Disconnected(_)));
    rec.expect("connected again", |cb| matches!(cb, Cb::Connected));
    wait_registered(&server, mark);
    assert!(client.is_ready());
    disconnect(&client);
}
