//! The client's figures as they are counted. [`ClientStats`] is the
//! public snapshot.
//!
//! Where each figure is counted decides what it costs, so each is counted
//! where its path already pays for a lock or owns a cache line:
//! - commands (sent, answered, timed out, not ready) and their round trips
//!   in plain integers under the link's lock, which every command takes
//!   to enter and leave the table in flight (`tally.rs`);
//! - frames and bytes on the wire by whoever reads or writes the socket:
//!   the client's `volt-conn` thread in a group of counters only it
//!   writes, with a plain load and store, callers that write or read the
//!   socket themselves in a shared group, with an atomic add;
//! - frames queued in the outbox travel with its bytes and are counted by
//!   whoever writes them, once per write;
//! - the rare events (messages, reverse commands, reconnections, dropped
//!   events) with an atomic add.
//!
//! So a command on the loaded path costs no atomic instruction for its
//! figures, and its round trip one clock read per read of the socket (not
//! per answer). The start of the round trip is the clock read that gives
//! the command its deadline.

mod histogram;
mod snapshot;
mod tally;

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

pub use snapshot::{ClientStats, LatencyStats, ReverseCommandStats};
pub(crate) use tally::{Arrival, CommandTally};

use crate::protocol::envelope::VoltEvent;

/// False only in builds made with `RUSTFLAGS="--cfg volt_stats_off"`,
/// where nothing is counted and no clock is read for the figures: the
/// baseline that `STATS_AB=1 benches/compare/run.sh` measures the counters
/// against in the same run. Not a feature: no user build should go without
/// figures.
const COUNTING: bool = !cfg!(volt_stats_off);

/// Keeps what it holds on cache lines of its own (128 bytes: adjacent-line
/// prefetching pairs 64-byte lines on x86).
#[derive(Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// Frames and bytes through the socket.
#[derive(Default)]
struct WireCounts {
    frames_in: AtomicU64,
    bytes_in: AtomicU64,
    frames_out: AtomicU64,
    bytes_out: AtomicU64,
}

/// Rarely written, by any thread.
#[derive(Default)]
struct Cold {
    /// 2xx, 4xx, 5xx, anything else.
    reverse: [AtomicU64; 4],
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    reconnections: AtomicU64,
    events_dropped: AtomicU64,
    /// Nanoseconds from `Stats::epoch` to the current registration, plus
    /// one; 0 while not connected.
    connected_at: AtomicU64,
}

thread_local! {
    /// The [`Stats`] (its address) whose I/O thread this thread is; 0 for
    /// every other thread.
    static IO_THREAD_OF: Cell<usize> = const { Cell::new(0) };
}

/// The counters of one client, for its whole life, but for the command
/// tally, which lives under the link's lock.
pub(crate) struct Stats {
    epoch: Instant,
    /// Written by the client's `volt-conn` thread alone.
    io: Padded<WireCounts>,
    /// Written by any other thread that reads or writes the socket.
    shared: Padded<WireCounts>,
    cold: Padded<Cold>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            epoch: Instant::now(),
            io: Padded::default(),
            shared: Padded::default(),
            cold: Padded::default(),
        }
    }
}

/// The status of a `reverse-response` (the first event of every reply).
pub(crate) fn reply_status(event: &VoltEvent) -> Option<u16> {
    match event {
        VoltEvent::ReverseResponse(r) => Some(r.status),
        _ => None,
    }
}

fn add(counter: &AtomicU64, n: u64) {
    if COUNTING {
        counter.fetch_add(n, Relaxed);
    }
}

fn sub(counter: &AtomicU64, n: u64) {
    if COUNTING {
        counter.fetch_sub(n, Relaxed);
    }
}

