//! `volt-herd daemons`: one child process of the herd, holding `count`
//! full [`ClusterDaemonClient`]s (our client, not raw sockets), each with one
//! handler thread and no heartbeat traffic to speak of. It reports on stdout,
//! one JSON object a line, every event the herd measures, stamped with the
//! wall clock in µs since the Unix epoch (the parent is on the same machine
//! and clock):
//!
//! - `{"i":7,"ev":"registered","t":…}`: `on_connected` (initial or again);
//! - `{"i":7,"ev":"lost","t":…}`: `on_disconnected`;
//! - `{"i":7,"ev":"failed","t":…}`: `on_error` with `SOCKET_CONNECTION_FAILED`
//!   (a reconnection attempt that failed: refused, or cut during the
//!   handshake);
//! - `{"i":7,"ev":"error","code":"…","t":…}`: any other `on_error`;
//! - `{"ev":"connected","n":100}` once every client's first `connect()` returned.
//!
//! It exits when its stdin ends (the parent closes it), without a graceful
//! disconnect: the parent has stopped measuring by then.

use std::io::{self, Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use volt_daemon_client::{
    ClusterDaemonClient, ClusterDaemonClientOptions, DaemonClientErrorCode, DaemonCredentials,
    HandlerPoolOptions, HeartbeatOptions, SocketOptions,
};

use crate::herd_model::BackoffRule;

/// What one child process runs.
#[derive(Debug, Clone)]
pub struct DaemonsConfig {
    /// `ws://ADDR:PORT` of the server.
    pub url: String,
    /// Index of the first daemon (indices are global across processes).
    pub first: usize,
    /// Daemons in this process.
    pub count: usize,
    /// Cluster and password every daemon registers with.
    pub cluster: String,
    /// Its password.
    pub password: String,
    /// The reconnection settings.
    pub rule: BackoffRule,
    /// Daemon `i` seeds its jitter with `seed + i`.
    pub seed: u64,
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn say(line: String) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

fn report(i: usize, ev: &str) {
    say(format!(r#"{{"i":{i},"ev":"{ev}","t":{}}}"#, now_us()));
}

/// The options of daemon `i`.
fn options(cfg: &DaemonsConfig, i: usize) -> ClusterDaemonClientOptions {
    let url = &cfg.url;
    let http = url.replacen("ws://", "http://", 1);
    ClusterDaemonClientOptions::new(
        http,
        url.clone(),
        DaemonCredentials::new(cfg.cluster.clone(), cfg.password.clone()),
    )
    // Heartbeats would only add load: one an hour.
    .with_heartbeat(HeartbeatOptions::default().with_interval(Duration::from_secs(3_600)))
    .with_handlers(
        HandlerPoolOptions::default()
            .with_threads(1)
            .with_queue_capacity(4),
    )
    .with_socket(
        SocketOptions::default()
            .with_reconnect_base_delay(Duration::from_millis(cfg.rule.base_ms))
            .with_reconnect_max_delay(Duration::from_millis(cfg.rule.max_ms))
            .with_randomization_factor(cfg.rule.factor)
            .with_rng_seed(Some(cfg.seed.wrapping_add(i as u64))),
    )
}

/// Builds daemon `i` with its callbacks and connects it (three tries: the
/// server may be slow while the others register).
fn start(cfg: &DaemonsConfig, i: usize) -> Result<ClusterDaemonClient, String> {
    let client = ClusterDaemonClient::new(options(cfg, i)).map_err(|e| e.to_string())?;
    client.on_connected(move || report(i, "registered"));
    client.on_disconnected(move |_reason| report(i, "lost"));
    client.on_error(move |e| {
        if e.code() == DaemonClientErrorCode::SocketConnectionFailed {
            report(i, "failed");
        } else {
            say(format!(
                r#"{{"i":{i},"ev":"error","code":"{}","t":{}}}"#,
                e.code().as_str(),
                now_us()
            ));
        }
    });
    let mut last = String::new();
    for _ in 0..3 {
        match client.connect() {
            Ok(()) => return Ok(client),
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!("daemon {i} could not connect: {last}"))
}

/// Runs the child: connects every daemon, reports, and exits the process
/// when stdin ends (no graceful disconnect: measuring is over). Returns
/// only on a failed connect.
pub fn run_daemons(cfg: &DaemonsConfig) -> Result<(), String> {
    let clients = (cfg.first..cfg.first + cfg.count)
        .map(|i| start(cfg, i))
        .collect::<Result<Vec<_>, _>>()?;
    say(format!(r#"{{"ev":"connected","n":{}}}"#, clients.len()));
    let mut sink = Vec::new();
    let _ = io::stdin().read_to_end(&mut sink);
    std::process::exit(0)
}
