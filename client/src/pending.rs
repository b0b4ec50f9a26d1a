//! The link to the current connection and the table of commands awaiting a
//! `command-response`. One lock guards both, so a command is either sent on
//! a ready connection and registered, or refused at once: none can slip in
//! while a lost connection fails its pending commands.

use crate::protocol::id_hash::IdMap;
use std::cell::Cell;
use std::time::{Duration, Instant};

use std::sync::Arc;

use crossbeam_channel::Sender;
use parking_lot::Mutex;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::{DaemonClientError, DaemonClientErrorCode};
use crate::protocol::envelope::{
    encode_command_into, scan_command_response, CommandResponse, CommandResponseRef, ErrorBody,
    ScannedResponse,
};
use crate::slot::{Delivery, Reply, Slot};
use crate::stats::{Arrival, ClientStats, CommandTally, Stats};
use crate::wire::{Flush, Frames, Outbox, OutboxError};
use crate::write_policy::{self, Writer};

/// A command's text is encoded into this thread's buffer, then copied
/// (framed) into the outbox: no allocation per command once grown.
fn with_encode_buffer<R>(f: impl FnOnce(&mut String) -> R) -> R {
    /// A buffer that grew past this is freed rather than kept.
    const KEEP: usize = 64 * 1024;
    thread_local! {
        static BUFFER: Cell<String> = const { Cell::new(String::new()) };
    }
    // Taken out while in use: a nested call or thread teardown simply
    // finds it empty and starts a new one.
    let mut buf = BUFFER.try_with(Cell::take).unwrap_or_default();
    buf.clear();
    let result = f(&mut buf);
    if buf.capacity() <= KEEP {
        let _ = BUFFER.try_with(|cell| cell.set(buf));
    }
    result
}

/// Where a command's outcome goes: its caller's own slot, or a shared
/// channel (the heartbeat loop) that only needs to know which request
/// failed.
pub(crate) enum Waiter {
    Slot(Arc<Slot>),
    Channel(Sender<(u128, Result<(), DaemonClientError>)>),
}

impl Waiter {
    /// Delivers; a slot is returned for the caller to [`Slot::wake`].
    #[must_use = "a filled slot's waiter sleeps until woken"]
    fn deliver(self, id: u128, delivery: Delivery<'_>) -> Option<Arc<Slot>> {
        match self {
            Waiter::Slot(slot) => {
                slot.fill(delivery);
                Some(slot)
            }
            Waiter::Channel(tx) => {
                let _ = tx.try_send((id, delivery.map(drop)));
                None
            }
        }
    }
}

/// A command in the table: where its outcome goes, and when it was sent
/// (the start of its round trip).
struct Entry {
    waiter: Waiter,
    sent: Instant,
}

/// What a command needs of the live connection.
struct LiveConn {
    outbox: Outbox,
    namespace: Arc<str>,
}

#[derive(Default)]
struct LinkState {
    /// The live connection's way out; one `Arc` so that a command clones
    /// one reference count, not four.
    conn: Option<Arc<LiveConn>>,
    pending: IdMap<u128, Entry>,
    /// The command figures, counted under this lock (stats/tally.rs).
    tally: CommandTally,
}

/// The shared link. Cheap operations only under its lock.
#[derive(Default)]
pub(crate) struct Link {
    state: Mutex<LinkState>,
    /// The client's other counters (stats.rs), on lines of their own.
    pub(crate) stats: Arc<Stats>,
    /// How the I/O thread last went to sleep: the commands in flight it
    /// saw and whether its sleep was capped (tests wait on it).
    #[cfg(test)]
    pub(crate) last_sleep: Mutex<Option<(usize, bool)>>,
}

#[cfg(test)]
thread_local! {
    /// Run on the sending thread between its in-flight count and its append.
    pub(crate) static BEFORE_APPEND: Cell<Option<Box<dyn FnOnce()>>> = const { Cell::new(None) };
}

