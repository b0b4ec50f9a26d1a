//! The frame-level check: transcripts recorded from real socket.io
//! (`record-transcripts.js`: ref-daemon.js against ref-server.js), the same
//! flows replayed with our client and/or our mock server, and the masking
//! that makes two runs comparable.
//!
//! A transcript (`interop/transcripts/<flow>.json`) holds the flow's
//! settings, its steps (each with the outcome seen, `expect`) and its frames
//! `{dir, type, data}`: `dir` is `in` (daemon to server) or `out`, `data` the
//! exact text or base64 for binary. Masking leaves out pings and pongs and
//! heartbeats (commands `runtime.heartbeat` and their responses) and
//! replaces sids (`"sid":"…"`), UUIDs and the `client` name with
//! placeholders numbered by first appearance, so a reply that echoes the
//! wrong requestId still differs.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Map, Value};
use volt_daemon_client::{ClusterDaemonClient, DaemonClientErrorCode, TeamClusterDaemonMessage};
use volt_testkit::{Direction, FrameRecord, MockServer, RawFrame};

use crate::{
    client_options, record_events, register_reference_handlers, Admin, ClientEvents, RefDaemon,
    RefServer, WAIT,
};

/// One frame of a transcript, masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// `in` (daemon to server) or `out` (server to daemon).
    pub dir: String,
    /// `text` or `binary`.
    pub kind: String,
    /// The text, or base64 of the bytes.
    pub data: String,
}

impl Frame {
    /// `C> …` (from the daemon) or `S> …` (from the server).
    pub fn line(&self) -> String {
        let arrow = if self.dir == "in" { "C>" } else { "S>" };
        if self.kind == "text" {
            format!("{arrow} {}", self.data)
        } else {
            format!("{arrow} [binary] {}", self.data)
        }
    }

    fn from_json(v: &Value) -> Frame {
        let s = |k: &str| {
            v[k].as_str()
                .unwrap_or_else(|| panic!("frame without a string {k:?}: {v}"))
                .to_owned()
        };
        Frame {
            dir: s("dir"),
            kind: s("type"),
            data: s("data"),
        }
    }

    fn from_record(f: &FrameRecord) -> Frame {
        let dir = match f.dir {
            Direction::In => "in",
            Direction::Out => "out",
        };
        let (kind, data) = match &f.frame {
            RawFrame::Text(t) => ("text", t.clone()),
            RawFrame::Binary(b) => (
                "binary",
                base64::engine::general_purpose::STANDARD.encode(b),
            ),
        };
        Frame {
            dir: dir.into(),
            kind: kind.into(),
            data,
        }
    }
}

/// A recorded transcript.
#[derive(Debug, Clone)]
pub struct Transcript {
    /// Its name (the file stem).
    pub flow: String,
    /// What it exercises.
    pub description: String,
    /// `settings`: cluster, password, installedVersion, pingIntervalMs,
    /// pingTimeoutMs, maxPayload.
    pub settings: Value,
    /// `accepted` or `rejected`.
    pub registration: String,
    /// The steps, with their `expect`ed outcomes.
    pub steps: Vec<Value>,
    /// The masked frames real socket.io exchanged.
    pub frames: Vec<Frame>,
}

/// `interop/transcripts/`.
pub fn transcripts_dir() -> PathBuf {
    crate::interop_dir().join("transcripts")
}

/// The flows recorded in `interop/transcripts/`, sorted.
pub fn recorded_flows() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(transcripts_dir())
        .expect("interop/transcripts exists")
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "json").then(|| p.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    names
}

impl Transcript {
    /// Loads `interop/transcripts/<flow>.json`.
    pub fn load(flow: &str) -> Transcript {
        let path = transcripts_dir().join(format!("{flow}.json"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read {} ({e}); record it with `node interop/record-transcripts.js`",
                path.display()
            )
        });
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        Transcript {
            flow: s("flow"),
            description: s("description"),
            settings: v["settings"].clone(),
            registration: s("registration"),
            steps: v["steps"].as_array().cloned().unwrap_or_default(),
            frames: v["frames"]
                .as_array()
                .expect("a transcript has frames")
                .iter()
                .map(Frame::from_json)
                .collect(),
        }
    }

    fn setting_str(&self, k: &str) -> String {
        self.settings[k]
            .as_str()
            .unwrap_or_else(|| panic!("transcript {}: no settings.{k}", self.flow))
            .to_owned()
    }

    fn setting_u64(&self, k: &str) -> u64 {
        self.settings[k]
            .as_u64()
            .unwrap_or_else(|| panic!("transcript {}: no settings.{k}", self.flow))
    }

    fn cluster(&self) -> String {
        self.setting_str("cluster")
    }
}

