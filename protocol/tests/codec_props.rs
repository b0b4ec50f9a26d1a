//! Property tests for the wire codec: encode → decode round trips for
//! Socket.IO packets and VOLT events, the binary deconstruct/reconstruct
//! pair, and "never panics" for arbitrary frames.
//!
//! Every property runs on a `TestRunner` seeded with a fixed ChaCha seed and
//! no failure persistence, so CI sees the same cases on every run whatever
//! `PROPTEST_*` says (the case count is set explicitly too).

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{Map, Number, Value};
use volt_protocol::binary::{deconstruct, event_packet, reconstruct, BinaryValue};
use volt_protocol::engine::WsFrame;
use volt_protocol::envelope::{
    CommandRequest, CommandResponse, ErrorBody, ReplyBody, ReverseCommand, ReverseResponse,
    ReverseStream, ReverseStreamEnd, VoltEvent,
};
use volt_protocol::message::TeamClusterDaemonMessage as Msg;
use volt_protocol::message::{
    ExposureSnapshot, SessionClose, SessionData, SessionInput, SessionOpen, SessionResize,
    TunnelClose, TunnelData, TunnelOpen, TunnelState, TunnelStatus,
};
use volt_protocol::socket::{Packet, PacketType};
use volt_protocol::{Decoder, Incoming, Limits};

const SEED: [u8; 32] = *b"volt-daemon-client codec props!!";

/// Runs `test` on `cases` values of `strategy`, deterministically.
fn check<S: Strategy>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let config = Config {
        cases,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        max_shrink_iters: 2048,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &SEED));
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
}

// ------------------------------------------------------------- strategies

/// Any string, control characters, quotes, backslashes and astral
/// characters included.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => vec(any::<char>(), 0..12).prop_map(String::from_iter),
        1 => "[\"\\\\/\\x00-\\x1f\u{2028}\u{2029}\u{feff}€😀a-z0-9,\\[\\]{}]{0,12}",
        1 => Just(String::new()),
    ]
    .boxed()
}

/// A number that survives a JSON text round trip exactly.
fn number() -> BoxedStrategy<Number> {
    prop_oneof![
        any::<i64>().prop_map(Number::from),
        any::<u64>().prop_map(Number::from),
        // Quarters are exact in binary, so serde_json reads back the same f64
        // without the `float_roundtrip` feature.
        (any::<i32>(), 0..4i32)
            .prop_map(|(n, q)| { Number::from_f64(f64::from(n) + f64::from(q) / 4.0).unwrap() }),
    ]
    .boxed()
}

/// Any JSON value, depth at most 4 (well under serde_json's limit of 128).
fn json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number().prop_map(Value::Number),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec((text(), inner), 0..4).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
    .boxed()
}

fn json_object() -> impl Strategy<Value = Map<String, Value>> {
    vec((text(), json()), 0..4).prop_map(|kv| kv.into_iter().collect())
}

/// JSON that is not `null` at the top: `Some(null)` in an optional field
/// reads back as `None` (contract: "absent or null → none").
fn json_non_null() -> impl Strategy<Value = Value> {
    json().prop_filter("not null", |v| !v.is_null())
}

fn namespace() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just("/".to_owned()),
        1 => Just("/daemon".to_owned()),
        4 => "/[^,]{0,24}",
    ]
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..64)
}

