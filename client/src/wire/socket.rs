//! The live socket and its read state, under one lock, shared by the
//! connection thread and callers that write (or read) on their own thread.
//!
//! Normally `volt-conn` is the only reader: it sleeps in `mio::Poll` with
//! read interest on the socket. But a caller whose command is alone in
//! flight writes it itself, and when the server runs on the same core it
//! has usually answered before that write returns (the server preempts the
//! writer). Letting `volt-conn` read that reply and wake the caller costs
//! two more context switches than the round trip needs. So such a caller
//! *borrows* the socket: it takes it out of `volt-conn`'s poll (no wake-up
//! there when the reply lands), writes, reads once, and takes the plain
//! `command-response`s at the front of what it read
//! ([`SharedSocket::read_inline`]). Anything else it leaves, and gives the
//! socket back: re-registering reports bytes still in the socket, and
//! `volt-conn` is woken for frames already read.
//!
//! When it did find its reply, the socket stays *lent*, so that the next
//! command alone in flight skips two `epoll_ctl`s. `volt-conn` then looks
//! at the socket itself every [`LEND_IDLE`] and takes it back once no
//! command borrowed it for that long, or when other commands wait
//! ([`SharedSocket::check_lent`]): while one thread sends command after
//! command, frames the server sends on its own wait at most that long.
//! A connection where replies rarely come that fast (a remote server)
//! stops trying, but for a probe now and then; TLS never tries.

use std::io::{self, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use mio::{Interest, Registry};
use parking_lot::Mutex;

use super::transport::{Stream, SOCKET};
use crate::protocol::websocket::FrameReader;
use crate::protocol::Decoder;
use crate::stats::Stats;
use crate::write_policy::{InlineHits, LEND_IDLE};

/// The socket and what reading it needs; only ever touched under
/// [`SharedSocket::wire`]'s lock, for non-blocking I/O only.
pub(crate) struct Wire {
    pub(crate) stream: Stream,
    /// The server's frames, from the first one after the upgrade response.
    pub(crate) reader: FrameReader,
    pub(crate) decoder: Decoder,
    /// What the socket is registered for in the connection thread's poll.
    interest: Option<Interest>,
    /// Whether callers have it (out of the poll) or `volt-conn` does.
    lending: Lending,
    /// `None` when callers never read (TLS: a read may leave decrypted
    /// bytes inside the TLS stream, which no poll would report).
    inline: Option<InlineHits>,
}

/// Who reads the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lending {
    /// `volt-conn`'s poll reports it.
    Polled,
    /// Out of the poll, lent to callers that read their own replies.
    Lent {
        /// When a caller last used it.
        since: Instant,
        /// `volt-conn` was told of this lending (it must look at it).
        announced: bool,
    },
}

/// What the connection thread must be told after an inline read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tell {
    Nothing,
    /// Frames were left in the reader, or the socket stays lent and the
    /// thread has to start looking at it: wake it.
    Wake,
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
    /// Putting the socket back in the poll failed: the connection thread
    /// ends the connection.
    broken: AtomicBool,
    /// The client's counters (bytes and frames through this socket).
    pub(crate) stats: Arc<Stats>,
}

impl SharedSocket {
    /// Takes over an open socket registered in `registry`'s poll; from
    /// here on it is registered for reading only (writability only while
    /// a flush is blocked: a writable socket would otherwise wake the
    /// poll each time its registration changes).
    pub(crate) fn new(
        stream: Stream,
        reader: FrameReader,
        decoder: Decoder,
        registry: Registry,
        namespace: &str,
        stats: Arc<Stats>,
    ) -> io::Result<Arc<Self>> {
        let inline = stream.is_plain().then(InlineHits::default);
        let mut wire = Wire {
            stream,
            reader,
            decoder,
            interest: Some(Interest::READABLE | Interest::WRITABLE),
            lending: Lending::Polled,
            inline,
        };
        wire.set_interest(&registry, Some(Interest::READABLE))?;
        Ok(Arc::new(SharedSocket {
            wire: Mutex::new(wire),
            blocked: AtomicBool::new(false),
            registry,
            namespace: namespace.to_owned(),
            broken: AtomicBool::new(false),
            stats,
        }))
    }

    pub(crate) fn is_blocked(&self) -> bool {
        self.blocked.load(Ordering::Acquire)
    }

