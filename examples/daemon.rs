//! A daemon's whole life, as a real one would live it: connect (retrying,
//! across fallback URLs, while the server is not up yet), keep a rotated
//! password in a file, serve handlers, log `stats()` every few seconds, and
//! on SIGTERM or Ctrl-C disconnect cleanly and exit 0.
//!
//! ```sh
//! cargo run --release -p volt-mock-server -- --cluster c1:pw      # prints its URL
//! VOLT_URL=http://127.0.0.1:PORT VOLT_CLUSTER=c1 VOLT_PASSWORD=pw \
//!     cargo run -p volt-examples --example daemon
//! ```
//!
//! Configuration, from the environment:
//! - `VOLT_URL` (required), `VOLT_FALLBACK_URLS` (comma-separated): the
//!   server, tried in turn;
//! - `VOLT_CLUSTER`, `VOLT_PASSWORD`: the credentials; `VOLT_PASSWORD_FILE`
//!   (default `daemon-password`): the password in use, read at start when
//!   it exists, written whenever enrollment rotates it;
//! - `VOLT_ENROLLMENT_TOKEN`: enroll once with it (the mock server's
//!   `--enrollment-token`);
//! - `VOLT_STATS_EVERY_MS` (default 10000), `VOLT_CONNECT_ATTEMPTS`
//!   (default 20).
//!
//! What it prints on stdout, one line each: `connected <url>`,
//! `stats <json>`, `signal <name>`, `drained <json>`, `exit 0`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use serde_json::json;
use signal_hook::consts::{SIGINT, SIGTERM};
use volt_daemon_client::{
    Backoff, ClusterDaemonClient, ClusterDaemonClientOptions, CommandResult, DaemonClientError,
    DaemonClientErrorCode, DaemonCredentials, EnrollmentOptions, SocketOptions,
};

/// What the environment configures.
struct Config {
    urls: Vec<String>,
    cluster: String,
    password: String,
    password_file: PathBuf,
    enrollment_token: Option<String>,
    stats_every: Duration,
    connect_attempts: u32,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn env_number(name: &str, default: u64) -> Result<u64, String> {
    env(name).map_or(Ok(default), |v| {
        v.parse().map_err(|e| format!("{name}={v:?}: {e}"))
    })
}

impl Config {
    fn from_env() -> Result<Config, String> {
        let url = env("VOLT_URL").ok_or("VOLT_URL is required")?;
        let mut urls = vec![url];
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
        Ok(Config {
            urls,
            cluster: env("VOLT_CLUSTER").ok_or("VOLT_CLUSTER is required")?,
            password,
            password_file,
            enrollment_token,
            stats_every: Duration::from_millis(env_number("VOLT_STATS_EVERY_MS", 10_000)?),
            connect_attempts: u32::try_from(env_number("VOLT_CONNECT_ATTEMPTS", 20)?)
                .map_err(|e| e.to_string())?,
        })
    }

