//! Daemon → server commands end to end: replies, concurrency, PendingCommand,
//! typed conveniences.

mod e2e_support;

use std::sync::Arc;
use std::time::Duration;

use e2e_support::*;
use serde::Deserialize;
use serde_json::{json, Value};
use volt_daemon_client::{DaemonClientErrorCode as Code, PendingCommand};
use volt_testkit::{fail_on_unexpected_panics, wait_until, MockServer, Responder, DEFAULT_CLUSTER};

#[test]
fn send_command_returns_the_servers_data_or_none() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    server.set_responder("get-container-stats", Responder::ok(json!({"cpu": 0.25})));
    server.set_responder(
        "no-data",
        Responder::Ok {
            data: None,
            delay: None,
        },
    );
    server.set_responder("null-data", Responder::ok(Value::Null));
    let client = connected(&server);
    assert_eq!(
        client
            .send_command("get-container-stats", Some(json!({"id": "c1"})))
            .unwrap(),
        Some(json!({"cpu": 0.25}))
    );
    assert_eq!(client.send_command("no-data", None).unwrap(), None);
    assert_eq!(client.send_command("null-data", None).unwrap(), None);
    // The envelopes: a v4 UUID request id; no payload key when none was given.
    let sent = server.received_commands(DEFAULT_CLUSTER);
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[0]["command"], json!("get-container-stats"));
    assert_eq!(sent[0]["payload"], json!({"id": "c1"}));
    assert!(sent[1].get("payload").is_none(), "{}", sent[1]);
    let id = sent[0]["requestId"].as_str().unwrap();
    assert_eq!(uuid_version(id), Some('4'), "{id}");
    disconnect(&client);
}

fn uuid_version(id: &str) -> Option<char> {
    (id.len() == 36).then(|| id.chars().nth(14)).flatten()
}

#[test]
fn sixty_four_threads_sharing_one_client_each_get_their_own_replies() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = connected(&server);
    let per_thread = 25;
    let threads: Vec<_> = (0..64)
        .map(|t| {
            let c = client.clone();
            std::thread::spawn(move || {
                for i in 0..per_thread {
                    let payload = json!({"thread": t, "i": i, "tag": format!("{t}-{i}")});
                    let reply = c.send_command("echo", Some(payload.clone())).unwrap();
                    assert_eq!(reply, Some(payload), "a reply went to the wrong caller");
                }
            })
        })
        .collect();
    let done = bounded("64 threads", WAIT * 4, move || {
        threads
            .into_iter()
            .map(|t| t.join().is_ok())
            .collect::<Vec<_>>()
    });
    assert!(done.iter().all(|ok| *ok), "a sender thread failed");
    assert_eq!(
        server.received_commands(DEFAULT_CLUSTER).len(),
        64 * per_thread
    );
    assert_eq!(client.pending_commands(), 0);
    disconnect(&client);
}

#[test]
fn one_thread_keeps_many_commands_in_flight_with_start_command() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    server.set_responder("held", Responder::NoReply);
    let client = connected(&server);
    let n = 500;
    let pending: Vec<PendingCommand> = (0..n)
        .map(|i| client.start_command("echo", Some(json!({"i": i}))).unwrap())
        .collect();
    // In flight before anyone waits (some may be answered already; none lost).
    let held = client.start_command("held", None).unwrap();
    assert!(client.pending_commands() >= 1);
    // Waiting in reverse order: each gets its own reply.
    for (i, p) in pending.into_iter().enumerate().rev() {
        assert_eq!(p.wait().unwrap(), Some(json!({"i": i})));
    }
    assert_eq!(client.pending_commands(), 1);
    let ids: Vec<String> = server
        .received_commands(DEFAULT_CLUSTER)
        .iter()
        .map(|c| c["requestId"].as_str().unwrap().to_owned())
        .collect();
    assert!(ids.contains(&held.request_id()));
    drop(held);
    assert_eq!(client.pending_commands(), 0);
    disconnect(&client);
}

