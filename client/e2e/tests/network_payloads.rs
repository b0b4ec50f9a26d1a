//! Big payloads through a [`FaultProxy`]: a 1 MiB binary reply, a stream
//! and messages through 1-byte segments; a binary reply cut by a reset at
//! swept byte offsets; a 1 MiB stream through a 64 KiB/s link while the
//! server keeps pinging. Every wait is on an event or a state with a
//! deadline.
//!
//! [`FaultProxy`]: volt_testkit::FaultProxy

mod network_support;
mod reliability_support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use network_support::{pattern, Rig, LONG};
use reliability_support::{serial, Ev};
use serde_json::json;
use volt_daemon_client::{CommandResult, TeamClusterDaemonMessage as Msg};
use volt_testkit::{
    fail_on_unexpected_panics, unexpected_panics, wait_until, Direction, DispatchError, MockServer,
    RawFrame, ServerEvent, Toward, DEFAULT_CLUSTER,
};

const MIB: usize = 1 << 20;
/// For megabytes through 1-byte segments or a slow link on a loaded machine.
const SLOW: Duration = Duration::from_secs(120);

#[test]
fn one_byte_slices_both_ways_carry_a_1mib_binary_reply_a_stream_and_a_message_each_way() {
    let _serial = serial();
    const STREAM: usize = 256 * 1024;
    let server = MockServer::builder().max_payload(2 * MIB).start();
    let Rig {
        client,
        events,
        proxy,
        server,
    } = Rig::connect(server, |proxy| proxy.slice(Toward::Both, 1, Duration::ZERO));
    client.register_handler_fn("body", |_, _| Ok(CommandResult::body(pattern(MIB))));
    client.register_handler_fn("stream", |_, _| {
        Ok(CommandResult::stream(std::io::Cursor::new(pattern(STREAM))))
    });

    let started = Instant::now();
    let reply = server
        .dispatch_with_timeout(DEFAULT_CLUSTER, "body", json!(null), SLOW)
        .unwrap();
    assert_eq!(reply.status, 200);
    assert!(
        reply.body.as_deref() == Some(&pattern(MIB)[..]),
        "body differs"
    );
    let body_took = started.elapsed();
    let reply = server
        .dispatch_with_timeout(DEFAULT_CLUSTER, "stream", json!(null), SLOW)
        .unwrap();
    assert_eq!((reply.status, reply.error), (200, None));
    assert!(reply.stream == Some(pattern(STREAM)), "stream differs");
    let stream_took = started.elapsed() - body_took;

    let message = json!({"type": "daemon-news", "sliced": true});
    client.emit(&Msg::Other(message.clone())).unwrap();
    server
        .expect_event(|e| matches!(e, ServerEvent::Message { .. }), LONG)
        .unwrap();
    assert_eq!(server.received_messages(DEFAULT_CLUSTER), vec![message]);
    let message = json!({"type": "server-news", "n": 1});
    server.send_message(DEFAULT_CLUSTER, &message).unwrap();
    match events.wait(LONG, Ev::is_message).1 {
        Ev::Message(m) => assert_eq!(serde_json::to_value(m).unwrap(), message),
        other => panic!("{other:?}"),
    }
    eprintln!(
        "1-byte slices: 1 MiB body in {body_took:?}, 256 KiB stream in {stream_took:?}; {:?}",
        proxy.stats()
    );
    assert!(proxy.stats().bytes_to_server > (MIB + STREAM) as u64);
    assert_eq!(proxy.stats().connections_total, 1);
    assert_eq!(events.count(Ev::is_disconnected), 0, "{:?}", events.all());
    client.disconnect();
}

/// Bytes each way that one `body` reverse command takes on the wire.
fn exchange_bytes(rig: &Rig, body: usize) -> (u64, u64) {
    let before = rig.proxy.stats();
    let reply = rig.server.dispatch(DEFAULT_CLUSTER, "body", json!(null));
    assert_eq!(reply.body.map(|b| b.len()), Some(body));
    let after = rig.proxy.stats();
    (
        after.bytes_to_client - before.bytes_to_client,
        after.bytes_to_server - before.bytes_to_server,
    )
}

/// One sweep step: the connection is reset `offset` bytes into the next
/// reverse command's bytes `toward` (less than the exchange takes), so the
/// dispatch fails as a disconnection (never a reply, never a corrupt one),
/// and the client reconnects.
fn cut_one_exchange(rig: &Rig, toward: Toward, offset: u64) {
    let resets = rig.proxy.stats().resets;
    rig.proxy.reset_after(toward, offset);
    match rig
        .server
        .dispatch_with_timeout(DEFAULT_CLUSTER, "body", json!(null), LONG)
    {
        Err(DispatchError::Disconnected(_)) => {}
        other => panic!("{toward:?} {offset}: {other:?}"),
    }
    assert!(
        wait_until(LONG, || rig.proxy.stats().resets == resets + 1),
        "{toward:?} {offset}: {:?}",
        rig.proxy.stats()
    );
    rig.events.wait(LONG, Ev::is_disconnected);
    rig.events.wait(LONG, Ev::is_connected);
}

