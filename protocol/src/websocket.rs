//! The WebSocket frame codec (RFC 6455 §5), free of I/O: reading a peer's
//! frames into messages, and framing (and masking) outgoing ones.
//!
//! Reading: once the connection is open. tungstenite's reader zero-fills its buffer before
//! every read, checks and copies each frame into a fresh `Bytes`, and its
//! messages own their payload; here a frame's payload is borrowed from one
//! reused buffer, and only a fragmented message is copied (into another
//! reused buffer). Parsing is separate from I/O: [`FrameReader::next_message`]
//! works on what [`FrameReader::fill`] read, and is tested without a socket.

use std::io::{self, Read};

/// Bytes asked of the socket per read (the buffer grows for larger frames).
const READ_CHUNK: usize = 16 * 1024;

/// Above this, an emptied buffer (frames or fragments) gives its memory back.
const KEEP_BUFFER: usize = 1 << 20;

/// A complete message from the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message (UTF-8 checked).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
    /// Must be answered with a pong carrying the same payload.
    Ping(&'a [u8]),
    /// A pong (its payload is of no use to a client).
    Pong,
    /// The peer closes the connection.
    Close,
}

/// Why the stream of frames cannot go on.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// A frame or message is larger than the limit.
    TooLarge {
        /// The size announced or reached, in bytes.
        size: u64,
        /// The limit, in bytes.
        max: usize,
    },
    /// A text message is not UTF-8.
    NotUtf8,
    /// Anything else RFC 6455 forbids (the reason says what).
    Protocol(&'static str),
}

impl std::error::Error for FrameError {}

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
pub struct FrameReader {
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

/// One parsed frame: where its payload sits in `buf`.
struct Frame {
    fin: bool,
    opcode: u8,
    payload: std::ops::Range<usize>,
}

impl FrameReader {
    /// A reader that refuses frames and messages over `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
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
    pub fn preload(&mut self, bytes: &[u8]) {
        self.make_room();
        if self.buf.len() - self.end < bytes.len() {
            self.buf.resize(self.end + bytes.len(), 0);
        }
        self.buf[self.end..self.end + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
    }

    /// Reads once from `stream` into the buffer; `Ok(0)` is the end of
    /// the stream.
    pub fn fill(&mut self, stream: &mut impl Read) -> io::Result<usize> {
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
    pub fn next_message(&mut self) -> Result<Option<Message<'_>>, FrameError> {
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
                OPCODE_TEXT | OPCODE_BINARY if self.partial.is_some() => {
                    return Err(FrameError::Protocol(
                        "a new message started inside a fragmented one",
                    ))
                }
                OPCODE_TEXT | OPCODE_BINARY if frame.fin => {
                    return message(frame.opcode, &self.buf[frame.payload]).map(Some)
                }
                OPCODE_TEXT | OPCODE_BINARY => {
                    self.partial = Some(frame.opcode);
                    self.assembled.clear();
                    self.assembled.extend_from_slice(&self.buf[frame.payload]);
                }
                OPCODE_CONTINUATION => {
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
                OPCODE_CLOSE => return Ok(Some(Message::Close)),
                OPCODE_PING => return Ok(Some(Message::Ping(&self.buf[frame.payload]))),
                OPCODE_PONG => return Ok(Some(Message::Pong)),
                _ => return Err(FrameError::Protocol("a frame with a reserved opcode")),
            }
        }
    }

