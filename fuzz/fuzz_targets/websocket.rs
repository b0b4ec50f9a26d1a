//! Any bytes as a server's WebSocket stream: `FrameReader` may refuse them
//! but not panic, and what it reads must not depend on how the stream was
//! cut into reads, nor on `take_text_if` being asked first.
//!
//! Input: `flags` (bit 0: a 300-byte message limit, else 64 KiB), `cuts`
//! (seed of the read sizes, 1..=64 bytes), `takes` (bit i: try
//! `take_text_if` before the i-th message, cyclic), then the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use volt_protocol::websocket::{FrameError, FrameReader, Message};

/// A message with its payload owned, to compare two readers' output.
#[derive(Debug, PartialEq, Eq)]
enum Owned {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    Close,
}

impl From<Message<'_>> for Owned {
    fn from(m: Message<'_>) -> Self {
        match m {
            Message::Text(t) => Owned::Text(t.to_owned()),
            Message::Binary(b) => Owned::Binary(b.to_vec()),
            Message::Ping(p) => Owned::Ping(p.to_vec()),
            Message::Pong => Owned::Pong,
            Message::Close => Owned::Close,
        }
    }
}

/// The messages of `stream` read all at once, then the error if any.
fn in_one_read(stream: &[u8], max: usize) -> (Vec<Owned>, Option<FrameError>) {
    let mut reader = FrameReader::new(max);
    reader.preload(stream);
    let mut out = Vec::new();
    loop {
        match reader.next_message() {
            Ok(Some(m)) => out.push(m.into()),
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e)),
        }
    }
}

/// The same, read in small pieces, trying `take_text_if` where `takes`
/// says so (a taken text counts as that message).
fn in_pieces(stream: &[u8], max: usize, cuts: u8, takes: u8) -> (Vec<Owned>, Option<FrameError>) {
    let mut reader = FrameReader::new(max);
    let mut out = Vec::new();
    let mut rest = stream;
    let mut cut = u32::from(cuts);
    loop {
        // A small LCG: varied read sizes from one input byte.
        cut = cut.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = (((cut >> 16) % 64) as usize + 1).min(rest.len());
        let (piece, next) = rest.split_at(n);
        rest = next;
        let mut src = piece;
        while !src.is_empty() {
            reader.fill(&mut src).expect("reading a slice cannot fail");
        }
        loop {
            if takes & (1 << (out.len() % 8)) != 0 {
                let mut taken = None;
                if reader.take_text_if(|t| {
                    taken = Some(t.to_owned());
                    true
                }) {
                    out.push(Owned::Text(taken.expect("take saw the text")));
                    continue;
                }
            }
            match reader.next_message() {
                Ok(Some(m)) => out.push(m.into()),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
        if rest.is_empty() {
            return (out, None);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [flags, cuts, takes, stream @ ..] = data else {
        return;
    };
    let max = if flags & 1 == 1 { 300 } else { 1 << 16 };
    let whole = in_one_read(stream, max);
    let pieces = in_pieces(stream, max, *cuts, *takes);
    assert_eq!(whole, pieces, "one read and pieces disagree");
});
