//! Everything a client is configured with, and its validation (run by
//! `ClusterDaemonClient::new`); nothing here starts anything. Every field
//! is public and also has a `with_*` builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::endpoint::{self, Target};
use crate::error::{DaemonClientError, DaemonClientErrorCode};
use crate::proxy::ProxyOptions;
use crate::tls::TlsOptions;

/// `with_*` builders that set one field each.
macro_rules! builders {
    ($($(#[$doc:meta])* $name:ident: $field:ident: $ty:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, $field: $ty) -> Self {
                self.$field = $field;
                self
            }
        )*
    };
}

/// Who the daemon is, and its secrets. `Debug` redacts the secrets.
///
/// ```
/// use volt_daemon_client::DaemonCredentials;
/// let c = DaemonCredentials::new("cluster-1", "s3cret").with_enrollment_token("tok-9");
/// let shown = format!("{c:?}");
/// assert!(!shown.contains("s3cret") && !shown.contains("tok-9"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct DaemonCredentials {
    /// The team cluster this daemon serves.
    pub team_cluster_id: String,
    /// The daemon password used to register (rotated by enrollment when the server says so).
    pub daemon_password: String,
    /// One-time enrollment token; enrollment runs only when it is present.
    pub enrollment_token: Option<String>,
    /// The daemon's version, sent at enrollment and registration (`null` when absent).
    pub installed_version: Option<String>,
    /// Called for the password before every registration (and enrollment);
    /// `daemon_password` is used when absent. See
    /// [`with_password_provider`](Self::with_password_provider).
    pub password_provider: Option<PasswordProvider>,
}

/// Gives the password to register with; see
/// [`DaemonCredentials::with_password_provider`].
pub type PasswordProvider = Arc<dyn Fn() -> String + Send + Sync + 'static>;

