//! [`ServerHandle`]: the in-process API of a running server, and what the
//! loop shares with the other threads ([`Shared`]). Every call is a typed
//! request run on the loop thread against the [`State`].

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mio::Waker;
use parking_lot::Mutex;
use serde_json::Value;

use crate::config::ServerConfig;
use crate::events::EventLog;
use crate::model::*;
use crate::state::State;

/// A request to the loop: runs on its thread against the state.
pub(crate) type Call = Box<dyn FnOnce(&mut State) + Send>;

/// A TLS connection whose WebSocket upgrade request a handshake thread
/// read, handed to the loop.
pub(crate) struct TlsUpgrade {
    pub tls: crate::tls::TlsStream,
    pub peer: SocketAddr,
    pub key: String,
    pub leftover: Vec<u8>,
}

/// What the loop shares with the other threads.
pub(crate) struct Shared {
    pub config: ServerConfig,
    pub local_addr: SocketAddr,
    pub events: EventLog,
    pub stats: Mutex<Stats>,
    pub calls: Sender<Call>,
    pub upgrades: Sender<TlsUpgrade>,
    pub waker: Waker,
    pub stopping: AtomicBool,
    pub tls: Option<crate::tls::TlsAcceptor>,
    pub http_active: AtomicUsize,
    /// HTTP threads: a clone of their socket (to cut it on shutdown) and the handle.
    pub http_threads: Mutex<Vec<(Option<TcpStream>, JoinHandle<()>)>>,
}

impl Shared {
    /// Runs `call` on the loop. `false` when the loop is gone.
    fn send(&self, call: Call) -> bool {
        if self.stopping.load(Ordering::Acquire) || self.calls.send(call).is_err() {
            return false;
        }
        self.waker.wake().is_ok()
    }

    /// Runs `f` on a new HTTP thread (counted in `http_active`); `sock`
    /// is cut when the server stops.
    pub(crate) fn spawn_http(
        self: &Arc<Self>,
        sock: Option<TcpStream>,
        f: impl FnOnce() + Send + 'static,
    ) {
        let shared = self.clone();
        shared.http_active.fetch_add(1, Ordering::AcqRel);
        let handle = std::thread::Builder::new()
            .name("volt-mock-http".into())
            .spawn(move || {
                f();
                shared.http_active.fetch_sub(1, Ordering::AcqRel);
            });
        match handle {
            Ok(h) => {
                let mut threads = self.http_threads.lock();
                threads.retain(|(_, h)| !h.is_finished());
                threads.push((sock, h));
            }
            Err(e) => {
                self.http_active.fetch_sub(1, Ordering::AcqRel);
                log::error!("cannot spawn an HTTP thread: {e}");
            }
        }
    }
}