/// A command in flight; [`PendingCommand::wait`] gives its one outcome.
///
/// Obtained from [`ClusterDaemonClient::start_command`](crate::ClusterDaemonClient::start_command).
/// Dropping it without waiting forgets the command (a late reply is dropped).
///
/// ```no_run
/// # use volt_daemon_client::*;
/// # fn demo(client: &ClusterDaemonClient) -> Result<(), DaemonClientError> {
/// let pending: Vec<PendingCommand> = (0..64)
///     .map(|i| client.start_command("echo", Some(serde_json::json!({ "i": i }))))
///     .collect::<Result<_, _>>()?;
/// for p in pending {
///     p.wait()?;
/// }
/// # Ok(()) }
/// ```
pub struct PendingCommand {
    id: u128,
    deadline: Instant,
    timeout: Duration,
    /// Until dropped, when it goes back to the pool.
    slot: Option<Arc<Slot>>,
    link: Arc<Link>,
    /// Set once the outcome is known: its entry is already gone.
    settled: bool,
}

impl std::fmt::Debug for PendingCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingCommand")
            .field("command", &self.slot().command())
            .field("request_id", &uuid::Uuid::from_u128(self.id))
            .finish()
    }
}

impl PendingCommand {
    /// Waits for the reply: the data (or `None`), `COMMAND_REJECTED`,
    /// `COMMAND_TIMEOUT`, or `SOCKET_NOT_READY` if the connection is lost.
    pub fn wait(mut self) -> Result<Option<Value>, DaemonClientError> {
        self.settled = true;
        let slot = self.slot();
        if let Some(outcome) = slot.take(Some(self.deadline)) {
            return outcome;
        }
        // Whoever removes the entry decides the outcome, so there is exactly
        // one: the caller (timeout), or the I/O thread, which delivers at once.
        if self.link.expire(self.id) {
            Err(timeout_error(&slot.command(), self.timeout))
        } else {
            slot.take(None)
                .unwrap_or_else(|| Err(DaemonClientError::not_ready("connection lost")))
        }
    }

    /// The request id sent with the command.
    pub fn request_id(&self) -> String {
        uuid::Uuid::from_u128(self.id).to_string()
    }

    /// The command's name, as given to `start_command` (as
    /// [`CommandContext::command`](crate::CommandContext::command) is for a
    /// reverse command).
    ///
    /// ```no_run
    /// # use volt_daemon_client::*;
    /// # fn demo(client: &ClusterDaemonClient) -> Result<(), DaemonClientError> {
    /// let pending = client.start_command("get-container-stats", None)?;
    /// assert_eq!(pending.command(), "get-container-stats");
    /// # Ok(()) }
    /// ```
    pub fn command(&self) -> String {
        self.slot().command()
    }

    /// How long it may wait for its reply, from when it was sent.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use volt_daemon_client::*;
    /// # fn demo(client: &ClusterDaemonClient) -> Result<(), DaemonClientError> {
    /// let pending = client.start_command_with_timeout("ping", None, Duration::from_secs(2))?;
    /// assert_eq!(pending.timeout(), Duration::from_secs(2));
    /// # Ok(()) }
    /// ```
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn slot(&self) -> &Slot {
        self.slot.as_deref().expect("the slot lives until drop")
    }
}

impl Drop for PendingCommand {
    fn drop(&mut self) {
        if !self.settled {
            self.link.remove(self.id);
        }
        if let Some(slot) = self.slot.take() {
            Slot::release(slot);
        }
    }
}

pub(crate) fn timeout_error(command: &str, timeout: Duration) -> DaemonClientError {
    DaemonClientError::new(
        DaemonClientErrorCode::CommandTimeout,
        format!("command {command:?} got no response within {timeout:?}"),
    )
}

impl Link {
    /// Makes the link ready with a new connection's outbox.
    pub(crate) fn attach(&self, outbox: Outbox, namespace: &str) {
        self.stats.set_connected(true);
        self.state.lock().conn = Some(Arc::new(LiveConn {
            outbox,
            namespace: Arc::from(namespace),
        }));
    }

