//! Benchmarks for the VOLT daemon client and the mock server.
//!
//! The library holds what the `volt-bench` CLI, the Criterion benches and
//! the smoke test share:
//! - [`run`]: the `volt-bench` workload (N clients, each keeping K `echo`
//!   commands in flight for a duration) and its [`Report`];
//! - [`proc_stat`]: CPU time and peak RSS from `/proc` (no `unsafe`, no libc);
//! - [`raw`]: a minimal tungstenite socket.io client that pipelines
//!   commands, to measure the mock server without our client in the way;
//! - [`fleet`]: `volt-bench --fleet N`, N raw daemons heartbeating against
//!   the server, driven by a few `mio` threads;
//! - [`idle`]: `volt-bench --idle 5s`, the CPU time and wake-ups of one
//!   idle connected client;
//! - [`herd`]: `volt-herd`, the thundering herd: a fleet of full clients in
//!   child processes through a restart of the `volt-mock-server` binary,
//!   against the contract's backoff rule simulated ([`herd_model`]);
//! - [`interleaved`]: `volt-bench --interleave-tcp ADDR`, one command in
//!   flight alternating with a raw TCP ping-pong in short turns.
//!
//! ```no_run
//! use std::time::Duration;
//! let report = volt_benches::run(&volt_benches::BenchConfig {
//!     duration: Duration::from_secs(1),
//!     ..Default::default()
//! })
//! .unwrap();
//! println!("{}", report.table());
//! ```

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use volt_daemon_client::{
    ClusterDaemonClient, ClusterDaemonClientOptions, DaemonCredentials, PendingCommand,
};
use volt_mock_server::{Server, ServerConfig};

pub mod fleet;
pub mod herd;
pub mod herd_daemons;
pub mod herd_host;
pub mod herd_model;
mod herd_report;
pub mod idle;
pub mod interleaved;
pub mod proc_stat;
pub mod raw;

pub use fleet::{run_fleet, FleetConfig, FleetReport};
pub use idle::{run_idle, IdleConfig, IdleReport};

/// The cluster the embedded server serves.
pub const EMBEDDED_CLUSTER: &str = "bench-cluster";
/// Its password.
pub const EMBEDDED_PASSWORD: &str = "bench-password";

/// What `volt-bench` runs.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Connected clients, one driving thread each.
    pub clients: usize,
    /// Commands each client keeps in flight.
    pub in_flight: usize,
    /// Measured time (after the warm-up).
    pub duration: Duration,
    /// Unmeasured time first.
    pub warmup: Duration,
    /// Size of the string in each `echo` payload (`{"data":"xxx…"}`).
    pub payload_bytes: usize,
    /// Server URL; `None` starts an embedded mock server on its own threads.
    pub url: Option<String>,
    /// Cluster id (with `url`).
    pub cluster: String,
    /// Daemon password (with `url`).
    pub password: String,
    /// Pid of an out-of-process server whose CPU time to measure.
    pub server_pid: Option<u32>,
    /// Live progress line on stderr (only drawn when stderr is a TTY).
    pub progress: bool,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            clients: 4,
            in_flight: 64,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            payload_bytes: 64,
            url: None,
            cluster: EMBEDDED_CLUSTER.into(),
            password: EMBEDDED_PASSWORD.into(),
            server_pid: None,
            progress: false,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The configuration it ran.
    pub config: BenchConfig,
    /// The URL it ran against.
    pub url: String,
    /// Whether the server was the embedded one.
    pub embedded_server: bool,
    /// Commands completed successfully in the measured window.
    pub commands: u64,
    /// Commands that failed (any error) in the whole run.
    pub errors: u64,
    /// The measured window, seconds.
    pub elapsed_s: f64,
    /// Commands per second.
    pub throughput: f64,
    /// Latency percentiles and extremes, microseconds.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// Client CPU (user + system) in the window, seconds: the whole process
    /// minus the embedded server's `volt-mock-*` threads.
    pub client_cpu_s: f64,
    /// Server CPU in the window, seconds, when known.
    pub server_cpu_s: Option<f64>,
    /// Peak RSS (`VmHWM`), KiB; includes the embedded server when there is one.
    pub peak_rss_kib: u64,
}

impl Report {
    /// Client CPU per completed command, microseconds.
    pub fn client_cpu_per_cmd_us(&self) -> f64 {
        per_cmd_us(self.client_cpu_s, self.commands)
    }

    /// Server CPU per completed command, microseconds, when known.
    pub fn server_cpu_per_cmd_us(&self) -> Option<f64> {
        self.server_cpu_s.map(|s| per_cmd_us(s, self.commands))
    }

