//! `state()` and `on_state_change` end to end against the mock server:
//! each change in order with its previous state and reason, next to
//! `on_connected` / `on_disconnected`, which fire as before.

mod e2e_support;

use std::time::Duration;

use crossbeam_channel::Receiver;
use e2e_support::*;
use volt_daemon_client::{
    ClusterDaemonClient, ConnectionState as S, DaemonClientErrorCode as Code, StateChange,
};
use volt_testkit::{fail_on_unexpected_panics, MockServer, DEFAULT_CLUSTER};

/// Every state change of `client`, through a channel.
fn changes(client: &ClusterDaemonClient) -> Receiver<StateChange> {
    let (tx, rx) = crossbeam_channel::unbounded();
    client.on_state_change(move |c| {
        let _ = tx.send(c.clone());
    });
    rx
}

/// Receives changes until one whose state `pred` accepts; returns them all,
/// checking that each one's `previous` is the state before it.
fn until(rx: &Receiver<StateChange>, from: &S, pred: impl Fn(&S) -> bool) -> Vec<StateChange> {
    let mut seen: Vec<StateChange> = Vec::new();
    loop {
        let c = recv(rx, "a state change", WAIT);
        let before = seen.last().map_or(from, |l| &l.state);
        assert_eq!(&c.previous, before, "out of order: {seen:?} then {c:?}");
        let done = pred(&c.state);
        seen.push(c);
        if done {
            return seen;
        }
    }
}

fn kinds(changes: &[StateChange]) -> Vec<&'static str> {
    changes
        .iter()
        .map(|c| match c.state {
            S::Idle => "idle",
            S::Enrolling => "enrolling",
            S::Connecting { .. } => "connecting",
            S::Registering => "registering",
            S::Ready { .. } => "ready",
            S::Reconnecting { .. } => "reconnecting",
            S::Disconnected { .. } => "disconnected",
            S::GaveUp { .. } => "gave-up",
            _ => "other",
        })
        .collect()
}

#[test]
fn a_connect_walks_connecting_registering_ready_and_a_loss_reconnects_through_each_state() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |_| {});
    let rec = Recorder::attach(&client);
    let rx = changes(&client);
    assert_eq!(client.state(), S::Idle);
    connect(&client);
    assert!(matches!(client.state(), S::Ready { ref url, .. } if *url == server.url()));
    let first = until(&rx, &S::Idle, S::is_ready);
    assert_eq!(kinds(&first), ["connecting", "registering", "ready"]);
    assert_eq!(
        first[0].state,
        S::Connecting {
            attempt: 1,
            url: server.url()
        }
    );
    assert_eq!(first[2].reason, "registered");
    rec.expect("on_connected", Cb::is_connected);

    server.drop_transport(DEFAULT_CLUSTER).unwrap();
    let again = until(&rx, &first[2].state, S::is_ready);
    assert_eq!(
        kinds(&again),
        ["reconnecting", "connecting", "registering", "ready"]
    );
    assert!(matches!(again[0].state, S::Reconnecting { attempt: 1, .. }));
    assert_eq!(again[0].reason, "transport close");
    rec.expect("on_disconnected", |cb| {
        cb.is_disconnected_with("transport close")
    });
    rec.expect("on_connected again", Cb::is_connected);

    disconnect(&client);
    let last = until(&rx, &again[3].state, S::is_terminal);
    assert_eq!(
        last.last().unwrap().state,
        S::Disconnected {
            reason: "io client disconnect".into()
        }
    );
    assert_eq!(client.state(), last.last().unwrap().state);
    // on_connected / on_disconnected fired exactly as before: two each.
    assert_eq!(rec.log().iter().filter(|c| c.is_connected()).count(), 2);
    assert_eq!(rec.log().iter().filter(|c| c.is_disconnected()).count(), 2);
}

#[test]
fn a_kick_is_disconnected_with_its_reason_and_nothing_follows() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = connected(&server);
    let rx = changes(&client);
    let ready = client.state();
    server.kick(DEFAULT_CLUSTER).unwrap();
    let seen = until(&rx, &ready, S::is_terminal);
    assert_eq!(
        seen.last().unwrap().state,
        S::Disconnected {
            reason: "io server disconnect".into()
        }
    );
    assert!(rx.recv_timeout(QUIET).is_err(), "no change after a kick");
    disconnect(&client);
    assert!(rx.recv_timeout(QUIET).is_err(), "already disconnected");
}

#[test]
fn spent_reconnection_attempts_are_gave_up_with_their_count() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = connected_with(&server, |o| o.socket.max_reconnect_attempts = Some(3));
    let rec = Recorder::attach(&client);
    let rx = changes(&client);
    let ready = client.state();
    drop(server);
    let seen = until(&rx, &ready, S::is_terminal);
    assert_eq!(seen.last().unwrap().state, S::GaveUp { attempts: 3 });
    let attempts: Vec<u32> = seen
        .iter()
        .filter_map(|c| match c.state {
            S::Connecting { attempt, .. } => Some(attempt),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
    rec.expect(
        "the give-up error",
        |cb| matches!(cb, Cb::Error(e) if e.to_string().contains("gave up")),
    );
    let e = client.wait_ready(Duration::from_secs(1)).unwrap_err();
    assert!(e.to_string().contains("gave up"), "{e}");
    disconnect(&client);
    assert_eq!(client.state(), S::GaveUp { attempts: 3 });
}

#[test]
fn a_failed_first_connect_is_disconnected_with_the_error() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let url = server.url();
    drop(server);
    let client = ClusterDaemonClient::new(volt_daemon_client::ClusterDaemonClientOptions::new(
        url.clone(),
        url,
        volt_daemon_client::DaemonCredentials::new("c", "p"),
    ))
    .unwrap();
    let rx = changes(&client);
    let e = bounded("connect()", WAIT, {
        let c = client.clone();
        move || c.connect()
    })
    .unwrap_err();
    assert_eq!(e.code(), Code::SocketConnectionFailed);
    let seen = until(&rx, &S::Idle, S::is_terminal);
    assert_eq!(kinds(&seen), ["connecting", "disconnected"]);
    assert_eq!(seen[1].reason, e.to_string());
    assert_eq!(client.wait_ready(Duration::ZERO).unwrap_err(), e);
}