    /// Makes the link not ready and fails every pending command at once.
    pub(crate) fn detach(&self, why: &str) {
        let pending = {
            let mut s = self.state.lock();
            s.conn = None;
            let pending = std::mem::take(&mut s.pending);
            s.tally.not_ready(pending.len());
            pending
        };
        self.stats.set_connected(false);
        for (id, entry) in pending {
            let failed = Err(DaemonClientError::not_ready(why));
            if let Some(slot) = entry.waiter.deliver(id, failed) {
                slot.wake();
            }
        }
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.state.lock().conn.is_some()
    }

    /// The current outbox, when ready.
    pub(crate) fn outbox(&self) -> Option<(Outbox, Arc<str>)> {
        let s = self.state.lock();
        s.conn
            .as_ref()
            .map(|c| (c.outbox.clone(), c.namespace.clone()))
    }

    /// Sends a command and registers `waiter` for its reply.
    pub(crate) fn start(
        &self,
        command: &str,
        payload: Option<Value>,
        timeout: Duration,
        waiter: Waiter,
    ) -> Result<(u128, Instant), DaemonClientError> {
        let sent_at = Instant::now();
        let deadline = sent_at + timeout;
        let id = uuid::Uuid::new_v4();
        let key = id.as_u128();
        let (conn, in_flight) = {
            let mut s = self.state.lock();
            let Some(conn) = s.conn.clone() else {
                s.tally.not_ready(1);
                return Err(DaemonClientError::not_ready(
                    "the client is not connected and registered",
                ));
            };
            // Counted before it can be answered (a reply read inline).
            s.tally.sent();
            s.pending.insert(
                key,
                Entry {
                    waiter,
                    sent: sent_at,
                },
            );
            (conn, s.pending.len())
        };
        // A reply that is there as soon as the command is written (a server
        // on the same core) is taken on this thread (wire/socket.rs).
        let mut arrival = Arrival::default();
        let mut take_reply = |json: &str| {
            let Some(response) = scan_command_response(json) else {
                return false;
            };
            if let Some(slot) = self.complete_scanned(response, &mut arrival) {
                slot.wake();
            }
            true
        };
        let flush = match write_policy::writer(in_flight) {
            Writer::Inline => Flush::Inline(&mut take_reply),
            Writer::Direct => Flush::Direct,
            Writer::Wake => Flush::Wake,
            Writer::Lazy => Flush::Lazy,
        };
        #[cfg(test)]
        if let Some(hook) = BEFORE_APPEND.with(Cell::take) {
            hook();
        }
        let mut id_text = uuid::Uuid::encode_buffer();
        let id_text = id.hyphenated().encode_lower(&mut id_text);
        let sent = with_encode_buffer(|text| {
            encode_command_into(text, &conn.namespace, id_text, command, payload.as_ref());
            let frames = Frames {
                text,
                attachments: &[],
            };
            conn.outbox.send_with(frames, deadline, flush)
        });
        match sent {
            Ok(()) => Ok((key, deadline)),
            Err(e) => {
                self.unsend(key, &e);
                Err(match e {
                    OutboxError::TooLarge { size, max } => DaemonClientError::new(
                        DaemonClientErrorCode::PayloadTooLarge,
                        format!("command {command:?} is {size} bytes; the server accepts {max}"),
                    ),
                    OutboxError::Timeout => timeout_error(command, timeout),
                    OutboxError::Closed => DaemonClientError::not_ready("connection lost"),
                })
            }
        }
    }

    /// Starts a command whose outcome goes to a slot of its own.
    pub(crate) fn start_pending(
        self: &Arc<Self>,
        command: &str,
        payload: Option<Value>,
        timeout: Duration,
    ) -> Result<PendingCommand, DaemonClientError> {
        let slot = Slot::acquire(command);
        let (id, deadline) = self.start(command, payload, timeout, Waiter::Slot(slot.clone()))?;
        Ok(PendingCommand {
            id,
            deadline,
            timeout,
            slot: Some(slot),
            link: self.clone(),
            settled: false,
        })
    }

