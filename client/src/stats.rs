//! The client's figures as they are counted: relaxed atomics, each group
//! on cache lines of its own, bumped by one-line hooks where things happen
//! (`pending.rs`, the connection's reader and writer, the outbox, the
//! handler pool, the event sink). [`ClientStats`] is the public snapshot.
//!
//! What a command costs here: one add when it is sent, one when its reply
//! is routed, one for its frame out and one for its frame in, and, when its
//! caller waits for it, one clock read and one add into the latency
//! histogram. The start of the round trip is not read from the clock: it
//! is the command's deadline minus its timeout, both taken when it was
//! sent. No lock, no allocation.
//!
//! Callers write the caller group, the I/O thread (or a caller holding the
//! socket) the wire group; the rarely written ones share a third group. The
//! padding keeps them off each other's lines and off the link's lock.

mod histogram;
mod snapshot;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use histogram::Histogram;
pub use snapshot::{ClientStats, LatencyStats, ReverseCommandStats};

use crate::connection::OutboxError;
use crate::error::{DaemonClientError, DaemonClientErrorCode};
use crate::protocol::envelope::VoltEvent;

/// Keeps what it holds on cache lines of its own (128 bytes: adjacent-line
/// prefetching pairs 64-byte lines on x86).
#[derive(Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// Written by the threads that send commands and messages.
#[derive(Default)]
struct CallerSide {
    commands_sent: AtomicU64,
    frames_out: AtomicU64,
}

/// Written by whoever reads the socket (the I/O thread, or a caller that
/// reads its own reply) and whoever writes it.
#[derive(Default)]
struct WireSide {
    commands_ok: AtomicU64,
    commands_rejected: AtomicU64,
    frames_in: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

/// Rarely written.
#[derive(Default)]
struct Cold {
    commands_timed_out: AtomicU64,
    commands_not_ready: AtomicU64,
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

/// The counters of one client, for its whole life.
pub(crate) struct Stats {
    epoch: Instant,
    caller: Padded<CallerSide>,
    wire: Padded<WireSide>,
    cold: Padded<Cold>,
    latency: Padded<Histogram>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            epoch: Instant::now(),
            caller: Padded::default(),
            wire: Padded::default(),
            cold: Padded::default(),
            latency: Padded::default(),
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
    counter.fetch_add(n, Relaxed);
}

/// Saturating, in u64 arithmetic (no u128 on the command path).
fn nanos(d: Duration) -> u64 {
    let secs = d.as_secs().saturating_mul(1_000_000_000);
    secs.saturating_add(u64::from(d.subsec_nanos()))
}

impl Stats {
    /// A command was handed to the outbox.
    pub(crate) fn command_sent(&self) {
        add(&self.caller.0.commands_sent, 1);
    }

    /// A command could not be queued after all: it was not sent.
    pub(crate) fn send_failed(&self, e: &OutboxError) {
        self.caller.0.commands_sent.fetch_sub(1, Relaxed);
        match e {
            OutboxError::Timeout => self.command_timed_out(),
            OutboxError::Closed => self.commands_not_ready(1),
            OutboxError::TooLarge { .. } => {}
        }
    }

    /// A `command-response` was routed to its waiter.
    pub(crate) fn command_answered(&self, ok: bool) {
        let wire = &self.wire.0;
        add(
            if ok {
                &wire.commands_ok
            } else {
                &wire.commands_rejected
            },
            1,
        );
    }

    /// A command got no reply in time (or could not be queued in time).
    pub(crate) fn command_timed_out(&self) {
        add(&self.cold.0.commands_timed_out, 1);
    }

    /// `n` commands failed with `SOCKET_NOT_READY`: refused at once, or
    /// in flight when the connection was lost.
    pub(crate) fn commands_not_ready(&self, n: usize) {
        add(&self.cold.0.commands_not_ready, n as u64);
    }

    /// A waited command's outcome arrived: its round trip goes into the
    /// histogram when it was answered (a reply or a rejection). `sent` is
    /// the command's deadline minus its timeout, the instant it was sent.
    pub(crate) fn round_trip(
        &self,
        deadline: Instant,
        timeout: Duration,
        outcome: &Result<Option<serde_json::Value>, DaemonClientError>,
    ) {
        let answered = match outcome {
            Ok(_) => true,
            Err(e) => e.code() == DaemonClientErrorCode::CommandRejected,
        };
        if !answered {
            return;
        }
        // now - (deadline - timeout), with one clock read and one subtraction
        // of instants.
        let left = deadline.saturating_duration_since(Instant::now());
        self.latency.0.record(nanos(timeout.saturating_sub(left)));
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
            counter.fetch_sub(by.unsigned_abs(), Relaxed);
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
        add(&self.caller.0.frames_out, n as u64);
    }

