//! The thundering herd (issue 16, item 4), CI-sized: 300 daemons using
//! our client, in 5 `volt-herd daemons` child processes, connected to the real
//! `volt-mock-server` binary (a child process), which is SIGKILLed and
//! restarted on the same port. The full 1,000-daemon runs with the default
//! backoff are `volt-herd run` (figures in docs/RELIABILITY.md).
//!
//! Each test compares the measured spread with the contract's rule
//! simulated for the same settings, the same loss times and the same outage
//! (200 seeded fleets): the largest 100 ms share of attempts at most ×1.5
//! the prediction (registrations within ×3, see
//! [`REGISTRATIONS_TOLERANCE`]), the failed capped attempts no denser than
//! ×1.5 of it and spreading further round after round (no
//! lockstep), and every daemon registered within 2 × reconnectMaxDelayMs of
//! the server being back. The claim holds on a loaded machine because it
//! counts per window against a prediction for the same loss times and
//! outage, and the densest windows are refusals, stamped by each daemon
//! itself; registrations pass through the server's one core thread, whose
//! stalls bunch them (hence [`REGISTRATIONS_TOLERANCE`]).
//! The two tests run one at a time (a lock), so neither measures the other's load.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use volt_benches::herd::{run_herd, HerdConfig, HerdReport};
use volt_benches::herd_model::BackoffRule;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The `volt-mock-server` binary: `VOLT_MOCK_SERVER_BIN` when set (as
/// `scripts/test` does), else this build's, built if needed (a no-op when
/// `cargo test --workspace` has built it already).
fn mock_server_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("VOLT_MOCK_SERVER_BIN").filter(|b| !b.is_empty()) {
        return PathBuf::from(bin);
    }
    let dir = Path::new(env!("CARGO_BIN_EXE_volt-herd"))
        .parent()
        .expect("bin dir");
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args([
        "build",
        "-q",
        "-p",
        "volt-mock-server",
        "--bin",
        "volt-mock-server",
    ]);
    if dir.ends_with("release") {
        cargo.arg("--release");
    }
    let status = cargo.status().expect("cargo runs");
    assert!(status.success(), "building volt-mock-server: {status}");
    let bin = dir.join("volt-mock-server");
    assert!(bin.exists(), "{} missing", bin.display());
    bin
}

/// A run during which the machine kept a probe thread from running for
/// longer than the 100 ms window measured nothing about the client: every
/// stamp taken in the stall lands at its end. Such a run is repeated (at
/// most twice more); a violation in a run without one fails the test.
const STALL_VOIDS_RUN: Duration = Duration::from_millis(100);

/// Runs the herd, again when a run was void (see [`STALL_VOIDS_RUN`]).
fn herd(daemons: usize, rule: BackoffRule, down: Duration) -> HerdReport {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = HerdConfig {
        daemons,
        processes: 5,
        rule,
        down,
        seed: 16,
        simulations: 200,
        server_bin: mock_server_bin(),
        herd_bin: PathBuf::from(env!("CARGO_BIN_EXE_volt-herd")),
        setup_timeout: Duration::from_secs(90),
        dump: None,
    };
    let mut run = 1;
    loop {
        let started = Instant::now();
        let report = run_herd(&cfg).expect("the herd runs");
        let took = started.elapsed().as_secs_f64();
        eprintln!("{}(run {run} took {took:.1} s)", report.table());
        let void = report.stall_ms > STALL_VOIDS_RUN.as_secs_f64() * 1_000.0;
        let failed = !report.violations(1.5, REGISTRATIONS_TOLERANCE).is_empty();
        if !(void && failed) || run == 3 {
            return report;
        }
        eprintln!("run {run} void: a {:.0} ms stall; again", report.stall_ms);
        run += 1;
    }
}

/// How far the registrations share may exceed the prediction in these
/// debug-build runs. A registration takes three round trips through the
/// server's single core thread; on a loaded 2-core machine that thread
/// falls behind a burst and completes the backlog together (measured with
/// 500 daemons at a load average of 9: up to ×2.5 of the prediction, ×1.2
/// on a quieter machine; 300 daemons halve the burst). ×3 still fails any
/// lockstep: a fleet registering in step would put most of it in one
/// window, ×5 and more of the prediction. Release runs of `volt-herd` with
/// 1,000 daemons measured ×1.0 to ×1.5 (docs/RELIABILITY.md).
const REGISTRATIONS_TOLERANCE: f64 = 3.0;

#[test]
fn default_backoff_through_a_restart_spreads_attempts_as_the_rule_predicts_and_all_register_within_two_caps(
) {
    // Down 1 s: every first attempt (350..650 ms after the loss) is refused
    // and stamped by the daemon itself, so the densest round is measured
    // without the server's pacing; the second attempts (1.05..1.95 s)
    // register. The immediate restart (down 0), where every attempt is a
    // registration, is the release run of `volt-herd`.
    let report = herd(300, BackoffRule::DEFAULT, Duration::from_secs(1));
    let (m, p) = (&report.measured, &report.predicted.mean);
    let violations = report.violations(1.5, REGISTRATIONS_TOLERANCE);
    assert!(violations.is_empty(), "{}", report.table());
    // One refused attempt each, spread over 300 ms: about a third of the
    // fleet per 100 ms at the densest; then one that registers.
    assert!(p.attempts_share < 0.5, "{}", report.table());
    assert!(
        (m.attempts_per_daemon - 2.0).abs() < 0.05,
        "{}",
        report.table()
    );
}

#[test]
fn a_server_down_10s_brings_attempts_to_the_cap_without_lockstep_and_all_register_within_two_caps()
{
    // The default rule scaled down (base 100 ms, cap 1 s, factor 0.3) so
    // that 10 s down means about nine failed attempts at the cap.
    let rule = BackoffRule {
        base_ms: 100,
        max_ms: 1_000,
        factor: 0.3,
    };
    let report = herd(300, rule, Duration::from_secs(10));
    let m = &report.measured;
    let violations = report.violations(1.5, REGISTRATIONS_TOLERANCE);
    assert!(violations.is_empty(), "{}", report.table());
    assert!(m.attempts_per_daemon > 10.0, "{}", report.table());
    assert!(m.capped_attempts > 300 * 7, "{}", report.table());
    // No lockstep: the failed capped attempts are no denser than the rule
    // predicts (in `violations`), and the spread grows from the first
    // capped round to the last.
    assert!(
        m.last_capped_round_spread_ms > m.first_capped_round_spread_ms,
        "{}",
        report.table()
    );
}
