//! Every knob of the write path, in one place: who writes a command (the
//! caller or `volt-conn`), whether `volt-conn` is woken for it, how long it
//! may sleep meanwhile, and when a caller reads its own reply off a lent
//! socket. Latency wants the caller's own thread when little is in flight;
//! throughput wants `volt-conn` to write big batches when much is.

use std::time::{Duration, Instant};

/// Commands in flight up to which a new one is written on the caller's
/// thread rather than queued for the connection thread.
pub(crate) const DIRECT_WRITE_MAX_IN_FLIGHT: usize = 2;

/// Commands in flight above which a new one does not wake the connection
/// thread: replies keep waking it, and it then writes everything queued in
/// one batch (bigger batches: fewer syscalls and wake-ups on both ends).
pub(crate) const LAZY_FLUSH_MIN_IN_FLIGHT: usize = 64;

/// The longest the I/O thread sleeps while lazily flushed commands may
/// wait in the outbox (more than [`LAZY_FLUSH_MIN_IN_FLIGHT`] in flight).
pub(crate) const LAZY_FLUSH_DELAY: Duration = Duration::from_millis(1);

/// How long a lent socket may go unused before `volt-conn` takes it back
/// (so that replies nobody reads inline are not left waiting), and how
/// often it looks at it meanwhile.
pub(crate) const LEND_IDLE: Duration = Duration::from_millis(1);

/// Misses in a row after which a connection only probes inline reads.
pub(crate) const MISSES_BEFORE_PROBING: u32 = 8;

/// While probing, one inline read per this many chances.
pub(crate) const PROBE_EVERY: u32 = 64;

/// Who writes a new command, and whether `volt-conn` is woken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writer {
    /// The caller writes, then reads once for a reply that came at once.
    Inline,
    /// The caller writes if the socket is free (else `volt-conn`, woken).
    Direct,
    /// `volt-conn` writes, woken now.
    Wake,
    /// `volt-conn` writes at its next turn, not woken: replies wake it
    /// soon, and it never sleeps longer than [`LAZY_FLUSH_DELAY`] then
    /// (and a sleep without that cap is published to lazy senders).
    Lazy,
}

/// The writer of a command, from the commands in flight counting it.
pub(crate) fn writer(in_flight: usize) -> Writer {
    match in_flight {
        0 | 1 => Writer::Inline,
        n if n <= DIRECT_WRITE_MAX_IN_FLIGHT => Writer::Direct,
        // The command that crosses the threshold still wakes the
        // connection thread, which may be asleep without the cap.
        n if n <= LAZY_FLUSH_MIN_IN_FLIGHT + 1 => Writer::Wake,
        _ => Writer::Lazy,
    }
}

/// The I/O thread's longest sleep with `in_flight` commands awaiting a
/// reply; `None`: until a socket event, a wake-up or the next ping.
pub(crate) fn poll_cap(in_flight: usize) -> Option<Duration> {
    (in_flight > LAZY_FLUSH_MIN_IN_FLIGHT).then_some(LAZY_FLUSH_DELAY)
}

/// What the write path allows `volt-conn`'s poll to sleep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SleepLimit {
    /// Wake by then at the latest: [`LAZY_FLUSH_DELAY`] from now under
    /// lazy flushing, or the next look at a lent socket, whichever is
    /// first; `None`: no write-path limit (a socket event, a wake-up, a
    /// deadline or the next ping ends the sleep).
    pub(crate) wake_by: Option<Instant>,
    /// Whether the lazy-flush cap applies. Without it, lazy senders must
    /// be told the thread sleeps (`OutboxReceiver::sleep_uncapped`), since
    /// they do not wake it.
    pub(crate) lazy_capped: bool,
}

/// How long `volt-conn` may sleep at `now`: capped at
/// [`LAZY_FLUSH_DELAY`] while more than [`LAZY_FLUSH_MIN_IN_FLIGHT`]
/// commands are in flight (`in_flight` is `None` before the outbox is
/// drained, while registering: no cap then), and until `look_at_lent` (the
/// next look at a socket lent to callers, every [`LEND_IDLE`]).
pub(crate) fn sleep_limit(
    now: Instant,
    in_flight: Option<usize>,
    look_at_lent: Option<Instant>,
) -> SleepLimit {
    let lazy = in_flight.and_then(poll_cap).map(|cap| now + cap);
    let wake_by = match (lazy, look_at_lent) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    SleepLimit {
        wake_by,
        lazy_capped: lazy.is_some(),
    }
}