impl DaemonCredentials {
    /// Credentials with no enrollment token and no version.
    pub fn new(team_cluster_id: impl Into<String>, daemon_password: impl Into<String>) -> Self {
        DaemonCredentials {
            team_cluster_id: team_cluster_id.into(),
            daemon_password: daemon_password.into(),
            enrollment_token: None,
            installed_version: None,
            password_provider: None,
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

    /// Asks `provider` for the password before every registration (each
    /// reconnection included) and for the enrollment request, instead of
    /// using `daemon_password`: a password rotated by another process, or
    /// kept in a secret store, is never stale. It runs on `volt-conn` (the
    /// enrollment of a blocking `connect()` on its caller), with no lock
    /// held; a panic in it is logged and `daemon_password` (or the password
    /// enrollment rotated) is used for that attempt.
    ///
    /// When enrollment rotates the password, the rotated one is still
    /// reported to `on_password_rotated` and returned by
    /// `daemon_password()`, but the provider decides what is used: the next
    /// registration waits (up to `connect_timeout`) until the
    /// `on_password_rotated` callbacks ran, so a provider that reads where
    /// they persist it sees the new password.
    ///
    /// ```
    /// use volt_daemon_client::DaemonCredentials;
    /// let c = DaemonCredentials::new("cluster-1", "initial").with_password_provider(|| {
    ///     std::fs::read_to_string("/run/secrets/volt-password").unwrap_or_default()
    /// });
    /// assert!(c.password_provider.is_some());
    /// assert!(!format!("{c:?}").contains("initial"));
    /// ```
    pub fn with_password_provider(
        mut self,
        provider: impl Fn() -> String + Send + Sync + 'static,
    ) -> Self {
        self.password_provider = Some(Arc::new(provider));
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
            .field("password_provider", &self.password_provider.is_some())
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
#[non_exhaustive]
pub struct EnrollmentOptions {
    /// Absolute URL, or a reference resolved against `server_url`.
    pub url: String,
    /// `Some(false)` turns enrollment off; `Some(true)` demands a token.
    pub enabled: Option<bool>,
    /// Bound on the whole exchange (10 s).
    pub timeout: Duration,
    /// The proxy for enrollment; `None` takes `SocketOptions::proxy`.
    pub proxy: Option<ProxyOptions>,
}

impl EnrollmentOptions {
    /// Enrollment at `url` with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        EnrollmentOptions {
            url: url.into(),
            enabled: None,
            timeout: Duration::from_secs(10),
            proxy: None,
        }
    }

    builders! {
        /// `Some(false)` turns enrollment off; `Some(true)` demands a token.
        with_enabled: enabled: Option<bool>;
        /// Sets the bound on the whole exchange.
        with_timeout: timeout: Duration;
        /// Sets the proxy for enrollment (`None`: the socket's).
        with_proxy: proxy: Option<ProxyOptions>;
    }
}

/// Produces the payload of each heartbeat.
pub type PayloadFactory = Arc<dyn Fn() -> Value + Send + Sync + 'static>;

/// The heartbeat loop: `runtime.heartbeat` every `interval + j`, j uniform in `[0, jitter]`.
///
/// ```
/// use std::time::Duration;
/// use volt_daemon_client::HeartbeatOptions;
/// let h = HeartbeatOptions::default()
///     .with_interval(Duration::from_secs(5))
///     .with_jitter(Duration::from_millis(500))
///     .with_payload_factory(|| serde_json::json!({"load": 0.5}));
/// assert!(h.payload_factory.is_some());
/// // Field assignment works as well.
/// let mut h = HeartbeatOptions::default();
/// h.interval = Duration::from_secs(5);
/// assert_eq!(h.interval.as_secs(), 5);
/// ```
#[derive(Clone)]
#[non_exhaustive]
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

    builders! {
        /// Sets the time between heartbeats.
        with_interval: interval: Duration;
        /// Sets the extra random delay.
        with_jitter: jitter: Duration;
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

/// The control socket: reconnection, namespace, limits, TLS.
///
/// ```
/// use std::time::Duration;
/// use volt_daemon_client::SocketOptions;
/// let s = SocketOptions::default()
///     .with_reconnect_base_delay(Duration::from_millis(100))
///     .with_max_reconnect_attempts(Some(5))
///     .with_connect_timeout(Duration::from_secs(5));
/// assert_eq!(s.namespace, "/daemon");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
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
    /// Retry a failed first connect with the reconnection backoff, until
    /// it succeeds, `max_reconnect_attempts` is spent or `disconnect()` is
    /// called (false: `connect()` fails with the first error). A refused
    /// registration, an enrollment answered 4xx and invalid options still
    /// fail at once.
    pub retry_initial_connect: bool,
    /// More control socket URLs: attempts walk `control_socket_url` and
    /// these in turn, the backoff growing per full round; after a loss the
    /// URL that registered last is tried first.
    pub fallback_urls: Vec<String>,
    /// The HTTP proxy (for enrollment too, unless it has its own); by
    /// default the environment's (`HTTPS_PROXY`, `NO_PROXY`, ...), if any.
    pub proxy: ProxyOptions,
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
            retry_initial_connect: false,
            fallback_urls: Vec::new(),
            proxy: ProxyOptions::default(),
        }
    }
}

impl SocketOptions {
    builders! {
        /// Reconnect after a transport loss, or not.
        with_reconnect: reconnect: bool;
        /// Gives up after this many failed attempts in a row (`None`: never).
        with_max_reconnect_attempts: max_reconnect_attempts: Option<u32>;
        /// Sets the first reconnection delay.
        with_reconnect_base_delay: reconnect_base_delay: Duration;
        /// Sets the largest reconnection delay.
        with_reconnect_max_delay: reconnect_max_delay: Duration;
        /// Sets the jitter, as a fraction of the delay (within [0, 1]).
        with_randomization_factor: randomization_factor: f64;
        /// Sets the Socket.IO namespace.
        with_namespace: namespace: String;
        /// Sets the Engine.IO path.
        with_path: path: String;
        /// Sets the bound on connecting.
        with_connect_timeout: connect_timeout: Duration;
        /// Sets the largest incoming frame.
        with_max_incoming_frame_bytes: max_incoming_frame_bytes: usize;
        /// Sets the TLS settings.
        with_tls: tls: TlsOptions;
        /// Sets the seed for reproducible jitter and backoff.
        with_rng_seed: rng_seed: Option<u64>;
        /// Retries a failed first connect with the reconnection backoff, or not.
        with_retry_initial_connect: retry_initial_connect: bool;
        /// Sets the control socket URLs tried after `control_socket_url`.
        with_fallback_urls: fallback_urls: Vec<String>;
        /// Sets the HTTP proxy.
        with_proxy: proxy: ProxyOptions;
    }
}

/// The handler pool that runs reverse commands.
///
/// ```
/// use volt_daemon_client::HandlerPoolOptions;
/// let h = HandlerPoolOptions::default().with_threads(8).with_queue_capacity(1024);
/// assert_eq!((h.threads, h.queue_capacity), (8, 1024));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HandlerPoolOptions {
    /// Worker threads (4); at least one.
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

