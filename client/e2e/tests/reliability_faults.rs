//! Issue 7, faults: what a daemon's caller sees when the network or the
//! server misbehaves. Every wait is on an event or a state with a deadline;
//! the tests of this binary run one at a time (`serial()`) because they count
//! threads and read the peak RSS of the process.

mod reliability_support;

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reliability_support::{record, serial, Ev};
use serde_json::json;
use volt_daemon_client::{
    Backoff, ClusterDaemonClient, ClusterDaemonClientOptions, CommandResult, ConnectionState,
    DaemonClientErrorCode as Code, DaemonCredentials, EnrollmentOptions, PendingCommand,
    StateChange,
};
use volt_testkit::{
    client_options, fail_on_unexpected_panics, thread_count, unexpected_panics, wait_until, Faults,
    MockServer, Responder, ServerEvent, DEFAULT_CLUSTER, DEFAULT_PASSWORD, TEST_RNG_SEED,
};

const LONG: Duration = Duration::from_secs(10);

fn echo_client(options: ClusterDaemonClientOptions) -> ClusterDaemonClient {
    let client = ClusterDaemonClient::new(options).unwrap();
    client.register_handler_fn("echo", |p, _| Ok(CommandResult::data(p)));
    client
}

fn assert_threads_back_to(baseline: usize) {
    assert!(
        wait_until(LONG, || our_threads() <= baseline),
        "threads: {} now ({:?}), {baseline} before the client",
        our_threads(),
        thread_names()
    );
}

/// The threads of this test: the client's and the mock's (`volt-*`), and
/// this thread with what it spawned (unnamed threads inherit its name).
/// libtest starts a thread per test while this one runs, so a raw
/// `thread_count()` would race with it; the tests waiting on `serial()`
/// have other names (the first 15 bytes of each test name are unique).
fn our_threads() -> usize {
    let me = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
    let me = me.trim();
    let n = thread_names()
        .iter()
        .filter(|n| n.starts_with("volt-") || n.as_str() == me)
        .count();
    assert!(n <= thread_count());
    n
}

/// The thread count to come back to, taken once no client thread of an
/// earlier test is still ending (a callback thread that called
/// `disconnect()` ends when its callback returns).
fn quiet_baseline() -> usize {
    assert!(wait_until(LONG, || !thread_names()
        .iter()
        .any(|n| n.starts_with("volt-") && !n.starts_with("volt-mock"))));
    our_threads()
}

/// The names of this process's threads.
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect()
}

/// Panics seen before a test (they are counted process-wide): each test
/// asserts that it added none.
fn panics_before() -> usize {
    fail_on_unexpected_panics();
    unexpected_panics()
}

fn assert_no_panics(before: usize) {
    assert_eq!(unexpected_panics(), before, "a thread panicked");
}

#[test]
fn server_restart_with_100_commands_in_flight_ends_each_once_without_waiting_for_timeouts() {
    let _serial = serial();
    let panics = panics_before();
    let server = MockServer::start();
    let addr = server.local_addr();
    server.set_responder("hang", Responder::NoReply);
    let baseline = quiet_baseline();
    let mut options = client_options(&server, DEFAULT_CLUSTER, DEFAULT_PASSWORD);
    options.command_timeout = Duration::from_secs(30);
    let client = echo_client(options);
    let events = record(&client);
    client.connect().unwrap();
    events.wait(LONG, Ev::is_connected);

    let pending: Vec<PendingCommand> = (0..100)
        .map(|i| {
            client
                .start_command("hang", Some(json!({ "i": i })))
                .unwrap()
        })
        .collect();
    let ids: std::collections::HashSet<String> =
        pending.iter().map(PendingCommand::request_id).collect();
    assert_eq!(ids.len(), 100, "request ids are unique");
    assert!(wait_until(LONG, || server
        .received_commands(DEFAULT_CLUSTER)
        .len()
        == 100));

    // The server process goes away with all 100 unanswered.
    let stopped_at = Instant::now();
    drop(server);
    let waiters: Vec<_> = pending
        .into_iter()
        .map(|p| std::thread::spawn(move || (p.wait(), Instant::now())))
        .collect();
    let mut not_ready = 0;
    for w in waiters {
        let (outcome, at) = w.join().unwrap();
        let err = outcome.expect_err("no reply can come from a dead server");
        assert_eq!(err.code(), Code::SocketNotReady, "{err}");
        assert!(
            at - stopped_at < Duration::from_secs(3),
            "a command waited {:?} after the connection was lost",
            at - stopped_at
        );
        not_ready += 1;
    }
    assert_eq!(not_ready, 100, "every command has exactly one outcome");
    assert_eq!(client.pending_commands(), 0);

    // A new server process on the same port.
    let mut restarted = None;
    assert!(wait_until(LONG, || {
        restarted = MockServer::builder().listen(addr).try_start().ok();
        restarted.is_some()
    }));
    let server = restarted.unwrap();
    events.wait(LONG, Ev::is_connected);
    server
        .expect_event(|e| matches!(e, ServerEvent::Registered { .. }), LONG)
        .unwrap();
    assert!(client.is_ready());
    assert_eq!(
        client
            .send_command("echo", Some(json!({"after": "restart"})))
            .unwrap(),
        Some(json!({"after": "restart"}))
    );
    let reply = server.dispatch(DEFAULT_CLUSTER, "echo", json!({"reverse": true}));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.data, Some(json!({"reverse": true})));
    assert_eq!(events.count(Ev::is_disconnected), 1, "{:?}", events.all());
    assert_eq!(events.count(Ev::is_connected), 2, "{:?}", events.all());

    client.disconnect();
    assert_threads_back_to(baseline);
    assert_no_panics(panics);
}