    /// The machine-readable form (`--json`).
    pub fn to_json(&self) -> Value {
        json!({
            "client": "volt-daemon-client",
            "url": self.url,
            "embedded_server": self.embedded_server,
            "clients": self.config.clients,
            "in_flight": self.config.in_flight,
            "payload_bytes": self.config.payload_bytes,
            "duration_s": self.config.duration.as_secs_f64(),
            "commands": self.commands,
            "errors": self.errors,
            "elapsed_s": self.elapsed_s,
            "throughput": self.throughput,
            "p50_us": self.p50_us,
            "p90_us": self.p90_us,
            "p99_us": self.p99_us,
            "p999_us": self.p999_us,
            "max_us": self.max_us,
            "mean_us": self.mean_us,
            "client_cpu_s": self.client_cpu_s,
            "cpu_per_cmd_us": self.client_cpu_per_cmd_us(),
            "server_cpu_s": self.server_cpu_s,
            "server_cpu_per_cmd_us": self.server_cpu_per_cmd_us(),
            "peak_rss_kib": self.peak_rss_kib,
        })
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let c = &self.config;
        let mut s = format!(
            "volt-bench: {} client(s) x {} in flight, {}-byte payloads, {:.1} s measured against {}{}\n",
            c.clients,
            c.in_flight,
            c.payload_bytes,
            self.elapsed_s,
            self.url,
            if self.embedded_server { " (embedded mock server)" } else { "" }
        );
        let row = |s: &mut String, k: &str, v: String| s.push_str(&format!("  {k:<18} {v}\n"));
        row(
            &mut s,
            "throughput",
            format!(
                "{:.0} commands/s ({} commands, {} errors)",
                self.throughput, self.commands, self.errors
            ),
        );
        row(&mut s, "latency p50", format!("{:.1} us", self.p50_us));
        row(&mut s, "latency p90", format!("{:.1} us", self.p90_us));
        row(&mut s, "latency p99", format!("{:.1} us", self.p99_us));
        row(&mut s, "latency p99.9", format!("{:.1} us", self.p999_us));
        row(&mut s, "latency max", format!("{:.1} us", self.max_us));
        row(
            &mut s,
            "client CPU",
            format!(
                "{:.2} us/command ({:.2} s)",
                self.client_cpu_per_cmd_us(),
                self.client_cpu_s
            ),
        );
        if let (Some(per), Some(total)) = (self.server_cpu_per_cmd_us(), self.server_cpu_s) {
            row(
                &mut s,
                "server CPU",
                format!("{per:.2} us/command ({total:.2} s)"),
            );
        }
        row(
            &mut s,
            "peak RSS",
            format!(
                "{:.1} MiB (VmHWM{})",
                self.peak_rss_kib as f64 / 1024.0,
                if self.embedded_server {
                    ", includes the embedded server"
                } else {
                    ""
                }
            ),
        );
        s
    }
}

fn per_cmd_us(seconds: f64, commands: u64) -> f64 {
    if commands == 0 {
        f64::NAN
    } else {
        seconds * 1e6 / commands as f64
    }
}

