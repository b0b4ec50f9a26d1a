//! A daemon's whole life, as a real one would live it: start before the
//! server is up (`retry_initial_connect`), fail over across several URLs
//! (`fallback_urls`), keep a rotated password in a file, serve handlers,
//! log `stats()` every few seconds, and on SIGTERM or Ctrl-C `drain()`
//! (in-flight handlers and commands finish, new ones are refused) and exit 0.
//!
//! ```sh
//! cargo run --release -p volt-mock-server -- --cluster c1:pw      # prints its URL
//! VOLT_URL=http://127.0.0.1:PORT VOLT_CLUSTER=c1 VOLT_PASSWORD=pw \
//!     cargo run -p volt-examples --example daemon
//! ```
//!
//! Configuration, from the environment:
//! - `VOLT_URL` (required), `VOLT_FALLBACK_URLS` (comma-separated): the
//!   control socket, tried in turn; `VOLT_SERVER_URL` (default `VOLT_URL`):
//!   where enrollment goes;
//! - `VOLT_CLUSTER`, `VOLT_PASSWORD`: the credentials; `VOLT_PASSWORD_FILE`
//!   (default `daemon-password`): the password in use, read at start when
//!   it exists, written whenever enrollment rotates it;
//! - `VOLT_ENROLLMENT_TOKEN`: enroll once with it (the mock server's
//!   `--enrollment-token`);
//! - `VOLT_STATS_EVERY_MS` (default 10000), `VOLT_CONNECT_ATTEMPTS`
//!   (default: retry for ever), `VOLT_DRAIN_MS` (default 10000).
//!
//! What it prints on stdout, one line each: `connected <url>`,
//! `stats <json>`, `sleeping <ms> ms` (the `daemon.sleep` handler),
//! `signal <name>`, `drained <json>`, `exit 0`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use serde_json::json;
use signal_hook::consts::{SIGINT, SIGTERM};
use volt_daemon_client::{
    ClusterDaemonClient, ClusterDaemonClientOptions, CommandResult, ConnectionState,
    DaemonClientError, DaemonCredentials, EnrollmentOptions,
};

/// What the environment configures.
struct Config {
    urls: Vec<String>,
    server_url: String,
    cluster: String,
    password: String,
    password_file: PathBuf,
    enrollment_token: Option<String>,
    stats_every: Duration,
    connect_attempts: Option<u32>,
    drain_timeout: Duration,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn env_number(name: &str) -> Result<Option<u64>, String> {
    env(name)
        .map(|v| v.parse().map_err(|e| format!("{name}={v:?}: {e}")))
        .transpose()
}

fn millis(name: &str, default: u64) -> Result<Duration, String> {
    Ok(Duration::from_millis(env_number(name)?.unwrap_or(default)))
}

impl Config {
    fn from_env() -> Result<Config, String> {
        let url = env("VOLT_URL").ok_or("VOLT_URL is required")?;
        let mut urls = vec![url.clone()];
        if let Some(more) = env("VOLT_FALLBACK_URLS") {
            urls.extend(more.split(',').map(str::trim).map(str::to_owned));
        }
        let password_file =
            PathBuf::from(env("VOLT_PASSWORD_FILE").unwrap_or_else(|| "daemon-password".into()));
        // The file holds the password an earlier run's enrollment rotated:
        // that run spent the one-time token, so this one does not enroll.
        let (password, enrollment_token) = match std::fs::read_to_string(&password_file) {
            Ok(saved) if !saved.trim().is_empty() => (saved.trim().to_owned(), None),
            _ => (
                env("VOLT_PASSWORD").ok_or("VOLT_PASSWORD (or a password file) is required")?,
                env("VOLT_ENROLLMENT_TOKEN"),
            ),
        };
        let connect_attempts = env_number("VOLT_CONNECT_ATTEMPTS")?
            .map(u32::try_from)
            .transpose()
            .map_err(|e| e.to_string())?;
        Ok(Config {
            urls,
            server_url: env("VOLT_SERVER_URL").unwrap_or(url),
            cluster: env("VOLT_CLUSTER").ok_or("VOLT_CLUSTER is required")?,
            password,
            password_file,
            enrollment_token,
            stats_every: millis("VOLT_STATS_EVERY_MS", 10_000)?,
            connect_attempts,
            drain_timeout: millis("VOLT_DRAIN_MS", 10_000)?,
        })
    }

    fn options(&self) -> ClusterDaemonClientOptions {
        let mut credentials = DaemonCredentials::new(&self.cluster, &self.password);
        if let Some(token) = &self.enrollment_token {
            credentials = credentials.with_enrollment_token(token);
        }
        let mut options =
            ClusterDaemonClientOptions::new(&self.server_url, &self.urls[0], credentials);
        if self.enrollment_token.is_some() {
            let path = format!("/api/team-clusters/{}/healthcheck", self.cluster);
            options.enrollment = Some(EnrollmentOptions::new(path));
        }
        // Start before the server is up, and walk the URLs in turn.
        options.socket.retry_initial_connect = true;
        options.socket.fallback_urls = self.urls[1..].to_vec();
        options.socket.max_reconnect_attempts = self.connect_attempts;
        options.socket.connect_timeout = Duration::from_secs(5);
        options
    }
}

/// Writes the password next to its final place, then renames it there: a
/// crash never leaves half a password.
fn persist_password(path: &Path, password: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, password)?;
    std::fs::rename(&tmp, path)
}

