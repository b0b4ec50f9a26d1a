//! The running server and its in-process API.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::ServerConfig;
use crate::core::{self, Core, Shared};
use crate::events::EventLog;
use crate::model::*;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Binding or setting up the listener failed.
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS certificate or key could not be loaded.
    #[error("bad TLS identity: {0}")]
    Tls(#[from] native_tls::Error),
    /// The certificate, key or client CA for client certificates
    /// (`tls_client_ca_pem`) could not be loaded.
    #[error("bad TLS setup for client certificates: {0}")]
    ClientAuth(String),
}

/// A running mock server. Dropping it stops it (see [`Server::stop`]).
/// It dereferences to its [`ServerHandle`], so every call of the in-process
/// API works on it directly.
///
/// ```
/// use volt_mock_server::{Server, ServerConfig};
/// let server = Server::start(ServerConfig::default().cluster("c1", "pw")).unwrap();
/// assert!(server.url().starts_with("http://127.0.0.1:"));
/// assert!(server.daemons().is_empty());
/// server.stop();
/// ```
pub struct Server {
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
}

/// A cloneable handle on a running server: the in-process API the admin
/// HTTP API and the testkit are built on. Every call goes through the
/// server's event loop, so calls and protocol events are ordered.
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

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.handle.shared.local_addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds and starts serving on a background event-loop thread.
    pub fn start(config: ServerConfig) -> Result<Server, StartError> {
        let tls = match &config.tls {
            Some(t) => Some(crate::tls::TlsAcceptor::new(
                t,
                config.tls_client_ca_pem.as_deref(),
            )?),
            None => None,
        };
        let (shared, thread) = core::start(config, tls)?;
        log::info!("mock server listening on {}", shared.local_addr);
        Ok(Server {
            handle: ServerHandle { shared },
            thread: Some(thread),
        })
    }

    /// A handle for other threads.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Stops the server: closes every connection, ends the event loop and
    /// joins every thread it started. Also done on drop.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let shared = &self.handle.shared;
        shared.stopping.store(true, Ordering::Release);
        let _ = shared.waker.wake();
        let _ = thread.join();
        // HTTP threads: cut their sockets so none waits on a slow client.
        let threads = std::mem::take(&mut *shared.http_threads.lock());
        for (sock, _) in &threads {
            if let Some(s) = sock {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
        for (_, h) in threads {
            let _ = h.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

impl std::ops::Deref for Server {
    type Target = ServerHandle;
    fn deref(&self) -> &ServerHandle {
        &self.handle
    }
}

impl ServerHandle {
    /// Runs `f` on the event loop and returns its result.
    fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Core) -> R + Send + 'static,
    ) -> Result<R, DispatchError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let sent = self.shared.send(Box::new(move |core: &mut Core| {
            let _ = tx.send(f(core));
        }));
        if !sent {
            return Err(DispatchError::Stopped);
        }
        rx.recv().map_err(|_| DispatchError::Stopped)
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// `http://ADDR:PORT` (or `https://` with TLS): the daemon's server URL.
    pub fn url(&self) -> String {
        let scheme = if self.shared.tls.is_some() {
            "https"
        } else {
            "http"
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
        self.call(move |core| core.dispatch(&c, cmd, payload, timeout, tx))?;
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
        self.call(move |core| core.send_message(&c, &message))?
    }

    /// Sends a raw WebSocket frame to the cluster's newest connection
    /// (to feed a client malformed input).
    pub fn send_raw(&self, cluster: &str, frame: RawFrame) -> Result<(), DispatchError> {
        let c = cluster.to_owned();
        self.call(move |core| {
            let id = core
                .newest(&c)
                .ok_or_else(|| DispatchError::NotConnected(c.clone()))?;
            core.send_frame(id, frame);
            Ok(())
        })?
    }

    /// Kicks every connection of the cluster (`41/daemon,`); returns how many.
    pub fn kick(&self, cluster: &str) -> Result<usize, DispatchError> {
        let c = cluster.to_owned();
        self.call(move |core| core.kick(&c))?
    }

    /// Cuts every connection of the cluster without a close frame.
    pub fn drop_transport(&self, cluster: &str) -> Result<usize, DispatchError> {
        let c = cluster.to_owned();
        self.call(move |core| core.drop_cluster(&c))?
    }

    /// Sets how the server answers the daemon's `command` named `command`
    /// (overrides the built-ins too).
    pub fn set_responder(&self, command: &str, responder: Responder) {
        let c = command.to_owned();
        let _ = self.call(move |core| core.responders.insert(c, responder));
    }

    /// Restores the default answer for `command`.
    pub fn clear_responder(&self, command: &str) {
        let c = command.to_owned();
        let _ = self.call(move |core| core.responders.remove(&c));
    }

    /// Replaces the whole fault set.
    pub fn set_faults(&self, faults: Faults) {
        let _ = self.call(move |core| core.set_faults(faults));
    }

    /// Clears every fault.
    pub fn clear_faults(&self) {
        self.set_faults(Faults::default());
    }

    /// The fault set in force (`refuse_connections` counts down).
    pub fn faults(&self) -> Faults {
        self.call(|core| core.faults.clone()).unwrap_or_default()
    }

    /// Adds a cluster, or changes its password.
    pub fn add_cluster(&self, cluster: &str, password: &str) {
        let (c, p) = (cluster.to_owned(), password.to_owned());
        let _ = self.call(move |core| core.clusters.insert(c, p));
    }

    /// The cluster's current password (after enrollment rotations).
    pub fn cluster_password(&self, cluster: &str) -> Option<String> {
        let c = cluster.to_owned();
        self.call(move |core| core.clusters.get(&c).cloned())
            .ok()
            .flatten()
    }

    /// Replaces the enrollment settings.
    pub fn set_enrollment(&self, settings: EnrollmentSettings) {
        let _ = self.call(move |core| core.enrollment = settings);
    }

    /// The enrollment settings in force (used tokens are gone).
    pub fn enrollment(&self) -> EnrollmentSettings {
        self.call(|core| core.enrollment.clone())
            .unwrap_or_default()
    }

    /// The registered daemons, oldest first.
    pub fn daemons(&self) -> Vec<DaemonInfo> {
        self.call(|core| core.daemons()).unwrap_or_default()
    }

    /// The `message` objects the cluster's daemons sent, in order.
    pub fn received_messages(&self, cluster: &str) -> Vec<Value> {
        let c = cluster.to_owned();
        self.call(move |core| {
            core.received
                .get(&c)
                .map(|r| r.messages.iter().cloned().collect())
                .unwrap_or_default()
        })
        .unwrap_or_default()
    }

    /// The `command` envelopes the cluster's daemons sent (heartbeats
    /// included), in order.
    pub fn received_commands(&self, cluster: &str) -> Vec<Value> {
        let c = cluster.to_owned();
        // The loop hands out the shared texts; they are parsed here, off it.
        let texts: std::collections::VecDeque<std::sync::Arc<str>> = self
            .call(move |core| {
                core.received
                    .get(&c)
                    .map(|r| r.commands.clone())
                    .unwrap_or_default()
            })
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
        self.call(move |core| {
            core.frames
                .iter()
                .filter(|f| c.is_none() || f.cluster == c)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
    }

    /// Forgets the recorded frames.
    pub fn clear_frames(&self) {
        let _ = self.call(|core| core.frames.clear());
    }

    /// Answers an enrollment request (what `POST /api/team-clusters/<id>/healthcheck` does).
    pub fn enroll(&self, cluster: &str, authorization: Option<&str>, body: &[u8]) -> (u16, Value) {
        let (c, a, b) = (
            cluster.to_owned(),
            authorization.map(str::to_owned),
            body.to_vec(),
        );
        self.call(move |core| core.enroll(&c, a.as_deref(), &b))
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

    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        ServerHandle { shared }
    }
}
