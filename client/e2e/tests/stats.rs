//! `stats()` end to end against the mock server: each figure moves as
//! `ClientStats` documents it.

mod e2e_support;

use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use e2e_support::*;
use serde_json::json;
use volt_daemon_client::{
    ClusterDaemonClient, CommandResult, DaemonClientErrorCode as Code, TeamClusterDaemonMessage,
};
use volt_testkit::{fail_on_unexpected_panics, wait_until, MockServer, Responder, DEFAULT_CLUSTER};

/// Registers `slow`, which says when it starts and waits for a release.
fn slow_handler(client: &ClusterDaemonClient) -> (Sender<()>, Receiver<()>) {
    let (release_tx, release_rx) = crossbeam_channel::unbounded::<()>();
    let (started_tx, started_rx) = crossbeam_channel::unbounded();
    client.register_handler_fn("slow", move |_p, _c| {
        let _ = started_tx.send(());
        let _ = release_rx.recv_timeout(WAIT);
        Ok(CommandResult::empty())
    });
    (release_tx, started_rx)
}

#[test]
fn answered_commands_count_as_ok_or_rejected_and_enter_the_latency_histogram() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    server.set_responder("refuse", Responder::err("NOPE", "refused"));
    let client = connected(&server);
    for i in 0..10 {
        assert_eq!(
            client.send_command("echo", Some(json!(i))).unwrap(),
            Some(json!(i))
        );
    }
    let err = client.send_command("refuse", None).unwrap_err();
    assert_eq!(err.code(), Code::CommandRejected);
    let s = client.stats();
    assert_eq!(s.commands_sent, 11);
    assert_eq!((s.commands_ok, s.commands_rejected), (10, 1));
    assert_eq!((s.commands_timed_out, s.commands_not_ready), (0, 0));
    assert_eq!(s.commands_in_flight, 0);
    assert_eq!(s.latency.count, 11);
    assert!(s.latency.p50 > Duration::ZERO);
    assert!(s.latency.p50 <= s.latency.p90 && s.latency.p90 <= s.latency.p99);
    assert!(s.latency.p99 <= s.latency.max && s.latency.max < WAIT);
    disconnect(&client);
}

#[test]
fn a_command_left_unanswered_counts_as_timed_out_and_not_in_the_histogram() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    server.set_responder("hang", Responder::NoReply);
    let client = connected(&server);
    let err = client
        .send_command_with_timeout("hang", None, Duration::from_millis(100))
        .unwrap_err();
    assert_eq!(err.code(), Code::CommandTimeout);
    let s = client.stats();
    assert_eq!(
        (s.commands_sent, s.commands_timed_out, s.commands_ok),
        (1, 1, 0)
    );
    assert_eq!((s.commands_in_flight, s.latency.count), (0, 0));
    disconnect(&client);
}

#[test]
fn refused_and_lost_commands_count_as_not_ready_and_in_flight_ones_are_shown() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    server.set_responder("hang", Responder::NoReply);
    let client = client_with(&server, |_| {});
    let err = client.send_command("echo", None).unwrap_err();
    assert_eq!(err.code(), Code::SocketNotReady);
    assert_eq!(
        (
            client.stats().commands_not_ready,
            client.stats().commands_sent
        ),
        (1, 0)
    );
    connect(&client);
    let pending = client.start_command("hang", None).unwrap();
    assert_eq!(client.stats().commands_in_flight, 1);
    server.drop_transport(DEFAULT_CLUSTER).unwrap();
    assert_eq!(pending.wait().unwrap_err().code(), Code::SocketNotReady);
    let s = client.stats();
    assert_eq!((s.commands_sent, s.commands_not_ready), (1, 2));
    assert_eq!((s.commands_in_flight, s.latency.count), (0, 0));
    disconnect(&client);
}

