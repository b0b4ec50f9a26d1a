//! Opening the control socket: DNS, TCP, TLS, the WebSocket upgrade and the
//! Engine.IO open packet, all on non-blocking sockets driven by the
//! connection thread's `mio::Poll`, so `disconnect()` interrupts any step.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use tungstenite::handshake::HandshakeError;
use tungstenite::protocol::WebSocketConfig;

use super::head::HeadGather;
use crate::endpoint::Target;
use crate::error::DaemonClientError;
use crate::options::SocketOptions;
use crate::protocol::engine::{EnginePacket, Handshake};
use crate::protocol::websocket::{FrameReader, Message};
use crate::tls::TlsOptions;

/// Bytes read from the socket per read call.
const READ_BUFFER: usize = 16 * 1024;

/// The poll token of the waker.
pub(crate) const WAKER: Token = Token(0);
/// The poll token of the socket.
pub(crate) const SOCKET: Token = Token(1);

/// A plain or TLS stream over a non-blocking mio socket.
///
/// Once the WebSocket is open, writes are buffered here: `write` always
/// takes the whole buffer (what the socket does not accept now is kept, in
/// order), and `flush` reports `WouldBlock` until all of it is out. So
/// every frame (commands from callers or `volt-conn`, pongs, close) goes
/// through one byte queue and frames are never interleaved, whoever wrote
/// first and however the socket splits them.
pub(crate) struct Stream {
    io: RawStream,
    /// Bytes accepted but not yet taken by the socket.
    out: Vec<u8>,
    /// How much of `out` is already written.
    out_pos: usize,
    /// Off during the handshake, whose writer handles partial writes itself.
    buffered: bool,
    /// Everything read during the handshake: tungstenite may read past the
    /// response head, and those bytes are the first frames, which
    /// `FrameReader` reads from here on.
    recorded: Option<Vec<u8>>,
    /// The response head, gathered whole before tungstenite reads it.
    head: HeadGather,
}

enum RawStream {
    Plain(TcpStream),
    Tls(Box<crate::tls::TlsStream<TcpStream>>),
}

/// Above this, a drained write buffer gives its memory back.
const KEEP_OUT_CAPACITY: usize = 1 << 20;

impl Stream {
    fn new(io: RawStream) -> Self {
        Stream {
            io,
            out: Vec::new(),
            out_pos: 0,
            buffered: false,
            recorded: Some(Vec::new()),
            head: HeadGather::default(),
        }
    }

    pub(crate) fn tcp(&mut self) -> &mut TcpStream {
        match &mut self.io {
            RawStream::Plain(s) => s,
            RawStream::Tls(s) => s.get_mut(),
        }
    }

    /// An open plain stream, as after the handshake (for tests).
    #[cfg(test)]
    pub(crate) fn open_plain(tcp: TcpStream) -> Self {
        let mut stream = Stream::new(RawStream::Plain(tcp));
        stream.end_handshake();
        stream
    }

    /// Plain TCP (no TLS layer that could hold read bytes of its own).
    pub(crate) fn is_plain(&self) -> bool {
        matches!(self.io, RawStream::Plain(_))
    }

