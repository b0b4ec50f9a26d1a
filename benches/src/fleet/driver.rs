//! One driver thread: a `mio` loop over its share of the daemons, their
//! heartbeat schedule, pings and replies.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::unix::SourceFd;
use mio::{Events, Poll};
use serde_json::Value;
use tungstenite::{Message, WebSocket};

use crate::new_histogram;

pub(super) struct Shared {
    pub(super) measuring: AtomicBool,
    pub(super) stop: AtomicBool,
    pub(super) answered: AtomicU64,
    pub(super) alive: AtomicUsize,
}

pub(super) struct Daemon {
    pub(super) ws: WebSocket<TcpStream>,
    pub(super) id: usize,
    pub(super) alive: bool,
    pub(super) seq: u64,
    /// `(seq, sent at)` of heartbeats not yet answered, oldest first.
    pub(super) outstanding: VecDeque<(u64, Instant)>,
}

#[derive(Default)]
pub(super) struct Tally {
    pub(super) hist: Option<Histogram<u64>>,
    pub(super) sent: u64,
    pub(super) answered: u64,
    pub(super) failed: u64,
    pub(super) disconnects: u64,
    pub(super) reasons: Vec<String>,
    pub(super) alive: usize,
    pub(super) unanswered: u64,
}

/// Most heartbeats a daemon keeps waiting for; older ones count as lost.
const MAX_OUTSTANDING: usize = 64;

impl Tally {
    fn hist(&mut self) -> &mut Histogram<u64> {
        self.hist.get_or_insert_with(new_histogram)
    }

    /// Adds another driver's tally to this one (histograms into `hist`).
    pub(super) fn merge(&mut self, t: Tally, hist: &mut Histogram<u64>) -> Result<(), String> {
        if let Some(h) = &t.hist {
            hist.add(h).map_err(|e| format!("histogram merge: {e}"))?;
        }
        self.sent += t.sent;
        self.answered += t.answered;
        self.failed += t.failed;
        self.disconnects += t.disconnects;
        self.alive += t.alive;
        self.unanswered += t.unanswered;
        self.reasons.extend(t.reasons);
        Ok(())
    }
}

fn is_would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if io.kind() == ErrorKind::WouldBlock)
}

pub(super) struct Driver<'a> {
    pub(super) daemons: Vec<Daemon>,
    pub(super) poll: Poll,
    pub(super) shared: &'a Shared,
    pub(super) tally: Tally,
}

