//! `volt-bench --idle 5s`: what an idle connected client costs.
//!
//! Connects one real [`ClusterDaemonClient`] (default options, except a
//! long heartbeat interval so that no heartbeat falls in the window), waits
//! a warm-up, then measures over the window, per client thread
//! (`volt-conn`, `volt-events`, `volt-heartbeat`, `volt-handler-*`): CPU
//! time (`utime + stime` in 10 ms ticks, and nanoseconds from `schedstat`)
//! and context switches (`voluntary_ctxt_switches`: one per wake-up;
//! `nonvoluntary_ctxt_switches`: preemptions). Issue 6's target: an idle
//! client uses no CPU between pings (no busy polling, no short-timeout
//! loops), i.e. 0 ticks and a handful of switches per Engine.IO ping.

use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use volt_daemon_client::{ClusterDaemonClient, ClusterDaemonClientOptions, DaemonCredentials};

use crate::proc_stat::{self, ThreadStat};
use crate::{EMBEDDED_CLUSTER, EMBEDDED_PASSWORD};

/// The mock server's default Engine.IO `pingInterval`.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_millis(25_000);

/// Whether a thread name is one of the client's.
pub fn is_client_thread(name: &str) -> bool {
    matches!(name, "volt-conn" | "volt-events" | "volt-heartbeat")
        || name.starts_with("volt-handler-")
}

/// What `volt-bench --idle` runs.
#[derive(Debug, Clone)]
pub struct IdleConfig {
    /// The measured window.
    pub window: Duration,
    /// Unmeasured time after connecting.
    pub warmup: Duration,
    /// The client's heartbeat interval (long, so none falls in the window).
    pub heartbeat_interval: Duration,
    /// Engine.IO `pingInterval` of the embedded server (`None`: 25 s).
    /// Ignored with `url`.
    pub ping_interval: Option<Duration>,
    /// Server URL; `None` starts an embedded server.
    pub url: Option<String>,
    /// Cluster id (with `url`).
    pub cluster: String,
    /// Daemon password (with `url`).
    pub password: String,
}

impl Default for IdleConfig {
    fn default() -> Self {
        IdleConfig {
            window: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(60),
            ping_interval: None,
            url: None,
            cluster: EMBEDDED_CLUSTER.into(),
            password: EMBEDDED_PASSWORD.into(),
        }
    }
}

/// One client thread over the window (deltas), or several of the same name
/// added up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdleThread {
    /// Thread name.
    pub name: String,
    /// How many threads of that name.
    pub count: usize,
    /// CPU, clock ticks (10 ms).
    pub ticks: u64,
    /// CPU, nanoseconds (`schedstat`), when the kernel has schedstats.
    pub cpu_ns: Option<u64>,
    /// Voluntary context switches (wake-ups).
    pub voluntary: u64,
    /// Involuntary context switches (preemptions).
    pub nonvoluntary: u64,
}

/// What an idle window measured.
#[derive(Debug, Clone)]
pub struct IdleReport {
    /// The configuration it ran.
    pub config: IdleConfig,
    /// The URL it ran against.
    pub url: String,
    /// Whether the server was the embedded one.
    pub embedded_server: bool,
    /// The server's `pingInterval`, when known (embedded server).
    pub ping_interval: Option<Duration>,
    /// The measured window, seconds.
    pub window_s: f64,
    /// The client's threads over the window, by name.
    pub threads: Vec<IdleThread>,
    /// Client threads that started or ended during the window (a
    /// reconnect, a handler pool resizing): their figures are partial.
    pub threads_changed: usize,
    /// Frames the embedded server sent in the window (pings), when known.
    pub server_frames_out: Option<u64>,
    /// Frames the embedded server received in the window (pongs), when known.
    pub server_frames_in: Option<u64>,
    /// Whether the client was still ready at the end.
    pub ready_at_end: bool,
}

impl IdleReport {
    /// Client CPU ticks over the window, all client threads.
    pub fn ticks(&self) -> u64 {
        self.threads.iter().map(|t| t.ticks).sum()
    }

    /// Client CPU over the window in microseconds (`schedstat`), when known.
    pub fn cpu_us(&self) -> Option<f64> {
        self.threads
            .iter()
            .map(|t| t.cpu_ns)
            .sum::<Option<u64>>()
            .map(|ns| ns as f64 / 1e3)
    }

    /// Voluntary context switches over the window, all client threads.
    pub fn voluntary(&self) -> u64 {
        self.threads.iter().map(|t| t.voluntary).sum()
    }

    /// Involuntary context switches over the window, all client threads.
    pub fn nonvoluntary(&self) -> u64 {
        self.threads.iter().map(|t| t.nonvoluntary).sum()
    }

