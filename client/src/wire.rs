//! The live socket and its read state, under one lock, shared by the
//! connection thread and callers that write (or read) on their own thread.
//!
//! Normally `volt-conn` is the only reader: it sleeps in `mio::Poll` with
//! read interest on the socket. But a caller whose command is alone in
//! flight writes it itself, and when the server runs on the same core it
//! has usually answered before that write returns (the server preempts the
//! writer). Letting `volt-conn` read that reply and wake the caller costs
//! two more context switches than the round trip needs. So such a caller
//! *lends* the socket for the duration of its write: the socket leaves the
//! poll (no wake-up for `volt-conn`), the caller reads once, takes the
//! plain `command-response`s it finds, and puts the socket back, which
//! reports anything left unread to `volt-conn` (see [`Wire::read_inline`]).
//! A connection where that rarely finds a reply (a remote server) stops
//! trying, but for a probe now and then.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use mio::{Interest, Registry};
use parking_lot::Mutex;
use tungstenite::WebSocket;

use crate::frame_reader::FrameReader;
use crate::protocol::Decoder;
use crate::transport::{Stream, SOCKET};

/// The socket and what reading it needs; only ever touched under
/// [`SharedSocket::wire`]'s lock, for non-blocking I/O only.
pub(crate) struct Wire {
    pub(crate) ws: WebSocket<Stream>,
    /// The server's frames (tungstenite only reads up to the open packet).
    pub(crate) reader: FrameReader,
    pub(crate) decoder: Decoder,
    /// What the socket is registered for in the connection thread's poll.
    interest: Option<Interest>,
}

/// The socket, shared by the connection thread and direct writers. Every
/// operation under its lock is non-blocking I/O on a non-blocking socket,
/// so the lock is only ever held briefly, and writers only `try_lock` it.
pub(crate) struct SharedSocket {
    pub(crate) wire: Mutex<Wire>,
    /// A flush would block: writers must queue, and the connection thread
    /// stops draining until the socket is writable again (bounded memory).
    blocked: AtomicBool,
    /// The connection thread's poll registry.
    registry: Registry,
    /// The namespace events arrive on.
    namespace: String,
    /// `None` when callers never read (TLS: a read may leave decrypted
    /// bytes inside the TLS stream, which no poll would report).
    inline: Option<InlineHits>,
    /// Putting the socket back in the poll failed: the connection thread
    /// ends the connection.
    broken: AtomicBool,
}

/// How often reading on the caller's thread found a reply.
#[derive(Default)]
struct InlineHits {
    /// Attempts in a row that found nothing.
    misses: AtomicU32,
    /// Attempts skipped since the last probe.
    skipped: AtomicU32,
}

/// Misses in a row after which a connection only probes.
const MISSES_BEFORE_PROBING: u32 = 8;
/// While probing, one attempt per this many chances.
const PROBE_EVERY: u32 = 64;

impl InlineHits {
    fn should_try(&self) -> bool {
        if self.misses.load(Ordering::Relaxed) < MISSES_BEFORE_PROBING {
            return true;
        }
        self.skipped.fetch_add(1, Ordering::Relaxed) % PROBE_EVERY == PROBE_EVERY - 1
    }

    fn record(&self, hit: bool) {
        if hit {
            self.misses.store(0, Ordering::Relaxed);
        } else {
            let misses = self.misses.load(Ordering::Relaxed);
            self.misses
                .store(misses.saturating_add(1), Ordering::Relaxed);
        }
    }
}

impl SharedSocket {
    /// Takes over an open socket registered in `registry`'s poll; from
    /// here on it is registered for reading only (writability only while
    /// a flush is blocked: a writable socket would otherwise wake the
    /// poll each time its registration changes).
    pub(crate) fn new(
        mut ws: WebSocket<Stream>,
        reader: FrameReader,
        decoder: Decoder,
        registry: Registry,
        namespace: &str,
    ) -> io::Result<Arc<Self>> {
        let inline = ws.get_mut().is_plain().then(InlineHits::default);
        let mut wire = Wire {
            ws,
            reader,
            decoder,
            interest: Some(Interest::READABLE | Interest::WRITABLE),
        };
        wire.set_interest(&registry, Some(Interest::READABLE))?;
        Ok(Arc::new(SharedSocket {
            wire: Mutex::new(wire),
            blocked: AtomicBool::new(false),
            registry,
            namespace: namespace.to_owned(),
            inline,
            broken: AtomicBool::new(false),
        }))
    }