    /// Consumes the next message only if it is one whole text frame that
    /// `take` accepts; anything else (a fragment, a control frame, bytes
    /// that are not a frame yet or not a valid one) stays for
    /// [`next_message`](Self::next_message), which reports it exactly as before.
    pub fn take_text_if(&mut self, take: impl FnOnce(&str) -> bool) -> bool {
        if self.partial.is_some() {
            return false;
        }
        let start = self.start;
        let taken = match self.parse() {
            Ok(Some(frame)) if frame.fin && frame.opcode == OPCODE_TEXT => {
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
    pub fn has_unread(&self) -> bool {
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
    if opcode == OPCODE_TEXT {
        std::str::from_utf8(payload)
            .map(Message::Text)
            .map_err(|_| FrameError::NotUtf8)
    } else {
        Ok(Message::Binary(payload))
    }
}

/// Opcode of a continuation frame (RFC 6455 §5.2).
pub const OPCODE_CONTINUATION: u8 = 0x0;
/// Opcode of a text frame.
pub const OPCODE_TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const OPCODE_BINARY: u8 = 0x2;
/// Opcode of a close frame.
pub const OPCODE_CLOSE: u8 = 0x8;
/// Opcode of a ping frame.
pub const OPCODE_PING: u8 = 0x9;
/// Opcode of a pong frame.
pub const OPCODE_PONG: u8 = 0xA;

/// A frame's header at most: 2 bytes, 8 of length, 4 of mask.
pub const MAX_HEADER: usize = 14;

/// Appends one final frame (RFC 6455 §5.2) to `buf`: masked with `mask`
/// when a client sends it, unmasked (`None`) when a server does. Byte for
/// byte what tungstenite writes for the same mask.
///
/// ```
/// use volt_protocol::websocket::{append_frame, OPCODE_TEXT};
/// let mut buf = Vec::new();
/// append_frame(&mut buf, OPCODE_TEXT, b"2", None);
/// assert_eq!(buf, [0x81, 0x01, b'2']);
/// ```
pub fn append_frame(buf: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    const MASKED: u8 = 0x80;
    let masked = if mask.is_some() { MASKED } else { 0 };
    buf.reserve(payload.len() + MAX_HEADER);
    buf.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        buf.push(masked | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        buf.push(masked | 126);
        buf.extend_from_slice(&len.to_be_bytes());
    } else {
        buf.push(masked | 127);
        buf.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let start = match mask {
        Some(mask) => {
            buf.extend_from_slice(&mask);
            Some((buf.len(), mask))
        }
        None => None,
    };
    buf.extend_from_slice(payload);
    if let Some((start, mask)) = start {
        apply_mask(&mut buf[start..], mask);
    }
}

/// Appends a pong answering a ping's `payload` (RFC 6455 §5.5.3).
pub fn append_pong(buf: &mut Vec<u8>, payload: &[u8], mask: Option<[u8; 4]>) {
    append_frame(buf, OPCODE_PONG, payload, mask);
}

/// Appends a close frame with no status (RFC 6455 §5.5.1), as
/// tungstenite's `close(None)` does.
pub fn append_close(buf: &mut Vec<u8>, mask: Option<[u8; 4]>) {
    append_frame(buf, OPCODE_CLOSE, &[], mask);
}

/// XORs `data` with the repeated `mask`, eight bytes at a time (masking and
/// unmasking are the same operation).
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // Chunks are 8 bytes, so the remainder starts at mask index 0.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    use tungstenite::protocol::frame::Frame;

    fn tungstenite_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let data = if opcode == OPCODE_TEXT {
            Data::Text
        } else {
            Data::Binary
        };
        let mut frame = Frame::message(payload.to_vec(), OpCode::Data(data), true);
        frame.header_mut().mask = Some(mask);
        let mut out = Vec::new();
        frame.format(&mut out).unwrap();
        out
    }

    #[test]
    fn frames_are_byte_for_byte_what_tungstenite_writes() {
        for len in [0, 1, 7, 8, 9, 125, 126, 127, 1000, 65_535, 65_536, 70_001] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            for opcode in [OPCODE_TEXT, OPCODE_BINARY] {
                let mut ours = Vec::new();
                append_frame(&mut ours, opcode, &payload, Some(rand::random()));
                // The mask is random: read it back from where it sits.
                let at = ours.len() - payload.len() - 4;
                let mask = [ours[at], ours[at + 1], ours[at + 2], ours[at + 3]];
                assert_eq!(ours, tungstenite_frame(opcode, &payload, mask), "len {len}");
            }
        }
    }

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
            while let Some(m) = reader.next_message()? {
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
        let mut bytes = frame(true, OPCODE_TEXT, b"42[\"a\"]");
        bytes.extend(frame(true, OPCODE_PING, b"hi"));
        bytes.extend(frame(false, OPCODE_TEXT, b"42[\"frag"));
        bytes.extend(frame(true, OPCODE_PONG, b""));
        bytes.extend(frame(false, OPCODE_CONTINUATION, b"mented"));
        bytes.extend(frame(true, OPCODE_CONTINUATION, b"\"]"));
        bytes.extend(frame(true, OPCODE_BINARY, &vec![7u8; 70_000]));
        bytes.extend(frame(true, OPCODE_TEXT, &[b'x'; 300]));
        bytes.extend(frame(true, OPCODE_CLOSE, &[3, 232]));
        bytes
    }

    #[test]
    fn take_text_if_consumes_only_an_accepted_whole_text_frame() {
        let mut bytes = frame(true, OPCODE_TEXT, b"first");
        bytes.extend(frame(true, OPCODE_TEXT, b"second"));
        bytes.extend(frame(true, OPCODE_PING, b"p"));
        bytes.extend(frame(false, OPCODE_TEXT, b"frag"));
        bytes.extend(frame(true, OPCODE_CONTINUATION, b"ment"));
        bytes.extend(frame(true, OPCODE_TEXT, b"last"));
        let cut = bytes.len() - 2;
        let mut reader = FrameReader::new(1024);
        reader.fill(&mut &bytes[..cut]).unwrap();

        assert!(reader.take_text_if(|t| t == "first"));
        assert!(!reader.take_text_if(|t| t == "other"), "refused: kept");
        assert_eq!(
            reader.next_message().unwrap(),
            Some(Message::Text("second"))
        );
        assert!(!reader.take_text_if(|_| true), "a ping is not taken");
        assert_eq!(reader.next_message().unwrap(), Some(Message::Ping(b"p")));
        assert!(!reader.take_text_if(|_| true), "a fragment is not taken");
        assert_eq!(
            reader.next_message().unwrap(),
            Some(Message::Text("fragment"))
        );
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
                frame(false, OPCODE_PING, b""),
                FrameError::Protocol("a control frame fragmented or over 125 bytes"),
            ),
            (
                frame(true, OPCODE_PING, &[0; 126]),
                FrameError::Protocol("a control frame fragmented or over 125 bytes"),
            ),
            (
                frame(true, OPCODE_CONTINUATION, b"x"),
                FrameError::Protocol("a continuation frame without a message to continue"),
            ),
            (
                [
                    frame(false, OPCODE_TEXT, b"a"),
                    frame(true, OPCODE_TEXT, b"b"),
                ]
                .concat(),
                FrameError::Protocol("a new message started inside a fragmented one"),
            ),
            (frame(true, OPCODE_TEXT, &[0xFF, 0xFE]), FrameError::NotUtf8),
            (
                frame(true, OPCODE_BINARY, &[0; 101]),
                FrameError::TooLarge {
                    size: 101,
                    max: 100,
                },
            ),
            (
                [
                    frame(false, OPCODE_BINARY, &[0; 60]),
                    frame(true, OPCODE_CONTINUATION, &[0; 60]),
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
            frame(false, OPCODE_BINARY, &vec![1u8; 3 << 20]),
            frame(true, OPCODE_CONTINUATION, &[2u8; 10]),
        ]
        .concat();
        let mut src = &big[..];
        let mut got = None;
        while got.is_none() {
            reader.fill(&mut src).unwrap();
            got = match reader.next_message().unwrap() {
                Some(Message::Binary(b)) => Some(b.len()),
                _ => None,
            };
        }
        assert_eq!(got, Some((3 << 20) + 10));
        let small = frame(true, OPCODE_TEXT, b"2");
        let mut src = &small[..];
        reader.fill(&mut src).unwrap();
        assert_eq!(reader.next_message().unwrap(), Some(Message::Text("2")));
        assert!(reader.buf.len() <= KEEP_BUFFER, "{}", reader.buf.len());
        assert!(reader.assembled.capacity() <= KEEP_BUFFER);
    }

    #[test]
    fn the_buffer_is_reused_not_grown_by_many_small_frames() {
        let mut reader = FrameReader::new(1 << 20);
        let one = frame(true, OPCODE_TEXT, b"42[\"command-response\",{}]");
        for _ in 0..10_000 {
            let mut src = &one[..];
            reader.fill(&mut src).unwrap();
            assert!(matches!(reader.next_message(), Ok(Some(Message::Text(_)))));
        }
        assert!(reader.buf.len() <= 2 * READ_CHUNK, "{}", reader.buf.len());
    }

    #[test]
    fn masking_is_its_own_inverse_at_every_length() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut masked = data.clone();
            apply_mask(&mut masked, [1, 2, 3, 4]);
            for (i, (m, d)) in masked.iter().zip(&data).enumerate() {
                assert_eq!(*m, d ^ [1, 2, 3, 4][i % 4]);
            }
            apply_mask(&mut masked, [1, 2, 3, 4]);
            assert_eq!(masked, data);
        }
    }

