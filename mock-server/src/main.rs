//! `volt-mock-server`: the mock VOLT server as a standalone process, for CI
//! in any language. See `--help`.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, Parser};
use serde::Deserialize;
use serde_json::Value;
use volt_mock_server::{Faults, Responder, Server, ServerConfig, ServerHandle, TlsConfig};

const AFTER_HELP: &str = "\
Every flag can also be set from the environment variable shown with it
(a flag on the command line wins; an empty variable counts as unset).
VOLT_MOCK_CLUSTER and VOLT_MOCK_ENROLLMENT_TOKEN take several values
separated by commas; the boolean ones take true/false, 1/0, yes/no or on/off.

Recording: by default the server keeps the history tests read back
(daemon commands and messages per cluster, and the Command, Heartbeat and
Message events of the event log), each list bounded by --history-limit
(default 100000, oldest dropped first). --no-history turns that recording
off (for benchmarks: commands are still answered, heartbeats still
counted, and every other event is still logged). Frame recording is off
unless --record-frames is given.

--config FILE preloads a scenario (JSON, every key optional):
  {\"clusters\": [{\"teamClusterId\": \"c1\", \"daemonPassword\": \"pw\"}],
   \"enrollment\": {\"tokens\": [\"t1\"], \"rotateTo\": \"pw2\", \"failStatus\": 503},
   \"responders\": {\"status\": {\"ok\": true, \"data\": {\"up\": true}}},
   \"faults\": {\"dropOnCommand\": \"crash\"}}
with the bodies of POST /admin/clusters, PUT /admin/enrollment,
PUT /admin/responders/{command} and PUT /admin/faults. It is in place
before the first stdout line is printed; flags add to it.

Prints `listening http://ADDR:PORT` (or https://) as its first stdout line.
With no cluster given it serves the demo cluster demo-cluster:demo-password.
Stops on SIGTERM or Ctrl-C. Logging: RUST_LOG (default info).
Exit codes: 0 stopped by a signal, 1 could not start, 2 bad usage.";

/// The command line. Values that may be secrets hide their environment
/// value from `--help`.
#[derive(Parser, Debug)]
#[command(
    name = "volt-mock-server",
    version,
    about = "A mock VOLT control-plane server (socket.io v5 over WebSocket) with an HTTP admin API.",
    after_help = AFTER_HELP,
    args_override_self = true
)]
struct Cli {
    /// Where to listen, ADDR:PORT (port 0: an ephemeral port).
    #[arg(
        long,
        env = "VOLT_MOCK_LISTEN",
        value_name = "ADDR:PORT",
        default_value = "127.0.0.1:0"
    )]
    listen: SocketAddr,
    /// A cluster daemons may register as (repeatable).
    #[arg(
        long = "cluster",
        env = "VOLT_MOCK_CLUSTER",
        value_name = "ID:PASSWORD",
        hide_env_values = true
    )]
    clusters: Vec<String>,
    /// A one-time enrollment token (repeatable).
    #[arg(
        long = "enrollment-token",
        env = "VOLT_MOCK_ENROLLMENT_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    enrollment_tokens: Vec<String>,
    /// The password every successful enrollment rotates to.
    #[arg(
        long,
        env = "VOLT_MOCK_ROTATE_PASSWORD",
        value_name = "NEW",
        hide_env_values = true
    )]
    rotate_password: Option<String>,
    /// Engine.IO pingInterval, ms (positive).
    #[arg(long, env = "VOLT_MOCK_PING_INTERVAL_MS", value_name = "N", default_value_t = 25_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    ping_interval_ms: u64,
    /// Engine.IO pingTimeout, ms.
    #[arg(
        long,
        env = "VOLT_MOCK_PING_TIMEOUT_MS",
        value_name = "N",
        default_value_t = 20_000
    )]
    ping_timeout_ms: u64,
    /// Largest frame accepted; larger ones close the connection with 1009.
    #[arg(
        long,
        env = "VOLT_MOCK_MAX_PAYLOAD",
        value_name = "BYTES",
        default_value_t = 1_000_000
    )]
    max_payload: usize,
    /// Certificate chain (PEM) to serve wss:// and https://; needs --tls-key.
    #[arg(
        long,
        env = "VOLT_MOCK_TLS_CERT",
        value_name = "PEM",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,
    /// Private key (PKCS #8 PEM) for --tls-cert.
    #[arg(
        long,
        env = "VOLT_MOCK_TLS_KEY",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
    /// CA certificates (PEM): require client certificates that chain to
    /// them (mutual TLS); `GET /admin/daemons` shows each verified subject.
    #[arg(
        long,
        env = "VOLT_MOCK_TLS_CLIENT_CA",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    tls_client_ca: Option<PathBuf>,
    /// Require `Authorization: Bearer T` on /admin/...
    #[arg(
        long,
        env = "VOLT_MOCK_ADMIN_TOKEN",
        value_name = "T",
        hide_env_values = true
    )]
    admin_token: Option<String>,
    /// Most simultaneous connections from one IP address.
    #[arg(
        long,
        env = "VOLT_MOCK_MAX_CONNECTIONS_PER_IP",
        value_name = "N",
        default_value_t = 4096
    )]
    max_connections_per_ip: usize,
    /// Most entries kept in each history list (oldest dropped first).
    #[arg(
        long,
        env = "VOLT_MOCK_HISTORY_LIMIT",
        value_name = "N",
        default_value_t = 100_000
    )]
    history_limit: usize,
    /// Record every frame (GET /admin/frames).
    #[arg(long, env = "VOLT_MOCK_RECORD_FRAMES", value_parser = BoolishValueParser::new(),
          action = clap::ArgAction::SetTrue)]
    record_frames: bool,
    /// Keep no command/message history (for benchmarks).
    #[arg(long, env = "VOLT_MOCK_NO_HISTORY", value_parser = BoolishValueParser::new(),
          action = clap::ArgAction::SetTrue)]
    no_history: bool,
    /// A JSON scenario to preload: clusters, enrollment, responders, faults.
    #[arg(long, env = "VOLT_MOCK_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

