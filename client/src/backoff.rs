//! Reconnection delays: capped first, then jittered, in saturating
//! arithmetic, so attempt 10,000 is as well-behaved as attempt 0.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Computes the delay before reconnection attempt `k` (0-based):
/// `d = min(base·2^k, max)`, `deviation = floor(rand·factor·d)`, added or
/// subtracted at random, clamped to `[1 ms, max]`.
///
/// ```
/// use std::time::Duration;
/// use volt_daemon_client::Backoff;
/// let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30), 0.3, Some(7));
/// let d = b.delay(10_000);
/// assert!(d >= Duration::from_millis(21_000) && d <= Duration::from_secs(30));
/// ```
#[derive(Debug)]
pub struct Backoff {
    base_ms: u64,
    max_ms: u64,
    factor: f64,
    rng: StdRng,
}

impl Backoff {
    /// A backoff; `seed` makes the jitter reproducible.
    pub fn new(base: Duration, max: Duration, factor: f64, seed: Option<u64>) -> Self {
        Backoff {
            base_ms: duration_ms(base),
            max_ms: duration_ms(max).max(1),
            factor: if factor.is_finite() {
                factor.clamp(0.0, 1.0)
            } else {
                0.0
            },
            rng: seeded_rng(seed),
        }
    }

    /// The delay before attempt `attempt`.
    pub fn delay(&mut self, attempt: u32) -> Duration {
        let factor = 1u64.checked_shl(attempt).unwrap_or(u64::MAX);
        let capped = self.base_ms.saturating_mul(factor).min(self.max_ms);
        let deviation = (self.rng.random::<f64>() * self.factor * capped as f64).floor() as u64;
        let jittered = if self.rng.random::<bool>() {
            capped.saturating_add(deviation)
        } else {
            capped.saturating_sub(deviation)
        };
        Duration::from_millis(jittered.clamp(1, self.max_ms))
    }
}

/// An rng seeded from `seed`, or from the OS when there is none.
pub(crate) fn seeded_rng(seed: Option<u64>) -> StdRng {
    match seed {
        Some(s) => StdRng::seed_from_u64(s),
        None => StdRng::from_os_rng(),
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(seed: u64) -> Backoff {
        Backoff::new(
            Duration::from_millis(500),
            Duration::from_secs(30),
            0.3,
            Some(seed),
        )
    }

    #[test]
    fn delays_grow_then_stay_within_jitter_of_the_cap() {
        let mut b = backoff(1);
        for k in 0..20u32 {
            let d = b.delay(k).as_millis() as u64;
            let nominal = (500u64 << k.min(20)).min(30_000);
            let dev = (nominal as f64 * 0.3) as u64;
            assert!(
                d + dev >= nominal && d <= (nominal + dev).min(30_000),
                "k={k} d={d}"
            );
        }
    }

    #[test]
    fn huge_attempt_numbers_never_overflow_or_reach_zero() {
        let mut b = backoff(2);
        for k in [63, 64, 65, 1_000, 10_000, u32::MAX] {
            let d = b.delay(k);
            assert!(d >= Duration::from_millis(21_000) && d <= Duration::from_secs(30));
        }
    }

    #[test]
    fn zero_base_still_waits_at_least_one_millisecond() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO, 0.5, Some(3));
        assert_eq!(b.delay(0), Duration::from_millis(1));
    }

    #[test]
    fn same_seed_gives_same_delays() {
        let (mut a, mut b) = (backoff(42), backoff(42));
        for k in 0..10 {
            assert_eq!(a.delay(k), b.delay(k));
        }
    }
}