/// What the main thread waits for.
enum Event {
    Signal(&'static str),
    State(ConnectionState),
}

/// The client with its handlers and callbacks; state changes go to `tx`.
fn client(
    config: &Config,
    tx: mpsc::Sender<Event>,
) -> Result<ClusterDaemonClient, DaemonClientError> {
    let client = ClusterDaemonClient::new(config.options())?;
    let file = config.password_file.clone();
    client.on_password_rotated(move |new| match persist_password(&file, new) {
        Ok(()) => println!("password rotated, saved to {}", file.display()),
        Err(e) => eprintln!("password rotated, but saving it failed: {e}"),
    });
    client.on_error(|e| eprintln!("error: {e}"));
    client.on_state_change(move |change| {
        eprintln!("state: {:?} ({})", change.state, change.reason);
        let _ = tx.send(Event::State(change.state.clone()));
    });
    client.register_handler_fn("echo", |payload, _ctx| Ok(CommandResult::data(payload)));
    let served = Arc::new(AtomicUsize::new(0));
    client.register_handler_fn("daemon.info", move |_payload, ctx| {
        let n = served.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(CommandResult::data(json!({
            "pid": std::process::id(),
            "version": env!("CARGO_PKG_VERSION"),
            "requestId": ctx.request_id(),
            "served": n,
        })))
    });
    // A slow job, as a drain finds one in progress: `{"ms": 300}`.
    client.register_handler_fn("daemon.sleep", |payload, _ctx| {
        let ms = payload
            .get("ms")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(100);
        println!("sleeping {ms} ms");
        std::thread::sleep(Duration::from_millis(ms));
        Ok(CommandResult::data(json!({ "slept_ms": ms })))
    });
    Ok(client)
}

/// SIGTERM and SIGINT, as events.
fn watch_signals(tx: mpsc::Sender<Event>) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let name = if signal == SIGTERM {
                    "SIGTERM"
                } else {
                    "SIGINT"
                };
                if tx.send(Event::Signal(name)).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}

/// Waits until the client is ready (its URL), gave up (an error), or a
/// signal came first (`None`).
fn wait_connected(events: &mpsc::Receiver<Event>) -> Result<Option<String>, String> {
    for event in events {
        match event {
            Event::Signal(name) => {
                println!("signal {name}");
                return Ok(None);
            }
            Event::State(ConnectionState::Ready { url, .. }) => return Ok(Some(url)),
            Event::State(
                s @ (ConnectionState::GaveUp { .. } | ConnectionState::Disconnected { .. }),
            ) => return Err(format!("not connected: {s:?}")),
            Event::State(_) => {}
        }
    }
    Err("the event channel closed".into())
}

/// Logs the stats every `every` until a signal arrives.
fn serve(client: &ClusterDaemonClient, every: Duration, events: &mpsc::Receiver<Event>) {
    let mut next = Instant::now() + every;
    loop {
        match events.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Ok(Event::Signal(name)) => {
                println!("signal {name}");
                return;
            }
            Ok(Event::State(_)) => {} // reconnections: logged by the callback
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let line = serde_json::to_string(&client.stats()).unwrap_or_default();
                println!("stats {line}");
                next += every;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Drains (in-flight handlers and commands finish, new ones are refused,
/// then it disconnects) and reports.
fn drain(client: &ClusterDaemonClient, timeout: Duration) {
    let r = client.drain(timeout);
    let stats = client.stats();
    let report = json!({
        "clean": r.is_clean(),
        "handlers_finished": r.handlers_finished,
        "handlers_cut_off": r.handlers_cut_off,
        "commands_finished": r.commands_finished,
        "commands_cut_off": r.commands_cut_off,
        "reverse_commands_refused": r.reverse_commands_refused,
        "elapsed_ms": r.elapsed.as_millis(),
        "reverse_commands_answered": stats.reverse_commands.status_2xx,
    });
    println!("drained {report}");
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_env()?;
    let (tx, events) = mpsc::channel();
    watch_signals(tx.clone())?;
    let client = client(&config, tx)?;
    client.connect_in_background()?;
    let Some(url) = wait_connected(&events)? else {
        client.disconnect(); // a signal while connecting: nothing to drain
        return Ok(());
    };
    println!("connected {url}");
    serve(&client, config.stats_every, &events);
    drain(&client, config.drain_timeout);
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("daemon: {e}");
        std::process::exit(1);
    }
    println!("exit 0");
}