    /// Pings in the window: counted by the embedded server, else expected
    /// from the ping interval (`None` when neither is known).
    pub fn pings(&self) -> Option<f64> {
        self.server_frames_out.map(|n| n as f64).or_else(|| {
            self.ping_interval
                .map(|p| self.window_s / p.as_secs_f64().max(1e-9))
        })
    }

    /// Context switches (both kinds) per ping, when pings are known and
    /// there was at least one.
    pub fn switches_per_ping(&self) -> Option<f64> {
        self.pings()
            .filter(|&p| p > 0.0)
            .map(|p| (self.voluntary() + self.nonvoluntary()) as f64 / p)
    }

    /// The machine-readable form (`--json`).
    pub fn to_json(&self) -> Value {
        let threads: Value = self
            .threads
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "count": t.count,
                    "ticks": t.ticks,
                    "cpu_us": t.cpu_ns.map(|n| n as f64 / 1e3),
                    "voluntary_ctxt_switches": t.voluntary,
                    "nonvoluntary_ctxt_switches": t.nonvoluntary,
                })
            })
            .collect();
        json!({
            "mode": "idle",
            "url": self.url,
            "embedded_server": self.embedded_server,
            "ping_interval_ms": self.ping_interval.map(|p| p.as_millis() as u64),
            "heartbeat_interval_ms": self.config.heartbeat_interval.as_millis() as u64,
            "window_s": self.window_s,
            "client_ticks": self.ticks(),
            "client_cpu_us": self.cpu_us(),
            "voluntary_ctxt_switches": self.voluntary(),
            "nonvoluntary_ctxt_switches": self.nonvoluntary(),
            "pings": self.pings(),
            "server_frames_out": self.server_frames_out,
            "server_frames_in": self.server_frames_in,
            "switches_per_ping": self.switches_per_ping(),
            "threads_changed": self.threads_changed,
            "ready_at_end": self.ready_at_end,
            "threads": threads,
        })
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut s = format!(
            "volt-bench --idle: one connected client, idle for {:.1} s against {}{}; pingInterval {}, heartbeat every {} s\n",
            self.window_s,
            self.url,
            if self.embedded_server { " (embedded mock server)" } else { "" },
            match self.ping_interval {
                Some(p) => format!("{} ms", p.as_millis()),
                None => "(the server's)".into(),
            },
            self.config.heartbeat_interval.as_secs()
        );
        let pings = match (self.server_frames_out, self.pings()) {
            (Some(n), _) => format!(
                "{n} ping(s) sent by the server, {} frame(s) received",
                self.server_frames_in.unwrap_or(0)
            ),
            (None, Some(p)) => format!("≈{p:.1} ping(s) expected"),
            (None, None) => "unknown".into(),
        };
        s.push_str(&format!("  {:<20} {pings}\n", "pings in window"));
        s.push_str(&format!(
            "  {:<20} {} tick(s), {}\n",
            "client CPU",
            self.ticks(),
            match self.cpu_us() {
                Some(us) => format!("{us:.0} us on CPU (schedstat)"),
                None => "no schedstat".into(),
            }
        ));
        s.push_str(&format!(
            "  {:<20} {} voluntary + {} involuntary{}\n",
            "context switches",
            self.voluntary(),
            self.nonvoluntary(),
            match self.switches_per_ping() {
                Some(x) => format!(" ({x:.1} per ping)"),
                None => String::new(),
            }
        ));
        s.push_str(&format!(
            "  {:<20} {}\n",
            "still connected",
            if self.ready_at_end { "yes" } else { "NO" }
        ));
        s.push_str("  per thread:            ticks   cpu us  voluntary  involuntary\n");
        for t in &self.threads {
            let name = if t.count > 1 {
                format!("{} (x{})", t.name, t.count)
            } else {
                t.name.clone()
            };
            s.push_str(&format!(
                "    {:<20} {:>5} {:>8} {:>10} {:>12}\n",
                name,
                t.ticks,
                t.cpu_ns
                    .map_or("-".into(), |n| format!("{:.0}", n as f64 / 1e3)),
                t.voluntary,
                t.nonvoluntary
            ));
        }
        if self.threads_changed > 0 {
            s.push_str(&format!(
                "  ({} client thread(s) started or ended during the window)\n",
                self.threads_changed
            ));
        }
        s
    }
}

