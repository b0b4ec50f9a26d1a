//! Events arriving on a channel, waited on with a cursor.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use parking_lot::Mutex;

/// Events arriving on a channel, kept in order; [`expect`](Self::expect)
/// waits for the first one past the cursor that matches and moves the
/// cursor past it, so successive calls see successive events.
pub struct Events<T> {
    rx: Receiver<T>,
    state: Mutex<(Vec<T>, usize)>,
}

impl<T: Clone + std::fmt::Debug> Events<T> {
    pub(crate) fn new(rx: Receiver<T>) -> Self {
        Events {
            rx,
            state: Mutex::new((Vec::new(), 0)),
        }
    }

    /// Waits up to `timeout` for a matching event; `None` when none came.
    pub fn try_expect(&self, mut matcher: impl FnMut(&T) -> bool, timeout: Duration) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock();
        let mut scan = state.1;
        loop {
            let (seen, cursor) = &mut *state;
            while scan < seen.len() {
                if matcher(&seen[scan]) {
                    *cursor = scan + 1;
                    return Some(seen[scan].clone());
                }
                scan += 1;
            }
            // What is already queued first, then block for the next one.
            if let Ok(e) = self.rx.try_recv() {
                seen.push(e);
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            match self.rx.recv_timeout(deadline - now) {
                Ok(e) => seen.push(e),
                // Timed out, or the source is gone: nothing more will come.
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Every event received so far (the cursor is left alone).
    pub fn all(&self) -> Vec<T> {
        let mut state = self.state.lock();
        while let Ok(e) = self.rx.try_recv() {
            state.0.push(e);
        }
        state.0.clone()
    }
}