/// A cloneable handle on a running server: the in-process API the admin
/// HTTP API and the testkit are built on. Every call goes through the
/// server's event loop, so calls and protocol events are ordered.
///
/// ```
/// use volt_mock_server::{Responder, Server, ServerConfig};
/// let server = Server::start(ServerConfig::default()).unwrap();
/// let handle = server.handle();
/// handle.add_cluster("c1", "pw");
/// handle.set_responder("ls", Responder::ok(serde_json::json!(["a"])));
/// assert_eq!(handle.cluster_password("c1").as_deref(), Some("pw"));
/// assert!(handle.daemons().is_empty());
/// ```
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("addr", &self.shared.local_addr)
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        ServerHandle { shared }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Runs `f` on the event loop and returns its result.
    fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut State) -> R + Send + 'static,
    ) -> Result<R, DispatchError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let sent = self.shared.send(Box::new(move |state: &mut State| {
            let _ = tx.send(f(state));
        }));
        if !sent {
            return Err(DispatchError::Stopped);
        }
        rx.recv().map_err(|_| DispatchError::Stopped)
    }

    /// Hands a TLS connection's WebSocket upgrade to the loop.
    pub(crate) fn upgrade_tls(&self, upgrade: TlsUpgrade) {
        if self.shared.stopping.load(Ordering::Acquire)
            || self.shared.upgrades.send(upgrade).is_err()
        {
            return;
        }
        let _ = self.shared.waker.wake();
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// `http://ADDR:PORT` (or `https://` with TLS): the daemon's server URL.
    pub fn url(&self) -> String {
        let scheme = match self.shared.tls {
            Some(_) => "https",
            None => "http",
        };
        format!("{scheme}://{}", self.shared.local_addr)
    }

    /// The enrollment URL of a cluster: `<url>/api/team-clusters/<id>/healthcheck`.
    pub fn enrollment_url(&self, cluster: &str) -> String {
        format!("{}/api/team-clusters/{cluster}/healthcheck", self.url())
    }

    /// The configuration the server was started with.
    pub fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    /// The ordered log of everything the server saw.
    pub fn events(&self) -> &EventLog {
        &self.shared.events
    }

    /// Counters (as of the event loop's last wake).
    pub fn stats(&self) -> Stats {
        *self.shared.stats.lock()
    }

    /// Sends a reverse command to the cluster's newest connection and waits
    /// for its whole reply (a stream is collected to its end).
    pub fn dispatch(
        &self,
        cluster: &str,
        command: &str,
        payload: Option<Value>,
        timeout: Duration,
    ) -> Result<ReverseReply, DispatchError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let (c, cmd) = (cluster.to_owned(), command.to_owned());
        self.call(move |s| s.dispatch(&c, cmd, payload, timeout, tx))?;
        // The loop always answers (reply, timeout, disconnect or stop); the
        // margin only guards against a loop that died.
        match rx.recv_timeout(timeout + Duration::from_secs(5)) {
            Ok(Err(DispatchError::Timeout(_))) => Err(DispatchError::Timeout(timeout)),
            Ok(r) => r,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                Err(DispatchError::Timeout(timeout))
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(DispatchError::Stopped),
        }
    }

    /// Sends a `message` (any JSON, normally an object with a `type`) to the
    /// cluster's newest connection.
    pub fn send_message(&self, cluster: &str, message: Value) -> Result<(), DispatchError> {
        let c = cluster.to_owned();
        self.call(move |s| s.send_message(&c, &message))?
    }

    /// Sends a raw WebSocket frame to the cluster's newest connection
    /// (to feed a client malformed input).
    pub fn send_raw(&self, cluster: &str, frame: RawFrame) -> Result<(), DispatchError> {
        let c = cluster.to_owned();
        self.call(move |s| s.send_raw(&c, frame))?
    }

    /// Kicks every connection of the cluster (`41/daemon,`); returns how many.
    pub fn kick(&self, cluster: &str) -> Result<usize, DispatchError> {
        let c = cluster.to_owned();
        self.call(move |s| s.kick(&c))?
    }

    /// Cuts every connection of the cluster without a close frame.
    pub fn drop_transport(&self, cluster: &str) -> Result<usize, DispatchError> {
        let c = cluster.to_owned();
        self.call(move |s| s.drop_cluster(&c))?
    }

    /// Sets how the server answers the daemon's `command` named `command`
    /// (overrides the built-ins too).
    pub fn set_responder(&self, command: &str, responder: Responder) {
        let c = command.to_owned();
        let _ = self.call(move |s| s.set_responder(c, responder));
    }

    /// Restores the default answer for `command`.
    pub fn clear_responder(&self, command: &str) {
        let c = command.to_owned();
        let _ = self.call(move |s| s.clear_responder(&c));
    }

    /// Replaces the whole fault set.
    pub fn set_faults(&self, faults: Faults) {
        let _ = self.call(move |s| s.set_faults(faults, Instant::now()));
    }

    /// Clears every fault.
    pub fn clear_faults(&self) {
        self.set_faults(Faults::default());
    }

    /// The fault set in force (`refuse_connections` counts down).
    pub fn faults(&self) -> Faults {
        self.call(|s| s.faults().clone()).unwrap_or_default()
    }

    /// Adds a cluster, or changes its password.
    pub fn add_cluster(&self, cluster: &str, password: &str) {
        let (c, p) = (cluster.to_owned(), password.to_owned());
        let _ = self.call(move |s| s.add_cluster(c, p));
    }

    /// The cluster's current password (after enrollment rotations).
    pub fn cluster_password(&self, cluster: &str) -> Option<String> {
        let c = cluster.to_owned();
        self.call(move |s| s.cluster_password(&c).map(str::to_owned))
            .ok()
            .flatten()
    }

    /// Replaces the enrollment settings.
    pub fn set_enrollment(&self, settings: EnrollmentSettings) {
        let _ = self.call(move |s| s.set_enrollment(settings));
    }

    /// The enrollment settings in force (used tokens are gone).
    pub fn enrollment(&self) -> EnrollmentSettings {
        self.call(|s| s.enrollment().clone()).unwrap_or_default()
    }

    /// The registered daemons, oldest first.
    pub fn daemons(&self) -> Vec<DaemonInfo> {
        self.call(|s| s.daemons()).unwrap_or_default()
    }

    /// The `message` objects the cluster's daemons sent, in order.
    pub fn received_messages(&self, cluster: &str) -> Vec<Value> {
        let c = cluster.to_owned();
        self.call(move |s| s.received_messages(&c))
            .unwrap_or_default()
    }

    /// The `command` envelopes the cluster's daemons sent (heartbeats
    /// included), in order.
    pub fn received_commands(&self, cluster: &str) -> Vec<Value> {
        let c = cluster.to_owned();
        // The loop hands out the shared texts; they are parsed here, off it.
        let texts = self
            .call(move |s| s.received_commands(&c))
            .unwrap_or_default();
        texts
            .iter()
            .map(|t| crate::wire::parse_envelope(t))
            .collect()
    }

    /// The recorded frames (needs [`ServerConfig::record_frames`]), of every
    /// connection or, with `Some(cluster)`, of the connections registered
    /// as that cluster at the time.
    pub fn frames(&self, cluster: Option<&str>) -> Vec<FrameRecord> {
        let c = cluster.map(str::to_owned);
        self.call(move |s| s.frames(c.as_deref()))
            .unwrap_or_default()
    }

    /// Forgets the recorded frames.
    pub fn clear_frames(&self) {
        let _ = self.call(|s| s.clear_frames());
    }

    /// Answers an enrollment request (what `POST /api/team-clusters/<id>/healthcheck` does).
    pub fn enroll(&self, cluster: &str, authorization: Option<&str>, body: &[u8]) -> (u16, Value) {
        let (c, a, b) = (
            cluster.to_owned(),
            authorization.map(str::to_owned),
            body.to_vec(),
        );
        self.call(move |s| s.enroll(&c, a.as_deref(), &b))
            .unwrap_or((503, serde_json::json!({"message": "server stopping"})))
    }

    /// Waits for the first event numbered `from` or later that `matcher`
    /// accepts; `None` when `deadline` passes first.
    pub fn wait_for_event(
        &self,
        from: u64,
        deadline: Instant,
        matcher: impl FnMut(&ServerEvent) -> bool,
    ) -> Option<(u64, ServerEvent)> {
        self.shared.events.wait_for(from, deadline, matcher)
    }
}