fn packet() -> impl Strategy<Value = Packet> {
    let event_args = (
        prop_oneof![
            text().prop_map(Value::String),
            number().prop_map(Value::Number)
        ],
        vec(json(), 0..3),
    )
        .prop_map(|(name, rest)| {
            let mut args = vec![name];
            args.extend(rest);
            Value::Array(args)
        });
    let ack_args = vec(json(), 0..3).prop_map(Value::Array);
    let payload = prop_oneof![
        Just((PacketType::Connect, None)),
        json_object().prop_map(|m| (PacketType::Connect, Some(Value::Object(m)))),
        Just((PacketType::Disconnect, None)),
        event_args
            .clone()
            .prop_map(|v| (PacketType::Event, Some(v))),
        ack_args.clone().prop_map(|v| (PacketType::Ack, Some(v))),
        json_object().prop_map(|m| (PacketType::ConnectError, Some(Value::Object(m)))),
        text().prop_map(|s| (PacketType::ConnectError, Some(Value::String(s)))),
        event_args.prop_map(|v| (PacketType::BinaryEvent, Some(v))),
        ack_args.prop_map(|v| (PacketType::BinaryAck, Some(v))),
    ];
    (
        payload,
        namespace(),
        proptest::option::of(any::<u64>()),
        0..=16usize,
    )
        .prop_map(|((packet_type, data), namespace, id, attachments)| Packet {
            packet_type,
            namespace,
            id,
            data,
            attachments: if packet_type.is_binary() {
                attachments
            } else {
                0
            },
        })
}

fn error_body() -> impl Strategy<Value = ErrorBody> {
    (text(), text()).prop_map(|(c, m)| ErrorBody::new(c, m))
}

/// Extra fields for a typed message: keys that no known field uses.
fn extra() -> impl Strategy<Value = Map<String, Value>> {
    vec((text(), json()), 0..3)
        .prop_map(|kv| kv.into_iter().map(|(k, v)| (format!("x-{k}"), v)).collect())
}

fn tunnel_status() -> impl Strategy<Value = TunnelStatus> {
    prop_oneof![
        Just(TunnelStatus::Opening),
        Just(TunnelStatus::Open),
        Just(TunnelStatus::Closed),
        Just(TunnelStatus::Error),
    ]
}

fn message() -> impl Strategy<Value = Msg> {
    let o = || proptest::option::of(text());
    prop_oneof![
        (text(), any::<u32>(), any::<u32>(), o(), extra()).prop_map(|(s, c, r, cmd, x)| {
            Msg::SessionOpen(SessionOpen {
                session_id: s,
                cols: c,
                rows: r,
                command: cmd,
                extra: x,
            })
        }),
        (text(), text(), extra()).prop_map(|(s, b, x)| {
            Msg::SessionInput(SessionInput {
                session_id: s,
                chunk_base64: b,
                extra: x,
            })
        }),
        (text(), text(), extra()).prop_map(|(s, b, x)| {
            Msg::SessionData(SessionData {
                session_id: s,
                chunk_base64: b,
                extra: x,
            })
        }),
        (text(), any::<u32>(), any::<u32>(), extra()).prop_map(|(s, c, r, x)| {
            Msg::SessionResize(SessionResize {
                session_id: s,
                cols: c,
                rows: r,
                extra: x,
            })
        }),
        (text(), o(), extra()).prop_map(|(s, r, x)| {
            Msg::SessionClose(SessionClose {
                session_id: s,
                reason: r,
                extra: x,
            })
        }),
        (text(), text(), any::<u16>(), extra()).prop_map(|(t, h, p, x)| {
            Msg::TunnelOpen(TunnelOpen {
                tunnel_id: t,
                host: h,
                port: p,
                extra: x,
            })
        }),
        (text(), text(), extra()).prop_map(|(t, b, x)| {
            Msg::TunnelData(TunnelData {
                tunnel_id: t,
                chunk_base64: b,
                extra: x,
            })
        }),
        (text(), tunnel_status(), o(), extra()).prop_map(|(t, s, e, x)| {
            Msg::TunnelState(TunnelState {
                tunnel_id: t,
                state: s,
                error: e,
                extra: x,
            })
        }),
        (text(), extra()).prop_map(|(t, x)| Msg::TunnelClose(TunnelClose {
            tunnel_id: t,
            extra: x
        })),
        (vec(json_object(), 0..3), extra()).prop_map(|(e, x)| {
            Msg::ExposureSnapshot(ExposureSnapshot {
                exposures: e,
                extra: x,
            })
        }),
        // An unknown type, kept whole with `type` wherever it stands.
        (text(), json_object(), any::<bool>()).prop_map(|(t, fields, type_first)| {
            let tag = ("type".to_owned(), Value::String(format!("unknown-{t}")));
            let rest = fields.into_iter().filter(|(k, _)| k != "type");
            let m: Map<String, Value> = if type_first {
                std::iter::once(tag).chain(rest).collect()
            } else {
                rest.chain(std::iter::once(tag)).collect()
            };
            Msg::Other(Value::Object(m))
        }),
    ]
}

