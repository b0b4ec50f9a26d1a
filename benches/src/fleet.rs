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

use std::collections::VecDeque;
use std::io::{ErrorKind, IsTerminal, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use serde_json::{json, Value};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use crate::{new_histogram, proc_stat, raw, EMBEDDED_CLUSTER, EMBEDDED_PASSWORD};

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

/// What a fleet run measured.
#[derive(Debug, Clone)]
pub struct FleetReport {
    /// The configuration it ran.
    pub config: FleetConfig,
    /// The URL it ran against.
    pub url: String,
    /// Whether the server was the embedded one.
    pub embedded_server: bool,
    /// Time to connect and register every daemon, seconds.
    pub connect_s: f64,
    /// Daemons still connected at the end of the measured window.
    pub connected_at_end: usize,
    /// Registered daemons the embedded server listed at the end of the
    /// window (`None` out of process).
    pub server_registered: Option<usize>,
    /// Connections lost during the run (warm-up and window).
    pub disconnects: u64,
    /// Why, for the first few.
    pub disconnect_reasons: Vec<String>,
    /// Heartbeats sent in the window.
    pub heartbeats_sent: u64,
    /// Heartbeats answered `ok: true` in the window.
    pub heartbeats_answered: u64,
    /// Heartbeats answered `ok: false` in the window.
    pub heartbeats_failed: u64,
    /// Heartbeats still unanswered when the run stopped.
    pub heartbeats_unanswered: u64,
    /// The measured window, seconds.
    pub elapsed_s: f64,
    /// Reply latency percentiles and extremes, microseconds.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Largest.
    pub max_us: f64,
    /// Server CPU in the window, seconds, when known (embedded: the
    /// `volt-mock-*` threads; out of process: `--server-pid`'s threads).
    pub server_cpu_s: Option<f64>,
    /// CPU of the fleet's own driver threads in the window, seconds.
    pub fleet_cpu_s: f64,
    /// Peak RSS of this process (`VmHWM`), KiB: the fleet's sockets and
    /// buffers, plus the embedded server when there is one.
    pub peak_rss_kib: u64,
    /// RSS (`VmRSS`) of the out-of-process server at the end, KiB.
    pub server_rss_kib: Option<u64>,
    /// Soft limit on open files this run had.
    pub open_files_limit: Option<u64>,
}

impl FleetReport {
    /// Heartbeats answered per second in the window.
    pub fn answered_per_s(&self) -> f64 {
        self.heartbeats_answered as f64 / self.elapsed_s.max(1e-9)
    }

    /// What a fleet that is keeping up answers per second.
    pub fn expected_per_s(&self) -> f64 {
        self.config.daemons as f64 / self.config.heartbeat.as_secs_f64().max(1e-9)
    }

    /// Server CPU per second of wall time (1.0 = one core busy), when known.
    pub fn server_cpu_per_s(&self) -> Option<f64> {
        self.server_cpu_s.map(|s| s / self.elapsed_s.max(1e-9))
    }

    /// Server CPU per answered heartbeat, microseconds, when known.
    pub fn server_cpu_per_heartbeat_us(&self) -> Option<f64> {
        self.server_cpu_s
            .filter(|_| self.heartbeats_answered > 0)
            .map(|s| s * 1e6 / self.heartbeats_answered as f64)
    }

    /// True when every daemon stayed connected and every reply was `ok`.
    pub fn healthy(&self) -> bool {
        self.disconnects == 0
            && self.connected_at_end == self.config.daemons
            && self.heartbeats_failed == 0
            && self.heartbeats_answered > 0
    }

    /// The machine-readable form (`--json`).
    pub fn to_json(&self) -> Value {
        json!({
            "mode": "fleet",
            "url": self.url,
            "embedded_server": self.embedded_server,
            "daemons": self.config.daemons,
            "heartbeat_ms": self.config.heartbeat.as_secs_f64() * 1e3,
            "threads": self.config.threads,
            "duration_s": self.config.duration.as_secs_f64(),
            "connect_s": self.connect_s,
            "connected_at_end": self.connected_at_end,
            "server_registered": self.server_registered,
            "disconnects": self.disconnects,
            "disconnect_reasons": self.disconnect_reasons,
            "heartbeats_sent": self.heartbeats_sent,
            "heartbeats_answered": self.heartbeats_answered,
            "heartbeats_failed": self.heartbeats_failed,
            "heartbeats_unanswered": self.heartbeats_unanswered,
            "elapsed_s": self.elapsed_s,
            "answered_per_s": self.answered_per_s(),
            "expected_per_s": self.expected_per_s(),
            "p50_us": self.p50_us,
            "p90_us": self.p90_us,
            "p99_us": self.p99_us,
            "max_us": self.max_us,
            "server_cpu_s": self.server_cpu_s,
            "server_cpu_per_s": self.server_cpu_per_s(),
            "server_cpu_per_heartbeat_us": self.server_cpu_per_heartbeat_us(),
            "fleet_cpu_s": self.fleet_cpu_s,
            "peak_rss_kib": self.peak_rss_kib,
            "server_rss_kib": self.server_rss_kib,
            "open_files_limit": self.open_files_limit,
            "healthy": self.healthy(),
        })
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let c = &self.config;
        let mut s = format!(
            "volt-bench --fleet: {} daemons heartbeating every {} ms from {} thread(s), {:.1} s measured against {}{}\n",
            c.daemons,
            c.heartbeat.as_millis(),
            c.threads,
            self.elapsed_s,
            self.url,
            if self.embedded_server { " (embedded mock server)" } else { "" }
        );
        let row = |s: &mut String, k: &str, v: String| s.push_str(&format!("  {k:<20} {v}\n"));
        row(
            &mut s,
            "connected at end",
            format!(
                "{}/{} ({} disconnect(s){}){}",
                self.connected_at_end,
                c.daemons,
                self.disconnects,
                if self.disconnect_reasons.is_empty() {
                    String::new()
                } else {
                    format!(": {}", self.disconnect_reasons.join("; "))
                },
                match self.server_registered {
                    Some(n) => format!(", server lists {n} registered"),
                    None => String::new(),
                }
            ),
        );
        row(
            &mut s,
            "connect time",
            format!("{:.2} s for all {}", self.connect_s, c.daemons),
        );
        row(
            &mut s,
            "heartbeats",
            format!(
                "{:.0} answered/s (expected {:.0}/s; {} sent, {} ok, {} failed, {} unanswered at stop)",
                self.answered_per_s(),
                self.expected_per_s(),
                self.heartbeats_sent,
                self.heartbeats_answered,
                self.heartbeats_failed,
                self.heartbeats_unanswered
            ),
        );
        row(
            &mut s,
            "reply latency p50",
            format!("{:.1} us", self.p50_us),
        );
        row(
            &mut s,
            "reply latency p90",
            format!("{:.1} us", self.p90_us),
        );
        row(
            &mut s,
            "reply latency p99",
            format!("{:.1} us", self.p99_us),
        );
        row(
            &mut s,
            "reply latency max",
            format!("{:.1} us", self.max_us),
        );
        if let (Some(total), Some(per_s)) = (self.server_cpu_s, self.server_cpu_per_s()) {
            row(
                &mut s,
                "server CPU",
                format!(
                    "{:.1} ms/s ({:.2} % of a core), {:.2} us/heartbeat ({:.3} s)",
                    per_s * 1e3,
                    per_s * 100.0,
                    self.server_cpu_per_heartbeat_us().unwrap_or(f64::NAN),
                    total
                ),
            );
        }
        row(
            &mut s,
            "fleet driver CPU",
            format!(
                "{:.1} ms/s ({:.3} s)",
                self.fleet_cpu_s * 1e3 / self.elapsed_s.max(1e-9),
                self.fleet_cpu_s
            ),
        );
        row(
            &mut s,
            "peak RSS",
            format!(
                "{:.1} MiB (VmHWM of volt-bench: the fleet's sockets{})",
                self.peak_rss_kib as f64 / 1024.0,
                if self.embedded_server {
                    " and the embedded server"
                } else {
                    ""
                }
            ),
        );
        if let Some(kib) = self.server_rss_kib {
            row(
                &mut s,
                "server RSS",
                format!("{:.1} MiB (VmRSS at the end)", kib as f64 / 1024.0),
            );
        }
        s
    }
}

/// Open files the fleet needs: one socket per daemon, two with the
/// embedded server (both ends in this process), plus slack.
pub fn files_needed(daemons: usize, embedded: bool) -> u64 {
    daemons as u64 * if embedded { 2 } else { 1 } + 64
}

/// Checks `ulimit -n` against [`files_needed`]; returns the soft limit.
///
/// Raising the soft limit needs `setrlimit`, which this crate cannot call
/// (no `unsafe`, no libc): the error asks the user to raise it in the shell.
pub fn check_open_files(daemons: usize, embedded: bool) -> Result<Option<u64>, String> {
    let need = files_needed(daemons, embedded);
    let Some((soft, hard)) = proc_stat::open_files_limit() else {
        return Ok(None);
    };
    match soft {
        Some(n) if n < need => {
            let target = need.next_power_of_two().max(4096);
            let hint = match hard {
                Some(h) if h < target => format!(
                    "the hard limit is {h}: raise it (e.g. in /etc/security/limits.conf) or run a smaller --fleet"
                ),
                _ => format!("run `ulimit -n {target}` in this shell first"),
            };
            Err(format!(
                "the open-files limit (ulimit -n) is {n}, and {daemons} daemons need about {need} \
                 descriptors{}: {hint}",
                if embedded {
                    " (two per daemon with the embedded server)"
                } else {
                    ""
                }
            ))
        }
        _ => Ok(soft),
    }
}

struct Shared {
    measuring: AtomicBool,
    stop: AtomicBool,
    answered: AtomicU64,
    alive: AtomicUsize,
}

struct Daemon {
    ws: WebSocket<TcpStream>,
    id: usize,
    alive: bool,
    seq: u64,
    /// `(seq, sent at)` of heartbeats not yet answered, oldest first.
    outstanding: VecDeque<(u64, Instant)>,
}

#[derive(Default)]
struct Tally {
    hist: Option<Histogram<u64>>,
    sent: u64,
    answered: u64,
    failed: u64,
    disconnects: u64,
    reasons: Vec<String>,
    alive: usize,
    unanswered: u64,
}

/// Most heartbeats a daemon keeps waiting for; older ones count as lost.
const MAX_OUTSTANDING: usize = 64;

impl Tally {
    fn hist(&mut self) -> &mut Histogram<u64> {
        self.hist.get_or_insert_with(new_histogram)
    }
}

fn is_would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if io.kind() == ErrorKind::WouldBlock)
}