    /// Ends the handshake: from now on writes are buffered, and the bytes
    /// read past the HTTP response head are returned (the first frames).
    fn end_handshake(&mut self) -> Vec<u8> {
        self.buffered = true;
        let mut recorded = self.recorded.take().unwrap_or_default();
        recorded.extend(self.head.take_rest());
        match recorded.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(end) => recorded[end + 4..].to_vec(),
            None => Vec::new(),
        }
    }

    /// Bytes accepted but not yet written to the socket.
    pub(crate) fn unsent(&self) -> usize {
        self.out.len() - self.out_pos
    }

    fn raw_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.io {
            RawStream::Plain(s) => s.write(buf),
            RawStream::Tls(s) => s.write(buf),
        }
    }

    /// Writes as much of `buf` as the socket takes now; how much it took.
    fn write_now(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.raw_write(&buf[done..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// Writes what the buffer holds, as far as the socket takes it.
    fn write_out(&mut self) -> io::Result<()> {
        if self.unsent() == 0 {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let written = self.write_now(&out[self.out_pos..]);
        self.out = out;
        self.out_pos += written?;
        if self.unsent() == 0 {
            self.out.clear();
            self.out_pos = 0;
            if self.out.capacity() > KEEP_OUT_CAPACITY {
                self.out = Vec::new();
            }
        }
        Ok(())
    }

    /// Takes all of `buf`: written now as far as the socket allows, the
    /// rest kept, in order, for [`flush`](Write::flush).
    fn queue(&mut self, buf: &[u8]) -> io::Result<()> {
        let taken = if self.unsent() == 0 {
            self.write_now(buf)?
        } else {
            0
        };
        self.out.extend_from_slice(&buf[taken..]);
        Ok(())
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let raw = |io: &mut RawStream, buf: &mut [u8]| match io {
            RawStream::Plain(s) => s.read(buf),
            RawStream::Tls(s) => s.read(buf),
        };
        let n = if self.recorded.is_some() {
            self.head.read(|b| raw(&mut self.io, b), buf)
        } else {
            raw(&mut self.io, buf)
        }?;
        if let Some(recorded) = &mut self.recorded {
            recorded.extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.buffered {
            return self.raw_write(buf);
        }
        self.queue(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_out()?;
        if self.unsent() > 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match &mut self.io {
            RawStream::Plain(s) => s.flush(),
            RawStream::Tls(s) => s.flush(),
        }
    }
}

/// The thread's poll, its event buffer and the stop flag.
pub(crate) struct Reactor {
    pub(crate) poll: Poll,
    pub(crate) events: Events,
    pub(crate) stop: std::sync::Arc<AtomicBool>,
}

/// Why waiting ended without the socket being ready.
pub(crate) enum Interrupted {
    Stopped,
    Deadline,
}

impl Reactor {
    /// Waits for any event until `deadline`. Errors when stopped or late.
    pub(crate) fn wait(&mut self, deadline: Instant) -> Result<(), Interrupted> {
        if self.stop.load(Ordering::Acquire) {
            return Err(Interrupted::Stopped);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Interrupted::Deadline);
        }
        match self.poll.poll(&mut self.events, Some(deadline - now)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::error!("poll failed: {e}");
                return Err(Interrupted::Stopped);
            }
        }
        if self.stop.load(Ordering::Acquire) {
            return Err(Interrupted::Stopped);
        }
        Ok(())
    }
}

/// An open Engine.IO session.
pub(crate) struct Opened {
    /// The socket, the WebSocket upgrade done: from here on the client
    /// frames and reads WebSocket itself (`volt_protocol::websocket`).
    pub(crate) stream: Stream,
    pub(crate) handshake: Handshake,
    /// Holds whatever followed the open packet.
    pub(crate) reader: FrameReader,
}

fn failed(step: &str, why: impl std::fmt::Display) -> DaemonClientError {
    DaemonClientError::connection(format!("{step} failed: {why}"))
}

fn interrupted(step: &str, i: Interrupted) -> DaemonClientError {
    match i {
        Interrupted::Stopped => {
            DaemonClientError::connection(format!("{step} interrupted by disconnect()"))
        }
        Interrupted::Deadline => {
            DaemonClientError::connection(format!("{step} timed out (connect_timeout)"))
        }
    }
}

/// Opens the socket and reads the Engine.IO open packet, by `deadline`.
pub(crate) fn open(
    reactor: &mut Reactor,
    target: &Target,
    socket: &SocketOptions,
    deadline: Instant,
) -> Result<Opened, DaemonClientError> {
    let tcp = connect_routed(reactor, target, socket, deadline)?;
    let stream = Stream::new(if target.tls {
        RawStream::Tls(Box::new(tls_handshake(
            reactor,
            target,
            &socket.tls,
            tcp,
            deadline,
        )?))
    } else {
        RawStream::Plain(tcp)
    });
    // tungstenite zero-fills its whole read buffer before every read call:
    // 128 KiB by default costs more than the frames it reads at our sizes.
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(socket.max_incoming_frame_bytes))
        .max_frame_size(Some(socket.max_incoming_frame_bytes));
    let mut result =
        tungstenite::client::client_with_config(target.url.as_str(), stream, Some(config));
    let ws = loop {
        match result {
            Ok((ws, _response)) => break ws,
            Err(HandshakeError::Interrupted(mid)) => {
                reactor
                    .wait(deadline)
                    .map_err(|i| interrupted("WebSocket upgrade", i))?;
                result = mid.handshake();
            }
            Err(HandshakeError::Failure(e)) => return Err(failed("WebSocket upgrade", e)),
        }
    };
    // tungstenite ends here: it did the upgrade.
    let mut stream = ws.into_inner();
    let mut reader = FrameReader::new(socket.max_incoming_frame_bytes);
    reader.preload(&stream.end_handshake());
    let handshake = read_open(reactor, &mut stream, &mut reader, deadline)?;
    log::info!(
        "Engine.IO session open (pingInterval {} ms, pingTimeout {} ms, maxPayload {})",
        handshake.ping_interval,
        handshake.ping_timeout,
        handshake.max_payload
    );
    Ok(Opened {
        stream,
        handshake,
        reader,
    })
}

/// TCP to the server, or to the proxy `socket.proxy` picks for it and
/// through its CONNECT tunnel (see `crate::proxy`), by `deadline`.
fn connect_routed(
    reactor: &mut Reactor,
    target: &Target,
    socket: &SocketOptions,
    deadline: Instant,
) -> Result<TcpStream, DaemonClientError> {
    let route = crate::proxy::route(
        &socket.proxy,
        &crate::proxy::env::process,
        target.tls,
        &target.host,
        target.port,
    );
    let Some(proxy) = route.map_err(DaemonClientError::connection)? else {
        return connect_tcp(reactor, &target.host, target.port, deadline);
    };
    let shown = proxy.shown();
    log::debug!(
        "connecting to {}:{} through the proxy {shown}",
        target.host,
        target.port
    );
    let mut tcp = connect_tcp(reactor, &proxy.host, proxy.port, deadline)
        .map_err(|e| DaemonClientError::connection(format!("proxy {shown}: {}", e.message())))?;
    let tunnel =
        crate::proxy::connect::establish(&mut tcp, &proxy, &target.host, target.port, || {
            reactor.wait(deadline)
        });
    tunnel.map_err(|f| match f {
        crate::proxy::connect::Failed::Wait(i) => {
            interrupted(&format!("CONNECT tunnel through the proxy {shown}"), i)
        }
        crate::proxy::connect::Failed::Io(m, _) | crate::proxy::connect::Failed::Refused(m) => {
            DaemonClientError::connection(m)
        }
    })?;
    Ok(tcp)
}

fn connect_tcp(
    reactor: &mut Reactor,
    host: &str,
    port: u16,
    deadline: Instant,
) -> Result<TcpStream, DaemonClientError> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| failed(&format!("DNS lookup of {host}"), e))?
        .collect();
    let mut last = None;
    for addr in addrs {
        match connect_one(reactor, addr, deadline) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| failed("DNS lookup", format!("{host} has no address"))))
}

