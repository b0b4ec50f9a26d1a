//! The outbox: the buffer senders append their events to, and how its
//! bytes reach the socket (written by the sender itself, or drained by
//! `volt-conn`).
//!
//! A sender frames its event itself (WebSocket header, mask,
//! payload) straight into one shared byte buffer: nothing is allocated per
//! event, and nothing but bytes crosses threads (a `String` allocated by a
//! caller and freed by the I/O thread costs a contended malloc arena lock).
//! Whoever holds the socket next writes the whole buffer with one syscall:
//! the sender itself when the socket is free and few commands are in flight
//! (latency: no thread hop), else the connection thread, woken once per
//! batch (throughput). The buffer is bounded; senders wait for room until
//! their deadline, and order is the order of appending.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use mio::Waker;
use parking_lot::{Condvar, Mutex};

use super::socket::{SharedSocket, Tell};
use super::transport::Stream;
use crate::protocol::envelope::Outgoing;
use crate::protocol::websocket::{append_frame, MAX_HEADER, OPCODE_BINARY, OPCODE_TEXT};

/// One event's frames, borrowed: a text frame and the binary frames that
/// must follow it back to back.
#[derive(Clone, Copy)]
pub(crate) struct Frames<'a> {
    pub(crate) text: &'a str,
    pub(crate) attachments: &'a [Vec<u8>],
}

impl<'a> From<&'a Outgoing> for Frames<'a> {
    fn from(out: &'a Outgoing) -> Self {
        Frames {
            text: &out.text,
            attachments: &out.attachments,
        }
    }
}

impl Frames<'_> {
    /// The largest frame in bytes (what the server's `maxPayload` limits).
    fn largest(&self) -> usize {
        self.attachments
            .iter()
            .map(Vec::len)
            .fold(self.text.len(), usize::max)
    }

    /// Bytes on the wire, headers included.
    fn wire_len(&self) -> usize {
        let framed = |len: usize| len + MAX_HEADER;
        self.attachments
            .iter()
            .map(|a| framed(a.len()))
            .sum::<usize>()
            + framed(self.text.len())
    }

    /// Appends every frame, masked, to `buf`.
    pub(crate) fn append_to(&self, buf: &mut Vec<u8>) {
        append_frame(buf, OPCODE_TEXT, self.text.as_bytes(), Some(rand::random()));
        for a in self.attachments {
            append_frame(buf, OPCODE_BINARY, a, Some(rand::random()));
        }
    }
}

/// Who writes what a sender appended.
pub(crate) enum Flush<'a> {
    /// The sender, if the socket is free (else the I/O thread, woken).
    Direct,
    /// Like `Direct`, for a command alone in flight: the sender also reads
    /// the socket once right after its write, handing each text frame at
    /// the front to this function (true when it took it), so that a server
    /// that answered at once is answered without a thread hop (socket.rs).
    Inline(&'a mut dyn FnMut(&str) -> bool),
    /// The I/O thread, woken now (unless a wake-up is on its way).
    Wake,
    /// The I/O thread at its next turn, without a wake-up: for when so
    /// many commands are in flight that replies wake it soon anyway, and
    /// it then writes what queued meanwhile in one batch. It never sleeps
    /// longer than [`LAZY_FLUSH_DELAY`](crate::write_policy::LAZY_FLUSH_DELAY)
    /// while that many are in flight.
    Lazy,
}

/// Bytes that may wait for the socket. A sender that finds the buffer full
/// waits for room until its deadline: memory stays bounded when the server
/// stops reading. One event larger than this is still taken, alone.
pub(crate) const OUTBOX_CAPACITY: usize = 1 << 20;

/// Why an event was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OutboxError {
    /// A frame is larger than the server's `maxPayload`.
    TooLarge { size: usize, max: usize },
    /// The buffer stayed full until the deadline.
    Timeout,
    /// The connection is gone.
    Closed,
}