#[test]
fn transport_dropped_without_close_frame_fails_in_flight_commands_and_reconnects() {
    let _serial = serial();
    let panics = panics_before();
    let server = MockServer::start();
    server.set_responder("hang", Responder::NoReply);
    let mut options = client_options(&server, DEFAULT_CLUSTER, DEFAULT_PASSWORD);
    options.command_timeout = Duration::from_secs(30);
    let client = echo_client(options);
    let events = record(&client);
    client.connect().unwrap();
    let pending = client.start_command("hang", None).unwrap();
    server
        .expect_event(|e| matches!(e, ServerEvent::Command { .. }), LONG)
        .unwrap();
    let dropped_at = Instant::now();
    assert_eq!(server.drop_transport(DEFAULT_CLUSTER).unwrap(), 1);
    let err = pending.wait().unwrap_err();
    assert_eq!(err.code(), Code::SocketNotReady);
    assert!(dropped_at.elapsed() < Duration::from_secs(3));
    events.wait(LONG, |e| e.is_disconnected_with("transport close"));
    events.wait(LONG, Ev::is_connected);
    assert_eq!(
        client.send_command("echo", Some(json!(1))).unwrap(),
        Some(json!(1))
    );
    assert_eq!(
        server.dispatch(DEFAULT_CLUSTER, "echo", json!(2)).status,
        200
    );
    client.disconnect();
    assert_no_panics(panics);
}

#[test]
fn frozen_server_is_detected_as_ping_timeout_within_the_window_then_reconnected() {
    let _serial = serial();
    let panics = panics_before();
    let (interval, timeout) = (Duration::from_millis(300), Duration::from_millis(300));
    let server = MockServer::builder()
        .ping_interval(interval)
        .ping_timeout(timeout)
        .start();
    let client = echo_client(client_options(&server, DEFAULT_CLUSTER, DEFAULT_PASSWORD));
    let events = record(&client);
    client.connect().unwrap();
    events.wait(LONG, Ev::is_connected);
    let frozen_at = Instant::now();
    server.set_faults(Faults {
        stop_pings: true,
        ..Faults::default()
    });
    let (lost_at, _) = events.wait(LONG, |e| e.is_disconnected_with("ping timeout"));
    let took = lost_at - frozen_at;
    // The last ping came at most one interval before the freeze.
    assert!(
        took >= timeout - Duration::from_millis(50),
        "detected after {took:?}: too early"
    );
    assert!(
        took <= interval + timeout + Duration::from_millis(250),
        "detected after {took:?}: later than pingInterval + pingTimeout + margin"
    );
    assert!(!client.is_ready());
    server.clear_faults();
    events.wait(LONG, Ev::is_connected);
    assert_eq!(
        client.send_command("echo", Some(json!("thawed"))).unwrap(),
        Some(json!("thawed"))
    );
    client.disconnect();
    assert_no_panics(panics);
}

