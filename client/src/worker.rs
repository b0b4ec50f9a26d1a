//! `Worker`: one named thread of the client (`volt-conn`, `volt-heartbeat`,
//! `volt-handler-N`, `volt-events`), joined when stopped.

use std::io;
use std::thread::{self, JoinHandle};

/// A named thread. Its owner signals it to end (each in its own way: a
/// flag, a closed channel), then [`join`](Self::join)s it.
pub(crate) struct Worker {
    handle: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts `run` on a thread called `name`.
    pub(crate) fn spawn(
        name: impl Into<String>,
        run: impl FnOnce() + Send + 'static,
    ) -> io::Result<Self> {
        let handle = thread::Builder::new().name(name.into()).spawn(run)?;
        Ok(Worker {
            handle: Some(handle),
        })
    }

    /// Waits for the thread to end, unless this is that thread (user code
    /// on it called `disconnect()`): it then ends by itself once that code
    /// returns, and waiting for it would wait forever.
    pub(crate) fn join(mut self) {
        if let Some(handle) = self.handle.take() {
            if handle.thread().id() != thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_waits_for_the_thread_and_names_it() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let w = Worker::spawn("volt-test", move || {
            let _ = tx.send(thread::current().name().map(str::to_owned));
        })
        .unwrap();
        w.join();
        assert_eq!(rx.try_recv().unwrap().as_deref(), Some("volt-test"));
    }

    #[test]
    fn join_from_its_own_thread_returns() {
        let (tx, rx) = crossbeam_channel::bounded::<Worker>(1);
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let w = Worker::spawn("volt-self", move || {
            if let Ok(me) = rx.recv() {
                me.join();
            }
            let _ = done_tx.send(());
        })
        .unwrap();
        tx.send(w).unwrap();
        done_rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("a worker joining itself returns");
    }
}