/// The `--config` file.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Scenario {
    #[serde(default)]
    clusters: Vec<ClusterEntry>,
    #[serde(default)]
    enrollment: Option<EnrollmentEntry>,
    #[serde(default)]
    responders: BTreeMap<String, Value>,
    #[serde(default)]
    faults: Option<Faults>,
}

/// One cluster: the body of `POST /admin/clusters`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClusterEntry {
    team_cluster_id: String,
    daemon_password: String,
}

/// The body of `PUT /admin/enrollment`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EnrollmentEntry {
    #[serde(default)]
    tokens: Vec<String>,
    #[serde(default)]
    rotate_to: Option<String>,
    #[serde(default)]
    fail_status: Option<u16>,
}

/// Exits 2 with clap's error format, like every other usage error.
fn usage_error(kind: ErrorKind, message: impl std::fmt::Display) -> ! {
    Cli::command().error(kind, message).exit()
}

/// The values of a repeatable argument; one from the environment holds a
/// comma-separated list (a flag value is taken whole, as it always was).
fn list(matches: &ArgMatches, id: &str, values: Vec<String>) -> Vec<String> {
    if matches.value_source(id) != Some(ValueSource::EnvVariable) {
        return values;
    }
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `ID:PASSWORD`; the message never echoes the password.
fn parse_cluster(spec: &str) -> (String, String) {
    match spec.split_once(':') {
        Some((id, pw)) if !id.is_empty() => (id.into(), pw.into()),
        _ => usage_error(
            ErrorKind::ValueValidation,
            "--cluster (VOLT_MOCK_CLUSTER) wants ID:PASSWORD",
        ),
    }
}

fn read_file(path: &std::path::Path, what: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| {
        usage_error(
            ErrorKind::Io,
            format!("cannot read {what} {}: {e}", path.display()),
        )
    })
}