    /// The socket could not be put back in the poll: end the connection.
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// Flushes the stream's buffer; a would-block
    /// leaves the rest buffered and marks the socket blocked until a later
    /// flush gets through.
    pub(crate) fn flush(&self, wire: &mut Wire) -> io::Result<()> {
        let blocked = match wire.stream.flush() {
            Ok(()) => false,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
            Err(e) => return Err(e),
        };
        // Registered for what it now needs (a lent socket goes back).
        if self.blocked.swap(blocked, Ordering::AcqRel) != blocked {
            wire.set_interest(&self.registry, Some(self.interest(blocked)))?;
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

    /// Takes the socket out of the connection thread's poll (unless it is
    /// still lent) before a write whose reply this caller reads itself
    /// ([`read_inline`]); false when it should not (TLS, a blocked socket,
    /// or replies rarely come that fast on this connection).
    ///
    /// [`read_inline`]: SharedSocket::read_inline
    pub(crate) fn lend(&self, wire: &mut Wire) -> bool {
        let Some(hits) = &mut wire.inline else {
            return false;
        };
        if self.is_blocked() || !hits.should_try() {
            self.reclaim(wire);
            return false;
        }
        if wire.lending == Lending::Polled {
            if wire.set_interest(&self.registry, None).is_err() {
                return false;
            }
            wire.lending = Lending::Lent {
                since: Instant::now(),
                announced: false,
            };
        }
        true
    }

    /// After [`lend`](Self::lend) and the write: reads once, and hands each
    /// whole text frame at the front of what was read to `on_json` (the
    /// event array; true when it took it, a `command-response`). When it
    /// took something and nothing is left, the socket stays lent;
    /// otherwise it goes back to the poll, which reports bytes still in
    /// the socket. The connection thread is to be woken as returned.
    #[must_use = "the connection thread may have to be woken"]
    pub(crate) fn read_inline(&self, wire: &mut Wire, on_json: impl FnMut(&str) -> bool) -> Tell {
        let mut on_json = on_json;
        let mut took = false;
        let read = wire.reader.fill(&mut wire.stream);
        if let Ok(n) = read {
            self.stats.bytes_in(n);
        }
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
                self.stats.frames_in(1);
            }
        }
        if let Some(hits) = &mut wire.inline {
            hits.record(took);
        }
        let left = wire.reader.has_unread();
        if took && !left && !self.is_blocked() {
            let announced = matches!(
                wire.lending,
                Lending::Lent {
                    announced: true,
                    ..
                }
            );
            wire.lending = Lending::Lent {
                since: Instant::now(),
                announced: true,
            };
            return if announced { Tell::Nothing } else { Tell::Wake };
        }
        self.reclaim(wire);
        if left || self.is_broken() {
            Tell::Wake
        } else {
            Tell::Nothing
        }
    }

    /// Puts a lent socket back in the poll.
    pub(crate) fn reclaim(&self, wire: &mut Wire) {
        if wire.lending == Lending::Polled {
            return;
        }
        if let Err(e) = wire.set_interest(&self.registry, Some(self.interest(self.is_blocked()))) {
            log::error!("putting the socket back in the poll failed: {e}");
            self.broken.store(true, Ordering::Release);
        }
    }

