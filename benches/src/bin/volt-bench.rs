//! `volt-bench`: command throughput and latency of the VOLT daemon client.
//! See `--help` and docs/BENCHMARKS.md.

use std::net::SocketAddr;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser};

use volt_benches::interleaved::{self, InterleavedConfig};
use volt_benches::{
    parse_duration, run, run_fleet, run_idle, BenchConfig, FleetConfig, IdleConfig,
};

const AFTER_HELP: &str = "\
Each client keeps --in-flight `echo` commands outstanding (start_command,
then wait for the oldest) from its own thread for --duration after a
--warmup. Without --url the target is an embedded mock server on its own
threads (its CPU is measured separately, from the volt-mock-* threads).
--server-pid measures the CPU of an out-of-process server.

--fleet N connects N raw daemons (WebSocket connections driven by
--fleet-threads mio loops, not full clients) that each send a
runtime.heartbeat command every --heartbeat-ms, spread evenly over the
period; reports daemons still connected, heartbeats answered per second,
reply latency, server CPU per second and per heartbeat, peak RSS. Needs
about N (2N with the embedded server) open files: check `ulimit -n`.
Exits 1 if a daemon disconnected or no heartbeat was answered.

--idle WINDOW connects one ClusterDaemonClient (default options, heartbeat
every 60 s), waits --warmup, then reports the CPU time and context switches
of its threads (volt-conn, volt-events, volt-heartbeat, volt-handler-*)
over WINDOW. Exits 1 if the client was no longer connected.

--interleave-tcp ADDR runs one command at a time, alternating turns of
--turn-ms with a raw TCP ping-pong against `tcp-pingpong server` at ADDR,
from the same thread, and reports both latencies and the ratio of their
p50s: both sides see the same machine state (this VM drifts between a
fast and a slow one for seconds at a time).

--fleet, --idle and --interleave-tcp are separate modes. Durations take
a unit (500ms, 10s, 2m) or are seconds. Every flag can also be set from
the environment variable shown with it (a flag on the command line wins;
an empty variable counts as unset).

Prints a table, or one JSON object with --json. A progress line is drawn on
stderr when it is a terminal. Exit codes: 0 done, 1 the run failed or was
unhealthy, 2 bad usage.";

/// The command line.
#[derive(Parser, Debug)]
#[command(
    name = "volt-bench",
    version,
    about = "Command throughput and latency of the VOLT daemon client (see docs/BENCHMARKS.md).",
    after_help = AFTER_HELP,
    args_override_self = true
)]
struct Cli {
    /// Clients, each on its own thread.
    #[arg(long, env = "VOLT_BENCH_CLIENTS", value_name = "N", default_value_t = BenchConfig::default().clients)]
    clients: usize,
    /// `echo` commands each client keeps outstanding.
    #[arg(long, env = "VOLT_BENCH_IN_FLIGHT", value_name = "N", default_value_t = BenchConfig::default().in_flight)]
    in_flight: usize,
    /// How long to measure [default: 10s].
    #[arg(long, env = "VOLT_BENCH_DURATION", value_name = "DURATION", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// How long to run before measuring [default: 1s].
    #[arg(long, env = "VOLT_BENCH_WARMUP", value_name = "DURATION", value_parser = parse_duration)]
    warmup: Option<Duration>,
    /// Size of each command's payload.
    #[arg(long, env = "VOLT_BENCH_PAYLOAD_BYTES", value_name = "N", default_value_t = BenchConfig::default().payload_bytes)]
    payload_bytes: usize,
    /// An out-of-process server, ws://HOST:PORT (default: an embedded one).
    #[arg(long, env = "VOLT_BENCH_URL", value_name = "URL")]
    url: Option<String>,
    /// The cluster to register as.
    #[arg(long, env = "VOLT_BENCH_CLUSTER", value_name = "ID", default_value_t = BenchConfig::default().cluster)]
    cluster: String,
    /// The cluster's password [default: the embedded server's].
    #[arg(
        long,
        env = "VOLT_BENCH_PASSWORD",
        value_name = "PW",
        hide_env_values = true
    )]
    password: Option<String>,
    /// Measure the CPU of this out-of-process server.
    #[arg(long, env = "VOLT_BENCH_SERVER_PID", value_name = "PID")]
    server_pid: Option<u32>,
    /// Print one JSON object instead of a table.
    #[arg(long, env = "VOLT_BENCH_JSON", value_parser = BoolishValueParser::new(), action = ArgAction::SetTrue)]
    json: bool,
    /// Fleet mode: N raw daemons heartbeating.
    #[arg(long, env = "VOLT_BENCH_FLEET", value_name = "N", group = "mode")]
    fleet: Option<usize>,
    /// Fleet mode: each daemon's heartbeat period, ms.
    #[arg(
        long,
        env = "VOLT_BENCH_HEARTBEAT_MS",
        value_name = "N",
        default_value_t = 1000
    )]
    heartbeat_ms: u64,
    /// Fleet mode: mio loops driving the daemons.
    #[arg(long, env = "VOLT_BENCH_FLEET_THREADS", value_name = "N", default_value_t = FleetConfig::default().threads)]
    fleet_threads: usize,
    /// Idle mode: measure one idle client's threads over WINDOW.
    #[arg(long, env = "VOLT_BENCH_IDLE", value_name = "WINDOW", value_parser = parse_duration, group = "mode")]
    idle: Option<Duration>,
    /// Interleaved mode: alternate with a TCP ping-pong at ADDR.
    #[arg(
        long,
        env = "VOLT_BENCH_INTERLEAVE_TCP",
        value_name = "ADDR",
        group = "mode"
    )]
    interleave_tcp: Option<SocketAddr>,
    /// Interleaved mode: length of each turn, ms.
    #[arg(
        long,
        env = "VOLT_BENCH_TURN_MS",
        value_name = "N",
        default_value_t = 50
    )]
    turn_ms: u64,
    /// The embedded server's pingInterval, ms, in the --fleet and --idle
    /// modes [default: 25000]; ignored with --url.
    #[arg(long, env = "VOLT_BENCH_PING_INTERVAL_MS", value_name = "N")]
    ping_interval_ms: Option<u64>,
}

