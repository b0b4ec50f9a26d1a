//! The fault settings a [`FaultProxy`](super::FaultProxy) applies, shared by
//! its threads, and its counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};
use rand::rngs::StdRng;
use rand::Rng;

/// Which way through the proxy a fault acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toward {
    /// Bytes from the client to the server (upstream).
    Server,
    /// Bytes from the server to the client (downstream).
    Client,
    /// Both ways.
    Both,
}

impl Toward {
    /// The direction indexes (0 toward the server, 1 toward the client).
    pub(crate) fn indexes(self) -> &'static [usize] {
        match self {
            Toward::Server => &[0],
            Toward::Client => &[1],
            Toward::Both => &[0, 1],
        }
    }
}

/// How a connection is cut once its byte count is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CutKind {
    /// TCP RST to both peers.
    Reset,
    /// FIN to both peers.
    Close,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Cut {
    /// Tells apart two armings with the same count.
    pub gen: u64,
    pub after: u64,
    pub kind: CutKind,
}

/// The faults of one direction.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DirFaults {
    pub latency: Duration,
    pub jitter: Duration,
    pub bytes_per_s: Option<u64>,
    pub slice: Option<(usize, Duration)>,
    pub cut: Option<Cut>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub dirs: [DirFaults; 2],
    pub blackhole: bool,
    pub refuse_new: bool,
    pub shutdown: bool,
    pub next_gen: u64,
}

/// A cut a reader must apply to the chunk it just read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlannedCut {
    /// Bytes of the chunk still forwarded before the cut.
    pub keep: usize,
    pub kind: CutKind,
}

/// What one direction of one connection remembers between chunks.
pub(crate) struct DirCursor {
    pub rng: StdRng,
    /// Bytes read so far in this direction.
    pub count: u64,
    /// When the previous chunk is delivered: jitter never reorders bytes.
    pub last_delivery: Instant,
    /// The cut seen last, and the byte count when it was first seen.
    pub cut_base: Option<(u64, u64)>,
}

/// Counters, updated without the state lock.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub bytes: [AtomicU64; 2],
    pub accepted: AtomicU64,
    pub open: AtomicU64,
    pub refused: AtomicU64,
    pub resets: AtomicU64,
    pub closes: AtomicU64,
}

/// What a [`FaultProxy`](super::FaultProxy) has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProxyStats {
    /// Bytes forwarded to the server, counted as each piece is handed to
    /// its socket: bytes the server has read are always counted.
    pub bytes_to_server: u64,
    /// Bytes forwarded to the client, counted the same way.
    pub bytes_to_client: u64,
    /// Connections accepted and forwarded.
    pub connections_total: u64,
    /// Connections open now.
    pub connections_open: u64,
    /// Connections refused (reset on accept) by [`refuse_new`](super::FaultProxy::refuse_new).
    pub refused: u64,
    /// Connections cut with a reset by [`reset_after`](super::FaultProxy::reset_after).
    pub resets: u64,
    /// Connections closed by [`close_after`](super::FaultProxy::close_after).
    pub closes: u64,
}

impl Counters {
    pub fn snapshot(&self) -> ProxyStats {
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        ProxyStats {
            bytes_to_server: get(&self.bytes[0]),
            bytes_to_client: get(&self.bytes[1]),
            connections_total: get(&self.accepted),
            connections_open: get(&self.open),
            refused: get(&self.refused),
            resets: get(&self.resets),
            closes: get(&self.closes),
        }
    }
}

/// The state and counters every thread of one proxy shares.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub state: Mutex<State>,
    /// Signalled on every fault change, shutdown and connection end.
    pub changed: Condvar,
    pub counters: Counters,
}

impl Shared {
    /// Changes the state and wakes every waiting thread.
    pub fn update(&self, f: impl FnOnce(&mut State)) {
        let mut state = self.state.lock();
        f(&mut state);
        self.changed.notify_all();
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Waits until `until` has passed (when given) and `blocked` is false.
    /// False when the proxy shuts down or `ended()` turns true first.
    pub fn wait(
        &self,
        until: Option<Instant>,
        ended: impl Fn() -> bool,
        blocked: impl Fn(&State) -> bool,
    ) -> bool {
        let mut state = self.state.lock();
        loop {
            if state.shutdown || ended() {
                return false;
            }
            let now = Instant::now();
            let early = until.is_some_and(|u| now < u);
            if !early && !blocked(&state) {
                return true;
            }
            match until.filter(|_| early) {
                Some(u) => {
                    self.changed.wait_until(&mut state, u);
                }
                None => self.changed.wait(&mut state),
            }
        }
    }

    /// For a chunk of `n` bytes just read in direction `dir`: when to deliver
    /// it, and whether a cut falls inside it (the cut is then disarmed, in
    /// both directions when it was armed for both).
    pub fn plan(
        &self,
        dir: usize,
        cursor: &mut DirCursor,
        n: usize,
    ) -> (Instant, Option<PlannedCut>) {
        let mut state = self.state.lock();
        let f = state.dirs[dir];
        let mut delay = f.latency;
        if !f.jitter.is_zero() {
            let j = cursor.rng.random_range(0..=2 * f.jitter.as_micros() as u64);
            delay = (f.latency + Duration::from_micros(j)).saturating_sub(f.jitter);
        }
        let at = (Instant::now() + delay).max(cursor.last_delivery);
        cursor.last_delivery = at;
        let mut planned = None;
        if let Some(cut) = f.cut {
            let base = match cursor.cut_base {
                Some((gen, base)) if gen == cut.gen => base,
                _ => cursor.count,
            };
            cursor.cut_base = Some((cut.gen, base));
            let limit = base + cut.after;
            if cursor.count + n as u64 >= limit {
                planned = Some(PlannedCut {
                    keep: (limit - cursor.count) as usize,
                    kind: cut.kind,
                });
                for d in state.dirs.iter_mut() {
                    if d.cut.is_some_and(|c| c.gen == cut.gen) {
                        d.cut = None;
                    }
                }
            }
        }
        cursor.count += planned.map_or(n, |p| p.keep) as u64;
        (at, planned)
    }
}
