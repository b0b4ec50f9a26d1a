//! The frame codec against tungstenite, both ways: tungstenite frames random
//! server sequences (fragmented messages, pings and pongs between fragments,
//! payloads at every length boundary) and our reader, fed in reads split at
//! random points, yields what tungstenite's own reader yields; and what our
//! `append_frame` writes, tungstenite's server reads back as the same
//! messages. Seeded: a failure names its seed and reproduces.

use std::io::{self, Read, Write};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::{Role, WebSocket};
use volt_protocol::websocket::{
    append_frame, FrameReader, Message as Ours, OPCODE_BINARY, OPCODE_PING, OPCODE_TEXT,
};

/// A message, owned, as both readers can report it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Msg {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong,
}

/// Bytes handed out in reads of random sizes; writes (tungstenite's pongs)
/// vanish.
struct Choppy {
    bytes: Vec<u8>,
    at: usize,
    rng: StdRng,
    max_read: usize,
}

impl Read for Choppy {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.bytes.len() - self.at;
        if left == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self
            .rng
            .random_range(1..=self.max_read)
            .min(left)
            .min(buf.len());
        buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Write for Choppy {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

const BOUNDARIES: [usize; 9] = [0, 1, 125, 126, 127, 65_535, 65_536, 65_537, 3];

fn payload(rng: &mut StdRng, text: bool) -> Vec<u8> {
    let len = if rng.random_bool(0.3) {
        BOUNDARIES[rng.random_range(0..BOUNDARIES.len())]
    } else {
        rng.random_range(0..300)
    };
    if text {
        // Multi-byte characters too, so fragment cuts land inside them.
        let chars = ['a', 'é', '€', '𝄞', '"', '\\', '0'];
        let mut s = String::new();
        while s.len() < len {
            s.push(chars[rng.random_range(0..chars.len())]);
        }
        s.into_bytes()
    } else {
        (0..len).map(|_| rng.random()).collect()
    }
}

/// A random server-to-client sequence framed by tungstenite (unmasked).
fn server_sequence(rng: &mut StdRng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.random_range(1..8) {
        let text = rng.random_bool(0.5);
        let body = payload(rng, text);
        let pieces = if body.len() > 1 && rng.random_bool(0.4) {
            rng.random_range(2..5).min(body.len())
        } else {
            1
        };
        let mut cuts: Vec<usize> = (1..pieces)
            .map(|_| rng.random_range(1..body.len()))
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut start = 0;
        let ends: Vec<usize> = cuts.into_iter().chain([body.len()]).collect();
        for (i, end) in ends.iter().enumerate() {
            let data = if i == 0 {
                if text {
                    Data::Text
                } else {
                    Data::Binary
                }
            } else {
                Data::Continue
            };
            let last = i == ends.len() - 1;
            let frame = Frame::message(body[start..*end].to_vec(), OpCode::Data(data), last);
            frame.format(&mut out).unwrap();
            start = *end;
            if !last && rng.random_bool(0.3) {
                let control = if rng.random_bool(0.5) {
                    Frame::ping(payload_small(rng))
                } else {
                    Frame::pong(payload_small(rng))
                };
                control.format(&mut out).unwrap();
            }
        }
    }
    out
}

fn payload_small(rng: &mut StdRng) -> Vec<u8> {
    (0..rng.random_range(0..=125))
        .map(|_| rng.random())
        .collect()
}

fn ours(stream: &mut Choppy) -> Vec<Msg> {
    let mut reader = FrameReader::new(16 << 20);
    let mut got = Vec::new();
    loop {
        while let Some(m) = reader.next_message().expect("valid frames") {
            got.push(match m {
                Ours::Text(t) => Msg::Text(t.to_owned()),
                Ours::Binary(b) => Msg::Binary(b.to_vec()),
                Ours::Ping(p) => Msg::Ping(p.to_vec()),
                Ours::Pong => Msg::Pong,
                Ours::Close => panic!("no close was sent"),
            });
        }
        match reader.fill(stream) {
            Ok(0) => return got,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return got,
            Err(e) => panic!("{e}"),
        }
    }
}

fn tungstenite_reads(stream: Choppy, role: Role) -> Vec<Msg> {
    let mut ws = WebSocket::from_raw_socket(stream, role, None);
    let mut got = Vec::new();
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => got.push(Msg::Text(t.as_str().to_owned())),
            Ok(tungstenite::Message::Binary(b)) => got.push(Msg::Binary(b.to_vec())),
            Ok(tungstenite::Message::Ping(p)) => got.push(Msg::Ping(p.to_vec())),
            Ok(tungstenite::Message::Pong(_)) => got.push(Msg::Pong),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return got,
            Err(e) => panic!("tungstenite: {e}"),
        }
    }
}

fn choppy(bytes: Vec<u8>, seed: u64) -> Choppy {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let max_read = [1, 7, 200, 70_000][rng.random_range(0..4)];
    Choppy {
        bytes,
        at: 0,
        rng,
        max_read,
    }
}

#[test]
fn our_reader_yields_what_tungstenite_reads_from_the_same_split_frames() {
    for seed in 0..200u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let bytes = server_sequence(&mut rng);
        let expected = tungstenite_reads(choppy(bytes.clone(), seed), Role::Client);
        assert!(!expected.is_empty());
        assert_eq!(ours(&mut choppy(bytes, seed)), expected, "seed {seed}");
    }
}

#[test]
fn tungstenite_reads_back_what_append_frame_writes_masked() {
    for seed in 0..200u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut bytes = Vec::new();
        let mut sent = Vec::new();
        for _ in 0..rng.random_range(1..6) {
            let opcode = [OPCODE_TEXT, OPCODE_BINARY, OPCODE_PING][rng.random_range(0..3)];
            let body = if opcode == OPCODE_PING {
                payload_small(&mut rng)
            } else {
                payload(&mut rng, opcode == OPCODE_TEXT)
            };
            append_frame(&mut bytes, opcode, &body, Some(rng.random()));
            sent.push(match opcode {
                OPCODE_TEXT => Msg::Text(String::from_utf8(body).unwrap()),
                OPCODE_BINARY => Msg::Binary(body),
                _ => Msg::Ping(body),
            });
        }
        assert_eq!(
            tungstenite_reads(choppy(bytes, seed), Role::Server),
            sent,
            "seed {seed}"
        );
    }
}
