//! A JSON writer for the hot paths: the same bytes as `serde_json`, faster
//! for strings that need no escaping. Used by the client's command encoder
//! and by the mock server's responses.

use serde_json::Value;

/// Appends `v` as compact JSON, byte for byte what `serde_json` writes,
/// with a fast path for strings that need no escaping (serde_json escapes
/// byte by byte; strings are the bulk of most payloads).
///
/// ```
/// use volt_protocol::json::write_value;
/// let v = serde_json::json!({"a": [1, "two\n", null]});
/// let mut out = Vec::new();
/// write_value(&mut out, &v);
/// assert_eq!(out, serde_json::to_vec(&v).unwrap());
/// ```
pub fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // Numbers serialize infallibly.
        Value::Number(n) => {
            let _ = serde_json::to_writer(&mut *out, n);
        }
        Value::String(s) => write_str(out, s),
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, x);
            }
            out.push(b']');
        }
        Value::Object(m) => {
            out.push(b'{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_value(out, x);
            }
            out.push(b'}');
        }
    }
}

/// Appends `s` as a JSON string: copied as is between quotes when nothing
/// in it needs escaping, else written by `serde_json` (identical output).
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    // No early exit: this form vectorizes.
    let needs_escape = s.bytes().fold(false, |acc, b| {
        acc | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if needs_escape {
        // Strings serialize infallibly.
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use serde_json::json;

    #[test]
    fn write_value_matches_serde_json_on_random_values() {
        fn string(rng: &mut impl rand::Rng) -> String {
            const CHARS: &[char] = &[
                'a',
                'Z',
                '0',
                ' ',
                '"',
                '\\',
                '/',
                '\n',
                '\t',
                '\u{0}',
                '\u{1f}',
                '\u{7f}',
                'é',
                '\u{2028}',
                '\u{1f600}',
            ];
            let n = rng.random_range(0..12);
            (0..n)
                .map(|_| CHARS[rng.random_range(0..CHARS.len())])
                .collect()
        }
        fn value(rng: &mut impl rand::Rng, depth: u32) -> Value {
            match rng.random_range(0..if depth > 3 { 6 } else { 8 }) {
                0 => Value::Null,
                1 => Value::Bool(rng.random()),
                2 => json!(rng.random::<i64>()),
                3 => json!(rng.random::<u64>()),
                4 => json!(rng.random::<f64>() * 10f64.powi(rng.random_range(-300..300))),
                5 => Value::String(string(rng)),
                6 => Value::Array(
                    (0..rng.random_range(0..4))
                        .map(|_| value(rng, depth + 1))
                        .collect(),
                ),
                _ => Value::Object(
                    (0..rng.random_range(0..4))
                        .map(|_| (string(rng), value(rng, depth + 1)))
                        .collect(),
                ),
            }
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x150_2026);
        for _ in 0..2000 {
            let v = value(&mut rng, 0);
            let mut ours = Vec::new();
            write_value(&mut ours, &v);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(&v).unwrap()
            );
        }
    }
}
