//! How a [`HerdReport`] prints: a table, or one JSON object.

use serde_json::{json, Value};

use crate::herd::HerdReport;
use crate::herd_model::HerdStats;

/// Each statistic: its label in the table, its key in the JSON, its value.
type Stat = (&'static str, &'static str, fn(&HerdStats) -> f64);

const STATS: [Stat; 8] = [
    ("largest 100 ms share, attempts", "attemptsShare", |s| {
        s.attempts_share
    }),
    (
        "largest 100 ms share, registrations",
        "registrationsShare",
        |s| s.registrations_share,
    ),
    ("largest 100 ms share, failed capped", "cappedShare", |s| {
        s.capped_share
    }),
    ("failed capped attempts", "cappedAttempts", |s| {
        s.capped_attempts as f64
    }),
    ("attempts per daemon", "attemptsPerDaemon", |s| {
        s.attempts_per_daemon
    }),
    (
        "spread at first capped round, ms",
        "firstCappedRoundSpreadMs",
        |s| s.first_capped_round_spread_ms,
    ),
    (
        "spread at last capped round, ms",
        "lastCappedRoundSpreadMs",
        |s| s.last_capped_round_spread_ms,
    ),
    (
        "all registered after server up, ms",
        "allRegisteredAfterUpMs",
        |s| s.all_registered_after_up_ms,
    ),
];

impl HerdReport {
    /// The report as one JSON object.
    pub fn to_json(&self) -> Value {
        let stats = |s: &HerdStats| {
            let fields = STATS
                .iter()
                .map(|(_, key, f)| ((*key).to_owned(), json!(f(s))));
            Value::Object(fields.collect())
        };
        let c = &self.config;
        json!({
            "daemons": c.daemons,
            "processes": c.processes,
            "baseMs": c.rule.base_ms,
            "maxMs": c.rule.max_ms,
            "factor": c.rule.factor,
            "downMs": c.down.as_millis() as u64,
            "seed": c.seed,
            "simulations": self.predicted.runs,
            "outageMs": self.outage_ms,
            "lossSeenWithinMs": self.loss_seen_within_ms,
            "allRegisteredAfterKillMs": self.all_registered_after_kill_ms,
            "setupMs": self.setup_ms,
            "openFilesLimit": self.open_files_limit,
            "listenOverflows": self.listen_overflows,
            "stallMs": self.stall_ms,
            "measured": stats(&self.measured),
            "predicted": stats(&self.predicted.mean),
            "predictedWithStall": stats(&self.predicted_with_stall.mean),
            "predictedAttemptsShareRange": [self.predicted.attempts_share_min, self.predicted.attempts_share_max],
            "violations": self.violations(1.5, 1.5),
        })
    }

    /// The report as a table.
    pub fn table(&self) -> String {
        let (m, p, c) = (&self.measured, &self.predicted.mean, &self.config);
        let mut s = format!(
            "{} daemons in {} processes; backoff base {} ms, max {} ms, factor {}; server down {} ms (measured outage {:.0} ms); loss seen within {:.0} ms; setup {:.1} s\n",
            c.daemons, c.processes, c.rule.base_ms, c.rule.max_ms, c.rule.factor,
            c.down.as_millis(), self.outage_ms, self.loss_seen_within_ms, self.setup_ms / 1_000.0
        );
        let w = &self.predicted_with_stall.mean;
        s += &format!(
            "{:<40} {:>10} {:>10} {:>10}\n",
            "", "measured", "predicted", "w/ stall"
        );
        for (name, _, f) in STATS {
            s += &format!("{name:<40} {:>10.3} {:>10.3} {:>10.3}\n", f(m), f(p), f(w));
        }
        s += &format!(
            "predicted attempts share over {} simulated fleets: {:.3}..{:.3}; all registered {:.0} ms after the kill; listen overflows {:?}; longest stall {:.0} ms\n",
            self.predicted.runs, self.predicted.attempts_share_min, self.predicted.attempts_share_max,
            self.all_registered_after_kill_ms, self.listen_overflows, self.stall_ms
        );
        let v = self.violations(1.5, 1.5);
        s += &if v.is_empty() {
            "claims hold (×1.5)\n".to_owned()
        } else {
            format!("VIOLATIONS: {v:?}\n")
        };
        s
    }
}
