//! The way out: an event is written straight to the socket when nobody
//! else is using it (no thread hop, no wake-up: the latency path), or else
//! queued for the connection thread, which writes a whole batch with one
//! flush (the throughput path). The queue is bounded and its wake-up is only
//! paid for when the I/O thread may be asleep.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, SendTimeoutError, Sender};
use mio::Waker;
use parking_lot::Mutex;
use tungstenite::{Message, WebSocket};

use crate::protocol::envelope::Outgoing;
use crate::transport::Stream;

/// The socket, shared by the connection thread and direct writers. Every
/// operation under its lock is non-blocking I/O on a non-blocking socket,
/// so the lock is only ever held briefly, and writers only `try_lock` it.
pub(crate) struct SharedSocket {
    pub(crate) ws: Mutex<WebSocket<Stream>>,
    /// A flush would block: writers must queue, and the connection thread
    /// stops draining until the socket is writable again (bounded memory).
    pub(crate) blocked: AtomicBool,
}

impl SharedSocket {
    pub(crate) fn new(ws: WebSocket<Stream>) -> Arc<Self> {
        Arc::new(SharedSocket {
            ws: Mutex::new(ws),
            blocked: AtomicBool::new(false),
        })
    }

    pub(crate) fn is_blocked(&self) -> bool {
        self.blocked.load(Ordering::Acquire)
    }

    /// Flushes; a would-block leaves the rest buffered and marks the
    /// socket blocked until a later flush gets through.
    pub(crate) fn flush(&self, ws: &mut WebSocket<Stream>) -> Result<(), tungstenite::Error> {
        match ws.flush() {
            Ok(()) => {
                self.blocked.store(false, Ordering::Release);
                Ok(())
            }
            Err(e) if is_would_block(&e) => {
                self.blocked.store(true, Ordering::Release);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

pub(crate) fn is_would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock)
}

/// Buffers one event's frames back to back (a would-block keeps them in
/// tungstenite's buffer for the next flush).
pub(crate) fn write_frames(
    ws: &mut WebSocket<Stream>,
    out: Outgoing,
) -> Result<(), tungstenite::Error> {
    log::trace!("> {}", out.text);
    write_message(ws, Message::text(out.text))?;
    for a in out.attachments {
        log::trace!("> <binary {} bytes>", a.len());
        write_message(ws, Message::binary(a))?;
    }
    Ok(())
}

pub(crate) fn write_message(
    ws: &mut WebSocket<Stream>,
    msg: Message,
) -> Result<(), tungstenite::Error> {
    match ws.write(msg) {
        Err(e) if is_would_block(&e) => Ok(()),
        other => other,
    }
}

/// How many events may wait for the I/O thread. A full queue blocks the
/// sender until its deadline: memory stays bounded when the server stops reading.
pub(crate) const OUTBOX_CAPACITY: usize = 4096;

/// Why an event was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OutboxError {
    /// A frame is larger than the server's `maxPayload`.
    TooLarge { size: usize, max: usize },
    /// The queue stayed full until the deadline.
    Timeout,
    /// The connection is gone.
    Closed,
}

/// The sending side, one per connection; cheap to clone.
#[derive(Clone)]
pub(crate) struct Outbox {
    tx: Sender<Outgoing>,
    waker: Arc<Waker>,
    armed: Arc<AtomicBool>,
    max_payload: usize,
    socket: Arc<SharedSocket>,
}

/// The I/O thread's side.
pub(crate) struct OutboxReceiver {
    rx: Receiver<Outgoing>,
    armed: Arc<AtomicBool>,
}

pub(crate) fn outbox(
    waker: Arc<Waker>,
    max_payload: usize,
    socket: Arc<SharedSocket>,
) -> (Outbox, OutboxReceiver) {
    let (tx, rx) = crossbeam_channel::bounded(OUTBOX_CAPACITY);
    let armed = Arc::new(AtomicBool::new(false));
    (
        Outbox {
            tx,
            waker,
            armed: armed.clone(),
            max_payload,
            socket,
        },
        OutboxReceiver { rx, armed },
    )
}

impl Outbox {
    /// The server's `maxPayload`.
    pub(crate) fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Checks that every frame of `out` fits the server's `maxPayload`.
    pub(crate) fn check_size(&self, out: &Outgoing) -> Result<(), OutboxError> {
        let size = out.largest_frame();
        if size > self.max_payload {
            return Err(OutboxError::TooLarge {
                size,
                max: self.max_payload,
            });
        }
        Ok(())
    }

    /// Sends `out`: written at once when the socket is free and nothing is
    /// queued before it (so one sender's events never overtake each other),
    /// else queued, waiting for room until `deadline`.
    pub(crate) fn send(&self, out: Outgoing, deadline: Instant) -> Result<(), OutboxError> {
        self.send_with(out, deadline, true)
    }

    /// Like [`send`](Self::send); `direct == false` always queues. Under
    /// load the queue is cheaper: one flush for a whole batch instead of a
    /// syscall per event.
    pub(crate) fn send_with(
        &self,
        out: Outgoing,
        deadline: Instant,
        direct: bool,
    ) -> Result<(), OutboxError> {
        self.check_size(&out)?;
        let out = if direct {
            match self.try_write_direct(out) {
                Ok(result) => return result,
                Err(out) => out,
            }
        } else {
            out
        };
        match self.tx.try_send(out) {
            Ok(()) => {}
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => {
                return Err(OutboxError::Closed)
            }
            Err(crossbeam_channel::TrySendError::Full(out)) => {
                // Make sure the I/O thread is draining before we wait on it.
                self.wake();
                match self.tx.send_deadline(out, deadline) {
                    Ok(()) => {}
                    Err(SendTimeoutError::Timeout(_)) => return Err(OutboxError::Timeout),
                    Err(SendTimeoutError::Disconnected(_)) => return Err(OutboxError::Closed),
                }
            }
        }
        self.wake();
        Ok(())
    }

    /// Writes and flushes `out` on the caller's thread if the socket is free,
    /// unblocked and nothing waits in the queue; hands it back otherwise.
    fn try_write_direct(&self, out: Outgoing) -> Result<Result<(), OutboxError>, Outgoing> {
        if !self.tx.is_empty() || self.socket.is_blocked() {
            return Err(out);
        }
        let Some(mut ws) = self.socket.ws.try_lock() else {
            return Err(out);
        };
        // The connection thread drains the queue under this lock, so an
        // empty queue seen here means everything queued earlier is written.
        if !self.tx.is_empty() || self.socket.is_blocked() {
            return Err(out);
        }
        let written = write_frames(&mut ws, out).and_then(|()| self.socket.flush(&mut ws));
        Ok(written.map_err(|e| {
            log::debug!("direct write failed: {e}");
            OutboxError::Closed
        }))
    }

    /// Wakes the I/O thread unless a wake-up is already on its way.
    fn wake(&self) {
        if !self.armed.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
    }
}

impl OutboxReceiver {
    /// Call before draining: later sends will wake the thread again.
    pub(crate) fn disarm(&self) {
        self.armed.store(false, Ordering::SeqCst);
    }

    /// The next queued event, if any.
    pub(crate) fn try_recv(&self) -> Option<Outgoing> {
        self.rx.try_recv().ok()
    }
}
