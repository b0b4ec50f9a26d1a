//! The client end to end against the in-process mock server: one command
//! in flight, pipelined windows from one and from 8 threads, reverse
//! commands (server -> handler -> reply), binary bodies and streams.

use std::collections::VecDeque;
use std::io::Cursor;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::Value;
use volt_benches::{connect_client, start_embedded_server, EMBEDDED_CLUSTER, EMBEDDED_PASSWORD};
use volt_daemon_client::{ClusterDaemonClient, CommandResult, PendingCommand};

const BODY_BYTES: usize = 512 * 1024;
const STREAM_BYTES: usize = 4 * 1024 * 1024;

/// Runs `total` echo commands keeping `window` in flight; returns the time.
fn pipeline(client: &ClusterDaemonClient, payload: &Value, total: u64, window: usize) -> Duration {
    let start = Instant::now();
    let mut q: VecDeque<PendingCommand> = VecDeque::with_capacity(window);
    let mut sent = 0;
    while sent < total || !q.is_empty() {
        while sent < total && q.len() < window {
            q.push_back(
                client
                    .start_command("echo", Some(payload.clone()))
                    .expect("sent"),
            );
            sent += 1;
        }
        if let Some(p) = q.pop_front() {
            p.wait().expect("echo answered");
        }
    }
    start.elapsed()
}

fn quick<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    g
}

fn commands(c: &mut Criterion) {
    let server = start_embedded_server().expect("server");
    let client = Arc::new(
        connect_client(&server.url(), EMBEDDED_CLUSTER, EMBEDDED_PASSWORD).expect("connected"),
    );
    let payload = volt_benches::payload(64);

    let mut g = quick(c, "command");
    g.throughput(Throughput::Elements(1));
    g.bench_function("round-trip/1-in-flight", |b| {
        b.iter(|| {
            client
                .send_command("echo", Some(payload.clone()))
                .expect("echo")
        })
    });
    for window in [16usize, 64, 256] {
        g.bench_with_input(
            BenchmarkId::new("pipelined/1-thread", window),
            &window,
            |b, &w| b.iter_custom(|iters| pipeline(&client, &payload, iters, w)),
        );
    }
    for window in [16usize, 64, 256] {
        // `window` in flight in total, spread over 8 threads on one client.
        g.bench_with_input(
            BenchmarkId::new("pipelined/8-threads", window),
            &window,
            |b, &w| {
                b.iter_custom(|iters| {
                    let per = iters.div_ceil(8);
                    let start = Instant::now();
                    thread::scope(|s| {
                        for _ in 0..8 {
                            s.spawn(|| pipeline(&client, &payload, per, (w / 8).max(1)));
                        }
                    });
                    // Normalise to the iterations asked for.
                    start.elapsed().mul_f64(iters as f64 / (per * 8) as f64)
                })
            },
        );
    }
    g.finish();
    client.disconnect();
}

fn reverse(c: &mut Criterion) {
    let server = start_embedded_server().expect("server");
    let client =
        connect_client(&server.url(), EMBEDDED_CLUSTER, EMBEDDED_PASSWORD).expect("connected");
    client.register_handler_fn("bench-echo", |p, _| Ok(CommandResult::data(p)));
    let body = Arc::new(vec![0x5au8; BODY_BYTES]);
    let stream = Arc::new(vec![0xa5u8; STREAM_BYTES]);
    {
        let body = body.clone();
        client.register_handler_fn("bench-body", move |_, _| {
            Ok(CommandResult::body(body.as_ref().clone()))
        });
        let stream = stream.clone();
        client.register_handler_fn("bench-stream", move |_, _| {
            Ok(CommandResult::stream(Cursor::new(stream.as_ref().clone())))
        });
    }
    let payload = volt_benches::payload(64);
    let timeout = Duration::from_secs(10);

    let mut g = quick(c, "reverse");
    g.throughput(Throughput::Elements(1));
    g.bench_function("dispatch/1-in-flight", |b| {
        b.iter(|| {
            let r = server
                .dispatch(
                    EMBEDDED_CLUSTER,
                    "bench-echo",
                    Some(payload.clone()),
                    timeout,
                )
                .expect("dispatched");
            assert_eq!(r.status, 200);
        })
    });
    g.bench_function("dispatch/8-threads", |b| {
        b.iter_custom(|iters| {
            let per = iters.div_ceil(8);
            let start = Instant::now();
            thread::scope(|s| {
                for _ in 0..8 {
                    let h = server.handle();
                    let payload = &payload;
                    s.spawn(move || {
                        for _ in 0..per {
                            h.dispatch(
                                EMBEDDED_CLUSTER,
                                "bench-echo",
                                Some(payload.clone()),
                                timeout,
                            )
                            .expect("dispatched");
                        }
                    });
                }
            });
            start.elapsed().mul_f64(iters as f64 / (per * 8) as f64)
        })
    });
    g.throughput(Throughput::Bytes(BODY_BYTES as u64));
    g.bench_function("body/512KiB", |b| {
        b.iter(|| {
            let r = server
                .dispatch(EMBEDDED_CLUSTER, "bench-body", None, timeout)
                .expect("dispatched");
            assert_eq!(r.body.map(|b| b.len()), Some(BODY_BYTES));
        })
    });
    g.throughput(Throughput::Bytes(STREAM_BYTES as u64));
    g.bench_function("stream/4MiB", |b| {
        b.iter(|| {
            let r = server
                .dispatch(EMBEDDED_CLUSTER, "bench-stream", None, timeout)
                .expect("dispatched");
            assert_eq!(r.stream.map(|b| b.len()), Some(STREAM_BYTES));
        })
    });
    g.finish();
    client.disconnect();
}

criterion_group!(benches, commands, reverse);
criterion_main!(benches);
