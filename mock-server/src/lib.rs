//! A mock VOLT control-plane server: a real socket.io v5 / Engine.IO v4
//! server over WebSocket (as far as any client can tell) speaking the VOLT
//! daemon protocol, with an HTTP admin API on the same port and an
//! in-process API ([`ServerHandle`]) for Rust tests.
//!
//! Architecture: one `mio` event-loop thread owns every WebSocket
//! connection and all server state; it reads each request head itself and
//! either upgrades it (plain `ws`: in the loop; `wss`: after a TLS handshake
//! on a short-lived thread) or hands it to a short-lived HTTP thread (admin
//! API, enrollment, error answers). Other threads reach the loop by sending
//! closures over a bounded channel and waking it. Engine.IO ping timers live
//! in a timer heap that sets the poll timeout. Writes are buffered and
//! flushed once per wake.
//!
//! ```
//! use std::time::Duration;
//! use volt_mock_server::{DispatchError, Server, ServerConfig};
//! let server = Server::start(ServerConfig::default().cluster("c1", "pw")).unwrap();
//! let err = server.dispatch("c1", "ls", None, Duration::from_millis(100)).unwrap_err();
//! assert_eq!(err, DispatchError::NotConnected("c1".into()));
//! ```
#![cfg(unix)]

mod admission;
mod config;
mod core;
mod events;
mod head;
mod http;
mod model;
mod server;
mod stream;
mod timers;
mod tls;
mod wire;

pub use config::{ServerConfig, TlsConfig};
pub use events::EventLog;
pub use model::{
    epoch_ms, DaemonInfo, Direction, DispatchError, EnrollmentSettings, Faults, FrameRecord,
    RawFrame, RejectRegistration, Responder, ReverseReply, ServerEvent, Stats,
};
pub use server::{Server, ServerHandle, StartError};
pub use volt_protocol::envelope::{CommandRequest, ErrorBody};
