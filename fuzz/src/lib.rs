//! Helpers shared by the fuzz targets: the frame format of the `decoder`
//! target and the round-trip oracles.

use serde_json::Value;
use volt_protocol::binary::Complete;
use volt_protocol::envelope::VoltEvent;
use volt_protocol::{Decoder, Incoming, Limits};

/// Limits small enough that the fuzzer reaches every limit check.
pub fn small_limits() -> Limits {
    Limits {
        max_frame_bytes: 256,
        max_attachments: 3,
        max_namespace_bytes: 16,
    }
}

/// One WebSocket frame of the `decoder` target's input.
#[derive(Debug)]
pub enum Frame<'a> {
    /// A text frame (lossily made UTF-8: a WebSocket text frame always is).
    Text(String),
    /// A binary frame.
    Binary(&'a [u8]),
}

/// Splits the `decoder` target's input into frames.
///
/// Format: `flags` byte (bit 0: small limits), then frames, each
/// `tag` (bit 0: 0 = text, 1 = binary), `len` (u16 little-endian), `len`
/// bytes (cut short at the end of the input).
pub fn split_frames(data: &[u8]) -> (Limits, Vec<Frame<'_>>) {
    let Some((&flags, mut rest)) = data.split_first() else {
        return (Limits::default(), Vec::new());
    };
    let limits = if flags & 1 == 1 {
        small_limits()
    } else {
        Limits::default()
    };
    let mut frames = Vec::new();
    while let [tag, rest2 @ ..] = rest {
        let (len, body) = match rest2 {
            [lo, hi, body @ ..] => (usize::from(u16::from_le_bytes([*lo, *hi])), body),
            _ => (rest2.len(), &[][..]),
        };
        let len = len.min(body.len());
        let (payload, next) = body.split_at(len);
        frames.push(if tag & 1 == 0 {
            Frame::Text(String::from_utf8_lossy(payload).into_owned())
        } else {
            Frame::Binary(payload)
        });
        rest = next;
    }
    (limits, frames)
}

