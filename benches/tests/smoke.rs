//! Keeps `volt-bench` working: a one-second run against the embedded
//! server must complete commands; a tiny fleet must stay connected; an idle
//! window must run; an interleaved run must measure both sides. No timing
//! assertions.

use std::time::Duration;

use volt_benches::{run, run_fleet, run_idle, BenchConfig, FleetConfig, IdleConfig};

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

#[test]
fn volt_bench_fleet_keeps_every_daemon_connected() {
    let report = run_fleet(&FleetConfig {
        daemons: 20,
        heartbeat: Duration::from_millis(100),
        duration: Duration::from_secs(1),
        warmup: Duration::from_millis(100),
        ..FleetConfig::default()
    })
    .expect("volt-bench --fleet runs");
    assert_eq!(report.disconnects, 0, "{report:?}");
    assert_eq!(report.connected_at_end, 20, "{report:?}");
    assert_eq!(report.server_registered, Some(20), "{report:?}");
    assert!(report.heartbeats_answered > 0, "{report:?}");
    assert_eq!(report.heartbeats_failed, 0, "{report:?}");
    assert!(report.healthy());
    assert_eq!(report.to_json()["mode"], "fleet");
    assert!(report.table().contains("connected at end"));
}

#[test]
fn volt_bench_idle_measures_the_client_threads() {
    let report = run_idle(&IdleConfig {
        window: Duration::from_millis(500),
        warmup: Duration::from_millis(100),
        ..IdleConfig::default()
    })
    .expect("volt-bench --idle runs");
    assert!(report.ready_at_end, "{report:?}");
    assert!(
        report.threads.iter().any(|t| t.name == "volt-conn"),
        "{report:?}"
    );
    assert_eq!(report.to_json()["mode"], "idle");
    assert!(report.table().contains("context switches"));
}

#[test]
fn volt_bench_interleaved_measures_both_sides() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || volt_benches::interleaved::echo(conn));
        }
    });
    let report = volt_benches::interleaved::run(&volt_benches::interleaved::InterleavedConfig {
        tcp_addr,
        duration: Duration::from_millis(500),
        warmup: Duration::from_millis(50),
        turn: Duration::from_millis(20),
        ..Default::default()
    })
    .expect("volt-bench --interleave-tcp runs");
    assert!(report.turns > 0);
    assert!(!report.ours.is_empty() && !report.tcp.is_empty());
    let json = report.to_json();
    assert_eq!(json["mode"], "interleaved");
    assert!(json["p50_ratio"].as_f64().is_some_and(|r| r > 0.0));
    assert!(report.table().contains("ratio"));
}
