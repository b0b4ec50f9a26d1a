//! The volt-bench workload on the rust_socketio 0.6 sync client (pinned by
//! this project's own Cargo.lock), for benches/compare/run.sh:
//!
//!   rust-socketio-bench --url http://HOST:PORT --cluster ID --password PW
//!        [--clients 4] [--in-flight 64] [--duration 10s] [--warmup 1s]
//!        [--payload-bytes 64] [--server-pid PID] [--json]
//!
//! It mirrors node-bench.js: each client (one `ClientBuilder` socket on the
//! `/daemon` namespace, `TransportType::Websocket`, registration as the
//! CONNECT auth object) keeps --in-flight `echo` commands outstanding, a new
//! `command` event emitted as each `command-response` event arrives
//! (correlated by `requestId`; the protocol uses no acks). The sync client
//! can keep any number in flight this way: emits do not wait for anything,
//! and the emit that refills the window is made from the `command-response`
//! callback, on the client's own polling thread, with the `RawClient` the
//! callback is handed (the library's documented pattern). The initial window
//! is emitted from the main thread once the namespace CONNECT is
//! acknowledged (the `open` event).
//!
//! Latency is per command, from emit to response; CPU is this process's
//! utime + stime over the measured window (/proc/self/stat, all threads,
//! including the tokio runtime rust_socketio runs underneath); RSS is the
//! peak (VmHWM). Prints the same JSON keys as `volt-bench --json`.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rust_socketio::client::Client;
use rust_socketio::{ClientBuilder, Payload, RawClient, TransportType};
use serde_json::{json, Value};

const CLIENT_NAME: &str = "rust_socketio/0.6.0";

struct Opts {
    url: String,
    cluster: String,
    password: String,
    clients: usize,
    in_flight: usize,
    duration: Duration,
    warmup: Duration,
    payload_bytes: usize,
    server_pid: Option<u32>,
    json: bool,
}

fn usage(message: &str) -> ! {
    eprintln!("rust-socketio-bench: {message}");
    std::process::exit(2);
}

fn parse_duration(v: &str) -> Duration {
    let (n, scale) = if let Some(n) = v.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60.0)
    } else {
        (v, 1.0)
    };
    match n.parse::<f64>() {
        Ok(x) if x >= 0.0 && x.is_finite() => Duration::from_secs_f64(x * scale),
        _ => usage(&format!("bad duration {v}")),
    }
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> T {
    v.parse()
        .unwrap_or_else(|_| usage(&format!("{flag}: bad number {v}")))
}

fn parse_args() -> Opts {
    let mut opts = Opts {
        url: String::new(),
        cluster: String::new(),
        password: String::new(),
        clients: 4,
        in_flight: 64,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(1),
        payload_bytes: 64,
        server_pid: None,
        json: false,
    };
    let (mut url, mut cluster, mut password) = (None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--json" {
            opts.json = true;
            continue;
        }
        let Some(value) = args.next() else {
            usage(&format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--url" => url = Some(value),
            "--cluster" => cluster = Some(value),
            "--password" => password = Some(value),
            "--clients" => opts.clients = number(&flag, &value),
            "--in-flight" => opts.in_flight = number(&flag, &value),
            "--duration" => opts.duration = parse_duration(&value),
            "--warmup" => opts.warmup = parse_duration(&value),
            "--payload-bytes" => opts.payload_bytes = number(&flag, &value),
            "--server-pid" => opts.server_pid = Some(number(&flag, &value)),
            _ => usage(&format!("unknown argument {flag}")),
        }
    }
    match (url, cluster, password) {
        (Some(u), Some(c), Some(p)) => (opts.url, opts.cluster, opts.password) = (u, c, p),
        _ => usage("--url, --cluster and --password are required"),
    }
    opts
}

/// What the main thread and every client's callback share.
struct Shared {
    measuring: AtomicBool,
    stopping: AtomicBool,
    payload: Value,
}

