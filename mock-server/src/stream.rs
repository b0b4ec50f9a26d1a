//! The byte stream under a WebSocket: plain TCP or TLS over TCP, with bytes
//! that must go out before anything else (the `101` response).

use std::io::{self, Read, Write};
use std::net::TcpStream;

/// Plain TCP or TLS over TCP.
pub(crate) enum Transport {
    Plain(TcpStream),
    Tls(Box<crate::tls::TlsStream>),
}

impl Transport {
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(s) => s.get_ref(),
        }
    }
}

/// A transport plus a prefix of bytes written before anything else.
pub(crate) struct Stream {
    transport: Transport,
    prefix: Vec<u8>,
    prefix_pos: usize,
    /// A short plain read emptied the socket: until the next readiness
    /// event, reads would block, so they report it without a syscall.
    drained: bool,
    /// Whether a short read may set `drained` (see [`Stream::arm_read`]).
    may_skip: bool,
}

impl Stream {
    pub(crate) fn new(transport: Transport, prefix: Vec<u8>) -> Self {
        Stream {
            transport,
            prefix,
            prefix_pos: 0,
            drained: false,
            may_skip: false,
        }
    }

    /// Before reading on a readiness event. A TCP read shorter than asked
    /// empties the socket; with edge-triggered polling, anything arriving
    /// later raises a new event, so the read that would only say
    /// `WouldBlock` can be skipped. Not when the event already reported
    /// the end of the stream (`read_closed`: no new event would follow),
    /// nor for TLS, whose reads say nothing about the socket.
    pub(crate) fn arm_read(&mut self, may_skip: bool) {
        self.drained = false;
        self.may_skip = may_skip && matches!(self.transport, Transport::Plain(_));
    }

    pub(crate) fn tcp(&self) -> &TcpStream {
        self.transport.tcp()
    }

    fn write_raw(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.transport {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(s) => s.write(buf),
        }
    }

    /// Writes what is left of the prefix; `Ok(true)` once it is all out.
    fn drain_prefix(&mut self) -> io::Result<bool> {
        while self.prefix_pos < self.prefix.len() {
            let pos = self.prefix_pos;
            let prefix = std::mem::take(&mut self.prefix);
            let r = self.write_raw(&prefix[pos..]);
            self.prefix = prefix;
            match r {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.prefix_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if !self.prefix.is_empty() {
            self.prefix = Vec::new();
            self.prefix_pos = 0;
        }
        Ok(true)
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.drained {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = match &mut self.transport {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
        }?;
        self.drained = self.may_skip && n > 0 && n < buf.len();
        Ok(n)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.drain_prefix()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.write_raw(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.drain_prefix()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match &mut self.transport {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(s) => s.flush(),
        }
    }
}
