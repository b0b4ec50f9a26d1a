//! `volt-bench`: command throughput and latency of the VOLT daemon client.
//! See `--help` and docs/BENCHMARKS.md.

use std::time::Duration;

use volt_benches::interleaved::{self, InterleavedConfig};
use volt_benches::{
    parse_duration, run, run_fleet, run_idle, BenchConfig, FleetConfig, IdleConfig,
};

const USAGE: &str =
    "usage: volt-bench [--clients 4] [--in-flight 64] [--duration 10s] [--warmup 1s]
       [--payload-bytes 64] [--url ws://HOST:PORT --cluster ID --password PW]
       [--server-pid PID] [--json]
   or: volt-bench --fleet 1000 [--heartbeat-ms 1000] [--fleet-threads 2]
       [--duration 10s] [--warmup 1s] [--ping-interval-ms N]
       [--url … --cluster … --password …] [--server-pid PID] [--json]
   or: volt-bench --idle 5s [--warmup 1s] [--ping-interval-ms 25000]
       [--url … --cluster … --password …] [--json]
   or: volt-bench --interleave-tcp ADDR [--turn-ms 50] [--duration 10s]
       [--warmup 1s] [--payload-bytes 64] [--url … --cluster … --password …] [--json]

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

--ping-interval-ms sets the embedded server's pingInterval (default 25000)
in the --fleet and --idle modes; it is ignored with --url.

Prints a table, or one JSON object with --json. A progress line is drawn on
stderr when it is a terminal.";

fn fail(msg: &str) -> ! {
    eprintln!("volt-bench: {msg}\n\n{USAGE}");
    std::process::exit(2)
}

fn main() {
    let mut cfg = BenchConfig {
        progress: true,
        ..BenchConfig::default()
    };
    let mut json = false;
    let mut fleet: Option<usize> = None;
    let mut fleet_cfg = FleetConfig::default();
    let mut idle: Option<Duration> = None;
    let mut interleave: Option<std::net::SocketAddr> = None;
    let mut turn = Duration::from_millis(50);
    let mut ping_interval: Option<Duration> = None;
    let mut duration_set = false;
    let mut warmup: Option<Duration> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .unwrap_or_else(|| fail(&format!("{flag} needs a value")))
        };
        let number = |v: String| -> usize {
            v.parse()
                .unwrap_or_else(|_| fail(&format!("{flag} needs a number, got {v}")))
        };
        match flag.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            "--json" => json = true,
            "--clients" => cfg.clients = number(value()),
            "--in-flight" => cfg.in_flight = number(value()),
            "--payload-bytes" => cfg.payload_bytes = number(value()),
            "--duration" => {
                cfg.duration = parse_duration(&value()).unwrap_or_else(|e| fail(&e));
                duration_set = true;
            }
            "--warmup" => warmup = Some(parse_duration(&value()).unwrap_or_else(|e| fail(&e))),
            "--fleet" => fleet = Some(number(value())),
            "--heartbeat-ms" => fleet_cfg.heartbeat = Duration::from_millis(number(value()) as u64),
            "--fleet-threads" => fleet_cfg.threads = number(value()),
            "--idle" => idle = Some(parse_duration(&value()).unwrap_or_else(|e| fail(&e))),
            "--interleave-tcp" => {
                let v = value();
                let addr = v
                    .parse()
                    .unwrap_or_else(|e| fail(&format!("{flag} {v}: {e}")));
                interleave = Some(addr)
            }
            "--turn-ms" => turn = Duration::from_millis(number(value()) as u64),
            "--ping-interval-ms" => {
                ping_interval = Some(Duration::from_millis(number(value()) as u64))
            }
            "--url" => cfg.url = Some(value()),
            "--cluster" => cfg.cluster = value(),
            "--password" => cfg.password = value(),
            "--server-pid" => cfg.server_pid = Some(number(value()) as u32),
            other => fail(&format!("unknown argument {other}")),
        }
    }
    if let Some(w) = warmup {
        cfg.warmup = w;
    }
    let modes = [fleet.is_some(), idle.is_some(), interleave.is_some()];
    if modes.iter().filter(|&&m| m).count() > 1 {
        fail("--fleet, --idle and --interleave-tcp are separate modes");
    }
    if let Some(tcp_addr) = interleave {
        let icfg = InterleavedConfig {
            tcp_addr,
            url: cfg.url,
            cluster: cfg.cluster,
            password: cfg.password,
            payload_bytes: cfg.payload_bytes,
            duration: cfg.duration,
            warmup: cfg.warmup,
            turn,
        };
        match interleaved::run(&icfg) {
            Ok(report) if json => println!("{}", report.to_json()),
            Ok(report) => print!("{}", report.table()),
            Err(e) => {
                eprintln!("volt-bench: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    if let Some(daemons) = fleet {
        let fleet_cfg = FleetConfig {
            daemons,
            duration: if duration_set {
                cfg.duration
            } else {
                fleet_cfg.duration
            },
            warmup: cfg.warmup,
            ping_interval,
            url: cfg.url,
            cluster: cfg.cluster,
            password: cfg.password,
            server_pid: cfg.server_pid,
            progress: true,
            ..fleet_cfg
        };
        match run_fleet(&fleet_cfg) {
            Ok(report) => {
                if json {
                    println!("{}", report.to_json());
                } else {
                    print!("{}", report.table());
                }
                if !report.healthy() {
                    eprintln!(
                        "volt-bench: the fleet was not healthy ({} disconnect(s), {}/{} connected, {} answered, {} failed)",
                        report.disconnects,
                        report.connected_at_end,
                        daemons,
                        report.heartbeats_answered,
                        report.heartbeats_failed
                    );
                    std::process::exit(1);
                }
            }
            Err(e) => {
                eprintln!("volt-bench: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    if let Some(window) = idle {
        let idle_cfg = IdleConfig {
            window,
            warmup: cfg.warmup,
            ping_interval,
            url: cfg.url,
            cluster: cfg.cluster,
            password: cfg.password,
            ..IdleConfig::default()
        };
        match run_idle(&idle_cfg) {
            Ok(report) => {
                if json {
                    println!("{}", report.to_json());
                } else {
                    print!("{}", report.table());
                }
                if !report.ready_at_end {
                    eprintln!("volt-bench: the client was no longer connected at the end");
                    std::process::exit(1);
                }
            }
            Err(e) => {
                eprintln!("volt-bench: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    match run(&cfg) {
        Ok(report) => {
            if json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.table());
            }
            if report.commands == 0 {
                eprintln!("volt-bench: no command completed");
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("volt-bench: {e}");
            std::process::exit(1);
        }
    }
}
