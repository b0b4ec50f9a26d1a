//! The loop's timers (one heap, earliest first) and the hasher of its
//! connection table.

use std::cmp::Ordering;
use std::hash::Hasher;
use std::time::Instant;

/// What a timer does when it fires.
pub(crate) enum TimerKind {
    Heartbeat,
    HeadTimeout,
    CloseLinger,
    Send(String),
    DispatchTimeout(String),
}

pub(crate) struct Timer {
    pub at: Instant,
    pub seq: u64,
    pub conn: u64,
    pub kind: TimerKind,
}

impl PartialEq for Timer {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.seq == other.seq
    }
}
impl Eq for Timer {}
impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timer {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the earliest first.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Hashes the loop's own connection ids (sequential `u64`s it hands out,
/// never chosen by a peer) with one multiplication instead of SipHash: the
/// connection table is looked up several times per frame.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: spreads consecutive ids over the high bits
        // (hashbrown's control bytes) while the low bits stay distinct.
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}
