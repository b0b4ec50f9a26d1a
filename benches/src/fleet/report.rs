//! What a fleet run measured, as JSON and as a table.

use serde_json::{json, Value};

use super::FleetConfig;

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
        for (k, v) in self.health_rows().into_iter().chain(self.cost_rows()) {
            s.push_str(&format!("  {k:<20} {v}\n"));
        }
        s
    }

    /// The table's rows about the fleet: connections, heartbeats, latency.
    fn health_rows(&self) -> Vec<(&'static str, String)> {
        let c = &self.config;
        let mut rows = Vec::new();
        rows.push((
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
        ));
        rows.push((
            "connect time",
            format!("{:.2} s for all {}", self.connect_s, c.daemons),
        ));
        rows.push(("heartbeats",
            format!(
                "{:.0} answered/s (expected {:.0}/s; {} sent, {} ok, {} failed, {} unanswered at stop)",
                self.answered_per_s(),
                self.expected_per_s(),
                self.heartbeats_sent,
                self.heartbeats_answered,
                self.heartbeats_failed,
                self.heartbeats_unanswered
            ),
        ));
        rows.push(("reply latency p50", format!("{:.1} us", self.p50_us)));
        rows.push(("reply latency p90", format!("{:.1} us", self.p90_us)));
        rows.push(("reply latency p99", format!("{:.1} us", self.p99_us)));
        rows.push(("reply latency max", format!("{:.1} us", self.max_us)));
        rows
    }

    /// The table's rows about what the run cost: CPU and memory.
    fn cost_rows(&self) -> Vec<(&'static str, String)> {
        let mut rows = Vec::new();
        if let (Some(total), Some(per_s)) = (self.server_cpu_s, self.server_cpu_per_s()) {
            rows.push((
                "server CPU",
                format!(
                    "{:.1} ms/s ({:.2} % of a core), {:.2} us/heartbeat ({:.3} s)",
                    per_s * 1e3,
                    per_s * 100.0,
                    self.server_cpu_per_heartbeat_us().unwrap_or(f64::NAN),
                    total
                ),
            ));
        }
        rows.push((
            "fleet driver CPU",
            format!(
                "{:.1} ms/s ({:.3} s)",
                self.fleet_cpu_s * 1e3 / self.elapsed_s.max(1e-9),
                self.fleet_cpu_s
            ),
        ));
        rows.push((
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
        ));
        if let Some(kib) = self.server_rss_kib {
            rows.push((
                "server RSS",
                format!("{:.1} MiB (VmRSS at the end)", kib as f64 / 1024.0),
            ));
        }
        rows
    }
}