impl Driver<'_> {
    fn kill(&mut self, i: usize, reason: String) {
        let d = &mut self.daemons[i];
        if !d.alive {
            return;
        }
        d.alive = false;
        let fd = d.ws.get_ref().as_raw_fd();
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        self.shared.alive.fetch_sub(1, Ordering::Relaxed);
        self.tally.disconnects += 1;
        if self.tally.reasons.len() < 5 {
            self.tally
                .reasons
                .push(format!("daemon {}: {reason}", d.id));
        }
    }

    /// Sends a text frame; a full socket keeps it in tungstenite's buffer
    /// (flushed on the next writable event).
    fn send(&mut self, i: usize, text: String) {
        match self.daemons[i].ws.send(Message::text(text)) {
            Ok(()) => {}
            Err(e) if is_would_block(&e) => {}
            Err(e) => self.kill(i, format!("send: {e}")),
        }
    }

    fn heartbeat(&mut self, i: usize) {
        let d = &mut self.daemons[i];
        if !d.alive {
            return;
        }
        d.seq += 1;
        let frame = format!(
            r#"42/daemon,["command",{{"requestId":"hb-{}-{}","command":"runtime.heartbeat","payload":{{}}}}]"#,
            d.id, d.seq
        );
        if d.outstanding.len() >= MAX_OUTSTANDING {
            d.outstanding.pop_front();
        }
        d.outstanding.push_back((d.seq, Instant::now()));
        if self.shared.measuring.load(Ordering::Relaxed) {
            self.tally.sent += 1;
        }
        self.send(i, frame);
    }

    /// Reads everything the socket has (edge-triggered readiness).
    fn pump(&mut self, i: usize) {
        loop {
            if !self.daemons[i].alive {
                return;
            }
            match self.daemons[i].ws.read() {
                Ok(Message::Text(t)) => self.on_text(i, t.as_str()),
                Ok(Message::Close(_)) => self.kill(i, "closed by the server".into()),
                Ok(_) => {}
                Err(e) if is_would_block(&e) => return,
                Err(e) => self.kill(i, format!("read: {e}")),
            }
        }
    }

    fn on_text(&mut self, i: usize, text: &str) {
        if text == "2" {
            self.send(i, "3".into());
            return;
        }
        if text == "1" || text.starts_with("41/daemon") {
            self.kill(i, format!("the server closed the session ({text})"));
            return;
        }
        let Some(body) = text.strip_prefix("42/daemon,") else {
            return;
        };
        let Ok(Value::Array(args)) = serde_json::from_str::<Value>(body) else {
            return;
        };
        if args.first().and_then(Value::as_str) != Some("command-response") {
            return;
        }
        let Some(resp) = args.get(1) else { return };
        let ok = resp.get("ok").and_then(Value::as_bool) == Some(true);
        let Some(seq) = resp
            .get("requestId")
            .and_then(Value::as_str)
            .and_then(|id| id.rsplit_once('-'))
            .and_then(|(_, n)| n.parse::<u64>().ok())
        else {
            return;
        };
        let now = Instant::now();
        let d = &mut self.daemons[i];
        while d.outstanding.front().is_some_and(|&(s, _)| s < seq) {
            d.outstanding.pop_front();
        }
        let Some(&(s, sent)) = d.outstanding.front() else {
            return;
        };
        if s != seq {
            return;
        }
        d.outstanding.pop_front();
        if !self.shared.measuring.load(Ordering::Relaxed) {
            return;
        }
        if ok {
            self.tally.answered += 1;
            self.shared.answered.fetch_add(1, Ordering::Relaxed);
            let ns = now.duration_since(sent).as_nanos() as u64;
            self.tally.hist().saturating_record(ns);
        } else {
            self.tally.failed += 1;
        }
    }

    pub(super) fn run(
        mut self,
        start: Instant,
        period: Duration,
        total: usize,
    ) -> std::io::Result<Tally> {
        let mut events = Events::with_capacity(1024);
        let mut schedule: VecDeque<(Instant, usize)> = self
            .daemons
            .iter()
            .enumerate()
            .map(|(i, d)| (start + period.mul_f64(d.id as f64 / total as f64), i))
            .collect();
        schedule.make_contiguous().sort_by_key(|&(due, _)| due);
        // Whatever tungstenite buffered while registering.
        for i in 0..self.daemons.len() {
            self.pump(i);
        }
        while !self.shared.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            while let Some(&(due, i)) = schedule.front() {
                if due > now {
                    break;
                }
                schedule.pop_front();
                // Same period for all, phases under one period apart: the
                // queue stays sorted.
                schedule.push_back((due + period, i));
                self.heartbeat(i);
            }
            let timeout = schedule
                .front()
                .map_or(Duration::from_millis(50), |&(due, _)| {
                    due.saturating_duration_since(now)
                })
                .min(Duration::from_millis(50));
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in events.iter() {
                let i = ev.token().0;
                if ev.is_writable() && self.daemons[i].alive {
                    match self.daemons[i].ws.flush() {
                        Ok(()) => {}
                        Err(e) if is_would_block(&e) => {}
                        Err(e) => self.kill(i, format!("flush: {e}")),
                    }
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    self.pump(i);
                }
            }
        }
        let mut tally = std::mem::take(&mut self.tally);
        tally.alive = self.daemons.iter().filter(|d| d.alive).count();
        tally.unanswered = self
            .daemons
            .iter()
            .map(|d| d.outstanding.len() as u64)
            .sum();
        for d in &mut self.daemons {
            if d.alive {
                let _ = d.ws.close(None);
                let _ = d.ws.flush();
            }
        }
        Ok(tally)
    }
}
