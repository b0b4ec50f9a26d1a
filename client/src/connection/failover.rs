//! Which control socket URL the next attempt uses, how many attempts failed
//! in a row, and which backoff round that is. Pure: the supervisor asks and
//! tells, and does the waiting.
//!
//! Attempts walk the URLs in turn from the one that registered last; the
//! backoff exponent is the number of full rounds failed, so one URL alone
//! backs off as before (attempt k waits `delay(k)`).

/// The attempt plan over `len` URLs (index 0 is `control_socket_url`).
#[derive(Debug, Clone)]
pub(crate) struct Failover {
    len: usize,
    current: usize,
    failures: u32,
}

impl Failover {
    /// A plan over `len` URLs (at least one), starting with the first.
    pub(crate) fn new(len: usize) -> Self {
        Failover {
            len: len.max(1),
            current: 0,
            failures: 0,
        }
    }

    /// The URL index the next attempt uses.
    pub(crate) fn current(&self) -> usize {
        self.current
    }

    /// How many URLs there are.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Failed attempts in a row.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// The number of the next attempt, from 1.
    pub(crate) fn attempt(&self) -> u32 {
        self.failures.saturating_add(1)
    }

    /// The backoff exponent of the next attempt: full rounds failed.
    pub(crate) fn round(&self) -> u32 {
        let len = u32::try_from(self.len).unwrap_or(u32::MAX);
        self.failures / len
    }

    /// The current URL registered: it stays first, the count starts over.
    pub(crate) fn registered(&mut self) {
        self.failures = 0;
    }

    /// The current URL failed: the next one is tried.
    pub(crate) fn failed(&mut self) {
        self.failures = self.failures.saturating_add(1);
        self.current = (self.current + 1) % self.len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_url_backs_off_per_attempt_as_before() {
        let mut f = Failover::new(1);
        let rounds: Vec<u32> = (0..4)
            .map(|_| {
                let r = f.round();
                f.failed();
                r
            })
            .collect();
        assert_eq!(rounds, [0, 1, 2, 3]);
        assert_eq!(f.current(), 0);
    }

    #[test]
    fn urls_are_walked_in_turn_and_the_backoff_grows_per_full_round() {
        let mut f = Failover::new(3);
        let mut seen = Vec::new();
        for _ in 0..7 {
            seen.push((f.current(), f.round(), f.attempt()));
            f.failed();
        }
        assert_eq!(
            seen,
            [
                (0, 0, 1),
                (1, 0, 2),
                (2, 0, 3),
                (0, 1, 4),
                (1, 1, 5),
                (2, 1, 6),
                (0, 2, 7)
            ]
        );
    }

    #[test]
    fn the_url_that_registered_last_is_tried_first_after_a_loss() {
        let mut f = Failover::new(2);
        f.failed(); // the first URL is down
        assert_eq!(f.current(), 1);
        f.registered();
        assert_eq!(
            (f.current(), f.failures(), f.round(), f.attempt()),
            (1, 0, 0, 1)
        );
    }

    #[test]
    fn counts_saturate_instead_of_overflowing() {
        let mut f = Failover::new(2);
        f.failures = u32::MAX;
        f.failed();
        assert_eq!(f.failures(), u32::MAX);
        assert_eq!(f.attempt(), u32::MAX);
        assert_eq!(Failover::new(0).len(), 1);
    }
}
