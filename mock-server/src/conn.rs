//! The connections' I/O: the table of sockets the loop polls (request
//! heads still being read, and WebSockets), with buffered writes flushed
//! once per wake.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};
use volt_protocol::id_hash::IdMap;

use crate::head::{self, Head};
use crate::model::RawFrame;
use crate::stream::Stream;

/// A WebSocket connection.
pub(crate) struct WsConn {
    ws: WebSocket<Stream>,
    /// Our close frame went out (or theirs came): nothing more is written.
    closing: bool,
    dirty: bool,
}

enum ConnKind {
    Head { stream: TcpStream, buf: Vec<u8> },
    Ws(Box<WsConn>),
}

struct Conn {
    peer: SocketAddr,
    kind: ConnKind,
}

/// What reading a request head gave.
pub(crate) enum HeadRead {
    /// Not whole yet.
    Pending,
    /// The peer went away before it ended.
    Eof,
    /// Too large or malformed: answer this status and message.
    Reject(u16, String),
    /// A whole head (the connection left the table): the stream, the bytes
    /// read so far (head and what followed) and the parsed head.
    Done {
        stream: TcpStream,
        peer: SocketAddr,
        buf: Vec<u8>,
        head: Head,
    },
}

/// How a write went.
pub(crate) enum Written {
    /// Queued.
    Queued,
    /// The connection is gone or closing: nothing was written.
    Skipped,
    /// The connection failed (it must be cut), for this reason.
    Failed(&'static str),
}

/// Whether a WebSocket error only says "try again later".
pub(crate) fn would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if io.kind() == io::ErrorKind::WouldBlock)
}

/// Every connection the loop polls, by id (its poll token).
pub(crate) struct Conns {
    registry: Registry,
    map: IdMap<u64, Conn>,
    per_ip: HashMap<IpAddr, usize>,
    dirty: Vec<u64>,
    next_id: u64,
}

impl Conns {
    /// An empty table; ids start at `first_id` (lower tokens are the loop's).
    pub(crate) fn new(registry: Registry, first_id: u64) -> Conns {
        Conns {
            registry,
            map: IdMap::default(),
            per_ip: HashMap::new(),
            dirty: Vec::new(),
            next_id: first_id,
        }
    }

    /// How many connections `ip` has open.
    pub(crate) fn count_of(&self, ip: IpAddr) -> usize {
        self.per_ip.get(&ip).copied().unwrap_or(0)
    }

    /// Every id in the table.
    pub(crate) fn ids(&self) -> Vec<u64> {
        self.map.keys().copied().collect()
    }

    /// Registers a socket with the poll: its new id, counted for its peer's IP.
    pub(crate) fn register(&mut self, fd: &impl AsRawFd, peer: SocketAddr) -> io::Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        self.registry.register(
            &mut SourceFd(&fd.as_raw_fd()),
            Token(id as usize),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        *self.per_ip.entry(peer.ip()).or_insert(0) += 1;
        Ok(id)
    }

