//! Keeps `volt-bench` working: a one-second run against the embedded
//! server must complete commands. No timing assertions.

use std::time::Duration;

use volt_benches::{run, BenchConfig};

#[test]
fn volt_bench_completes_commands_against_the_embedded_server() {
    let report = run(&BenchConfig {
        clients: 2,
        in_flight: 8,
        duration: Duration::from_secs(1),
        warmup: Duration::from_millis(100),
        payload_bytes: 16,
        ..BenchConfig::default()
    })
    .expect("volt-bench runs");
    assert!(report.commands > 0, "no command completed: {report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    assert!(report.embedded_server);
    let json = report.to_json();
    assert_eq!(json["commands"].as_u64(), Some(report.commands));
    assert!(report.table().contains("throughput"));
}
