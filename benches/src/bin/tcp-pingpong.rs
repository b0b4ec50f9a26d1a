//! `tcp-pingpong`: the raw latency baseline. A plain TCP echo between two
//! processes, one message in flight, TCP_NODELAY on both ends.
//!
//!   tcp-pingpong server [--listen 127.0.0.1:0]    prints `listening ADDR`
//!   tcp-pingpong client ADDR [--duration 5s] [--warmup 500ms] [--bytes 64] [--json]

use std::io::Write;
use std::net::TcpListener;
use std::time::Instant;

use volt_benches::interleaved::{echo, TcpPingPong};
use volt_benches::{new_histogram, parse_duration, proc_stat};

fn fail(msg: &str) -> ! {
    eprintln!("tcp-pingpong: {msg}\nusage: tcp-pingpong server [--listen ADDR] | client ADDR [--duration 5s] [--warmup 500ms] [--bytes 64] [--json]");
    std::process::exit(2)
}

fn serve(listen: &str) {
    let listener = TcpListener::bind(listen).unwrap_or_else(|e| fail(&format!("bind: {e}")));
    let addr = listener.local_addr().expect("local addr");
    println!("listening {addr}");
    let _ = std::io::stdout().flush();
    for conn in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = echo(conn);
        });
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    match args.first().map(String::as_str) {
        Some("server") => serve(&get("--listen").unwrap_or_else(|| "127.0.0.1:0".into())),
        Some("client") => {
            let addr = args.get(1).unwrap_or_else(|| fail("client needs ADDR"));
            let dur = parse_duration(&get("--duration").unwrap_or_else(|| "5s".into()))
                .unwrap_or_else(|e| fail(&e));
            let warm = parse_duration(&get("--warmup").unwrap_or_else(|| "500ms".into()))
                .unwrap_or_else(|e| fail(&e));
            let bytes: usize = get("--bytes")
                .map(|b| b.parse().unwrap_or_else(|_| fail("--bytes wants a number")))
                .unwrap_or(64);
            let json = args.iter().any(|a| a == "--json");
            let addr = addr
                .parse()
                .unwrap_or_else(|e| fail(&format!("ADDR {addr}: {e}")));
            let mut s = TcpPingPong::connect(addr, bytes)
                .unwrap_or_else(|e| fail(&format!("connect: {e}")));
            let round = |s: &mut TcpPingPong| s.round().expect("round trip");
            let t = Instant::now();
            while t.elapsed() < warm {
                round(&mut s);
            }
            let mut hist = new_histogram();
            let cpu0 = proc_stat::process_cpu_s("self").unwrap_or(0.0);
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed() < dur {
                let t0 = Instant::now();
                round(&mut s);
                hist.saturating_record(t0.elapsed().as_nanos() as u64);
                n += 1;
            }
            let secs = start.elapsed().as_secs_f64();
            let cpu = proc_stat::process_cpu_s("self").unwrap_or(0.0) - cpu0;
            let us = |q: f64| hist.value_at_quantile(q) as f64 / 1e3;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "client": "tcp-pingpong", "commands": n, "throughput": n as f64 / secs,
                        "p50_us": us(0.5), "p90_us": us(0.9), "p99_us": us(0.99), "p999_us": us(0.999),
                        "cpu_per_cmd_us": cpu * 1e6 / n.max(1) as f64,
                        "peak_rss_kib": proc_stat::peak_rss_kib().unwrap_or(0),
                    })
                );
            } else {
                println!(
                    "tcp-pingpong: {n} round trips of {bytes} bytes in {secs:.1} s: p50 {:.1} us, p90 {:.1} us, p99 {:.1} us",
                    us(0.5), us(0.9), us(0.99)
                );
            }
        }
        _ => fail("first argument: server or client"),
    }
}