/// One client's bookkeeping, locked by its callback (its polling thread)
/// and, only before the window opens and after it closes, by main.
#[derive(Default)]
struct Tally {
    pending: HashMap<String, Instant>,
    latencies_ns: Vec<u64>,
    commands: u64,
    errors: u64,
}

/// Emits one `echo` command with `emit` (true when sent), its start time
/// recorded first so that a fast response always finds it.
fn send(emit: impl FnOnce(Value) -> bool, tally: &Mutex<Tally>, shared: &Shared) {
    let request_id = uuid::Uuid::new_v4().to_string();
    let frame = json!({"requestId": request_id, "command": "echo", "payload": shared.payload});
    tally
        .lock()
        .unwrap()
        .pending
        .insert(request_id.clone(), Instant::now());
    if !emit(frame) {
        let mut t = tally.lock().unwrap();
        t.pending.remove(&request_id);
        t.errors += 1;
    }
}

/// The `command-response` callback: settle the command, refill the window.
fn on_response(payload: &Payload, socket: &RawClient, tally: &Mutex<Tally>, shared: &Shared) {
    let Payload::Text(values) = payload else {
        return;
    };
    let Some(response) = values.first() else {
        return;
    };
    let Some(id) = response.get("requestId").and_then(Value::as_str) else {
        return;
    };
    let ok = response.get("ok").and_then(Value::as_bool) == Some(true);
    {
        let mut t = tally.lock().unwrap();
        let Some(t0) = t.pending.remove(id) else {
            return;
        };
        if !ok {
            t.errors += 1;
        } else if shared.measuring.load(Ordering::Relaxed) {
            t.latencies_ns.push(t0.elapsed().as_nanos() as u64);
            t.commands += 1;
        }
    }
    if !shared.stopping.load(Ordering::Relaxed) {
        send(|f| socket.emit("command", f).is_ok(), tally, shared);
    }
}

/// Connects one client, waits for the namespace CONNECT ack, then emits its
/// initial window.
fn start_client(opts: &Opts, shared: &Arc<Shared>) -> Result<(Client, Arc<Mutex<Tally>>), String> {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let (opened_tx, opened_rx) = mpsc::channel::<Result<(), String>>();
    let error_tx = Mutex::new(opened_tx.clone());
    let (t, s) = (tally.clone(), shared.clone());
    let client = ClientBuilder::new(opts.url.trim_end_matches('/'))
        .namespace("/daemon")
        .transport_type(TransportType::Websocket)
        .reconnect(false)
        .auth(json!({
            "teamClusterId": opts.cluster,
            "daemonPassword": opts.password,
            "installedVersion": null,
            "client": "rust-socketio-bench/0.1.0",
        }))
        .on("open", move |_, _| {
            let _ = opened_tx.send(Ok(()));
        })
        .on("error", move |e, _| {
            let _ = error_tx.lock().unwrap().send(Err(format!("{e:?}")));
        })
        .on("command-response", move |p, socket| {
            on_response(&p, &socket, &t, &s)
        })
        .connect()
        .map_err(|e| format!("connect: {e}"))?;
    match opened_rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("registration: {e}")),
        Err(_) => return Err("registration: no CONNECT ack within 20 s".into()),
    }
    for _ in 0..opts.in_flight {
        send(|f| client.emit("command", f).is_ok(), &tally, shared);
    }
    Ok((client, tally))
}