/// The framed bytes waiting for the socket.
#[derive(Default)]
struct Staged {
    bytes: Vec<u8>,
    /// How many frames `bytes` holds: counted by whoever writes them, once
    /// per write, so that appending a command costs no atomic add.
    frames: usize,
    closed: bool,
    /// The I/O thread found nothing here and went to sleep without the
    /// short cap (until a socket event or the next ping). Read and set
    /// under this lock with the bytes, so a lazy sender that appends after
    /// the I/O thread looked always sees it and wakes it: a queued command
    /// never waits for a ping.
    io_asleep_uncapped: bool,
}

struct Queue {
    staged: Mutex<Staged>,
    /// Signalled whenever the buffer is emptied or closed.
    room: Condvar,
    /// A wake-up of the I/O thread is on its way.
    armed: AtomicBool,
}

/// The sending side, one per connection; cheap to clone.
#[derive(Clone)]
pub(crate) struct Outbox {
    queue: Arc<Queue>,
    waker: Arc<Waker>,
    max_payload: usize,
    socket: Arc<SharedSocket>,
}

/// The I/O thread's side. Dropping it closes the outbox.
pub(crate) struct OutboxReceiver {
    queue: Arc<Queue>,
    /// Swapped with the shared buffer: the two circulate, so draining
    /// allocates nothing once both have grown to the working size.
    spare: Vec<u8>,
}

pub(crate) fn outbox(
    waker: Arc<Waker>,
    max_payload: usize,
    socket: Arc<SharedSocket>,
) -> (Outbox, OutboxReceiver) {
    let queue = Arc::new(Queue {
        staged: Mutex::new(Staged::default()),
        room: Condvar::new(),
        armed: AtomicBool::new(false),
    });
    (
        Outbox {
            queue: queue.clone(),
            waker,
            max_payload,
            socket,
        },
        OutboxReceiver {
            queue,
            spare: Vec::new(),
        },
    )
}

impl Outbox {
    /// The client's counters.
    pub(crate) fn stats(&self) -> &crate::stats::Stats {
        &self.socket.stats
    }

    /// The server's `maxPayload`.
    pub(crate) fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Checks that every frame fits the server's `maxPayload`.
    fn check_size(&self, frames: &Frames<'_>) -> Result<(), OutboxError> {
        let size = frames.largest();
        if size > self.max_payload {
            return Err(OutboxError::TooLarge {
                size,
                max: self.max_payload,
            });
        }
        Ok(())
    }

    /// Sends `out`, written at once when the socket is free.
    pub(crate) fn send(&self, out: &Outgoing, deadline: Instant) -> Result<(), OutboxError> {
        self.send_with(out.into(), deadline, Flush::Direct)
    }

    /// Appends `frames` to the buffer, waiting for room until `deadline`;
    /// then `flush` says who writes it. Under load the I/O thread is
    /// cheaper: one syscall for a whole batch instead of one per event.
    pub(crate) fn send_with(
        &self,
        frames: Frames<'_>,
        deadline: Instant,
        flush: Flush<'_>,
    ) -> Result<(), OutboxError> {
        self.check_size(&frames)?;
        let need = frames.wire_len();
        {
            let mut staged = self.queue.staged.lock();
            loop {
                if staged.closed {
                    return Err(OutboxError::Closed);
                }
                if staged.bytes.is_empty() || staged.bytes.len() + need <= OUTBOX_CAPACITY {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(OutboxError::Timeout);
                }
                // Make sure the I/O thread is draining before we wait on it.
                self.wake();
                self.queue.room.wait_until(&mut staged, deadline);
            }
            frames.append_to(&mut staged.bytes);
            staged.frames += 1 + frames.attachments.len();
            if matches!(flush, Flush::Lazy) && std::mem::take(&mut staged.io_asleep_uncapped) {
                // It chose Lazy on a count the I/O thread has drained since.
                drop(staged);
                self.queue.armed.store(true, Ordering::Release);
                let _ = self.waker.wake();
                return Ok(());
            }
        }
        let inline = match flush {
            Flush::Direct => None,
            Flush::Inline(on_json) => Some(on_json),
            Flush::Wake => {
                self.wake();
                return Ok(());
            }
            Flush::Lazy => return Ok(()),
        };
        if let Some(written) = self.try_write_direct(inline) {
            return written;
        }
        self.wake();
        Ok(())
    }