fn reply_body() -> impl Strategy<Value = ReplyBody> {
    prop_oneof![
        Just(ReplyBody::None),
        json().prop_map(ReplyBody::Data),
        bytes().prop_map(ReplyBody::Body),
        Just(ReplyBody::Stream),
    ]
}

fn volt_event() -> impl Strategy<Value = VoltEvent> {
    prop_oneof![
        (text(), text(), proptest::option::of(json_non_null())).prop_map(|(r, c, p)| {
            VoltEvent::Command(CommandRequest {
                request_id: r,
                command: c,
                payload: p,
            })
        }),
        (
            text(),
            any::<bool>(),
            proptest::option::of(json_non_null()),
            proptest::option::of(error_body())
        )
            .prop_map(|(r, ok, data, error)| {
                VoltEvent::CommandResponse(CommandResponse {
                    request_id: r,
                    ok,
                    data,
                    error,
                })
            }),
        (text(), text(), proptest::option::of(json_non_null())).prop_map(|(r, c, p)| {
            VoltEvent::ReverseCommand(ReverseCommand {
                request_id: r,
                command: c,
                payload: p,
            })
        }),
        (
            text(),
            text(),
            any::<u16>(),
            json_object(),
            reply_body(),
            proptest::option::of(error_body())
        )
            .prop_map(|(r, c, status, headers, body, error)| {
                VoltEvent::ReverseResponse(ReverseResponse {
                    request_id: r,
                    command: c,
                    status,
                    headers,
                    body,
                    error,
                })
            }),
        (text(), any::<u64>(), bytes()).prop_map(|(r, seq, chunk)| {
            VoltEvent::ReverseStream(ReverseStream {
                request_id: r,
                seq,
                chunk,
            })
        }),
        (text(), any::<u64>(), proptest::option::of(error_body())).prop_map(
            |(r, chunks, error)| {
                VoltEvent::ReverseStreamEnd(ReverseStreamEnd {
                    request_id: r,
                    chunks,
                    error,
                })
            }
        ),
        message().prop_map(VoltEvent::Message),
    ]
}

fn binary_value() -> impl Strategy<Value = BinaryValue> {
    let leaf = prop_oneof![
        2 => json().prop_map(BinaryValue::Json),
        1 => bytes().prop_map(BinaryValue::Bytes),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(BinaryValue::Array),
            // Unique keys: a JSON object cannot hold the same key twice.
            btree_map(text(), inner, 0..4)
                .prop_map(|m| BinaryValue::Object(m.into_iter().collect())),
        ]
    })
}

fn has_bytes(v: &BinaryValue) -> bool {
    match v {
        BinaryValue::Json(_) => false,
        BinaryValue::Bytes(_) => true,
        BinaryValue::Array(items) => items.iter().any(has_bytes),
        BinaryValue::Object(fields) => fields.iter().any(|(_, v)| has_bytes(v)),
    }
}

/// The form `reconstruct` gives back: subtrees without buffers collapse to
/// one `Json` value.
fn canonical(v: BinaryValue) -> BinaryValue {
    if !has_bytes(&v) {
        return BinaryValue::Json(deconstruct(v).0);
    }
    match v {
        BinaryValue::Array(items) => BinaryValue::Array(items.into_iter().map(canonical).collect()),
        BinaryValue::Object(fields) => {
            BinaryValue::Object(fields.into_iter().map(|(k, v)| (k, canonical(v))).collect())
        }
        other => other,
    }
}

