//! Golden vectors for the wire codec, both directions: every frame recorded
//! from real socket.io 4.8.4 (`shared/observed-frames.md`), plus the examples
//! of the public engine.io-protocol v4 and socket.io-protocol v5 documents.
//!
//! Decoding checks the exact structure; encoding checks the exact text. The
//! codec uses serde_json with `preserve_order` and our envelope structs
//! serialize their fields in the order the real client and server send them,
//! so every observed frame below re-encodes byte for byte.

use serde_json::{json, Map, Value};
use volt_protocol::binary::{Complete, Reassembler};
use volt_protocol::engine::{EnginePacket, Handshake, WsFrame};
use volt_protocol::envelope::{
    event_frame, CommandRequest, CommandResponse, ErrorBody, Outgoing, ReplyBody, ReverseCommand,
    ReverseResponse, ReverseStream, ReverseStreamEnd, VoltEvent,
};
use volt_protocol::message::TeamClusterDaemonMessage;
use volt_protocol::message::{
    ExposureSnapshot, SessionClose, SessionData, SessionInput, SessionOpen, SessionResize,
    TunnelClose, TunnelData, TunnelOpen, TunnelState, TunnelStatus,
};
use volt_protocol::socket::{Packet, PacketType};
use volt_protocol::{Decoder, Incoming, Limits};

const NSP: &str = "/daemon";

// ---------------------------------------------------------------- helpers

/// Feeds a text frame and its binary frames through a fresh decoder and
/// returns the complete packet.
fn decode_frames(text: &str, binaries: &[&[u8]]) -> Complete {
    let mut d = Decoder::new(Limits::default());
    let first = d.text(text).expect("text frame decodes");
    if binaries.is_empty() {
        match first {
            Some(Incoming::Packet(c)) => return c,
            other => panic!("expected a complete packet, got {other:?}"),
        }
    }
    assert_eq!(first, None, "a binary header waits for its attachments");
    let (last, init) = binaries.split_last().unwrap();
    for b in init {
        assert_eq!(d.binary(b.to_vec()).unwrap(), None);
    }
    match d.binary(last.to_vec()).unwrap() {
        Some(Incoming::Packet(c)) => c,
        other => panic!("expected a complete packet, got {other:?}"),
    }
}

/// Decodes the Socket.IO packet inside an Engine.IO message frame.
fn socket_packet(frame: &str) -> Packet {
    let EnginePacket::Message(m) = EnginePacket::decode(frame).unwrap() else {
        panic!("{frame} is not an Engine.IO message");
    };
    Packet::decode(m, &Limits::default()).unwrap()
}

/// Asserts `frame` (an Engine.IO message) decodes to `expected` and that
/// `expected` encodes back to exactly `frame`.
fn assert_packet_golden(frame: &str, expected: &Packet) {
    assert_eq!(&socket_packet(frame), expected, "decoding {frame}");
    let mut out = String::from("4");
    expected.encode_into(&mut out);
    assert_eq!(out, frame, "encoding {expected:?}");
    assert_eq!(EnginePacket::Message(&out[1..]).encode(), frame);
}

/// Decodes a VOLT event from its frames.
fn volt(text: &str, binaries: &[&[u8]]) -> VoltEvent {
    VoltEvent::from_packet(decode_frames(text, binaries)).expect("a valid VOLT event")
}