#[test]
fn reverse_replies_are_counted_by_status_class() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |_| {});
    client.register_handler_fn("ok", |_p, _c| Ok(CommandResult::data(json!(1))));
    client.register_handler_fn("teapot", |_p, _c| {
        Ok(CommandResult::empty().with_status(418))
    });
    client.register_handler_fn("fail", |_p, _c| Err("broken".into()));
    client.register_handler_fn(
        "moved",
        |_p, _c| Ok(CommandResult::empty().with_status(302)),
    );
    connect(&client);
    let statuses: Vec<u16> = ["ok", "ok", "teapot", "nobody", "fail", "moved"]
        .iter()
        .map(|c| server.dispatch(DEFAULT_CLUSTER, c, json!(null)).status)
        .collect();
    assert_eq!(statuses, [200, 200, 418, 404, 500, 302]);
    let r = client.stats().reverse_commands;
    assert_eq!(
        (r.status_2xx, r.status_4xx, r.status_5xx, r.other),
        (2, 2, 1, 1)
    );
    disconnect(&client);
}

#[test]
fn a_busy_pool_answers_503_counted_as_5xx_and_its_queue_depth_is_shown() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |o| {
        o.handlers.threads = 1;
        o.handlers.queue_capacity = 1;
    });
    let (release_tx, started_rx) = slow_handler(&client);
    connect(&client);
    let dispatch = |server: &MockServer| {
        let handle = server.handle();
        std::thread::spawn(move || {
            handle
                .dispatch(DEFAULT_CLUSTER, "slow", None, WAIT)
                .map(|r| r.status)
        })
    };
    let running = dispatch(&server);
    recv(&started_rx, "the first handler runs", WAIT);
    let queued = dispatch(&server);
    assert!(wait_until(WAIT, || client.stats().handler_queue_depth == 1));
    let busy = server.dispatch(DEFAULT_CLUSTER, "slow", json!(null));
    assert_eq!(busy.status, 503);
    release_tx.send(()).unwrap();
    release_tx.send(()).unwrap();
    assert_eq!(running.join().unwrap().unwrap(), 200);
    assert_eq!(queued.join().unwrap().unwrap(), 200);
    let s = client.stats();
    assert_eq!(
        (s.reverse_commands.status_2xx, s.reverse_commands.status_5xx),
        (2, 1)
    );
    assert_eq!(s.handler_queue_depth, 0);
    disconnect(&client);
}

#[test]
fn messages_bytes_and_frames_are_counted_both_ways() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = connected(&server);
    let before = client.stats();
    assert!(
        before.bytes_in > 0 && before.frames_in > 0,
        "registration: {before:?}"
    );
    assert!(
        before.bytes_out > 0 && before.frames_out > 0,
        "registration: {before:?}"
    );
    let message: TeamClusterDaemonMessage =
        serde_json::from_value(json!({"type": "tunnel-close", "tunnelId": "t1"})).unwrap();
    client.emit(&message).unwrap();
    client.emit(&message).unwrap();
    assert!(wait_until(WAIT, || server
        .received_messages(DEFAULT_CLUSTER)
        .len()
        == 2));
    server
        .send_message(
            DEFAULT_CLUSTER,
            json!({"type": "session-close", "sessionId": "s"}),
        )
        .unwrap();
    assert!(wait_until(WAIT, || client.stats().messages_in == 1));
    let after = client.stats();
    assert_eq!(after.messages_out, 2);
    assert!(after.frames_out >= before.frames_out + 2, "{after:?}");
    assert!(after.frames_in > before.frames_in, "{after:?}");
    assert!(after.bytes_out > before.bytes_out && after.bytes_in > before.bytes_in);
    disconnect(&client);
}

#[test]
fn a_lost_transport_counts_one_reconnection_and_restarts_the_uptime() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |_| {});
    assert_eq!(client.stats().uptime, None);
    let before_connect = std::time::Instant::now();
    connect(&client);
    assert!(wait_until(WAIT, || client
        .stats()
        .uptime
        .is_some_and(|u| u >= Duration::from_millis(50))));
    assert_eq!(client.stats().reconnections, 0);
    let mark = server.mark();
    server.drop_transport(DEFAULT_CLUSTER).unwrap();
    wait_registered(&server, mark);
    assert!(wait_until(WAIT, || client.is_ready()));
    let s = client.stats();
    assert_eq!(s.reconnections, 1);
    // The first connection lived 50 ms or more: the uptime restarted.
    let uptime = s.uptime.expect("connected again");
    let since_first = before_connect.elapsed() - Duration::from_millis(50);
    assert!(uptime < since_first, "{uptime:?} vs {since_first:?}");
    disconnect(&client);
    assert_eq!(client.stats().uptime, None);
    // connect() again is not a reconnection.
    connect(&client);
    assert_eq!(client.stats().reconnections, 1);
    disconnect(&client);
}

