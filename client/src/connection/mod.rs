//! The connection, all on the `volt-conn` thread: the supervisor (connect,
//! register, serve, back off, reconnect), the I/O loop's session (its
//! writing half included) with its reader, and the pure state machine that
//! says what each inbound packet means. The socket it drives (opening it, sharing it with
//! callers, the outbox) is the layer below, `crate::wire`.
//!
//! One thread does both reading and writing because a TLS stream cannot be
//! split: the thread sleeps in `mio::Poll`, woken by the socket or by the
//! outbox's waker, reads until the socket would block, then drains the
//! outbox (`crate::wire::outbox`) in one batch and flushes once.

mod failover;
mod reader;
mod session;
mod state;
mod supervisor;

pub(crate) use supervisor::{reactor, spawn, ConnContext};