/// Whether a caller whose reply was read is woken only once `volt-conn`
/// lets the socket go (it will likely write its next command directly and
/// then finds it free), or at once (under load).
pub(crate) fn wake_after_release(still_pending: usize) -> bool {
    still_pending < DIRECT_WRITE_MAX_IN_FLIGHT
}

/// How often reading on the caller's thread found a reply: a connection
/// where replies never come within the write stops trying, but probes.
#[derive(Default)]
pub(crate) struct InlineHits {
    /// Attempts in a row that found nothing.
    misses: u32,
    /// Attempts skipped since the last probe.
    skipped: u32,
}

impl InlineHits {
    /// Whether to read inline this time.
    pub(crate) fn should_try(&mut self) -> bool {
        if self.misses < MISSES_BEFORE_PROBING {
            return true;
        }
        self.skipped = self.skipped.wrapping_add(1);
        self.skipped % PROBE_EVERY == 0
    }

    /// What the inline read found.
    pub(crate) fn record(&mut self, hit: bool) {
        self.misses = if hit {
            0
        } else {
            self.misses.saturating_add(1)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_and_the_poll_cap_by_commands_in_flight() {
        let ms = Duration::from_millis;
        // (in flight, writer, poll cap, waiter woken after the release)
        let table = [
            (1, Writer::Inline, None, true),
            (2, Writer::Direct, None, false),
            (3, Writer::Wake, None, false),
            (64, Writer::Wake, None, false),
            (65, Writer::Wake, Some(ms(1)), false),
            (66, Writer::Lazy, Some(ms(1)), false),
            (10_000, Writer::Lazy, Some(ms(1)), false),
        ];
        for (n, w, cap, after) in table {
            assert_eq!(writer(n), w, "writer at {n}");
            assert_eq!(poll_cap(n), cap, "poll cap at {n}");
            assert_eq!(wake_after_release(n), after, "wake at {n}");
        }
        assert!(wake_after_release(0));
    }

    #[test]
    fn the_sleep_limit_by_phase_commands_in_flight_and_lending() {
        let now = Instant::now();
        let at = |ms: u64| now + Duration::from_millis(ms);
        let lent = Some(at(1) - Duration::from_micros(400));
        // (commands in flight (None: registering), next look at a lent
        // socket, wake by, lazily capped)
        let table = [
            (None, None, None, false),
            (None, Some(at(5)), Some(at(5)), false),
            (None, lent, lent, false),
            (Some(0), None, None, false),
            (Some(64), None, None, false),
            (Some(64), lent, lent, false),
            (Some(65), None, Some(at(1)), true),
            (Some(10_000), None, Some(at(1)), true),
            (Some(65), lent, lent, true),
            (Some(65), Some(at(3)), Some(at(1)), true),
        ];
        for (n, look, wake_by, lazy_capped) in table {
            let expected = SleepLimit {
                wake_by,
                lazy_capped,
            };
            assert_eq!(
                sleep_limit(now, n, look),
                expected,
                "{n:?} in flight, {look:?}"
            );
        }
        // Registering never caps, however many are counted.
        assert!(!sleep_limit(now, None, None).lazy_capped);
    }

    #[test]
    fn a_lazy_writer_always_finds_the_io_thread_on_a_capped_poll() {
        // A lazy command is counted among its in-flight commands, so the
        // I/O thread polls with the cap while it is queued (unless replies
        // drained meanwhile: then the published uncapped sleep wakes it).
        for n in 1..1_000 {
            if writer(n) == Writer::Lazy {
                assert!(poll_cap(n - 1).is_some(), "at {n}");
            }
        }
    }

    #[test]
    fn a_connection_where_replies_never_come_at_once_only_probes() {
        let mut hits = InlineHits::default();
        for _ in 0..MISSES_BEFORE_PROBING {
            assert!(hits.should_try());
            hits.record(false);
        }
        let tries = (0..10 * PROBE_EVERY).filter(|_| hits.should_try()).count();
        assert_eq!(tries, 10);
        hits.record(true);
        assert!((0..5).all(|_| hits.should_try()), "a hit resumes trying");
    }
}
