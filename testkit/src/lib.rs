//! In-process harness for deterministic end-to-end tests of VOLT daemons.
//!
//! [`MockServer`] runs the mock VOLT server (`volt-mock-server`) on an
//! ephemeral loopback port inside the test process and exposes its powers as
//! typed calls: reverse commands, messages, kicks, transport drops,
//! responders, faults, enrollment settings, and an ordered event log to wait
//! on (never sleep to synchronise: wait for the event).
//!
//! ```
//! use std::time::Duration;
//! use volt_testkit::{MockServer, ServerEvent};
//! let server = MockServer::builder().cluster("c1", "pw").ping_interval(Duration::from_millis(200)).start();
//! assert!(server.url().starts_with("http://127.0.0.1:"));
//! assert_eq!(server.enrollment_url("c1"), format!("{}/api/team-clusters/c1/healthcheck", server.url()));
//! // Nothing connected yet: waiting for a registration times out.
//! let err = server
//!     .expect_event(|e| matches!(e, ServerEvent::Registered { .. }), Duration::from_millis(10))
//!     .unwrap_err();
//! assert!(err.to_string().contains("no matching event"));
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;
mod fault_proxy;

pub use fault_proxy::{FaultProxy, ProxyStats, Toward, FAULT_PROXY_SEED};
use volt_mock_server::{Server, ServerConfig, ServerHandle, TlsConfig};

mod client_recorder;

pub use client_recorder::{ClientEvent, ClientRecorder, ClientWaitError};
pub use volt_mock_server::{
    CommandRequest, DaemonInfo, Direction, DispatchError, EnrollmentSettings, ErrorBody, Faults,
    FrameRecord, RawFrame, RejectRegistration, Responder, ReverseReply, ServerEvent, Stats,
};

/// When a wait ends: a `Duration` from now, or an `Instant`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub Instant);

impl Deadline {
    /// Time left until the deadline (zero when past).
    pub fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

impl From<Duration> for Deadline {
    fn from(d: Duration) -> Self {
        Deadline(Instant::now() + d)
    }
}

impl From<Instant> for Deadline {
    fn from(i: Instant) -> Self {
        Deadline(i)
    }
}

/// The cluster a [`MockServer`] serves when none is configured.
pub const DEFAULT_CLUSTER: &str = "cluster-test";
/// The password of [`DEFAULT_CLUSTER`].
pub const DEFAULT_PASSWORD: &str = "password-test";
/// How long [`MockServer::dispatch`] waits for a reply.
pub const DEFAULT_DISPATCH_TIMEOUT: Duration = Duration::from_secs(10);

/// A wait on the event log that ran out of time.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectError {
    /// What was waited for.
    pub what: String,
    /// How long.
    pub waited: Duration,
    /// The last (up to 50) events seen past the cursor (for the failure message).
    pub seen: Vec<ServerEvent>,
}

impl std::error::Error for ExpectError {}

impl std::fmt::Display for ExpectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "no matching event ({}) within {:?}; events seen:",
            self.what, self.waited
        )?;
        for e in &self.seen {
            writeln!(f, "  {e:?}")?;
        }
        Ok(())
    }
}

/// Builds a [`MockServer`] with the same knobs as the CLI.
#[derive(Debug, Clone)]
pub struct MockServerBuilder {
    config: ServerConfig,
}

impl MockServerBuilder {
    /// Adds a cluster (without any, [`DEFAULT_CLUSTER`] is served).
    pub fn cluster(mut self, id: &str, password: &str) -> Self {
        self.config.clusters.push((id.into(), password.into()));
        self
    }

    /// Adds a one-time enrollment token.
    pub fn enrollment_token(mut self, token: &str) -> Self {
        self.config.enrollment_tokens.push(token.into());
        self
    }

    /// Every successful enrollment rotates the password to `new`.
    pub fn rotate_password(mut self, new: &str) -> Self {
        self.config.rotate_password = Some(new.into());
        self
    }

    /// Engine.IO `pingInterval`.
    pub fn ping_interval(mut self, d: Duration) -> Self {
        self.config.ping_interval = d;
        self
    }

    /// Engine.IO `pingTimeout`.
    pub fn ping_timeout(mut self, d: Duration) -> Self {
        self.config.ping_timeout = d;
        self
    }