#[test]
fn refused_connections_back_off_by_the_seeded_rule_and_a_stable_connection_resets_it() {
    let _serial = serial();
    let panics = panics_before();
    let server = MockServer::start();
    let (base, max) = (Duration::from_millis(100), Duration::from_millis(1600));
    let mut options = client_options(&server, DEFAULT_CLUSTER, DEFAULT_PASSWORD);
    options.socket.reconnect_base_delay = base;
    options.socket.reconnect_max_delay = max;
    let factor = options.socket.randomization_factor;
    let client = echo_client(options);
    let events = record(&client);
    let changes = record_state_changes(&client);
    client.connect().unwrap();
    events.wait(LONG, Ev::is_connected);

    // The client seeds its backoff with rng_seed: the same delays, here.
    let mut rule = Backoff::new(base, max, factor, Some(TEST_RNG_SEED));
    const REFUSED: usize = 4;
    let expected: Vec<Duration> = (0..=REFUSED as u32).map(|k| rule.delay(k)).collect();

    server.set_faults(Faults {
        refuse_connections: REFUSED as u32,
        ..Faults::default()
    });
    server.drop_transport(DEFAULT_CLUSTER).unwrap();
    // Each failed attempt (and the loss) is followed by one backoff. Its
    // delay is the rule's, and it really waits that long: both ends of the
    // wait are read on the connection thread (`StateChange::at`), so a
    // callback that runs late does not skew them.
    let waits = wait_for_backoffs(&changes, REFUSED + 1);
    events.wait(LONG, Ev::is_connected);
    let delays: Vec<Duration> = waits.iter().map(|w| w.0).collect();
    assert_eq!(delays, expected, "the delays after a loss and 4 refusals");
    for (k, &(delay, waited)) in waits.iter().enumerate() {
        assert!(
            waited + Duration::from_millis(1) >= delay && waited <= delay + SLACK,
            "backoff {k}: waited {waited:?} for a delay of {delay:?}"
        );
    }

    // The connection stayed up (registered): the next loss starts at attempt 0.
    let reset = rule.delay(0);
    assert!(reset < expected[REFUSED] / 2, "{reset:?} vs {expected:?}");
    changes.lock().unwrap().clear();
    server.set_faults(Faults {
        refuse_connections: 1,
        ..Faults::default()
    });
    server.drop_transport(DEFAULT_CLUSTER).unwrap();
    let waits = wait_for_backoffs(&changes, 1);
    assert_eq!(
        waits[0].0, reset,
        "the first delay after a stable connection"
    );
    events.wait(LONG, Ev::is_connected);
    client.disconnect();
    assert_no_panics(panics);
}

/// How much later than its delay a backoff may end: a loaded 2-core VM
/// stalls threads for up to a few hundred ms.
const SLACK: Duration = Duration::from_millis(750);

type Changes = Arc<Mutex<Vec<StateChange>>>;

fn record_state_changes(client: &ClusterDaemonClient) -> Changes {
    let changes = Changes::default();
    let sink = changes.clone();
    client.on_state_change(move |c| sink.lock().unwrap().push(c.clone()));
    changes
}

/// The first `n` backoffs recorded: each `Reconnecting` delay, and how long
/// it lasted until the next `Connecting`.
fn wait_for_backoffs(changes: &Changes, n: usize) -> Vec<(Duration, Duration)> {
    let backoffs = |changes: &[StateChange]| -> Vec<(Duration, Duration)> {
        let mut out = Vec::new();
        for (i, c) in changes.iter().enumerate() {
            let ConnectionState::Reconnecting { delay, .. } = c.state else {
                continue;
            };
            let next = changes[i + 1..]
                .iter()
                .find(|n| matches!(n.state, ConnectionState::Connecting { .. }));
            if let Some(next) = next {
                out.push((delay, next.at - c.at));
            }
        }
        out
    };
    assert!(
        wait_until(LONG, || backoffs(&changes.lock().unwrap()).len() >= n),
        "{n} backoffs: {:?}",
        changes.lock().unwrap()
    );
    let mut all = backoffs(&changes.lock().unwrap());
    all.truncate(n);
    all
}