/// Feeds frames to a decoder and collects the complete packets.
fn feed(d: &mut Decoder, text: &str, binaries: &[Vec<u8>]) -> Result<Incoming, TestCaseError> {
    let mut got = d
        .text(text)
        .map_err(|e| TestCaseError::fail(format!("text: {e}")))?;
    for b in binaries {
        prop_assert!(got.is_none(), "complete before its last attachment");
        got = d
            .binary(b.clone())
            .map_err(|e| TestCaseError::fail(format!("binary: {e}")))?;
    }
    got.ok_or_else(|| TestCaseError::fail("packet never completed"))
}

// ------------------------------------------------------------- properties

#[test]
fn socket_packet_encode_then_decode_is_identity() {
    check(512, packet(), |p| {
        let text = p.encode();
        let back = Packet::decode(&text, &Limits::default())
            .map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(back, p);
        Ok(())
    });
}

#[test]
fn socket_packet_header_plus_json_is_encode() {
    check(128, packet(), |p| {
        let mut header = String::new();
        p.encode_header_into(&mut header);
        let json = p.data.as_ref().map(Value::to_string).unwrap_or_default();
        prop_assert_eq!(format!("{header}{json}"), p.encode());
        Ok(())
    });
}

#[test]
fn volt_event_round_trips_through_the_decoder() {
    check(512, (volt_event(), namespace()), |(event, nsp)| {
        let out = event.clone().encode(&nsp);
        prop_assert!(out.text.starts_with('4'));
        let mut d = Decoder::new(Limits::default());
        let Incoming::Packet(complete) = feed(&mut d, &out.text, &out.attachments)? else {
            return Err(TestCaseError::fail("not a packet"));
        };
        prop_assert_eq!(&complete.packet.namespace, &nsp);
        let back = VoltEvent::from_packet(complete)
            .map_err(|e| TestCaseError::fail(format!("{}: {e}", out.text)))?;
        prop_assert_eq!(back, event);
        Ok(())
    });
}

#[test]
fn volt_events_in_sequence_share_one_decoder() {
    check(64, vec(volt_event(), 1..8), |events| {
        let mut d = Decoder::new(Limits::default());
        for event in events {
            let out = event.clone().encode("/daemon");
            let Incoming::Packet(c) = feed(&mut d, &out.text, &out.attachments)? else {
                return Err(TestCaseError::fail("not a packet"));
            };
            prop_assert_eq!(
                VoltEvent::from_packet(c).map_err(|e| TestCaseError::fail(e.to_string()))?,
                event
            );
        }
        Ok(())
    });
}

#[test]
fn message_value_round_trip() {
    check(256, message(), |m| {
        let v = m
            .to_value()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(
            v.get("type").and_then(Value::as_str),
            Some(m.message_type())
        );
        let back = Msg::from_value(v).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, m);
        Ok(())
    });
}

#[test]
fn deconstruct_then_reconstruct_is_identity() {
    check(256, binary_value(), |v| {
        let expected = canonical(v.clone());
        let (json, buffers) = deconstruct(v);
        let back = reconstruct(json, &buffers).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, expected);
        Ok(())
    });
}

#[test]
fn binary_event_round_trips_through_the_decoder() {
    let args = (text(), vec(binary_value(), 0..3)).prop_map(|(name, rest)| {
        let mut items = vec![BinaryValue::Json(Value::String(name))];
        items.extend(rest);
        BinaryValue::Array(items)
    });
    check(256, (args, namespace()), |(args, nsp)| {
        let expected = canonical(args.clone());
        let (packet, buffers) = event_packet(&nsp, args);
        prop_assert_eq!(packet.attachments, buffers.len());
        prop_assert_eq!(packet.packet_type.is_binary(), !buffers.is_empty());
        let text = format!("4{}", packet.encode());
        let mut d = Decoder::new(Limits {
            max_attachments: usize::MAX,
            ..Limits::default()
        });
        let Incoming::Packet(c) = feed(&mut d, &text, &buffers)? else {
            return Err(TestCaseError::fail("not a packet"));
        };
        prop_assert_eq!(&c.packet, &packet);
        let data = c.packet.data.clone().unwrap();
        let back =
            reconstruct(data, &c.attachments).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, expected);
        Ok(())
    });
}