    /// Forgets a registered socket that is not in the table.
    pub(crate) fn unregister(&mut self, fd: &impl AsRawFd, peer: SocketAddr) {
        let _ = self.registry.deregister(&mut SourceFd(&fd.as_raw_fd()));
        if let Some(n) = self.per_ip.get_mut(&peer.ip()) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&peer.ip());
            }
        }
    }

    /// Adds a registered socket whose request head is still to be read.
    pub(crate) fn insert_head(&mut self, id: u64, peer: SocketAddr, stream: TcpStream) {
        let kind = ConnKind::Head {
            stream,
            buf: Vec::new(),
        };
        self.map.insert(id, Conn { peer, kind });
    }

    /// Adds a registered socket as a WebSocket.
    pub(crate) fn insert_ws(&mut self, id: u64, peer: SocketAddr, ws: WebSocket<Stream>) {
        let ws = Box::new(WsConn {
            ws,
            closing: false,
            dirty: false,
        });
        let kind = ConnKind::Ws(ws);
        self.map.insert(id, Conn { peer, kind });
    }

    /// Whether `id` is still reading its request head.
    pub(crate) fn is_head(&self, id: u64) -> bool {
        matches!(
            self.map.get(&id).map(|c| &c.kind),
            Some(ConnKind::Head { .. })
        )
    }

    fn ws(&mut self, id: u64) -> Option<&mut WsConn> {
        match self.map.get_mut(&id) {
            Some(Conn {
                kind: ConnKind::Ws(w),
                ..
            }) => Some(w),
            _ => None,
        }
    }

    /// Whether `id` is a WebSocket that is closing.
    pub(crate) fn is_closing(&mut self, id: u64) -> bool {
        self.ws(id).is_some_and(|w| w.closing)
    }

    /// Marks a WebSocket closing (the peer's close frame came).
    pub(crate) fn set_closing(&mut self, id: u64) {
        if let Some(w) = self.ws(id) {
            w.closing = true;
        }
    }

    /// Reads what the head connection `id` has.
    pub(crate) fn read_head(&mut self, id: u64) -> HeadRead {
        let Some(Conn {
            kind: ConnKind::Head { stream, buf },
            ..
        }) = self.map.get_mut(&id)
        else {
            return HeadRead::Pending;
        };
        let eof = read_available(stream, buf);
        let parsed = head::parse_head(buf);
        let too_big = buf.len() > head::MAX_HEAD;
        match parsed {
            Ok(Some(head)) => match self.map.remove(&id) {
                Some(Conn {
                    peer,
                    kind: ConnKind::Head { stream, buf },
                }) => HeadRead::Done {
                    stream,
                    peer,
                    buf,
                    head,
                },
                _ => HeadRead::Pending,
            },
            Ok(None) if too_big => HeadRead::Reject(431, "request head too large".into()),
            Ok(None) if eof => HeadRead::Eof,
            Ok(None) => HeadRead::Pending,
            Err(msg) => HeadRead::Reject(400, msg),
        }
    }

    /// Writes `bytes` to a head connection, best effort (an error answer).
    pub(crate) fn answer_head(&mut self, id: u64, bytes: &[u8]) {
        if let Some(Conn {
            kind: ConnKind::Head { stream, .. },
            ..
        }) = self.map.get_mut(&id)
        {
            let _ = stream.write_all(bytes);
        }
    }

    /// Prepares a readiness-driven read of WebSocket `id` (see
    /// [`Stream::arm_read`]); false when `id` is no WebSocket.
    pub(crate) fn arm_read(&mut self, id: u64, may_skip: bool) -> bool {
        match self.ws(id) {
            Some(w) => {
                w.ws.get_mut().arm_read(may_skip);
                true
            }
            None => false,
        }
    }

    /// Reads the next message of WebSocket `id` (`None`: no such WebSocket).
    pub(crate) fn read(&mut self, id: u64) -> Option<tungstenite::Result<Message>> {
        let w = self.ws(id)?;
        let read = w.ws.read();
        if read.is_ok() {
            // tungstenite may have a pong or close reply to send.
            self.mark_dirty(id);
        }
        Some(read)
    }

    /// Queues a frame on WebSocket `id` (flushed by [`Conns::flush_dirty`]).
    pub(crate) fn write(&mut self, id: u64, frame: RawFrame) -> Written {
        let Some(w) = self.ws(id) else {
            return Written::Skipped;
        };
        if w.closing {
            return Written::Skipped;
        }
        let msg = match frame {
            RawFrame::Text(t) => Message::text(t),
            RawFrame::Binary(b) => Message::binary(b),
        };
        // Buffered by tungstenite (it writes through only past its write
        // buffer size).
        match w.ws.write(msg) {
            Ok(()) => {}
            Err(e) if would_block(&e) => {}
            Err(tungstenite::Error::WriteBufferFull(_)) => {
                log::warn!("connection {id}: write buffer full, dropping it");
                return Written::Failed("write buffer full");
            }
            Err(_) => return Written::Failed("transport error"),
        }
        self.mark_dirty(id);
        Written::Queued
    }

    /// Notes that WebSocket `id` has something to flush.
    pub(crate) fn mark_dirty(&mut self, id: u64) {
        if let Some(w) = self.ws(id) {
            if !w.dirty {
                w.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    /// Flushes every WebSocket written to; the ones that ended or failed,
    /// with the reason, go to `ended` (the caller removes them).
    pub(crate) fn flush_dirty(&mut self, ended: &mut Vec<(u64, &'static str)>) {
        while let Some(id) = self.dirty.pop() {
            let Some(w) = self.ws(id) else { continue };
            w.dirty = false;
            match w.ws.flush() {
                Ok(()) => {}
                Err(e) if would_block(&e) => {}
                // Both close frames are through.
                Err(tungstenite::Error::ConnectionClosed) => ended.push((id, "transport close")),
                Err(_) => ended.push((id, "transport error")),
            }
        }
    }

    /// Writes out what is queued on WebSocket `id`, best effort.
    pub(crate) fn flush(&mut self, id: u64) {
        if let Some(w) = self.ws(id) {
            let _ = w.ws.flush();
        }
    }

    /// Sends a close frame (`None`: an empty one) on WebSocket `id`:
    /// true when it started closing now (the caller arms the linger timer).
    pub(crate) fn close(&mut self, id: u64, frame: Option<CloseFrame>) -> bool {
        let Some(w) = self.ws(id) else { return false };
        if w.closing {
            return false;
        }
        w.closing = true;
        let _ = w.ws.close(frame);
        let _ = w.ws.flush();
        true
    }

    /// Forgets a connection: deregisters it and cuts the TCP connection
    /// (no close frame). True when it was a WebSocket.
    pub(crate) fn remove(&mut self, id: u64) -> bool {
        let Some(conn) = self.map.remove(&id) else {
            return false;
        };
        let (tcp, was_ws) = match &conn.kind {
            ConnKind::Head { stream, .. } => (stream, false),
            ConnKind::Ws(w) => (w.ws.get_ref().tcp(), true),
        };
        let _ = tcp.shutdown(Shutdown::Both);
        self.unregister(tcp, conn.peer);
        was_ws
    }
}

/// Reads all `stream` has now into `buf` (stopping past the largest head):
/// true at the end of the stream or on an error.
fn read_available(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return true,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > head::MAX_HEAD {
                    return false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}