#[test]
fn reset_inside_a_binary_reply_at_swept_offsets_either_way_has_one_outcome_per_dispatch() {
    let _serial = serial();
    fail_on_unexpected_panics();
    const BODY: usize = 1500;
    let rig = Rig::connect_with(
        MockServer::builder().record_frames(false).start(),
        |_| {},
        |o| {
            o.heartbeat.interval = Duration::from_secs(3600);
            o.socket.reconnect_base_delay = Duration::from_millis(5);
            o.socket.reconnect_max_delay = Duration::from_millis(20);
        },
    );
    let ran = Arc::new(AtomicU64::new(0));
    let r = ran.clone();
    rig.client.register_handler_fn("body", move |_, _| {
        r.fetch_add(1, Ordering::SeqCst);
        Ok(CommandResult::body(pattern(BODY)))
    });
    let (to_client, to_server) = exchange_bytes(&rig, BODY);
    assert!(to_server > BODY as u64, "{to_client} {to_server}");
    let started = Instant::now();
    let mut cuts = 0;
    for (toward, size, step) in [
        (Toward::Client, to_client, 1),
        (Toward::Server, to_server, 7),
    ] {
        for offset in (0..size).step_by(step) {
            let ran_before = ran.load(Ordering::SeqCst);
            cut_one_exchange(&rig, toward, offset);
            // Cut on its way to the client, the command never ran; cut on
            // its way back, it ran once and was not run again.
            let expected = ran_before + u64::from(toward == Toward::Server);
            assert!(
                wait_until(LONG, || ran.load(Ordering::SeqCst) >= expected),
                "{toward:?} {offset}"
            );
            assert_eq!(ran.load(Ordering::SeqCst), expected, "{toward:?} {offset}");
            cuts += 1;
        }
    }
    assert_eq!(exchange_bytes(&rig, BODY), (to_client, to_server));
    eprintln!(
        "binary reply sweep: {cuts} cuts ({to_client} bytes toward the client, \
         {to_server} toward the server) in {:?}",
        started.elapsed()
    );
    // Exactly the two whole exchanges reached the server: no late or
    // duplicate reply after a reconnection.
    let replies = rig
        .server
        .events()
        .into_iter()
        .filter(|e| matches!(e, ServerEvent::ReverseReply { .. }))
        .count();
    assert_eq!(replies, 2);
    assert_eq!(rig.client.pending_commands(), 0);
    assert_eq!(unexpected_panics(), 0);
    rig.client.disconnect();
}

/// Pings sent and pongs received so far on the cluster's connections.
fn pings_and_pongs(server: &MockServer) -> (usize, usize) {
    let frames = server.frames(DEFAULT_CLUSTER);
    let count = |dir: Direction, text: &str| {
        frames
            .iter()
            .filter(|f| f.dir == dir && matches!(&f.frame, RawFrame::Text(t) if t == text))
            .count()
    };
    (count(Direction::Out, "2"), count(Direction::In, "3"))
}

/// Samples [`pings_and_pongs`] every 20 ms until `done` and every ping
/// sent by then is answered (or [`LONG`] after `done`), and returns the
/// longest time from a ping sent to its pong received (each pong answers
/// the oldest unanswered ping), and how many pongs came before `done`.
fn longest_pong_wait(server: &MockServer, done: &AtomicBool) -> (Duration, usize) {
    let (pings0, pongs0) = pings_and_pongs(server);
    let (mut sent, mut longest) = (Vec::new(), Duration::ZERO);
    let (mut pings, mut pongs, mut pongs_before_done) = (pings0, pongs0, None);
    let mut give_up = None;
    loop {
        let (now_pings, now_pongs) = pings_and_pongs(server);
        let now = Instant::now();
        sent.extend((pings..now_pings).map(|_| now));
        pings = now_pings;
        for k in pongs..now_pongs {
            if let Some(at) = sent.get(k - pongs0) {
                longest = longest.max(now - *at);
            }
        }
        pongs = now_pongs;
        if done.load(Ordering::SeqCst) {
            let ended = *pongs_before_done.get_or_insert(pongs - pongs0);
            let give_up = *give_up.get_or_insert(now + LONG);
            if pongs >= pings || now > give_up {
                return (longest, ended);
            }
        }
        std::thread::sleep(Duration::from_millis(20)); // a sampling period, not a wait
    }
}

#[test]
fn a_1mib_stream_at_64kib_per_s_keeps_the_connection_its_pong_delayed_behind_the_stream_within_ping_timeout(
) {
    let _serial = serial();
    let interval = Duration::from_millis(500);
    // Long enough for the pong that waits behind the whole stream (see
    // RELIABILITY.md, "Known limit: pongs behind a slow upload").
    let timeout = Duration::from_secs(40);
    let server = MockServer::builder()
        .ping_interval(interval)
        .ping_timeout(timeout)
        .start();
    let Rig {
        client,
        events,
        proxy,
        server,
    } = Rig::connect(server, |proxy| proxy.bandwidth(Toward::Both, 64 * 1024));
    client.register_handler_fn("stream", |_, _| {
        Ok(CommandResult::stream(std::io::Cursor::new(pattern(MIB))))
    });
    let done = AtomicBool::new(false);
    let started = Instant::now();
    let (reply, (longest, pongs)) = std::thread::scope(|s| {
        let sampler = s.spawn(|| longest_pong_wait(&server, &done));
        let reply = server.dispatch_with_timeout(DEFAULT_CLUSTER, "stream", json!(null), SLOW);
        done.store(true, Ordering::SeqCst);
        (reply, sampler.join().unwrap())
    });
    let took = started.elapsed();
    eprintln!(
        "1 MiB stream at 64 KiB/s in {took:?}: {pongs} pongs meanwhile, \
         the longest ping-to-pong {longest:?}; {:?}",
        proxy.stats()
    );
    let reply = reply.unwrap();
    assert_eq!((reply.status, reply.error), (200, None));
    assert!(reply.stream == Some(pattern(MIB)), "stream differs");
    // Ping/pong went on: every ping was answered, within pingTimeout (the
    // server would have closed the connection otherwise).
    assert!(longest > Duration::ZERO && longest < timeout, "{longest:?}");
    assert_eq!(proxy.stats().connections_total, 1);
    assert_eq!(events.count(Ev::is_disconnected), 0, "{:?}", events.all());
    client.disconnect();
}
