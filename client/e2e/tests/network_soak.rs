//! Soak through a flaky network: 100,000 commands from 8 threads through a
//! FaultProxy that resets the connection at a random byte offset every 0.5
//! to 3 s (seeded). Every command has exactly one outcome, the counts add
//! up, and the client's threads and the process RSS stay flat.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use volt_daemon_client::{ClusterDaemonClient, CommandResult, DaemonClientErrorCode as Code};
use volt_testkit::{
    client_options, fail_on_unexpected_panics, unexpected_panics, wait_until, FaultProxy,
    MockServer, Toward, DEFAULT_CLUSTER, DEFAULT_PASSWORD, TEST_RNG_SEED,
};

const TOTAL: u64 = 100_000;
const THREADS: u64 = 8;

fn client_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|n| n.starts_with("volt-") && !n.starts_with("volt-mock"))
        .count()
}

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
    let mut options = client_options(&server, DEFAULT_CLUSTER, DEFAULT_PASSWORD);
    options.control_socket_url = proxy.url();
    let client = ClusterDaemonClient::new(options).unwrap();
    client.register_handler_fn("echo", |p, _| Ok(CommandResult::data(p)));
    client.connect().unwrap();
    assert!(wait_until(Duration::from_secs(10), || client.is_ready()));

    let issued = AtomicU64::new(0);
    let (ok, not_ready, timeout) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let samples = parking_lot::Mutex::new(Vec::new());
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
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
                            wait_until(Duration::from_secs(10), || client.is_ready());
                        }
                        Err(e) if e.code() == Code::CommandTimeout => {
                            timeout.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("unexpected outcome: {e}"),
                    }
                })
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
    let (ok, not_ready, timeout) = (
        ok.load(Ordering::SeqCst),
        not_ready.load(Ordering::SeqCst),
        timeout.load(Ordering::SeqCst),
    );
    let samples = samples.into_inner();
    let stats = proxy.stats();
    eprintln!(
        "network soak: {TOTAL} commands in {took:?}: {ok} ok, {not_ready} SOCKET_NOT_READY, \
         {timeout} COMMAND_TIMEOUT; {} resets, {} connections; (threads, RSS KiB) samples {samples:?}",
        stats.resets, stats.connections_total
    );
    assert_eq!(issued.load(Ordering::SeqCst), TOTAL);
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