    /// Forgets a command; true when it was still pending.
    pub(crate) fn remove(&self, id: u128) -> bool {
        self.state.lock().pending.remove(&id).is_some()
    }

    /// Forgets a command whose deadline passed; true when it was still
    /// pending, and then it counts as timed out.
    pub(crate) fn expire(&self, id: u128) -> bool {
        let mut s = self.state.lock();
        let expired = s.pending.remove(&id).is_some();
        if expired {
            s.tally.timed_out();
        }
        expired
    }

    /// Forgets a command that could not be queued after all: not sent.
    fn unsend(&self, id: u128, e: &OutboxError) {
        let mut s = self.state.lock();
        if s.pending.remove(&id).is_none() {
            return; // failed with the lost connection meanwhile: counted there
        }
        s.tally.unsent();
        match e {
            OutboxError::Timeout => s.tally.timed_out(),
            OutboxError::Closed => s.tally.not_ready(1),
            OutboxError::TooLarge { .. } => {}
        }
    }

    /// The client's figures: the command tally and the commands in flight
    /// read together under the lock, the rest from `stats`.
    pub(crate) fn snapshot(&self, handler_queue_depth: usize) -> ClientStats {
        let (tally, in_flight) = {
            let s = self.state.lock();
            (s.tally.clone(), s.pending.len())
        };
        self.stats.snapshot(&tally, in_flight, handler_queue_depth)
    }

    /// Routes a `command-response` to its waiter; a slot returned is to be
    /// woken ([`Slot::wake`]) once the socket is let go. Unknown ids (late
    /// or never sent) are dropped quietly.
    #[must_use = "a filled slot's waiter sleeps until woken"]
    pub(crate) fn complete(
        &self,
        response: CommandResponse,
        arrival: &mut Arrival,
    ) -> Option<Arc<Slot>> {
        let data = Reply::Value(response.data);
        let (ok, error) = (response.ok, response.error);
        self.settle(&response.request_id, ok, data, error, arrival)
    }

    /// Like [`complete`](Self::complete), for the hot path's borrowed reply.
    #[must_use = "a filled slot's waiter sleeps until woken"]
    pub(crate) fn complete_raw(
        &self,
        response: CommandResponseRef<'_>,
        arrival: &mut Arrival,
    ) -> Option<Arc<Slot>> {
        let data = Reply::Raw(response.data.map(RawValue::get));
        let (ok, error) = (response.ok, response.error);
        self.settle(&response.request_id, ok, data, error, arrival)
    }

    /// Like [`complete`](Self::complete), for the scanned common shape.
    #[must_use = "a filled slot's waiter sleeps until woken"]
    pub(crate) fn complete_scanned(
        &self,
        response: ScannedResponse<'_>,
        arrival: &mut Arrival,
    ) -> Option<Arc<Slot>> {
        let data = Reply::Raw(response.data);
        self.settle(response.request_id, true, data, None, arrival)
    }

    fn settle(
        &self,
        request_id: &str,
        ok: bool,
        data: Reply<'_>,
        error: Option<ErrorBody>,
        arrival: &mut Arrival,
    ) -> Option<Arc<Slot>> {
        let Ok(id) = uuid::Uuid::parse_str(request_id) else {
            log::debug!("command-response for a request id that is not a UUID: dropped");
            return None;
        };
        let key = id.as_u128();
        let at = arrival.at();
        let (waiter, still_pending) = {
            let mut s = self.state.lock();
            let Some(entry) = s.pending.remove(&key) else {
                log::debug!("command-response for unknown request {id}: dropped");
                return None;
            };
            s.tally.answered(ok, entry.sent, at);
            (entry.waiter, s.pending.len())
        };
        let outcome = if ok {
            Ok(data)
        } else {
            let (code, message) = error
                .map(|e| (Some(e.code), Some(e.message)))
                .unwrap_or((None, None));
            Err(DaemonClientError::new(
                DaemonClientErrorCode::CommandRejected,
                "the server rejected the command",
            )
            .with_server(code, message))
        };
        let slot = waiter.deliver(key, outcome)?;
        // Waking after the socket is let go only helps a caller whose next
        // command will be written directly; under load, wake at once.
        if write_policy::wake_after_release(still_pending) {
            return Some(slot);
        }
        slot.wake();
        None
    }

