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
//!
//! Files: this one holds the transcript and its frames; `mask` the
//! masking; `replay` replaying a flow against either server with either
//! daemon.

use std::path::PathBuf;

use base64::Engine as _;
use serde_json::Value;
use volt_testkit::{Direction, FrameRecord, RawFrame};

mod mask;
mod replay;

pub use mask::mask;
pub use replay::{replay, DaemonKind, ServerKind};

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