fn load_scenario(path: &std::path::Path) -> Scenario {
    let bytes = read_file(path, "--config");
    serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        usage_error(
            ErrorKind::ValueValidation,
            format!("--config {}: {e}", path.display()),
        )
    })
}

/// Parses the command line and the environment into the server's config
/// and the scenario to apply once it runs.
fn parse_args() -> (ServerConfig, Scenario) {
    let (cli, matches) = volt_mock_server::cli::parse::<Cli>();
    let clusters = list(&matches, "clusters", cli.clusters.clone());
    let tokens = list(&matches, "enrollment_tokens", cli.enrollment_tokens.clone());
    let mut scenario = match &cli.config {
        Some(path) => load_scenario(path),
        None => Scenario::default(),
    };
    let mut cfg = ServerConfig {
        listen: cli.listen,
        rotate_password: cli.rotate_password,
        ping_interval: Duration::from_millis(cli.ping_interval_ms),
        ping_timeout: Duration::from_millis(cli.ping_timeout_ms),
        max_payload: cli.max_payload,
        admin_token: cli.admin_token,
        max_connections_per_ip: cli.max_connections_per_ip,
        history_limit: cli.history_limit,
        record_frames: cli.record_frames,
        record_history: !cli.no_history,
        ..ServerConfig::default()
    };
    for c in scenario.clusters.drain(..) {
        if c.team_cluster_id.is_empty() {
            usage_error(
                ErrorKind::ValueValidation,
                "--config: a cluster needs a non-empty teamClusterId",
            );
        }
        cfg.clusters.push((c.team_cluster_id, c.daemon_password));
    }
    cfg.clusters
        .extend(clusters.iter().map(|c| parse_cluster(c)));
    if let Some(e) = &mut scenario.enrollment {
        cfg.enrollment_tokens.append(&mut e.tokens);
        if cfg.rotate_password.is_none() {
            cfg.rotate_password = e.rotate_to.take();
        }
    }
    cfg.enrollment_tokens.extend(tokens);
    if let (Some(cert), Some(key)) = (&cli.tls_cert, &cli.tls_key) {
        cfg.tls = Some(TlsConfig {
            cert_pem: read_file(cert, "--tls-cert"),
            key_pem: read_file(key, "--tls-key"),
        });
        cfg.tls_client_ca_pem = cli
            .tls_client_ca
            .as_ref()
            .map(|ca| read_file(ca, "--tls-client-ca"));
    }
    (cfg, scenario)
}

/// Checks the responders before the server starts: a bad one is a usage
/// error, not a half-applied scenario.
fn responders(scenario: &Scenario) -> Vec<(String, Responder)> {
    scenario
        .responders
        .iter()
        .map(|(command, spec)| match Responder::from_json(spec) {
            Ok(r) => (command.clone(), r),
            Err(e) => usage_error(
                ErrorKind::ValueValidation,
                format!("--config: responder {command:?}: {e}"),
            ),
        })
        .collect()
}

fn apply(handle: &ServerHandle, scenario: Scenario, responders: Vec<(String, Responder)>) {
    for (command, responder) in responders {
        handle.set_responder(&command, responder);
    }
    if let Some(faults) = scenario.faults {
        handle.set_faults(faults);
    }
    if let Some(status) = scenario.enrollment.and_then(|e| e.fail_status) {
        let mut settings = handle.enrollment();
        settings.fail_status = Some(status);
        handle.set_enrollment(settings);
    }
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .target(env_logger::Target::Stderr)
        .init();
    let (mut cfg, scenario) = parse_args();
    let responders = responders(&scenario);
    let demo = cfg.clusters.is_empty();
    if demo {
        cfg.clusters
            .push(("demo-cluster".into(), "demo-password".into()));
    }
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ]);
    let mut signals = signals.unwrap_or_else(|e| {
        eprintln!("volt-mock-server: cannot install signal handlers: {e}");
        std::process::exit(1)
    });
    let server = Server::start(cfg).unwrap_or_else(|e| {
        eprintln!("volt-mock-server: {e}");
        std::process::exit(1)
    });
    apply(&server.handle(), scenario, responders);
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
