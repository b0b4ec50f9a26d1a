//! `volt-bench --fleet N`: N daemons connected at once, each sending a
//! `runtime.heartbeat` command every `--heartbeat-ms`, to check that the
//! mock server sustains a fleet (issue 6: "1,000 connected daemons
//! heartbeating").
//!
//! The daemons are not [`ClusterDaemonClient`](volt_daemon_client::ClusterDaemonClient)s
//! (seven threads each: 7,000 threads for a fleet of 1,000) but raw
//! WebSocket connections ([`raw::connect_registered`]) switched to
//! non-blocking mode and driven by a few `volt-fleet-*` threads, each
//! running a `mio` loop over its share of the sockets and a heartbeat
//! schedule. Daemon `i` of `n` first heartbeats `i/n` of a period after the
//! start, so the fleet's heartbeats are spread evenly, as jittered real
//! daemons' would be. Engine.IO pings are answered.

//!
//! Files: this one runs a fleet (`run_fleet`); `driver` is one driver
//! thread's loop over its daemons; `report` is what a run measured and how
//! it prints; `open_files` checks `ulimit -n` against the fleet's size.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::unix::SourceFd;
use mio::{Interest, Poll, Token};
use tungstenite::protocol::WebSocketConfig;

use crate::{new_histogram, proc_stat, raw, EMBEDDED_CLUSTER, EMBEDDED_PASSWORD};

mod driver;
mod open_files;
mod report;

use driver::{Daemon, Driver, Shared, Tally};
pub use open_files::{check_open_files, files_needed};
pub use report::FleetReport;

/// Name prefix of the fleet's driver threads.
pub const FLEET_THREAD_PREFIX: &str = "volt-fleet-";

/// What `volt-bench --fleet` runs.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Connected daemons.
    pub daemons: usize,
    /// Time between one daemon's heartbeats.
    pub heartbeat: Duration,
    /// Measured time (after the warm-up).
    pub duration: Duration,
    /// Unmeasured time first (after every daemon connected).
    pub warmup: Duration,
    /// Driver threads (each runs a `mio` loop over its share of daemons).
    pub threads: usize,
    /// Engine.IO `pingInterval` of the embedded server (`None`: its
    /// default, 25 s). Ignored with `url`.
    pub ping_interval: Option<Duration>,
    /// Server URL (`http://` or `ws://`); `None` starts an embedded server.
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

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            daemons: 1000,
            heartbeat: Duration::from_secs(1),
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            threads: 2,
            ping_interval: None,
            url: None,
            cluster: EMBEDDED_CLUSTER.into(),
            password: EMBEDDED_PASSWORD.into(),
            server_pid: None,
            progress: false,
        }
    }
}

/// Connects daemons `ids` (blocking), then makes their sockets non-blocking.
fn connect_share(
    addr: SocketAddr,
    cluster: &str,
    password: &str,
    ids: impl Iterator<Item = usize>,
) -> Result<Vec<Daemon>, String> {
    // Small buffers: tungstenite's default reads in 128 KiB chunks.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    ids.map(|id| {
        let ws = raw::connect_registered(
            addr,
            cluster,
            password,
            "volt-benches-fleet/0.1.0",
            Some(config),
        )
        .map_err(|e| {
            let hint = if e.raw_os_error() == Some(24) || e.to_string().contains("Too many open") {
                " (raise `ulimit -n`)"
            } else {
                ""
            };
            format!("daemon {id} cannot connect to {addr}: {e}{hint}")
        })?;
        ws.get_ref()
            .set_nonblocking(true)
            .map_err(|e| format!("set_nonblocking: {e}"))?;
        Ok(Daemon {
            ws,
            id,
            alive: true,
            seq: 0,
            outstanding: VecDeque::new(),
        })
    })
    .collect()
}

