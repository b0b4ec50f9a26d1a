//! The first byte picks an event name, the rest is the event's argument
//! (JSON when it parses, else a JSON string) and up to two attachments:
//! `VoltEvent::from_args` may fail but not panic, and what it accepts must
//! survive encode → decode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use volt_protocol::envelope::VoltEvent;
use volt_fuzz::{assert_event_round_trips, has_float};

const NAMES: &[&str] = &[
    "command",
    "command-response",
    "reverse-command",
    "reverse-response",
    "reverse-stream",
    "reverse-stream-end",
    "message",
    "unknown",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let name = NAMES[usize::from(selector) % NAMES.len()];
    // Bits 3..=4: how many attachments, cut from the end of the input.
    let n_attachments = usize::from((selector >> 3) & 3).min(2);
    let mut text = rest;
    let mut attachments = Vec::new();
    for _ in 0..n_attachments {
        let cut = text.len().saturating_sub(4);
        attachments.push(text[cut..].to_vec());
        text = &text[..cut];
    }
    let text = String::from_utf8_lossy(text);
    let arg = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text.into_owned()));
    let floaty = has_float(&arg);
    if let Ok(event) = VoltEvent::from_args(name, arg, attachments) {
        if !floaty {
            assert_event_round_trips(&event);
        }
    }
});
