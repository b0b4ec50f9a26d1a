//! Issue 7, soak (bounded): 100,000 commands from 8 threads while the server
//! cuts the transport every 12,500 commands. Every command is accounted for,
//! and afterwards no command is pending and every client thread is gone.

mod network_support;
mod reliability_support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use network_support::{client_threads, echo_worker, Outcomes};
use volt_daemon_client::{ClusterDaemonClient, CommandResult};
use volt_testkit::{
    client_options, fail_on_unexpected_panics, thread_count, unexpected_panics, wait_until,
    MockServer, DEFAULT_CLUSTER, DEFAULT_PASSWORD,
};

const TOTAL: u64 = 100_000;
const THREADS: u64 = 8;
const DROP_EVERY: u64 = 12_500;

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

    let outcomes = Outcomes::default();
    let drops = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (client, outcomes) = (&client, &outcomes);
            s.spawn(move || echo_worker(client, t, TOTAL, outcomes));
        }
        // Drops driven by progress, not by the clock.
        let (server, issued, drops) = (&server, &outcomes.issued, &drops);
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
    let (ok, not_ready, timeout) = outcomes.counts();
    let drops = drops.load(Ordering::SeqCst);
    eprintln!(
        "soak: {TOTAL} commands in {took:?}: {ok} ok, {not_ready} SOCKET_NOT_READY, \
         {timeout} COMMAND_TIMEOUT; {drops} transport drops; {} connections",
        server.stats().connections_total
    );
    assert_eq!(outcomes.issued.load(Ordering::SeqCst), TOTAL);
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