    pub(crate) fn is_blocked(&self) -> bool {
        self.blocked.load(Ordering::Acquire)
    }

    /// The socket could not be put back in the poll: end the connection.
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// Flushes tungstenite's frames and the stream's buffer; a would-block
    /// leaves the rest buffered and marks the socket blocked until a later
    /// flush gets through.
    pub(crate) fn flush(&self, wire: &mut Wire) -> Result<(), tungstenite::Error> {
        let blocked = match wire.ws.flush() {
            Ok(()) => false,
            Err(e) if is_would_block(&e) => true,
            Err(e) => return Err(e),
        };
        if self.blocked.swap(blocked, Ordering::AcqRel) != blocked {
            wire.set_interest(&self.registry, Some(self.interest(blocked)))
                .map_err(tungstenite::Error::Io)?;
        }
        Ok(())
    }

    fn interest(&self, blocked: bool) -> Interest {
        if blocked {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        }
    }

    /// Takes the socket out of the connection thread's poll before a write
    /// whose reply this caller reads itself ([`read_inline`]); false when
    /// it should not (TLS, a blocked socket, or replies rarely come that
    /// fast on this connection).
    ///
    /// [`read_inline`]: SharedSocket::read_inline
    pub(crate) fn lend(&self, wire: &mut Wire) -> bool {
        let Some(hits) = &self.inline else {
            return false;
        };
        !self.is_blocked() && hits.should_try() && wire.set_interest(&self.registry, None).is_ok()
    }

    /// After [`lend`](Self::lend) and the write: reads once, hands each
    /// whole `command-response` text frame at the front of what was read
    /// to `on_json` (the event array; true when it took it), and puts the
    /// socket back in the poll. Whatever is left — other frames, a partial
    /// one, the end of the stream — is for the connection thread: bytes
    /// still in the socket are reported by the re-registration itself,
    /// bytes already read are reported by the returned flag (wake it).
    #[must_use = "true: the connection thread must be woken for frames left in the reader"]
    pub(crate) fn read_inline(&self, wire: &mut Wire, on_json: impl FnMut(&str) -> bool) -> bool {
        let mut on_json = on_json;
        let mut took = false;
        let read = wire.reader.fill(wire.ws.get_mut());
        if matches!(read, Ok(n) if n > 0) {
            let Wire {
                reader, decoder, ..
            } = &mut *wire;
            while reader.take_text_if(|text| {
                decoder
                    .event_json(text, &self.namespace)
                    .is_some_and(&mut on_json)
            }) {
                took = true;
            }
        }
        if let Some(hits) = &self.inline {
            hits.record(took);
        }
        let back = Some(self.interest(self.is_blocked()));
        if let Err(e) = wire.set_interest(&self.registry, back) {
            log::error!("putting the socket back in the poll failed: {e}");
            self.broken.store(true, Ordering::Release);
            return true;
        }
        wire.reader.has_unread()
    }

    /// Takes the socket out of the poll for good (the connection is over).
    pub(crate) fn deregister(&self) {
        let _ = self.wire.lock().set_interest(&self.registry, None);
    }
}

impl Wire {
    fn set_interest(&mut self, registry: &Registry, want: Option<Interest>) -> io::Result<()> {
        if want == self.interest {
            return Ok(());
        }
        let tcp = self.ws.get_mut().tcp();
        match (self.interest, want) {
            (None, Some(i)) => registry.register(tcp, SOCKET, i)?,
            (Some(_), Some(i)) => registry.reregister(tcp, SOCKET, i)?,
            (Some(_), None) => registry.deregister(tcp)?,
            (None, None) => {}
        }
        self.interest = want;
        Ok(())
    }
}

