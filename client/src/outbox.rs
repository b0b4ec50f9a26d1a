//! The way into the connection thread: a bounded queue of outgoing events
//! and a wake-up that is only paid for when the I/O thread may be asleep.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, SendTimeoutError, Sender};
use mio::Waker;

use crate::protocol::envelope::Outgoing;

/// How many events may wait for the I/O thread. A full queue blocks the
/// sender until its deadline: memory stays bounded when the server stops reading.
pub(crate) const OUTBOX_CAPACITY: usize = 4096;

/// Why an event was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OutboxError {
    /// A frame is larger than the server's `maxPayload`.
    TooLarge { size: usize, max: usize },
    /// The queue stayed full until the deadline.
    Timeout,
    /// The connection is gone.
    Closed,
}

/// The sending side, one per connection; cheap to clone.
#[derive(Clone)]
pub(crate) struct Outbox {
    tx: Sender<Outgoing>,
    waker: Arc<Waker>,
    armed: Arc<AtomicBool>,
    max_payload: usize,
}

/// The I/O thread's side.
pub(crate) struct OutboxReceiver {
    rx: Receiver<Outgoing>,
    armed: Arc<AtomicBool>,
}

pub(crate) fn outbox(waker: Arc<Waker>, max_payload: usize) -> (Outbox, OutboxReceiver) {
    let (tx, rx) = crossbeam_channel::bounded(OUTBOX_CAPACITY);
    let armed = Arc::new(AtomicBool::new(false));
    (
        Outbox {
            tx,
            waker,
            armed: armed.clone(),
            max_payload,
        },
        OutboxReceiver { rx, armed },
    )
}

impl Outbox {
    /// The server's `maxPayload`.
    pub(crate) fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Checks that every frame of `out` fits the server's `maxPayload`.
    pub(crate) fn check_size(&self, out: &Outgoing) -> Result<(), OutboxError> {
        let size = out.largest_frame();
        if size > self.max_payload {
            return Err(OutboxError::TooLarge {
                size,
                max: self.max_payload,
            });
        }
        Ok(())
    }

    /// Queues `out`, waiting for room until `deadline`.
    pub(crate) fn send(&self, out: Outgoing, deadline: Instant) -> Result<(), OutboxError> {
        self.check_size(&out)?;
        match self.tx.try_send(out) {
            Ok(()) => {}
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => {
                return Err(OutboxError::Closed)
            }
            Err(crossbeam_channel::TrySendError::Full(out)) => {
                // Make sure the I/O thread is draining before we wait on it.
                self.wake();
                match self.tx.send_deadline(out, deadline) {
                    Ok(()) => {}
                    Err(SendTimeoutError::Timeout(_)) => return Err(OutboxError::Timeout),
                    Err(SendTimeoutError::Disconnected(_)) => return Err(OutboxError::Closed),
                }
            }
        }
        self.wake();
        Ok(())
    }

    /// Wakes the I/O thread unless a wake-up is already on its way.
    fn wake(&self) {
        if !self.armed.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
    }
}

impl OutboxReceiver {
    /// Call before draining: later sends will wake the thread again.
    pub(crate) fn disarm(&self) {
        self.armed.store(false, Ordering::SeqCst);
    }

    /// The next queued event, if any.
    pub(crate) fn try_recv(&self) -> Option<Outgoing> {
        self.rx.try_recv().ok()
    }
}
