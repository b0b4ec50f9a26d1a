//! The client through a [`FaultProxy`] to the mock server: faults below the
//! protocol (tiny segments, a half-open connection, latency). Every wait is
//! on an event or a state with a deadline.

mod network_support;
mod reliability_support;

use std::time::{Duration, Instant};

use network_support::{client_via, self_signed_for_loopback, Rig, LONG};
use reliability_support::{record, serial, Ev};
use serde_json::json;
use volt_daemon_client::{DaemonClientErrorCode as Code, PendingCommand};
use volt_testkit::{
    wait_until, FaultProxy, MockServer, Responder, ServerEvent, Toward, DEFAULT_CLUSTER,
};

/// The registration reached the server; 5 commands and a reverse command
/// go through on the one connection, then the client disconnects.
fn assert_registration_commands_and_reverse_commands_flow(rig: Rig) {
    let Rig {
        client,
        events,
        proxy,
        server,
    } = rig;
    server
        .expect_event(|e| matches!(e, ServerEvent::Registered { .. }), LONG)
        .unwrap();
    for i in 0..5 {
        assert_eq!(
            client
                .send_command("echo", Some(json!({ "i": i })))
                .unwrap(),
            Some(json!({ "i": i }))
        );
    }
    let reply = server.dispatch(DEFAULT_CLUSTER, "echo", json!({"reverse": "sliced"}));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.data, Some(json!({"reverse": "sliced"})));
    assert!(proxy.stats().bytes_to_client > 100);
    assert_eq!(events.count(Ev::is_disconnected), 0, "{:?}", events.all());
    client.disconnect();
}

#[test]
fn one_byte_slices_both_ways_carry_registration_commands_and_reverse_commands() {
    let _serial = serial();
    let rig = Rig::connect(MockServer::start(), |proxy| {
        proxy.slice(Toward::Both, 1, Duration::ZERO)
    });
    assert_registration_commands_and_reverse_commands_flow(rig);
}

#[test]
fn one_byte_slices_both_ways_carry_a_wss_connection_from_the_tls_handshake_on() {
    let _serial = serial();
    let (cert, key) = self_signed_for_loopback();
    let rig = Rig::connect_with(
        MockServer::builder().tls(&cert, &key).start(),
        |proxy| proxy.slice(Toward::Both, 1, Duration::ZERO),
        |o| o.control_socket_url = o.control_socket_url.replace("http://", "wss://"),
    );
    assert!(rig.server.url().starts_with("https://"));
    assert_registration_commands_and_reverse_commands_flow(rig);
}

#[test]
fn one_byte_slices_toward_the_server_from_the_start_and_both_ways_after_the_upgrade_carry_everything(
) {
    let _serial = serial();
    let rig = Rig::connect(MockServer::start(), |proxy| {
        proxy.slice(Toward::Server, 1, Duration::ZERO)
    });
    rig.proxy.slice(Toward::Both, 1, Duration::ZERO);
    assert_registration_commands_and_reverse_commands_flow(rig);
}

#[test]
fn blackhole_is_a_ping_timeout_fails_in_flight_commands_and_heal_reconnects() {
    let _serial = serial();
    let interval = Duration::from_millis(300);
    let timeout = Duration::from_millis(300);
    let server = MockServer::builder()
        .ping_interval(interval)
        .ping_timeout(timeout)
        .start();
    server.set_responder("hang", Responder::NoReply);
    let Rig {
        client,
        events,
        proxy,
        server,
    } = Rig::connect_with(
        server,
        |_| {},
        |o| o.command_timeout = Duration::from_secs(30),
    );
    let pending: Vec<PendingCommand> = (0..20)
        .map(|i| client.start_command("hang", Some(json!(i))).unwrap())
        .collect();
    assert!(wait_until(LONG, || server
        .received_commands(DEFAULT_CLUSTER)
        .len()
        == 20));

    let holed_at = Instant::now();
    proxy.blackhole();
    let (lost_at, _) = events.wait(LONG, |e| e.is_disconnected_with("ping timeout"));
    let bound = interval + timeout + Duration::from_millis(500);
    assert!(
        lost_at - holed_at <= bound,
        "loss detected after {:?} (bound {bound:?})",
        lost_at - holed_at
    );
    for p in pending {
        let err = p.wait().unwrap_err();
        assert_eq!(err.code(), Code::SocketNotReady, "{err}");
    }
    assert!(
        holed_at.elapsed() < Duration::from_secs(5),
        "a command waited for its own timeout"
    );
    assert_eq!(client.pending_commands(), 0);

    proxy.heal();
    events.wait(LONG, Ev::is_connected);
    assert_eq!(
        client.send_command("echo", Some(json!("healed"))).unwrap(),
        Some(json!("healed"))
    );
    client.disconnect();
}