    /// Writes the buffer on the caller's thread if the socket is free and
    /// not blocked (then, with `inline`, reads what answered at once); `None`
    /// when it is not, so the I/O thread must.
    fn try_write_direct(
        &self,
        inline: Option<&mut dyn FnMut(&str) -> bool>,
    ) -> Option<Result<(), OutboxError>> {
        if self.socket.is_blocked() {
            return None;
        }
        let mut wire = self.socket.wire.try_lock()?;
        let inline = match inline {
            Some(on_json) if self.socket.lend(&mut wire) => Some(on_json),
            _ => {
                // Not reading here: replies are for the poll.
                self.socket.reclaim(&mut wire);
                None
            }
        };
        let written = {
            let mut staged = self.queue.staged.lock();
            if staged.bytes.is_empty() {
                // Someone else wrote ours with theirs.
                Ok(())
            } else {
                let stats = &self.socket.stats;
                stats.bytes_out(staged.bytes.len());
                stats.frames_out(std::mem::take(&mut staged.frames));
                let written = wire.stream.write(&staged.bytes).map(drop);
                staged.bytes.clear();
                written
            }
        };
        self.queue.room.notify_all();
        let written = written.and_then(|()| self.socket.flush(&mut wire));
        let tell = inline.map_or(Tell::Nothing, |on_json| {
            self.socket.read_inline(&mut wire, on_json)
        });
        drop(wire);
        if tell == Tell::Wake {
            self.wake();
        }
        Some(written.map_err(|e| {
            log::debug!("direct write failed: {e}");
            // The I/O thread finds the broken socket and fails what is pending.
            self.wake();
            OutboxError::Closed
        }))
    }

    /// Wakes the I/O thread unless a wake-up is already on its way.
    fn wake(&self) {
        if !self.queue.armed.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
    }
}

/// Above this, a drained buffer gives its memory back.
const KEEP_CAPACITY: usize = 2 * OUTBOX_CAPACITY;

impl OutboxReceiver {
    /// Called by the I/O thread before a sleep without the short cap:
    /// false when something is queued (then it must not sleep), else the
    /// next lazy sender wakes it.
    pub(crate) fn sleep_uncapped(&self) -> bool {
        let mut staged = self.queue.staged.lock();
        staged.io_asleep_uncapped = staged.bytes.is_empty();
        staged.io_asleep_uncapped
    }

    /// Moves everything waiting into `stream` (which takes it all, writing
    /// what the socket accepts now); returns how many bytes and frames.
    /// Later sends wake the thread again.
    pub(crate) fn drain_into(&mut self, stream: &mut Stream) -> std::io::Result<(usize, usize)> {
        self.queue.armed.store(false, Ordering::SeqCst);
        let frames = {
            let mut staged = self.queue.staged.lock();
            staged.io_asleep_uncapped = false;
            if staged.bytes.is_empty() {
                return Ok((0, 0));
            }
            std::mem::swap(&mut staged.bytes, &mut self.spare);
            std::mem::take(&mut staged.frames)
        };
        self.queue.room.notify_all();
        let written = stream
            .write(&self.spare)
            .map(|_| (self.spare.len(), frames));
        self.spare.clear();
        if self.spare.capacity() > KEEP_CAPACITY {
            self.spare = Vec::new();
        }
        written
    }
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        {
            let mut staged = self.queue.staged.lock();
            staged.closed = true;
            staged.bytes = Vec::new();
        }
        self.queue.room.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn wire_len_bounds_the_framed_size() {
        let attachments = vec![vec![1u8; 200], vec![2u8; 70_000]];
        let frames = Frames {
            text: "451-[\"x\",{\"_placeholder\":true,\"num\":0}]",
            attachments: &attachments,
        };
        let mut buf = Vec::new();
        frames.append_to(&mut buf);
        assert!(buf.len() <= frames.wire_len());
        assert_eq!(frames.largest(), 70_000);
    }
}
