//! The heartbeat loop, one `volt-heartbeat` thread per live connection:
//! `runtime.heartbeat` every `interval + j`, not waiting for replies;
//! failures go to `on_error` and the loop goes on.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};

use crate::backoff::seeded_rng;
use crate::error::DaemonClientError;
use crate::events::EventSink;
use crate::options::HeartbeatOptions;
use crate::pending::{timeout_error, Link, Waiter};
use crate::worker::Worker;

/// The command name of heartbeats.
pub const HEARTBEAT_COMMAND: &str = "runtime.heartbeat";

/// A running heartbeat loop; dropping the sender stops it.
pub(crate) struct Heartbeat {
    stop: Sender<()>,
    worker: Worker,
}

impl Heartbeat {
    pub(crate) fn spawn(
        link: Arc<Link>,
        options: HeartbeatOptions,
        command_timeout: Duration,
        events: EventSink,
        seed: Option<u64>,
    ) -> std::io::Result<Self> {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let worker = Worker::spawn("volt-heartbeat", move || {
            Loop {
                link,
                options,
                command_timeout,
                events,
                rng: seeded_rng(seed.map(|s| s.wrapping_add(0x9e37_79b9_7f4a_7c15))),
            }
            .run(&stop_rx)
        })?;
        Ok(Heartbeat {
            stop: stop_tx,
            worker,
        })
    }

    /// Stops the loop and joins its thread.
    pub(crate) fn stop(self) {
        drop(self.stop);
        self.worker.join();
    }
}

struct Loop {
    link: Arc<Link>,
    options: HeartbeatOptions,
    command_timeout: Duration,
    events: EventSink,
    rng: StdRng,
}

impl Loop {
    fn next_delay(&mut self) -> Duration {
        let jitter_ms = u64::try_from(self.options.jitter.as_millis()).unwrap_or(u64::MAX);
        let j = if jitter_ms == 0 {
            0
        } else {
            self.rng.random_range(0..=jitter_ms)
        };
        self.options.interval + Duration::from_millis(j)
    }

    fn payload(&self) -> Value {
        let Some(factory) = &self.options.payload_factory else {
            return json!({});
        };
        match catch_unwind(AssertUnwindSafe(|| factory())) {
            Ok(v) => v,
            Err(_) => {
                log::error!("the heartbeat payload factory panicked; sending {{}}");
                json!({})
            }
        }
    }

    fn run(mut self, stop: &Receiver<()>) {
        let (tx, rx) = crossbeam_channel::bounded::<(u128, Result<(), DaemonClientError>)>(64);
        let mut outstanding: Vec<(u128, Instant)> = Vec::new();
        let mut next = Instant::now() + self.next_delay();
        loop {
            let wake = outstanding.iter().map(|(_, d)| *d).fold(next, Instant::min);
            select! {
                recv(stop) -> _ => return,
                recv(rx) -> msg => if let Ok((id, outcome)) = msg {
                    outstanding.retain(|(i, _)| *i != id);
                    if let Err(e) = outcome {
                        self.events.error(e);
                    }
                },
                default(wake.saturating_duration_since(Instant::now())) => {}
            }
            let now = Instant::now();
            outstanding.retain(|&(id, deadline)| {
                if deadline > now {
                    return true;
                }
                if self.link.expire(id) {
                    self.events
                        .error(timeout_error(HEARTBEAT_COMMAND, self.command_timeout));
                }
                false
            });
            if now >= next {
                let payload = self.payload();
                match self.link.start(
                    HEARTBEAT_COMMAND,
                    Some(payload),
                    self.command_timeout,
                    Waiter::Channel(tx.clone()),
                ) {
                    Ok((id, deadline)) => outstanding.push((id, deadline)),
                    Err(e) => self.events.error(e),
                }
                next = Instant::now() + self.next_delay();
            }
        }
    }
}
