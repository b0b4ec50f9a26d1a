//! The protocol and admin rules of [`State`], without a socket: each test
//! feeds frames and calls, and checks the actions and events that come out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{Action, State};
use crate::config::ServerConfig;
use crate::events::Logged;
use crate::model::*;
use crate::timers::TimerKind;

const CONN: u64 = 7;

fn peer() -> SocketAddr {
    "127.0.0.1:4000".parse().unwrap()
}

fn config() -> ServerConfig {
    ServerConfig::default().cluster("c1", "pw")
}

/// What the state queued since the last call.
fn actions(state: &mut State) -> Vec<Action> {
    let mut batch = Vec::new();
    state.swap_actions(&mut batch);
    batch
}

/// The text frames among `actions`.
fn texts(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(_, RawFrame::Text(t)) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

/// The events logged since the last call.
fn events(state: &mut State) -> Vec<ServerEvent> {
    std::mem::take(state.events_mut())
        .into_iter()
        .filter_map(|l| match l {
            Logged::Event(e) => Some(*e),
            Logged::Command { .. } => None,
        })
        .collect()
}

/// A `42/daemon,[name, arg]` frame's name and argument.
fn event_of(text: &str) -> (String, Value) {
    let json = text
        .strip_prefix("42/daemon,")
        .expect("an event on /daemon");
    let v: Value = serde_json::from_str(json).unwrap();
    (v[0].as_str().unwrap().to_owned(), v[1].clone())
}

fn auth(password: &str) -> String {
    let auth = json!({"teamClusterId": "c1", "daemonPassword": password, "client": "t/1"});
    format!("40/daemon,{auth}")
}

/// A state with connection [`CONN`] open and registered as `c1`.
fn registered(cfg: ServerConfig) -> State {
    let mut state = State::new(&cfg);
    state.open(CONN, peer(), Instant::now());
    state.on_text(CONN, &auth("pw"));
    actions(&mut state);
    events(&mut state);
    state
}

fn command(rid: &str, name: &str, payload: Option<Value>) -> String {
    let mut req = json!({"requestId": rid, "command": name});
    if let Some(p) = payload {
        req["payload"] = p;
    }
    format!("42/daemon,[\"command\",{req}]")
}

#[test]
fn open_sends_the_engine_io_open_packet_and_arms_the_ping_timer() {
    let cfg = config();
    let mut state = State::new(&cfg);
    let now = Instant::now();
    state.open(CONN, peer(), now);
    let out = actions(&mut state);
    let open: Value = serde_json::from_str(&texts(&out)[0][1..]).unwrap();
    assert_eq!(
        open["pingInterval"],
        json!(cfg.ping_interval.as_millis() as u64)
    );
    assert_eq!(open["maxPayload"], json!(cfg.max_payload));
    assert_eq!(open["upgrades"], json!([]));
    assert!(out.contains(&Action::Timer {
        at: now + cfg.ping_interval,
        conn: CONN,
        kind: TimerKind::Heartbeat
    }));
    assert!(matches!(
        &events(&mut state)[..],
        [ServerEvent::Connected { conn: CONN, .. }]
    ));
    assert_eq!(state.stats().connections, 1);
}

#[test]
fn registration_with_the_right_password_is_acknowledged_with_a_sid() {
    let mut state = State::new(&config());
    state.open(CONN, peer(), Instant::now());
    actions(&mut state);
    events(&mut state);
    state.on_text(CONN, &auth("pw"));
    let ack = texts(&actions(&mut state)).remove(0);
    let sid: Value = serde_json::from_str(ack.strip_prefix("40/daemon,").unwrap()).unwrap();
    assert!(sid["sid"].is_string());
    let ev = events(&mut state);
    assert!(matches!(&ev[..], [ServerEvent::Registered { cluster, .. }] if cluster == "c1"));
    assert_eq!(state.daemons().len(), 1);
    assert_eq!(state.daemons()[0].client.as_deref(), Some("t/1"));
}

#[test]
fn registration_with_a_wrong_password_is_refused_with_connect_error() {
    let mut state = State::new(&config());
    state.open(CONN, peer(), Instant::now());
    actions(&mut state);
    state.on_text(CONN, &auth("nope"));
    let refusal = texts(&actions(&mut state)).remove(0);
    let body: Value = serde_json::from_str(refusal.strip_prefix("44/daemon,").unwrap()).unwrap();
    assert_eq!(body["data"]["code"], "INVALID_CREDENTIALS");
    assert!(state.daemons().is_empty());
}

#[test]
fn an_unknown_namespace_is_refused_as_invalid() {
    let mut state = State::new(&config());
    state.open(CONN, peer(), Instant::now());
    actions(&mut state);
    state.on_text(CONN, "40/other,");
    assert_eq!(
        texts(&actions(&mut state)),
        vec![r#"44/other,{"message":"Invalid namespace"}"#.to_owned()]
    );
}

#[test]
fn a_second_connect_on_a_live_registration_closes_the_connection() {
    let mut state = registered(config());
    state.on_text(CONN, &auth("pw"));
    assert_eq!(actions(&mut state), vec![Action::Close(CONN)]);
    assert!(!state.is_live(CONN));
}

#[test]
fn echo_answers_its_payload_exactly_as_it_came() {
    let mut state = registered(config());
    let text =
        r#"42/daemon,["command",{"requestId":"r1","command":"echo","payload":{ "b" : [1, 2.5] }}]"#;
    state.on_text(CONN, text);
    let reply = texts(&actions(&mut state)).remove(0);
    assert!(reply.contains(r#"{ "b" : [1, 2.5] }"#), "{reply}");
    let (name, body) = event_of(&reply);
    assert_eq!(name, "command-response");
    assert_eq!(body["requestId"], "r1");
    assert_eq!(body["ok"], true);
}

#[test]
fn an_unknown_command_is_answered_unknown_command() {
    let mut state = registered(config());
    state.on_text(CONN, &command("r2", "nope", None));
    let (_, body) = event_of(&texts(&actions(&mut state))[0]);
    assert_eq!(body["ok"], false);
    assert_eq!(body["error"]["code"], "UNKNOWN_COMMAND");
}

#[test]
fn a_heartbeat_is_acknowledged_counted_and_kept_as_the_last_one() {
    let mut state = registered(config());
    state.on_text(
        CONN,
        &command("h", "runtime.heartbeat", Some(json!({"up": 1}))),
    );
    let (_, body) = event_of(&texts(&actions(&mut state))[0]);
    assert_eq!(body["ok"], true);
    let daemon = &state.daemons()[0];
    assert_eq!(daemon.heartbeats, 1);
    assert_eq!(daemon.last_heartbeat, Some(json!({"up": 1})));
    assert!(matches!(
        &events(&mut state)[..],
        [ServerEvent::Heartbeat { .. }]
    ));
}

#[test]
fn a_responder_overrides_the_answer_and_its_delay_arms_a_timer() {
    let mut state = registered(config());
    let delay = Duration::from_secs(5);
    state.set_responder("echo".into(), Responder::ok(json!(42)).delayed(delay));
    state.on_text(CONN, &command("r", "echo", Some(json!(1))));
    let out = actions(&mut state);
    let [Action::Timer {
        conn: CONN,
        kind: TimerKind::Send(text),
        ..
    }] = &out[..]
    else {
        panic!("expected a delayed send, got {out:?}");
    };
    assert_eq!(event_of(text).1["data"], 42);
    // The delayed frame goes out when its timer fires, to a live registration.
    state.on_timer(CONN, TimerKind::Send(text.clone()), Instant::now());
    assert_eq!(texts(&actions(&mut state)), vec![text.clone()]);
    state.set_responder("quiet".into(), Responder::NoReply);
    state.on_text(CONN, &command("q", "quiet", None));
    assert!(actions(&mut state).is_empty());
    state.clear_responder("echo");
    state.on_text(CONN, &command("r", "echo", Some(json!(1))));
    assert_eq!(event_of(&texts(&actions(&mut state))[0]).1["data"], 1);
}

#[test]
fn drop_on_command_cuts_the_connection_without_answering() {
    let mut state = registered(config());
    let faults = Faults {
        drop_on_command: Some("echo".into()),
        ..Faults::default()
    };
    state.set_faults(faults, Instant::now());
    state.on_text(CONN, &command("r", "echo", None));
    assert_eq!(
        actions(&mut state),
        vec![Action::Cut {
            conn: CONN,
            flush: false
        }]
    );
    assert!(state.daemons().is_empty());
}

#[test]
fn drop_after_frames_cuts_at_the_nth_frame_and_ignores_what_follows() {
    let mut state = registered(config());
    let faults = Faults {
        drop_after_frames: Some(3),
        ..Faults::default()
    };
    state.set_faults(faults, Instant::now());
    state.on_text(CONN, &command("r", "echo", None));
    actions(&mut state);
    state.on_text(CONN, &command("r", "echo", None));
    assert!(matches!(
        &actions(&mut state)[..],
        [Action::Cut { conn: CONN, .. }]
    ));
    state.on_text(CONN, &command("r", "echo", None));
    assert!(actions(&mut state).is_empty());
}

#[test]
fn history_keeps_commands_and_messages_bounded_by_the_limit() {
    let cfg = ServerConfig {
        history_limit: 2,
        ..config()
    };
    let mut state = registered(cfg);
    for rid in ["a", "b", "c"] {
        state.on_text(CONN, &command(rid, "echo", Some(json!([rid]))));
        state.on_text(
            CONN,
            &format!(r#"42/daemon,["message",{{"type":"{rid}"}}]"#),
        );
    }
    let kept: Vec<String> = state
        .received_commands("c1")
        .iter()
        .map(|t| t.to_string())
        .collect();
    assert_eq!(
        kept,
        [
            r#"{"requestId":"b","command":"echo","payload":["b"]}"#,
            r#"{"requestId":"c","command":"echo","payload":["c"]}"#
        ]
    );
    assert_eq!(
        state.received_messages("c1"),
        vec![json!({"type": "b"}), json!({"type": "c"})]
    );
}

#[test]
fn without_history_nothing_is_kept_but_commands_are_answered() {
    let cfg = ServerConfig {
        record_history: false,
        ..config()
    };
    let mut state = registered(cfg);
    state.on_text(CONN, &command("a", "echo", None));
    state.on_text(CONN, r#"42/daemon,["message",{"type":"x"}]"#);
    assert_eq!(texts(&actions(&mut state)).len(), 1);
    assert!(state.received_commands("c1").is_empty());
    assert!(state.received_messages("c1").is_empty());
    assert!(state.events_mut().is_empty());
}

#[test]
fn recorded_frames_show_both_directions_with_the_cluster() {
    let cfg = ServerConfig {
        record_frames: true,
        ..config()
    };
    let mut state = registered(cfg);
    state.clear_frames();
    state.on_text(CONN, &command("a", "echo", None));
    let frames = state.frames(Some("c1"));
    let dirs: Vec<Direction> = frames.iter().map(|f| f.dir).collect();
    assert_eq!(dirs, [Direction::In, Direction::Out]);
    assert!(state.frames(Some("other")).is_empty());
}

#[test]
fn kick_disconnects_the_namespace_and_unregisters() {
    let mut state = registered(config());
    assert_eq!(state.kick("c1"), Ok(1));
    assert_eq!(texts(&actions(&mut state)), vec!["41/daemon,".to_owned()]);
    assert!(matches!(
        &events(&mut state)[..],
        [ServerEvent::Kicked { .. }]
    ));
    assert!(state.daemons().is_empty());
    assert!(state.is_live(CONN), "the Engine.IO session stays");
    assert_eq!(
        state.kick("c1"),
        Err(DispatchError::NotConnected("c1".into()))
    );
}

#[test]
fn drop_transport_ends_the_session_and_cuts_after_a_flush() {
    let mut state = registered(config());
    assert_eq!(state.drop_cluster("c1"), Ok(1));
    assert_eq!(
        actions(&mut state),
        vec![Action::Cut {
            conn: CONN,
            flush: true
        }]
    );
    let ev = events(&mut state);
    assert!(
        matches!(&ev[..], [ServerEvent::Disconnected { reason, .. }] if reason == "server drop")
    );
}

#[test]
fn a_missed_pong_closes_the_connection_and_a_pong_rearms_the_ping() {
    let cfg = config();
    let mut state = registered(cfg.clone());
    let t0 = Instant::now() + cfg.ping_interval;
    state.on_timer(CONN, TimerKind::Heartbeat, t0);
    let out = actions(&mut state);
    assert_eq!(texts(&out), vec!["2".to_owned()]);
    state.on_text(CONN, "3");
    let out = actions(&mut state);
    assert!(matches!(
        &out[..],
        [Action::Timer {
            kind: TimerKind::Heartbeat,
            ..
        }]
    ));
    // The next ping goes unanswered past its deadline.
    let t1 = t0 + cfg.ping_interval * 2;
    state.on_timer(CONN, TimerKind::Heartbeat, t1);
    actions(&mut state);
    state.on_timer(CONN, TimerKind::Heartbeat, t1 + cfg.ping_timeout);
    assert_eq!(actions(&mut state), vec![Action::Close(CONN)]);
    let ev = events(&mut state);
    assert!(
        matches!(ev.last(), Some(ServerEvent::Disconnected { reason, .. }) if reason == "ping timeout")
    );
}

#[test]
fn lifting_stop_pings_rearms_pings_and_rereads_every_connection() {
    let mut state = registered(config());
    let frozen = Faults {
        stop_pings: true,
        ..Faults::default()
    };
    state.set_faults(frozen, Instant::now());
    assert!(state.frozen());
    state.on_timer(
        CONN,
        TimerKind::Heartbeat,
        Instant::now() + Duration::from_secs(3600),
    );
    assert!(actions(&mut state).is_empty());
    state.set_faults(Faults::default(), Instant::now());
    let out = actions(&mut state);
    assert!(out.contains(&Action::Read(CONN)));
    assert!(matches!(
        out[0],
        Action::Timer {
            kind: TimerKind::Heartbeat,
            ..
        }
    ));
}

#[test]
fn refuse_connections_counts_down() {
    let mut state = State::new(&config());
    let faults = Faults {
        refuse_connections: 2,
        ..Faults::default()
    };
    state.set_faults(faults, Instant::now());
    assert!(state.refuse_upgrade());
    assert!(state.refuse_upgrade());
    assert!(!state.refuse_upgrade());
    assert_eq!(state.faults().refuse_connections, 0);
}

#[test]
fn a_streamed_reverse_reply_is_reassembled_from_its_chunks() {
    let mut state = registered(config());
    let (tx, rx) = crossbeam_channel::bounded(1);
    state.dispatch("c1", "logs".into(), None, Duration::from_secs(5), tx);
    let out = actions(&mut state);
    let (name, body) = event_of(&texts(&out)[0]);
    assert_eq!(name, "reverse-command");
    let rid = body["requestId"].as_str().unwrap().to_owned();
    let resp = json!({"requestId": rid, "command": "logs", "status": 200, "stream": true});
    state.on_text(CONN, &format!(r#"42/daemon,["reverse-response",{resp}]"#));
    for (seq, chunk) in [b"ab".to_vec(), b"c".to_vec()].into_iter().enumerate() {
        let meta = json!({"requestId": rid, "seq": seq, "chunk": {"_placeholder": true, "num": 0}});
        state.on_text(CONN, &format!(r#"451-/daemon,["reverse-stream",{meta}]"#));
        state.on_binary(CONN, chunk);
    }
    assert!(rx.try_recv().is_err(), "not whole before the end");
    let end = json!({"requestId": rid, "chunks": 2});
    state.on_text(CONN, &format!(r#"42/daemon,["reverse-stream-end",{end}]"#));
    let reply = rx.try_recv().unwrap().unwrap();
    assert_eq!(reply.stream.as_deref(), Some(&b"abc"[..]));
    assert_eq!(reply.chunks, Some(2));
}

#[test]
fn a_pending_reverse_command_fails_when_its_connection_ends() {
    let mut state = registered(config());
    let (tx, rx) = crossbeam_channel::bounded(1);
    state.dispatch("c1", "ls".into(), None, Duration::from_secs(5), tx);
    state.end_session(CONN, "transport close");
    assert_eq!(
        rx.try_recv().unwrap(),
        Err(DispatchError::Disconnected("transport close".into()))
    );
}

#[test]
fn a_stray_reverse_response_is_a_protocol_error() {
    let mut state = registered(config());
    let resp = json!({"requestId": "nope", "command": "x", "status": 200});
    state.on_text(CONN, &format!(r#"42/daemon,["reverse-response",{resp}]"#));
    assert!(matches!(
        &events(&mut state)[..],
        [ServerEvent::ProtocolError { .. }]
    ));
    assert_eq!(state.stats().protocol_errors, 1);
}

#[test]
fn a_client_ping_or_garbage_closes_the_connection() {
    for input in ["2", "not a packet"] {
        let mut state = registered(config());
        state.on_text(CONN, input);
        assert_eq!(actions(&mut state), vec![Action::Close(CONN)], "{input:?}");
        assert!(!state.is_live(CONN));
    }
}

#[test]
fn data_after_the_session_ended_is_ignored() {
    let mut state = registered(config());
    state.end_session(CONN, "transport close");
    events(&mut state);
    state.on_text(CONN, &command("a", "echo", None));
    state.on_binary(CONN, vec![1, 2]);
    assert!(actions(&mut state).is_empty());
    assert!(events(&mut state).is_empty());
    // Ending twice logs once.
    state.end_session(CONN, "again");
    assert!(events(&mut state).is_empty());
}

#[test]
fn enrollment_with_a_token_rotates_nothing_without_settings_and_is_logged() {
    let mut state = State::new(&config());
    let (status, _) = state.enroll("c1", None, b"{}");
    assert_ne!(status, 200, "no token given");
    assert!(matches!(
        &events(&mut state)[..],
        [ServerEvent::Enrollment { cluster, .. }] if cluster == "c1"
    ));
    assert_eq!(state.cluster_password("c1"), Some("pw"));
}

#[test]
fn send_message_and_send_raw_need_a_registered_connection() {
    let mut state = registered(config());
    state.send_message("c1", &json!({"type": "hi"})).unwrap();
    let (name, body) = event_of(&texts(&actions(&mut state))[0]);
    assert_eq!((name.as_str(), body), ("message", json!({"type": "hi"})));
    state.send_raw("c1", RawFrame::Binary(vec![9])).unwrap();
    assert_eq!(
        actions(&mut state),
        vec![Action::Send(CONN, RawFrame::Binary(vec![9]))]
    );
    assert_eq!(
        state.send_raw("c2", RawFrame::Text("x".into())),
        Err(DispatchError::NotConnected("c2".into()))
    );
}

#[test]
fn a_command_is_kept_in_the_history_as_its_frame_sent_it() {
    let mut state = registered(config());
    let object = r#"{"requestId":"r","command":"ls","payload":{ "a" : [1, 2.50] }}"#;
    state.on_text(CONN, &format!(r#"42/daemon,["command",{object}]"#));
    let kept = state.received_commands("c1");
    assert_eq!(kept.len(), 1);
    assert_eq!(&*kept[0], object);
    // The event log shares the same text.
    let logged = std::mem::take(state.events_mut());
    assert!(matches!(&logged[..], [Logged::Command { json, .. }] if Arc::ptr_eq(json, &kept[0])));
}
