//! Server CPU per command round trip. Run in release:
//! `cargo test -p volt-mock-server --release --test perf -- --ignored --nocapture`

mod common;

use std::time::Instant;

use common::*;
use tungstenite::Message;

/// utime + stime of the event-loop thread, in seconds.
fn loop_cpu_seconds() -> f64 {
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() == "volt-mock-loop" {
            let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            let f: Vec<&str> = after.split_whitespace().collect();
            // Fields 14 and 15 of stat; `after` starts at field 3.
            let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
            return ticks / 100.0;
        }
    }
    panic!("no event-loop thread");
}

#[test]
#[ignore = "a measurement: run in release with --ignored --nocapture"]
fn server_cpu_per_round_trip() {
    measure(true);
    measure(false);
}

fn measure(record_history: bool) {
    let mut cfg = volt_mock_server::ServerConfig::default().cluster("c1", "pw1");
    cfg.record_history = record_history;
    let s = volt_mock_server::Server::start(cfg).unwrap();
    let addr = s.local_addr();
    let (threads, per_thread, batch) = (8, 50_000, 64);
    let clients: Vec<Client> = (0..threads)
        .map(|_| Client::registered(addr, "c1", "pw1"))
        .collect();
    let cpu0 = loop_cpu_seconds();
    let t0 = Instant::now();
    let handles: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            std::thread::spawn(move || {
                let mut done = 0;
                while done < per_thread {
                    for i in 0..batch {
                        let text = format!(r#"42/daemon,["command",{{"requestId":"{}","command":"echo","payload":{{"n":1}}}}]"#, done + i);
                        c.ws.write(Message::text(text)).unwrap();
                    }
                    c.ws.flush().unwrap();
                    for _ in 0..batch {
                        let t = c.recv_text();
                        assert!(t.contains("command-response"));
                    }
                    done += batch;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let wall = t0.elapsed();
    let cpu = loop_cpu_seconds() - cpu0;
    let n = (threads * per_thread) as f64;
    println!(
        "record_history={record_history}: {n} round trips in {wall:?}: {:.0}/s; server loop CPU {cpu:.2}s = {:.2} µs per round trip",
        n / wall.as_secs_f64(),
        cpu * 1e6 / n
    );
}