/// Runs the fleet and measures it.
pub fn run_fleet(cfg: &FleetConfig) -> Result<FleetReport, String> {
    validate(cfg)?;
    let threads = cfg.threads.min(cfg.daemons);
    let embedded = cfg.url.is_none();
    let open_files_limit = check_open_files(cfg.daemons, embedded)?;
    let crate::Target {
        server,
        url,
        cluster,
        password,
    } = crate::target(
        cfg.url.as_deref(),
        &cfg.cluster,
        &cfg.password,
        cfg.ping_interval,
    )?;
    let (cluster, password) = (cluster.as_str(), password.as_str());
    let addr = raw::socket_addr_of(&url).map_err(|e| e.to_string())?;

    // Connect in parallel, one share per driver thread (interleaved ids, so
    // each thread's heartbeats are spread over the whole period).
    let t0 = Instant::now();
    let shares = connect_all(addr, cluster, password, cfg.daemons, threads)?;
    let connect_s = t0.elapsed().as_secs_f64();

    let shared = Arc::new(Shared {
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        answered: AtomicU64::new(0),
        alive: AtomicUsize::new(cfg.daemons),
    });
    let start = Instant::now() + Duration::from_millis(10);
    let handles = spawn_drivers(shares, &shared, start, cfg)?;

    let draw = cfg.progress && std::io::stderr().is_terminal();
    let window = measure(cfg, &shared, embedded, start, draw);
    let server_registered = server.as_ref().map(|s| {
        s.handle()
            .daemons()
            .iter()
            .filter(|d| d.team_cluster_id == EMBEDDED_CLUSTER)
            .count()
    });
    let server_rss_kib = cfg
        .server_pid
        .and_then(|p| proc_stat::status_kib_of(&p.to_string(), "VmRSS"));
    shared.stop.store(true, Ordering::Relaxed);
    if draw {
        eprint!("\r\x1b[2K");
    }

    let (total, hist) = join_drivers(handles)?;
    let peak_rss_kib = proc_stat::peak_rss_kib().unwrap_or(0);
    drop(server);
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1e3;
    Ok(FleetReport {
        config: cfg.clone(),
        url,
        embedded_server: embedded,
        connect_s,
        connected_at_end: total.alive,
        server_registered,
        disconnects: total.disconnects,
        disconnect_reasons: total.reasons,
        heartbeats_sent: total.sent,
        heartbeats_answered: total.answered,
        heartbeats_failed: total.failed,
        heartbeats_unanswered: total.unanswered,
        elapsed_s: window.elapsed.as_secs_f64(),
        p50_us: us(0.5),
        p90_us: us(0.9),
        p99_us: us(0.99),
        max_us: hist.max() as f64 / 1e3,
        server_cpu_s: window.server_cpu_s,
        fleet_cpu_s: window.fleet_cpu_s,
        peak_rss_kib,
        server_rss_kib,
        open_files_limit,
    })
}

/// Connects every daemon in parallel, one share per driver thread
/// (interleaved ids, so each thread's heartbeats are spread over the whole
/// period).
fn connect_all(
    addr: SocketAddr,
    cluster: &str,
    password: &str,
    n: usize,
    threads: usize,
) -> Result<Vec<Vec<Daemon>>, String> {
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || connect_share(addr, cluster, password, (t..n).step_by(threads)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| "a connecting thread panicked".to_string())?
            })
            .collect::<Result<Vec<_>, String>>()
    })
}

