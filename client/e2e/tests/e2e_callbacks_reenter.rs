//! Every callback and every handler may call back into the client:
//! `connect()`, `disconnect()`, `send_command` and `emit`, in any state of
//! the client, without a deadlock. No lock of the client is held while user
//! code runs (docs/ARCHITECTURE.md). Every wait is bounded.

mod e2e_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use e2e_support::*;
use serde_json::{json, Value};
use volt_daemon_client::{
    ClusterDaemonClient, CommandResult, EnrollmentOptions, TeamClusterDaemonMessage,
};
use volt_testkit::{fail_on_unexpected_panics, MockServer, DEFAULT_CLUSTER};

/// Calls everything that takes a lock of the client, once per `fired`, then
/// says so on `done`. Results are ignored: only returning matters.
fn reenter(
    client: &ClusterDaemonClient,
    fired: &AtomicBool,
    done: &Sender<&'static str>,
    who: &'static str,
) {
    if fired.swap(true, Ordering::AcqRel) {
        return;
    }
    let message: TeamClusterDaemonMessage =
        serde_json::from_value(json!({"type": "reentered", "from": who})).unwrap();
    let _ = client.connect();
    let _ = client.send_command_with_timeout("echo", Some(json!(who)), Duration::from_secs(1));
    let _ = client.emit(&message);
    client.disconnect();
    let _ = done.send(who);
}

/// A callback that re-enters the client once, reporting to a channel.
fn once(
    client: &ClusterDaemonClient,
    done: &Sender<&'static str>,
    who: &'static str,
) -> impl Fn() + Send + Sync + 'static {
    let (c, done, fired) = (
        client.clone(),
        done.clone(),
        Arc::new(AtomicBool::new(false)),
    );
    move || reenter(&c, &fired, &done, who)
}

fn enrolling(
    server: &MockServer,
    tweak: impl FnOnce(&mut volt_daemon_client::ClusterDaemonClientOptions),
) -> ClusterDaemonClient {
    client_with(server, |o| {
        o.credentials.enrollment_token = Some("one-time-token".into());
        o.enrollment = Some(EnrollmentOptions::new(
            server.enrollment_url(DEFAULT_CLUSTER),
        ));
        tweak(o);
    })
}

fn rotating_server() -> MockServer {
    MockServer::builder()
        .enrollment_token("one-time-token")
        .rotate_password("rotated-pw")
        .start()
}

/// A port nothing listens on: connecting to it is refused at once.
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn on_password_rotated_can_call_the_client_while_the_first_connect_fails() {
    // Enrollment succeeds and rotates the password, then the socket is
    // refused: the failing connect() tears its threads down while the
    // callback runs connect() (this deadlocked when the teardown ran under
    // the lock that serialises connect()).
    fail_on_unexpected_panics();
    let server = rotating_server();
    let port = dead_port();
    let client = enrolling(&server, |o| {
        o.control_socket_url = format!("ws://127.0.0.1:{port}");
        o.socket.connect_timeout = Duration::from_secs(1);
    });
    let (tx, rx) = crossbeam_channel::unbounded();
    let f = once(&client, &tx, "password_rotated");
    client.on_password_rotated(move |_| f());
    let c = client.clone();
    assert!(bounded("the failing connect()", WAIT, move || c.connect()).is_err());
    assert_eq!(
        recv(&rx, "on_password_rotated returned", WAIT),
        "password_rotated"
    );
    assert_eq!(client.daemon_password(), "rotated-pw");
    disconnect(&client);
}

#[test]
fn on_password_rotated_can_call_the_client_during_a_successful_connect() {
    fail_on_unexpected_panics();
    let server = rotating_server();
    let client = enrolling(&server, |_| {});
    let (tx, rx) = crossbeam_channel::unbounded();
    let f = once(&client, &tx, "password_rotated");
    client.on_password_rotated(move |_| f());
    let c = client.clone();
    let _ = bounded("connect()", WAIT, move || c.connect());
    assert_eq!(
        recv(&rx, "on_password_rotated returned", WAIT),
        "password_rotated"
    );
    connect(&client);
    disconnect(&client);
}

#[test]
fn on_connected_can_call_the_client() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |_| {});
    let (tx, rx) = crossbeam_channel::unbounded();
    let f = once(&client, &tx, "connected");
    client.on_connected(f);
    connect(&client);
    assert_eq!(recv(&rx, "on_connected returned", WAIT), "connected");
    connect(&client);
    disconnect(&client);
}

#[test]
fn on_disconnected_can_call_the_client() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |_| {});
    let (tx, rx) = crossbeam_channel::unbounded();
    let f = once(&client, &tx, "disconnected");
    client.on_disconnected(move |_| f());
    connect(&client);
    server.drop_transport(DEFAULT_CLUSTER).unwrap();
    assert_eq!(recv(&rx, "on_disconnected returned", WAIT), "disconnected");
    connect(&client);
    disconnect(&client);
}

#[test]
fn on_error_can_call_the_client() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |_| {});
    let (tx, rx) = crossbeam_channel::unbounded();
    let f = once(&client, &tx, "error");
    client.on_error(move |_| f());
    connect(&client);
    server
        .send_raw_text(DEFAULT_CLUSTER, r#"42/daemon,["message",{"no":"type"}]"#)
        .unwrap();
    assert_eq!(recv(&rx, "on_error returned", WAIT), "error");
    connect(&client);
    disconnect(&client);
}

#[test]
fn on_message_can_call_the_client() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |_| {});
    let (tx, rx) = crossbeam_channel::unbounded();
    let f = once(&client, &tx, "message");
    client.on_message(move |_| f());
    connect(&client);
    server
        .send_message(DEFAULT_CLUSTER, json!({"type": "call-me-back"}))
        .unwrap();
    assert_eq!(recv(&rx, "on_message returned", WAIT), "message");
    connect(&client);
    disconnect(&client);
}

#[test]
fn a_handler_can_call_the_client() {
    fail_on_unexpected_panics();
    let server = Arc::new(MockServer::start());
    let client = client_with(&server, |o| o.handlers.threads = 1);
    let (tx, rx) = crossbeam_channel::unbounded();
    let f = once(&client, &tx, "handler");
    client.register_handler_fn("reenter", move |_, _| {
        f();
        Ok(CommandResult::empty())
    });
    connect(&client);
    let s = server.clone();
    // The reply may not get out: the handler disconnected the client.
    let dispatched =
        std::thread::spawn(move || s.try_dispatch(DEFAULT_CLUSTER, "reenter", Value::Null));
    assert_eq!(recv(&rx, "the handler returned", WAIT), "handler");
    let _ = bounded("dispatch", WAIT * 3, move || dispatched.join().unwrap());
    connect(&client);
    disconnect(&client);
}