/// Asserts `event` decodes from, and encodes to, exactly these frames.
fn assert_volt_golden(text: &str, binaries: &[&[u8]], event: VoltEvent) {
    assert_eq!(volt(text, binaries), event, "decoding {text}");
    let out = event.encode(NSP);
    assert_eq!(
        out,
        Outgoing {
            text: text.to_owned(),
            attachments: binaries.iter().map(|b| b.to_vec()).collect(),
        },
        "encoding"
    );
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

// ------------------------------------------------- observed: Engine.IO layer

#[test]
fn observed_open_packet() {
    let frame = r#"0{"sid":"-O0JMYpMkMHdkVevAAAQ","upgrades":[],"pingInterval":500,"pingTimeout":400,"maxPayload":1000000}"#;
    let h = Handshake {
        sid: "-O0JMYpMkMHdkVevAAAQ".into(),
        upgrades: vec![],
        ping_interval: 500,
        ping_timeout: 400,
        max_payload: 1_000_000,
    };
    assert_eq!(
        EnginePacket::decode(frame).unwrap(),
        EnginePacket::Open(h.clone())
    );
    assert_eq!(EnginePacket::Open(h.clone()).encode(), frame);
    assert_eq!(h.ping_deadline(), std::time::Duration::from_millis(900));
    let mut d = Decoder::new(Limits::default());
    assert_eq!(d.text(frame).unwrap(), Some(Incoming::Open(h)));
}

#[test]
fn observed_ping_and_pong() {
    assert_eq!(EnginePacket::decode("2").unwrap(), EnginePacket::Ping(""));
    assert_eq!(EnginePacket::decode("3").unwrap(), EnginePacket::Pong(""));
    assert_eq!(EnginePacket::Ping("").encode(), "2");
    assert_eq!(EnginePacket::Pong("").encode(), "3");
    let mut d = Decoder::new(Limits::default());
    assert_eq!(d.text("2").unwrap(), Some(Incoming::Ping(String::new())));
    assert_eq!(d.text("3").unwrap(), Some(Incoming::Pong(String::new())));
}

// ------------------------------------------------- observed: Socket.IO layer

#[test]
fn observed_connect_with_auth() {
    let frame = r#"40/daemon,{"teamClusterId":"c-main","daemonPassword":"pw-main","installedVersion":"1.4.2","client":"ref-daemon/0.1.0"}"#;
    let p = Packet::new(
        PacketType::Connect,
        NSP,
        Some(json!({
            "teamClusterId": "c-main",
            "daemonPassword": "pw-main",
            "installedVersion": "1.4.2",
            "client": "ref-daemon/0.1.0"
        })),
    );
    assert_packet_golden(frame, &p);
}

#[test]
fn observed_connect_with_null_installed_version() {
    // The contract sends `installedVersion: null` when none is configured.
    let frame = r#"40/daemon,{"teamClusterId":"c","daemonPassword":"p","installedVersion":null,"client":"x/1"}"#;
    let p = Packet::new(
        PacketType::Connect,
        NSP,
        Some(
            json!({"teamClusterId":"c","daemonPassword":"p","installedVersion":null,"client":"x/1"}),
        ),
    );
    assert_packet_golden(frame, &p);
}

#[test]
fn observed_connect_accepted_with_sid() {
    let frame = r#"40/daemon,{"sid":"kOcoj4zjy49uNmddAAAG"}"#;
    let p = Packet::new(
        PacketType::Connect,
        NSP,
        Some(json!({"sid":"kOcoj4zjy49uNmddAAAG"})),
    );
    assert_packet_golden(frame, &p);
}

#[test]
fn observed_connect_error_with_data() {
    let frame =
        r#"44/daemon,{"message":"invalid credentials","data":{"code":"INVALID_CREDENTIALS"}}"#;
    let p = Packet::new(
        PacketType::ConnectError,
        NSP,
        Some(json!({"message":"invalid credentials","data":{"code":"INVALID_CREDENTIALS"}})),
    );
    assert_packet_golden(frame, &p);
}

#[test]
fn observed_connect_error_without_data() {
    let frame = r#"44/x,{"message":"Invalid namespace"}"#;
    let p = Packet::new(
        PacketType::ConnectError,
        "/x",
        Some(json!({"message":"Invalid namespace"})),
    );
    assert_packet_golden(frame, &p);
}

#[test]
fn observed_disconnect_kick() {
    let p = Packet::new(PacketType::Disconnect, NSP, None);
    assert_packet_golden("41/daemon,", &p);
    let c = decode_frames("41/daemon,", &[]);
    assert!(c.attachments.is_empty());
    assert_eq!(c.packet, p);
}

// ------------------------------------------------------ observed: VOLT events

#[test]
fn observed_command_with_payload() {
    assert_volt_golden(
        r#"42/daemon,["command",{"requestId":"15430138-d297-47d6-bbc2-d1dbfa62ed0f","command":"echo","payload":{"a":1,"b":[1,2,{"c":null}]}}]"#,
        &[],
        VoltEvent::Command(CommandRequest {
            request_id: "15430138-d297-47d6-bbc2-d1dbfa62ed0f".into(),
            command: "echo".into(),
            payload: Some(json!({"a":1,"b":[1,2,{"c":null}]})),
        }),
    );
}

#[test]
fn observed_command_without_payload() {
    assert_volt_golden(
        r#"42/daemon,["command",{"requestId":"916df3e2-b175-4adc-8088-efc8d5fda1b2","command":"echo"}]"#,
        &[],
        VoltEvent::Command(CommandRequest {
            request_id: "916df3e2-b175-4adc-8088-efc8d5fda1b2".into(),
            command: "echo".into(),
            payload: None,
        }),
    );
}

#[test]
fn observed_command_response_ok_with_data() {
    assert_volt_golden(
        r#"42/daemon,["command-response",{"requestId":"15430138-d297-47d6-bbc2-d1dbfa62ed0f","ok":true,"data":{"a":1,"b":[1,2,{"c":null}]}}]"#,
        &[],
        VoltEvent::CommandResponse(CommandResponse {
            request_id: "15430138-d297-47d6-bbc2-d1dbfa62ed0f".into(),
            ok: true,
            data: Some(json!({"a":1,"b":[1,2,{"c":null}]})),
            error: None,
        }),
    );
}

#[test]
fn observed_command_response_ok_without_data() {
    assert_volt_golden(
        r#"42/daemon,["command-response",{"requestId":"916df3e2-b175-4adc-8088-efc8d5fda1b2","ok":true}]"#,
        &[],
        VoltEvent::CommandResponse(CommandResponse {
            request_id: "916df3e2-b175-4adc-8088-efc8d5fda1b2".into(),
            ok: true,
            data: None,
            error: None,
        }),
    );
}

#[test]
fn observed_command_response_rejected() {
    assert_volt_golden(
        r#"42/daemon,["command-response",{"requestId":"3a8f4efc-4556-4cd5-923d-b4c0c5a3afaa","ok":false,"error":{"code":"NOT_FOUND","message":"no such volume"}}]"#,
        &[],
        VoltEvent::CommandResponse(CommandResponse {
            request_id: "3a8f4efc-4556-4cd5-923d-b4c0c5a3afaa".into(),
            ok: false,
            data: None,
            error: Some(ErrorBody::new("NOT_FOUND", "no such volume")),
        }),
    );
}

#[test]
fn command_response_data_null_reads_as_none() {
    // Contract §4: `data` absent or `null` → none. (So `Some(Null)` does not
    // survive a decode; the encoder never needs to produce it.)
    let VoltEvent::CommandResponse(r) = volt(
        r#"42/daemon,["command-response",{"requestId":"r","ok":true,"data":null}]"#,
        &[],
    ) else {
        panic!()
    };
    assert_eq!(r.data, None);
}

#[test]
fn command_response_keys_in_any_order() {
    // "never depend on key order when parsing" (observed-frames.md).
    let VoltEvent::CommandResponse(r) = volt(
        r#"42/daemon,["command-response",{"error":{"message":"m","code":"C"},"ok":false,"requestId":"r"}]"#,
        &[],
    ) else {
        panic!()
    };
    assert_eq!(r.error, Some(ErrorBody::new("C", "m")));
    assert!(!r.ok);
}

#[test]
fn observed_reverse_command_without_payload() {
    assert_volt_golden(
        r#"42/daemon,["reverse-command",{"requestId":"f699a024-2d1f-4441-b2a6-4010d9b7dca2","command":"list-files"}]"#,
        &[],
        VoltEvent::ReverseCommand(ReverseCommand {
            request_id: "f699a024-2d1f-4441-b2a6-4010d9b7dca2".into(),
            command: "list-files".into(),
            payload: None,
        }),
    );
}

#[test]
fn observed_reverse_command_with_payload() {
    assert_volt_golden(
        r#"42/daemon,["reverse-command",{"requestId":"6c748b86-debc-4d16-bfda-8fd7fe878ce1","command":"blob","payload":{"size":10}}]"#,
        &[],
        VoltEvent::ReverseCommand(ReverseCommand {
            request_id: "6c748b86-debc-4d16-bfda-8fd7fe878ce1".into(),
            command: "blob".into(),
            payload: Some(json!({"size":10})),
        }),
    );
}

#[test]
fn observed_reverse_response_data() {
    assert_volt_golden(
        r#"42/daemon,["reverse-response",{"requestId":"f699a024-2d1f-4441-b2a6-4010d9b7dca2","command":"list-files","status":200,"headers":{},"data":[1,"two"]}]"#,
        &[],
        VoltEvent::ReverseResponse(ReverseResponse {
            request_id: "f699a024-2d1f-4441-b2a6-4010d9b7dca2".into(),
            command: "list-files".into(),
            status: 200,
            headers: Map::new(),
            body: ReplyBody::Data(json!([1, "two"])),
            error: None,
        }),
    );
}

#[test]
fn observed_reverse_response_body_with_binary_frame() {
    let text = r#"451-/daemon,["reverse-response",{"requestId":"6c748b86-debc-4d16-bfda-8fd7fe878ce1","command":"blob","status":200,"headers":{},"body":{"_placeholder":true,"num":0}}]"#;
    let bytes: &[u8] = &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
    // The Socket.IO layer: a BINARY_EVENT header announcing one attachment.
    let c = decode_frames(text, &[bytes]);
    assert_eq!(c.packet.packet_type, PacketType::BinaryEvent);
    assert_eq!(c.packet.attachments, 1);
    assert_eq!(c.packet.namespace, NSP);
    assert_eq!(c.packet.id, None);
    assert_eq!(c.attachments, vec![bytes.to_vec()]);
    assert_volt_golden(
        text,
        &[bytes],
        VoltEvent::ReverseResponse(ReverseResponse {
            request_id: "6c748b86-debc-4d16-bfda-8fd7fe878ce1".into(),
            command: "blob".into(),
            status: 200,
            headers: Map::new(),
            body: ReplyBody::Body(bytes.to_vec()),
            error: None,
        }),
    );
}

#[test]
fn observed_reverse_response_stream_header() {
    assert_volt_golden(
        r#"42/daemon,["reverse-response",{"requestId":"569ca857-40ae-4b57-8ed8-61bc3c45a433","command":"chunks","status":200,"headers":{},"stream":true}]"#,
        &[],
        VoltEvent::ReverseResponse(ReverseResponse {
            request_id: "569ca857-40ae-4b57-8ed8-61bc3c45a433".into(),
            command: "chunks".into(),
            status: 200,
            headers: Map::new(),
            body: ReplyBody::Stream,
            error: None,
        }),
    );
}

#[test]
fn observed_reverse_stream_chunks() {
    let id = "569ca857-40ae-4b57-8ed8-61bc3c45a433";
    assert_volt_golden(
        r#"451-/daemon,["reverse-stream",{"requestId":"569ca857-40ae-4b57-8ed8-61bc3c45a433","seq":0,"chunk":{"_placeholder":true,"num":0}}]"#,
        &[&[0, 1, 2]],
        VoltEvent::ReverseStream(ReverseStream {
            request_id: id.into(),
            seq: 0,
            chunk: vec![0, 1, 2],
        }),
    );
    assert_volt_golden(
        r#"451-/daemon,["reverse-stream",{"requestId":"569ca857-40ae-4b57-8ed8-61bc3c45a433","seq":1,"chunk":{"_placeholder":true,"num":0}}]"#,
        &[&[3, 4, 5]],
        VoltEvent::ReverseStream(ReverseStream {
            request_id: id.into(),
            seq: 1,
            chunk: vec![3, 4, 5],
        }),
    );
}

#[test]
fn observed_stream_sequence_through_one_decoder() {
    // The whole streamed reply as one connection sees it.
    let frames: Vec<WsFrame> = vec![
        WsFrame::Text(r#"42/daemon,["reverse-response",{"requestId":"s","command":"chunks","status":200,"headers":{},"stream":true}]"#.into()),
        WsFrame::Text(r#"451-/daemon,["reverse-stream",{"requestId":"s","seq":0,"chunk":{"_placeholder":true,"num":0}}]"#.into()),
        WsFrame::Binary(vec![0, 1, 2]),
        WsFrame::Text(r#"451-/daemon,["reverse-stream",{"requestId":"s","seq":1,"chunk":{"_placeholder":true,"num":0}}]"#.into()),
        WsFrame::Binary(vec![3, 4, 5]),
        WsFrame::Text(r#"42/daemon,["reverse-stream-end",{"requestId":"s","chunks":2}]"#.into()),
    ];
    let mut d = Decoder::new(Limits::default());
    let mut events = Vec::new();
    for f in frames {
        let got = match f {
            WsFrame::Text(t) => d.text(&t).unwrap(),
            WsFrame::Binary(b) => d.binary(b).unwrap(),
        };
        if let Some(Incoming::Packet(c)) = got {
            events.push(VoltEvent::from_packet(c).unwrap());
        }
    }
    let names: Vec<_> = events.iter().map(VoltEvent::name).collect();
    assert_eq!(
        names,
        [
            "reverse-response",
            "reverse-stream",
            "reverse-stream",
            "reverse-stream-end"
        ]
    );
    let VoltEvent::ReverseStream(s) = &events[2] else {
        panic!()
    };
    assert_eq!((s.seq, s.chunk.as_slice()), (1, &[3u8, 4, 5][..]));
}

#[test]
fn observed_reverse_stream_end() {
    assert_volt_golden(
        r#"42/daemon,["reverse-stream-end",{"requestId":"569ca857-40ae-4b57-8ed8-61bc3c45a433","chunks":2}]"#,
        &[],
        VoltEvent::ReverseStreamEnd(ReverseStreamEnd {
            request_id: "569ca857-40ae-4b57-8ed8-61bc3c45a433".into(),
            chunks: 2,
            error: None,
        }),
    );
}

#[test]
fn observed_reverse_stream_end_with_error() {
    assert_volt_golden(
        r#"42/daemon,["reverse-stream-end",{"requestId":"0a6407ff-b18f-4127-ac50-018989caa247","chunks":2,"error":{"code":"HANDLER_ERROR","message":"read error after 2 chunks"}}]"#,
        &[],
        VoltEvent::ReverseStreamEnd(ReverseStreamEnd {
            request_id: "0a6407ff-b18f-4127-ac50-018989caa247".into(),
            chunks: 2,
            error: Some(ErrorBody::new("HANDLER_ERROR", "read error after 2 chunks")),
        }),
    );
}

#[test]
fn observed_reverse_response_404() {
    assert_volt_golden(
        r#"42/daemon,["reverse-response",{"requestId":"543b5723-6af4-47ee-81f9-a1a89b52dca2","command":"no-such-handler","status":404,"headers":{},"error":{"code":"UNKNOWN_COMMAND","message":"no handler for command no-such-handler"}}]"#,
        &[],
        VoltEvent::ReverseResponse(ReverseResponse {
            request_id: "543b5723-6af4-47ee-81f9-a1a89b52dca2".into(),
            command: "no-such-handler".into(),
            status: 404,
            headers: Map::new(),
            body: ReplyBody::None,
            error: Some(ErrorBody::new(
                "UNKNOWN_COMMAND",
                "no handler for command no-such-handler",
            )),
        }),
    );
}

#[test]
fn reverse_response_with_headers_and_defaults() {
    // Headers keep their order; a reply with neither status nor headers gets
    // the contract's defaults (200, {}), which the encoder then writes out.
    assert_volt_golden(
        r#"42/daemon,["reverse-response",{"requestId":"r","command":"c","status":201,"headers":{"x-b":"2","content-type":"text/plain"}}]"#,
        &[],
        VoltEvent::ReverseResponse(ReverseResponse {
            request_id: "r".into(),
            command: "c".into(),
            status: 201,
            headers: obj(json!({"x-b":"2","content-type":"text/plain"})),
            body: ReplyBody::None,
            error: None,
        }),
    );
    let VoltEvent::ReverseResponse(r) = volt(
        r#"42/daemon,["reverse-response",{"requestId":"r","command":"c"}]"#,
        &[],
    ) else {
        panic!()
    };
    assert_eq!(
        (r.status, r.headers.len(), r.body),
        (200, 0, ReplyBody::None)
    );
}

#[test]
fn reverse_response_data_null_is_kept_apart_from_absent() {
    assert_volt_golden(
        r#"42/daemon,["reverse-response",{"requestId":"r","command":"c","status":200,"headers":{},"data":null}]"#,
        &[],
        VoltEvent::ReverseResponse(ReverseResponse {
            request_id: "r".into(),
            command: "c".into(),
            status: 200,
            headers: Map::new(),
            body: ReplyBody::Data(Value::Null),
            error: None,
        }),
    );
}

#[test]
fn observed_message_server_to_client_keeps_extra_field() {
    let text = r#"42/daemon,["message",{"type":"session-input","sessionId":"s1","chunkBase64":"aGk=","extraField":42}]"#;
    let expected = VoltEvent::Message(TeamClusterDaemonMessage::SessionInput(SessionInput {
        session_id: "s1".into(),
        chunk_base64: "aGk=".into(),
        extra: obj(json!({"extraField": 42})),
    }));
    assert_volt_golden(text, &[], expected);
}

#[test]
fn observed_message_client_to_server() {
    assert_volt_golden(
        r#"42/daemon,["message",{"type":"tunnel-state","tunnelId":"t1","state":"open"}]"#,
        &[],
        VoltEvent::Message(TeamClusterDaemonMessage::TunnelState(TunnelState {
            tunnel_id: "t1".into(),
            state: TunnelStatus::Open,
            error: None,
            extra: Map::new(),
        })),
    );
}

#[test]
fn message_with_keys_in_another_order_decodes_and_reencodes_type_first() {
    // One Rust socket.io client sorts keys alphabetically. The decoded value
    // is the same; our encoder writes `type` first and then the struct's
    // fields, so the text differs and only the JSON values compare equal.
    let sorted =
        r#"42/daemon,["message",{"chunkBase64":"aGk=","sessionId":"s1","type":"session-input"}]"#;
    let e = volt(sorted, &[]);
    let out = e.clone().encode(NSP);
    assert_eq!(
        out.text,
        r#"42/daemon,["message",{"type":"session-input","sessionId":"s1","chunkBase64":"aGk="}]"#
    );
    let as_json = |t: &str| -> Value { serde_json::from_str(&t[10..]).unwrap() };
    assert_eq!(as_json(&out.text), as_json(sorted));
    assert_eq!(volt(&out.text, &[]), e);
}

// ------------------------------------------- engine.io-protocol v4 examples

#[test]
fn engine_doc_handshake() {
    let frame = r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":5000,"maxPayload":1000000}"#;
    let h = Handshake {
        sid: "lv_VI97HAXpY6yYWAAAC".into(),
        upgrades: vec!["websocket".into()],
        ping_interval: 25000,
        ping_timeout: 5000,
        max_payload: 1_000_000,
    };
    assert_eq!(
        EnginePacket::decode(frame).unwrap(),
        EnginePacket::Open(h.clone())
    );
    assert_eq!(EnginePacket::Open(h).encode(), frame);
}

#[test]
fn engine_doc_handshake_defaults_missing_fields() {
    // `upgrades` and `maxPayload` are optional for the decoder; unknown
    // fields are ignored.
    let p = EnginePacket::decode(r#"0{"sid":"a","pingInterval":1,"pingTimeout":2,"extra":true}"#)
        .unwrap();
    assert_eq!(
        p,
        EnginePacket::Open(Handshake {
            sid: "a".into(),
            upgrades: vec![],
            ping_interval: 1,
            ping_timeout: 2,
            max_payload: 1_000_000,
        })
    );
}

#[test]
fn engine_doc_probe_ping_pong() {
    assert_eq!(
        EnginePacket::decode("2probe").unwrap(),
        EnginePacket::Ping("probe")
    );
    assert_eq!(
        EnginePacket::decode("3probe").unwrap(),
        EnginePacket::Pong("probe")
    );
    assert_eq!(EnginePacket::Ping("probe").encode(), "2probe");
    assert_eq!(EnginePacket::Pong("probe").encode(), "3probe");
    let mut d = Decoder::new(Limits::default());
    assert_eq!(
        d.text("2probe").unwrap(),
        Some(Incoming::Ping("probe".into()))
    );
    assert_eq!(
        d.text("3probe").unwrap(),
        Some(Incoming::Pong("probe".into()))
    );
}

#[test]
fn engine_doc_message_close_upgrade_noop() {
    let cases: [(&str, EnginePacket<'_>); 5] = [
        ("4hello", EnginePacket::Message("hello")),
        ("4", EnginePacket::Message("")),
        ("1", EnginePacket::Close),
        ("5", EnginePacket::Upgrade),
        ("6", EnginePacket::Noop),
    ];
    for (frame, packet) in cases {
        assert_eq!(EnginePacket::decode(frame).unwrap(), packet, "{frame}");
        assert_eq!(packet.encode(), frame);
    }
    let mut d = Decoder::new(Limits::default());
    assert_eq!(d.text("1").unwrap(), Some(Incoming::Close));
    assert_eq!(d.text("5").unwrap(), Some(Incoming::Noop));
    assert_eq!(d.text("6").unwrap(), Some(Incoming::Noop));
}

#[test]
fn engine_message_with_unicode() {
    assert_eq!(
        EnginePacket::decode("4€€€").unwrap(),
        EnginePacket::Message("€€€")
    );
}

#[test]
fn ws_frame_len() {
    assert_eq!(WsFrame::Text("4€".into()).len(), 4);
    assert_eq!(WsFrame::Binary(vec![1, 2, 3]).len(), 3);
    assert!(WsFrame::Binary(vec![]).is_empty());
}

// ------------------------------------------- socket.io-protocol v5 examples

fn pkt(
    packet_type: PacketType,
    namespace: &str,
    id: Option<u64>,
    data: Option<Value>,
    attachments: usize,
) -> Packet {
    Packet {
        packet_type,
        namespace: namespace.into(),
        id,
        data,
        attachments,
    }
}

#[test]
fn socket_doc_connect_main_namespace() {
    assert_packet_golden("40", &pkt(PacketType::Connect, "/", None, None, 0));
    assert_packet_golden(
        r#"40{"sid":"oSO0OpakMV_3jnilAAAA"}"#,
        &pkt(
            PacketType::Connect,
            "/",
            None,
            Some(json!({"sid":"oSO0OpakMV_3jnilAAAA"})),
            0,
        ),
    );
    assert_packet_golden(
        r#"40{"token":"123"}"#,
        &pkt(
            PacketType::Connect,
            "/",
            None,
            Some(json!({"token":"123"})),
            0,
        ),
    );
}

#[test]
fn socket_doc_connect_admin_namespace() {
    assert_packet_golden(
        "40/admin,",
        &pkt(PacketType::Connect, "/admin", None, None, 0),
    );
    assert_packet_golden(
        r#"40/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#,
        &pkt(
            PacketType::Connect,
            "/admin",
            None,
            Some(json!({"sid":"oSO0OpakMV_3jnilAAAA"})),
            0,
        ),
    );
}

#[test]
fn socket_doc_connect_error() {
    assert_packet_golden(
        r#"44{"message":"Not authorized"}"#,
        &pkt(
            PacketType::ConnectError,
            "/",
            None,
            Some(json!({"message":"Not authorized"})),
            0,
        ),
    );
    // socket.io-parser also allows a plain string.
    assert_packet_golden(
        r#"44"Not authorized""#,
        &pkt(
            PacketType::ConnectError,
            "/",
            None,
            Some(json!("Not authorized")),
            0,
        ),
    );
}

#[test]
fn socket_doc_disconnect() {
    assert_packet_golden(
        "41/admin,",
        &pkt(PacketType::Disconnect, "/admin", None, None, 0),
    );
    assert_packet_golden("41", &pkt(PacketType::Disconnect, "/", None, None, 0));
}

#[test]
fn socket_doc_events() {
    assert_packet_golden(
        r#"42["hello",1]"#,
        &pkt(PacketType::Event, "/", None, Some(json!(["hello", 1])), 0),
    );
    assert_packet_golden(
        r#"42/admin,["project:delete",123]"#,
        &pkt(
            PacketType::Event,
            "/admin",
            None,
            Some(json!(["project:delete", 123])),
            0,
        ),
    );
    assert_packet_golden(
        r#"42/admin,456["project:delete",123]"#,
        &pkt(
            PacketType::Event,
            "/admin",
            Some(456),
            Some(json!(["project:delete", 123])),
            0,
        ),
    );
    // A numeric event name is allowed by socket.io-parser.
    assert_packet_golden(
        "42[7,\"x\"]",
        &pkt(PacketType::Event, "/", None, Some(json!([7, "x"])), 0),
    );
}

#[test]
fn socket_doc_ack() {
    assert_packet_golden(
        "43/admin,456[]",
        &pkt(PacketType::Ack, "/admin", Some(456), Some(json!([])), 0),
    );
    assert_packet_golden(
        "430[1]",
        &pkt(PacketType::Ack, "/", Some(0), Some(json!([1])), 0),
    );
}

#[test]
fn socket_doc_binary_event() {
    let frame = r#"451-["hello",{"_placeholder":true,"num":0}]"#;
    let p = pkt(
        PacketType::BinaryEvent,
        "/",
        None,
        Some(json!(["hello", {"_placeholder": true, "num": 0}])),
        1,
    );
    assert_packet_golden(frame, &p);
    let c = decode_frames(frame, &[&[1, 2, 3]]);
    assert_eq!(
        c,
        Complete {
            packet: p,
            attachments: vec![vec![1, 2, 3]]
        }
    );

    let frame = r#"451-/admin,456["project:delete",{"_placeholder":true,"num":0}]"#;
    assert_packet_golden(
        frame,
        &pkt(
            PacketType::BinaryEvent,
            "/admin",
            Some(456),
            Some(json!(["project:delete", {"_placeholder": true, "num": 0}])),
            1,
        ),
    );
}

#[test]
fn socket_doc_binary_ack() {
    let frame = r#"461-/admin,456[{"_placeholder":true,"num":0}]"#;
    let p = pkt(
        PacketType::BinaryAck,
        "/admin",
        Some(456),
        Some(json!([{"_placeholder": true, "num": 0}])),
        1,
    );
    assert_packet_golden(frame, &p);
    let c = decode_frames(frame, &[&[3, 2, 1]]);
    assert_eq!(c.attachments, vec![vec![3, 2, 1]]);
}

#[test]
fn binary_event_with_two_attachments_in_order() {
    let frame = r#"452-/daemon,["x",{"a":{"_placeholder":true,"num":1},"b":{"_placeholder":true,"num":0}}]"#;
    let c = decode_frames(frame, &[b"zero", b"one"]);
    assert_eq!(c.attachments, vec![b"zero".to_vec(), b"one".to_vec()]);
    assert_eq!(c.packet.attachments, 2);
}

#[test]
fn binary_event_with_zero_attachments_is_complete_at_once() {
    let c = decode_frames(r#"450-["x"]"#, &[]);
    assert_eq!(c.packet.packet_type, PacketType::BinaryEvent);
    assert!(c.attachments.is_empty());
}

#[test]
fn explicit_root_namespace_decodes_as_root() {
    let p = socket_packet(r#"42/,["x"]"#);
    assert_eq!(p.namespace, "/");
    // ... and the encoder omits it, as socket.io-parser does.
    assert_eq!(p.encode(), r#"2["x"]"#);
}

#[test]
fn namespace_without_trailing_comma() {
    // socket.io-parser reads the namespace up to a comma or the end.
    assert_packet_golden(
        "41/admin,",
        &pkt(PacketType::Disconnect, "/admin", None, None, 0),
    );
    assert_eq!(
        socket_packet("41/admin"),
        pkt(PacketType::Disconnect, "/admin", None, None, 0)
    );
}

#[test]
fn event_frame_helper_matches_packet_encoder() {
    let by_helper = event_frame(NSP, "message", r#"{"type":"x"}"#, 0);
    let mut by_packet = String::from("4");
    Packet::new(
        PacketType::Event,
        NSP,
        Some(json!(["message", {"type": "x"}])),
    )
    .encode_into(&mut by_packet);
    assert_eq!(by_helper, by_packet);
    assert_eq!(
        event_frame("/", "blob", r#"{"_placeholder":true,"num":0}"#, 1),
        r#"451-["blob",{"_placeholder":true,"num":0}]"#
    );
}

#[test]
fn reassembler_doc_example() {
    let limits = Limits::default();
    let header = Packet::decode(
        r#"51-/daemon,["blob",{"_placeholder":true,"num":0}]"#,
        &limits,
    )
    .unwrap();
    let mut r = Reassembler::default();
    assert!(r.start(header).unwrap().is_none());
    assert!(r.is_waiting());
    let done = r.push_binary(vec![1, 2, 3]).unwrap().unwrap();
    assert_eq!(done.attachments, vec![vec![1, 2, 3]]);
    assert!(!r.is_waiting());
}

// ------------------------------------------------- TeamClusterDaemonMessage

/// Every known message type, as the wire object in the field order our
/// encoder produces (`type`, the struct's fields, then extras).
fn known_messages() -> Vec<(Value, TeamClusterDaemonMessage)> {
    use TeamClusterDaemonMessage as M;
    let none = Map::new;
    vec![
        (
            json!({"type":"session-open","sessionId":"s","cols":80,"rows":24,"command":"bash"}),
            M::SessionOpen(SessionOpen {
                session_id: "s".into(),
                cols: 80,
                rows: 24,
                command: Some("bash".into()),
                extra: none(),
            }),
        ),
        (
            json!({"type":"session-open","sessionId":"s","cols":80,"rows":24}),
            M::SessionOpen(SessionOpen {
                session_id: "s".into(),
                cols: 80,
                rows: 24,
                command: None,
                extra: none(),
            }),
        ),
        (
            json!({"type":"session-input","sessionId":"s","chunkBase64":"aGk="}),
            M::SessionInput(SessionInput {
                session_id: "s".into(),
                chunk_base64: "aGk=".into(),
                extra: none(),
            }),
        ),
        (
            json!({"type":"session-data","sessionId":"s","chunkBase64":"aGk="}),
            M::SessionData(SessionData {
                session_id: "s".into(),
                chunk_base64: "aGk=".into(),
                extra: none(),
            }),
        ),
        (
            json!({"type":"session-resize","sessionId":"s","cols":100,"rows":40}),
            M::SessionResize(SessionResize {
                session_id: "s".into(),
                cols: 100,
                rows: 40,
                extra: none(),
            }),
        ),
        (
            json!({"type":"session-close","sessionId":"s","reason":"exit 0"}),
            M::SessionClose(SessionClose {
                session_id: "s".into(),
                reason: Some("exit 0".into()),
                extra: none(),
            }),
        ),
        (
            json!({"type":"session-close","sessionId":"s"}),
            M::SessionClose(SessionClose {
                session_id: "s".into(),
                reason: None,
                extra: none(),
            }),
        ),
        (
            json!({"type":"tunnel-open","tunnelId":"t","host":"127.0.0.1","port":8080}),
            M::TunnelOpen(TunnelOpen {
                tunnel_id: "t".into(),
                host: "127.0.0.1".into(),
                port: 8080,
                extra: none(),
            }),
        ),
        (
            json!({"type":"tunnel-data","tunnelId":"t","chunkBase64":"AAE="}),
            M::TunnelData(TunnelData {
                tunnel_id: "t".into(),
                chunk_base64: "AAE=".into(),
                extra: none(),
            }),
        ),
        (
            json!({"type":"tunnel-state","tunnelId":"t","state":"opening"}),
            M::TunnelState(TunnelState {
                tunnel_id: "t".into(),
                state: TunnelStatus::Opening,
                error: None,
                extra: none(),
            }),
        ),
        (
            json!({"type":"tunnel-state","tunnelId":"t","state":"closed"}),
            M::TunnelState(TunnelState {
                tunnel_id: "t".into(),
                state: TunnelStatus::Closed,
                error: None,
                extra: none(),
            }),
        ),
        (
            json!({"type":"tunnel-state","tunnelId":"t","state":"error","error":"refused"}),
            M::TunnelState(TunnelState {
                tunnel_id: "t".into(),
                state: TunnelStatus::Error,
                error: Some("refused".into()),
                extra: none(),
            }),
        ),
        (
            json!({"type":"tunnel-close","tunnelId":"t"}),
            M::TunnelClose(TunnelClose {
                tunnel_id: "t".into(),
                extra: none(),
            }),
        ),
        (
            json!({"type":"exposure-snapshot","exposures":[{"port":80,"name":"web"},{}]}),
            M::ExposureSnapshot(ExposureSnapshot {
                exposures: vec![obj(json!({"port":80,"name":"web"})), Map::new()],
                extra: none(),
            }),
        ),
        (
            json!({"type":"exposure-snapshot","exposures":[]}),
            M::ExposureSnapshot(ExposureSnapshot {
                exposures: vec![],
                extra: none(),
            }),
        ),
    ]
}

#[test]
fn message_every_known_type_round_trips() {
    for (wire, typed) in known_messages() {
        let got = TeamClusterDaemonMessage::from_value(wire.clone()).unwrap();
        assert_eq!(got, typed, "decoding {wire}");
        assert_eq!(got.message_type(), wire["type"].as_str().unwrap());
        assert_eq!(typed.to_value().unwrap(), wire, "encoding {typed:?}");
        // Exact text too: serde_json keeps insertion order.
        assert_eq!(
            serde_json::to_string(&typed).unwrap(),
            serde_json::to_string(&wire).unwrap()
        );
        // Through serde's Deserialize as well.
        let via_serde: TeamClusterDaemonMessage = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(via_serde, typed);
        // And through the `message` event, both ways.
        let text = format!("42/daemon,[\"message\",{wire}]");
        assert_volt_golden(&text, &[], VoltEvent::Message(typed));
    }
}

#[test]
fn message_every_known_type_keeps_extra_fields() {
    for (mut wire, _) in known_messages() {
        wire.as_object_mut()
            .unwrap()
            .insert("zExtra".into(), json!({"nested": [1, 2]}));
        let got = TeamClusterDaemonMessage::from_value(wire.clone()).unwrap();
        assert!(
            !matches!(got, TeamClusterDaemonMessage::Other(_)),
            "extra field made {wire} untyped"
        );
        assert_eq!(got.to_value().unwrap(), wire);
    }
}

#[test]
fn message_unknown_type_is_other_with_raw_json() {
    let wire = json!({"type":"brand-new","x":1,"nested":{"y":[true,null]}});
    let got = TeamClusterDaemonMessage::from_value(wire.clone()).unwrap();
    assert_eq!(got, TeamClusterDaemonMessage::Other(wire.clone()));
    assert_eq!(got.message_type(), "brand-new");
    assert_eq!(got.to_value().unwrap(), wire);
    assert_eq!(
        serde_json::to_string(&got).unwrap(),
        r#"{"type":"brand-new","x":1,"nested":{"y":[true,null]}}"#
    );
    // `type` need not come first for an unknown message, and is kept in place.
    let wire = json!({"a":1,"type":"later"});
    let got = TeamClusterDaemonMessage::from_value(wire.clone()).unwrap();
    assert_eq!(
        serde_json::to_string(&got).unwrap(),
        r#"{"a":1,"type":"later"}"#
    );
}

#[test]
fn message_known_type_with_wrong_field_types_is_other() {
    let cases = [
        json!({"type":"session-open","sessionId":"s","cols":"80","rows":24}),
        json!({"type":"session-open","sessionId":"s","cols":-1,"rows":24}),
        json!({"type":"session-open","sessionId":"s","cols":80}),
        json!({"type":"session-input","sessionId":1,"chunkBase64":"x"}),
        json!({"type":"session-data","sessionId":"s"}),
        json!({"type":"session-resize","sessionId":"s","cols":1.5,"rows":2}),
        json!({"type":"session-close","sessionId":null}),
        json!({"type":"session-close","sessionId":"s","reason":7}),
        json!({"type":"tunnel-open","tunnelId":"t","host":"h","port":70000}),
        json!({"type":"tunnel-data","tunnelId":"t","chunkBase64":["x"]}),
        json!({"type":"tunnel-state","tunnelId":"t","state":"half-open"}),
        json!({"type":"tunnel-state","tunnelId":"t","state":"OPEN"}),
        json!({"type":"tunnel-close"}),
        json!({"type":"exposure-snapshot","exposures":[1,2]}),
        json!({"type":"exposure-snapshot","exposures":{}}),
    ];
    for wire in cases {
        let got = TeamClusterDaemonMessage::from_value(wire.clone()).unwrap();
        assert_eq!(got, TeamClusterDaemonMessage::Other(wire.clone()), "{wire}");
        assert_eq!(got.message_type(), wire["type"].as_str().unwrap());
        assert_eq!(got.to_value().unwrap(), wire);
    }
}

#[test]
fn message_without_string_type_or_not_object_is_an_error() {
    let cases = [
        json!({}),
        json!({"sessionId":"s"}),
        json!({"type":1}),
        json!({"type":null}),
        json!({"type":["session-input"]}),
        json!(null),
        json!("session-input"),
        json!(["session-input"]),
        json!(42),
        json!(true),
    ];
    for wire in cases {
        assert!(
            TeamClusterDaemonMessage::from_value(wire.clone()).is_err(),
            "{wire}"
        );
        assert!(serde_json::from_value::<TeamClusterDaemonMessage>(wire).is_err());
    }
}
