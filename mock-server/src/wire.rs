//! The frames and history entries the server writes from borrowed
//! fields: `command-response` frames and recorded `command` envelopes.
//! Pure functions, checked against the codec's own serialization.

use serde_json::{Map, Value};
use volt_protocol::envelope::{names, CommandRequest, ErrorBody};
use volt_protocol::json::{write_str as write_json_str, write_value as write_json};
use volt_protocol::socket::{encode_header, PacketType};

/// The command name of a daemon's heartbeat.
pub(crate) const HEARTBEAT: &str = "runtime.heartbeat";

/// Writes a `command` envelope as `{"requestId","command"[,"payload"]}`,
/// the payload copied as it came (`payload_raw` is JSON text): what a
/// history entry keeps. The field order and omission of
/// [`CommandRequest`]'s Serialize.
pub(crate) fn write_envelope(
    out: &mut Vec<u8>,
    request_id: &str,
    command: &str,
    payload_raw: Option<&str>,
) {
    out.clear();
    out.extend_from_slice(b"{\"requestId\":");
    write_json_str(out, request_id);
    out.extend_from_slice(b",\"command\":");
    write_json_str(out, command);
    if let Some(p) = payload_raw {
        out.extend_from_slice(b",\"payload\":");
        out.extend_from_slice(p.as_bytes());
    }
    out.push(b'}');
}

/// The `{...}` command object of a `["command",{...}]` array that
/// `decode_command_ref` read from `json`, found from where its `payload`
/// (a slice of `json`) lies: when the payload is the object's last field
/// and the object the array's last element, as every client sends it.
/// `None` otherwise (then [`write_envelope`] writes the entry). The
/// object kept as it came reads back ([`parse_envelope`]) as the one
/// [`write_envelope`] writes.
pub(crate) fn command_object<'t>(json: &'t str, payload: &str) -> Option<&'t str> {
    let start = (payload.as_ptr() as usize).checked_sub(json.as_ptr() as usize)?;
    let end = start.checked_add(payload.len())?;
    let bytes = json.as_bytes();
    let tail = bytes.get(end..)?;
    // As every client writes it: nothing to skip.
    if tail == b"}]" && json.starts_with(r#"["command",{"#) && start > 11 {
        return json.get(11..end + 1);
    }
    // What follows the payload: `}`, then `]`, whitespace around each.
    let mut i = skip_ws(tail, 0);
    if tail.get(i) != Some(&b'}') {
        return None;
    }
    let close = end + i + 1;
    i = skip_ws(tail, i + 1);
    if tail.get(i) != Some(&b']') || skip_ws(tail, i + 1) != tail.len() {
        return None;
    }
    // The name before it decodes to "command": no raw `{` in it.
    let open = bytes[..start].iter().position(|&b| b == b'{')?;
    json.get(open..close)
}

/// The index of the first byte at or after `i` that is not JSON whitespace.
fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while bytes
        .get(i)
        .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        i += 1;
    }
    i
}

/// A recorded envelope as the request it was decoded from (it was written
/// from one, so it always parses).
pub(crate) fn parse_request(json: &str) -> CommandRequest {
    serde_json::from_str(json).unwrap_or_else(|_| CommandRequest {
        request_id: String::new(),
        command: String::new(),
        payload: None,
    })
}

/// A history entry read back: the same value [`command_envelope`] gives
/// for the request it was written from (the payload parsed only now).
pub(crate) fn parse_envelope(json: &str) -> Value {
    command_envelope(&parse_request(json))
}

/// A recorded `command` as JSON: `{"requestId","command"[,"payload"]}`.
pub(crate) fn command_envelope(req: &CommandRequest) -> Value {
    let mut envelope = Map::new();
    envelope.insert("requestId".into(), req.request_id.clone().into());
    envelope.insert("command".into(), req.command.clone().into());
    if let Some(p) = &req.payload {
        envelope.insert("payload".into(), p.clone());
    }
    Value::Object(envelope)
}

/// `42<nsp>,["command-response",`: what every `command-response` frame
/// on `namespace` starts with.
pub(crate) fn command_response_prefix(namespace: &str) -> String {
    let mut head = String::with_capacity(namespace.len() + 24);
    head.push('4');
    encode_header(&mut head, PacketType::Event, 0, namespace, None);
    head.push_str("[\"");
    head.push_str(names::COMMAND_RESPONSE);
    head.push_str("\",");
    head
}

