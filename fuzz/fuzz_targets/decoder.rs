//! A byte stream split into WebSocket frames (see `volt_fuzz::split_frames`)
//! fed to one `Decoder`: nothing may panic, every VOLT event that comes
//! out must survive encode → decode, and the hot path
//! (`Decoder::event_fast_path`) must agree with the general path whenever it
//! answers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use volt_protocol::{Decoder, Incoming};
use volt_fuzz::{check_packet, split_frames, Frame};

fuzz_target!(|data: &[u8]| {
    let (limits, frames) = split_frames(data);
    let mut d = Decoder::new(limits);
    for f in frames {
        let got = match f {
            Frame::Text(t) => {
                volt_fuzz::check_fast_path(&d, &t);
                d.text(&t)
            }
            Frame::Binary(b) => d.binary(b.to_vec()),
        };
        if let Ok(Some(Incoming::Packet(c))) = got {
            check_packet(c);
        }
    }
});
