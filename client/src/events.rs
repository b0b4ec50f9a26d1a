//! User callbacks, run on one `volt-events` thread in arrival order, so a
//! slow callback never stalls ping/pong or reading.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::RwLock;

use crate::connection_state::StateChange;
use crate::error::DaemonClientError;
use crate::protocol::message::TeamClusterDaemonMessage;
use crate::stats::Stats;
use crate::worker::Worker;

/// Events waiting for the callback thread. When a callback blocks long
/// enough to fill this, further events are dropped (and logged) rather than
/// stalling the connection.
pub(crate) const EVENT_QUEUE_CAPACITY: usize = 1024;

/// Something that happened, for the callbacks.
pub(crate) enum ClientEvent {
    Connected,
    Disconnected(String),
    Error(DaemonClientError),
    Message(TeamClusterDaemonMessage),
    /// Carries the new password: never logged. The sender, when there is
    /// one, is dropped once the callbacks ran (or the event was dropped):
    /// a registration waits for that before asking a password provider.
    PasswordRotated(String, Option<Sender<()>>),
    StateChanged(StateChange),
}

impl ClientEvent {
    fn kind(&self) -> &'static str {
        match self {
            ClientEvent::Connected => "connected",
            ClientEvent::Disconnected(_) => "disconnected",
            ClientEvent::Error(_) => "error",
            ClientEvent::Message(_) => "message",
            ClientEvent::PasswordRotated(..) => "password-rotated",
            ClientEvent::StateChanged(_) => "state-change",
        }
    }
}

type Cb<T> = RwLock<Vec<Arc<T>>>;

/// The registered callbacks. Each list is copied out before calling, so no
/// lock is held while user code runs (a callback may register another).
#[derive(Default)]
pub(crate) struct Callbacks {
    pub(crate) connected: Cb<dyn Fn() + Send + Sync>,
    pub(crate) disconnected: Cb<dyn Fn(&str) + Send + Sync>,
    pub(crate) error: Cb<dyn Fn(&DaemonClientError) + Send + Sync>,
    pub(crate) message: Cb<dyn Fn(&TeamClusterDaemonMessage) + Send + Sync>,
    pub(crate) password_rotated: Cb<dyn Fn(&str) + Send + Sync>,
    pub(crate) state_change: Cb<dyn Fn(&StateChange) + Send + Sync>,
}

fn snapshot<T: ?Sized>(list: &Cb<T>) -> Vec<Arc<T>> {
    list.read().clone()
}

impl Callbacks {
    pub(crate) fn dispatch(&self, event: &ClientEvent) {
        match event {
            ClientEvent::Connected => snapshot(&self.connected).iter().for_each(|f| guard(|| f())),
            ClientEvent::Disconnected(r) => snapshot(&self.disconnected)
                .iter()
                .for_each(|f| guard(|| f(r))),
            ClientEvent::Error(e) => snapshot(&self.error).iter().for_each(|f| guard(|| f(e))),
            ClientEvent::Message(m) => snapshot(&self.message).iter().for_each(|f| guard(|| f(m))),
            ClientEvent::PasswordRotated(p, _ack) => snapshot(&self.password_rotated)
                .iter()
                .for_each(|f| guard(|| f(p))),
            ClientEvent::StateChanged(c) => snapshot(&self.state_change)
                .iter()
                .for_each(|f| guard(|| f(c))),
        }
    }
}

/// A panicking callback is logged and the thread goes on.
fn guard(f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        log::error!("a client callback panicked; the client keeps serving");
    }
}

/// Where events are posted. Posting never blocks.
#[derive(Clone)]
pub(crate) struct EventSink {
    tx: Sender<ClientEvent>,
    /// Counts the events dropped.
    stats: Arc<Stats>,
}

impl EventSink {
    pub(crate) fn post(&self, event: ClientEvent) {
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(e)) => {
                self.stats.event_dropped();
                log::warn!(
                    "callback queue full ({EVENT_QUEUE_CAPACITY}): dropped a {} event",
                    e.kind()
                )
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    pub(crate) fn error(&self, error: DaemonClientError) {
        log::debug!("error reported to on_error: {error}");
        self.post(ClientEvent::Error(error));
    }
}

/// The running callback thread.
pub(crate) struct EventThread {
    worker: Worker,
    /// Dropped by `disconnect()`: the thread runs what is queued, then ends,
    /// even while some thread (a handler calling `disconnect()`) still holds
    /// a sink.
    stop: Sender<()>,
}

impl EventThread {
    /// Runs what is queued, then ends the thread and joins it (unless
    /// called from a callback).
    pub(crate) fn stop(self) {
        drop(self.stop);
        self.worker.join();
    }
}

pub(crate) fn spawn(
    callbacks: Arc<Callbacks>,
    stats: Arc<Stats>,
) -> std::io::Result<(EventSink, EventThread)> {
    let (tx, rx) = crossbeam_channel::bounded(EVENT_QUEUE_CAPACITY);
    let (stop, stop_rx) = crossbeam_channel::bounded::<()>(0);
    let worker = Worker::spawn("volt-events", move || run(rx, stop_rx, &callbacks))?;
    Ok((EventSink { tx, stats }, EventThread { worker, stop }))
}

fn run(rx: Receiver<ClientEvent>, stop: Receiver<()>, callbacks: &Callbacks) {
    // Ends when every sink is dropped or when stopped, after the queued
    // events ran.
    loop {
        crossbeam_channel::select! {
            recv(rx) -> event => match event {
                Ok(event) => callbacks.dispatch(&event),
                Err(_) => return,
            },
            recv(stop) -> _ => {
                while let Ok(event) = rx.try_recv() {
                    callbacks.dispatch(&event);
                }
                return;
            }
        }
    }
}
