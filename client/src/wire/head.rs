//! Gathering the HTTP response head of the WebSocket upgrade before
//! tungstenite reads any of it.
//!
//! tungstenite's client handshake counts its reads (`AttackCheck`): more
//! than 64 reads averaging under 128 bytes is taken for a slow-loris attack
//! and fails the upgrade with "Attack attempt detected". A 101 response of
//! ~130 bytes that arrives in 1-byte TCP segments is exactly that. So the
//! stream reads the head itself, up to its blank line (bounded), and hands
//! it over in one read: tungstenite then sees one read per head, however the
//! network split it.

use std::io;

/// The largest response head accepted (tungstenite's own limit is 64 KiB).
pub(crate) const MAX_HEAD: usize = 16 * 1024;

/// Bytes read from the socket per read call while gathering.
const CHUNK: usize = 4096;

/// Holds what was read from the socket until the head is complete, then
/// gives it out; past that, reads go straight to the socket.
#[derive(Debug, Default)]
pub(crate) struct HeadGather {
    /// Bytes read, the head and whatever followed it in the same reads.
    buf: Vec<u8>,
    /// How much of `buf` was given out.
    given: usize,
    /// The head is complete (or the socket reached its end).
    done: bool,
}

impl HeadGather {
    /// Reads into `out` through `src` (the socket's read): nothing until
    /// the head's `\r\n\r\n` has arrived (`WouldBlock` from `src` goes up,
    /// so the caller waits for readiness and calls again), then the head
    /// and what came with it, then `src` directly.
    pub(crate) fn read(
        &mut self,
        mut src: impl FnMut(&mut [u8]) -> io::Result<usize>,
        out: &mut [u8],
    ) -> io::Result<usize> {
        let mut chunk = [0u8; CHUNK];
        while !self.done {
            let n = src(&mut chunk)?;
            // Search from just before the new bytes: the blank line may
            // straddle two reads.
            let from = self.buf.len().saturating_sub(3);
            self.buf.extend_from_slice(&chunk[..n]);
            if n == 0 || self.buf[from..].windows(4).any(|w| w == b"\r\n\r\n") {
                self.done = true;
            } else if self.buf.len() >= MAX_HEAD {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the HTTP response head is over {MAX_HEAD} bytes"),
                ));
            }
        }
        let rest = &self.buf[self.given..];
        if rest.is_empty() {
            return src(out);
        }
        let n = rest.len().min(out.len());
        out[..n].copy_from_slice(&rest[..n]);
        self.given += n;
        Ok(n)
    }

    /// The bytes gathered but not given out yet (they follow what was).
    pub(crate) fn take_rest(&mut self) -> Vec<u8> {
        let rest = self.buf.split_off(self.given.min(self.buf.len()));
        self.buf = Vec::new();
        self.given = 0;
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";

    /// A source that yields `data` one byte per call, `WouldBlock` between
    /// bytes (as a non-blocking socket fed by 1-byte segments), then EOF.
    fn trickle(data: &[u8]) -> impl FnMut(&mut [u8]) -> io::Result<usize> + '_ {
        let mut pos = 0;
        let mut blocked = false;
        move |buf| {
            blocked = !blocked;
            if blocked && pos < data.len() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = usize::from(pos < data.len()).min(buf.len());
            buf[..n].copy_from_slice(&data[pos..pos + n]);
            pos += n;
            Ok(n)
        }
    }

    #[test]
    fn a_head_arriving_byte_by_byte_is_given_out_in_one_read() {
        let mut sent = HEAD.to_vec();
        sent.extend_from_slice(b"frames");
        let mut src = trickle(&sent);
        let mut gather = HeadGather::default();
        let mut out = [0u8; 4096];
        let mut would_block = 0;
        let n = loop {
            match gather.read(&mut src, &mut out) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => would_block += 1,
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(&out[..n], HEAD, "the whole head, in one read");
        assert_eq!(would_block, HEAD.len());
        // Past the head, reads go to the source.
        let mut rest = Vec::new();
        loop {
            match gather.read(&mut src, &mut out) {
                Ok(0) => break,
                Ok(n) => rest.extend_from_slice(&out[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(rest, b"frames");
    }

    #[test]
    fn bytes_gathered_behind_the_head_are_given_out_in_order_or_taken() {
        let mut sent = HEAD.to_vec();
        sent.extend_from_slice(b"0{\"sid\":\"s\"}");
        let mut once = Some(sent.clone());
        let mut src = |buf: &mut [u8]| -> io::Result<usize> {
            let data = once.take().unwrap_or_default();
            buf[..data.len()].copy_from_slice(&data);
            Ok(data.len())
        };
        let mut gather = HeadGather::default();
        let mut out = [0u8; 10];
        assert_eq!(gather.read(&mut src, &mut out).unwrap(), 10);
        assert_eq!(&out, &sent[..10]);
        assert_eq!(gather.take_rest(), &sent[10..]);
        assert!(gather.take_rest().is_empty());
    }

    #[test]
    fn a_head_without_its_blank_line_is_refused_at_the_bound() {
        let mut src = |buf: &mut [u8]| -> io::Result<usize> {
            buf.fill(b'a');
            Ok(buf.len())
        };
        let err = HeadGather::default()
            .read(&mut src, &mut [0u8; 64])
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("over 16384 bytes"), "{err}");
    }

    #[test]
    fn a_connection_that_ends_before_the_blank_line_gives_out_what_came() {
        let mut src = trickle(b"HTTP/1.1 101");
        let mut gather = HeadGather::default();
        let mut out = [0u8; 64];
        let n = loop {
            match gather.read(&mut src, &mut out) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(&out[..n], b"HTTP/1.1 101");
        assert_eq!(gather.read(&mut src, &mut out).unwrap(), 0);
    }
}