/// Parses `10s`, `500ms`, `2m`, `1.5s`, `250us` or a bare number of seconds.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(volt_benches::parse_duration("500ms"), Ok(Duration::from_millis(500)));
/// assert_eq!(volt_benches::parse_duration("2"), Ok(Duration::from_secs(2)));
/// assert!(volt_benches::parse_duration("x").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?} (try 10s, 500ms, 2m)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" => n / 1e6,
        "m" | "min" => n * 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (s, ms, us, m)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("bad duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The `echo` payload: `{"data":"xxx…"}` with `bytes` characters.
pub fn payload(bytes: usize) -> Value {
    json!({ "data": "x".repeat(bytes) })
}

/// A new latency histogram in nanoseconds, 1 ns .. 100 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// The server a run talks to: an embedded one (kept alive by `server`) or
/// the given URL with its credentials.
pub struct Target {
    /// The embedded server, when no URL was given.
    pub server: Option<Server>,
    /// Its URL.
    pub url: String,
    /// The cluster to register as.
    pub cluster: String,
    /// Its password.
    pub password: String,
}

/// Uses `url` with `cluster`/`password`, or starts the embedded server
/// (with `ping_interval`) and its cluster when there is no URL.
pub fn target(
    url: Option<&str>,
    cluster: &str,
    password: &str,
    ping_interval: Option<Duration>,
) -> Result<Target, String> {
    Ok(match url {
        Some(u) => Target {
            server: None,
            url: u.to_owned(),
            cluster: cluster.to_owned(),
            password: password.to_owned(),
        },
        None => {
            let server = start_embedded_server_with(ping_interval)?;
            Target {
                url: server.url(),
                server: Some(server),
                cluster: EMBEDDED_CLUSTER.to_owned(),
                password: EMBEDDED_PASSWORD.to_owned(),
            }
        }
    })
}

/// Starts the embedded mock server: history and frame recording off.
pub fn start_embedded_server() -> Result<Server, String> {
    start_embedded_server_with(None)
}

/// [`start_embedded_server`] with an Engine.IO `pingInterval` (`None`: the
/// server's default, 25 s).
pub fn start_embedded_server_with(ping_interval: Option<Duration>) -> Result<Server, String> {
    let mut cfg = ServerConfig {
        record_history: false,
        record_frames: false,
        ..ServerConfig::default()
    }
    .cluster(EMBEDDED_CLUSTER, EMBEDDED_PASSWORD);
    if let Some(p) = ping_interval {
        if p.is_zero() {
            return Err("--ping-interval-ms must be at least 1".into());
        }
        cfg.ping_interval = p;
    }
    Server::start(cfg).map_err(|e| format!("cannot start the embedded mock server: {e}"))
}

/// Options for a benchmark client against `url`.
pub fn bench_options(url: &str, cluster: &str, password: &str) -> ClusterDaemonClientOptions {
    let mut o =
        ClusterDaemonClientOptions::new(url, url, DaemonCredentials::new(cluster, password));
    o.socket.connect_timeout = Duration::from_secs(10);
    o.socket.reconnect = false;
    o
}

/// Connects a client to `url`.
pub fn connect_client(
    url: &str,
    cluster: &str,
    password: &str,
) -> Result<ClusterDaemonClient, String> {
    let client = ClusterDaemonClient::new(bench_options(url, cluster, password))
        .map_err(|e| format!("bad client options: {e}"))?;
    client
        .connect()
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    Ok(client)
}

struct Worker {
    completed: Arc<AtomicU64>,
    handle: thread::JoinHandle<(Histogram<u64>, u64)>,
}

/// Keeps `in_flight` `echo` commands outstanding on `client` until `stop`;
/// records latencies (and counts completions) while `measuring`.
fn drive(
    client: &ClusterDaemonClient,
    in_flight: usize,
    payload: &Value,
    measuring: &AtomicBool,
    stop: &AtomicBool,
    completed: &AtomicU64,
) -> (Histogram<u64>, u64) {
    let mut hist = new_histogram();
    let mut errors = 0u64;
    let mut done = 0u64;
    let mut window: VecDeque<(Instant, PendingCommand)> = VecDeque::with_capacity(in_flight);
    while !stop.load(Ordering::Relaxed) {
        while window.len() < in_flight {
            let t0 = Instant::now();
            match client.start_command("echo", Some(payload.clone())) {
                Ok(p) => window.push_back((t0, p)),
                Err(_) => {
                    errors += 1;
                    break;
                }
            }
        }
        let Some((t0, pending)) = window.pop_front() else {
            // Nothing could be sent (not ready): do not spin.
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        let result = pending.wait();
        let latency = t0.elapsed();
        match result {
            Ok(_) => {
                if measuring.load(Ordering::Relaxed) {
                    hist.saturating_record(latency.as_nanos() as u64);
                    done += 1;
                    if done % 64 == 0 {
                        completed.store(done, Ordering::Relaxed);
                    }
                }
            }
            Err(_) => errors += 1,
        }
    }
    completed.store(done, Ordering::Relaxed);
    // Let the rest finish so the connection closes cleanly.
    for (_, p) in window {
        if p.wait().is_err() {
            errors += 1;
        }
    }
    (hist, errors)
}

/// Runs the `volt-bench` workload and measures it.
pub fn run(cfg: &BenchConfig) -> Result<Report, String> {
    if cfg.clients == 0 || cfg.in_flight == 0 {
        return Err("--clients and --in-flight must be at least 1".into());
    }
    let Target {
        server,
        url,
        cluster,
        password,
    } = target(cfg.url.as_deref(), &cfg.cluster, &cfg.password, None)?;
    let (cluster, password) = (cluster.as_str(), password.as_str());
    let clients = (0..cfg.clients)
        .map(|_| connect_client(&url, cluster, password).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let workers = spawn_drivers(cfg, &clients, &measuring, &stop);

    thread::sleep(cfg.warmup);
    let embedded = server.is_some();
    let server_cpu = || server_cpu_s(embedded, cfg.server_pid);
    let (cpu0, srv0) = (
        proc_stat::process_cpu_s("self").unwrap_or(0.0),
        server_cpu(),
    );
    let start = Instant::now();
    measuring.store(true, Ordering::Relaxed);
    wait_out(cfg, start, &workers);
    measuring.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let (cpu1, srv1) = (
        proc_stat::process_cpu_s("self").unwrap_or(0.0),
        server_cpu(),
    );
    stop.store(true, Ordering::Relaxed);

    let (hist, errors, commands) = join_drivers(workers)?;
    for c in &clients {
        c.disconnect();
    }
    let peak_rss_kib = proc_stat::peak_rss_kib().unwrap_or(0);
    let server_cpu_s = srv0.zip(srv1).map(|(a, b)| b - a);
    let total_cpu = cpu1 - cpu0;
    let client_cpu_s = if embedded {
        total_cpu - server_cpu_s.unwrap_or(0.0)
    } else {
        total_cpu
    };
    drop(server);
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1e3;
    let secs = elapsed.as_secs_f64();
    Ok(Report {
        config: cfg.clone(),
        url,
        embedded_server: embedded,
        commands,
        errors,
        elapsed_s: secs,
        throughput: commands as f64 / secs,
        p50_us: us(0.5),
        p90_us: us(0.9),
        p99_us: us(0.99),
        p999_us: us(0.999),
        max_us: hist.max() as f64 / 1e3,
        mean_us: hist.mean() / 1e3,
        client_cpu_s,
        server_cpu_s,
        peak_rss_kib,
    })
}

/// One named driver thread per client, each keeping `in_flight` commands
/// going until `stop`.
fn spawn_drivers(
    cfg: &BenchConfig,
    clients: &[Arc<ClusterDaemonClient>],
    measuring: &Arc<AtomicBool>,
    stop: &Arc<AtomicBool>,
) -> Vec<Worker> {
    let payload = Arc::new(payload(cfg.payload_bytes));
    clients
        .iter()
        .enumerate()
        .map(|(i, client)| {
            let completed = Arc::new(AtomicU64::new(0));
            let (client, measuring, stop, payload, c) = (
                client.clone(),
                measuring.clone(),
                stop.clone(),
                payload.clone(),
                completed.clone(),
            );
            let in_flight = cfg.in_flight;
            let handle = thread::Builder::new()
                .name(format!("bench-driver-{i}"))
                .spawn(move || drive(&client, in_flight, &payload, &measuring, &stop, &c))
                .expect("spawn a driver thread");
            Worker { completed, handle }
        })
        .collect()
}

/// CPU seconds of the mock server so far: its threads in this process when
/// embedded, else the process `server_pid` names (if any).
fn server_cpu_s(embedded: bool, server_pid: Option<u32>) -> Option<f64> {
    if embedded {
        Some(proc_stat::threads_cpu_s("self", |n| {
            n.starts_with("volt-mock")
        }))
    } else {
        server_pid.and_then(|p| proc_stat::process_cpu_s(&p.to_string()))
    }
}

/// Sleeps through the measured window, drawing the rate on a terminal.
fn wait_out(cfg: &BenchConfig, start: Instant, workers: &[Worker]) {
    let deadline = start + cfg.duration;
    let draw = cfg.progress && std::io::stderr().is_terminal();
    let mut last = (start, 0u64);
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        thread::sleep((deadline - now).min(Duration::from_millis(250)));
        if draw {
            let total: u64 = workers
                .iter()
                .map(|w| w.completed.load(Ordering::Relaxed))
                .sum();
            let now = Instant::now();
            let rate = (total - last.1) as f64 / (now - last.0).as_secs_f64().max(1e-9);
            last = (now, total);
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r\x1b[2K  {:>5.1}/{:.1} s  {:>10} commands  {:>9.0} commands/s",
                (now - start).as_secs_f64(),
                cfg.duration.as_secs_f64(),
                total,
                rate
            );
            let _ = err.flush();
        }
    }
    if draw {
        eprint!("\r\x1b[2K");
    }
}

/// Joins the drivers: their merged latency histogram, errors and commands.
fn join_drivers(workers: Vec<Worker>) -> Result<(Histogram<u64>, u64, u64), String> {
    let mut hist = new_histogram();
    let (mut errors, mut commands) = (0, 0);
    for w in workers {
        let (h, e) = w
            .handle
            .join()
            .map_err(|_| "a driver thread panicked".to_string())?;
        commands += w.completed.load(Ordering::Relaxed);
        hist.add(&h).map_err(|e| format!("histogram merge: {e}"))?;
        errors += e;
    }
    Ok((hist, errors, commands))
}
