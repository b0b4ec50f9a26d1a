//! The thundering-herd model: the contract's reconnection rule
//! (`/work/shared/volt-protocol.md`, section 3: cap first, then jitter),
//! reimplemented here from the contract text rather than taken from the
//! client, a simulation of a fleet through an outage with it, and the
//! statistics `volt-herd` compares between the simulation and a measured
//! run: the largest number of attempts (and registrations) within any
//! 100 ms window, how the spread of the fleet evolves at the cap, and the
//! time until every daemon is registered again.
//!
//! ```
//! use volt_benches::herd_model::{predict, BackoffRule};
//! let rule = BackoffRule { base_ms: 500, max_ms: 30_000, factor: 0.3 };
//! // 100 daemons lose their connection at the same instant; the server is
//! // back 100 ms later, before anyone's first attempt.
//! let loss = vec![0i64; 100];
//! let p = predict(&rule, &loss, 100_000, 50, 7);
//! // Every daemon registers on its first attempt, spread over 350..650 ms:
//! // the densest 100 ms holds about a third of the fleet.
//! assert!(p.mean.attempts_share > 0.3 && p.mean.attempts_share < 0.5);
//! assert_eq!(p.mean.attempts_per_daemon, 1.0);
//! ```

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The width of the window the herd is measured in, in microseconds.
pub const WINDOW_US: i64 = 100_000;

/// The reconnection settings (`reconnectBaseDelayMs`, `reconnectMaxDelayMs`,
/// `randomizationFactor`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffRule {
    /// First delay, ms.
    pub base_ms: u64,
    /// Largest delay (the cap), ms.
    pub max_ms: u64,
    /// Jitter, as a fraction of the capped delay.
    pub factor: f64,
}

impl BackoffRule {
    /// The client's defaults: 500 ms, 30 s, 0.3.
    pub const DEFAULT: BackoffRule = BackoffRule {
        base_ms: 500,
        max_ms: 30_000,
        factor: 0.3,
    };

    /// The delay before attempt `k` (0-based), in ms, as the contract words
    /// it: `d = min(base·2^k, max)` saturating; `deviation =
    /// floor(rand·factor·d)`, added or subtracted at random; clamped to
    /// `[1, max]`. Draws a float, then a sign.
    pub fn delay_ms(&self, k: u32, rng: &mut StdRng) -> u64 {
        let max = self.max_ms.max(1);
        let d = self
            .base_ms
            .saturating_mul(1u64.checked_shl(k).unwrap_or(u64::MAX))
            .min(max);
        let deviation = (rng.random::<f64>() * self.factor * d as f64).floor() as u64;
        let jittered = if rng.random::<bool>() {
            d.saturating_add(deviation)
        } else {
            d.saturating_sub(deviation)
        };
        jittered.clamp(1, max)
    }

    /// The first attempt whose delay is the cap: `base·2^k ≥ max`.
    pub fn first_capped_attempt(&self) -> u32 {
        (0..64)
            .find(|&k| self.base_ms.saturating_mul(1u64 << k) >= self.max_ms)
            .unwrap_or(64)
    }
}

/// One daemon through the outage, times in µs from the server's kill:
/// when it saw the loss, and each reconnection attempt (the last one is the
/// one that registered; for a measured daemon, its registration time).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DaemonTrace {
    /// When the loss was seen.
    pub lost_us: i64,
    /// Attempt times, in order; the last one registered.
    pub attempts_us: Vec<i64>,
}

impl DaemonTrace {
    /// When it registered again (its last attempt).
    pub fn registered_us(&self) -> Option<i64> {
        self.attempts_us.last().copied()
    }
}

/// Simulates one fleet: daemon `i` loses its connection at `loss_us[i]`,
/// waits `delay(k)` before attempt k, and registers on its first attempt at
/// or after `up_us` (the server is back). Connecting takes no time.
pub fn simulate(rule: &BackoffRule, loss_us: &[i64], up_us: i64, seed: u64) -> Vec<DaemonTrace> {
    let mut rng = StdRng::seed_from_u64(seed);
    loss_us
        .iter()
        .map(|&lost_us| {
            let mut attempts_us = Vec::new();
            let mut t = lost_us;
            for k in 0u32.. {
                t += rule.delay_ms(k, &mut rng) as i64 * 1_000;
                attempts_us.push(t);
                if t >= up_us {
                    break;
                }
            }
            DaemonTrace {
                lost_us,
                attempts_us,
            }
        })
        .collect()
}