    /// What a reader yielded, owned, to compare two reads of one input.
    #[derive(Debug, PartialEq)]
    enum Got {
        Text(String),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong,
        Close,
        Failed(FrameError),
        /// Bytes left unread at the end of the input (an incomplete frame).
        Left(usize),
    }

    fn owned(m: Message<'_>) -> Got {
        match m {
            Message::Text(t) => Got::Text(t.to_owned()),
            Message::Binary(b) => Got::Binary(b.to_vec()),
            Message::Ping(p) => Got::Ping(p.to_vec()),
            Message::Pong => Got::Pong,
            Message::Close => Got::Close,
        }
    }

    /// A socket that hands out its bytes in pieces of random sizes.
    struct Pieces<'a, 'r, R> {
        rest: &'a [u8],
        rng: &'r mut R,
        max_piece: usize,
    }

    impl<R: rand::Rng> Read for Pieces<'_, '_, R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self
                .rng
                .random_range(1..=self.max_piece)
                .min(buf.len())
                .min(self.rest.len());
            buf[..n].copy_from_slice(&self.rest[..n]);
            self.rest = &self.rest[n..];
            Ok(n)
        }
    }

    /// Moves the next message into `out`: `Some(true)` for one,
    /// `Some(false)` when more bytes are needed, `None` when the reading
    /// failed (its error pushed).
    fn step(reader: &mut FrameReader, out: &mut Vec<Got>) -> Option<bool> {
        match reader.next_message() {
            Ok(Some(m)) => out.push(owned(m)),
            Ok(None) => return Some(false),
            Err(e) => {
                out.push(Got::Failed(e));
                return None;
            }
        }
        Some(true)
    }

    /// Reads `bytes` as one preloaded buffer.
    fn read_whole(bytes: &[u8], max_message: usize) -> Vec<Got> {
        let mut reader = FrameReader::new(max_message);
        reader.preload(bytes);
        let mut out = Vec::new();
        loop {
            match step(&mut reader, &mut out) {
                Some(true) => {}
                Some(false) => break,
                None => return out,
            }
        }
        out.push(Got::Left(reader.end - reader.start));
        out
    }

    /// Reads `bytes` in random pieces, sometimes offering each whole text
    /// frame to `take_text_if` first (as a caller reading its own reply
    /// does), and checks after every step that the reader buffers no more
    /// than one incomplete frame and one read.
    fn read_split<R: rand::Rng>(bytes: &[u8], max_message: usize, rng: &mut R) -> Vec<Got> {
        let max_piece = [7, 64, 4096, 40_000][rng.random_range(0..4)];
        let try_take = rng.random_bool(0.5);
        let bound = 2 * (MAX_HEADER + max_message + READ_CHUNK);
        let mut reader = FrameReader::new(max_message);
        let mut rest = bytes;
        let mut out = Vec::new();
        loop {
            loop {
                if try_take && rng.random_bool(0.5) {
                    let accept = rng.random_bool(0.7);
                    let mut taken = None;
                    if reader.take_text_if(|t| {
                        taken = accept.then(|| t.to_owned());
                        accept
                    }) {
                        out.push(Got::Text(taken.expect("taken text")));
                        continue;
                    }
                }
                match step(&mut reader, &mut out) {
                    Some(true) => {}
                    Some(false) => break,
                    None => return out,
                }
            }
            let unread = reader.end - reader.start;
            assert!(unread < MAX_HEADER + max_message, "{unread} bytes unread");
            assert!(reader.assembled.len() <= max_message);
            let mut src = Pieces {
                rest,
                rng: &mut *rng,
                max_piece,
            };
            let n = reader.fill(&mut src).expect("reads from memory");
            rest = src.rest;
            assert!(
                reader.buf.len() <= bound,
                "buffer {} over {bound}",
                reader.buf.len()
            );
            if n == 0 {
                out.push(Got::Left(reader.end - reader.start));
                return out;
            }
        }
    }

    /// A frame header with any bits, in any length form at least as wide
    /// as `len` needs (0: 7 bits, 1: 16 bits, 2: 64 bits).
    fn header(b0: u8, masked: bool, len: u64, form: u8) -> Vec<u8> {
        let m = if masked { 0x80 } else { 0 };
        let mut out = vec![b0];
        match form {
            0 => out.push(m | len as u8),
            1 => {
                out.push(m | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(m | 127);
                out.extend_from_slice(&len.to_be_bytes());
            }
        }
        if masked {
            out.extend_from_slice(&[1, 2, 3, 4]);
        }
        out
    }

    /// A payload length: the length-form boundaries, up to several KiB,
    /// and now and then 64 KiB.
    fn payload_len<R: rand::Rng>(rng: &mut R) -> usize {
        const EDGES: [usize; 10] = [0, 1, 125, 126, 127, 128, 1000, 4095, 4096, 8191];
        match rng.random_range(0..100) {
            0..=39 => EDGES[rng.random_range(0..EDGES.len())],
            40 => [65_535, 65_536][rng.random_range(0..2)],
            41..=69 => rng.random_range(0..200),
            _ => rng.random_range(0..3000),
        }
    }

    fn payload<R: rand::Rng>(rng: &mut R, len: usize, text: bool) -> Vec<u8> {
        if !text || rng.random_bool(0.01) {
            let mut bytes = vec![0u8; len];
            rng.fill_bytes(&mut bytes);
            return bytes;
        }
        let chars = ['a', '{', '"', '\\', 'é', '€', '😀', '\u{0}'];
        let mut s = String::with_capacity(len);
        while s.len() < len {
            let c = chars[rng.random_range(0..chars.len())];
            s.push(if s.len() + c.len_utf8() <= len {
                c
            } else {
                'a'
            });
        }
        s.into_bytes()
    }

    /// Appends one frame, its length in the narrowest form or, now and
    /// then, a wider one.
    fn push_frame<R: rand::Rng>(rng: &mut R, out: &mut Vec<u8>, b0: u8, len: usize, text: bool) {
        let needed = match len {
            0..=125 => 0,
            126..=0xFFFF => 1,
            _ => 2,
        };
        let form = if rng.random_bool(0.1) {
            rng.random_range(needed..=2)
        } else {
            needed
        };
        out.extend(header(b0, false, len as u64, form));
        out.extend(payload(rng, len, text));
    }

    fn push_control<R: rand::Rng>(rng: &mut R, out: &mut Vec<u8>) {
        let opcode = [OPCODE_PING, OPCODE_PONG, OPCODE_PING, OPCODE_CLOSE][rng.random_range(0..4)];
        let len = rng.random_range(0..=125);
        push_frame(rng, out, 0x80 | opcode, len, false);
    }

    /// One frame the reader must refuse: reserved bits, a mask, a
    /// reserved opcode, a fragmented or oversized control frame, or a
    /// continuation with nothing to continue.
    fn push_bad_frame<R: rand::Rng>(rng: &mut R, out: &mut Vec<u8>) {
        let len = rng.random_range(0..300);
        match rng.random_range(0..6) {
            0 => push_frame(rng, out, 0xC0 | OPCODE_TEXT, len, true),
            1 => {
                out.extend(header(
                    0x80 | OPCODE_BINARY,
                    true,
                    len as u64,
                    u8::from(len > 125),
                ));
                out.extend(payload(rng, len, false));
            }
            2 => push_frame(rng, out, 0x80 | 0x3, len, false),
            3 => push_frame(rng, out, OPCODE_PING, 0, false),
            4 => push_frame(rng, out, 0x80 | OPCODE_PING, 126 + len, false),
            _ => push_frame(rng, out, 0x80 | OPCODE_CONTINUATION, len, false),
        }
    }

    /// Appends one message: a whole data frame, a fragmented one with
    /// control frames between its pieces, a control frame, or (rarely) a
    /// frame the reader refuses.
    fn push_message<R: rand::Rng>(rng: &mut R, out: &mut Vec<u8>) {
        let data = [OPCODE_TEXT, OPCODE_BINARY][rng.random_range(0..2)];
        match rng.random_range(0..100) {
            0..=59 => {
                let len = payload_len(rng);
                push_frame(rng, out, 0x80 | data, len, data == OPCODE_TEXT);
            }
            60..=74 => {
                let pieces = rng.random_range(2..5);
                for piece in 0..pieces {
                    let fin = if piece + 1 == pieces { 0x80 } else { 0 };
                    let opcode = if piece == 0 {
                        data
                    } else {
                        OPCODE_CONTINUATION
                    };
                    let len = payload_len(rng) / 2;
                    push_frame(rng, out, fin | opcode, len, data == OPCODE_TEXT);
                    if fin == 0 && rng.random_bool(0.3) {
                        push_control(rng, out);
                    }
                }
            }
            75..=95 => push_control(rng, out),
            _ => push_bad_frame(rng, out),
        }
    }

    /// An input: messages (then maybe corrupted or cut), a huge announced
    /// length, or plain random bytes.
    fn hostile_input<R: rand::Rng>(rng: &mut R) -> Vec<u8> {
        let mut out = Vec::new();
        match rng.random_range(0..10) {
            0 => {
                let len = rng.random_range(0..8192);
                return payload(rng, len, false);
            }
            1 => {
                let len = rng.random_range(1u64 << 20..=u64::MAX);
                out.extend(header(0x82, false, len, 2));
            }
            _ => {}
        }
        let target = rng.random_range(0..16_000);
        while out.len() < target {
            push_message(rng, &mut out);
        }
        if rng.random_bool(0.2) && !out.is_empty() {
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..out.len());
                out[at] ^= 1 << rng.random_range(0..8);
            }
        }
        if rng.random_bool(0.3) {
            out.truncate(rng.random_range(0..=out.len()));
        }
        out
    }

    #[test]
    fn hostile_frames_in_random_splits_never_panic_stay_bounded_and_agree_with_a_whole_read() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_f4a3e5);
        let (mut messages, mut failures, mut long_forms, mut largest) = (0, 0, 0, 0);
        let mut kinds = std::collections::BTreeMap::new();
        for case in 0..3000 {
            let bytes = hostile_input(&mut rng);
            // Mostly room for every message; a small limit now and then.
            let max_message = [1000, 16 * 1024, 70 * 1024, 70 * 1024][rng.random_range(0..4)];
            let whole = read_whole(&bytes, max_message);
            let split = read_split(&bytes, max_message, &mut rng);
            assert_eq!(
                split,
                whole,
                "case {case}: {} bytes, max {max_message}",
                bytes.len()
            );
            largest = largest.max(bytes.len());
            for got in &whole {
                match got {
                    Got::Failed(e) => {
                        failures += 1;
                        let kind = match e {
                            FrameError::TooLarge { .. } => "too large",
                            FrameError::NotUtf8 => "not UTF-8",
                            FrameError::Protocol(_) => "protocol",
                        };
                        *kinds.entry(kind).or_insert(0) += 1;
                    }
                    Got::Left(_) => {}
                    other => {
                        messages += 1;
                        let len = match other {
                            Got::Text(t) => t.len(),
                            Got::Binary(b) => b.len(),
                            _ => 0,
                        };
                        long_forms += usize::from(len > 125);
                    }
                }
            }
        }
        // The inputs reached deep: many messages, long ones among them,
        // and many errors.
        assert!(messages > 10_000, "{messages} messages");
        assert!(long_forms > 3_000, "{long_forms} messages over 125 bytes");
        assert!(failures > 300, "{failures} inputs failed");
        assert!(
            kinds.len() == 3 && kinds.values().all(|&n| n > 50),
            "{kinds:?}"
        );
        assert!(largest > 8_000, "largest input {largest} bytes");
    }
}
