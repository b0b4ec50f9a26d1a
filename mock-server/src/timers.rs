//! The loop's timers (one heap, earliest first) and the hasher of its
//! connection table.

use std::cmp::Ordering;
use std::time::Instant;

/// What a timer does when it fires.
#[derive(Debug, PartialEq, Eq)]
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