// ------------------------------------------------------------ never panics

/// Prefixes that reach deep into the parsers, so random tails exercise more
/// than the first-byte check.
const PREFIXES: &[&str] = &[
    "",
    "0",
    "0{",
    "2",
    "3",
    "4",
    "40",
    "40/daemon,",
    "41",
    "42",
    "42/daemon,",
    "42/daemon,1",
    "43",
    "44",
    "45",
    "451-",
    "451-/daemon,",
    "452-/daemon,7",
    "46",
    "461-",
    "4599-",
    r#"42/daemon,["message","#,
    r#"42/daemon,["reverse-response","#,
    r#"451-/daemon,["reverse-stream",{"requestId":"r","seq":0,"chunk":"#,
];

fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (prop::sample::select(PREFIXES), text()).prop_map(|(p, t)| format!("{p}{t}")),
        2 => (prop::sample::select(PREFIXES), json()).prop_map(|(p, j)| format!("{p}{j}")),
        1 => any::<String>(),
        1 => (prop::sample::select(PREFIXES), vec(prop::sample::select(&['[', '{', '"', ']', '}', ',', ':', '1', '-', '/'][..]), 0..64))
            .prop_map(|(p, cs)| format!("{p}{}", String::from_iter(cs))),
    ]
}

/// Decodes a frame and, when a packet comes out, tries it as a VOLT event:
/// any result is fine, a panic is not.
fn poke(d: &mut Decoder, frame: WsFrame) {
    let got = match frame {
        WsFrame::Text(t) => d.text(&t),
        WsFrame::Binary(b) => d.binary(b),
    };
    if let Ok(Some(Incoming::Packet(c))) = got {
        let _ = VoltEvent::from_packet(c);
    }
}

#[test]
fn arbitrary_text_never_panics() {
    check(1024, hostile_text(), |t| {
        let mut d = Decoder::new(Limits::default());
        poke(&mut d, WsFrame::Text(t.clone()));
        let _ = Packet::decode(&t, &Limits::default());
        Ok(())
    });
}