#[test]
fn latency_50ms_jitter_20ms_keeps_heartbeats_and_commands_without_spurious_timeouts() {
    let _serial = serial();
    let server = MockServer::builder()
        .ping_interval(Duration::from_millis(200))
        .ping_timeout(Duration::from_millis(20_000))
        .start();
    let Rig {
        client,
        events,
        proxy,
        server: _server,
    } = Rig::connect(server, |proxy| {
        proxy.latency(
            Toward::Both,
            Duration::from_millis(50),
            Duration::from_millis(20),
        )
    });
    for i in 0..20 {
        assert_eq!(
            client.send_command("echo", Some(json!(i))).unwrap(),
            Some(json!(i))
        );
    }
    // One connection all along: every ping was answered in time.
    assert_eq!(proxy.stats().connections_total, 1);
    assert_eq!(events.count(Ev::is_disconnected), 0, "{:?}", events.all());
    client.disconnect();
}

/// One sweep step: a fresh client whose first connection is reset after
/// `offset` bytes `toward`; it must end up connected and serving, and the
/// command it sends has exactly one outcome.
fn reset_once_at(server: &MockServer, toward: Toward, offset: u64) {
    let proxy = FaultProxy::start(server.local_addr()).unwrap();
    proxy.reset_after(toward, offset);
    let client = client_via(&proxy, server, |_| {});
    let events = record(&client);
    // A connect that fails at the cut is an outcome too; then connect again.
    if let Err(first) = client.connect() {
        if let Err(e) = client.connect() {
            panic!("{toward:?} {offset}: {first} then {e}; {:?}", proxy.stats());
        }
    }
    events.wait(LONG, Ev::is_connected);
    // Commands until one succeeds after the cut: each returns exactly one
    // outcome, its own payload or SOCKET_NOT_READY.
    let deadline = Instant::now() + LONG;
    let mut n = 0u64;
    loop {
        assert!(
            Instant::now() < deadline,
            "{toward:?} {offset}: {:?}",
            proxy.stats()
        );
        let cut_before = proxy.stats().resets == 1;
        n += 1;
        match client.send_command("echo", Some(json!({ "at": offset, "n": n }))) {
            Ok(data) => {
                assert_eq!(data, Some(json!({ "at": offset, "n": n })));
                if cut_before {
                    break;
                }
            }
            Err(e) => {
                assert_eq!(e.code(), Code::SocketNotReady, "{toward:?} {offset}: {e}");
                assert!(
                    wait_until(LONG, || client.is_ready()),
                    "{toward:?} {offset}"
                );
            }
        }
    }
    assert_eq!(client.pending_commands(), 0);
    client.disconnect();
}

#[test]
fn reset_mid_frame_at_swept_offsets_either_way_never_loses_or_duplicates_an_outcome() {
    let _serial = serial();
    let server = MockServer::builder().record_frames(false).start();
    for toward in [Toward::Server, Toward::Client] {
        for offset in (0..700).step_by(7) {
            reset_once_at(&server, toward, offset);
        }
    }
}