/// Exits 1: the run itself failed.
fn die(message: impl std::fmt::Display) -> ! {
    eprintln!("volt-bench: {message}");
    std::process::exit(1)
}

fn print_report(json: bool, value: serde_json::Value, table: String) {
    if json {
        println!("{value}");
    } else {
        print!("{table}");
    }
}

fn main() {
    // Shared with volt-mock-server's binary (empty variables count as unset).
    let (cli, _) = volt_mock_server::cli::parse::<Cli>();
    let defaults = BenchConfig::default();
    let cfg = BenchConfig {
        clients: cli.clients,
        in_flight: cli.in_flight,
        duration: cli.duration.unwrap_or(defaults.duration),
        warmup: cli.warmup.unwrap_or(defaults.warmup),
        payload_bytes: cli.payload_bytes,
        url: cli.url.clone(),
        cluster: cli.cluster.clone(),
        password: cli.password.clone().unwrap_or(defaults.password),
        server_pid: cli.server_pid,
        progress: true,
    };
    if let Some(tcp_addr) = cli.interleave_tcp {
        interleave_mode(&cli, cfg, tcp_addr);
    } else if let Some(daemons) = cli.fleet {
        fleet_mode(&cli, cfg, daemons);
    } else if let Some(window) = cli.idle {
        idle_mode(&cli, cfg, window);
    } else {
        throughput_mode(cli.json, cfg);
    }
}

fn interleave_mode(cli: &Cli, cfg: BenchConfig, tcp_addr: SocketAddr) {
    let icfg = InterleavedConfig {
        tcp_addr,
        url: cfg.url,
        cluster: cfg.cluster,
        password: cfg.password,
        payload_bytes: cfg.payload_bytes,
        duration: cfg.duration,
        warmup: cfg.warmup,
        turn: Duration::from_millis(cli.turn_ms),
    };
    let report = interleaved::run(&icfg).unwrap_or_else(|e| die(e));
    print_report(cli.json, report.to_json(), report.table());
}

fn fleet_mode(cli: &Cli, cfg: BenchConfig, daemons: usize) {
    let defaults = FleetConfig::default();
    let fleet_cfg = FleetConfig {
        daemons,
        heartbeat: Duration::from_millis(cli.heartbeat_ms),
        threads: cli.fleet_threads,
        // The fleet has its own default duration; only an explicit one overrides it.
        duration: cli.duration.unwrap_or(defaults.duration),
        warmup: cfg.warmup,
        ping_interval: cli.ping_interval_ms.map(Duration::from_millis),
        url: cfg.url,
        cluster: cfg.cluster,
        password: cfg.password,
        server_pid: cfg.server_pid,
        progress: true,
    };
    let report = run_fleet(&fleet_cfg).unwrap_or_else(|e| die(e));
    print_report(cli.json, report.to_json(), report.table());
    if !report.healthy() {
        die(format!(
            "the fleet was not healthy ({} disconnect(s), {}/{} connected, {} answered, {} failed)",
            report.disconnects,
            report.connected_at_end,
            daemons,
            report.heartbeats_answered,
            report.heartbeats_failed
        ));
    }
}

fn idle_mode(cli: &Cli, cfg: BenchConfig, window: Duration) {
    let idle_cfg = IdleConfig {
        window,
        warmup: cfg.warmup,
        ping_interval: cli.ping_interval_ms.map(Duration::from_millis),
        url: cfg.url,
        cluster: cfg.cluster,
        password: cfg.password,
        ..IdleConfig::default()
    };
    let report = run_idle(&idle_cfg).unwrap_or_else(|e| die(e));
    print_report(cli.json, report.to_json(), report.table());
    if !report.ready_at_end {
        die("the client was no longer connected at the end");
    }
}

fn throughput_mode(json: bool, cfg: BenchConfig) {
    let report = run(&cfg).unwrap_or_else(|e| die(e));
    print_report(json, report.to_json(), report.table());
    if report.commands == 0 {
        die("no command completed");
    }
}
