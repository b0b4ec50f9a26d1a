//! The socket, below the connection: opening it (`transport.rs`: DNS, TCP,
//! TLS, the WebSocket upgrade, Engine.IO open), the shared socket that
//! callers borrow for inline reads (`socket.rs`), and the outbox senders
//! append to and may write themselves (`outbox.rs`).
//!
//! It knows nothing of commands, handlers or the session: the pending table
//! and the handler pool write through the outbox, and the connection drives
//! the socket, so both sit above this layer and neither is needed here.

mod head;
pub(crate) mod outbox;
pub(crate) mod socket;
pub(crate) mod transport;

pub(crate) use outbox::{Flush, Frames, Outbox, OutboxError};