// ---------------------------------------------------------------------------
// Masking

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

/// Panics with both transcripts, line by line, and the first difference,
/// unless they are equal.
#[track_caller]
pub fn assert_same_frames(what: &str, expected: &[Frame], actual: &[Frame]) {
    if expected == actual {
        return;
    }
    let first = expected
        .iter()
        .zip(actual)
        .position(|(a, b)| a != b)
        .unwrap_or(expected.len().min(actual.len()));
    let render = |fs: &[Frame]| {
        fs.iter()
            .enumerate()
            .map(|(i, f)| {
                let mark = if i == first { ">>" } else { "  " };
                format!("{mark} {i:>2} {}", truncate(&f.line(), 300))
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    panic!(
        "{what}: the frames differ from real socket.io's (first difference at frame {first})\n\
         --- recorded from socket.io {} frames:\n{}\n--- ours {} frames:\n{}",
        expected.len(),
        render(expected),
        actual.len(),
        render(actual)
    );
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_owned();
    }
    let mut cut = n;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} bytes)", &s[..cut], s.len())
}

/// Only the frames going `dir` (`in`: daemon to server, `out`).
pub fn only(dir: &str, frames: &[Frame]) -> Vec<Frame> {
    frames.iter().filter(|f| f.dir == dir).cloned().collect()
}

// ---------------------------------------------------------------------------
// Replaying a flow

/// Which server a flow runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// Our mock server, in process (`volt-testkit`'s `MockServer`).
    Mock,
    /// `ref-server.js` (the real socket.io server).
    Real,
}

/// Which daemon a flow runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonKind {
    /// Our client.
    Ours,
    /// `ref-daemon.js` (the real socket.io-client).
    Real,
}

enum Server {
    Mock(MockServer),
    Real(RefServer),
}

impl Server {
    fn start(kind: ServerKind, t: &Transcript) -> Server {
        let interval = t.setting_u64("pingIntervalMs");
        let timeout = t.setting_u64("pingTimeoutMs");
        let max_payload = t.setting_u64("maxPayload");
        // The flow's credentials are the cluster's, except in a flow that
        // uses a wrong password on purpose.
        let password = if t.registration == "rejected" {
            "the-right-password".to_owned()
        } else {
            t.setting_str("password")
        };
        match kind {
            ServerKind::Mock => Server::Mock(
                MockServer::builder()
                    .cluster(&t.cluster(), &password)
                    .ping_interval(Duration::from_millis(interval))
                    .ping_timeout(Duration::from_millis(timeout))
                    .max_payload(max_payload as usize)
                    .start(),
            ),
            ServerKind::Real => Server::Real(RefServer::start(&[
                "--cluster",
                &format!("{}:{password}", t.cluster()),
                "--ping-interval-ms",
                &interval.to_string(),
                "--ping-timeout-ms",
                &timeout.to_string(),
                "--max-payload",
                &max_payload.to_string(),
            ])),
        }
    }

    fn url(&self) -> String {
        match self {
            Server::Mock(m) => m.url(),
            Server::Real(r) => r.url().to_owned(),
        }
    }

    /// Every frame recorded: the mock's own recording (`frames()`), or
    /// ref-server's `GET /admin/frames`.
    fn frames(&self, admin: &Admin) -> Vec<Frame> {
        match self {
            Server::Mock(m) => m.all_frames().iter().map(Frame::from_record).collect(),
            Server::Real(_) => admin.frames().iter().map(Frame::from_json).collect(),
        }
    }
}

enum Daemon {
    Ours(ClusterDaemonClient, ClientEvents),
    Real(RefDaemon),
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Daemon::Ours(c, _) = self {
            c.disconnect();
        }
    }
}

