//! A blocking, multithreaded daemon-side client for the VOLT control plane:
//! a cluster daemon talks to the VOLT server over socket.io (Engine.IO v4
//! over WebSocket), with no async runtime.
//!
//! ```no_run
//! use volt_daemon_client::*;
//!
//! let mut options = ClusterDaemonClientOptions::new(
//!     "https://volt.example.com",
//!     "wss://volt.example.com",
//!     DaemonCredentials::new("cluster-abc123", "daemon-password")
//!         .with_enrollment_token("one-time-token")
//!         .with_installed_version("1.4.2"),
//! );
//! options.enrollment = Some(EnrollmentOptions::new("/api/team-clusters/cluster-abc123/healthcheck"));
//!
//! let client = ClusterDaemonClient::new(options)?;
//! client.on_password_rotated(|_new| { /* persist it */ });
//! client.register_handler_fn("list-files", |_payload, _ctx| {
//!     Ok(CommandResult::data(serde_json::json!(["a.txt"])))
//! });
//! client.connect()?;
//! let reply = client.send_command("get-container-stats", None)?;
//! # let _ = reply;
//! client.disconnect();
//! # Ok::<(), DaemonClientError>(())
//! ```
//!
//! TLS (`wss://`, `https://` enrollment) runs on exactly one backend, a
//! Cargo feature: `native-tls` (the default; the system's roots) or `rustls`
//! (the webpki-roots bundle; with `rustls-platform-verifier`, the operating
//! system's verifier and roots). Both or neither is a compile error.
//! [`TlsOptions`] means the same on both: extra roots, a client certificate
//! ([`TlsOptions::with_client_identity`]), verification always on unless
//! the test-only `danger_accept_invalid_certs` is set.
//!
//! Threads (all named, all joined by [`ClusterDaemonClient::disconnect`]):
//! `volt-conn` (connection state machine and the socket's only reader and
//! writer), `volt-heartbeat`, `volt-handler-N` (reverse commands) and
//! `volt-events` (user callbacks, in order). See `docs/ARCHITECTURE.md`.

mod backoff;
mod callbacks;
mod client;
mod connection;
mod connection_state;
mod credentials;
mod drain;
mod endpoint;
mod enrollment;
mod error;
mod events;
mod heartbeat;
mod http;
mod job;
mod lifecycle;
mod options;
mod pending;
mod proxy;
mod reverse_channel;
mod shared;
mod slot;
mod stats;
mod tls;
mod wire;
mod worker;
mod write_policy;

pub use backoff::Backoff;
pub use client::ClusterDaemonClient;
pub use connection_state::{ConnectionState, StateChange};
pub use drain::DrainReport;
pub use error::{DaemonClientError, DaemonClientErrorCode};
pub use heartbeat::HEARTBEAT_COMMAND;
pub use options::{
    ClusterDaemonClientOptions, DaemonCredentials, EnrollmentOptions, HandlerPoolOptions,
    HeartbeatOptions, PasswordProvider, PayloadFactory, SocketOptions,
};
pub use pending::PendingCommand;
pub use proxy::{ProxyCredentials, ProxyOptions};
pub(crate) use shared::Shared;
pub use stats::{ClientStats, LatencyStats, ReverseCommandStats};
pub use tls::{ClientIdentity, TlsOptions};
pub use volt_protocol::message::{TeamClusterDaemonMessage, TunnelStatus};
// The codec lives in its own crate; inside the client it reads as a module.
pub use reverse_channel::{CommandContext, CommandResult, HandlerError, ReverseChannelHandler};
use volt_protocol as protocol;