fn connect_one(
    reactor: &mut Reactor,
    addr: SocketAddr,
    deadline: Instant,
) -> Result<TcpStream, DaemonClientError> {
    let step = format!("TCP connect to {addr}");
    let mut tcp = TcpStream::connect(addr).map_err(|e| failed(&step, e))?;
    reactor
        .poll
        .registry()
        .register(&mut tcp, SOCKET, Interest::READABLE | Interest::WRITABLE)
        .map_err(|e| failed(&step, e))?;
    loop {
        if let Err(i) = reactor.wait(deadline) {
            let _ = reactor.poll.registry().deregister(&mut tcp);
            return Err(interrupted(&step, i));
        }
        match tcp.take_error() {
            Ok(Some(e)) | Err(e) => {
                let _ = reactor.poll.registry().deregister(&mut tcp);
                return Err(failed(&step, e));
            }
            Ok(None) => {}
        }
        match tcp.peer_addr() {
            Ok(_) => {
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => continue,
            Err(e) => {
                let _ = reactor.poll.registry().deregister(&mut tcp);
                return Err(failed(&step, e));
            }
        }
    }
}

fn tls_handshake(
    reactor: &mut Reactor,
    target: &Target,
    tls: &TlsOptions,
    tcp: TcpStream,
    deadline: Instant,
) -> Result<crate::tls::TlsStream<TcpStream>, DaemonClientError> {
    use crate::tls::{Connector, Handshake};
    let connector = Connector::new(tls).map_err(DaemonClientError::connection)?;
    let mut state = connector.connect(&target.host, tcp);
    loop {
        match state {
            Handshake::Done(s) => return Ok(s),
            Handshake::WouldBlock(mid) => {
                reactor
                    .wait(deadline)
                    .map_err(|i| interrupted("TLS handshake", i))?;
                state = mid.handshake();
            }
            Handshake::Failed(e) => {
                return Err(failed(
                    &format!("TLS handshake ({})", crate::tls::BACKEND),
                    e,
                ))
            }
        }
    }
}

fn read_open(
    reactor: &mut Reactor,
    stream: &mut Stream,
    reader: &mut FrameReader,
    deadline: Instant,
) -> Result<Handshake, DaemonClientError> {
    const STEP: &str = "Engine.IO handshake";
    loop {
        match reader.next_message().map_err(|e| failed(STEP, e))? {
            Some(Message::Text(text)) => {
                return match EnginePacket::decode(text) {
                    Ok(EnginePacket::Open(h)) => Ok(h),
                    Ok(_) => Err(failed(STEP, "the first packet is not an open packet")),
                    Err(e) => Err(failed(STEP, e)),
                }
            }
            Some(Message::Binary(_)) => {
                return Err(failed(STEP, "binary frame before the open packet"))
            }
            Some(Message::Close) => return Err(failed(STEP, "the server closed the WebSocket")),
            Some(Message::Ping(_) | Message::Pong) => {}
            None => match reader.fill(stream) {
                Ok(0) => return Err(failed(STEP, "the connection closed")),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    reactor.wait(deadline).map_err(|i| interrupted(STEP, i))?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(failed(STEP, e)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_past_the_response_head_become_the_first_frames() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        // The response head, the open packet, and a ping the server sent
        // right behind it, all arriving in one read.
        let open = b"0{\"sid\":\"s\"}";
        let mut sent = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_vec();
        sent.extend_from_slice(&[0x81, open.len() as u8]);
        sent.extend_from_slice(open);
        sent.extend_from_slice(&[0x81, 1, b'2']);
        server.write_all(&sent).unwrap();
        // Still a blocking socket here: each read waits for the bytes.
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut stream = Stream::new(RawStream::Plain(TcpStream::from_std(client)));
        let mut got = 0;
        let mut buf = [0u8; 256];
        while got < sent.len() {
            got += stream.read(&mut buf).unwrap();
        }
        let mut reader = FrameReader::new(1024);
        reader.preload(&stream.end_handshake());
        assert_eq!(
            reader.next_message().unwrap(),
            Some(Message::Text("0{\"sid\":\"s\"}"))
        );
        assert_eq!(reader.next_message().unwrap(), Some(Message::Text("2")));
        assert_eq!(reader.next_message().unwrap(), None);
    }
}