#[test]
fn disconnect_in_backoff_returns_promptly_and_nothing_reconnects() {
    let _serial = serial();
    let panics = panics_before();
    let server = MockServer::start();
    let baseline = quiet_baseline();
    let mut options = client_options(&server, DEFAULT_CLUSTER, DEFAULT_PASSWORD);
    options.socket.reconnect_base_delay = Duration::from_secs(20);
    options.socket.reconnect_max_delay = Duration::from_secs(20);
    let client = echo_client(options);
    let events = record(&client);
    client.connect().unwrap();
    server.drop_transport(DEFAULT_CLUSTER).unwrap();
    events.wait(LONG, Ev::is_disconnected);
    let t = Instant::now();
    client.disconnect();
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_threads_back_to(baseline);
    assert_eq!(server.stats().connections_total, 1, "nothing reconnected");
    assert!(!client.is_ready());
    assert_eq!(
        client.send_command("echo", None).unwrap_err().code(),
        Code::SocketNotReady
    );
    assert_no_panics(panics);
}

#[test]
fn disconnect_in_connect_to_a_silent_server_returns_promptly_and_joins_everything() {
    let _serial = serial();
    let panics = panics_before();
    // Accepts TCP, never answers the WebSocket upgrade.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let baseline = quiet_baseline();
    let mut options = ClusterDaemonClientOptions::new(&url, &url, DaemonCredentials::new("c", "p"));
    options.socket.connect_timeout = Duration::from_secs(30);
    let client = ClusterDaemonClient::new(options).unwrap();
    let c = client.clone();
    let connecting = std::thread::spawn(move || {
        let r = c.connect();
        (r, Instant::now())
    });
    let (conn, _) = listener.accept().unwrap();
    let t = Instant::now();
    client.disconnect();
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let (result, returned_at) = connecting.join().unwrap();
    assert!(returned_at - t < Duration::from_secs(1));
    assert_eq!(result.unwrap_err().code(), Code::SocketConnectionFailed);
    assert_threads_back_to(baseline);
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "nothing reconnected");
    drop(conn);
    assert_no_panics(panics);
}

#[test]
fn disconnect_in_enrollment_returns_promptly_and_connect_fails_within_its_timeout() {
    let _serial = serial();
    let panics = panics_before();
    // Accepts TCP, never answers HTTP.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = MockServer::start();
    let baseline = quiet_baseline();
    let mut options = ClusterDaemonClientOptions::new(
        &url,
        server.url(),
        DaemonCredentials::new(DEFAULT_CLUSTER, DEFAULT_PASSWORD).with_enrollment_token("tok"),
    );
    let mut enrollment = EnrollmentOptions::new("/enroll");
    enrollment.timeout = Duration::from_secs(2);
    options.enrollment = Some(enrollment);
    let client = ClusterDaemonClient::new(options).unwrap();
    let c = client.clone();
    let started = Instant::now();
    let connecting = std::thread::spawn(move || c.connect());
    let (conn, _) = listener.accept().unwrap();
    let t = Instant::now();
    client.disconnect();
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let err = connecting.join().unwrap().unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2) + Duration::from_secs(2),
        "connect() is bounded by enrollment.timeout"
    );
    assert!(
        matches!(
            err.code(),
            Code::EnrollmentFailed | Code::SocketConnectionFailed
        ),
        "{err}"
    );
    assert_threads_back_to(baseline);
    assert_eq!(
        server.stats().connections_total,
        0,
        "the socket never opened"
    );
    assert!(!client.is_ready());
    drop(conn);
    assert_no_panics(panics);
}

/// Gives the callback the client to disconnect once, then lets go of it
/// (no reference cycle through the callback list).
fn disconnect_from_callback(
    slot: &Arc<Mutex<Option<ClusterDaemonClient>>>,
    took: &crossbeam_channel::Sender<Duration>,
) {
    if let Some(c) = slot.lock().unwrap().take() {
        let t = Instant::now();
        c.disconnect();
        let _ = took.send(t.elapsed());
    }
}

