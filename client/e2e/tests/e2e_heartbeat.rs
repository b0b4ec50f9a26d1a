//! The heartbeat loop end to end: payload from the factory, gaps within
//! interval + jitter, failures reported and the loop going on.

mod e2e_support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e_support::*;
use parking_lot::Mutex;
use serde_json::json;
use volt_daemon_client::{DaemonClientErrorCode as Code, HeartbeatOptions, HEARTBEAT_COMMAND};
use volt_testkit::{
    fail_on_unexpected_panics, MockServer, Responder, ServerEvent, DEFAULT_CLUSTER,
};

fn heartbeat_payloads(server: &MockServer) -> Vec<Option<serde_json::Value>> {
    server
        .events()
        .into_iter()
        .filter_map(|e| match e {
            ServerEvent::Heartbeat { payload, .. } => Some(payload),
            _ => None,
        })
        .collect()
}

#[test]
fn heartbeats_carry_the_payload_factorys_value() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let n = Arc::new(AtomicU64::new(0));
    let client = connected_with(&server, |o| {
        o.heartbeat = HeartbeatOptions::default()
            .with_interval(Duration::from_millis(20))
            .with_payload_factory(
                move || json!({"n": n.fetch_add(1, Ordering::SeqCst), "load": 0.5}),
            );
    });
    server
        .wait_for_heartbeats(DEFAULT_CLUSTER, 3, WAIT)
        .unwrap();
    disconnect(&client);
    let payloads = heartbeat_payloads(&server);
    assert!(payloads.len() >= 3);
    for (i, p) in payloads.iter().enumerate() {
        assert_eq!(p, &Some(json!({"n": i, "load": 0.5})));
    }
    // Heartbeats are logged as such, never as plain commands.
    assert!(!server.events().iter().any(|e| matches!(
        e,
        ServerEvent::Command { request, .. } if request.command == HEARTBEAT_COMMAND
    )));
}

#[test]
fn without_a_factory_heartbeats_send_an_empty_object() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = connected_with(&server, |o| {
        o.heartbeat.interval = Duration::from_millis(20)
    });
    server
        .wait_for_heartbeats(DEFAULT_CLUSTER, 1, WAIT)
        .unwrap();
    disconnect(&client);
    assert_eq!(heartbeat_payloads(&server)[0], Some(json!({})));
}

#[test]
fn heartbeat_gaps_stay_within_interval_and_interval_plus_jitter() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let interval = Duration::from_millis(50);
    let jitter = Duration::from_millis(30);
    let times: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let t = times.clone();
    let client = client_with(&server, |o| {
        o.heartbeat = HeartbeatOptions::default()
            .with_interval(interval)
            .with_jitter(jitter)
            .with_payload_factory(move || {
                t.lock().push(Instant::now());
                json!({})
            });
    });
    let before_connect = Instant::now();
    connect(&client);
    let beats = 10;
    server
        .wait_for_heartbeats(DEFAULT_CLUSTER, beats, WAIT)
        .unwrap();
    disconnect(&client);
    let times = times.lock().clone();
    assert!(times.len() >= beats);
    // The first comes interval + j after registration (which was after `before_connect`).
    assert!(times[0] - before_connect >= interval);
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // Strict lower bound; generous upper margin for a loaded machine.
    let margin = Duration::from_millis(150);
    for g in &gaps {
        assert!(
            *g >= interval,
            "gap {g:?} shorter than the interval; gaps {gaps:?}"
        );
        assert!(
            *g <= interval + jitter + margin,
            "gap {g:?} too long; gaps {gaps:?}"
        );
    }
    // The jitter is drawn afresh (seeded): not every gap sits at the interval.
    assert!(
        gaps.iter()
            .any(|g| *g >= interval + Duration::from_millis(10)),
        "no jitter visible: {gaps:?}"
    );
}

#[test]
fn failed_heartbeats_go_to_on_error_and_the_loop_goes_on() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    server.set_responder(HEARTBEAT_COMMAND, Responder::err("OVERLOADED", "try later"));
    let client = client_with(&server, |o| {
        o.heartbeat.interval = Duration::from_millis(20)
    });
    let rec = Recorder::attach(&client);
    connect(&client);
    for _ in 0..3 {
        let cb = rec.expect("rejected heartbeat", |cb| {
            cb.is_error(Code::CommandRejected)
        });
        let Cb::Error(e) = cb else { unreachable!() };
        assert_eq!(e.server_code(), Some("OVERLOADED"));
    }
    // Unanswered heartbeats do not stop the loop either: they do not wait
    // for each other's replies, and time out into on_error.
    server.set_responder(HEARTBEAT_COMMAND, Responder::NoReply);
    disconnect(&client);
    let client = client_with(&server, |o| {
        o.heartbeat.interval = Duration::from_millis(20);
        o.command_timeout = Duration::from_millis(100);
    });
    let rec = Recorder::attach(&client);
    let mark = server.mark();
    connect(&client);
    server
        .expect_event_from(
            mark,
            {
                let mut n = 0;
                move |e| {
                    n += usize::from(matches!(e, ServerEvent::Heartbeat { .. }));
                    n >= 3
                }
            },
            WAIT,
        )
        .unwrap();
    rec.expect("heartbeat timeout", |cb| cb.is_error(Code::CommandTimeout));
    assert!(client.is_ready());
    disconnect(&client);
    assert_eq!(client.pending_commands(), 0);
}