    /// How many commands await a reply (for tests and leak checks).
    pub(crate) fn pending_count(&self) -> usize {
        self.state.lock().pending.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use volt_mock_server::{Server, ServerConfig};

    use super::*;
    use crate::{ClusterDaemonClient, ClusterDaemonClientOptions, DaemonCredentials};

    const WAIT: Duration = Duration::from_secs(5);

    fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !cond() {
            assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
            std::thread::yield_now();
        }
    }

    /// A client connected to `server` as cluster `c`.
    fn connected(server: &Server) -> ClusterDaemonClient {
        let mut o = ClusterDaemonClientOptions::new(
            server.url(),
            server.url(),
            DaemonCredentials::new("c", "pw"),
        );
        o.socket.connect_timeout = WAIT;
        let client = ClusterDaemonClient::new(o).unwrap();
        client.connect().unwrap();
        client
    }

    #[test]
    fn a_pending_command_tells_its_name_request_id_and_timeout() {
        let server = Server::start(ServerConfig::default().cluster("c", "pw")).unwrap();
        let client = connected(&server);
        let timeout = Duration::from_secs(3);
        let pending = client
            .start_command_with_timeout("echo", Some(json!(1)), timeout)
            .unwrap();
        assert_eq!(pending.command(), "echo");
        assert_eq!(pending.timeout(), timeout);
        assert!(uuid::Uuid::parse_str(&pending.request_id()).is_ok());
        assert_eq!(pending.wait().unwrap(), Some(json!(1)));
        client.disconnect();
    }

    #[test]
    fn a_lazy_command_appended_after_the_io_thread_fell_asleep_uncapped_is_sent() {
        let server = Server::start(ServerConfig::default().cluster("c", "pw")).unwrap();
        let client = connected(&server);
        let link = client.link().clone();
        // Many commands in flight whose replies are still to come.
        let (tx, _rx) = crossbeam_channel::unbounded();
        let fake: Vec<u128> = (1..=2 * write_policy::LAZY_FLUSH_MIN_IN_FLIGHT as u128).collect();
        for id in &fake {
            let waiter = Waiter::Channel(tx.clone());
            let entry = Entry {
                waiter,
                sent: Instant::now(),
            };
            link.state.lock().pending.insert(*id, entry);
        }
        let many = fake.len();
        // The I/O thread takes a turn and sees them: it polls with the cap.
        server.send_message("c", json!({"type": "nudge"})).unwrap();
        wait_until("the I/O thread sleeps capped", || {
            *link.last_sleep.lock() == Some((many, true))
        });
        let (parked_tx, parked_rx) = crossbeam_channel::bounded(1);
        let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(1);
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let sender_link = link.clone();
        std::thread::spawn(move || {
            BEFORE_APPEND.with(|h| {
                h.set(Some(Box::new(move || {
                    let _ = parked_tx.send(());
                    let _ = go_rx.recv_timeout(WAIT);
                })))
            });
            // It counts many in flight: a lazy send.
            let timeout = Duration::from_secs(2);
            let r = sender_link
                .start_pending("echo", Some(json!("late")), timeout)
                .and_then(PendingCommand::wait);
            let _ = done_tx.send(r);
        });
        parked_rx.recv_timeout(WAIT).expect("the sender parked");
        // Their replies arrive meanwhile; at its next capped wake-up the I/O
        // thread sees one left in flight (the parked sender's) and sleeps
        // without the cap, until the next ping.
        for id in fake {
            link.remove(id);
        }
        wait_until("the I/O thread sleeps uncapped", || {
            *link.last_sleep.lock() == Some((1, false))
        });
        go_tx.send(()).unwrap();
        let reply = done_rx.recv_timeout(WAIT).expect("the sender returned");
        assert_eq!(reply.unwrap(), Some(json!("late")));
        client.disconnect();
    }
}