#[test]
fn arbitrary_bytes_never_panic() {
    check(256, bytes(), |b| {
        let mut d = Decoder::new(Limits::default());
        poke(&mut d, WsFrame::Binary(b.clone()));
        // And as the attachment of a waiting header.
        let _ = d.text(r#"451-["x",{"_placeholder":true,"num":0}]"#);
        poke(&mut d, WsFrame::Binary(b));
        Ok(())
    });
}

#[test]
fn arbitrary_frame_interleavings_never_panic() {
    let frame = prop_oneof![
        2 => hostile_text().prop_map(WsFrame::Text),
        2 => bytes().prop_map(WsFrame::Binary),
        1 => (volt_event(), namespace()).prop_map(|(e, n)| WsFrame::Text(e.encode(&n).text)),
    ];
    let small = Limits {
        max_frame_bytes: 48,
        max_attachments: 3,
        max_namespace_bytes: 8,
    };
    check(
        256,
        (vec(frame, 0..16), any::<bool>()),
        move |(frames, use_small)| {
            let limits = if use_small {
                small.clone()
            } else {
                Limits::default()
            };
            let mut d = Decoder::new(limits);
            for f in frames {
                poke(&mut d, f);
            }
            Ok(())
        },
    );
}

#[test]
fn from_args_never_panics_on_any_json() {
    let names = prop::sample::select(
        &[
            "command",
            "command-response",
            "reverse-command",
            "reverse-response",
            "reverse-stream",
            "reverse-stream-end",
            "message",
            "other",
        ][..],
    );
    check(
        512,
        (names, json(), vec(bytes(), 0..3)),
        |(name, arg, atts)| {
            let _ = VoltEvent::from_args(name, arg.clone(), atts);
            let _ = Msg::from_value(arg);
            Ok(())
        },
    );
}

// ------------------------------------------------ fast path = general path

/// What the general path makes of a text frame: the event, or whether it
/// failed (errors may be worded differently by the two paths).
fn general(text: &str) -> Option<Result<VoltEvent, ()>> {
    let mut d = Decoder::new(Limits::default());
    match d.text(text) {
        Ok(Some(Incoming::Packet(c))) => Some(VoltEvent::from_packet(c).map_err(|_| ())),
        Ok(_) => None,
        Err(_) => Some(Err(())),
    }
}

/// Checks that the fast paths, when they answer, answer as the general path.
fn fast_path_agrees(text: &str, nsp: &str) -> Result<(), TestCaseError> {
    let d = Decoder::new(Limits::default());
    raw_response_agrees(&d, text, nsp)?;
    let Some(fast) = d.event_fast_path(text, nsp) else {
        return Ok(()); // declined: the caller uses the general path anyway
    };
    let slow = general(text);
    match (&fast, &slow) {
        (Ok(a), Some(Ok(b))) => prop_assert_eq!(a, b, "{}", text),
        (Err(_), Some(Err(()))) => {}
        _ => {
            return Err(TestCaseError::fail(format!(
                "fast {fast:?} but general {slow:?} for {text}"
            )))
        }
    }
    Ok(())
}

/// The scanned path agrees with the general path on every frame it takes,
/// with one allowed difference: it delimits `data` without validating it,
/// so a frame the general path rejects may be taken, and then its `data`
/// must fail to parse (the caller gets the error for that command).
fn scanned_response_agrees(d: &Decoder, text: &str, nsp: &str) -> Result<(), TestCaseError> {
    use volt_protocol::envelope::scan_command_response;
    let Some(scanned) = d.event_json(text, nsp).and_then(scan_command_response) else {
        return Ok(());
    };
    let data = scanned.data.map(serde_json::from_str::<Value>).transpose();
    match (general(text), data) {
        (Some(Ok(VoltEvent::CommandResponse(slow))), Ok(data)) => {
            prop_assert_eq!(scanned.request_id, slow.request_id.as_str());
            prop_assert!(slow.ok);
            prop_assert_eq!(
                data.filter(|v| !v.is_null()),
                slow.data.filter(|v| !v.is_null())
            );
            prop_assert_eq!(slow.error, None);
        }
        (Some(Err(())), Err(_)) => {}
        (slow, data) => {
            return Err(TestCaseError::fail(format!(
            "scanned {scanned:?} (data parses: {}) but the general path gives {slow:?} for {text}",
            data.is_ok()
        )))
        }
    }
    Ok(())
}

/// The command-response path (data left raw) agrees with the general path
/// field for field, `data` once parsed.
fn raw_response_agrees(d: &Decoder, text: &str, nsp: &str) -> Result<(), TestCaseError> {
    use volt_protocol::envelope::decode_command_response;
    scanned_response_agrees(d, text, nsp)?;
    let Some(raw) = d.event_json(text, nsp).and_then(decode_command_response) else {
        return Ok(());
    };
    let Some(Ok(VoltEvent::CommandResponse(slow))) = general(text) else {
        return Err(TestCaseError::fail(format!(
            "raw path took {text} but the general path gives {:?}",
            general(text)
        )));
    };
    let data = raw
        .data
        .map(|d| serde_json::from_str::<Value>(d.get()))
        .transpose()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(raw.request_id.as_ref(), slow.request_id.as_str());
    prop_assert_eq!(raw.ok, slow.ok);
    prop_assert_eq!(
        data.filter(|v| !v.is_null()),
        slow.data.filter(|v| !v.is_null())
    );
    prop_assert_eq!(raw.error, slow.error);
    Ok(())
}

#[test]
fn fast_path_decodes_every_plain_event_as_the_general_path() {
    check(512, (volt_event(), namespace()), |(event, nsp)| {
        let out = event.clone().encode(&nsp);
        if !out.attachments.is_empty() {
            return Ok(());
        }
        let d = Decoder::new(Limits::default());
        let fast = d
            .event_fast_path(&out.text, &nsp)
            .ok_or_else(|| TestCaseError::fail(format!("declined {}", out.text)))?;
        prop_assert_eq!(fast.map_err(|e| TestCaseError::fail(e.to_string()))?, event);
        fast_path_agrees(&out.text, &nsp)
    });
}

#[test]
fn fast_path_never_disagrees_with_the_general_path_on_hostile_frames() {
    check(2048, hostile_text(), |text| {
        fast_path_agrees(&text, "/daemon")?;
        fast_path_agrees(&text, "/")
    });
}

/// Command-responses in the scanned shape, then cut, extended or spliced
/// with structural characters: the scanned path must never disagree.
fn mangled_command_response() -> impl Strategy<Value = String> {
    let tail = vec(
        prop::sample::select(&['[', '{', '"', ']', '}', ',', ':', '\\', '1', 'a', ' '][..]),
        0..12,
    );
    let extra = prop::option::of(json());
    (
        text(),
        prop::option::of(json()),
        extra,
        any::<prop::sample::Index>(),
        tail,
    )
        .prop_map(|(id, data, extra, cut, tail)| {
            let mut frame = format!(
                "42[\"command-response\",{{\"requestId\":{},\"ok\":true",
                Value::from(id)
            );
            if let Some(data) = data {
                frame.push_str(",\"data\":");
                frame.push_str(&data.to_string());
            }
            // A field after `data`: valid JSON, but not the scanned shape.
            if let Some(extra) = extra {
                frame.push_str(",\"extra\":");
                frame.push_str(&extra.to_string());
            }
            frame.push_str("}]");
            // Splice the tail in at a char boundary.
            let mut at = cut.index(frame.len() + 1);
            while !frame.is_char_boundary(at) {
                at -= 1;
            }
            let spliced: String = tail.into_iter().collect();
            if spliced.is_empty() {
                frame
            } else {
                format!("{}{spliced}{}", &frame[..at], &frame[at..])
            }
        })
}

#[test]
fn a_raw_control_character_in_the_request_id_is_left_to_the_general_path() {
    // Found by cargo-fuzz: not valid JSON, so the general path rejects the
    // frame; the scanner must not take it.
    use volt_protocol::envelope::scan_command_response;
    let frame = "[\"command-response\",{\"requestId\":\"r\u{11}\",\"ok\":true,\"data\":{\"a\":4}}]";
    assert_eq!(scan_command_response(frame), None);
    fast_path_agrees(&format!("42{frame}"), "/").unwrap();
}

#[test]
fn scanned_command_responses_agree_with_the_general_path_even_mangled() {
    check(4096, mangled_command_response(), |text| {
        fast_path_agrees(&text, "/")
    });
}

#[test]
fn encode_command_writes_what_the_envelope_encoder_writes() {
    use volt_protocol::envelope::{encode_command, CommandRequest};
    check(
        512,
        (namespace(), text(), text(), prop::option::of(json())),
        |(nsp, id, command, payload)| {
            let fast = encode_command(&nsp, &id, &command, payload.as_ref());
            let slow = VoltEvent::Command(CommandRequest {
                request_id: id,
                command,
                payload,
            })
            .encode(&nsp);
            prop_assert_eq!(fast, slow.text);
            Ok(())
        },
    );
}
