//! `volt-herd`: the thundering herd against the real `volt-mock-server`.
//! See `--help`, `volt_benches::herd` and docs/RELIABILITY.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use volt_benches::herd::{run_herd, HerdConfig};
use volt_benches::herd_daemons::{run_daemons, DaemonsConfig};
use volt_benches::herd_model::BackoffRule;
use volt_benches::parse_duration;

const AFTER_HELP: &str = "\
`volt-herd run` connects --daemons ClusterDaemonClients, spread over
--processes `volt-herd daemons` children, to a volt-mock-server child,
SIGKILLs the server, keeps it down for --down, restarts it on the same port
and waits until every daemon is registered again. It prints the largest
share of the fleet attempting (and registering) within any 100 ms, measured
and predicted by simulating the contract's cap-then-jitter rule for the same
settings, loss times and outage, and the time until all are registered.
Exits 1 when a claim fails: a share beyond x1.5 of the prediction, the
fleet's spread shrinking at the cap, or a registration later than
2 x --max-ms after the server is back. Each daemon uses about 4 threads and
4 open files; the server about one file per daemon (check `ulimit -n`).

Build both binaries first: cargo build --release -p volt-mock-server -p volt-benches";

/// The command line.
#[derive(Parser, Debug)]
#[command(name = "volt-herd", about = "The thundering herd: a fleet of daemons through a server restart.", after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

/// Reconnection settings, shared by both modes.
#[derive(clap::Args, Debug)]
struct Backoff {
    /// reconnectBaseDelayMs.
    #[arg(long, default_value_t = 500)]
    base_ms: u64,
    /// reconnectMaxDelayMs.
    #[arg(long, default_value_t = 30_000)]
    max_ms: u64,
    /// randomizationFactor.
    #[arg(long, default_value_t = 0.3)]
    factor: f64,
    /// Daemon i seeds its jitter with SEED + i.
    #[arg(long, default_value_t = 16)]
    seed: u64,
}

impl Backoff {
    fn rule(&self) -> BackoffRule {
        BackoffRule {
            base_ms: self.base_ms,
            max_ms: self.max_ms,
            factor: self.factor,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Runs the herd and reports.
    Run {
        /// Daemons in all.
        #[arg(long, default_value_t = 1_000)]
        daemons: usize,
        /// Child processes they are spread over.
        #[arg(long, default_value_t = 10)]
        processes: usize,
        /// How long the server stays down (0: restarted at once).
        #[arg(long, default_value = "0s", value_parser = parse_duration)]
        down: Duration,
        #[command(flatten)]
        backoff: Backoff,
        /// Simulated fleets averaged into the prediction.
        #[arg(long, default_value_t = 200)]
        simulations: usize,
        /// The volt-mock-server binary (default: next to this one).
        #[arg(long, env = "VOLT_MOCK_SERVER_BIN")]
        server_bin: Option<PathBuf>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Write every daemon's loss and attempt times (µs from the kill) here.
        #[arg(long)]
        dump: Option<PathBuf>,
    },
    /// One child process of daemons (started by `run`).
    Daemons {
        /// ws://ADDR:PORT of the server.
        #[arg(long)]
        url: String,
        /// Index of the first daemon.
        #[arg(long)]
        first: usize,
        /// Daemons in this process.
        #[arg(long)]
        count: usize,
        /// Cluster id.
        #[arg(long)]
        cluster: String,
        /// Its password.
        #[arg(long)]
        password: String,
        #[command(flatten)]
        backoff: Backoff,
    },
}

fn main() -> ExitCode {
    match Cli::parse().mode {
        Mode::Daemons {
            url,
            first,
            count,
            cluster,
            password,
            backoff,
        } => {
            let cfg = DaemonsConfig {
                url,
                first,
                count,
                cluster,
                password,
                rule: backoff.rule(),
                seed: backoff.seed,
            };
            // Returns only when a daemon could not connect; otherwise the
            // process exits once stdin ends.
            if let Err(e) = run_daemons(&cfg) {
                eprintln!("volt-herd daemons: {e}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Mode::Run {
            daemons,
            processes,
            down,
            backoff,
            simulations,
            server_bin,
            json,
            dump,
        } => {
            let defaults = HerdConfig::default();
            let cfg = HerdConfig {
                daemons,
                processes,
                down,
                rule: backoff.rule(),
                seed: backoff.seed,
                simulations,
                dump,
                server_bin: server_bin.unwrap_or(defaults.server_bin.clone()),
                ..defaults
            };
            match run_herd(&cfg) {
                Ok(report) => {
                    if json {
                        println!("{}", report.to_json());
                    } else {
                        print!("{}", report.table());
                    }
                    if report.violations(1.5, 1.5).is_empty() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("volt-herd: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
