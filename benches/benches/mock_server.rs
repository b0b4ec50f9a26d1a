//! The mock server alone, driven by a minimal tungstenite client (no
//! client-side threads or pending table) that pipelines `echo` commands in
//! batches of 64 over 1 and 4 connections: the round trips per second the
//! server can serve, so that it is known not to be the client benches'
//! bottleneck.

use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use volt_benches::raw::RawClient;
use volt_benches::{start_embedded_server, EMBEDDED_CLUSTER, EMBEDDED_PASSWORD};

const BATCH: usize = 64;

fn mock_server(c: &mut Criterion) {
    let server = start_embedded_server().expect("server");
    let payload = volt_benches::payload(64);
    let mut g = c.benchmark_group("mock-server");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .throughput(Throughput::Elements(1));
    for conns in [1usize, 4] {
        let mut clients: Vec<RawClient> = (0..conns)
            .map(|_| {
                RawClient::connect(
                    server.local_addr(),
                    EMBEDDED_CLUSTER,
                    EMBEDDED_PASSWORD,
                    &payload,
                )
                .expect("raw client connects")
            })
            .collect();
        g.bench_with_input(
            BenchmarkId::new("raw-pipelined-64/connections", conns),
            &conns,
            |b, &conns| {
                b.iter_custom(|iters| {
                    let batches = iters.div_ceil((BATCH * conns) as u64).max(1);
                    let start = Instant::now();
                    thread::scope(|s| {
                        for c in clients.iter_mut() {
                            s.spawn(move || {
                                for _ in 0..batches {
                                    assert_eq!(c.batch(BATCH).expect("batch"), BATCH);
                                }
                            });
                        }
                    });
                    let done = batches * (BATCH * conns) as u64;
                    start.elapsed().mul_f64(iters as f64 / done as f64)
                })
            },
        );
        for c in clients {
            c.close();
        }
    }
    g.finish();
}

criterion_group!(benches, mock_server);
criterion_main!(benches);
