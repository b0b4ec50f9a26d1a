//! Messages both ways, known types and unknown ones.

mod e2e_support;

use e2e_support::*;
use serde_json::json;
use volt_daemon_client::{TeamClusterDaemonMessage as Msg, TunnelStatus};
use volt_protocol::message::{SessionData, TunnelState};
use volt_testkit::{fail_on_unexpected_panics, MockServer, ServerEvent, DEFAULT_CLUSTER};

#[test]
fn server_messages_reach_on_message_in_order_unknown_types_as_other() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |_| {});
    let rec = Recorder::attach(&client);
    connect(&client);
    rec.expect("connected", |cb| matches!(cb, Cb::Connected));
    let sent = [
        json!({"type": "session-open", "sessionId": "s1", "cols": 80, "rows": 24}),
        json!({"type": "session-input", "sessionId": "s1", "chunkBase64": "aGk=", "extra": true}),
        json!({"type": "tunnel-state", "tunnelId": "t1", "state": "error", "error": "refused"}),
        json!({"type": "exposure-snapshot", "exposures": [{"port": 8080}]}),
        json!({"type": "brand-new-type", "x": [1, 2, 3]}),
        json!({"type": "tunnel-close", "tunnelId": "t1"}),
    ];
    for m in &sent {
        server.send_message(DEFAULT_CLUSTER, m).unwrap();
    }
    let got: Vec<Msg> = sent
        .iter()
        .map(|_| match rec.next("message") {
            Cb::Message(m) => m,
            other => panic!("expected a message, got {other:?}"),
        })
        .collect();
    assert!(matches!(&got[0], Msg::SessionOpen(o) if o.cols == 80 && o.command.is_none()));
    assert!(
        matches!(&got[1], Msg::SessionInput(i) if i.chunk_base64 == "aGk=" && i.extra["extra"] == json!(true))
    );
    assert!(
        matches!(&got[2], Msg::TunnelState(t) if t.state == TunnelStatus::Error && t.error.as_deref() == Some("refused"))
    );
    assert!(matches!(&got[3], Msg::ExposureSnapshot(e) if e.exposures.len() == 1));
    assert!(matches!(&got[4], Msg::Other(v) if *v == sent[4]));
    assert_eq!(got[4].message_type(), "brand-new-type");
    assert!(matches!(&got[5], Msg::TunnelClose(t) if t.tunnel_id == "t1"));
    // Each one serializes back to exactly what the server sent.
    for (m, wire) in got.iter().zip(&sent) {
        assert_eq!(&serde_json::to_value(m).unwrap(), wire);
    }
    disconnect(&client);
}

#[test]
fn emitted_messages_reach_the_server_as_wire_objects_including_unknown_types() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = connected(&server);
    let messages = [
        Msg::SessionData(SessionData {
            session_id: "s1".into(),
            chunk_base64: "b3V0".into(),
            extra: Default::default(),
        }),
        Msg::TunnelState(TunnelState {
            tunnel_id: "t1".into(),
            state: TunnelStatus::Open,
            error: None,
            extra: Default::default(),
        }),
        Msg::Other(json!({"type": "daemon-news", "n": 1})),
    ];
    for m in &messages {
        client.emit(m).unwrap();
    }
    for _ in &messages {
        server
            .expect_event(|e| matches!(e, ServerEvent::Message { .. }), WAIT)
            .unwrap();
    }
    assert_eq!(
        server.received_messages(DEFAULT_CLUSTER),
        vec![
            json!({"type": "session-data", "sessionId": "s1", "chunkBase64": "b3V0"}),
            json!({"type": "tunnel-state", "tunnelId": "t1", "state": "open"}),
            json!({"type": "daemon-news", "n": 1}),
        ]
    );
    disconnect(&client);
}
