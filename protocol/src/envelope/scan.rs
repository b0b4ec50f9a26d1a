//! The reply shape every peer sends in practice, read without a JSON parser.

/// A successful `command-response` in the shape every peer sends in
/// practice, found by [`scan_command_response`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedResponse<'a> {
    /// The request this answers (no escapes in it).
    pub request_id: &'a str,
    /// `data` as it appears in the frame: one JSON value by its structure
    /// (brackets and strings balance), not yet validated. `None` when absent.
    pub data: Option<&'a str>,
}

/// The reply shape every peer sends in practice, read without a JSON
/// parser: exactly `["command-response",{"requestId":"<id>","ok":true}]`
/// or the same with `,"data":<value>` last. `None` for anything else (other
/// key order, whitespace, escapes in the id, `ok:false`, extra fields),
/// which [`decode_command_response`] then reads.
///
/// `data` is delimited, not validated: its brackets and strings must
/// balance and close exactly at its end, but whether it is valid JSON is
/// found out by whoever parses it, which reports the error for that
/// command (where a full parse here would have dropped the frame and left
/// the command to time out). This scan is the whole cost of a reply on the
/// connection thread.
///
/// ```
/// use volt_protocol::envelope::scan_command_response;
/// let r = scan_command_response(r#"["command-response",{"requestId":"r1","ok":true,"data":{"a":"}"}}]"#).unwrap();
/// assert_eq!((r.request_id, r.data), ("r1", Some(r#"{"a":"}"}"#)));
/// // An extra field after `data`: not this shape.
/// assert!(scan_command_response(r#"["command-response",{"requestId":"r1","ok":true,"data":1,"x":2}]"#).is_none());
/// ```
pub fn scan_command_response(json: &str) -> Option<ScannedResponse<'_>> {
    let rest = json.strip_prefix(r#"["command-response",{"requestId":""#)?;
    // The id ends at its quote; an escape or a raw control character (not
    // valid JSON) means another path must read it.
    let end = rest
        .bytes()
        .position(|b| b == b'"' || b == b'\\' || b < 0x20)?;
    let (request_id, rest) = rest.split_at(end);
    let rest = rest.strip_prefix(r#"","ok":true"#)?;
    if rest == "}]" {
        return Some(ScannedResponse {
            request_id,
            data: None,
        });
    }
    let data = rest.strip_prefix(r#","data":"#)?.strip_suffix("}]")?;
    is_one_value(data.as_bytes()).then_some(ScannedResponse {
        request_id,
        data: Some(data),
    })
}

/// Whether `b` is one JSON value by its structure: a string, or brackets
/// that close exactly at the end, or a bare scalar (number or literal).
fn is_one_value(b: &[u8]) -> bool {
    match b.first() {
        None => false,
        Some(b'"') => string_end(b, 0) == Some(b.len() - 1),
        Some(b'{' | b'[') => closes_at_end(b),
        Some(_) => b
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'+' | b'-')),
    }
}

/// Whether the bracket opened at `b[0]` closes at the last byte.
fn closes_at_end(b: &[u8]) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return i == b.len() - 1;
                }
            }
            b'"' => match string_end(b, i) {
                Some(end) => i = end,
                None => return false,
            },
            _ => {}
        }
        i += 1;
    }
    false
}

/// The index of the quote closing the string that opens at `b[start]`.
/// Strings are most of a typical reply, so this jumps from one quote or
/// backslash to the next (`memchr2`, SIMD) instead of stepping bytes.
fn string_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < b.len() {
        i += memchr::memchr2(b'"', b'\\', &b[i..])?;
        if b[i] == b'"' {
            return Some(i);
        }
        i += 2;
    }
    None
}
