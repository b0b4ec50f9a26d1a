//! `volt-bench --interleave-tcp ADDR`: one command in flight, alternating
//! with a raw TCP ping-pong (against `tcp-pingpong server`) in short turns
//! from the same thread.
//!
//! This VM drifts between a fast and a slow state that lasts seconds (the
//! same pinned binary: a p50 of 9.8 or 13.6 µs, with the same two context
//! switches per command). Runs of a few seconds one after the other can
//! land in different states; turns of a few milliseconds cannot, so the
//! ratio of the two medians compares like with like.
//!
//! ```no_run
//! use std::time::Duration;
//! let report = volt_benches::interleaved::run(&volt_benches::interleaved::InterleavedConfig {
//!     tcp_addr: "127.0.0.1:7000".parse().unwrap(),
//!     duration: Duration::from_secs(2),
//!     ..Default::default()
//! })
//! .unwrap();
//! println!("{}", report.to_json());
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::{connect_client, new_histogram, payload, target};

/// One end of the raw baseline: 4-byte big-endian length, then the bytes,
/// echoed back by `tcp-pingpong server`; TCP_NODELAY.
pub struct TcpPingPong {
    stream: TcpStream,
    message: Vec<u8>,
    echo: Vec<u8>,
}

impl TcpPingPong {
    /// Connects to a `tcp-pingpong server` with messages of `bytes` bytes.
    pub fn connect(addr: SocketAddr, bytes: usize) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let len = u32::try_from(bytes).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        let mut message = len.to_be_bytes().to_vec();
        message.resize(bytes + 4, b'x');
        let echo = vec![0u8; message.len()];
        Ok(TcpPingPong {
            stream,
            message,
            echo,
        })
    }

    /// One round trip.
    pub fn round(&mut self) -> std::io::Result<()> {
        self.stream.write_all(&self.message)?;
        self.stream.read_exact(&mut self.echo)
    }
}

/// The other end (`tcp-pingpong server`): echoes length-prefixed messages
/// until the end of the stream.
pub fn echo(mut s: TcpStream) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    let mut buf = Vec::new();
    loop {
        let mut len = [0u8; 4];
        s.read_exact(&mut len)?;
        buf.resize(u32::from_be_bytes(len) as usize + 4, 0);
        buf[..4].copy_from_slice(&len);
        s.read_exact(&mut buf[4..])?;
        s.write_all(&buf)?;
    }
}

/// What an interleaved run does.
#[derive(Debug, Clone)]
pub struct InterleavedConfig {
    /// The `tcp-pingpong server`.
    pub tcp_addr: SocketAddr,
    /// The mock server (`None`: an embedded one).
    pub url: Option<String>,
    /// Its cluster.
    pub cluster: String,
    /// Its password.
    pub password: String,
    /// Bytes of payload on both sides.
    pub payload_bytes: usize,
    /// Measured time, both halves together.
    pub duration: Duration,
    /// Unmeasured turns first.
    pub warmup: Duration,
    /// How long each side runs before the other's turn.
    pub turn: Duration,
}

impl Default for InterleavedConfig {
    fn default() -> Self {
        InterleavedConfig {
            tcp_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            url: None,
            cluster: crate::EMBEDDED_CLUSTER.into(),
            password: crate::EMBEDDED_PASSWORD.into(),
            payload_bytes: 64,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            turn: Duration::from_millis(50),
        }
    }
}

/// Both sides' latencies.
pub struct InterleavedReport {
    /// Our client, `execute("echo")` one at a time.
    pub ours: Histogram<u64>,
    /// The raw TCP ping-pong.
    pub tcp: Histogram<u64>,
    /// Turns each side had.
    pub turns: u64,
    /// The turn length.
    pub turn: Duration,
}

fn summary(h: &Histogram<u64>) -> Value {
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
    json!({
        "commands": h.len(),
        "p50_us": us(0.5), "p90_us": us(0.9), "p99_us": us(0.99), "p999_us": us(0.999),
    })
}

impl InterleavedReport {
    /// p50 of ours over p50 of the ping-pong.
    pub fn p50_ratio(&self) -> f64 {
        self.ours.value_at_quantile(0.5) as f64 / self.tcp.value_at_quantile(0.5).max(1) as f64
    }

    /// One JSON object: `ours`, `tcp` (commands, p50/p90/p99/p999 in µs),
    /// `p50_ratio`, `turns`, `turn_ms`.
    pub fn to_json(&self) -> Value {
        json!({
            "mode": "interleaved",
            "turn_ms": self.turn.as_secs_f64() * 1e3,
            "turns": self.turns,
            "ours": summary(&self.ours),
            "tcp": summary(&self.tcp),
            "p50_ratio": self.p50_ratio(),
        })
    }

    /// A short human-readable summary.
    pub fn table(&self) -> String {
        let p50 = |h: &Histogram<u64>| h.value_at_quantile(0.5) as f64 / 1e3;
        format!(
            "interleaved, {} turns of {:?} each: ours p50 {:.2} us ({} commands), raw TCP p50 {:.2} us ({} round trips), ratio {:.2}\n",
            self.turns,
            self.turn,
            p50(&self.ours),
            self.ours.len(),
            p50(&self.tcp),
            self.tcp.len(),
            self.p50_ratio()
        )
    }
}

/// Runs `f` until `turn` has passed, recording each call when `hist` is given.
fn turn_of(
    turn: Duration,
    mut hist: Option<&mut Histogram<u64>>,
    mut f: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    let end = Instant::now() + turn;
    loop {
        let t0 = Instant::now();
        if t0 >= end {
            return Ok(());
        }
        f()?;
        if let Some(h) = hist.as_deref_mut() {
            h.saturating_record(t0.elapsed().as_nanos() as u64);
        }
    }
}

/// Alternates turns of our client and of the ping-pong, same thread.
pub fn run(cfg: &InterleavedConfig) -> Result<InterleavedReport, String> {
    if cfg.turn.is_zero() {
        return Err("--turn-ms must be at least 1".into());
    }
    let t = target(cfg.url.as_deref(), &cfg.cluster, &cfg.password, None)?;
    let client = connect_client(&t.url, &t.cluster, &t.password)?;
    let mut tcp = TcpPingPong::connect(cfg.tcp_addr, cfg.payload_bytes)
        .map_err(|e| format!("cannot connect to tcp-pingpong at {}: {e}", cfg.tcp_addr))?;
    let body = payload(cfg.payload_bytes);
    let mut ours = new_histogram();
    let mut raw = new_histogram();
    let mut command = || {
        client
            .send_command("echo", Some(body.clone()))
            .map(drop)
            .map_err(|e| format!("command failed: {e}"))
    };
    let warm_end = Instant::now() + cfg.warmup;
    while Instant::now() < warm_end {
        turn_of(cfg.turn, None, &mut command)?;
        turn_of(cfg.turn, None, || tcp.round().map_err(|e| e.to_string()))?;
    }
    let end = Instant::now() + cfg.duration;
    let mut turns = 0;
    while Instant::now() < end {
        turn_of(cfg.turn, Some(&mut ours), &mut command)?;
        turn_of(cfg.turn, Some(&mut raw), || {
            tcp.round().map_err(|e| e.to_string())
        })?;
        turns += 1;
    }
    client.disconnect();
    Ok(InterleavedReport {
        ours,
        tcp: raw,
        turns,
        turn: cfg.turn,
    })
}