    fn options(&self, url: &str) -> ClusterDaemonClientOptions {
        let mut credentials = DaemonCredentials::new(&self.cluster, &self.password);
        if let Some(token) = &self.enrollment_token {
            credentials = credentials.with_enrollment_token(token);
        }
        let mut options = ClusterDaemonClientOptions::new(url, url, credentials);
        if self.enrollment_token.is_some() {
            let path = format!("/api/team-clusters/{}/healthcheck", self.cluster);
            options.enrollment = Some(EnrollmentOptions::new(path));
        }
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

/// A client for `url` with its handlers and callbacks.
fn client_for(config: &Config, url: &str) -> Result<ClusterDaemonClient, DaemonClientError> {
    let client = ClusterDaemonClient::new(config.options(url))?;
    let served = Arc::new(AtomicUsize::new(0));
    let file = config.password_file.clone();
    client.on_password_rotated(move |new| match persist_password(&file, new) {
        Ok(()) => println!("password rotated, saved to {}", file.display()),
        Err(e) => eprintln!("password rotated, but saving it failed: {e}"),
    });
    client.on_error(|e| eprintln!("error: {e}"));
    client.on_disconnected(|reason| println!("disconnected ({reason})"));
    client.register_handler_fn("echo", |payload, _ctx| Ok(CommandResult::data(payload)));
    client.register_handler_fn("daemon.info", move |_payload, ctx| {
        let n = served.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(CommandResult::data(json!({
            "pid": std::process::id(),
            "version": env!("CARGO_PKG_VERSION"),
            "requestId": ctx.request_id(),
            "served": n,
        })))
    });
    Ok(client)
}

/// Failures that retrying cannot fix: the server refused these credentials,
/// enrollment was refused, or the configuration is wrong.
fn is_final(e: &DaemonClientError) -> bool {
    match e.code() {
        DaemonClientErrorCode::SocketRegistrationFailed => true,
        DaemonClientErrorCode::EnrollmentFailed => e.status().is_some_and(|s| s < 500),
        _ => false,
    }
}

/// Connects, walking the URLs in turn with the client's backoff (growing
/// per full round) until one registers, the attempts run out, or a signal
/// arrives. The client library's `SocketOptions::retry_initial_connect`
/// and `SocketOptions::fallback_urls` do this inside `connect()` once they
/// exist; this loop is what a daemon writes without them.
fn connect_with_retry(
    config: &mut Config,
    signals: &mpsc::Receiver<&'static str>,
) -> Result<Option<(ClusterDaemonClient, String)>, DaemonClientError> {
    let o = SocketOptions::default();
    let mut backoff = Backoff::new(o.reconnect_base_delay, o.reconnect_max_delay, 0.3, None);
    let per_round = config.urls.len() as u32;
    for attempt in 0..config.connect_attempts {
        let url = &config.urls[(attempt % per_round) as usize];
        let client = client_for(config, url)?;
        match client.connect() {
            Ok(()) => return Ok(Some((client, url.clone()))),
            Err(e) if is_final(&e) => return Err(e),
            Err(e) => {
                eprintln!("connect to {url} failed (attempt {}): {e}", attempt + 1);
                if e.code() != DaemonClientErrorCode::EnrollmentFailed {
                    // Enrollment passed, the socket did not: the token is
                    // spent; register with the (maybe rotated) password.
                    config.enrollment_token = None;
                    config.password = client.daemon_password();
                }
            }
        }
        // On to the next URL; a pause (and a look for signals) per round.
        if (attempt + 1) % per_round == 0 {
            let round = attempt / per_round;
            if let Ok(name) = signals.recv_timeout(backoff.delay(round)) {
                println!("signal {name}");
                return Ok(None);
            }
        }
    }
    Err(DaemonClientError::new(
        DaemonClientErrorCode::SocketConnectionFailed,
        format!("no server answered in {} attempts", config.connect_attempts),
    ))
}

/// SIGTERM and SIGINT, as names on a channel.
fn watch_signals() -> std::io::Result<mpsc::Receiver<&'static str>> {
    let (tx, rx) = mpsc::channel();
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
                if tx.send(name).is_err() {
                    return;
                }
            }
        })?;
    Ok(rx)
}

/// Logs the stats every `every` until a signal arrives.
fn serve(client: &ClusterDaemonClient, every: Duration, signals: &mpsc::Receiver<&'static str>) {
    let mut next = Instant::now() + every;
    loop {
        match signals.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Ok(name) => {
                println!("signal {name}");
                return;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let line = serde_json::to_string(&client.stats()).unwrap_or_default();
                println!("stats {line}");
                next += every;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Stops the client and reports what was in flight and what it had done.
/// With the client's `drain(timeout)` (issue 15), in-flight handlers and
/// commands would finish first; `disconnect()` fails what is in flight at
/// once with `SOCKET_NOT_READY` and joins every thread.
fn drain(client: &ClusterDaemonClient) {
    let before = client.stats();
    client.disconnect();
    let after = client.stats();
    let report = json!({
        "in_flight_at_signal": before.commands_in_flight,
        "handler_queue_at_signal": before.handler_queue_depth,
        "commands_ok": after.commands_ok,
        "commands_cut_off": after.commands_not_ready - before.commands_not_ready,
        "reverse_commands_answered": after.reverse_commands.status_2xx
            + after.reverse_commands.status_4xx
            + after.reverse_commands.status_5xx
            + after.reverse_commands.other,
    });
    println!("drained {report}");
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = Config::from_env()?;
    let signals = watch_signals()?;
    let Some((client, url)) = connect_with_retry(&mut config, &signals)? else {
        return Ok(()); // a signal while connecting: nothing to drain
    };
    println!("connected {url}");
    serve(&client, config.stats_every, &signals);
    drain(&client);
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("daemon: {e}");
        std::process::exit(1);
    }
    println!("exit 0");
}