/// Encodes frames in the format [`split_frames`] reads (for seeds).
pub fn join_frames(small: bool, frames: &[Frame<'_>]) -> Vec<u8> {
    let mut out = vec![u8::from(small)];
    for f in frames {
        let (tag, bytes): (u8, &[u8]) = match f {
            Frame::Text(t) => (0, t.as_bytes()),
            Frame::Binary(b) => (1, b),
        };
        out.push(tag);
        out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// Whether `v` holds a float anywhere. serde_json without `float_roundtrip`
/// may read a float back one ULP off, so the oracles skip such values.
pub fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(items) => items.iter().any(has_float),
        Value::Object(fields) => fields.values().any(has_float),
        _ => false,
    }
}

/// The oracle: a decoded event encodes to frames that decode to the same
/// event.
pub fn assert_event_round_trips(event: &VoltEvent) {
    let out = event.clone().encode("/daemon");
    let mut d = Decoder::new(Limits {
        max_frame_bytes: usize::MAX,
        max_attachments: usize::MAX,
        max_namespace_bytes: usize::MAX,
    });
    let mut got = d.text(&out.text).expect("our own text frame decodes");
    for a in out.attachments {
        assert!(got.is_none(), "complete before its last attachment");
        got = d.binary(a).expect("our own binary frame decodes");
    }
    let Some(Incoming::Packet(c)) = got else {
        panic!("our own frames gave {got:?}");
    };
    let back = VoltEvent::from_packet(c).expect("our own event decodes");
    assert_eq!(&back, event, "round trip of {}", out.text);
}

/// Tries a complete packet as a VOLT event and, when it is one (and holds no
/// float), checks the round trip.
pub fn check_packet(c: Complete) {
    let floaty = c.packet.data.as_ref().is_some_and(has_float);
    if let Ok(event) = VoltEvent::from_packet(c) {
        if !floaty {
            assert_event_round_trips(&event);
        }
    }
}

/// Whenever the hot path answers for `text`, it must answer as the general
/// path would (same event, or an error for an error), for both namespaces.
pub fn check_fast_path(d: &Decoder, text: &str) {
    for nsp in ["/daemon", "/"] {
        check_reply_paths(d, text, nsp);
        check_command_ref(d, text, nsp);
        let Some(fast) = d.event_fast_path(text, nsp) else {
            continue;
        };
        let mut general = Decoder::new(d.limits().clone());
        let slow = match general.text(text) {
            Ok(Some(Incoming::Packet(c))) => Some(VoltEvent::from_packet(c)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        };
        match (&fast, &slow) {
            (Ok(a), Some(Ok(b))) => assert_eq!(a, b, "fast and general paths differ on {text:?}"),
            (Err(_), Some(Err(_))) => {}
            _ => panic!("fast path {fast:?} but general path {slow:?} for {text:?}"),
        }
    }
}

/// The mock server's raw `command` read (payload left raw) agrees with
/// the general path whenever it answers.
pub fn check_command_ref(d: &Decoder, text: &str, nsp: &str) {
    use volt_protocol::envelope::decode_command_ref;
    let Some(raw) = d.event_json(text, nsp).and_then(decode_command_ref) else {
        return;
    };
    let mut general = Decoder::new(d.limits().clone());
    let slow = match general.text(text) {
        Ok(Some(Incoming::Packet(c))) => VoltEvent::from_packet(c).ok(),
        _ => None,
    };
    let Some(VoltEvent::Command(slow)) = slow else {
        panic!("raw command read took {text:?}, general path gave {slow:?}");
    };
    assert_eq!(raw.request_id, slow.request_id, "{text:?}");
    assert_eq!(raw.command, slow.command, "{text:?}");
    let payload = raw
        .payload
        .map(|p| serde_json::from_str::<serde_json::Value>(p.get()).expect("raw payload is JSON"));
    assert_eq!(payload, slow.payload, "{text:?}");
}

/// The two `command-response` hot paths (data left raw; the scanner) agree
/// with the general path whenever they answer. The scanner delimits `data`
/// without validating it, so it may take a frame the general path rejects,
/// and then `data` must not parse.
pub fn check_reply_paths(d: &Decoder, text: &str, nsp: &str) {
    use volt_protocol::envelope::{decode_command_response, scan_command_response};
    let Some(json) = d.event_json(text, nsp) else {
        return;
    };
    let mut general = Decoder::new(d.limits().clone());
    let slow = match general.text(text) {
        Ok(Some(Incoming::Packet(c))) => VoltEvent::from_packet(c).ok(),
        _ => None,
    };
    let slow = match slow {
        Some(VoltEvent::CommandResponse(r)) => Some(r),
        _ => None,
    };
    let parse = |raw: Option<&str>| {
        raw.map(serde_json::from_str::<serde_json::Value>)
            .transpose()
            .map(|v| v.filter(|v| !v.is_null()))
    };
    if let Some(raw) = decode_command_response(json) {
        let slow = slow
            .as_ref()
            .unwrap_or_else(|| panic!("raw path took {text:?}, general path did not"));
        assert_eq!(raw.request_id, slow.request_id, "{text:?}");
        assert_eq!(raw.ok, slow.ok, "{text:?}");
        let data = parse(raw.data.map(|d| d.get())).expect("raw data is valid JSON");
        assert_eq!(data, slow.data.clone().filter(|v| !v.is_null()), "{text:?}");
    }
    if let Some(scanned) = scan_command_response(json) {
        match (&slow, parse(scanned.data)) {
            (Some(slow), Ok(data)) => {
                assert_eq!(scanned.request_id, slow.request_id, "{text:?}");
                assert!(slow.ok && slow.error.is_none(), "{text:?}");
                assert_eq!(data, slow.data.clone().filter(|v| !v.is_null()), "{text:?}");
            }
            (None, Err(_)) => {}
            (slow, data) => {
                panic!("scanned {scanned:?} (data {data:?}) but general {slow:?} for {text:?}")
            }
        }
    }
}
