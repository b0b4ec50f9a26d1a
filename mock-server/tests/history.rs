//! The command history keeps each envelope as JSON text and parses it only
//! when read: what the admin API, the in-process API and the event log show
//! must be exactly what a parsed history showed.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use volt_mock_server::{CommandRequest, ServerEvent};

/// Frames with payloads a raw path could get wrong: whitespace, escapes,
/// unicode, null, nesting, field order, extra fields, escaped names.
const FRAMES: &[&str] = &[
    r#"42/daemon,["command",{"requestId":"r1","command":"echo","payload":{ "b" : [1, 2.5, -0.0, 1e3] , "a":"x\"\\y\u00e9\ud83d\ude00"}}]"#,
    r#"42/daemon,["command",{"command":"nope","requestId":"r2","payload":null}]"#,
    r#"42/daemon,["command",{"requestId":"r\"3","command":"echo","extra":1}]"#,
    r#"42/daemon,["command",{"requestId":"r4","command":"runtime.heartbeat","payload":{"load":[0.5]}}]"#,
    r#"42/daemon,["command",{"requestId":"r5","command":"e\u0063ho","payload":"just text"}]"#,
];

/// What a parsed history showed for each frame: the request decoded by
/// serde, its envelope in `requestId, command, payload` order.
fn parsed(frame: &str) -> (CommandRequest, Value) {
    let args: Value = serde_json::from_str(frame.strip_prefix("42/daemon,").unwrap()).unwrap();
    let req: CommandRequest = serde_json::from_value(args[1].clone()).unwrap();
    let envelope = serde_json::to_value(&req).unwrap();
    (req, envelope)
}

#[test]
fn recorded_commands_read_back_as_the_parsed_requests() {
    let s = server();
    let mut c = Client::registered(s.local_addr(), "c1", "pw1");
    for f in FRAMES {
        c.send(f);
        let (name, _) = c.recv_event();
        assert_eq!(name, "command-response");
    }
    let want: Vec<(CommandRequest, Value)> = FRAMES.iter().map(|f| parsed(f)).collect();
    let envelopes: Vec<Value> = want.iter().map(|(_, e)| e.clone()).collect();

    // The in-process API and the admin API.
    assert_eq!(s.received_commands("c1"), envelopes);
    let (status, body) = admin(s.local_addr(), "GET", "/admin/daemons/c1/commands", "");
    assert_eq!(status, 200);
    assert_eq!(body, Value::Array(envelopes.clone()));
    // Serialized the same, field order included.
    assert_eq!(
        s.received_commands("c1")[0].to_string(),
        envelopes[0].to_string()
    );

    // The event log: commands as parsed requests, the heartbeat apart.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (_, hb) = s
        .wait_for_event(0, deadline, |e| matches!(e, ServerEvent::Heartbeat { .. }))
        .unwrap();
    assert!(
        matches!(&hb, ServerEvent::Heartbeat { request_id, payload: Some(p), .. }
            if request_id == "r4" && *p == json!({"load": [0.5]})),
        "{hb:?}"
    );
    let logged: Vec<CommandRequest> = s
        .events()
        .since(0)
        .into_iter()
        .filter_map(|(_, e)| match e {
            ServerEvent::Command {
                request, cluster, ..
            } if cluster == "c1" => Some(request),
            _ => None,
        })
        .collect();
    let want_logged: Vec<CommandRequest> = want
        .iter()
        .filter(|(r, _)| r.command != "runtime.heartbeat")
        .map(|(r, _)| r.clone())
        .collect();
    assert_eq!(logged, want_logged);
    assert_eq!(s.daemons()[0].heartbeats, 1);
    assert_eq!(s.daemons()[0].last_heartbeat, Some(json!({"load": [0.5]})));
}

#[test]
fn a_waiter_sees_a_recorded_command_as_a_parsed_request() {
    let s = server();
    let mut c = Client::registered(s.local_addr(), "c1", "pw1");
    c.send(FRAMES[0]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let (_, e) = s
        .wait_for_event(
            0,
            deadline,
            |e| matches!(e, ServerEvent::Command { request, .. } if request.request_id == "r1"),
        )
        .unwrap();
    let ServerEvent::Command { request, .. } = e else {
        unreachable!()
    };
    assert_eq!(request, parsed(FRAMES[0]).0);
}