struct Driver<'a> {
    daemons: Vec<Daemon>,
    poll: Poll,
    shared: &'a Shared,
    tally: Tally,
}

impl Driver<'_> {
    fn kill(&mut self, i: usize, reason: String) {
        let d = &mut self.daemons[i];
        if !d.alive {
            return;
        }
        d.alive = false;
        let fd = d.ws.get_ref().as_raw_fd();
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        self.shared.alive.fetch_sub(1, Ordering::Relaxed);
        self.tally.disconnects += 1;
        if self.tally.reasons.len() < 5 {
            self.tally
                .reasons
                .push(format!("daemon {}: {reason}", d.id));
        }
    }

    /// Sends a text frame; a full socket keeps it in tungstenite's buffer
    /// (flushed on the next writable event).
    fn send(&mut self, i: usize, text: String) {
        match self.daemons[i].ws.send(Message::text(text)) {
            Ok(()) => {}
            Err(e) if is_would_block(&e) => {}
            Err(e) => self.kill(i, format!("send: {e}")),
        }
    }

    fn heartbeat(&mut self, i: usize) {
        let d = &mut self.daemons[i];
        if !d.alive {
            return;
        }
        d.seq += 1;
        let frame = format!(
            r#"42/daemon,["command",{{"requestId":"hb-{}-{}","command":"runtime.heartbeat","payload":{{}}}}]"#,
            d.id, d.seq
        );
        if d.outstanding.len() >= MAX_OUTSTANDING {
            d.outstanding.pop_front();
        }
        d.outstanding.push_back((d.seq, Instant::now()));
        if self.shared.measuring.load(Ordering::Relaxed) {
            self.tally.sent += 1;
        }
        self.send(i, frame);
    }

    /// Reads everything the socket has (edge-triggered readiness).
    fn pump(&mut self, i: usize) {
        loop {
            if !self.daemons[i].alive {
                return;
            }
            match self.daemons[i].ws.read() {
                Ok(Message::Text(t)) => self.on_text(i, t.as_str()),
                Ok(Message::Close(_)) => self.kill(i, "closed by the server".into()),
                Ok(_) => {}
                Err(e) if is_would_block(&e) => return,
                Err(e) => self.kill(i, format!("read: {e}")),
            }
        }
    }

    fn on_text(&mut self, i: usize, text: &str) {
        if text == "2" {
            self.send(i, "3".into());
            return;
        }
        if text == "1" || text.starts_with("41/daemon") {
            self.kill(i, format!("the server closed the session ({text})"));
            return;
        }
        let Some(body) = text.strip_prefix("42/daemon,") else {
            return;
        };
        let Ok(Value::Array(args)) = serde_json::from_str::<Value>(body) else {
            return;
        };
        if args.first().and_then(Value::as_str) != Some("command-response") {
            return;
        }
        let Some(resp) = args.get(1) else { return };
        let ok = resp.get("ok").and_then(Value::as_bool) == Some(true);
        let Some(seq) = resp
            .get("requestId")
            .and_then(Value::as_str)
            .and_then(|id| id.rsplit_once('-'))
            .and_then(|(_, n)| n.parse::<u64>().ok())
        else {
            return;
        };
        let now = Instant::now();
        let d = &mut self.daemons[i];
        while d.outstanding.front().is_some_and(|&(s, _)| s < seq) {
            d.outstanding.pop_front();
        }
        let Some(&(s, sent)) = d.outstanding.front() else {
            return;
        };
        if s != seq {
            return;
        }
        d.outstanding.pop_front();
        if !self.shared.measuring.load(Ordering::Relaxed) {
            return;
        }
        if ok {
            self.tally.answered += 1;
            self.shared.answered.fetch_add(1, Ordering::Relaxed);
            let ns = now.duration_since(sent).as_nanos() as u64;
            self.tally.hist().saturating_record(ns);
        } else {
            self.tally.failed += 1;
        }
    }

    fn run(mut self, start: Instant, period: Duration, total: usize) -> std::io::Result<Tally> {
        let mut events = Events::with_capacity(1024);
        let mut schedule: VecDeque<(Instant, usize)> = self
            .daemons
            .iter()
            .enumerate()
            .map(|(i, d)| (start + period.mul_f64(d.id as f64 / total as f64), i))
            .collect();
        schedule.make_contiguous().sort_by_key(|&(due, _)| due);
        // Whatever tungstenite buffered while registering.
        for i in 0..self.daemons.len() {
            self.pump(i);
        }
        while !self.shared.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            while let Some(&(due, i)) = schedule.front() {
                if due > now {
                    break;
                }
                schedule.pop_front();
                // Same period for all, phases under one period apart: the
                // queue stays sorted.
                schedule.push_back((due + period, i));
                self.heartbeat(i);
            }
            let timeout = schedule
                .front()
                .map_or(Duration::from_millis(50), |&(due, _)| {
                    due.saturating_duration_since(now)
                })
                .min(Duration::from_millis(50));
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in events.iter() {
                let i = ev.token().0;
                if ev.is_writable() && self.daemons[i].alive {
                    match self.daemons[i].ws.flush() {
                        Ok(()) => {}
                        Err(e) if is_would_block(&e) => {}
                        Err(e) => self.kill(i, format!("flush: {e}")),
                    }
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    self.pump(i);
                }
            }
        }
        let mut tally = std::mem::take(&mut self.tally);
        tally.alive = self.daemons.iter().filter(|d| d.alive).count();
        tally.unanswered = self
            .daemons
            .iter()
            .map(|d| d.outstanding.len() as u64)
            .sum();
        for d in &mut self.daemons {
            if d.alive {
                let _ = d.ws.close(None);
                let _ = d.ws.flush();
            }
        }
        Ok(tally)
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
    if cfg.daemons == 0 || cfg.threads == 0 {
        return Err("--fleet and --fleet-threads must be at least 1".into());
    }
    if cfg.heartbeat.is_zero() {
        return Err("--heartbeat-ms must be at least 1".into());
    }
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
    let shares: Vec<Vec<Daemon>> = thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let n = cfg.daemons;
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
    })?;
    let connect_s = t0.elapsed().as_secs_f64();

    let shared = Arc::new(Shared {
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        answered: AtomicU64::new(0),
        alive: AtomicUsize::new(cfg.daemons),
    });
    let start = Instant::now() + Duration::from_millis(10);
    let mut handles = Vec::with_capacity(threads);
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

    let deadline = window_start + cfg.duration;
    let draw = cfg.progress && std::io::stderr().is_terminal();
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
    shared.measuring.store(false, Ordering::Relaxed);
    let elapsed = window_start.elapsed();
    let srv1 = server_cpu();
    let fleet1 = fleet_cpu();
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

    let mut hist = new_histogram();
    let mut total = Tally::default();
    for h in handles {
        let t = h
            .join()
            .map_err(|_| "a fleet thread panicked".to_string())?
            .map_err(|e| format!("fleet poll loop: {e}"))?;
        if let Some(h) = &t.hist {
            hist.add(h).map_err(|e| format!("histogram merge: {e}"))?;
        }
        total.sent += t.sent;
        total.answered += t.answered;
        total.failed += t.failed;
        total.disconnects += t.disconnects;
        total.alive += t.alive;
        total.unanswered += t.unanswered;
        total.reasons.extend(t.reasons);
    }
    total.reasons.truncate(5);
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
        elapsed_s: elapsed.as_secs_f64(),
        p50_us: us(0.5),
        p90_us: us(0.9),
        p99_us: us(0.99),
        max_us: hist.max() as f64 / 1e3,
        server_cpu_s: match (srv0, srv1) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        },
        fleet_cpu_s: fleet1 - fleet0,
        peak_rss_kib,
        server_rss_kib,
        open_files_limit,
    })
}
