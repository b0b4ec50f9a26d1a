//! Connection lifecycle end to end: connect/disconnect, transport loss and
//! reconnection, server kicks, ping timeouts.

mod e2e_support;

use std::time::{Duration, Instant};

use e2e_support::*;
use serde_json::json;
use volt_daemon_client::{CommandResult, DaemonClientErrorCode as Code};
use volt_testkit::{
    fail_on_unexpected_panics, Faults, MockServer, Responder, ServerEvent, DEFAULT_CLUSTER,
};

fn is_connected(cb: &Cb) -> bool {
    matches!(cb, Cb::Connected)
}

fn is_disconnected(cb: &Cb) -> bool {
    matches!(cb, Cb::Disconnected(_))
}

#[test]
fn connect_on_a_ready_client_is_a_no_op() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = connected(&server);
    connect(&client);
    connect(&client);
    assert!(client.is_ready());
    assert_eq!(server.stats().connections_total, 1);
    assert_eq!(count_events(&server, is_registered), 1);
    disconnect(&client);
}

#[test]
fn disconnect_is_graceful_idempotent_and_reports_before_returning() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |_| {});
    let rec = Recorder::attach(&client);
    disconnect(&client); // before any connect: nothing happens
    connect(&client);
    disconnect(&client);
    assert!(!client.is_ready());
    // on_disconnected ran before disconnect() returned.
    let log = rec.log();
    assert!(
        matches!(log.last(), Some(Cb::Disconnected(r)) if r == "io client disconnect"),
        "{log:?}"
    );
    disconnect(&client);
    disconnect(&client);
    assert_eq!(
        rec.log()
            .iter()
            .filter(|cb| matches!(cb, Cb::Disconnected(_)))
            .count(),
        1
    );
    // The server saw the daemon leave the namespace (41), then the socket close.
    server
        .expect_event(|e| matches!(e, ServerEvent::Unregistered { .. }), WAIT)
        .unwrap();
    server
        .expect_event(|e| matches!(e, ServerEvent::Disconnected { .. }), WAIT)
        .unwrap();
    // Nothing reconnects after disconnect().
    let mark = server.mark();
    assert!(server
        .expect_event_from(mark, |e| matches!(e, ServerEvent::Connected { .. }), QUIET)
        .is_err());
}

#[test]
fn connect_after_disconnect_works_again() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |_| {});
    client.register_handler_fn("echo", |p, _c| Ok(CommandResult::data(p)));
    for round in 0..3 {
        let mark = server.mark();
        connect(&client);
        wait_registered(&server, mark);
        assert_eq!(
            client.send_command("echo", Some(json!(round))).unwrap(),
            Some(json!(round))
        );
        let reply = server.dispatch(DEFAULT_CLUSTER, "echo", json!(round));
        assert_eq!(reply.data, Some(json!(round)));
        disconnect(&client);
        assert!(!client.is_ready());
    }
}

#[test]
fn dropping_the_last_clone_disconnects() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = connected(&server);
    let clone = client.clone();
    drop(client);
    // A clone is still alive: still connected.
    assert!(clone.is_ready());
    assert_eq!(
        clone.send_command("echo", Some(json!(1))).unwrap(),
        Some(json!(1))
    );
    let mark = server.mark();
    bounded("drop of the last clone", WAIT, move || drop(clone));
    // Drop joined everything after a graceful disconnect: the server saw it.
    server
        .expect_event_from(
            mark,
            |e| matches!(e, ServerEvent::Unregistered { .. }),
            WAIT,
        )
        .unwrap();
}