impl HandlerPoolOptions {
    builders! {
        /// Sets the number of worker threads (at least one).
        with_threads: threads: usize;
        /// Sets how many commands may wait for a worker.
        with_queue_capacity: queue_capacity: usize;
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
/// let opts = opts
///     .with_command_timeout(std::time::Duration::from_secs(10))
///     .with_enrollment(Some(EnrollmentOptions::new("/api/enroll")));
/// assert!(opts.enrollment.is_some());
/// # use volt_daemon_client::EnrollmentOptions;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
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
    builders! {
        /// Sets the enrollment.
        with_enrollment: enrollment: Option<EnrollmentOptions>;
        /// Sets the heartbeat loop.
        with_heartbeat: heartbeat: HeartbeatOptions;
        /// Sets the control socket options.
        with_socket: socket: SocketOptions;
        /// Sets the default command timeout.
        with_command_timeout: command_timeout: Duration;
        /// Sets the handler pool.
        with_handlers: handlers: HandlerPoolOptions;
    }

    /// Checks everything `ClusterDaemonClient::new` refuses.
    pub(crate) fn validate(&self) -> Result<(), DaemonClientError> {
        use DaemonClientErrorCode::{EnrollmentFailed, SocketConnectionFailed};
        let socket = |why: &str| config_error(SocketConnectionFailed, why);
        if self.credentials.team_cluster_id.is_empty() {
            return Err(socket("team_cluster_id is empty"));
        }
        Target::parse(&self.control_socket_url, &self.socket.path).map_err(|e| socket(&e))?;
        for url in &self.socket.fallback_urls {
            Target::parse(url, &self.socket.path)
                .map_err(|e| socket(&format!("socket.fallback_urls: {e}")))?;
        }
        let s = &self.socket;
        if !s.namespace.starts_with('/') || s.namespace.contains(',') {
            return Err(socket(
                "socket.namespace must start with '/' and hold no comma",
            ));
        }
        if !(0.0..=1.0).contains(&s.randomization_factor) {
            return Err(socket("socket.randomization_factor must be within [0, 1]"));
        }
        if self.heartbeat.interval.is_zero() {
            return Err(socket("heartbeat.interval must be positive"));
        }
        if self.handlers.threads == 0 {
            return Err(socket("handlers.threads must be at least 1"));
        }
        s.proxy
            .validate()
            .map_err(|e| socket(&format!("socket.proxy: {e}")))?;
        if let Some(e) = &self.enrollment {
            if e.enabled == Some(true) && self.credentials.enrollment_token.is_none() {
                return Err(config_error(
                    EnrollmentFailed,
                    "enrollment.enabled is true but there is no enrollment_token",
                ));
            }
            if e.enabled != Some(false) {
                endpoint::resolve_url(&self.server_url, &e.url)
                    .map_err(|m| config_error(EnrollmentFailed, m))?;
                if let Some(p) = &e.proxy {
                    p.validate().map_err(|m| {
                        config_error(EnrollmentFailed, format!("enrollment.proxy: {m}"))
                    })?;
                }
            }
        }
        Ok(())
    }
}

fn config_error(code: DaemonClientErrorCode, why: impl Into<String>) -> DaemonClientError {
    DaemonClientError::new(code, format!("invalid options: {}", why.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ClusterDaemonClientOptions {
        ClusterDaemonClientOptions::new(
            "http://127.0.0.1:1",
            "ws://127.0.0.1:1",
            DaemonCredentials::new("c", "p"),
        )
    }

    #[test]
    fn zero_handler_threads_is_a_validation_error_not_one() {
        let o = options().with_handlers(HandlerPoolOptions::default().with_threads(0));
        let e = o.validate().unwrap_err();
        assert!(e.to_string().contains("handlers.threads"), "{e}");
        assert!(options().validate().is_ok());
    }

    #[test]
    fn builders_set_what_field_assignment_sets() {
        let built = options()
            .with_command_timeout(Duration::from_secs(3))
            .with_socket(SocketOptions::default().with_namespace("/ns".into()));
        let mut assigned = options();
        assigned.command_timeout = Duration::from_secs(3);
        assigned.socket.namespace = "/ns".into();
        assert_eq!(format!("{built:?}"), format!("{assigned:?}"));
    }
}