/// Replays the flow of `t` with `daemon` against `server`, checks every
/// step's outcome against the recorded one, and returns the masked frames.
pub fn replay(t: &Transcript, server_kind: ServerKind, daemon_kind: DaemonKind) -> Vec<Frame> {
    let server = Server::start(server_kind, t);
    let url = server.url();
    let admin = Admin::new(&url);
    let cluster = t.cluster();
    let password = t.setting_str("password");
    let version = t.setting_str("installedVersion");
    let rejected = t.registration == "rejected";

    let daemon = match daemon_kind {
        DaemonKind::Real => {
            let d = RefDaemon::spawn(&url, &cluster, &password, Some(&version));
            if rejected {
                let e = d.expect_event("connect_error", WAIT);
                assert_eq!(e["data"], json!({"code": "INVALID_CREDENTIALS"}), "{e}");
            } else {
                d.expect_event("connected", WAIT);
            }
            Daemon::Real(d)
        }
        DaemonKind::Ours => {
            let mut o = client_options(&url, &cluster, &password);
            o.credentials = o.credentials.with_installed_version(version);
            o.heartbeat.interval = Duration::from_secs(3600); // none during a flow
            let client = ClusterDaemonClient::new(o).expect("valid options");
            register_reference_handlers(&client);
            let events = record_events(&client);
            match client.connect() {
                Ok(()) => assert!(!rejected, "registration accepted with a wrong password"),
                Err(e) => {
                    assert!(rejected, "connect() failed: {e:?}");
                    assert_eq!(e.code(), DaemonClientErrorCode::SocketRegistrationFailed);
                    assert_eq!(e.server_code(), Some("INVALID_CREDENTIALS"));
                }
            }
            Daemon::Ours(client, events)
        }
    };

    for step in &t.steps {
        run_step(t, step, &daemon, &admin, &cluster);
    }
    admin.wait_no_connections();
    let frames = server.frames(&admin);
    drop(daemon);
    mask(&frames)
}