#[test]
fn in_flight_commands_fail_at_once_when_the_transport_drops_and_the_client_reconnects() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    server.set_responder("held", Responder::NoReply);
    let client = client_with(&server, |o| o.command_timeout = Duration::from_secs(30));
    let rec = Recorder::attach(&client);
    client.register_handler_fn("echo", |p, _c| Ok(CommandResult::data(p)));
    connect(&client);
    rec.expect("connected", is_connected);
    let pending: Vec<_> = (0..5)
        .map(|_| client.start_command("held", None).unwrap())
        .collect();
    server
        .expect_event_from(
            0,
            {
                let mut n = 0;
                move |e| {
                    n += usize::from(matches!(e, ServerEvent::Command { .. }));
                    n == 5
                }
            },
            WAIT,
        )
        .unwrap();
    let mark = server.mark();
    let dropped_at = Instant::now();
    assert_eq!(server.drop_transport(DEFAULT_CLUSTER).unwrap(), 1);
    let waits = bounded("waits", WAIT, move || {
        pending.into_iter().map(|p| p.wait()).collect::<Vec<_>>()
    });
    for w in waits {
        assert_eq!(w.unwrap_err().code(), Code::SocketNotReady);
    }
    assert!(
        dropped_at.elapsed() < Duration::from_secs(3),
        "failed at once, not at their 30 s timeout"
    );
    assert_eq!(client.pending_commands(), 0);
    // Callbacks in order: disconnected("transport close"), then connected.
    let next = rec.next("disconnected");
    assert!(
        matches!(&next, Cb::Disconnected(r) if r == "transport close"),
        "{next:?}"
    );
    let next = rec.next("connected");
    assert!(is_connected(&next), "{next:?}");
    wait_registered(&server, mark);
    assert!(client.is_ready());
    // Handlers survived the reconnection; commands work again.
    let reply = server.dispatch(DEFAULT_CLUSTER, "echo", json!("still here"));
    assert_eq!(reply.data, Some(json!("still here")));
    assert_eq!(
        client.send_command("echo", Some(json!(7))).unwrap(),
        Some(json!(7))
    );
    disconnect(&client);
}

#[test]
fn the_client_reconnects_after_repeated_transport_losses() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |_| {});
    let rec = Recorder::attach(&client);
    connect(&client);
    rec.expect("connected", is_connected);
    for _ in 0..5 {
        let mark = server.mark();
        server.drop_transport(DEFAULT_CLUSTER).unwrap();
        rec.expect("disconnected", is_disconnected);
        rec.expect("connected", is_connected);
        wait_registered(&server, mark);
    }
    assert_eq!(
        client.send_command("echo", Some(json!(1))).unwrap(),
        Some(json!(1))
    );
    disconnect(&client);
}

#[test]
fn a_server_kick_disconnects_without_reconnecting() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    server.set_responder("held", Responder::NoReply);
    let client = client_with(&server, |o| o.command_timeout = Duration::from_secs(30));
    let rec = Recorder::attach(&client);
    connect(&client);
    rec.expect("connected", is_connected);
    let held = client.start_command("held", None).unwrap();
    let mark = server.mark();
    assert_eq!(server.kick(DEFAULT_CLUSTER).unwrap(), 1);
    let next = rec.next("disconnected");
    assert!(
        matches!(&next, Cb::Disconnected(r) if r == "io server disconnect"),
        "{next:?}"
    );
    assert_eq!(
        bounded("wait", WAIT, move || held.wait())
            .unwrap_err()
            .code(),
        Code::SocketNotReady
    );
    assert!(!client.is_ready());
    // No reconnection within a window longer than any backoff delay.
    assert!(server
        .expect_event_from(mark, is_registered, QUIET)
        .is_err());
    rec.expect_none("connected", Duration::ZERO, is_connected);
    assert!(!client.is_ready());
    assert_eq!(
        client.send_command("echo", None).unwrap_err().code(),
        Code::SocketNotReady
    );
    // An explicit connect() brings it back.
    connect(&client);
    assert!(client.is_ready());
    disconnect(&client);
}

#[test]
fn silence_from_the_server_is_detected_as_ping_timeout_and_reconnects() {
    fail_on_unexpected_panics();
    let server = MockServer::builder()
        .ping_interval(Duration::from_millis(100))
        .ping_timeout(Duration::from_millis(100))
        .start();
    let client = client_with(&server, |_| {});
    let rec = Recorder::attach(&client);
    connect(&client);
    rec.expect("connected", is_connected);
    // Pings are answered: the connection outlives several ping intervals.
    let pongs = |server: &MockServer| {
        server
            .all_frames()
            .iter()
            .filter(|f| {
                f.dir == volt_testkit::Direction::In
                    && f.frame == volt_testkit::RawFrame::Text("3".into())
            })
            .count()
    };
    assert!(volt_testkit::wait_until(WAIT, || pongs(&server) >= 3));
    assert!(client.is_ready());
    let stopped = Instant::now();
    server.set_faults(Faults {
        stop_pings: true,
        ..Faults::default()
    });
    let next = rec.next("disconnected");
    assert!(
        matches!(&next, Cb::Disconnected(r) if r == "ping timeout"),
        "{next:?}"
    );
    assert!(stopped.elapsed() < Duration::from_secs(3));
    assert!(!client.is_ready());
    let mark = server.mark();
    server.clear_faults();
    rec.expect("connected", is_connected);
    wait_registered(&server, mark);
    assert!(client.is_ready());
    assert_eq!(
        client.send_command("echo", Some(json!(1))).unwrap(),
        Some(json!(1))
    );
    disconnect(&client);
}

