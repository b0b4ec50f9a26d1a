//! `drain(timeout)` end to end: with a slow handler and a stream in
//! progress and a command in flight, new work is refused at once (commands,
//! emits, reverse commands with 503 DRAINING), the work in flight finishes,
//! then the client disconnects; a handler past the deadline is cut off.

mod e2e_support;

use std::io::Read;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use e2e_support::*;
use serde_json::json;
use volt_daemon_client::{
    ClusterDaemonClient, CommandResult, ConnectionState as S, DaemonClientErrorCode as Code,
    TeamClusterDaemonMessage,
};
use volt_testkit::{fail_on_unexpected_panics, MockServer, Responder, DEFAULT_CLUSTER};

/// A stream whose first read says it started and then waits for `go`.
struct GatedStream {
    started: Option<Sender<()>>,
    go: Receiver<()>,
    data: Option<Vec<u8>>,
}

impl Read for GatedStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(started) = self.started.take() {
            let _ = started.send(());
            let _ = self.go.recv_timeout(WAIT);
        }
        let Some(data) = self.data.take() else {
            return Ok(0);
        };
        buf[..data.len()].copy_from_slice(&data);
        Ok(data.len())
    }
}

/// Registers `slow` (waits for its gate) and `stream` (a gated stream);
/// returns (started, release) for each.
fn gated_handlers(client: &ClusterDaemonClient) -> (Receiver<()>, Sender<()>) {
    let (started_tx, started) = crossbeam_channel::unbounded();
    let (release, go) = crossbeam_channel::unbounded::<()>();
    let (s, g) = (started_tx.clone(), go.clone());
    client.register_handler_fn("slow", move |_, _| {
        let _ = s.send(());
        let _ = g.recv_timeout(WAIT);
        Ok(CommandResult::data(json!("slow done")))
    });
    let (s, g) = (started_tx, go);
    client.register_handler_fn("stream", move |_, _| {
        Ok(CommandResult::stream(GatedStream {
            started: Some(s.clone()),
            go: g.clone(),
            data: Some(b"the whole stream".to_vec()),
        }))
    });
    (started, release)
}

fn dispatch_on_a_thread(
    server: &MockServer,
    command: &'static str,
) -> Receiver<Result<volt_testkit::ReverseReply, volt_testkit::DispatchError>> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let handle = server.handle();
    std::thread::spawn(move || {
        let _ = tx.send(handle.dispatch(DEFAULT_CLUSTER, command, None, WAIT));
    });
    rx
}

#[test]
fn drain_refuses_new_work_at_once_and_lets_a_slow_handler_a_stream_and_a_command_finish() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    server.set_responder(
        "slow-cmd",
        Responder::Ok {
            data: Some(json!("late")),
            delay: Some(Duration::from_millis(300)),
        },
    );
    let client = client_with(&server, |_| {});
    let (started, release) = gated_handlers(&client);
    connect(&client);
    let slow = dispatch_on_a_thread(&server, "slow");
    let stream = dispatch_on_a_thread(&server, "stream");
    recv(&started, "a handler started", WAIT);
    recv(&started, "the other handler started", WAIT);
    let command = client.start_command("slow-cmd", None).unwrap();

    let c = client.clone();
    let (report_tx, report) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || report_tx.send(c.drain(WAIT)).unwrap());

    // Probed with emits, which never enter the table of commands in
    // flight: an echo probe sent just before the drain began was counted
    // among the drain's commands (commands_finished 2).
    let message: TeamClusterDaemonMessage =
        serde_json::from_value(json!({"type": "tunnel-close", "tunnelId": "t1"})).unwrap();
    let draining = |e: &volt_daemon_client::DaemonClientError| {
        e.code() == Code::SocketNotReady && e.to_string().contains("draining")
    };
    assert!(volt_testkit::wait_until(WAIT, || client
        .emit(&message)
        .is_err_and(|e| draining(&e))));
    let e = client.start_command("echo", None).unwrap_err();
    assert!(draining(&e), "{e}");
    let refused = recv(&dispatch_on_a_thread(&server, "slow"), "the refusal", WAIT).unwrap();
    assert_eq!(refused.status, 503);
    assert_eq!(
        refused.error.as_ref().map(|e| e.code.as_str()),
        Some("DRAINING")
    );
    assert!(
        report.try_recv().is_err(),
        "drain waits for the work in flight"
    );

    release.send(()).unwrap();
    release.send(()).unwrap();
    assert_eq!(command.wait().unwrap(), Some(json!("late")));
    let slow = recv(&slow, "the slow reply", WAIT).unwrap();
    assert_eq!((slow.status, slow.data), (200, Some(json!("slow done"))));
    let stream = recv(&stream, "the stream", WAIT).unwrap();
    assert_eq!(stream.stream.as_deref(), Some(&b"the whole stream"[..]));
    assert_eq!(stream.error, None);

    let report = recv(&report, "the drain report", WAIT);
    assert_eq!(report.handlers_finished, 2, "{report:?}");
    assert_eq!(report.commands_finished, 1, "{report:?}");
    assert_eq!(report.reverse_commands_refused, 1, "{report:?}");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        client.state(),
        S::Disconnected {
            reason: "io client disconnect".into()
        }
    );
    // Drained is not closed for good: the client connects again.
    connect(&client);
    assert!(client.start_command("echo", None).is_ok());
    disconnect(&client);
}

#[test]
fn a_handler_still_running_at_the_deadline_is_cut_off_and_the_client_disconnects() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |_| {});
    let (started, release) = gated_handlers(&client);
    // Released only once the client disconnected: past the deadline.
    client.on_state_change(move |c| {
        if matches!(c.state, S::Disconnected { .. }) {
            let _ = release.send(());
        }
    });
    connect(&client);
    let slow = dispatch_on_a_thread(&server, "slow");
    recv(&started, "the handler started", WAIT);
    let c = client.clone();
    let report = bounded("drain()", WAIT, move || c.drain(Duration::from_millis(100)));
    assert_eq!(report.handlers_cut_off, 1, "{report:?}");
    assert_eq!(report.handlers_finished, 0, "{report:?}");
    assert!(!report.is_clean());
    assert!(report.elapsed >= Duration::from_millis(100));
    assert!(!client.is_ready());
    let reply: Result<_, _> = recv(&slow, "the dispatch's end", WAIT);
    assert!(
        reply.is_err(),
        "its reply died with the connection: {reply:?}"
    );
}

#[test]
fn drain_with_nothing_in_flight_returns_a_clean_report_at_once_and_disconnects() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = connected(&server);
    let c = client.clone();
    let report = bounded("drain()", WAIT, move || c.drain(WAIT));
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.handlers_finished + report.commands_finished, 0);
    assert!(report.elapsed < Duration::from_secs(2), "{report:?}");
    assert!(!client.is_ready());
    // Never connected: nothing to wait for either.
    let idle = client_with(&server, |_| {});
    assert!(idle.drain(WAIT).is_clean());
    assert_eq!(idle.state(), S::Idle);
}
