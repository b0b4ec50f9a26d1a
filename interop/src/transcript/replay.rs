//! Replaying a flow: our client or the reference daemon, against our mock
//! server or the reference server, each step checked against the recording.

use std::time::Duration;

use serde_json::{json, Map, Value};
use volt_daemon_client::{ClusterDaemonClient, DaemonClientErrorCode, TeamClusterDaemonMessage};
use volt_testkit::MockServer;

use super::*;
use crate::{
    client_options, record_events, register_reference_handlers, Admin, ClientEvents, RefDaemon,
    RefServer, WAIT,
};

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