#[test]
fn refused_reconnection_attempts_are_retried_with_backoff() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |_| {});
    let rec = Recorder::attach(&client);
    connect(&client);
    rec.expect("connected", is_connected);
    server.set_faults(Faults {
        refuse_connections: 3,
        ..Faults::default()
    });
    let mark = server.mark();
    server.drop_transport(DEFAULT_CLUSTER).unwrap();
    wait_registered(&server, mark);
    let refused = server
        .events()
        .iter()
        .skip(usize::try_from(mark).unwrap())
        .filter(|e| matches!(e, ServerEvent::ConnectionRefused { .. }))
        .count();
    assert_eq!(refused, 3);
    // Each failed attempt is reported; then the client is back.
    for _ in 0..3 {
        rec.expect("failed attempt", |cb| {
            cb.is_error(Code::SocketConnectionFailed)
        });
    }
    rec.expect("connected", is_connected);
    assert!(client.is_ready());
    disconnect(&client);
}

#[test]
fn a_rejected_re_registration_stops_reconnecting_and_goes_to_on_error() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |_| {});
    let rec = Recorder::attach(&client);
    connect(&client);
    rec.expect("connected", is_connected);
    server.set_faults(Faults {
        reject_registration: Some(volt_testkit::RejectRegistration {
            code: Some("CLUSTER_DELETED".into()),
            message: Some("cluster deleted".into()),
        }),
        ..Faults::default()
    });
    server.drop_transport(DEFAULT_CLUSTER).unwrap();
    let cb = rec.expect("rejection", |cb| {
        cb.is_error(Code::SocketRegistrationFailed)
    });
    let Cb::Error(e) = cb else { unreachable!() };
    assert_eq!(e.server_code(), Some("CLUSTER_DELETED"));
    assert_eq!(e.server_message(), Some("cluster deleted"));
    // No further attempt.
    let mark = server.mark();
    assert!(server
        .expect_event_from(mark, |e| matches!(e, ServerEvent::Connected { .. }), QUIET)
        .is_err());
    assert!(!client.is_ready());
    server.clear_faults();
    connect(&client);
    disconnect(&client);
}

#[test]
fn disconnect_stops_a_reconnection_mid_backoff_at_once() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |o| {
        o.socket.reconnect_base_delay = Duration::from_secs(20);
        o.socket.reconnect_max_delay = Duration::from_secs(20);
    });
    let rec = Recorder::attach(&client);
    connect(&client);
    rec.expect("connected", is_connected);
    server.drop_transport(DEFAULT_CLUSTER).unwrap();
    rec.expect("disconnected", is_disconnected);
    let started = Instant::now();
    disconnect(&client);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(!client.is_ready());
}

#[test]
fn disconnect_interrupts_a_connect_waiting_for_registration() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    // The server opens the socket but reads nothing: registration hangs.
    server.set_faults(Faults {
        stop_pings: true,
        ..Faults::default()
    });
    let client = client_with(&server, |o| {
        o.socket.connect_timeout = Duration::from_secs(20)
    });
    let c = client.clone();
    let started = Instant::now();
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(c.connect());
    });
    server
        .expect_event(|e| matches!(e, ServerEvent::Connected { .. }), WAIT)
        .unwrap();
    disconnect(&client);
    let result = recv(&rx, "connect() interrupted", WAIT);
    assert_eq!(result.unwrap_err().code(), Code::SocketConnectionFailed);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(!client.is_ready());
    server.clear_faults();
    connect(&client);
    disconnect(&client);
}
