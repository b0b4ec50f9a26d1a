//! Issue 7, soak (bounded): 100,000 commands from 8 threads while the server
//! cuts the transport every 12,500 commands. Every command is accounted for,
//! and afterwards no command is pending and every client thread is gone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use volt_daemon_client::{ClusterDaemonClient, CommandResult, DaemonClientErrorCode as Code};
use volt_testkit::{
    client_options, fail_on_unexpected_panics, thread_count, unexpected_panics, wait_until,
    MockServer, DEFAULT_CLUSTER, DEFAULT_PASSWORD,
};

const TOTAL: u64 = 100_000;
const THREADS: u64 = 8;
const DROP_EVERY: u64 = 12_500;

fn client_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|n| {
            let n = n.trim();
            n.starts_with("volt-") && !n.starts_with("volt-mock")
        })
        .count()
}

#[test]
fn soak_100k_commands_from_8_threads_through_transport_drops_accounts_for_every_command() {
    fail_on_unexpected_panics();
    let server = MockServer::builder()
        .record_frames(false)
        .history_limit(1000)
        .start();
    let threads_before = thread_count();
    let client =
        ClusterDaemonClient::new(client_options(&server, DEFAULT_CLUSTER, DEFAULT_PASSWORD))
            .unwrap();
    client.register_handler_fn("echo", |p, _| Ok(CommandResult::data(p)));
    client.connect().unwrap();

    let issued = AtomicU64::new(0);
    let (ok, not_ready, timeout) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let drops = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (client, issued, ok, not_ready, timeout) =
                (&client, &issued, &ok, &not_ready, &timeout);
            s.spawn(move || loop {
                let n = issued.fetch_add(1, Ordering::SeqCst);
                if n >= TOTAL {
                    issued.fetch_sub(1, Ordering::SeqCst);
                    return;
                }
                match client.send_command("echo", Some(json!({ "t": t, "n": n }))) {
                    Ok(data) => {
                        assert_eq!(data, Some(json!({ "t": t, "n": n })), "a crossed reply");
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.code() == Code::SocketNotReady => {
                        not_ready.fetch_add(1, Ordering::Relaxed);
                        // Reconnecting: wait for it rather than spin.
                        wait_until(Duration::from_secs(10), || client.is_ready());
                    }
                    Err(e) if e.code() == Code::CommandTimeout => {
                        timeout.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("unexpected outcome: {e}"),
                }
            });
        }
        // Drops driven by progress, not by the clock.
        let (server, issued, drops) = (&server, &issued, &drops);
        s.spawn(move || {
            let mut next = DROP_EVERY;
            while next < TOTAL {
                if !wait_until(Duration::from_secs(60), || {
                    issued.load(Ordering::SeqCst) >= next
                }) {
                    return;
                }
                if server.drop_transport(DEFAULT_CLUSTER).unwrap_or(0) > 0 {
                    drops.fetch_add(1, Ordering::SeqCst);
                }
                next += DROP_EVERY;
            }
        });
    });
    let took = started.elapsed();
    let (ok, not_ready, timeout) = (
        ok.load(Ordering::SeqCst),
        not_ready.load(Ordering::SeqCst),
        timeout.load(Ordering::SeqCst),
    );
    let drops = drops.load(Ordering::SeqCst);
    eprintln!(
        "soak: {TOTAL} commands in {took:?}: {ok} ok, {not_ready} SOCKET_NOT_READY, \
         {timeout} COMMAND_TIMEOUT; {drops} transport drops; {} connections",
        server.stats().connections_total
    );
    assert_eq!(issued.load(Ordering::SeqCst), TOTAL);
    assert_eq!(
        ok + not_ready + timeout,
        TOTAL,
        "every command accounted for"
    );
    assert!(drops >= 5, "the transport was cut {drops} times");
    assert!(ok > TOTAL * 9 / 10, "most commands succeed: {ok}");
    assert!(wait_until(Duration::from_secs(10), || client.is_ready()));
    assert_eq!(
        client.pending_commands(),
        0,
        "nothing left in the pending table"
    );
    assert!(
        client_threads() <= 4 + 1 + 1 + 1,
        "conn, heartbeat, events, 4 handlers"
    );
    client.disconnect();
    assert!(
        wait_until(Duration::from_secs(10), || client_threads() == 0
            && thread_count() <= threads_before),
        "threads: {} now, {threads_before} before",
        thread_count()
    );
    assert_eq!(unexpected_panics(), 0);
}