impl Stats {
    fn address(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// Called on the client's `volt-conn` thread when it starts: from then
    /// on its wire counts go to the group only it writes. There is one
    /// such thread per client at a time (a new `connect()` joins the old
    /// one first), and the `Stats` outlives it (the thread holds it).
    pub(crate) fn count_io_on_this_thread(&self) {
        IO_THREAD_OF.with(|t| t.set(self.address()));
    }

    fn wire(&self, counter: fn(&WireCounts) -> &AtomicU64, n: usize) {
        if !COUNTING {
            return;
        }
        let n = n as u64;
        if IO_THREAD_OF.with(Cell::get) == self.address() {
            // This group's only writer: no locked instruction is needed.
            let c = counter(&self.io.0);
            c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
        } else {
            counter(&self.shared.0).fetch_add(n, Relaxed);
        }
    }

    /// A reply to a reverse command is being queued with `status` (`by`
    /// 1), or could not be after all (`by` -1).
    pub(crate) fn reverse_replied(&self, status: u16, by: i64) {
        let class = match status {
            200..=299 => 0,
            400..=499 => 1,
            500..=599 => 2,
            _ => 3,
        };
        let counter = &self.cold.0.reverse[class];
        if by < 0 {
            sub(counter, by.unsigned_abs());
        } else {
            add(counter, by.unsigned_abs());
        }
    }

    pub(crate) fn message_in(&self) {
        add(&self.cold.0.messages_in, 1);
    }

    pub(crate) fn message_out(&self) {
        add(&self.cold.0.messages_out, 1);
    }

    pub(crate) fn frames_out(&self, n: usize) {
        self.wire(|w| &w.frames_out, n);
    }

    pub(crate) fn frames_in(&self, n: usize) {
        self.wire(|w| &w.frames_in, n);
    }

    pub(crate) fn bytes_in(&self, n: usize) {
        self.wire(|w| &w.bytes_in, n);
    }

    pub(crate) fn bytes_out(&self, n: usize) {
        self.wire(|w| &w.bytes_out, n);
    }

    /// An event for the callbacks was dropped (queue full).
    pub(crate) fn event_dropped(&self) {
        add(&self.cold.0.events_dropped, 1);
    }

    /// The connection registered; `again` when it is not the first
    /// registration of its `connect()`.
    pub(crate) fn registered(&self, again: bool) {
        if again {
            add(&self.cold.0.reconnections, 1);
        }
    }

    /// The link became ready (now) or stopped being ready.
    pub(crate) fn set_connected(&self, connected: bool) {
        let at = if connected {
            tally::nanos(self.epoch.elapsed()).saturating_add(1)
        } else {
            0
        };
        self.cold.0.connected_at.store(at, Relaxed);
    }

    /// The snapshot, with the command tally, the commands in flight and
    /// the handler queue's depth as their owners read them (the link's
    /// table, the handler pool's queue).
    pub(crate) fn snapshot(
        &self,
        tally: &CommandTally,
        in_flight: usize,
        handler_queue_depth: usize,
    ) -> ClientStats {
        let cold = &self.cold.0;
        let get = |c: &AtomicU64| c.load(Relaxed);
        let wire = |c: fn(&WireCounts) -> &AtomicU64| get(c(&self.io.0)) + get(c(&self.shared.0));
        let connected_at = get(&cold.connected_at);
        let uptime = (connected_at > 0).then(|| {
            let since = Duration::from_nanos(connected_at - 1);
            self.epoch.elapsed().saturating_sub(since)
        });
        let latency = &tally.latency;
        let dur = Duration::from_nanos;
        ClientStats {
            commands_sent: tally.sent,
            commands_ok: tally.ok,
            commands_rejected: tally.rejected,
            commands_timed_out: tally.timed_out,
            commands_not_ready: tally.not_ready,
            commands_in_flight: in_flight,
            reverse_commands: ReverseCommandStats {
                status_2xx: get(&cold.reverse[0]),
                status_4xx: get(&cold.reverse[1]),
                status_5xx: get(&cold.reverse[2]),
                other: get(&cold.reverse[3]),
            },
            messages_in: get(&cold.messages_in),
            messages_out: get(&cold.messages_out),
            bytes_in: wire(|w| &w.bytes_in),
            bytes_out: wire(|w| &w.bytes_out),
            frames_in: wire(|w| &w.frames_in),
            frames_out: wire(|w| &w.frames_out),
            reconnections: get(&cold.reconnections),
            handler_queue_depth,
            events_dropped: get(&cold.events_dropped),
            latency: LatencyStats {
                count: latency.count(),
                p50: dur(latency.quantile(0.50)),
                p90: dur(latency.quantile(0.90)),
                p99: dur(latency.quantile(0.99)),
                max: dur(latency.max()),
            },
            uptime,
            url: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(s: &Stats) -> ClientStats {
        s.snapshot(&CommandTally::default(), 0, 0)
    }

    #[test]
    fn the_counter_groups_sit_on_separate_cache_lines() {
        let s = Stats::default();
        let addr = |p: *const u8| p as usize;
        let io = addr(std::ptr::from_ref(&s.io).cast());
        let shared = addr(std::ptr::from_ref(&s.shared).cast());
        let cold = addr(std::ptr::from_ref(&s.cold).cast());
        for (a, b) in [(io, shared), (shared, cold), (io, cold)] {
            assert!(a.abs_diff(b) >= 128, "{a:#x} and {b:#x} share a line pair");
            assert_eq!(a % 128, 0);
        }
    }

    #[test]
    fn wire_counts_from_the_io_thread_and_from_callers_add_up() {
        let s = std::sync::Arc::new(Stats::default());
        let io = {
            let s = s.clone();
            std::thread::spawn(move || {
                s.count_io_on_this_thread();
                (0..10_000).for_each(|_| s.frames_in(1));
            })
        };
        let callers: Vec<_> = (0..3)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || (0..10_000).for_each(|_| s.frames_in(1)))
            })
            .collect();
        io.join().unwrap();
        callers.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(s.io.0.frames_in.load(Relaxed), 10_000);
        assert_eq!(snapshot(&s).frames_in, 40_000);
    }