pub(crate) fn is_would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::time::{Duration, Instant};

    use mio::{Events, Poll};
    use tungstenite::protocol::Role;

    use super::*;
    use crate::frame_reader::Message;
    use crate::protocol::Limits;

    const LIMIT: Duration = Duration::from_secs(10);

    /// A final, unmasked (server) text frame.
    fn text_frame(text: &str) -> Vec<u8> {
        let len = text.len();
        let mut out = vec![0x81];
        if len < 126 {
            out.push(len as u8);
        } else {
            out.push(126);
            out.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
        }
        out.extend_from_slice(text.as_bytes());
        out
    }

    fn reply(id: &str) -> String {
        format!(r#"["command-response",{{"requestId":"{id}","ok":true}}]"#)
    }

    /// A connected socket in a poll, and the server's end.
    fn pair() -> (Poll, Arc<SharedSocket>, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.set_nonblocking(true).unwrap();
        let poll = Poll::new().unwrap();
        let mut tcp = mio::net::TcpStream::from_std(client);
        let both = Interest::READABLE | Interest::WRITABLE;
        poll.registry().register(&mut tcp, SOCKET, both).unwrap();
        let ws = WebSocket::from_raw_socket(Stream::open_plain(tcp), Role::Client, None);
        let socket = SharedSocket::new(
            ws,
            FrameReader::new(1 << 20),
            Decoder::new(Limits::default()),
            poll.registry().try_clone().unwrap(),
            "/daemon",
        )
        .unwrap();
        (poll, socket, server)
    }

    /// Whether the poll reports the socket readable within `limit`.
    fn reported_readable(poll: &mut Poll, limit: Duration) -> bool {
        let mut events = Events::with_capacity(8);
        let until = Instant::now() + limit;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            poll.poll(&mut events, Some(left)).unwrap();
            if events
                .iter()
                .any(|e| e.token() == SOCKET && e.is_readable())
            {
                return true;
            }
        }
        false
    }

    /// Waits until at least `bytes` have arrived, without reading them.
    fn wait_arrived(wire: &mut Wire, bytes: usize) {
        let mut buf = vec![0u8; bytes];
        let until = Instant::now() + LIMIT;
        while wire.ws.get_mut().tcp().peek(&mut buf).unwrap_or(0) < bytes {
            assert!(Instant::now() < until, "{bytes} bytes never arrived");
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_caller_takes_only_the_replies_at_the_front_and_leaves_the_rest_in_order() {
        let (mut poll, socket, mut server) = pair();
        let frames = [
            format!("42/daemon,{}", reply("a")),
            format!("42/daemon,{}", reply("b")),
            r#"42/daemon,["message",{"x":1}]"#.to_owned(),
            format!("42/daemon,{}", reply("c")),
        ];
        let bytes: Vec<u8> = frames.iter().flat_map(|f| text_frame(f)).collect();
        server.write_all(&bytes).unwrap();
        assert!(reported_readable(&mut poll, LIMIT));
        let mut wire = socket.wire.lock();
        wait_arrived(&mut wire, bytes.len());

        assert!(socket.lend(&mut wire));
        let mut taken = Vec::new();
        let left_unread = socket.read_inline(&mut wire, |json| {
            let reply = json.starts_with(r#"["command-response""#);
            if reply {
                taken.push(json.to_owned());
            }
            reply
        });

        assert_eq!(taken, [reply("a"), reply("b")]);
        assert!(left_unread, "the connection thread must be told");
        for rest in &frames[2..] {
            assert_eq!(wire.reader.next().unwrap(), Some(Message::Text(rest)));
        }
        assert_eq!(wire.reader.next().unwrap(), None);
    }

    #[test]
    fn bytes_that_arrive_while_the_socket_is_lent_are_reported_when_it_goes_back() {
        let (mut poll, socket, mut server) = pair();
        let mut wire = socket.wire.lock();
        assert!(socket.lend(&mut wire));
        // More than one read takes: some stays in the socket.
        let message = format!(r#"42/daemon,["message","{}"]"#, "x".repeat(8000));
        let bytes: Vec<u8> = (0..8).flat_map(|_| text_frame(&message)).collect();
        server.write_all(&bytes).unwrap();
        wait_arrived(&mut wire, bytes.len());

        let left_unread = socket.read_inline(&mut wire, |_| false);

        assert!(left_unread);
        assert!(
            reported_readable(&mut poll, LIMIT),
            "what is still in the socket must wake the connection thread"
        );
    }

    #[test]
    fn a_connection_where_replies_never_come_at_once_only_probes() {
        let hits = InlineHits::default();
        for _ in 0..MISSES_BEFORE_PROBING {
            assert!(hits.should_try());
            hits.record(false);
        }
        let tries = (0..10 * PROBE_EVERY).filter(|_| hits.should_try()).count();
        assert_eq!(tries, 10);
        hits.record(true);
        assert!((0..5).all(|_| hits.should_try()), "a hit resumes trying");
    }
}
