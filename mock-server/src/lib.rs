//! A mock VOLT control-plane server: a real socket.io v5 / Engine.IO v4
//! server over WebSocket (as far as any client can tell) speaking the VOLT
//! daemon protocol, with an HTTP admin API on the same port and an
//! in-process API ([`ServerHandle`]) for Rust tests.
//!
//! Architecture: one `mio` event-loop thread (`event_loop`) owns every
//! connection (`conn`: the sockets and their WebSocket I/O) and the
//! server's state (`state`: sessions, registrations, responders, faults,
//! enrollment, history, reply reassembly). The state does no I/O: each
//! input is a method call, and what the server must do in answer (frames
//! to write, connections to close, timers to arm) comes back as actions
//! the loop carries out. The loop reads each request head itself and
//! either upgrades it (plain `ws`: in the loop; `wss`: after a TLS
//! handshake on a short-lived thread) or hands it to a short-lived HTTP
//! thread (`http`: admin API, enrollment, error answers). Other threads
//! reach the loop through a [`ServerHandle`] (`handle`), whose typed calls
//! run on the loop thread. Timers live in a heap that sets the poll
//! timeout. Writes are buffered and flushed once per wake.
//!
//! Modules import in one direction only:
//! `state` ← `handle` ← `http` ← `event_loop` ← `server`.
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
pub mod cli;
mod config;
mod conn;
mod event_loop;
mod events;
mod handle;
mod head;
mod http;
mod model;
mod server;
mod start_error;
mod state;
mod stream;
mod timers;
mod tls;
mod wire;

pub use config::{ServerConfig, TlsConfig};
pub use events::EventLog;
pub use handle::ServerHandle;
pub use model::{
    epoch_ms, DaemonInfo, Direction, DispatchError, EnrollmentSettings, Faults, FrameRecord,
    RawFrame, RejectRegistration, Responder, ReverseReply, ServerEvent, Stats,
};
pub use server::Server;
pub use start_error::StartError;
pub use volt_protocol::envelope::{CommandRequest, ErrorBody};
