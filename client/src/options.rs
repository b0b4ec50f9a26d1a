//! Everything a client is configured with. `ClusterDaemonClient::new`
//! validates it; nothing here starts anything.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

/// Who the daemon is, and its secrets. `Debug` redacts the secrets.
///
/// ```
/// use volt_daemon_client::DaemonCredentials;
/// let c = DaemonCredentials::new("cluster-1", "s3cret").with_enrollment_token("tok-9");
/// let shown = format!("{c:?}");
/// assert!(!shown.contains("s3cret") && !shown.contains("tok-9"));
/// ```
#[derive(Clone)]
pub struct DaemonCredentials {
    /// The team cluster this daemon serves.
    pub team_cluster_id: String,
    /// The daemon password used to register (rotated by enrollment when the server says so).
    pub daemon_password: String,
    /// One-time enrollment token; enrollment runs only when it is present.
    pub enrollment_token: Option<String>,
    /// The daemon's version, sent at enrollment and registration (`null` when absent).
    pub installed_version: Option<String>,
}

impl DaemonCredentials {
    /// Credentials with no enrollment token and no version.
    pub fn new(team_cluster_id: impl Into<String>, daemon_password: impl Into<String>) -> Self {
        DaemonCredentials {
            team_cluster_id: team_cluster_id.into(),
            daemon_password: daemon_password.into(),
            enrollment_token: None,
            installed_version: None,
        }
    }

    /// Sets the one-time enrollment token.
    pub fn with_enrollment_token(mut self, token: impl Into<String>) -> Self {
        self.enrollment_token = Some(token.into());
        self
    }

    /// Sets the installed version.
    pub fn with_installed_version(mut self, version: impl Into<String>) -> Self {
        self.installed_version = Some(version.into());
        self
    }
}

impl fmt::Debug for DaemonCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DaemonCredentials")
            .field("team_cluster_id", &self.team_cluster_id)
            .field("daemon_password", &"<redacted>")
            .field(
                "enrollment_token",
                &self.enrollment_token.as_ref().map(|_| "<redacted>"),
            )
            .field("installed_version", &self.installed_version)
            .finish()
    }
}

/// The enrollment request (HTTP), run once on the first `connect()` that has a token.
///
/// ```
/// use volt_daemon_client::EnrollmentOptions;
/// let e = EnrollmentOptions::new("/api/team-clusters/c1/healthcheck");
/// assert_eq!(e.timeout.as_secs(), 10);
/// ```
#[derive(Debug, Clone)]
pub struct EnrollmentOptions {
    /// Absolute URL, or a reference resolved against `server_url`.
    pub url: String,
    /// `Some(false)` turns enrollment off; `Some(true)` demands a token.
    pub enabled: Option<bool>,
    /// Bound on the whole exchange (10 s).
    pub timeout: Duration,
}

impl EnrollmentOptions {
    /// Enrollment at `url` with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        EnrollmentOptions {
            url: url.into(),
            enabled: None,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Produces the payload of each heartbeat.
pub type PayloadFactory = Arc<dyn Fn() -> Value + Send + Sync + 'static>;

/// The heartbeat loop: `runtime.heartbeat` every `interval + j`, j uniform in `[0, jitter]`.
///
/// ```
/// use std::time::Duration;
/// use volt_daemon_client::HeartbeatOptions;
/// let h = HeartbeatOptions { interval: Duration::from_secs(5), ..Default::default() }
///     .with_payload_factory(|| serde_json::json!({"load": 0.5}));
/// assert!(h.payload_factory.is_some());
/// ```
#[derive(Clone)]
pub struct HeartbeatOptions {
    /// Time between heartbeats (30 s).
    pub interval: Duration,
    /// Extra random delay, drawn afresh each time (0).
    pub jitter: Duration,
    /// Builds each heartbeat's payload; `{}` when absent.
    pub payload_factory: Option<PayloadFactory>,
}

impl HeartbeatOptions {
    /// Sets the payload factory.
    pub fn with_payload_factory(mut self, f: impl Fn() -> Value + Send + Sync + 'static) -> Self {
        self.payload_factory = Some(Arc::new(f));
        self
    }
}

impl Default for HeartbeatOptions {
    fn default() -> Self {
        HeartbeatOptions {
            interval: Duration::from_secs(30),
            jitter: Duration::ZERO,
            payload_factory: None,
        }
    }
}

impl fmt::Debug for HeartbeatOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeartbeatOptions")
            .field("interval", &self.interval)
            .field("jitter", &self.jitter)
            .field("payload_factory", &self.payload_factory.is_some())
            .finish()
    }
}