/// Per-name deltas between two snapshots of the same threads; also how
/// many threads are in only one of them.
fn deltas(before: &[ThreadStat], after: &[ThreadStat]) -> (Vec<IdleThread>, usize) {
    let mut by_name: BTreeMap<String, IdleThread> = BTreeMap::new();
    let mut changed = 0;
    for a in after {
        let b = before.iter().find(|b| b.tid == a.tid);
        if b.is_none() {
            changed += 1;
        }
        // Handler threads are all alike: group them.
        let key = if a.name.starts_with("volt-handler-") {
            "volt-handler-*".to_owned()
        } else {
            a.name.clone()
        };
        let e = by_name.entry(key.clone()).or_insert_with(|| IdleThread {
            name: key,
            cpu_ns: Some(0),
            ..IdleThread::default()
        });
        e.count += 1;
        e.ticks += a.ticks - b.map_or(0, |b| b.ticks);
        e.cpu_ns = match (e.cpu_ns, a.cpu_ns, b.map(|b| b.cpu_ns)) {
            (Some(sum), Some(x), Some(Some(y))) => Some(sum + x.saturating_sub(y)),
            (Some(sum), Some(x), None) => Some(sum + x),
            _ => None,
        };
        e.voluntary += a.voluntary - b.map_or(0, |b| b.voluntary);
        e.nonvoluntary += a.nonvoluntary - b.map_or(0, |b| b.nonvoluntary);
    }
    changed += before
        .iter()
        .filter(|b| !after.iter().any(|a| a.tid == b.tid))
        .count();
    (by_name.into_values().collect(), changed)
}

/// Runs the idle window and measures it.
pub fn run_idle(cfg: &IdleConfig) -> Result<IdleReport, String> {
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
    let ping_interval = server.as_ref().map(|s| s.config().ping_interval);
    let mut options =
        ClusterDaemonClientOptions::new(&url, &url, DaemonCredentials::new(cluster, password));
    options.heartbeat.interval = cfg.heartbeat_interval;
    let client =
        ClusterDaemonClient::new(options).map_err(|e| format!("bad client options: {e}"))?;
    client
        .connect()
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    thread::sleep(cfg.warmup);

    let stats0 = server.as_ref().map(|s| s.stats());
    let before = proc_stat::threads("self", is_client_thread);
    let start = Instant::now();
    thread::sleep(cfg.window);
    let after = proc_stat::threads("self", is_client_thread);
    let window_s = start.elapsed().as_secs_f64();
    let stats1 = server.as_ref().map(|s| s.stats());
    let ready_at_end = client.is_ready();
    client.disconnect();
    drop(client);
    drop(server);
    if before.is_empty() {
        return Err("no client thread found in /proc/self/task".into());
    }
    let (threads, threads_changed) = deltas(&before, &after);
    let (server_frames_out, server_frames_in) = match (stats0, stats1) {
        (Some(a), Some(b)) => (
            Some(b.frames_out - a.frames_out),
            Some(b.frames_in - a.frames_in),
        ),
        _ => (None, None),
    };
    Ok(IdleReport {
        config: cfg.clone(),
        url,
        embedded_server: cfg.url.is_none(),
        ping_interval,
        window_s,
        threads,
        threads_changed,
        server_frames_out,
        server_frames_in,
        ready_at_end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(tid: u64, name: &str, ticks: u64, ns: u64, v: u64) -> ThreadStat {
        ThreadStat {
            tid,
            name: name.into(),
            ticks,
            cpu_ns: Some(ns),
            voluntary: v,
            nonvoluntary: 0,
        }
    }

    #[test]
    fn deltas_group_handlers_and_count_changes() {
        let before = [
            t(1, "volt-conn", 5, 1000, 10),
            t(2, "volt-handler-0", 0, 10, 1),
            t(3, "volt-handler-1", 0, 10, 1),
            t(9, "volt-events", 0, 0, 1),
        ];
        let after = [
            t(1, "volt-conn", 5, 1500, 12),
            t(2, "volt-handler-0", 0, 10, 1),
            t(3, "volt-handler-1", 0, 20, 2),
        ];
        let (d, changed) = deltas(&before, &after);
        assert_eq!(changed, 1);
        let conn = d.iter().find(|x| x.name == "volt-conn").unwrap();
        assert_eq!((conn.ticks, conn.cpu_ns, conn.voluntary), (0, Some(500), 2));
        let h = d.iter().find(|x| x.name == "volt-handler-*").unwrap();
        assert_eq!((h.count, h.cpu_ns, h.voluntary), (2, Some(10), 1));
    }

    #[test]
    fn client_thread_names() {
        assert!(is_client_thread("volt-conn"));
        assert!(is_client_thread("volt-handler-3"));
        assert!(!is_client_thread("volt-mock-loop"));
        assert!(!is_client_thread("volt-fleet-0"));
    }
}
