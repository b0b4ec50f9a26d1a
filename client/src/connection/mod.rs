//! The connection, all on the `volt-conn` thread: the supervisor (connect,
//! register, serve, back off, reconnect), the transport (TCP, TLS, the
//! WebSocket upgrade), the shared socket (lent to callers for inline
//! reads), the I/O loop's session with its reader and writer, and the pure
//! state machine that says what each inbound packet means.
//!
//! One thread does both reading and writing because a TLS stream cannot be
//! split: the thread sleeps in `mio::Poll`, woken by the socket or by the
//! outbox's waker, reads until the socket would block, then drains the
//! outbox (the writer's) in one batch and flushes once.

mod failover;
mod head;
mod reader;
mod session;
mod socket;
mod state;
mod supervisor;
mod transport;
mod writer;

pub(crate) use supervisor::{reactor, spawn, ConnContext};
pub(crate) use writer::{Flush, Frames, Outbox, OutboxError};
