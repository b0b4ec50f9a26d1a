//! Reading the server's WebSocket frames (RFC 6455 §5) ourselves, once the
//! connection is open. tungstenite's reader zero-fills its buffer before
//! every read, checks and copies each frame into a fresh `Bytes`, and its
//! messages own their payload; here a frame's payload is borrowed from one
//! reused buffer, and only a fragmented message is copied (into another
//! reused buffer). Parsing is separate from I/O: [`FrameReader::next`]
//! works on what [`FrameReader::fill`] read, and is tested without a socket.

use std::io::{self, Read};

/// Bytes asked of the socket per read (the buffer grows for larger frames).
const READ_CHUNK: usize = 16 * 1024;

/// Above this, an emptied buffer (frames or fragments) gives its memory back.
const KEEP_BUFFER: usize = 1 << 20;

/// A complete message from the server.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Message<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
    /// Must be answered with a pong carrying the same payload.
    Ping(&'a [u8]),
    Pong,
    Close,
}

/// Why the stream of frames cannot go on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// A frame or message is larger than the limit.
    TooLarge { size: u64, max: usize },
    /// A text message is not UTF-8.
    NotUtf8,
    /// Anything else RFC 6455 forbids (the reason says what).
    Protocol(&'static str),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge { size, max } => {
                write!(f, "a {size}-byte message is over the {max}-byte limit")
            }
            FrameError::NotUtf8 => f.write_str("text frame is not valid UTF-8"),
            FrameError::Protocol(why) => f.write_str(why),
        }
    }
}

/// Frames in, messages out.
pub(crate) struct FrameReader {
    /// Always fully initialized (`len` is the capacity in use), so reads go
    /// straight into it without zero-filling again.
    buf: Vec<u8>,
    /// Unparsed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// A fragmented message being assembled: its opcode and bytes so far.
    partial: Option<u8>,
    assembled: Vec<u8>,
    max_message: usize,
}

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// One parsed frame: where its payload sits in `buf`.
struct Frame {
    fin: bool,
    opcode: u8,
    payload: std::ops::Range<usize>,
}

impl FrameReader {
    /// A reader that refuses frames and messages over `max_message` bytes.
    pub(crate) fn new(max_message: usize) -> Self {
        FrameReader {
            buf: Vec::new(),
            start: 0,
            end: 0,
            partial: None,
            assembled: Vec::new(),
            max_message,
        }
    }

    /// Adds bytes already read elsewhere (what followed the handshake).
    pub(crate) fn preload(&mut self, bytes: &[u8]) {
        self.make_room();
        if self.buf.len() - self.end < bytes.len() {
            self.buf.resize(self.end + bytes.len(), 0);
        }
        self.buf[self.end..self.end + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
    }

    /// Reads once from `stream` into the buffer; `Ok(0)` is the end of
    /// the stream.
    pub(crate) fn fill(&mut self, stream: &mut impl Read) -> io::Result<usize> {
        self.make_room();
        let n = stream.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Ensures at least [`READ_CHUNK`] free bytes after `end`, moving the
    /// unparsed bytes to the front first.
    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            // A large frame grew the buffer; do not keep that memory.
            if self.buf.len() > KEEP_BUFFER {
                self.buf = vec![0; 2 * READ_CHUNK];
            }
        }
        if self.buf.len() - self.end >= READ_CHUNK {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < READ_CHUNK {
            let len = (self.end + READ_CHUNK).max(self.buf.len() * 2);
            self.buf.resize(len, 0);
        }
    }

    /// The next complete message in what was read, `Ok(None)` when more
    /// bytes are needed.
    pub(crate) fn next(&mut self) -> Result<Option<Message<'_>>, FrameError> {
        // The last message handed out is done with: a large assembled one
        // gives its memory back.
        if self.partial.is_none() && self.assembled.capacity() > KEEP_BUFFER {
            self.assembled = Vec::new();
        }
        loop {
            let Some(frame) = self.parse()? else {
                return Ok(None);
            };
            match frame.opcode {
                OP_TEXT | OP_BINARY if self.partial.is_some() => {
                    return Err(FrameError::Protocol(
                        "a new message started inside a fragmented one",
                    ))
                }
                OP_TEXT | OP_BINARY if frame.fin => {
                    return message(frame.opcode, &self.buf[frame.payload]).map(Some)
                }
                OP_TEXT | OP_BINARY => {
                    self.partial = Some(frame.opcode);
                    self.assembled.clear();
                    self.assembled.extend_from_slice(&self.buf[frame.payload]);
                }
                OP_CONTINUATION => {
                    let Some(opcode) = self.partial else {
                        return Err(FrameError::Protocol(
                            "a continuation frame without a message to continue",
                        ));
                    };
                    let size = self.assembled.len() + frame.payload.len();
                    if size > self.max_message {
                        return Err(FrameError::TooLarge {
                            size: size as u64,
                            max: self.max_message,
                        });
                    }
                    self.assembled.extend_from_slice(&self.buf[frame.payload]);
                    if frame.fin {
                        self.partial = None;
                        return message(opcode, &self.assembled).map(Some);
                    }
                }
                OP_CLOSE => return Ok(Some(Message::Close)),
                OP_PING => return Ok(Some(Message::Ping(&self.buf[frame.payload]))),
                OP_PONG => return Ok(Some(Message::Pong)),
                _ => return Err(FrameError::Protocol("a frame with a reserved opcode")),
            }
        }
    }