/// Starts one driver thread per share, each beginning its schedule at `start`.
fn spawn_drivers(
    shares: Vec<Vec<Daemon>>,
    shared: &Arc<Shared>,
    start: Instant,
    cfg: &FleetConfig,
) -> Result<Vec<thread::JoinHandle<std::io::Result<Tally>>>, String> {
    let mut handles = Vec::with_capacity(shares.len());
    for (t, daemons) in shares.into_iter().enumerate() {
        let poll = Poll::new().map_err(|e| format!("mio: {e}"))?;
        for (i, d) in daemons.iter().enumerate() {
            let fd = d.ws.get_ref().as_raw_fd();
            poll.registry()
                .register(
                    &mut SourceFd(&fd),
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .map_err(|e| format!("mio register: {e}"))?;
        }
        let shared = shared.clone();
        let (period, total) = (cfg.heartbeat, cfg.daemons);
        let handle = thread::Builder::new()
            .name(format!("{FLEET_THREAD_PREFIX}{t}"))
            .spawn(move || {
                Driver {
                    daemons,
                    poll,
                    shared: &shared,
                    tally: Tally::default(),
                }
                .run(start, period, total)
            })
            .map_err(|e| format!("spawn a fleet thread: {e}"))?;
        handles.push(handle);
    }
    Ok(handles)
}

/// Waits out the measured window, drawing the progress line when `draw`.
fn watch(cfg: &FleetConfig, shared: &Shared, window_start: Instant, draw: bool) {
    let deadline = window_start + cfg.duration;
    let mut last = (window_start, 0u64);
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        thread::sleep((deadline - now).min(Duration::from_millis(250)));
        if draw {
            let total = shared.answered.load(Ordering::Relaxed);
            let now = Instant::now();
            let rate = (total - last.1) as f64 / (now - last.0).as_secs_f64().max(1e-9);
            last = (now, total);
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r\x1b[2K  {:>5.1}/{:.1} s  {:>5}/{} connected  {:>8} heartbeats  {:>7.0}/s",
                (now - window_start).as_secs_f64(),
                cfg.duration.as_secs_f64(),
                shared.alive.load(Ordering::Relaxed),
                cfg.daemons,
                total,
                rate
            );
            let _ = err.flush();
        }
    }
}

/// Joins the driver threads and adds up what they counted.
fn join_drivers(
    handles: Vec<thread::JoinHandle<std::io::Result<Tally>>>,
) -> Result<(Tally, Histogram<u64>), String> {
    let mut hist = new_histogram();
    let mut total = Tally::default();
    for h in handles {
        let t = h
            .join()
            .map_err(|_| "a fleet thread panicked".to_string())?
            .map_err(|e| format!("fleet poll loop: {e}"))?;
        total.merge(t, &mut hist)?;
    }
    total.reasons.truncate(5);
    Ok((total, hist))
}

/// Rejects a configuration that cannot run.
fn validate(cfg: &FleetConfig) -> Result<(), String> {
    if cfg.daemons == 0 || cfg.threads == 0 {
        return Err("--fleet and --fleet-threads must be at least 1".into());
    }
    if cfg.heartbeat.is_zero() {
        return Err("--heartbeat-ms must be at least 1".into());
    }
    Ok(())
}

/// What the measured window saw.
struct Window {
    elapsed: Duration,
    server_cpu_s: Option<f64>,
    fleet_cpu_s: f64,
}

/// Waits out the warm-up, then measures the window: its length and the CPU
/// time of the server's and the fleet's threads over it.
fn measure(
    cfg: &FleetConfig,
    shared: &Shared,
    embedded: bool,
    start: Instant,
    draw: bool,
) -> Window {
    thread::sleep(cfg.warmup + start.saturating_duration_since(Instant::now()));
    let server_pid = cfg.server_pid.map(|p| p.to_string());
    let server_cpu = || -> Option<f64> {
        if embedded {
            Some(proc_stat::threads_cpu_fine_s("self", |n| {
                n.starts_with("volt-mock")
            }))
        } else {
            server_pid
                .as_deref()
                .map(|p| proc_stat::threads_cpu_fine_s(p, |_| true))
        }
    };
    let fleet_cpu =
        || proc_stat::threads_cpu_fine_s("self", |n| n.starts_with(FLEET_THREAD_PREFIX));
    let srv0 = server_cpu();
    let fleet0 = fleet_cpu();
    let window_start = Instant::now();
    shared.measuring.store(true, Ordering::Relaxed);

    watch(cfg, shared, window_start, draw);
    shared.measuring.store(false, Ordering::Relaxed);
    let elapsed = window_start.elapsed();
    let srv1 = server_cpu();
    let fleet1 = fleet_cpu();
    Window {
        elapsed,
        server_cpu_s: match (srv0, srv1) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        },
        fleet_cpu_s: fleet1 - fleet0,
    }
}