/// TLS settings for `wss://` and `https://`. Verification is always on
/// unless `danger_accept_invalid_certs` says otherwise.
///
/// ```
/// use volt_daemon_client::TlsOptions;
/// let tls = TlsOptions::default().with_root_certificate_pem(b"-----BEGIN CERTIFICATE-----...".to_vec());
/// assert_eq!(tls.root_certificates_pem.len(), 1);
/// ```
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Extra trusted roots, PEM, added to the system's roots (for the
    /// socket and for enrollment alike).
    pub root_certificates_pem: Vec<Vec<u8>>,
    /// Accept any certificate and host name. Only for tests.
    pub danger_accept_invalid_certs: bool,
}

impl TlsOptions {
    /// Adds a trusted root certificate (PEM).
    pub fn with_root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates_pem.push(pem.into());
        self
    }
}

/// The control socket: reconnection, namespace, limits, TLS.
#[derive(Debug, Clone)]
pub struct SocketOptions {
    /// Reconnect after a transport loss (true).
    pub reconnect: bool,
    /// Give up after this many failed attempts in a row (`None`: never).
    pub max_reconnect_attempts: Option<u32>,
    /// First reconnection delay (500 ms).
    pub reconnect_base_delay: Duration,
    /// Largest reconnection delay (30 s).
    pub reconnect_max_delay: Duration,
    /// Jitter, as a fraction of the delay (0.3).
    pub randomization_factor: f64,
    /// Socket.IO namespace (`/daemon`).
    pub namespace: String,
    /// Engine.IO path (`/socket.io/`).
    pub path: String,
    /// Bound on connecting: TCP, TLS, upgrade, handshake and registration (20 s).
    pub connect_timeout: Duration,
    /// Incoming frames larger than this are a protocol error (16 MiB).
    pub max_incoming_frame_bytes: usize,
    /// TLS settings.
    pub tls: TlsOptions,
    /// Seed for reproducible jitter and backoff (tests).
    pub rng_seed: Option<u64>,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            reconnect: true,
            max_reconnect_attempts: None,
            reconnect_base_delay: Duration::from_millis(500),
            reconnect_max_delay: Duration::from_secs(30),
            randomization_factor: 0.3,
            namespace: "/daemon".into(),
            path: "/socket.io/".into(),
            connect_timeout: Duration::from_secs(20),
            max_incoming_frame_bytes: 16 * 1024 * 1024,
            tls: TlsOptions::default(),
            rng_seed: None,
        }
    }
}

/// The handler pool that runs reverse commands.
#[derive(Debug, Clone)]
pub struct HandlerPoolOptions {
    /// Worker threads (4).
    pub threads: usize,
    /// Commands waiting for a worker; beyond it the reply is 503 BUSY (256).
    pub queue_capacity: usize,
}

impl Default for HandlerPoolOptions {
    fn default() -> Self {
        HandlerPoolOptions {
            threads: 4,
            queue_capacity: 256,
        }
    }
}

/// Everything the client needs.
///
/// ```
/// use volt_daemon_client::{ClusterDaemonClientOptions, DaemonCredentials};
/// let opts = ClusterDaemonClientOptions::new(
///     "http://127.0.0.1:8080",
///     "ws://127.0.0.1:8080",
///     DaemonCredentials::new("cluster-1", "pw"),
/// );
/// assert_eq!(opts.command_timeout.as_secs(), 30);
/// ```
#[derive(Debug, Clone)]
pub struct ClusterDaemonClientOptions {
    /// Base URL of the VOLT server (HTTP), against which a relative enrollment URL resolves.
    pub server_url: String,
    /// URL of the control socket (`ws`, `wss`, `http` or `https`).
    pub control_socket_url: String,
    /// Who the daemon is.
    pub credentials: DaemonCredentials,
    /// Enrollment, when configured.
    pub enrollment: Option<EnrollmentOptions>,
    /// The heartbeat loop.
    pub heartbeat: HeartbeatOptions,
    /// The control socket.
    pub socket: SocketOptions,
    /// Default command timeout (30 s).
    pub command_timeout: Duration,
    /// The reverse-command handler pool.
    pub handlers: HandlerPoolOptions,
}

impl ClusterDaemonClientOptions {
    /// Options with every default.
    pub fn new(
        server_url: impl Into<String>,
        control_socket_url: impl Into<String>,
        credentials: DaemonCredentials,
    ) -> Self {
        ClusterDaemonClientOptions {
            server_url: server_url.into(),
            control_socket_url: control_socket_url.into(),
            credentials,
            enrollment: None,
            heartbeat: HeartbeatOptions::default(),
            socket: SocketOptions::default(),
            command_timeout: Duration::from_secs(30),
            handlers: HandlerPoolOptions::default(),
        }
    }
}