#[test]
fn a_command_queued_behind_many_unanswered_ones_still_goes_out() {
    // With many commands in flight a new one does not wake the I/O thread
    // (replies will); when no reply comes, its bounded sleep must send it.
    fail_on_unexpected_panics();
    let server = MockServer::start();
    server.set_responder("held", Responder::NoReply);
    let client = connected(&server);
    let held: Vec<PendingCommand> = (0..200)
        .map(|_| client.start_command("held", None).unwrap())
        .collect();
    assert!(wait_until(Duration::from_secs(5), || {
        server.received_commands(DEFAULT_CLUSTER).len() == 200
    }));
    for i in 0..20 {
        assert_eq!(
            client.send_command("echo", Some(json!({"i": i}))).unwrap(),
            Some(json!({"i": i}))
        );
    }
    assert_eq!(client.pending_commands(), 200);
    drop(held);
    disconnect(&client);
}

#[test]
fn dropping_a_pending_command_forgets_it() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    server.set_responder("held", Responder::NoReply);
    server.set_responder(
        "late",
        Responder::ok(json!(1)).delayed(Duration::from_millis(50)),
    );
    // Answered after the late reply went out: the client has read it by then.
    server.set_responder(
        "probe",
        Responder::ok(json!(2)).delayed(Duration::from_millis(150)),
    );
    let client = client_with(&server, |_| {});
    let rec = Recorder::attach(&client);
    connect(&client);
    rec.expect("connected", |cb| matches!(cb, Cb::Connected));
    let pending: Vec<_> = (0..10)
        .map(|_| client.start_command("held", None).unwrap())
        .collect();
    assert_eq!(client.pending_commands(), 10);
    drop(pending);
    assert_eq!(client.pending_commands(), 0);
    // A reply for a dropped command is dropped quietly.
    drop(client.start_command("late", None).unwrap());
    assert_eq!(client.pending_commands(), 0);
    assert_eq!(client.send_command("probe", None).unwrap(), Some(json!(2)));
    server
        .send_message(DEFAULT_CLUSTER, json!({"type": "sync"}))
        .unwrap();
    let cb = rec.next("message");
    assert!(
        matches!(cb, Cb::Message(_)),
        "no error before the message: {cb:?}"
    );
    assert_eq!(client.pending_commands(), 0);
    disconnect(&client);
}

#[test]
fn a_pending_command_times_out_on_its_own_deadline() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    server.set_responder("held", Responder::NoReply);
    let client = connected(&server);
    let short = client
        .start_command_with_timeout("held", None, Duration::from_millis(50))
        .unwrap();
    let long = client
        .start_command_with_timeout("echo", Some(json!("ok")), Duration::from_secs(5))
        .unwrap();
    assert_eq!(short.wait().unwrap_err().code(), Code::CommandTimeout);
    assert_eq!(long.wait().unwrap(), Some(json!("ok")));
    assert_eq!(client.pending_commands(), 0);
    disconnect(&client);
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct ContainerStats {
    cpu_percent: f64,
    memory_bytes: u64,
}

#[test]
fn send_command_as_reads_the_reply_into_a_type() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    server.set_responder(
        "get-container-stats",
        Responder::ok(json!({"cpuPercent": 12.5, "memoryBytes": 1024})),
    );
    server.set_responder(
        "nothing",
        Responder::Ok {
            data: None,
            delay: None,
        },
    );
    let client = connected(&server);
    let stats: ContainerStats = client.send_command_as("get-container-stats", None).unwrap();
    assert_eq!(
        stats,
        ContainerStats {
            cpu_percent: 12.5,
            memory_bytes: 1024
        }
    );
    let none: Option<ContainerStats> = client.send_command_as("nothing", None).unwrap();
    assert_eq!(none, None);
    let err = client
        .send_command_as::<ContainerStats>("echo", Some(json!({"wrong": true})))
        .unwrap_err();
    assert_eq!(err.code(), Code::ProtocolError, "{err}");
    let err = client
        .send_command_as::<ContainerStats>("unknown-cmd", None)
        .unwrap_err();
    assert_eq!(err.code(), Code::CommandRejected);
    disconnect(&client);
}

#[test]
fn clones_share_one_connection() {
    fail_on_unexpected_panics();
    let server = Arc::new(MockServer::start());
    let client = connected(&server);
    let clone = client.clone();
    assert!(clone.is_ready());
    assert_eq!(
        clone.send_command("echo", Some(json!(1))).unwrap(),
        Some(json!(1))
    );
    assert_eq!(server.stats().connections_total, 1);
    assert_eq!(clone.team_cluster_id(), DEFAULT_CLUSTER);
    clone.disconnect();
    assert!(!client.is_ready());
}
