//! Masking: what makes two runs of a flow comparable.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::*;

/// Masks raw frames as `record-transcripts.js` does: drops pings, pongs and
/// heartbeats, numbers sids and UUIDs by first appearance, hides the
/// `client` name.
pub fn mask(frames: &[Frame]) -> Vec<Frame> {
    let heartbeat_ids = heartbeat_request_ids(frames);
    let mut sids = HashMap::new();
    let mut uuids = HashMap::new();
    frames
        .iter()
        .filter(|f| !(f.kind == "text" && (f.data == "2" || f.data == "3")))
        .filter(|f| {
            f.kind != "text"
                || event_body(&f.data)
                    .and_then(|b| b.get("requestId")?.as_str().map(str::to_owned))
                    .is_none_or(|id| !heartbeat_ids.contains(&id))
        })
        .map(|f| {
            let mut f = f.clone();
            if f.kind == "text" {
                f.data = mask_quoted_field(&f.data, "sid", |sid| {
                    let n = sids.len() + 1;
                    sids.entry(sid.to_owned())
                        .or_insert_with(|| format!("<sid-{n}>"))
                        .clone()
                });
                f.data = mask_quoted_field(&f.data, "client", |_| "<client>".into());
                f.data = mask_uuids(&f.data, &mut uuids);
            }
            f
        })
        .collect()
}

/// The `{…}` argument of a `42…` event frame (`42/nsp,["name",{…}]`).
fn event_body(text: &str) -> Option<Value> {
    if !text.starts_with("42") {
        return None;
    }
    let array: Value = serde_json::from_str(&text[text.find('[')?..]).ok()?;
    array.get(1).cloned()
}

/// The requestIds of the daemon's heartbeats.
fn heartbeat_request_ids(frames: &[Frame]) -> HashSet<String> {
    frames
        .iter()
        .filter(|f| f.kind == "text" && f.dir == "in")
        .filter_map(|f| event_body(&f.data))
        .filter(|b| b["command"] == volt_daemon_client::HEARTBEAT_COMMAND)
        .filter_map(|b| b["requestId"].as_str().map(str::to_owned))
        .collect()
}

/// Replaces the value of every `"<field>":"<value>"` by `replace(value)`.
fn mask_quoted_field(text: &str, field: &str, mut replace: impl FnMut(&str) -> String) -> String {
    let key = format!("\"{field}\":\"");
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(&key) {
        let start = i + key.len();
        let Some(len) = rest[start..].find('"') else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push_str(&replace(&rest[start..start + len]));
        rest = &rest[start + len..];
    }
    out.push_str(rest);
    out
}

/// Replaces every UUID (8-4-4-4-12 hex digits) by `<uuid-N>`.
fn mask_uuids(text: &str, seen: &mut HashMap<String, String>) -> String {
    const SHAPE: [usize; 5] = [8, 4, 4, 4, 12];
    let is_uuid_at = |b: &[u8]| -> bool {
        if b.len() < 36 {
            return false;
        }
        let mut i = 0;
        for (g, n) in SHAPE.iter().enumerate() {
            if !b[i..i + n].iter().all(u8::is_ascii_hexdigit) {
                return false;
            }
            i += n;
            if g < 4 {
                if b[i] != b'-' {
                    return false;
                }
                i += 1;
            }
        }
        true
    };
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        if is_uuid_at(&bytes[i..]) {
            out.push_str(&text[copied..i]);
            let key = text[i..i + 36].to_ascii_lowercase();
            let n = seen.len() + 1;
            out.push_str(seen.entry(key).or_insert_with(|| format!("<uuid-{n}>")));
            i += 36;
            copied = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[copied..]);
    out
}
