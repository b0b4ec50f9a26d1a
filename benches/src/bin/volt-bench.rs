//! `volt-bench`: command throughput and latency of the VOLT daemon client.
//! See `--help` and docs/BENCHMARKS.md.

use volt_benches::{parse_duration, run, BenchConfig};

const USAGE: &str =
    "usage: volt-bench [--clients 4] [--in-flight 64] [--duration 10s] [--warmup 1s]
       [--payload-bytes 64] [--url ws://HOST:PORT --cluster ID --password PW]
       [--server-pid PID] [--json]

Each client keeps --in-flight `echo` commands outstanding (start_command,
then wait for the oldest) from its own thread for --duration after a
--warmup. Without --url the target is an embedded mock server on its own
threads (its CPU is measured separately, from the volt-mock-* threads).
--server-pid measures the CPU of an out-of-process server.
Prints a table, or one JSON object with --json. A progress line is drawn on
stderr when it is a terminal.";

fn fail(msg: &str) -> ! {
    eprintln!("volt-bench: {msg}\n\n{USAGE}");
    std::process::exit(2)
}

fn main() {
    let mut cfg = BenchConfig {
        progress: true,
        ..BenchConfig::default()
    };
    let mut json = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .unwrap_or_else(|| fail(&format!("{flag} needs a value")))
        };
        let number = |v: String| -> usize {
            v.parse()
                .unwrap_or_else(|_| fail(&format!("{flag} needs a number, got {v}")))
        };
        match flag.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            "--json" => json = true,
            "--clients" => cfg.clients = number(value()),
            "--in-flight" => cfg.in_flight = number(value()),
            "--payload-bytes" => cfg.payload_bytes = number(value()),
            "--duration" => cfg.duration = parse_duration(&value()).unwrap_or_else(|e| fail(&e)),
            "--warmup" => cfg.warmup = parse_duration(&value()).unwrap_or_else(|e| fail(&e)),
            "--url" => cfg.url = Some(value()),
            "--cluster" => cfg.cluster = value(),
            "--password" => cfg.password = value(),
            "--server-pid" => cfg.server_pid = Some(number(value()) as u32),
            other => fail(&format!("unknown argument {other}")),
        }
    }
    match run(&cfg) {
        Ok(report) => {
            if json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.table());
            }
            if report.commands == 0 {
                eprintln!("volt-bench: no command completed");
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("volt-bench: {e}");
            std::process::exit(1);
        }
    }
}
