//! A clean exit: `drain(timeout)` refuses new work (commands and emits at
//! once, reverse commands with 503 `DRAINING` from a `volt-drain` thread),
//! lets the work in flight finish until the deadline, then disconnects as
//! `disconnect()` does, and reports what finished and what was cut off.
//!
//! Here is what the drain needs below the handle: the report, the gate the
//! handler pool counts its jobs with, and the `volt-drain` thread. The
//! procedure itself, `ClusterDaemonClient::drain`, is with the handle
//! (client.rs), which this module does not import.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::{Condvar, Mutex};

use crate::error::DaemonClientError;
use crate::job::{error_reply, Job};

/// Reverse commands waiting for their 503 `DRAINING`; beyond it, 503 `BUSY`.
const REFUSAL_QUEUE: usize = 256;

/// What [`ClusterDaemonClient::drain`](crate::ClusterDaemonClient::drain)
/// saw. Counts are of the work in flight when the drain began: finished
/// before the deadline, or cut off (still running at the deadline; a
/// cut-off handler's reply is dropped with the connection).
///
/// ```
/// use volt_daemon_client::DrainReport;
/// let r = DrainReport::default();
/// assert!(r.is_clean());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainReport {
    /// Reverse commands (handlers, streams included) that finished.
    pub handlers_finished: usize,
    /// Reverse commands still running or queued at the deadline.
    pub handlers_cut_off: usize,
    /// Commands to the server answered (or failed) before the deadline.
    pub commands_finished: usize,
    /// Commands to the server still awaiting a reply at the deadline.
    pub commands_cut_off: usize,
    /// Reverse commands answered 503 `DRAINING` meanwhile.
    pub reverse_commands_refused: usize,
    /// How long the drain took, the disconnect included.
    pub elapsed: Duration,
}

impl DrainReport {
    /// Whether nothing was cut off.
    ///
    /// ```
    /// # use volt_daemon_client::DrainReport;
    /// let mut r = DrainReport::default();
    /// r.handlers_cut_off = 1;
    /// assert!(!r.is_clean());
    /// ```
    pub fn is_clean(&self) -> bool {
        self.handlers_cut_off == 0 && self.commands_cut_off == 0
    }
}

/// The handler pool's count of jobs in flight, and where reverse commands
/// go while draining. One per client.
#[derive(Default)]
pub(crate) struct DrainGate {
    draining: AtomicBool,
    refusals: Mutex<Option<Sender<Job>>>,
    refused: AtomicUsize,
    in_flight: Mutex<usize>,
    idle: Condvar,
}

impl DrainGate {
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// While draining, takes `job` for a 503 `DRAINING`; otherwise (or when
    /// the refusals are backed up) hands it back.
    pub(crate) fn refuse(&self, job: Job) -> Result<(), Box<Job>> {
        if !self.is_draining() {
            return Err(Box::new(job));
        }
        let refusals = self.refusals.lock();
        let Some(tx) = refusals.as_ref() else {
            return Err(Box::new(job));
        };
        match tx.try_send(job) {
            Ok(()) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(TrySendError::Full(j) | TrySendError::Disconnected(j)) => Err(Box::new(j)),
        }
    }

    /// A job was queued for the pool.
    pub(crate) fn started(&self) {
        *self.in_flight.lock() += 1;
    }

    /// A job ran (or was skipped).
    pub(crate) fn finished(&self) {
        let mut n = self.in_flight.lock();
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.idle.notify_all();
        }
    }

    /// The jobs in flight.
    pub(crate) fn in_flight(&self) -> usize {
        *self.in_flight.lock()
    }

    /// Waits until no job is in flight or `until`; the jobs left.
    pub(crate) fn wait_idle(&self, until: Instant) -> usize {
        let mut n = self.in_flight.lock();
        while *n > 0 && !self.idle.wait_until(&mut n, until).timed_out() {}
        *n
    }

    /// Starts draining; the receiver gets the reverse commands to refuse.
    pub(crate) fn begin(&self) -> Receiver<Job> {
        let (tx, rx) = crossbeam_channel::bounded(REFUSAL_QUEUE);
        *self.refusals.lock() = Some(tx);
        self.refused.store(0, Ordering::Relaxed);
        self.draining.store(true, Ordering::Release);
        rx
    }

    /// Stops draining (the client may connect again); the refusals made.
    pub(crate) fn end(&self) -> usize {
        self.draining.store(false, Ordering::Release);
        self.refusals.lock().take();
        self.refused.load(Ordering::Relaxed)
    }
}

/// The `volt-drain` thread: answers each refused reverse command.
pub(crate) fn refuse_all(rx: &Receiver<Job>, reply_timeout: Duration) {
    for job in rx {
        let reply = error_reply(
            &job.command,
            503,
            "DRAINING",
            "the daemon is draining: it takes no new commands".into(),
        );
        job.outbox.stats().reverse_replied(503, 1);
        let sent = job.outbox.send(
            &reply.encode(&job.namespace),
            Instant::now() + reply_timeout,
        );
        if let Err(e) = sent {
            job.outbox.stats().reverse_replied(503, -1);
            log::debug!("503 DRAINING for {} not sent: {e:?}", job.command.command);
        }
    }
}

/// The error of a command or emit refused while draining.
pub(crate) fn draining_error() -> DaemonClientError {
    DaemonClientError::not_ready("draining")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_counts_jobs_in_flight_and_wakes_the_waiter_when_idle() {
        let gate = std::sync::Arc::new(DrainGate::default());
        gate.started();
        gate.started();
        assert_eq!(gate.wait_idle(Instant::now()), 2);
        let g = gate.clone();
        let t = std::thread::spawn(move || g.wait_idle(Instant::now() + Duration::from_secs(5)));
        gate.finished();
        gate.finished();
        assert_eq!(t.join().unwrap(), 0);
        gate.finished();
        assert_eq!(gate.in_flight(), 0, "never below zero");
    }

    #[test]
    fn draining_starts_and_ends_with_begin_and_end() {
        let gate = DrainGate::default();
        assert!(!gate.is_draining());
        let rx = gate.begin();
        assert!(gate.is_draining());
        assert_eq!(gate.end(), 0);
        assert!(!gate.is_draining());
        assert!(rx.recv().is_err(), "the refusals are closed");
    }
}
