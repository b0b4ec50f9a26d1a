//! Hostile input, one class per test: each must become the specific
//! `DecodeError` that names it, never a panic, a hang or a stack overflow.

use volt_protocol::binary::{check_placeholders, reconstruct};
use volt_protocol::engine::EnginePacket;
use volt_protocol::envelope::VoltEvent;
use volt_protocol::socket::Packet;
use volt_protocol::{DecodeError, Decoder, Incoming, Limits};

fn decoder() -> Decoder {
    Decoder::new(Limits::default())
}

fn small_limits() -> Limits {
    Limits {
        max_frame_bytes: 64,
        max_attachments: 3,
        max_namespace_bytes: 8,
    }
}

/// The error a text frame decodes to through a fresh decoder.
fn text_err(frame: &str) -> DecodeError {
    decoder().text(frame).expect_err(frame)
}

fn bad_payload_for(err: DecodeError, packet_type: &str) {
    match err {
        DecodeError::BadPayload { packet, .. } => assert_eq!(packet, packet_type),
        other => panic!("expected BadPayload for {packet_type}, got {other:?}"),
    }
}

fn bad_json(err: DecodeError) -> String {
    match err {
        DecodeError::BadJson(msg) => msg,
        other => panic!("expected BadJson, got {other:?}"),
    }
}

// ------------------------------------------------------------ packet types

#[test]
fn empty_text_frame_is_empty() {
    assert_eq!(text_err(""), DecodeError::Empty);
}

#[test]
fn empty_socket_packet_is_empty() {
    assert_eq!(
        Packet::decode("", &Limits::default()),
        Err(DecodeError::Empty)
    );
}

#[test]
fn unknown_engine_packet_type_is_bad_engine_packet_type() {
    assert_eq!(text_err("7"), DecodeError::BadEnginePacketType('7'));
    assert_eq!(text_err("x"), DecodeError::BadEnginePacketType('x'));
    // Base64 binary packets (`b...`) are polling-only: not over WebSocket.
    assert_eq!(text_err("bAQIDBA=="), DecodeError::BadEnginePacketType('b'));
    assert_eq!(text_err("é4"), DecodeError::BadEnginePacketType('é'));
}

#[test]
fn unknown_socket_packet_type_is_bad_packet_type() {
    assert_eq!(text_err("47"), DecodeError::BadPacketType('7'));
    assert_eq!(text_err("4x[]"), DecodeError::BadPacketType('x'));
    assert_eq!(text_err("4€"), DecodeError::BadPacketType('€'));
}

#[test]
fn empty_engine_message_is_empty() {
    assert_eq!(text_err("4"), DecodeError::Empty);
}

// ------------------------------------------------------------- namespaces

#[test]
fn namespace_over_the_limit_is_bad_namespace() {
    let nsp = format!("/{}", "a".repeat(256));
    let frame = format!("42{nsp},[\"x\"]");
    assert!(matches!(text_err(&frame), DecodeError::BadNamespace(_)));
    // Exactly at the limit is fine.
    let nsp = format!("/{}", "a".repeat(255));
    let frame = format!("42{nsp},[\"x\"]");
    assert!(decoder().text(&frame).is_ok());
}

#[test]
fn namespace_over_a_small_limit_is_bad_namespace() {
    let mut d = Decoder::new(small_limits());
    assert!(matches!(
        d.text("41/123456789,"),
        Err(DecodeError::BadNamespace(_))
    ));
    assert!(d.text("41/1234567,").is_ok());
}

// ------------------------------------------------------------------- JSON