    /// Engine.IO `maxPayload`.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.config.max_payload = bytes;
        self
    }

    /// Serve `wss`/`https` with this certificate chain and PKCS #8 key (PEM).
    pub fn tls(mut self, cert_pem: &[u8], key_pem: &[u8]) -> Self {
        self.config.tls = Some(TlsConfig {
            cert_pem: cert_pem.to_vec(),
            key_pem: key_pem.to_vec(),
        });
        self
    }

    /// With [`tls`](Self::tls): require client certificates that chain to
    /// the CAs in `ca_pem` (mutual TLS), for the socket, enrollment and the
    /// admin API alike.
    pub fn tls_client_ca(mut self, ca_pem: &[u8]) -> Self {
        self.config.tls_client_ca_pem = Some(ca_pem.to_vec());
        self
    }

    /// Guard the admin HTTP API with a bearer token.
    pub fn admin_token(mut self, token: &str) -> Self {
        self.config.admin_token = Some(token.into());
        self
    }

    /// Most connections per IP address.
    pub fn max_connections_per_ip(mut self, n: usize) -> Self {
        self.config.max_connections_per_ip = n;
        self
    }

    /// Record every frame for [`MockServer::frames`] (on by default; turn it
    /// off for benchmarks).
    pub fn record_frames(mut self, on: bool) -> Self {
        self.config.record_frames = on;
        self
    }

    /// Most entries kept per history (events, frames, commands, messages).
    pub fn history_limit(mut self, n: usize) -> Self {
        self.config.history_limit = n;
        self
    }

    /// Where to listen (default `127.0.0.1:0`).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.config.listen = addr;
        self
    }

    /// Starts the server.
    pub fn try_start(mut self) -> Result<MockServer, volt_mock_server::StartError> {
        if self.config.clusters.is_empty() {
            self.config
                .clusters
                .push((DEFAULT_CLUSTER.into(), DEFAULT_PASSWORD.into()));
        }
        Ok(MockServer {
            server: Server::start(self.config)?,
            cursor: Mutex::new(0),
        })
    }

    /// Starts the server; panics when it cannot (a test setup failure).
    pub fn start(self) -> MockServer {
        self.try_start()
            .unwrap_or_else(|e| panic!("cannot start the mock VOLT server: {e}"))
    }
}

/// A mock VOLT server running in this process. Dropping it stops it, frees
/// its port and joins its threads.
///
/// It dereferences to the server's [`ServerHandle`], so the whole
/// in-process API (`url`, `kick`, `set_faults`, `daemons`,
/// `received_commands`, ...) is called on it directly; the methods here
/// are the ones a test wants shaped differently (panicking `dispatch`,
/// a cursor over the event log, ...).
///
/// ```
/// use volt_testkit::{Faults, MockServer, DEFAULT_CLUSTER};
/// let server = MockServer::start();
/// server.set_faults(Faults { stop_pings: true, ..Faults::default() });
/// assert!(server.faults().stop_pings);
/// assert!(server.kick(DEFAULT_CLUSTER).is_err()); // nobody connected
/// ```
#[derive(Debug)]
pub struct MockServer {
    server: Server,
    /// Where the next [`expect_event`](Self::expect_event) starts looking.
    cursor: Mutex<u64>,
}

impl std::ops::Deref for MockServer {
    type Target = ServerHandle;
    fn deref(&self) -> &ServerHandle {
        &self.server
    }
}

impl MockServer {
    /// A server on an ephemeral loopback port serving [`DEFAULT_CLUSTER`].
    pub fn start() -> MockServer {
        MockServer::builder().start()
    }

    /// A builder for the same knobs as the CLI.
    pub fn builder() -> MockServerBuilder {
        let config = ServerConfig {
            record_frames: true,
            ..ServerConfig::default()
        };
        MockServerBuilder { config }
    }

    /// The mock server's own handle (its whole in-process API).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Sends a reverse command to the cluster's newest connection and waits
    /// (up to [`DEFAULT_DISPATCH_TIMEOUT`]) for its whole reply, whatever its
    /// status. A `Null` payload is left out of the envelope.
    ///
    /// # Panics
    /// When the daemon is not connected, does not answer in time, or
    /// disconnects first: a test wants the reply. [`try_dispatch`] returns
    /// those as errors instead.
    ///
    /// [`try_dispatch`]: Self::try_dispatch
    pub fn dispatch(&self, cluster: &str, command: &str, payload: Value) -> ReverseReply {
        self.try_dispatch(cluster, command, payload)
            .unwrap_or_else(|e| panic!("dispatch of {command:?} to {cluster}: {e}"))
    }