#[test]
fn on_error_callback_calling_disconnect_returns_promptly_and_joins_every_thread() {
    let _serial = serial();
    let panics = panics_before();
    let server = MockServer::start();
    let baseline = quiet_baseline();
    let client = echo_client(client_options(&server, DEFAULT_CLUSTER, DEFAULT_PASSWORD));
    let slot = Arc::new(Mutex::new(Some(client.clone())));
    let (tx, rx) = crossbeam_channel::bounded(1);
    let s = slot.clone();
    client.on_error(move |_| disconnect_from_callback(&s, &tx));
    client.connect().unwrap();
    server
        .send_raw_text(DEFAULT_CLUSTER, r#"42/daemon,["no-such-event",{}]"#)
        .unwrap();
    let took = rx
        .recv_timeout(LONG)
        .expect("on_error ran and disconnected");
    assert!(took < Duration::from_secs(1), "{took:?}");
    server
        .expect_event(|e| matches!(e, ServerEvent::Disconnected { .. }), LONG)
        .unwrap();
    drop(client);
    drop(slot);
    assert_threads_back_to(baseline);
    assert_eq!(server.stats().connections_total, 1, "nothing reconnected");
    assert_no_panics(panics);
}

#[test]
fn on_disconnected_callback_calling_disconnect_returns_promptly_and_nothing_reconnects() {
    let _serial = serial();
    let panics = panics_before();
    let server = MockServer::start();
    let baseline = quiet_baseline();
    let mut options = client_options(&server, DEFAULT_CLUSTER, DEFAULT_PASSWORD);
    options.socket.reconnect_base_delay = Duration::from_secs(5);
    options.socket.reconnect_max_delay = Duration::from_secs(5);
    let client = echo_client(options);
    let slot = Arc::new(Mutex::new(Some(client.clone())));
    let (tx, rx) = crossbeam_channel::bounded(1);
    let s = slot.clone();
    client.on_disconnected(move |_| disconnect_from_callback(&s, &tx));
    client.connect().unwrap();
    server.drop_transport(DEFAULT_CLUSTER).unwrap();
    let took = rx
        .recv_timeout(LONG)
        .expect("on_disconnected ran and disconnected");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(!client.is_ready());
    drop(client);
    drop(slot);
    assert_threads_back_to(baseline);
    assert_eq!(server.stats().connections_total, 1, "nothing reconnected");
    assert_no_panics(panics);
}

#[test]
fn flooded_handler_pool_answers_503_busy_for_the_excess_and_keeps_serving() {
    let _serial = serial();
    let panics = panics_before();
    let server = MockServer::start();
    let mut options = client_options(&server, DEFAULT_CLUSTER, DEFAULT_PASSWORD);
    options.handlers.threads = 2;
    options.handlers.queue_capacity = 4;
    let client = echo_client(options);
    let (gate_tx, gate_rx) = crossbeam_channel::unbounded::<()>();
    let entered = Arc::new(AtomicUsize::new(0));
    let e = entered.clone();
    client.register_handler_fn("slow", move |p, _| {
        e.fetch_add(1, Ordering::SeqCst);
        let _ = gate_rx.recv_timeout(Duration::from_secs(20));
        Ok(CommandResult::data(p))
    });
    client.connect().unwrap();
    const FLOOD: usize = 100;
    let replies: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..FLOOD)
            .map(|i| {
                let server = &server;
                s.spawn(move || {
                    server
                        .dispatch_with_timeout(
                            DEFAULT_CLUSTER,
                            "slow",
                            json!(i),
                            Duration::from_secs(30),
                        )
                        .unwrap()
                })
            })
            .collect();
        // The excess is answered at once; the accepted ones wait for the gate.
        assert!(wait_until(LONG, || {
            server
                .events()
                .iter()
                .filter(
                    |e| matches!(e, ServerEvent::ReverseReply { reply, .. } if reply.status == 503),
                )
                .count()
                >= FLOOD - 6
        }));
        assert!(wait_until(LONG, || entered.load(Ordering::SeqCst) == 2));
        for _ in 0..FLOOD {
            gate_tx.send(()).unwrap();
        }
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let busy: Vec<_> = replies.iter().filter(|r| r.status == 503).collect();
    let ok = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(
        busy.len() + ok,
        FLOOD,
        "every reverse command got one reply"
    );
    assert!(
        (4..=6).contains(&ok),
        "accepted: {ok} (2 workers + queue of 4)"
    );
    for r in &busy {
        assert_eq!(r.error.as_ref().unwrap().code, "BUSY");
    }
    // Still serving, with the pool free again.
    let r = server.dispatch(DEFAULT_CLUSTER, "echo", json!("after"));
    assert_eq!((r.status, r.data), (200, Some(json!("after"))));
    assert!(client.is_ready());
    client.disconnect();
    assert_no_panics(panics);
}

