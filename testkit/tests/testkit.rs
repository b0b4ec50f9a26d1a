//! The testkit's waits and calls, driven by a raw WebSocket daemon.

use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;
use tungstenite::{Message, WebSocket};
use volt_testkit::{MockServer, RawFrame, ServerEvent, DEFAULT_CLUSTER, DEFAULT_PASSWORD};

const T: Duration = Duration::from_secs(5);

fn daemon(server: &MockServer) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(server.local_addr()).unwrap();
    stream.set_read_timeout(Some(T)).unwrap();
    let url = format!(
        "ws://{}/socket.io/?EIO=4&transport=websocket",
        server.local_addr()
    );
    let (mut ws, _) = tungstenite::client::client(url, stream).unwrap();
    ws.read().unwrap(); // open packet
    ws.send(Message::text(format!(
        r#"40/daemon,{{"teamClusterId":"{DEFAULT_CLUSTER}","daemonPassword":"{DEFAULT_PASSWORD}","installedVersion":null,"client":"t/1"}}"#
    )))
    .unwrap();
    ws
}

#[test]
fn events_heartbeats_and_frames() {
    let server = MockServer::start();
    let mut ws = daemon(&server);
    server
        .expect_event(|e| matches!(e, ServerEvent::Registered { .. }), T)
        .unwrap();
    for i in 0..3 {
        ws.send(Message::text(format!(
            r#"42/daemon,["command",{{"requestId":"h{i}","command":"runtime.heartbeat","payload":{{"i":{i}}}}}]"#
        )))
        .unwrap();
    }
    server.wait_for_heartbeats(DEFAULT_CLUSTER, 3, T).unwrap();
    assert!(server
        .wait_for_heartbeats(DEFAULT_CLUSTER, 4, Duration::from_millis(20))
        .is_err());
    // The cursor moves: successive expects see successive heartbeats.
    for i in 0..3 {
        let e = server
            .expect_event(|e| matches!(e, ServerEvent::Heartbeat { .. }), T)
            .unwrap();
        assert!(
            matches!(e, ServerEvent::Heartbeat { payload: Some(p), .. } if p == json!({"i": i}))
        );
    }
    assert_eq!(server.daemons()[0].heartbeats, 3);
    server
        .send_raw(DEFAULT_CLUSTER, RawFrame::Text("4oops".into()))
        .unwrap();
    let frames = server.frames(DEFAULT_CLUSTER);
    assert!(frames
        .iter()
        .any(|f| f.frame == RawFrame::Text("4oops".into())));
    drop(ws);
    server
        .expect_event(|e| matches!(e, ServerEvent::Disconnected { .. }), T)
        .unwrap();
}