    #[test]
    fn the_io_thread_of_one_client_counts_another_clients_wire_as_a_caller() {
        let (a, b) = (Stats::default(), Stats::default());
        std::thread::scope(|scope| {
            scope.spawn(|| {
                a.count_io_on_this_thread();
                b.bytes_out(7);
            });
        });
        assert_eq!(b.shared.0.bytes_out.load(Relaxed), 7);
        assert_eq!(b.io.0.bytes_out.load(Relaxed), 0);
    }

    #[test]
    fn uptime_is_none_until_connected_and_after_disconnecting() {
        let s = Stats::default();
        assert_eq!(snapshot(&s).uptime, None);
        s.set_connected(true);
        assert!(snapshot(&s).uptime.is_some());
        s.set_connected(false);
        assert_eq!(snapshot(&s).uptime, None);
    }

    #[test]
    fn reverse_replies_are_counted_by_status_class() {
        let s = Stats::default();
        for status in [200, 204, 404, 500, 503, 302] {
            s.reverse_replied(status, 1);
        }
        s.reverse_replied(200, 1);
        s.reverse_replied(200, -1); // not sent after all
        let r = snapshot(&s).reverse_commands;
        assert_eq!(
            (r.status_2xx, r.status_4xx, r.status_5xx, r.other),
            (2, 1, 2, 1)
        );
    }

    #[test]
    fn the_snapshot_takes_the_command_figures_from_the_tally() {
        let mut t = CommandTally::default();
        let sent = Instant::now();
        t.sent();
        t.answered(true, sent, Some(sent + Duration::from_micros(25)));
        let stats = Stats::default().snapshot(&t, 3, 2);
        assert_eq!((stats.commands_sent, stats.commands_ok), (1, 1));
        assert_eq!(
            (stats.commands_in_flight, stats.handler_queue_depth),
            (3, 2)
        );
        assert_eq!(stats.latency.count, 1);
        assert!(stats.latency.max >= Duration::from_micros(25));
    }
}
