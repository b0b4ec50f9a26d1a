//! `volt-mock-server`: the mock VOLT server as a standalone process, for CI
//! in any language. See `--help`.

use std::io::Write;
use std::time::Duration;

use volt_mock_server::{Server, ServerConfig, TlsConfig};

const USAGE: &str = "usage: volt-mock-server [--listen 127.0.0.1:0] [--cluster ID:PASSWORD]...
       [--enrollment-token TOKEN]... [--rotate-password NEW]
       [--ping-interval-ms N] [--ping-timeout-ms N] [--max-payload BYTES]
       [--tls-cert PEM --tls-key PEM] [--admin-token T]
       [--max-connections-per-ip N] [--history-limit N]
       [--record-frames] [--no-history]

Recording: by default the server keeps the history tests read back
(daemon commands and messages per cluster, and the Command, Heartbeat and
Message events of the event log), each list bounded by --history-limit
(default 100000, oldest dropped first). --no-history turns that recording
off (for benchmarks: commands are still answered, heartbeats still
counted, and every other event is still logged). Frame recording is off
unless --record-frames is given.

Prints `listening http://ADDR:PORT` (or https://) as its first stdout line.
With no --cluster it serves the demo cluster demo-cluster:demo-password.
Stops on SIGTERM or Ctrl-C. Logging: RUST_LOG (default info).";

fn fail(message: &str) -> ! {
    eprintln!("volt-mock-server: {message}\n\n{USAGE}");
    std::process::exit(2)
}

fn parse_args() -> ServerConfig {
    let mut cfg = ServerConfig::default();
    let mut cert = None;
    let mut key = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        if flag == "--record-frames" {
            cfg.record_frames = true;
            continue;
        }
        if flag == "--no-history" {
            cfg.record_history = false;
            continue;
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .unwrap_or_else(|| fail(&format!("{flag} needs a value")))
        };
        let number = |v: String| -> u64 {
            v.parse()
                .unwrap_or_else(|_| fail(&format!("{flag} needs a non-negative integer, got {v}")))
        };
        match flag.as_str() {
            "--listen" => {
                let v = value();
                cfg.listen = v
                    .parse()
                    .unwrap_or_else(|_| fail(&format!("--listen wants ADDR:PORT, got {v}")));
            }
            "--cluster" => {
                let v = value();
                match v.split_once(':') {
                    Some((id, pw)) if !id.is_empty() => cfg.clusters.push((id.into(), pw.into())),
                    _ => fail("--cluster wants ID:PASSWORD"),
                }
            }
            "--enrollment-token" => cfg.enrollment_tokens.push(value()),
            "--rotate-password" => cfg.rotate_password = Some(value()),
            "--ping-interval-ms" => cfg.ping_interval = Duration::from_millis(number(value())),
            "--ping-timeout-ms" => cfg.ping_timeout = Duration::from_millis(number(value())),
            "--max-payload" => cfg.max_payload = number(value()) as usize,
            "--max-connections-per-ip" => cfg.max_connections_per_ip = number(value()) as usize,
            "--history-limit" => cfg.history_limit = number(value()) as usize,
            "--tls-cert" => cert = Some(value()),
            "--tls-key" => key = Some(value()),
            "--admin-token" => cfg.admin_token = Some(value()),
            other => fail(&format!("unknown argument {other}")),
        }
    }
    match (cert, key) {
        (Some(c), Some(k)) => {
            let read = |p: &str| {
                std::fs::read(p).unwrap_or_else(|e| fail(&format!("cannot read {p}: {e}")))
            };
            cfg.tls = Some(TlsConfig {
                cert_pem: read(&c),
                key_pem: read(&k),
            });
        }
        (None, None) => {}
        _ => fail("--tls-cert and --tls-key go together"),
    }
    if cfg.ping_interval.is_zero() {
        fail("--ping-interval-ms must be positive");
    }
    cfg
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .target(env_logger::Target::Stderr)
        .init();
    let mut cfg = parse_args();
    let demo = cfg.clusters.is_empty();
    if demo {
        cfg.clusters
            .push(("demo-cluster".into(), "demo-password".into()));
    }
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ]);
    let mut signals =
        signals.unwrap_or_else(|e| fail(&format!("cannot install signal handlers: {e}")));
    let server = Server::start(cfg).unwrap_or_else(|e| {
        eprintln!("volt-mock-server: {e}");
        std::process::exit(1)
    });
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening {}", server.url());
        let _ = out.flush();
    }
    if demo {
        eprintln!(
            "volt-mock-server: no --cluster given: serving the demo cluster demo-cluster (password demo-password)"
        );
    }
    if let Some(sig) = signals.forever().next() {
        log::info!("signal {sig}: stopping");
    }
    server.stop();
}
