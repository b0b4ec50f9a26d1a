//! Server configuration: the CLI's knobs, and a few more for tests.

use std::net::SocketAddr;
use std::time::Duration;

/// PEM files (or their contents) for the TLS listener.
#[derive(Clone)]
pub struct TlsConfig {
    /// The certificate chain, PEM.
    pub cert_pem: Vec<u8>,
    /// The private key, PKCS #8 PEM.
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}

/// Everything [`Server::start`](crate::Server::start) needs.
///
/// ```
/// let cfg = volt_mock_server::ServerConfig::default().cluster("c1", "pw");
/// assert_eq!(cfg.ping_interval.as_millis(), 25000);
/// ```
#[derive(Clone)]
pub struct ServerConfig {
    /// Where to listen (default `127.0.0.1:0`, an ephemeral loopback port).
    pub listen: SocketAddr,
    /// `(teamClusterId, daemonPassword)` pairs.
    pub clusters: Vec<(String, String)>,
    /// One-time enrollment tokens.
    pub enrollment_tokens: Vec<String>,
    /// Password every successful enrollment rotates to.
    pub rotate_password: Option<String>,
    /// Engine.IO `pingInterval`.
    pub ping_interval: Duration,
    /// Engine.IO `pingTimeout`.
    pub ping_timeout: Duration,
    /// Engine.IO `maxPayload`: larger incoming frames close the connection with 1009.
    pub max_payload: usize,
    /// TLS for `wss`/`https`.
    pub tls: Option<TlsConfig>,
    /// With `tls`: require client certificates that chain to one of these
    /// CAs (PEM), and report each daemon's verified subject.
    pub tls_client_ca_pem: Option<Vec<u8>>,
    /// Bearer token guarding `/admin/...`.
    pub admin_token: Option<String>,
    /// Most simultaneous connections from one IP address.
    pub max_connections_per_ip: usize,
    /// The socket.io namespace daemons register on.
    pub namespace: String,
    /// The socket.io path.
    pub path: String,
    /// Record every frame for [`ServerHandle::frames`](crate::ServerHandle::frames).
    pub record_frames: bool,
    /// Record daemon commands and messages (per-cluster lists and
    /// `Command`/`Heartbeat`/`Message` events). Turn off for benchmarks.
    pub record_history: bool,
    /// Most entries kept in each history (event log, frames, per-cluster
    /// commands and messages); the oldest are dropped past it.
    pub history_limit: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            clusters: Vec::new(),
            enrollment_tokens: Vec::new(),
            rotate_password: None,
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload: 1_000_000,
            tls: None,
            tls_client_ca_pem: None,
            admin_token: None,
            max_connections_per_ip: 4096,
            namespace: "/daemon".into(),
            path: "/socket.io/".into(),
            record_frames: false,
            record_history: true,
            history_limit: 100_000,
        }
    }
}

impl ServerConfig {
    /// Adds a cluster.
    pub fn cluster(mut self, id: &str, password: &str) -> Self {
        self.clusters.push((id.into(), password.into()));
        self
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Passwords and tokens stay out of Debug output.
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field(
                "clusters",
                &self.clusters.iter().map(|(c, _)| c).collect::<Vec<_>>(),
            )
            .field("enrollment_tokens", &self.enrollment_tokens.len())
            .field("rotate_password", &self.rotate_password.is_some())
            .field("ping_interval", &self.ping_interval)
            .field("ping_timeout", &self.ping_timeout)
            .field("max_payload", &self.max_payload)
            .field("tls", &self.tls.is_some())
            .field("tls_client_ca_pem", &self.tls_client_ca_pem.is_some())
            .field("admin_token", &self.admin_token.is_some())
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("namespace", &self.namespace)
            .field("path", &self.path)
            .field("record_frames", &self.record_frames)
            .field("record_history", &self.record_history)
            .field("history_limit", &self.history_limit)
            .finish()
    }
}
