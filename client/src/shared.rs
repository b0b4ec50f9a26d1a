//! `Shared`, the state the handle and the client's threads share, and the
//! threads of one connect() .. disconnect() span: starting and stopping them.
//!
//! Apart from the handle (client.rs), which starts the connection thread,
//! so that the connection can hold `Shared` without importing the handle.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use mio::Waker;
use parking_lot::{Mutex, RwLock};

use crate::connection_state::StateCell;
use crate::drain::DrainGate;
use crate::error::DaemonClientError;
use crate::events::{self, Callbacks, ClientEvent, EventSink, EventThread};
use crate::options::ClusterDaemonClientOptions;
use crate::pending::Link;
use crate::reverse_channel::{HandlerPool, Handlers};
use crate::worker::Worker;

/// State shared by the handle and the client's threads.
pub(crate) struct Shared {
    pub(crate) options: ClusterDaemonClientOptions,
    pub(crate) password: RwLock<String>,
    pub(crate) enrolled: AtomicBool,
    pub(crate) link: Arc<Link>,
    pub(crate) handlers: Arc<Handlers>,
    pub(crate) callbacks: Arc<Callbacks>,
    pub(crate) runtime: Mutex<Option<Runtime>>,
    pub(crate) connecting: Mutex<()>,
    pub(crate) generation: AtomicU64,
    /// Where the connection is, and who waits for it (`wait_ready`).
    pub(crate) state: StateCell,
    /// Dropped once `on_password_rotated` ran for the last rotation: the
    /// next registration waits for it before asking a password provider.
    pub(crate) rotation_ack: Mutex<Option<crossbeam_channel::Receiver<()>>>,
    /// Handler jobs in flight, and the refusals of a drain.
    pub(crate) drain: Arc<DrainGate>,
}

/// The threads of one connect() .. disconnect() span.
pub(crate) struct Runtime {
    pub(crate) sink: EventSink,
    events: EventThread,
    /// `spawn_conn` (client.rs) gives `volt-conn` its sender.
    pub(crate) pool: HandlerPool,
    pub(crate) conn: Option<ConnThread>,
}

pub(crate) struct ConnThread {
    worker: Worker,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl ConnThread {
    /// `volt-conn`, as `spawn_conn` (client.rs) started it.
    pub(crate) fn new(worker: Worker, stop: Arc<AtomicBool>, waker: Arc<Waker>) -> Self {
        ConnThread {
            worker,
            stop,
            waker,
        }
    }

    fn stop_and_join(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        self.worker.join();
    }
}

impl Shared {
    fn start_runtime(&self) -> Result<Runtime, DaemonClientError> {
        let spawn_failed = |e: std::io::Error| {
            DaemonClientError::connection(format!("spawning a thread failed: {e}"))
        };
        let (sink, events) =
            events::spawn(self.callbacks.clone(), self.link.stats.clone()).map_err(spawn_failed)?;
        let pool = HandlerPool::spawn(
            self.options.handlers.threads,
            self.options.handlers.queue_capacity,
            self.handlers.clone(),
            sink.clone(),
            self.options.command_timeout,
            self.drain.clone(),
        )
        .map_err(spawn_failed)?;
        Ok(Runtime {
            sink,
            events,
            pool,
            conn: None,
        })
    }

    /// Starts the event thread and the handler pool if needed, and stops a
    /// connection thread still backing off: this attempt replaces it.
    pub(crate) fn ensure_runtime(&self) -> Result<(), DaemonClientError> {
        let old = {
            let mut rt = self.runtime.lock();
            if rt.is_none() {
                *rt = Some(self.start_runtime()?);
            }
            rt.as_mut().and_then(|r| r.conn.take())
        };
        if let Some(old) = old {
            old.stop_and_join();
        }
        Ok(())
    }

    pub(crate) fn disconnect(&self) {
        if let Some(runtime) = self.take_runtime() {
            self.stop_runtime(runtime);
        }
    }

    /// Ends the current span: a connect() in progress fails, and the
    /// threads are the caller's to stop.
    pub(crate) fn take_runtime(&self) -> Option<Runtime> {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.runtime.lock().take()
    }

    pub(crate) fn stop_runtime(&self, runtime: Runtime) {
        let Runtime {
            sink,
            events,
            pool,
            conn,
        } = runtime;
        if let Some(c) = conn {
            c.stop_and_join();
        }
        self.link.detach("the client disconnected");
        self.state.end("io client disconnect", |c| {
            sink.post(ClientEvent::StateChanged(c))
        });
        pool.stop();
        drop(sink);
        // Other threads may still hold a sink (a handler calling disconnect()
        // holds its worker's): stop the event thread explicitly.
        events.stop();
        log::info!("client stopped");
    }
}