#[test]
fn malformed_json_is_bad_json() {
    bad_json(text_err(r#"42["x",]"#));
    bad_json(text_err(r#"42["x""#));
    bad_json(text_err(r#"42/daemon,{"#));
    bad_json(text_err(r#"42["x"] trailing"#));
    bad_json(text_err("40\u{0}"));
}

#[test]
fn deeply_nested_json_is_bad_json_not_a_stack_overflow() {
    // serde_json stops at depth 128, long before the stack runs out.
    let deep = format!("42{}", "[".repeat(100_000));
    let msg = bad_json(text_err(&deep));
    assert!(msg.contains("recursion limit"), "{msg}");
    let deep_obj = format!("42[\"x\",{}", "{\"a\":".repeat(100_000));
    let msg = bad_json(text_err(&deep_obj));
    assert!(msg.contains("recursion limit"), "{msg}");
    // Balanced, so only the depth is wrong.
    let balanced = format!("42{}{}", "[".repeat(200), "]".repeat(200));
    bad_json(text_err(&balanced));
}

#[test]
fn deeply_nested_handshake_is_bad_handshake() {
    let deep = format!("0{}", "[".repeat(100_000));
    assert!(matches!(text_err(&deep), DecodeError::BadHandshake(_)));
}

#[test]
fn invalid_handshake_json_is_bad_handshake() {
    for frame in [
        "0",
        "0{",
        "0[]",
        r#"0{"sid":"a"}"#,
        r#"0{"sid":1,"pingInterval":1,"pingTimeout":1}"#,
        r#"0{"sid":"a","pingInterval":-1,"pingTimeout":1}"#,
        r#"0{"sid":"a","pingInterval":"25000","pingTimeout":1}"#,
    ] {
        assert!(
            matches!(text_err(frame), DecodeError::BadHandshake(_)),
            "{frame}"
        );
    }
}

// ------------------------------------------------- payload shape per type

#[test]
fn connect_with_non_object_payload_is_bad_payload() {
    for frame in [r#"40[]"#, r#"40"x""#, "40 1", "40null", r#"40/daemon,true"#] {
        bad_payload_for(text_err(frame), "CONNECT");
    }
}

#[test]
fn disconnect_with_payload_is_bad_payload() {
    for frame in [r#"41{}"#, "41/daemon,[]", "41null"] {
        bad_payload_for(text_err(frame), "DISCONNECT");
    }
}

#[test]
fn event_without_array_or_name_is_bad_payload() {
    for frame in [
        "42",
        "42/daemon,",
        r#"42{}"#,
        r#"42"x""#,
        "42[]",
        "42[null]",
        r#"42[{"a":1}]"#,
        r#"42[["x"]]"#,
        "42[true]",
    ] {
        bad_payload_for(text_err(frame), "EVENT");
    }
}

#[test]
fn ack_without_array_is_bad_payload() {
    for frame in ["431", r#"431{}"#, "43/daemon,1null", "43"] {
        bad_payload_for(text_err(frame), "ACK");
    }
}

#[test]
fn connect_error_without_object_or_string_is_bad_payload() {
    for frame in ["44", "44[]", "441", "44null", "44/daemon,"] {
        bad_payload_for(text_err(frame), "CONNECT_ERROR");
    }
}

#[test]
fn binary_event_without_array_is_bad_payload() {
    bad_payload_for(
        text_err(r#"451-{"_placeholder":true,"num":0}"#),
        "BINARY_EVENT",
    );
    bad_payload_for(text_err("450-[]"), "BINARY_EVENT");
}

#[test]
fn binary_ack_without_array_is_bad_payload() {
    bad_payload_for(text_err("460-1{}"), "BINARY_ACK");
}

// ------------------------------------------------------------ attachments

#[test]
fn binary_packet_without_attachment_count_is_bad_attachment_count() {
    for frame in [
        "45",
        r#"45["x"]"#,
        r#"45-["x"]"#,
        r#"451["x"]"#,
        "46/a,1[]",
        "451",
    ] {
        assert_eq!(text_err(frame), DecodeError::BadAttachmentCount, "{frame}");
    }
}

#[test]
fn too_many_attachments_is_too_many_attachments() {
    assert_eq!(
        text_err(r#"4517-["x"]"#),
        DecodeError::TooManyAttachments { count: 17, max: 16 }
    );
    let mut d = Decoder::new(small_limits());
    assert_eq!(
        d.text(r#"454-["x"]"#),
        Err(DecodeError::TooManyAttachments { count: 4, max: 3 })
    );
}

#[test]
fn attachment_count_overflow_is_too_many_attachments() {
    assert_eq!(
        text_err(r#"45999999999999999999999-["x"]"#),
        DecodeError::TooManyAttachments {
            count: u64::MAX,
            max: 16
        }
    );
    assert_eq!(
        Packet::decode("5999999999999999999999-", &Limits::default()),
        Err(DecodeError::TooManyAttachments {
            count: u64::MAX,
            max: 16
        })
    );
}

#[test]
fn placeholder_past_the_attachment_count_is_placeholder_out_of_range() {
    assert_eq!(
        text_err(r#"451-["x",{"_placeholder":true,"num":1}]"#),
        DecodeError::PlaceholderOutOfRange { num: 1, count: 1 }
    );
    assert_eq!(
        text_err(r#"452-["x",[{"_placeholder":true,"num":18446744073709551615}]]"#),
        DecodeError::PlaceholderOutOfRange {
            num: u64::MAX,
            count: 2
        }
    );
}

#[test]
fn placeholder_in_a_plain_event_is_ordinary_data_but_no_body() {
    // As in socket.io-parser, a placeholder object means something only in
    // a binary packet; in a plain event it is data.
    let mut d = Decoder::new(Limits::default());
    let Some(Incoming::Packet(p)) = d
        .text(r#"42/daemon,["x",{"_placeholder":true,"num":0}]"#)
        .unwrap()
    else {
        panic!("a plain event decodes")
    };
    assert_eq!(p.attachments.len(), 0);
    // A reverse-response that points at a missing attachment is still refused.
    let Some(Incoming::Packet(p)) = d
        .text(r#"42/daemon,["reverse-response",{"requestId":"r","command":"c","status":200,"headers":{},"body":{"_placeholder":true,"num":0}}]"#)
        .unwrap()
    else {
        panic!("a plain event decodes")
    };
    assert_eq!(
        VoltEvent::from_packet(p).unwrap_err(),
        DecodeError::PlaceholderOutOfRange { num: 0, count: 0 }
    );
}

#[test]
fn reconstruct_with_missing_buffer_is_placeholder_out_of_range() {
    let v = serde_json::json!({"a":{"_placeholder":true,"num":2}});
    assert_eq!(
        reconstruct(v.clone(), &[vec![1], vec![2]]),
        Err(DecodeError::PlaceholderOutOfRange { num: 2, count: 2 })
    );
    assert_eq!(
        check_placeholders(&v, 2),
        Err(DecodeError::PlaceholderOutOfRange { num: 2, count: 2 })
    );
}

#[test]
fn volt_body_placeholder_past_attachments_is_placeholder_out_of_range() {
    // The packet layer accepts num 0 of 1; the envelope asks for num 0 of
    // an empty list when handed no attachments.
    let err = VoltEvent::from_args(
        "reverse-stream",
        serde_json::json!({"requestId":"r","seq":0,"chunk":{"_placeholder":true,"num":0}}),
        Vec::new(),
    )
    .unwrap_err();
    assert_eq!(err, DecodeError::PlaceholderOutOfRange { num: 0, count: 0 });
}

#[test]
fn volt_body_that_is_not_a_placeholder_is_bad_payload() {
    let err = VoltEvent::from_args(
        "reverse-response",
        serde_json::json!({"requestId":"r","command":"c","body":"AAEC"}),
        Vec::new(),
    )
    .unwrap_err();
    bad_payload_for(err, "reverse-response");
}

// ------------------------------------------------------------ frame sizes

#[test]
fn text_frame_over_the_limit_is_frame_too_large() {
    let mut d = Decoder::new(small_limits());
    let frame = format!("42[\"{}\"]", "a".repeat(100));
    assert_eq!(
        d.text(&frame),
        Err(DecodeError::FrameTooLarge {
            size: frame.len(),
            max: 64
        })
    );
    // The limit counts bytes, not chars.
    let frame = format!("42[\"{}\"]", "€".repeat(20));
    assert_eq!(
        d.text(&frame),
        Err(DecodeError::FrameTooLarge { size: 66, max: 64 })
    );
}

#[test]
fn binary_frame_over_the_limit_is_frame_too_large() {
    let mut d = Decoder::new(small_limits());
    assert_eq!(
        d.text(r#"451-["x",{"_placeholder":true,"num":0}]"#),
        Ok(None)
    );
    assert_eq!(
        d.binary(vec![0; 65]),
        Err(DecodeError::FrameTooLarge { size: 65, max: 64 })
    );
    // The half packet was dropped with it: nothing waits any more.
    assert_eq!(d.binary(vec![0; 1]), Err(DecodeError::UnexpectedBinary));
}

#[test]
fn frame_exactly_at_the_limit_is_accepted() {
    let mut d = Decoder::new(small_limits());
    assert_eq!(
        d.text(r#"451-["x",{"_placeholder":true,"num":0}]"#),
        Ok(None)
    );
    assert!(matches!(
        d.binary(vec![0; 64]),
        Ok(Some(Incoming::Packet(_)))
    ));
}

// ------------------------------------------------------- frame sequencing

#[test]
fn binary_frame_with_no_header_waiting_is_unexpected_binary() {
    let mut d = decoder();
    assert_eq!(d.binary(vec![1, 2, 3]), Err(DecodeError::UnexpectedBinary));
    assert_eq!(d.binary(Vec::new()), Err(DecodeError::UnexpectedBinary));
}

#[test]
fn binary_frame_after_a_complete_packet_is_unexpected_binary() {
    let mut d = decoder();
    assert_eq!(
        d.text(r#"451-["x",{"_placeholder":true,"num":0}]"#),
        Ok(None)
    );
    assert!(d.binary(vec![1]).unwrap().is_some());
    assert_eq!(d.binary(vec![2]), Err(DecodeError::UnexpectedBinary));
}

#[test]
fn text_frame_while_attachments_pending_is_missing_attachments() {
    let mut d = decoder();
    let header = r#"453-["x",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1},{"_placeholder":true,"num":2}]"#;
    assert_eq!(d.text(header), Ok(None));
    assert_eq!(d.binary(vec![1]), Ok(None));
    assert_eq!(
        d.text(r#"42["y"]"#),
        Err(DecodeError::MissingAttachments { missing: 2 })
    );
    // The broken packet is gone; the decoder goes on with the next frames.
    assert_eq!(d.binary(vec![2]), Err(DecodeError::UnexpectedBinary));
    assert!(matches!(
        d.text(r#"42["y"]"#),
        Ok(Some(Incoming::Packet(_)))
    ));
}

#[test]
fn ping_while_attachments_pending_is_missing_attachments() {
    // The decoder treats any text frame as breaking the sequence, even an
    // Engine.IO ping (socket.io servers never interleave one).
    let mut d = decoder();
    assert_eq!(
        d.text(r#"451-["x",{"_placeholder":true,"num":0}]"#),
        Ok(None)
    );
    assert_eq!(
        d.text("2"),
        Err(DecodeError::MissingAttachments { missing: 1 })
    );
}

#[test]
fn reset_drops_a_half_received_packet() {
    let mut d = decoder();
    assert_eq!(
        d.text(r#"451-["x",{"_placeholder":true,"num":0}]"#),
        Ok(None)
    );
    d.reset();
    assert_eq!(d.binary(vec![1]), Err(DecodeError::UnexpectedBinary));
}

// ------------------------------------------------------------------ ack ids

#[test]
fn ack_id_overflow_is_bad_ack_id() {
    assert_eq!(
        text_err(r#"4218446744073709551616["x"]"#),
        DecodeError::BadAckId
    );
    assert_eq!(
        text_err(r#"43/daemon,99999999999999999999999999[]"#),
        DecodeError::BadAckId
    );
    // u64::MAX itself fits.
    assert!(decoder().text(r#"4218446744073709551615["x"]"#).is_ok());
}

// ------------------------------------------------------------ VOLT events

#[test]
fn unknown_event_name_is_unknown_event() {
    let mut d = decoder();
    let Some(Incoming::Packet(c)) = d.text(r#"42/daemon,["nope",{}]"#).unwrap() else {
        panic!()
    };
    assert_eq!(
        VoltEvent::from_packet(c),
        Err(DecodeError::UnknownEvent("nope".into()))
    );
    let Some(Incoming::Packet(c)) = d.text(r#"42/daemon,[1,{}]"#).unwrap() else {
        panic!()
    };
    assert_eq!(
        VoltEvent::from_packet(c),
        Err(DecodeError::UnknownEvent("1".into()))
    );
}

#[test]
fn volt_event_with_wrong_field_types_is_bad_payload() {
    for (name, arg) in [
        ("command", serde_json::json!({"requestId":1,"command":"c"})),
        ("command", serde_json::json!(null)),
        (
            "command-response",
            serde_json::json!({"requestId":"r","ok":"yes"}),
        ),
        ("command-response", serde_json::json!({"requestId":"r"})),
        ("reverse-command", serde_json::json!({"requestId":"r"})),
        ("reverse-command", serde_json::json!([])),
        (
            "reverse-response",
            serde_json::json!({"requestId":"r","command":"c","status":70000}),
        ),
        (
            "reverse-response",
            serde_json::json!({"requestId":"r","command":"c","headers":[]}),
        ),
        (
            "reverse-response",
            serde_json::json!({"requestId":"r","command":"c","data":1,"stream":true}),
        ),
        (
            "reverse-stream",
            serde_json::json!({"requestId":"r","seq":-1,"chunk":null}),
        ),
        (
            "reverse-stream-end",
            serde_json::json!({"requestId":"r","chunks":"2"}),
        ),
        ("message", serde_json::json!({"type":7})),
        ("message", serde_json::json!("session-input")),
    ] {
        let err = VoltEvent::from_args(name, arg.clone(), Vec::new()).unwrap_err();
        bad_payload_for(err, name);
    }
}

#[test]
fn ack_packet_is_not_a_volt_event() {
    let mut d = decoder();
    let Some(Incoming::Packet(c)) = d.text(r#"43/daemon,1["command",{}]"#).unwrap() else {
        panic!()
    };
    assert!(matches!(
        VoltEvent::from_packet(c),
        Err(DecodeError::BadPayload { .. })
    ));
}

#[test]
fn lenient_error_field_never_fails_a_reply() {
    // An `error` that is not an object reads as absent.
    let e = VoltEvent::from_args(
        "command-response",
        serde_json::json!({"requestId":"r","ok":false,"error":"boom"}),
        Vec::new(),
    )
    .unwrap();
    let VoltEvent::CommandResponse(r) = e else {
        panic!()
    };
    assert_eq!(r.error, None);
}

#[test]
fn engine_packet_decode_of_garbage_never_panics() {
    for s in ["\u{feff}", "0\u{feff}", "00", "4\u{10ffff}", "9", "\n"] {
        let _ = EnginePacket::decode(s);
        let _ = decoder().text(s);
    }
}