    pub(crate) fn frame_in(&self) {
        add(&self.wire.0.frames_in, 1);
    }

    pub(crate) fn bytes_in(&self, n: usize) {
        add(&self.wire.0.bytes_in, n as u64);
    }

    pub(crate) fn bytes_out(&self, n: usize) {
        add(&self.wire.0.bytes_out, n as u64);
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
            nanos(self.epoch.elapsed()).saturating_add(1)
        } else {
            0
        };
        self.cold.0.connected_at.store(at, Relaxed);
    }

    /// The snapshot; `in_flight` and `handler_queue_depth` are the caller's
    /// to read (the link's table, the handler pool's queue).
    pub(crate) fn snapshot(&self, in_flight: usize, handler_queue_depth: usize) -> ClientStats {
        let (caller, wire, cold) = (&self.caller.0, &self.wire.0, &self.cold.0);
        let get = |c: &AtomicU64| c.load(Relaxed);
        let connected_at = get(&cold.connected_at);
        let uptime = (connected_at > 0).then(|| {
            let since = Duration::from_nanos(connected_at - 1);
            self.epoch.elapsed().saturating_sub(since)
        });
        let latency = self.latency.0.snapshot();
        let dur = Duration::from_nanos;
        ClientStats {
            commands_sent: get(&caller.commands_sent),
            commands_ok: get(&wire.commands_ok),
            commands_rejected: get(&wire.commands_rejected),
            commands_timed_out: get(&cold.commands_timed_out),
            commands_not_ready: get(&cold.commands_not_ready),
            commands_in_flight: in_flight,
            reverse_commands: ReverseCommandStats {
                status_2xx: get(&cold.reverse[0]),
                status_4xx: get(&cold.reverse[1]),
                status_5xx: get(&cold.reverse[2]),
                other: get(&cold.reverse[3]),
            },
            messages_in: get(&cold.messages_in),
            messages_out: get(&cold.messages_out),
            bytes_in: get(&wire.bytes_in),
            bytes_out: get(&wire.bytes_out),
            frames_in: get(&wire.frames_in),
            frames_out: get(&caller.frames_out),
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

    #[test]
    fn the_counter_groups_sit_on_separate_cache_lines() {
        let s = Stats::default();
        let addr = |p: *const u8| p as usize;
        let caller = addr(std::ptr::from_ref(&s.caller).cast());
        let wire = addr(std::ptr::from_ref(&s.wire).cast());
        let cold = addr(std::ptr::from_ref(&s.cold).cast());
        for (a, b) in [(caller, wire), (wire, cold), (caller, cold)] {
            assert!(a.abs_diff(b) >= 128, "{a:#x} and {b:#x} share a line pair");
            assert_eq!(a % 128, 0);
        }
    }

    #[test]
    fn uptime_is_none_until_connected_and_after_disconnecting() {
        let s = Stats::default();
        assert_eq!(s.snapshot(0, 0).uptime, None);
        s.set_connected(true);
        assert!(s.snapshot(0, 0).uptime.is_some());
        s.set_connected(false);
        assert_eq!(s.snapshot(0, 0).uptime, None);
    }

    #[test]
    fn reverse_replies_are_counted_by_status_class() {
        let s = Stats::default();
        for status in [200, 204, 404, 500, 503, 302] {
            s.reverse_replied(status, 1);
        }
        s.reverse_replied(200, 1);
        s.reverse_replied(200, -1); // not sent after all
        let r = s.snapshot(0, 0).reverse_commands;
        assert_eq!(
            (r.status_2xx, r.status_4xx, r.status_5xx, r.other),
            (2, 1, 2, 1)
        );
    }

    #[test]
    fn only_answered_commands_enter_the_latency_histogram() {
        let s = Stats::default();
        let timeout = Duration::from_secs(30);
        let deadline = Instant::now() + timeout;
        s.round_trip(deadline, timeout, &Ok(None));
        let rejected = DaemonClientError::new(DaemonClientErrorCode::CommandRejected, "no");
        s.round_trip(deadline, timeout, &Err(rejected));
        s.round_trip(
            deadline,
            timeout,
            &Err(DaemonClientError::not_ready("lost")),
        );
        let l = s.snapshot(0, 0).latency;
        assert_eq!(l.count, 2);
        assert!(l.max < timeout && l.p50 <= l.max);
    }
}