#[test]
fn the_snapshot_serializes_to_one_json_line() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = connected(&server);
    client.send_command("echo", Some(json!(1))).unwrap();
    let line = serde_json::to_string(&client.stats()).unwrap();
    assert!(!line.contains('\n'));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["commands_ok"], 1);
    assert_eq!(v["latency"]["count"], 1);
    assert!(v["uptime_ms"].is_u64());
    assert_eq!(v["url"].as_str(), client.state().url(), "{line}");
    assert!(v["url"].is_string(), "{line}");
    disconnect(&client);
    assert_eq!(client.stats().url, None);
}

#[test]
fn a_reverse_command_refused_while_draining_counts_as_5xx() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |_| {});
    let (release_tx, started_rx) = slow_handler(&client);
    connect(&client);
    let handle = server.handle();
    let running = std::thread::spawn(move || handle.dispatch(DEFAULT_CLUSTER, "slow", None, WAIT));
    recv(&started_rx, "the handler runs", WAIT);
    let draining = client.clone();
    let drain = std::thread::spawn(move || draining.drain(WAIT));
    assert!(wait_until(WAIT, || {
        server
            .dispatch(DEFAULT_CLUSTER, "other", json!(null))
            .status
            == 503
    }));
    release_tx.send(()).unwrap();
    assert_eq!(running.join().unwrap().unwrap().status, 200);
    assert!(drain.join().unwrap().is_clean());
    let r = client.stats().reverse_commands;
    assert_eq!((r.status_2xx, r.status_5xx), (1, 1));
}

#[test]
fn an_answer_enters_the_histogram_when_it_is_read_not_when_its_caller_waits() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = connected(&server);
    let before = client.stats();
    let pending = client.start_command("echo", Some(json!(1))).unwrap();
    // Nobody waits yet: the answer is counted as it comes off the socket.
    assert!(wait_until(WAIT, || client.stats().commands_ok
        == before.commands_ok + 1));
    let s = client.stats();
    assert_eq!(s.latency.count, before.latency.count + 1);
    assert!(s.latency.max > Duration::ZERO && s.latency.max < WAIT);
    assert_eq!(pending.wait().unwrap(), Some(json!(1)));
    assert_eq!(
        client.stats().latency.count,
        s.latency.count,
        "waiting adds nothing"
    );
    disconnect(&client);
}

/// Four threads send 2,000 commands each, now one at a time (the caller
/// writes and reads the socket itself), now 32 in flight (`volt-conn`
/// writes and reads): the figures counted on the caller threads and on
/// `volt-conn` add up, exactly, to what the server saw.
#[test]
fn figures_counted_by_callers_and_by_the_io_thread_add_up_exactly_under_load() {
    fail_on_unexpected_panics();
    let server = MockServer::builder().history_limit(1_000_000).start();
    let client = connected(&server);
    let inbound = || {
        server
            .all_frames()
            .iter()
            .filter(|f| f.dir == volt_testkit::Direction::In)
            .count() as u64
    };
    assert!(wait_until(WAIT, || client.stats().frames_out == inbound()));
    let before = client.stats();
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            let client = &client;
            scope.spawn(move || {
                for round in 0..40u64 {
                    let window = if (round + t) % 2 == 0 { 1 } else { 32 };
                    for _ in 0..50 / window {
                        let pending: Vec<_> = (0..window)
                            .map(|i| client.start_command("echo", Some(json!(i))).unwrap())
                            .collect();
                        pending.into_iter().for_each(|p| drop(p.wait().unwrap()));
                    }
                }
            });
        }
    });
    let after = client.stats();
    let sent = after.commands_sent - before.commands_sent;
    assert!(sent >= 4 * 40 * 32, "{sent}");
    assert_eq!(after.commands_ok - before.commands_ok, sent, "{after:?}");
    assert_eq!(
        after.latency.count,
        after.commands_ok + after.commands_rejected
    );
    assert_eq!(after.commands_in_flight, 0);
    // Every frame the server read was counted once on the way out.
    assert!(
        wait_until(WAIT, || client.stats().frames_out == inbound()),
        "client {} frames out, server {} in",
        client.stats().frames_out,
        inbound()
    );
    assert!(after.frames_in - before.frames_in >= sent);
    disconnect(&client);
}