/// The text frame of a `command-response` (`prefix` from
/// [`command_response_prefix`]), serialized from borrowed fields (no owned
/// envelope) through `scratch`, then copied once into an exactly sized
/// `String` (tungstenite turns a `String` whose length is its capacity
/// into its payload without another allocation). Byte for byte what
/// `VoltEvent::CommandResponse(..).encode(namespace).text` gives.
/// A reply's `data`: a value, or JSON text sent back as it came.
pub(crate) enum ReplyData<'a> {
    Value(&'a Value),
    Raw(&'a str),
}

pub(crate) fn command_response_frame(
    scratch: &mut Vec<u8>,
    prefix: &str,
    request_id: &str,
    ok: bool,
    data: Option<ReplyData<'_>>,
    error: Option<&ErrorBody>,
) -> String {
    // The field order and omissions of `CommandResponse`'s Serialize.
    scratch.clear();
    scratch.extend_from_slice(prefix.as_bytes());
    scratch.extend_from_slice(b"{\"requestId\":");
    write_json_str(scratch, request_id);
    scratch.extend_from_slice(if ok {
        b",\"ok\":true"
    } else {
        b",\"ok\":false"
    });
    match data {
        Some(ReplyData::Value(v)) => {
            scratch.extend_from_slice(b",\"data\":");
            write_json(scratch, v);
        }
        Some(ReplyData::Raw(json)) => {
            scratch.extend_from_slice(b",\"data\":");
            scratch.extend_from_slice(json.as_bytes());
        }
        None => {}
    }
    if let Some(error) = error {
        scratch.extend_from_slice(b",\"error\":{\"code\":");
        write_json_str(scratch, &error.code);
        scratch.extend_from_slice(b",\"message\":");
        write_json_str(scratch, &error.message);
        scratch.push(b'}');
    }
    scratch.extend_from_slice(b"}]");
    // Everything written is UTF-8 (the prefix is a `str`, the rest JSON).
    std::str::from_utf8(scratch)
        .map(str::to_owned)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use volt_protocol::envelope::{CommandResponse, VoltEvent};

    #[test]
    fn borrowed_command_response_matches_the_codec() {
        let cases = [
            ("r1", true, None, None),
            ("r\"2\\", true, Some(json!({"n": 1, "s": "é\u{1}"})), None),
            ("r3", true, Some(Value::Null), None),
            ("r4", false, None, Some(ErrorBody::new("E", "bad \"x\""))),
            (
                "r5",
                false,
                None,
                Some(ErrorBody::new("", "tab\t\u{7f}\u{2028}")),
            ),
            (
                "r6",
                true,
                Some(json!({
                    "": [], "o": {}, "a": [1, -2, 1.5, -0.0, 1e300, u64::MAX, i64::MIN, true, false, null],
                    "nested": {"z": [{"y": "\u{1f600}\\/\n\r\u{8}\u{c}"}], "b": "plain"},
                    "key \"q\"": "x", "ctl\u{1f}": 0.1
                })),
                None,
            ),
            ("r7", true, Some(json!("just a string")), None),
            ("r8", true, Some(json!(12345)), None),
        ];
        for ns in ["/daemon", "/", "/a\"b"] {
            for (rid, ok, data, error) in &cases {
                let codec = VoltEvent::CommandResponse(CommandResponse {
                    request_id: (*rid).into(),
                    ok: *ok,
                    data: data.clone(),
                    error: error.clone(),
                })
                .encode(ns)
                .text;
                let frame = |data| {
                    command_response_frame(
                        &mut Vec::new(),
                        &command_response_prefix(ns),
                        rid,
                        *ok,
                        data,
                        error.as_ref(),
                    )
                };
                assert_eq!(frame(data.as_ref().map(ReplyData::Value)), codec);
                // Raw data (the echo fast path) as its compact JSON text.
                let raw = data.as_ref().map(Value::to_string);
                assert_eq!(frame(raw.as_deref().map(ReplyData::Raw)), codec);
            }
        }
    }

    #[test]
    fn a_written_envelope_reads_back_as_the_parsed_request() {
        for (rid, cmd, raw) in [
            ("r", "c", None),
            (
                "r\"1\\",
                "e\u{e9}",
                Some(r#"{ "b" : [1, 2.5], "a":"\u00e9\"" }"#),
            ),
            ("r2", "echo", Some("null")),
            ("r3", "echo", Some("\"s\"")),
        ] {
            let mut buf = Vec::new();
            write_envelope(&mut buf, rid, cmd, raw);
            let text = std::str::from_utf8(&buf).unwrap();
            let req = CommandRequest {
                request_id: rid.into(),
                command: cmd.into(),
                payload: raw.and_then(|r| serde_json::from_str(r).unwrap()),
            };
            assert_eq!(parse_envelope(text), command_envelope(&req));
            assert_eq!(parse_request(text), req);
        }
    }

    #[test]
    fn the_command_object_is_found_only_when_the_payload_ends_it() {
        use volt_protocol::envelope::decode_command_ref;
        fn object(json: &str) -> Option<&str> {
            let req = decode_command_ref(json).unwrap();
            command_object(json, req.payload.unwrap().get())
        }
        let plain = r#"{"requestId":"r\"1","command":"echo","payload":{"a":"}]"}}"#;
        assert_eq!(object(&format!(r#"["command",{plain}]"#)), Some(plain));
        let spaced = "{ \"requestId\" : \"r\", \"command\":\"c\", \"payload\" : [1] \n}";
        assert_eq!(
            object(&format!("[ \"command\" , {spaced} ]\n")),
            Some(spaced)
        );
        // Another field after the payload, or another element after the object.
        assert_eq!(
            object(r#"["command",{"requestId":"r","command":"c","payload":1,"x":2}]"#),
            None
        );
        assert_eq!(
            object(r#"["command",{"requestId":"r","command":"c","payload":1},3]"#),
            None
        );
        // Whatever is kept reads back as what write_envelope writes.
        let json = format!(r#"["command",{plain}]"#);
        let req = decode_command_ref(&json).unwrap();
        let mut buf = Vec::new();
        write_envelope(
            &mut buf,
            &req.request_id,
            &req.command,
            req.payload.map(|p| p.get()),
        );
        assert_eq!(
            parse_envelope(object(&json).unwrap()),
            parse_envelope(std::str::from_utf8(&buf).unwrap())
        );
        // A slice from elsewhere is never taken for part of the frame.
        assert_eq!(command_object(&json, "1"), None);
    }

    #[test]
    fn command_envelope_matches_serde() {
        for payload in [None, Some(json!({"b": 1, "a": [2]}))] {
            let req = CommandRequest {
                request_id: "r".into(),
                command: "c".into(),
                payload,
            };
            let v = command_envelope(&req);
            assert_eq!(v, serde_json::to_value(&req).unwrap());
            assert_eq!(v.to_string(), serde_json::to_string(&req).unwrap());
        }
    }
}