/// CPU seconds (utime + stime, all threads) of `pid` ("self" or a number),
/// at USER_HZ = 100, as volt-bench and node-bench.js read the server's.
fn process_cpu_s(pid: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest: Vec<&str> = text
        .get(text.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let ticks: u64 = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

fn peak_rss_kib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn quantile_us(sorted: &[u64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i] as f64 / 1e3)
}

fn main() -> ExitCode {
    let opts = parse_args();
    let shared = Arc::new(Shared {
        measuring: AtomicBool::new(false),
        stopping: AtomicBool::new(false),
        payload: json!({"data": "x".repeat(opts.payload_bytes)}),
    });
    let mut clients = Vec::new();
    for _ in 0..opts.clients {
        match start_client(&opts, &shared) {
            Ok(c) => clients.push(c),
            Err(e) => {
                eprintln!("rust-socketio-bench: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    std::thread::sleep(opts.warmup);
    let server_pid = opts.server_pid.map(|p| p.to_string());
    let srv0 = server_pid.as_deref().and_then(process_cpu_s);
    let cpu0 = process_cpu_s("self");
    let t0 = Instant::now();
    shared.measuring.store(true, Ordering::Relaxed);
    std::thread::sleep(opts.duration);
    shared.measuring.store(false, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu1 = process_cpu_s("self");
    let srv1 = server_pid.as_deref().and_then(process_cpu_s);
    shared.stopping.store(true, Ordering::Relaxed);
    drain(&clients);
    for (client, _) in &clients {
        let _ = client.disconnect();
    }
    let report = report(&opts, &clients, elapsed, cpu0.zip(cpu1), srv0.zip(srv1));
    print_report(&report, opts.json);
    // Exit at once: the clients' polling threads and runtimes are not ours
    // to join, and the figures are out.
    std::process::exit(if report["commands"].as_u64() > Some(0) {
        0
    } else {
        1
    })
}

/// Waits (up to 2 s, as node-bench.js) for the commands still in flight.
fn drain(clients: &[(Client, Arc<Mutex<Tally>>)]) {
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until
        && clients
            .iter()
            .any(|(_, t)| !t.lock().unwrap().pending.is_empty())
    {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn report(
    opts: &Opts,
    clients: &[(Client, Arc<Mutex<Tally>>)],
    elapsed: f64,
    cpu: Option<(f64, f64)>,
    srv: Option<(f64, f64)>,
) -> Value {
    let (mut lat, mut commands, mut errors) = (Vec::new(), 0u64, 0u64);
    for (_, t) in clients {
        let t = t.lock().unwrap();
        lat.extend_from_slice(&t.latencies_ns);
        commands += t.commands;
        errors += t.errors;
    }
    lat.sort_unstable();
    let per_cmd = |s: f64| (commands > 0).then(|| s * 1e6 / commands as f64);
    let cpu_s = cpu.map(|(a, b)| b - a);
    let server_cpu_s = srv.map(|(a, b)| b - a);
    let mean = (!lat.is_empty()).then(|| lat.iter().sum::<u64>() as f64 / lat.len() as f64 / 1e3);
    json!({
        "client": CLIENT_NAME,
        "url": opts.url,
        "clients": opts.clients,
        "in_flight": opts.in_flight,
        "payload_bytes": opts.payload_bytes,
        "duration_s": opts.duration.as_secs_f64(),
        "commands": commands,
        "errors": errors,
        "elapsed_s": elapsed,
        "throughput": commands as f64 / elapsed,
        "p50_us": quantile_us(&lat, 0.5),
        "p90_us": quantile_us(&lat, 0.9),
        "p99_us": quantile_us(&lat, 0.99),
        "p999_us": quantile_us(&lat, 0.999),
        "max_us": lat.last().map(|&n| n as f64 / 1e3),
        "mean_us": mean,
        "client_cpu_s": cpu_s,
        "cpu_per_cmd_us": cpu_s.and_then(per_cmd),
        "server_cpu_s": server_cpu_s,
        "server_cpu_per_cmd_us": server_cpu_s.and_then(per_cmd),
        "peak_rss_kib": peak_rss_kib(),
    })
}

fn print_report(report: &Value, json: bool) {
    if json {
        println!("{report}");
        return;
    }
    for (k, v) in report.as_object().into_iter().flatten() {
        println!("{k:16} {v}");
    }
}
