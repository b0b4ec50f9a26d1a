//! Soak through a flaky network: 100,000 commands from 8 threads through a
//! FaultProxy that resets the connection at a random byte offset every 0.5
//! to 3 s (seeded). Every command has exactly one outcome, the counts add
//! up, and the client's threads and the process RSS stay flat.

mod network_support;
mod reliability_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use network_support::{client_threads, client_via, echo_worker, Outcomes};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use volt_testkit::{
    fail_on_unexpected_panics, unexpected_panics, wait_until, FaultProxy, MockServer, Toward,
    TEST_RNG_SEED,
};

const TOTAL: u64 = 100_000;
const THREADS: u64 = 8;

/// Resident set size in KiB (`VmRSS` of /proc/self/status).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn soak_100k_commands_through_random_resets_has_one_outcome_each_and_flat_threads_and_rss() {
    fail_on_unexpected_panics();
    let server = MockServer::builder()
        .record_frames(false)
        .history_limit(1000)
        .start();
    let proxy = FaultProxy::start(server.local_addr()).unwrap();
    let client = client_via(&proxy, &server, |_| {});
    client.connect().unwrap();
    assert!(wait_until(Duration::from_secs(10), || client.is_ready()));

    let outcomes = Outcomes::default();
    let samples = parking_lot::Mutex::new(Vec::new());
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (client, outcomes) = (&client, &outcomes);
                s.spawn(move || echo_worker(client, t, TOTAL, outcomes))
            })
            .collect();
        // The flaky network: a reset at a seeded random offset after a
        // seeded random 0.5 to 3 s; the wait ends early when the work is done.
        let (proxy, samples, done_rx) = (&proxy, &samples, &done_rx);
        s.spawn(move || {
            let mut rng = StdRng::seed_from_u64(TEST_RNG_SEED);
            loop {
                samples.lock().push((client_threads(), rss_kib()));
                let wait = Duration::from_millis(rng.random_range(500..=3000));
                if done_rx.recv_timeout(wait).is_ok() {
                    return;
                }
                let toward = if rng.random() {
                    Toward::Server
                } else {
                    Toward::Client
                };
                proxy.reset_after(toward, rng.random_range(0..4096));
            }
        });
        for w in workers {
            w.join().unwrap();
        }
        done_tx.send(()).unwrap();
    });
    let took = started.elapsed();
    let (ok, not_ready, timeout) = outcomes.counts();
    let samples = samples.into_inner();
    let stats = proxy.stats();
    eprintln!(
        "network soak: {TOTAL} commands in {took:?}: {ok} ok, {not_ready} SOCKET_NOT_READY, \
         {timeout} COMMAND_TIMEOUT; {} resets, {} connections; (threads, RSS KiB) samples {samples:?}",
        stats.resets, stats.connections_total
    );
    assert_eq!(outcomes.issued.load(Ordering::SeqCst), TOTAL);
    assert_eq!(
        ok + not_ready + timeout,
        TOTAL,
        "every command has one outcome"
    );
    assert!(
        stats.resets >= 1,
        "the network was cut {} times",
        stats.resets
    );
    assert!(ok > TOTAL * 9 / 10, "most commands succeed: {ok}");
    // Flat: never more than conn, heartbeat, events and 4 handlers, and the
    // RSS at the end within 32 MiB of the first sample.
    assert!(samples.iter().all(|(t, _)| *t <= 7), "{samples:?}");
    let (first, last) = (samples[0].1, rss_kib());
    assert!(last <= first + 32 * 1024, "RSS {first} KiB -> {last} KiB");
    assert!(wait_until(Duration::from_secs(10), || client.is_ready()));
    assert_eq!(client.pending_commands(), 0);
    client.disconnect();
    assert!(wait_until(Duration::from_secs(10), || client_threads() == 0));
    assert_eq!(unexpected_panics(), 0);
}