    /// The connection thread's look at a lent socket, at each of its turns
    /// (it has just read it): takes it back when no caller used it for
    /// [`LEND_IDLE`] or when `others_wait()` (commands whose replies the
    /// thread must read; asked only while lent); else says when to look
    /// again.
    pub(crate) fn check_lent(
        &self,
        wire: &mut Wire,
        others_wait: impl FnOnce() -> bool,
    ) -> Option<Instant> {
        let Lending::Lent { since, .. } = wire.lending else {
            return None;
        };
        let again = since + LEND_IDLE;
        if Instant::now() >= again || others_wait() {
            self.reclaim(wire);
            return None;
        }
        Some(again)
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
        let tcp = self.stream.tcp();
        match (self.interest, want) {
            (None, Some(i)) => registry.register(tcp, SOCKET, i)?,
            (Some(_), Some(i)) => registry.reregister(tcp, SOCKET, i)?,
            (Some(_), None) => registry.deregister(tcp)?,
            (None, None) => {}
        }
        self.interest = want;
        if want.is_some() {
            self.lending = Lending::Polled;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::time::{Duration, Instant};

    use mio::{Events, Poll};

    use super::*;
    use crate::protocol::websocket::Message;
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
        let stream = Stream::open_plain(tcp);
        let socket = SharedSocket::new(
            stream,
            FrameReader::new(1 << 20),
            Decoder::new(Limits::default()),
            poll.registry().try_clone().unwrap(),
            "/daemon",
            Arc::default(),
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
        while wire.stream.tcp().peek(&mut buf).unwrap_or(0) < bytes {
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
        assert_eq!(
            left_unread,
            Tell::Wake,
            "the connection thread must be told"
        );
        assert!(
            (wire.lending == Lending::Polled),
            "frames were left: the socket is back"
        );
        for rest in &frames[2..] {
            assert_eq!(
                wire.reader.next_message().unwrap(),
                Some(Message::Text(rest))
            );
        }
        assert_eq!(wire.reader.next_message().unwrap(), None);
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
        drop(wire);

        assert_eq!(left_unread, Tell::Wake);
        assert!(
            reported_readable(&mut poll, LIMIT),
            "what is still in the socket must wake the connection thread"
        );
    }

    /// Borrows, writes nothing, and reads a reply the server sent.
    fn borrow_for_reply(socket: &SharedSocket, server: &mut std::net::TcpStream, id: &str) -> Tell {
        let bytes = text_frame(&format!("42/daemon,{}", reply(id)));
        server.write_all(&bytes).unwrap();
        let mut wire = socket.wire.lock();
        wait_arrived(&mut wire, bytes.len());
        assert!(socket.lend(&mut wire));
        socket.read_inline(&mut wire, |json| json.contains(id))
    }

    /// What the server sends now wakes the connection thread's poll.
    fn assert_back_in_the_poll(poll: &mut Poll, server: &mut std::net::TcpStream) {
        let frame = text_frame("42/daemon,[\"message\",1]");
        server.write_all(&frame).unwrap();
        assert!(reported_readable(poll, LIMIT), "the socket is not polled");
    }

    #[test]
    fn a_socket_that_served_its_borrower_stays_lent_and_says_so_once() {
        let (_poll, socket, mut server) = pair();
        assert_eq!(borrow_for_reply(&socket, &mut server, "a"), Tell::Wake);
        assert_eq!(borrow_for_reply(&socket, &mut server, "b"), Tell::Nothing);
        let mut wire = socket.wire.lock();
        assert!(matches!(wire.lending, Lending::Lent { .. }));
        assert!(
            socket.check_lent(&mut wire, || false).is_some(),
            "just used: the connection thread looks again later"
        );
    }

    #[test]
    fn the_connection_thread_takes_a_lent_socket_back_when_others_wait() {
        let (mut poll, socket, mut server) = pair();
        assert_eq!(borrow_for_reply(&socket, &mut server, "a"), Tell::Wake);
        let mut wire = socket.wire.lock();
        assert_eq!(socket.check_lent(&mut wire, || true), None);
        drop(wire);
        assert_back_in_the_poll(&mut poll, &mut server);
    }

    #[test]
    fn the_connection_thread_takes_a_lent_socket_back_once_it_goes_unused() {
        let (mut poll, socket, mut server) = pair();
        assert_eq!(borrow_for_reply(&socket, &mut server, "a"), Tell::Wake);
        let until = Instant::now() + LIMIT;
        while socket
            .check_lent(&mut socket.wire.lock(), || false)
            .is_some()
        {
            assert!(Instant::now() < until, "never taken back");
            std::thread::yield_now();
        }
        assert_back_in_the_poll(&mut poll, &mut server);
    }

    #[test]
    fn another_command_written_directly_takes_the_socket_back() {
        let (mut poll, socket, mut server) = pair();
        assert_eq!(borrow_for_reply(&socket, &mut server, "a"), Tell::Wake);
        let (outbox, _rx) = super::super::outbox::outbox(
            Arc::new(mio::Waker::new(poll.registry(), super::super::transport::WAKER).unwrap()),
            1 << 20,
            socket.clone(),
        );
        let frames = super::super::outbox::Frames {
            text: "42/daemon,[\"message\",2]",
            attachments: &[],
        };
        let far = Instant::now() + LIMIT;
        outbox
            .send_with(frames, far, super::super::outbox::Flush::Direct)
            .unwrap();
        assert!(socket.wire.lock().lending == Lending::Polled);
        assert_back_in_the_poll(&mut poll, &mut server);
    }
}