fn run_step(t: &Transcript, step: &Value, daemon: &Daemon, admin: &Admin, cluster: &str) {
    let op = step["op"].as_str().unwrap_or_default();
    let payload = step.get("payload").cloned();
    let expect = &step["expect"];
    let context = format!("flow {}, step {step}", t.flow);
    match op {
        "responder" => admin.set_responder(
            step["command"].as_str().expect("responder command"),
            &step["responder"],
        ),
        "command" => {
            let command = step["command"].as_str().expect("command name");
            let outcome = command_outcome(daemon, command, payload, &context);
            assert_eq!(&outcome, expect, "{context}: command outcome");
        }
        "reverse" => {
            let command = step["command"].as_str().expect("command name");
            let r = reverse_result(admin, cluster, command, payload, &context);
            assert_eq!(&r, expect, "{context}: reverse-command result");
            if let Daemon::Real(d) = daemon {
                d.expect_event("reverse-command", WAIT);
            }
        }
        "server-message" => {
            let message = &step["message"];
            admin.send_message(cluster, message);
            let got = match daemon {
                Daemon::Real(d) => d.expect_event("message", WAIT)["message"].clone(),
                Daemon::Ours(_, ev) => ev.expect_message(WAIT),
            };
            assert_eq!(&got, message, "{context}: message delivered");
        }
        "daemon-message" => {
            let message = &step["message"];
            let before = admin.messages(cluster).len();
            match daemon {
                Daemon::Real(d) => d.emit(message),
                Daemon::Ours(c, _) => {
                    let m: TeamClusterDaemonMessage =
                        serde_json::from_value(message.clone()).expect("a message");
                    c.emit(&m)
                        .unwrap_or_else(|e| panic!("{context}: emit: {e:?}"));
                }
            }
            let got = admin.wait_for("the server to receive the message", WAIT, |a| {
                let list = a.messages(cluster);
                (list.len() > before).then(|| list[before].clone())
            });
            assert_eq!(&got, message, "{context}: message received");
        }
        "kick" => {
            admin.kick(cluster);
            let reason = daemon_disconnected(daemon);
            assert_eq!(json!({ "reason": reason }), *expect, "{context}");
        }
        "disconnect" => {
            let reason = match daemon {
                Daemon::Real(d) => {
                    d.send(&json!({"op": "disconnect"}));
                    d.expect_event("disconnected", WAIT)["reason"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                }
                Daemon::Ours(c, ev) => {
                    c.disconnect();
                    ev.expect_disconnected(WAIT)
                }
            };
            assert_eq!(json!({ "reason": reason }), *expect, "{context}");
        }
        other => panic!("{context}: unknown step {other:?}"),
    }
}

/// What a `command` step gives: `{ok, data}` or `{ok: false, error}`, as
/// the reference daemon reports it.
fn command_outcome(daemon: &Daemon, command: &str, payload: Option<Value>, context: &str) -> Value {
    match daemon {
        Daemon::Real(d) => {
            let mut r = d.command(command, payload)["response"].clone();
            r.as_object_mut()
                .unwrap_or_else(|| panic!("{context}: no response"))
                .remove("requestId");
            r
        }
        Daemon::Ours(c, _) => match c.send_command(command, payload) {
            Ok(Some(data)) => json!({"ok": true, "data": data}),
            Ok(None) => json!({"ok": true}),
            Err(e) if e.code() == DaemonClientErrorCode::CommandRejected => json!({
                "ok": false,
                "error": {"code": e.server_code(), "message": e.server_message()}
            }),
            Err(e) => panic!("{context}: {e:?}"),
        },
    }
}

/// A `reverse` step's result as the server reports it, checked for binary
/// bodies and chunks, without the fields that vary by run.
fn reverse_result(
    admin: &Admin,
    cluster: &str,
    command: &str,
    payload: Option<Value>,
    context: &str,
) -> Value {
    let mut r = admin.dispatch_ok(cluster, command, payload);
    if r.get("bodyWasBuffer").is_some() {
        assert_eq!(
            r["bodyWasBuffer"], true,
            "{context}: body not a Buffer: {r}"
        );
    }
    if let Some(types) = r.get("chunkTypes").and_then(Value::as_array) {
        assert!(types.iter().all(|t| t == "Buffer"), "{context}: {r}");
    }
    let obj: &mut Map<String, Value> = r.as_object_mut().expect("an object");
    for k in ["requestId", "bodyWasBuffer", "body", "chunkTypes", "seqs"] {
        obj.remove(k);
    }
    r
}

fn daemon_disconnected(daemon: &Daemon) -> String {
    match daemon {
        Daemon::Real(d) => d.expect_event("disconnected", WAIT)["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        Daemon::Ours(_, ev) => ev.expect_disconnected(WAIT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(dir: &str, data: &str) -> Frame {
        Frame {
            dir: dir.into(),
            kind: "text".into(),
            data: data.into(),
        }
    }

    #[test]
    fn masking_numbers_sids_and_uuids_by_first_appearance_and_drops_pings_and_heartbeats() {
        let u1 = "15430138-d297-47d6-bbc2-d1dbfa62ed0f";
        let u2 = "916DF3E2-B175-4ADC-8088-EFC8D5FDA1B2";
        let hb = "3a8f4efc-4556-4cd5-923d-b4c0c5a3afaa";
        let frames = vec![
            text("out", r#"0{"sid":"abc","upgrades":[]}"#),
            text("in", r#"40/daemon,{"teamClusterId":"c","client":"volt/1"}"#),
            text("out", r#"40/daemon,{"sid":"xyz"}"#),
            text("out", "2"),
            text("in", "3"),
            text(
                "in",
                &format!(
                    r#"42/daemon,["command",{{"requestId":"{hb}","command":"runtime.heartbeat"}}]"#
                ),
            ),
            text(
                "out",
                &format!(r#"42/daemon,["command-response",{{"requestId":"{hb}","ok":true}}]"#),
            ),
            text(
                "in",
                &format!(r#"42/daemon,["command",{{"requestId":"{u1}","x":"{u2}"}}]"#),
            ),
            text(
                "out",
                &format!(r#"42/daemon,["command-response",{{"requestId":"{u1}"}}]"#),
            ),
            text("out", &u2.to_lowercase()),
        ];
        let masked: Vec<String> = mask(&frames).into_iter().map(|f| f.data).collect();
        assert_eq!(
            masked,
            vec![
                r#"0{"sid":"<sid-1>","upgrades":[]}"#,
                r#"40/daemon,{"teamClusterId":"c","client":"<client>"}"#,
                r#"40/daemon,{"sid":"<sid-2>"}"#,
                r#"42/daemon,["command",{"requestId":"<uuid-1>","x":"<uuid-2>"}]"#,
                r#"42/daemon,["command-response",{"requestId":"<uuid-1>"}]"#,
                "<uuid-2>",
            ]
        );
    }
}