/// The largest number of `times` (µs, any order) within any window of
/// `window_us`, half-open: `[t, t + window_us)`.
pub fn max_in_window(times: &[i64], window_us: i64) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let mut best = 0;
    let mut start = 0;
    for end in 0..sorted.len() {
        while sorted[end] - sorted[start] >= window_us {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

/// Population standard deviation, µs.
fn std_dev(xs: &[i64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().map(|&x| x as f64).sum::<f64>() / n;
    (xs.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt()
}

/// What a fleet's traces show. Shares are fractions of the fleet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HerdStats {
    /// Daemons.
    pub daemons: usize,
    /// Largest number of attempts (failed or not) in any 100 ms, / daemons.
    pub attempts_share: f64,
    /// Largest number of registrations in any 100 ms, / daemons.
    pub registrations_share: f64,
    /// Largest number of failed attempts made after a capped delay in any
    /// 100 ms, / daemons (0 when none was).
    pub capped_share: f64,
    /// Failed attempts made after a capped delay.
    pub capped_attempts: usize,
    /// Attempts per daemon, on average.
    pub attempts_per_daemon: f64,
    /// Standard deviation of the times of the first capped attempt across
    /// the daemons that made it before the server was back, ms.
    pub first_capped_round_spread_ms: f64,
    /// The same for the last attempt index every daemon made before the
    /// server was back, when it is a capped one, ms.
    pub last_capped_round_spread_ms: f64,
    /// The last registration, ms after the server was back.
    pub all_registered_after_up_ms: f64,
}

impl HerdStats {
    /// The statistics of `traces` for an outage whose server was back at
    /// `up_us`, under `rule` (which says which attempts are capped).
    pub fn of(traces: &[DaemonTrace], rule: &BackoffRule, up_us: i64) -> HerdStats {
        HerdStats::of_window(traces, rule, up_us, WINDOW_US)
    }

    /// The same with windows of `window_us` for the shares (still divided
    /// by the fleet).
    pub fn of_window(
        traces: &[DaemonTrace],
        rule: &BackoffRule,
        up_us: i64,
        window_us: i64,
    ) -> HerdStats {
        let n = traces.len().max(1) as f64;
        let cap = rule.first_capped_attempt() as usize;
        let all: Vec<i64> = traces.iter().flat_map(|t| t.attempts_us.clone()).collect();
        let regs: Vec<i64> = traces
            .iter()
            .filter_map(DaemonTrace::registered_us)
            .collect();
        // Failed capped attempts: the daemon stamps a refusal itself, while
        // its registration goes through the server (counted above).
        let capped: Vec<i64> = traces
            .iter()
            .flat_map(|t| {
                let failed = t.attempts_us.len().saturating_sub(1);
                t.attempts_us[..failed].iter().skip(cap).copied()
            })
            .collect();
        let round = |k: usize| -> Vec<i64> {
            traces
                .iter()
                .filter_map(|t| t.attempts_us.get(k).copied().filter(|&a| a < up_us))
                .collect()
        };
        // Failed attempts every daemon made: all but each one's last.
        let common = traces
            .iter()
            .map(|t| t.attempts_us.len().saturating_sub(1))
            .min()
            .unwrap_or(0);
        let last_spread = if common > cap {
            std_dev(&round(common - 1)) / 1_000.0
        } else {
            0.0
        };
        HerdStats {
            daemons: traces.len(),
            attempts_share: max_in_window(&all, window_us) as f64 / n,
            registrations_share: max_in_window(&regs, window_us) as f64 / n,
            capped_share: max_in_window(&capped, window_us) as f64 / n,
            capped_attempts: capped.len(),
            attempts_per_daemon: all.len() as f64 / n,
            first_capped_round_spread_ms: std_dev(&round(cap)) / 1_000.0,
            last_capped_round_spread_ms: last_spread,
            all_registered_after_up_ms: regs.iter().max().map_or(0.0, |&r| (r - up_us) as f64)
                / 1_000.0,
        }
    }
}

/// The prediction: statistics averaged over many simulated fleets, and the
/// range they spanned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prediction {
    /// Simulated fleets.
    pub runs: usize,
    /// The mean of each statistic.
    pub mean: HerdStats,
    /// The smallest attempts share seen.
    pub attempts_share_min: f64,
    /// The largest attempts share seen.
    pub attempts_share_max: f64,
}

/// Simulates `runs` fleets (seeds `seed`, `seed + 1`, ...) with the given
/// loss times and the server back at `up_us`, and averages their stats.
pub fn predict(
    rule: &BackoffRule,
    loss_us: &[i64],
    up_us: i64,
    runs: usize,
    seed: u64,
) -> Prediction {
    predict_window(rule, loss_us, up_us, runs, seed, WINDOW_US)
}

/// [`predict`] with windows of `window_us` for the shares: the prediction
/// for a run during which the machine stalled for `window_us - WINDOW_US`
/// (every event due in the stall is stamped at its end, so one 100 ms window
/// can hold what the rule spread over `window_us`).
pub fn predict_window(
    rule: &BackoffRule,
    loss_us: &[i64],
    up_us: i64,
    runs: usize,
    seed: u64,
    window_us: i64,
) -> Prediction {
    let stats: Vec<HerdStats> = (0..runs.max(1) as u64)
        .map(|r| {
            let traces = simulate(rule, loss_us, up_us, seed + r);
            HerdStats::of_window(&traces, rule, up_us, window_us)
        })
        .collect();
    let k = stats.len() as f64;
    let avg = |f: fn(&HerdStats) -> f64| stats.iter().map(f).sum::<f64>() / k;
    let mean = HerdStats {
        daemons: loss_us.len(),
        attempts_share: avg(|s| s.attempts_share),
        registrations_share: avg(|s| s.registrations_share),
        capped_share: avg(|s| s.capped_share),
        capped_attempts: (avg(|s| s.capped_attempts as f64)).round() as usize,
        attempts_per_daemon: avg(|s| s.attempts_per_daemon),
        first_capped_round_spread_ms: avg(|s| s.first_capped_round_spread_ms),
        last_capped_round_spread_ms: avg(|s| s.last_capped_round_spread_ms),
        all_registered_after_up_ms: avg(|s| s.all_registered_after_up_ms),
    };
    let shares = stats.iter().map(|s| s.attempts_share);
    Prediction {
        runs: stats.len(),
        attempts_share_min: shares.clone().fold(f64::INFINITY, f64::min),
        attempts_share_max: shares.fold(0.0, f64::max),
        mean,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use volt_daemon_client::Backoff;

    #[test]
    fn the_rule_from_the_contract_matches_the_clients_public_backoff_draw_for_draw() {
        for (rule, seed) in [
            (BackoffRule::DEFAULT, 1u64),
            (
                BackoffRule {
                    base_ms: 50,
                    max_ms: 1_000,
                    factor: 0.5,
                },
                2,
            ),
        ] {
            let mut ours = StdRng::seed_from_u64(seed);
            let mut client = Backoff::new(
                Duration::from_millis(rule.base_ms),
                Duration::from_millis(rule.max_ms),
                rule.factor,
                Some(seed),
            );
            for k in (0..200).chain([1_000, 10_000, u32::MAX]) {
                let theirs = client.delay(k).as_millis() as u64;
                assert_eq!(rule.delay_ms(k, &mut ours), theirs, "attempt {k}");
            }
        }
    }

    #[test]
    fn max_in_window_counts_a_half_open_window() {
        assert_eq!(max_in_window(&[], WINDOW_US), 0);
        assert_eq!(max_in_window(&[0, 99_999, 100_000], WINDOW_US), 2);
        assert_eq!(max_in_window(&[300, 0, 50, 200_000, 250_000], WINDOW_US), 3);
    }

    #[test]
    fn at_the_cap_the_fleet_keeps_spreading_instead_of_collapsing() {
        let rule = BackoffRule {
            base_ms: 100,
            max_ms: 1_000,
            factor: 0.3,
        };
        let p = predict(&rule, &vec![0; 500], 10_000_000, 20, 3);
        assert!(p.mean.capped_attempts > 500 * 5, "{p:?}");
        assert!(
            p.mean.last_capped_round_spread_ms > 1.4 * p.mean.first_capped_round_spread_ms,
            "{p:?}"
        );
        // Everyone's next attempt comes within one capped delay.
        assert!(p.mean.all_registered_after_up_ms <= 1_000.0, "{p:?}");
    }

    #[test]
    fn at_the_cap_half_the_delays_are_exactly_the_cap_and_half_spread_below_it() {
        // socket.io-client's order (jitter, then cap) makes every delay at the
        // cap exactly `max`; with a factor of 0.3 that is half of ours.
        let rule = BackoffRule {
            base_ms: 100,
            max_ms: 1_000,
            factor: 0.3,
        };
        let mut rng = StdRng::seed_from_u64(9);
        let at_cap: Vec<u64> = (0..10_000).map(|_| rule.delay_ms(20, &mut rng)).collect();
        let exactly_max = at_cap.iter().filter(|&&d| d == 1_000).count();
        assert!((4_500..5_500).contains(&exactly_max), "{exactly_max}");
        assert!(at_cap.iter().all(|&d| (700..=1_000).contains(&d)));
    }
}
