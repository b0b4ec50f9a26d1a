//! The cell one command's outcome is delivered to, reused from a small
//! per-thread pool. A fresh cell per command would cost an allocation, and
//! the reply's bytes would be allocated by the I/O thread and freed by the
//! caller: under load that contends glibc's malloc arena lock. A pooled
//! cell keeps the buffer the I/O thread copies the raw reply into, so after
//! warm-up a command allocates nothing here; the caller parses the reply
//! on its own thread.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use serde_json::Value;

use crate::error::DaemonClientError;

/// A successful reply's `data` as the I/O thread has it.
pub(crate) enum Reply<'a> {
    /// Raw JSON borrowed from the frame (the hot path); `None` when absent.
    Raw(Option<&'a str>),
    /// A value the general decoder built.
    Value(Option<Value>),
}

/// What is delivered to a waiter.
pub(crate) type Delivery<'a> = Result<Reply<'a>, DaemonClientError>;

/// What the cell holds once delivered.
enum Held {
    /// The data is in `State::raw`.
    Raw,
    Value(Option<Value>),
}

#[derive(Default)]
struct State {
    outcome: Option<Result<Held, DaemonClientError>>,
    /// The reply's raw JSON; its capacity serves the next command.
    raw: String,
    /// The command's name, for its timeout error.
    command: String,
}

/// One command's outcome cell.
#[derive(Default)]
pub(crate) struct Slot {
    state: Mutex<State>,
    ready: Condvar,
}

/// Cells kept per thread (as many as commands a thread usually has
/// completing back to back; more are simply freed).
const POOL_SIZE: usize = 64;
/// A raw buffer that grew past this is freed rather than kept.
const KEEP_RAW: usize = 16 * 1024;

thread_local! {
    static POOL: RefCell<Vec<Arc<Slot>>> = const { RefCell::new(Vec::new()) };
}

impl Slot {
    /// A cell for `command`, from this thread's pool when it has one.
    pub(crate) fn acquire(command: &str) -> Arc<Slot> {
        let mut slot = POOL
            .try_with(|pool| pool.borrow_mut().pop())
            .ok()
            .flatten()
            .unwrap_or_default();
        if let Some(cell) = Arc::get_mut(&mut slot) {
            cell.state.get_mut().command.push_str(command);
        }
        slot
    }

    /// Gives a cell back to this thread's pool, if no one else holds it.
    pub(crate) fn release(mut slot: Arc<Slot>) {
        let Some(cell) = Arc::get_mut(&mut slot) else {
            return; // the I/O thread still holds it; it frees it
        };
        let state = cell.state.get_mut();
        state.outcome = None;
        state.command.clear();
        state.raw.clear();
        if state.raw.capacity() > KEEP_RAW {
            state.raw = String::new();
        }
        let _ = POOL.try_with(move |pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < POOL_SIZE {
                pool.push(slot);
            }
        });
    }

    /// The command's name.
    pub(crate) fn command(&self) -> String {
        self.state.lock().command.clone()
    }

    /// Stores the outcome (copying raw data into the cell's buffer) without
    /// waking the waiter: the I/O thread wakes it once it has let go of the
    /// socket, so the woken caller finds the socket free for its next write.
    pub(crate) fn fill(&self, delivery: Delivery<'_>) {
        {
            let mut guard = self.state.lock();
            let state = &mut *guard;
            let raw = &mut state.raw;
            state.outcome = Some(delivery.map(|reply| match reply {
                Reply::Raw(Some(data)) => {
                    raw.clear();
                    raw.push_str(data);
                    Held::Raw
                }
                Reply::Raw(None) => Held::Value(None),
                Reply::Value(v) => Held::Value(v),
            }));
        }
    }

    /// Wakes the waiter, if it sleeps.
    pub(crate) fn wake(&self) {
        self.ready.notify_one();
    }

    /// The outcome, waiting until `deadline` (forever with `None`); `None`
    /// when the deadline passed first. `data` is parsed here, on the
    /// waiter's thread; JSON `null` is `None`.
    pub(crate) fn take(
        &self,
        deadline: Option<Instant>,
    ) -> Option<Result<Option<Value>, DaemonClientError>> {
        let mut state = self.state.lock();
        let outcome = loop {
            if let Some(outcome) = state.outcome.take() {
                break outcome;
            }
            match deadline {
                Some(d) => {
                    if self.ready.wait_until(&mut state, d).timed_out() {
                        break state.outcome.take()?;
                    }
                }
                None => self.ready.wait(&mut state),
            }
        };
        Some(outcome.and_then(|held| {
            let value = match held {
                Held::Value(v) => v,
                Held::Raw => Some(serde_json::from_str(&state.raw).map_err(|e| {
                    DaemonClientError::protocol(format!("command-response data: {e}"))
                })?),
            };
            Ok(value.filter(|v| !v.is_null()))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_cell_is_reused_empty_with_its_buffer() {
        let slot = Slot::acquire("first");
        slot.fill(Ok(Reply::Raw(Some("{\"a\":[1,2,3]}"))));
        let value = slot.take(None).unwrap().unwrap();
        assert_eq!(value, Some(serde_json::json!({"a": [1, 2, 3]})));
        let addr = Arc::as_ptr(&slot);
        Slot::release(slot);
        let again = Slot::acquire("second");
        assert_eq!(Arc::as_ptr(&again), addr);
        assert_eq!(again.command(), "second");
        assert!(
            again.take(Some(Instant::now())).is_none(),
            "no stale outcome"
        );
        assert!(again.state.lock().raw.capacity() >= 13);
    }

    #[test]
    fn a_cell_still_held_elsewhere_is_not_pooled() {
        let slot = Slot::acquire("x");
        let other = slot.clone();
        let addr = Arc::as_ptr(&slot);
        Slot::release(slot);
        assert_ne!(Arc::as_ptr(&Slot::acquire("y")), addr);
        drop(other);
    }

    #[test]
    fn raw_data_that_is_not_json_is_a_protocol_error_for_that_command() {
        let slot = Slot::acquire("x");
        slot.fill(Ok(Reply::Raw(Some("{\"a\":tru}"))));
        let err = slot.take(None).unwrap().unwrap_err();
        assert_eq!(err.code(), crate::DaemonClientErrorCode::ProtocolError);
    }

    #[test]
    fn null_data_is_none_and_errors_pass_through() {
        let slot = Slot::acquire("x");
        slot.fill(Ok(Reply::Raw(Some("null"))));
        assert_eq!(slot.take(None).unwrap().unwrap(), None);
        slot.fill(Err(DaemonClientError::not_ready("gone")));
        assert!(slot.take(None).unwrap().is_err());
    }
}