    /// [`dispatch`](Self::dispatch) that returns failures as values.
    pub fn try_dispatch(
        &self,
        cluster: &str,
        command: &str,
        payload: Value,
    ) -> Result<ReverseReply, DispatchError> {
        self.dispatch_with_timeout(cluster, command, payload, DEFAULT_DISPATCH_TIMEOUT)
    }

    /// [`try_dispatch`](Self::try_dispatch) with its own timeout.
    pub fn dispatch_with_timeout(
        &self,
        cluster: &str,
        command: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<ReverseReply, DispatchError> {
        let payload = (!payload.is_null()).then_some(payload);
        self.server.dispatch(cluster, command, payload, timeout)
    }

    /// Sends a `message` event (a `TeamClusterDaemonMessage`, a
    /// `serde_json::Value`, ...) to the cluster's newest connection.
    pub fn send_message(
        &self,
        cluster: &str,
        message: impl Serialize,
    ) -> Result<(), DispatchError> {
        let v = serde_json::to_value(message).unwrap_or(Value::Null);
        self.server.send_message(cluster, v)
    }

    /// Sends a raw text frame (e.g. `"42/daemon,[\"bogus\"]"`).
    pub fn send_raw_text(&self, cluster: &str, text: &str) -> Result<(), DispatchError> {
        self.server.send_raw(cluster, RawFrame::Text(text.into()))
    }

    /// Replaces the valid enrollment tokens.
    pub fn set_enrollment_tokens(&self, tokens: &[&str]) {
        let mut s = self.enrollment();
        s.tokens = tokens.iter().map(|t| t.to_string()).collect();
        self.set_enrollment(s);
    }

    /// Sets (or clears) the password enrollment rotates to.
    pub fn set_rotate_password(&self, new: Option<&str>) {
        let mut s = self.enrollment();
        s.rotate_to = new.map(str::to_owned);
        self.set_enrollment(s);
    }

    /// Makes every enrollment fail with `status` (or stops doing so).
    pub fn set_enrollment_fail_status(&self, status: Option<u16>) {
        let mut s = self.enrollment();
        s.fail_status = status;
        self.set_enrollment(s);
    }

    /// The frame transcript of the connections registered as `cluster`
    /// (frames sent before registration, like the open packet, are under
    /// [`all_frames`](Self::all_frames)).
    pub fn frames(&self, cluster: &str) -> Vec<FrameRecord> {
        self.server.frames(Some(cluster))
    }

    /// The frame transcript of every connection.
    pub fn all_frames(&self) -> Vec<FrameRecord> {
        self.server.frames(None)
    }

    /// Every event still kept, in order.
    pub fn events(&self) -> Vec<ServerEvent> {
        self.server
            .events()
            .since(0)
            .into_iter()
            .map(|(_, e)| e)
            .collect()
    }

    /// The position of the next event; pass it to
    /// [`expect_event_from`](Self::expect_event_from).
    pub fn mark(&self) -> u64 {
        self.server.events().next_seq()
    }

    /// Waits until `deadline` (a `Duration` from now or an `Instant`) for
    /// the first event past the cursor that `matcher` accepts, and moves the
    /// cursor past it: successive calls see successive events. The cursor
    /// starts at the first event.
    pub fn expect_event(
        &self,
        matcher: impl FnMut(&ServerEvent) -> bool,
        deadline: impl Into<Deadline>,
    ) -> Result<ServerEvent, ExpectError> {
        let timeout = deadline.into().remaining();
        let mut cursor = self.cursor.lock();
        let (seq, e) = self.expect_from(*cursor, matcher, timeout)?;
        *cursor = seq + 1;
        Ok(e)
    }

    /// Like [`expect_event`](Self::expect_event) from position `from`
    /// (see [`mark`](Self::mark)), leaving the cursor alone.
    pub fn expect_event_from(
        &self,
        from: u64,
        matcher: impl FnMut(&ServerEvent) -> bool,
        deadline: impl Into<Deadline>,
    ) -> Result<ServerEvent, ExpectError> {
        self.expect_from(from, matcher, deadline.into().remaining())
            .map(|(_, e)| e)
    }

    fn expect_from(
        &self,
        from: u64,
        matcher: impl FnMut(&ServerEvent) -> bool,
        timeout: Duration,
    ) -> Result<(u64, ServerEvent), ExpectError> {
        let deadline = Instant::now() + timeout;
        self.server
            .wait_for_event(from, deadline, matcher)
            .ok_or_else(|| ExpectError {
                what: "matcher".into(),
                waited: timeout,
                seen: {
                    let all = self.server.events().since(from);
                    let skip = all.len().saturating_sub(50);
                    all.into_iter().skip(skip).map(|(_, e)| e).collect()
                },
            })
    }

    /// Waits until the cluster has sent `n` heartbeats in all (counted over
    /// the whole event log; the cursor is left alone).
    pub fn wait_for_heartbeats(
        &self,
        cluster: &str,
        n: usize,
        deadline: impl Into<Deadline>,
    ) -> Result<(), ExpectError> {
        let timeout = deadline.into().remaining();
        if n == 0 {
            return Ok(());
        }
        let mut seen = 0usize;
        self.expect_from(
            0,
            |e| {
                if matches!(e, ServerEvent::Heartbeat { cluster: c, .. } if c == cluster) {
                    seen += 1;
                }
                seen >= n
            },
            timeout,
        )
        .map(|_| ())
        .map_err(|mut e| {
            e.what = format!("{n} heartbeats from {cluster}");
            e
        })
    }
}

/// Options for a test client of `server`: short timings (5 s command and
/// connect timeouts, 20–200 ms reconnection backoff, 30 s heartbeats) and a
/// fixed `rng_seed`, so jitter and backoff are reproducible.
///
/// ```
/// use volt_testkit::{client_options, MockServer, DEFAULT_CLUSTER, DEFAULT_PASSWORD};
/// let server = MockServer::start();
/// let options = client_options(&server, DEFAULT_CLUSTER, DEFAULT_PASSWORD);
/// assert_eq!(options.socket.rng_seed, Some(TEST_RNG_SEED));
/// # use volt_testkit::TEST_RNG_SEED;
/// ```
pub fn client_options(
    server: &MockServer,
    cluster: &str,
    password: &str,
) -> volt_daemon_client::ClusterDaemonClientOptions {
    use volt_daemon_client::{ClusterDaemonClientOptions, DaemonCredentials};
    let mut o = ClusterDaemonClientOptions::new(
        server.url(),
        server.url(),
        DaemonCredentials::new(cluster, password),
    );
    o.command_timeout = Duration::from_secs(5);
    o.socket.connect_timeout = Duration::from_secs(5);
    o.socket.reconnect_base_delay = Duration::from_millis(20);
    o.socket.reconnect_max_delay = Duration::from_millis(200);
    o.socket.rng_seed = Some(TEST_RNG_SEED);
    // Tests reach the server directly, whatever proxy the environment names.
    o.socket.proxy = volt_daemon_client::ProxyOptions::none();
    if let Some(tls) = &server.config().tls {
        o.socket.tls = volt_daemon_client::TlsOptions::default()
            .with_root_certificate_pem(tls.cert_pem.clone());
    }
    o
}

/// The seed [`client_options`] gives every test client.
pub const TEST_RNG_SEED: u64 = 0x5eed_2026;

/// The message a panic was raised with (`""` for a payload that is not a
/// string), for panic hooks.
///
/// ```
/// std::panic::set_hook(Box::new(|info| eprintln!("{}", volt_testkit::panic_message(info))));
/// # let _ = std::panic::take_hook();
/// ```
pub fn panic_message(info: &std::panic::PanicHookInfo<'_>) -> String {
    info.payload()
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| info.payload().downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// Makes any panic on any thread of this test process fail the test loudly,
/// even on a thread whose panic would otherwise be caught or ignored (the
/// client catches handler panics on purpose; those are excluded by giving
/// them a message containing `expected panic`).
pub fn fail_on_unexpected_panics() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = panic_message(info);
            default(info);
            if !msg.contains("expected panic") {
                UNEXPECTED_PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }));
    });
}

static UNEXPECTED_PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many unexpected panics [`fail_on_unexpected_panics`] has seen.
pub fn unexpected_panics() -> usize {
    UNEXPECTED_PANICS.load(std::sync::atomic::Ordering::SeqCst)
}

/// The number of threads of this process (Linux: `/proc/self/task`).
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Waits until `cond` holds or `timeout` passes; returns whether it held.
/// For conditions with no event to wait on (thread counts, client state).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
