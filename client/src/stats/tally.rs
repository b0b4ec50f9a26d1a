//! The command counters and the round-trip histogram: plain integers kept
//! inside the link's lock (`pending.rs`). Every command takes that lock
//! anyway, to enter the table of commands in flight and to leave it, so
//! counting there costs no atomic instruction and no cache line of its
//! own: the line is already the thread's while it holds the lock. A
//! snapshot copies the tally under the same lock, so its counts agree with
//! each other and with the commands in flight.

use std::time::{Duration, Instant};

use super::histogram::Histogram;
use super::COUNTING;

/// What became of the commands sent, and how long their answers took.
#[derive(Clone, Default)]
pub(crate) struct CommandTally {
    pub(super) sent: u64,
    pub(super) ok: u64,
    pub(super) rejected: u64,
    pub(super) timed_out: u64,
    pub(super) not_ready: u64,
    /// Round trips in nanoseconds, from sending to reading the answer.
    pub(super) latency: Histogram,
}

impl CommandTally {
    /// A command entered the table, about to be handed to the outbox.
    pub(crate) fn sent(&mut self) {
        if COUNTING {
            self.sent += 1;
        }
    }

    /// A command left the table without being queued after all.
    pub(crate) fn unsent(&mut self) {
        if COUNTING {
            self.sent = self.sent.saturating_sub(1);
        }
    }

    /// A `command-response` for a command sent at `sent` was read at `at`
    /// (`None` only when the build counts nothing).
    pub(crate) fn answered(&mut self, ok: bool, sent: Instant, at: Option<Instant>) {
        if !COUNTING {
            return;
        }
        if ok {
            self.ok += 1;
        } else {
            self.rejected += 1;
        }
        if let Some(at) = at {
            self.latency
                .record(nanos(at.saturating_duration_since(sent)));
        }
    }

    /// A command got no answer in time (or could not be queued in time).
    pub(crate) fn timed_out(&mut self) {
        if COUNTING {
            self.timed_out += 1;
        }
    }

    /// `n` commands failed with `SOCKET_NOT_READY`: refused at once, or in
    /// flight when the connection was lost.
    pub(crate) fn not_ready(&mut self, n: usize) {
        if COUNTING {
            self.not_ready += n as u64;
        }
    }
}

/// The instant the bytes being handled were read off the socket: the end
/// of a round trip. The clock is read at most once per read, and only
/// when an answer is among what was read, so a read that brings a hundred
/// answers costs one clock read, not a hundred.
#[derive(Debug, Default)]
pub(crate) struct Arrival(Option<Instant>);

impl Arrival {
    /// New bytes were read: the next answer reads the clock again.
    pub(crate) fn read_again(&mut self) {
        self.0 = None;
    }

    /// When the current read happened (first asked: now).
    pub(crate) fn at(&mut self) -> Option<Instant> {
        COUNTING.then(|| *self.0.get_or_insert_with(Instant::now))
    }
}

/// Saturating, in u64 arithmetic (no u128 on the command path).
pub(super) fn nanos(d: Duration) -> u64 {
    let secs = d.as_secs().saturating_mul(1_000_000_000);
    secs.saturating_add(u64::from(d.subsec_nanos()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_has_its_counter_and_only_answers_have_a_round_trip() {
        let mut t = CommandTally::default();
        let sent = Instant::now();
        let at = Some(sent + Duration::from_micros(40));
        (0..4).for_each(|_| t.sent());
        t.answered(true, sent, at);
        t.answered(false, sent, at);
        t.timed_out();
        t.unsent();
        t.not_ready(2);
        assert_eq!(
            (t.sent, t.ok, t.rejected, t.timed_out, t.not_ready),
            (3, 1, 1, 1, 2)
        );
        assert_eq!(t.latency.count(), 2);
        assert_eq!(t.latency.max(), 40_000);
    }

    #[test]
    fn an_arrival_reads_the_clock_once_per_read() {
        let mut a = Arrival::default();
        let first = a.at();
        assert_eq!(a.at(), first, "the same read, the same instant");
        a.read_again();
        assert!(a.at() >= first);
    }

    #[test]
    fn an_answer_read_before_its_send_instant_counts_as_zero() {
        let mut t = CommandTally::default();
        let sent = Instant::now();
        t.answered(true, sent + Duration::from_secs(1), Some(sent));
        assert_eq!(t.latency.max(), 0);
    }
}