#[test]
fn blocked_on_message_callback_does_not_stop_pongs() {
    let _serial = serial();
    let panics = panics_before();
    let interval = Duration::from_millis(100);
    let server = MockServer::builder()
        .ping_interval(interval)
        .ping_timeout(Duration::from_millis(100))
        .start();
    let client = echo_client(client_options(&server, DEFAULT_CLUSTER, DEFAULT_PASSWORD));
    let events = record(&client);
    let (entered_tx, entered_rx) = crossbeam_channel::bounded(1);
    let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(1);
    client.on_message(move |_| {
        let _ = entered_tx.try_send(());
        let _ = release_rx.recv_timeout(Duration::from_secs(20));
    });
    client.connect().unwrap();
    server
        .send_message(
            DEFAULT_CLUSTER,
            json!({"type": "session-close", "sessionId": "s1"}),
        )
        .unwrap();
    entered_rx.recv_timeout(LONG).unwrap();
    // Ten ping intervals with the callback thread blocked: pongs keep going.
    let pongs = |s: &MockServer| {
        s.all_frames()
            .iter()
            .filter(|f| {
                f.dir == volt_testkit::Direction::In
                    && f.frame == volt_testkit::RawFrame::Text("3".into())
            })
            .count()
    };
    let before = pongs(&server);
    assert!(wait_until(LONG, || pongs(&server) >= before + 10));
    assert!(client.is_ready());
    assert_eq!(server.stats().connections_total, 1);
    assert!(!server
        .events()
        .iter()
        .any(|e| matches!(e, ServerEvent::Disconnected { .. })));
    assert_eq!(events.count(Ev::is_disconnected), 0);
    // Commands go through meanwhile too.
    assert_eq!(
        client.send_command("echo", Some(json!(7))).unwrap(),
        Some(json!(7))
    );
    release_tx.send(()).unwrap();
    client.disconnect();
    assert_no_panics(panics);
}

/// Peak resident set size of this process, in KiB.
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// Resets VmHWM to the current RSS (Linux >= 4.0); false when not allowed.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[test]
fn server_that_stops_reading_makes_commands_time_out_with_bounded_memory() {
    let _serial = serial();
    let panics = panics_before();
    let server = MockServer::builder().record_frames(false).start();
    let mut options = client_options(&server, DEFAULT_CLUSTER, DEFAULT_PASSWORD);
    options.command_timeout = Duration::from_millis(500);
    let client = echo_client(options);
    client.connect().unwrap();
    // stopPings also stops reading; its default 45 s ping window outlasts the test.
    server.set_faults(Faults {
        stop_pings: true,
        ..Faults::default()
    });
    let reset = reset_peak_rss();
    let before = vm_hwm_kib();
    const PAYLOAD: usize = 4096;
    const THREADS: usize = 8;
    let pad = "x".repeat(PAYLOAD);
    let started = Instant::now();
    let (queued, refused) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (client, pad) = (&client, &pad);
                s.spawn(move || {
                    let (mut queued, mut refused) = (0u64, 0u64);
                    // Keep pushing well past every buffer: 3 timeouts each.
                    while refused < 3 {
                        let t = Instant::now();
                        match client.start_command("flood", Some(json!({ "pad": pad }))) {
                            Ok(p) => {
                                drop(p);
                                queued += 1;
                            }
                            Err(e) => {
                                assert_eq!(e.code(), Code::CommandTimeout, "{e}");
                                assert!(t.elapsed() < Duration::from_secs(2));
                                refused += 1;
                            }
                        }
                        assert!(started.elapsed() < Duration::from_secs(30), "never blocked");
                    }
                    (queued, refused)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    });
    // A plain send_command on the stuck connection fails the same way.
    let err = client.send_command("one-more", None).unwrap_err();
    assert_eq!(err.code(), Code::CommandTimeout);
    let peak_growth_mib = vm_hwm_kib().saturating_sub(before) / 1024;
    let queued_mib = queued * PAYLOAD as u64 / (1024 * 1024);
    eprintln!(
        "backpressure: {queued} commands queued ({queued_mib} MiB of payload), {refused} \
         refused with COMMAND_TIMEOUT; peak RSS grew by {peak_growth_mib} MiB \
         (VmHWM reset: {reset})"
    );
    // The outbox holds 4096 events (16 MiB of these), plus the socket's
    // buffers: generous, but bounded.
    assert!(
        peak_growth_mib < 96,
        "peak RSS grew by {peak_growth_mib} MiB"
    );
    assert!(client.is_ready(), "the connection itself is still up");
    server.clear_faults();
    assert_eq!(
        client
            .send_command_with_timeout("echo", Some(json!("drained")), LONG)
            .unwrap(),
        Some(json!("drained"))
    );
    assert_eq!(client.pending_commands(), 0);
    client.disconnect();
    assert_no_panics(panics);
}