    /// Consumes the next message only if it is one whole text frame that
    /// `take` accepts; anything else (a fragment, a control frame, bytes
    /// that are not a frame yet or not a valid one) stays for
    /// [`next`](Self::next), which reports it exactly as before.
    pub(crate) fn take_text_if(&mut self, take: impl FnOnce(&str) -> bool) -> bool {
        if self.partial.is_some() {
            return false;
        }
        let start = self.start;
        let taken = match self.parse() {
            Ok(Some(frame)) if frame.fin && frame.opcode == OP_TEXT => {
                std::str::from_utf8(&self.buf[frame.payload]).is_ok_and(take)
            }
            _ => false,
        };
        if !taken {
            self.start = start;
        }
        taken
    }

    /// Whether bytes were read that no message has consumed yet.
    pub(crate) fn has_unread(&self) -> bool {
        self.start < self.end
    }

    /// The next whole frame in the buffer, consumed; `None` if incomplete.
    fn parse(&mut self) -> Result<Option<Frame>, FrameError> {
        let bytes = &self.buf[self.start..self.end];
        let [b0, b1, ..] = *bytes else {
            return Ok(None);
        };
        if b0 & 0x70 != 0 {
            return Err(FrameError::Protocol("a frame with reserved bits set"));
        }
        if b1 & 0x80 != 0 {
            return Err(FrameError::Protocol("a masked frame from the server"));
        }
        let (fin, opcode) = (b0 & 0x80 != 0, b0 & 0x0F);
        let (len, header) = match b1 & 0x7F {
            126 => match bytes.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(None),
            },
            127 => match bytes.get(2..10) {
                Some(b) => {
                    let mut be = [0u8; 8];
                    be.copy_from_slice(b);
                    (u64::from_be_bytes(be), 10)
                }
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        if opcode & 0x8 != 0 && (!fin || len > 125) {
            return Err(FrameError::Protocol(
                "a control frame fragmented or over 125 bytes",
            ));
        }
        let len = match usize::try_from(len) {
            Ok(len) if len <= self.max_message => len,
            _ => {
                return Err(FrameError::TooLarge {
                    size: len,
                    max: self.max_message,
                })
            }
        };
        if bytes.len() < header + len {
            return Ok(None);
        }
        let payload = self.start + header..self.start + header + len;
        self.start = payload.end;
        Ok(Some(Frame {
            fin,
            opcode,
            payload,
        }))
    }
}

fn message(opcode: u8, payload: &[u8]) -> Result<Message<'_>, FrameError> {
    if opcode == OP_TEXT {
        std::str::from_utf8(payload)
            .map(Message::Text)
            .map_err(|_| FrameError::NotUtf8)
    } else {
        Ok(Message::Binary(payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server frame (unmasked).
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n if n < 126 => out.push(n as u8),
            n if n <= 0xFFFF => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    /// Feeds `bytes` in chunks of `chunk` and collects what comes out.
    fn read_all(bytes: &[u8], chunk: usize, max: usize) -> Result<Vec<String>, FrameError> {
        let mut reader = FrameReader::new(max);
        let mut out = Vec::new();
        for piece in bytes.chunks(chunk.max(1)) {
            let mut src = piece;
            while !src.is_empty() {
                reader.fill(&mut src).unwrap();
                drain(&mut reader, &mut out)?;
            }
        }
        Ok(out)
    }

    fn drain(reader: &mut FrameReader, out: &mut Vec<String>) -> Result<(), FrameError> {
        {
            while let Some(m) = reader.next()? {
                out.push(match m {
                    Message::Text(t) => format!("text:{t}"),
                    Message::Binary(b) => format!("binary:{}", b.len()),
                    Message::Ping(p) => format!("ping:{}", String::from_utf8_lossy(p)),
                    Message::Pong => "pong".into(),
                    Message::Close => "close".into(),
                });
            }
        }
        Ok(())
    }

    fn sample() -> Vec<u8> {
        let mut bytes = frame(true, OP_TEXT, b"42[\"a\"]");
        bytes.extend(frame(true, OP_PING, b"hi"));
        bytes.extend(frame(false, OP_TEXT, b"42[\"frag"));
        bytes.extend(frame(true, OP_PONG, b""));
        bytes.extend(frame(false, OP_CONTINUATION, b"mented"));
        bytes.extend(frame(true, OP_CONTINUATION, b"\"]"));
        bytes.extend(frame(true, OP_BINARY, &vec![7u8; 70_000]));
        bytes.extend(frame(true, OP_TEXT, &[b'x'; 300]));
        bytes.extend(frame(true, OP_CLOSE, &[3, 232]));
        bytes
    }

    #[test]
    fn take_text_if_consumes_only_an_accepted_whole_text_frame() {
        let mut bytes = frame(true, OP_TEXT, b"first");
        bytes.extend(frame(true, OP_TEXT, b"second"));
        bytes.extend(frame(true, OP_PING, b"p"));
        bytes.extend(frame(false, OP_TEXT, b"frag"));
        bytes.extend(frame(true, OP_CONTINUATION, b"ment"));
        bytes.extend(frame(true, OP_TEXT, b"last"));
        let cut = bytes.len() - 2;
        let mut reader = FrameReader::new(1024);
        reader.fill(&mut &bytes[..cut]).unwrap();

        assert!(reader.take_text_if(|t| t == "first"));
        assert!(!reader.take_text_if(|t| t == "other"), "refused: kept");
        assert_eq!(reader.next().unwrap(), Some(Message::Text("second")));
        assert!(!reader.take_text_if(|_| true), "a ping is not taken");
        assert_eq!(reader.next().unwrap(), Some(Message::Ping(b"p")));
        assert!(!reader.take_text_if(|_| true), "a fragment is not taken");
        assert_eq!(reader.next().unwrap(), Some(Message::Text("fragment")));
        assert!(!reader.take_text_if(|_| true), "an incomplete frame");
        assert!(reader.has_unread());
        reader.fill(&mut &bytes[cut..]).unwrap();
        assert!(reader.take_text_if(|t| t == "last"));
        assert!(!reader.has_unread());
    }

    #[test]
    fn messages_come_out_whole_however_the_bytes_are_split() {
        let expected = vec![
            "text:42[\"a\"]".to_string(),
            "ping:hi".into(),
            "pong".into(),
            "text:42[\"fragmented\"]".into(),
            "binary:70000".into(),
            format!("text:{}", "x".repeat(300)),
            "close".into(),
        ];
        for chunk in [1, 2, 3, 7, 100, 4096, 1 << 20] {
            assert_eq!(
                read_all(&sample(), chunk, 1 << 20).unwrap(),
                expected,
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn violations_are_errors_not_panics() {
        let cases: Vec<(Vec<u8>, FrameError)> = vec![
            (
                vec![0x81 | 0x40, 0],
                FrameError::Protocol("a frame with reserved bits set"),
            ),
            (
                vec![0x81, 0x80, 1, 2, 3, 4],
                FrameError::Protocol("a masked frame from the server"),
            ),
            (
                frame(true, 0x3, b""),
                FrameError::Protocol("a frame with a reserved opcode"),
            ),
            (
                frame(false, OP_PING, b""),
                FrameError::Protocol("a control frame fragmented or over 125 bytes"),
            ),
            (
                frame(true, OP_PING, &[0; 126]),
                FrameError::Protocol("a control frame fragmented or over 125 bytes"),
            ),
            (
                frame(true, OP_CONTINUATION, b"x"),
                FrameError::Protocol("a continuation frame without a message to continue"),
            ),
            (
                [frame(false, OP_TEXT, b"a"), frame(true, OP_TEXT, b"b")].concat(),
                FrameError::Protocol("a new message started inside a fragmented one"),
            ),
            (frame(true, OP_TEXT, &[0xFF, 0xFE]), FrameError::NotUtf8),
            (
                frame(true, OP_BINARY, &[0; 101]),
                FrameError::TooLarge {
                    size: 101,
                    max: 100,
                },
            ),
            (
                [
                    frame(false, OP_BINARY, &[0; 60]),
                    frame(true, OP_CONTINUATION, &[0; 60]),
                ]
                .concat(),
                FrameError::TooLarge {
                    size: 120,
                    max: 100,
                },
            ),
            (
                vec![0x82, 127, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
                FrameError::TooLarge {
                    size: u64::MAX,
                    max: 100,
                },
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                read_all(&bytes, 1 << 10, 100).unwrap_err(),
                want,
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        for _ in 0..2000 {
            let len = rng.random_range(0..64);
            let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let _ = read_all(&bytes, rng.random_range(1..8), 1 << 12);
        }
    }

    #[test]
    fn memory_grown_for_a_large_message_is_given_back() {
        let mut reader = FrameReader::new(8 << 20);
        let big = [
            frame(false, OP_BINARY, &vec![1u8; 3 << 20]),
            frame(true, OP_CONTINUATION, &[2u8; 10]),
        ]
        .concat();
        let mut src = &big[..];
        let mut got = None;
        while got.is_none() {
            reader.fill(&mut src).unwrap();
            got = match reader.next().unwrap() {
                Some(Message::Binary(b)) => Some(b.len()),
                _ => None,
            };
        }
        assert_eq!(got, Some((3 << 20) + 10));
        let small = frame(true, OP_TEXT, b"2");
        let mut src = &small[..];
        reader.fill(&mut src).unwrap();
        assert_eq!(reader.next().unwrap(), Some(Message::Text("2")));
        assert!(reader.buf.len() <= KEEP_BUFFER, "{}", reader.buf.len());
        assert!(reader.assembled.capacity() <= KEEP_BUFFER);
    }

    #[test]
    fn the_buffer_is_reused_not_grown_by_many_small_frames() {
        let mut reader = FrameReader::new(1 << 20);
        let one = frame(true, OP_TEXT, b"42[\"command-response\",{}]");
        for _ in 0..10_000 {
            let mut src = &one[..];
            reader.fill(&mut src).unwrap();
            assert!(matches!(reader.next(), Ok(Some(Message::Text(_)))));
        }
        assert!(reader.buf.len() <= 2 * READ_CHUNK, "{}", reader.buf.len());
    }
}
