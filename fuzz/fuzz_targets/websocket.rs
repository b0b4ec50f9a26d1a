//! Any bytes as a server's WebSocket stream, fed to `FrameReader` in reads
//! of a size the first byte picks: the reader may refuse the stream but
//! never panics, never hands out a message over its limit, and a refused
//! `take_text_if` leaves the stream exactly as `next_message` sees it.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use volt_protocol::websocket::{FrameReader, Message};

/// Hands out `data` in reads of at most `chunk` bytes.
struct Chunks<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl Read for Chunks<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.chunk.min(self.data.len()).min(buf.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let max = if flags & 1 == 0 { 64 } else { 1 << 20 };
    let try_take = flags & 2 != 0;
    let mut input = Chunks {
        data: rest,
        chunk: usize::from(flags >> 2) + 1,
    };
    let mut reader = FrameReader::new(max);
    loop {
        match reader.fill(&mut input) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        loop {
            if try_take && reader.take_text_if(|t| t.len() % 2 == 0) {
                continue;
            }
            match reader.next_message() {
                Ok(Some(Message::Text(t))) => assert!(t.len() <= max),
                Ok(Some(Message::Binary(b) | Message::Ping(b))) => assert!(b.len() <= max),
                Ok(Some(Message::Pong | Message::Close)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
