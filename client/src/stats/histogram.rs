//! A fixed-size latency histogram: log-linear buckets of plain counters,
//! kept under the lock of whoever owns it (the link's, see `tally.rs`):
//! recording is an index computation and an add, no atomic instruction.
//! Nothing is allocated per value.
//!
//! Values are nanoseconds. Below 16 every value has its own bucket; above,
//! each power of two is cut into 16 equal buckets, so a quantile read back
//! is at most 1/16 (6.25 %) above the true value, and never below it.
//! Values from 2^36 ns (about 69 s) up share the last bucket.

/// Linear buckets per power of two (as a shift: 16).
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// Values at or above `2^MAX_EXP` land in the last bucket.
const MAX_EXP: u32 = 36;
/// Buckets in all: the linear ones below `SUB`, then `SUB` per power of two.
pub(crate) const BUCKETS: usize = (SUB + (MAX_EXP - SUB_BITS) as u64 * SUB) as usize;

/// The histogram; `Default` is empty. A copy (`Clone`) is a snapshot
/// whose quantiles agree with each other.
#[derive(Clone)]
pub(crate) struct Histogram {
    counts: [u64; BUCKETS],
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: [0; BUCKETS],
            max: 0,
        }
    }
}

/// The bucket a value falls in.
fn index(value: u64) -> usize {
    if value < SUB {
        return value as usize;
    }
    let exp = 63 - value.leading_zeros();
    if exp >= MAX_EXP {
        return BUCKETS - 1;
    }
    let mantissa = (value >> (exp - SUB_BITS)) & (SUB - 1);
    (SUB + u64::from(exp - SUB_BITS) * SUB + mantissa) as usize
}

/// The largest value bucket `i` holds.
fn upper_bound(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let exp = (i - SUB) / SUB + u64::from(SUB_BITS);
    let mantissa = (i - SUB) % SUB;
    let width = 1u64 << (exp - u64::from(SUB_BITS));
    (1u64 << exp) + (mantissa + 1) * width - 1
}

impl Histogram {
    /// Records one value.
    pub(crate) fn record(&mut self, value: u64) {
        self.counts[index(value)] += 1;
        self.max = self.max.max(value);
    }

    /// How many values were recorded.
    pub(crate) fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The largest value recorded (exact); 0 when empty.
    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0..=1): the upper bound of the bucket
    /// holding the `ceil(q * count)`-th value, capped by the maximum; 0
    /// when empty.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        let count = self.count();
        if count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                if i == BUCKETS - 1 {
                    return self.max; // the open-ended last bucket
                }
                return upper_bound(i).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn every_value_falls_in_a_bucket_whose_bounds_hold_it() {
        let mut previous_upper = None;
        for i in 0..BUCKETS - 1 {
            let upper = upper_bound(i);
            assert_eq!(index(upper), i, "upper bound of bucket {i}");
            assert_eq!(index(upper + 1), i + 1, "first value after bucket {i}");
            if let Some(p) = previous_upper {
                assert!(upper > p);
            }
            previous_upper = Some(upper);
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
        assert_eq!(index(1 << MAX_EXP), BUCKETS - 1);
    }

    #[test]
    fn an_empty_histogram_reports_zeros() {
        let s = Histogram::default();
        assert_eq!((s.count(), s.max(), s.quantile(0.5)), (0, 0, 0));
    }

    #[test]
    fn small_values_are_exact() {
        let mut s = Histogram::default();
        for v in 1..=10 {
            s.record(v);
        }
        assert_eq!(s.count(), 10);
        assert_eq!(s.quantile(0.5), 5);
        assert_eq!(s.quantile(0.9), 9);
        assert_eq!(s.quantile(0.99), 10);
        assert_eq!(s.quantile(1.0), 10);
        assert_eq!(s.max(), 10);
    }

    #[test]
    fn quantiles_of_one_to_a_million_are_within_a_sixteenth_above_the_truth() {
        let mut s = Histogram::default();
        for v in 1..=1_000_000u64 {
            s.record(v * 1000);
        }
        for (q, truth) in [
            (0.5, 500_000_000u64),
            (0.9, 900_000_000),
            (0.99, 990_000_000),
        ] {
            let got = s.quantile(q);
            assert!(got >= truth, "q{q}: {got} below {truth}");
            assert!(
                got <= truth + truth / 16,
                "q{q}: {got} too far above {truth}"
            );
        }
        assert_eq!(s.max(), 1_000_000_000);
        assert_eq!(s.quantile(1.0), 1_000_000_000);
    }

    #[test]
    fn quantiles_of_seeded_random_latencies_match_the_sorted_values_within_the_bound() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(15);
        let mut s = Histogram::default();
        let mut values: Vec<u64> = (0..50_000)
            .map(|_| rng.random_range(1_000..50_000_000u64))
            .collect();
        values.iter().for_each(|&v| s.record(v));
        values.sort_unstable();
        for q in [0.5, 0.9, 0.99, 0.999] {
            let rank = (q * values.len() as f64).ceil() as usize;
            let truth = values[rank - 1];
            let got = s.quantile(q);
            assert!(
                got >= truth && got <= truth + truth / 16,
                "q{q}: {got} vs {truth}"
            );
        }
        assert_eq!(s.max(), *values.last().unwrap());
    }

    #[test]
    fn values_past_the_range_share_the_last_bucket_and_keep_the_exact_max() {
        let mut s = Histogram::default();
        s.record(u64::MAX / 2);
        assert_eq!(s.quantile(0.5), u64::MAX / 2);
        assert_eq!(s.max(), u64::MAX / 2);
    }
}
