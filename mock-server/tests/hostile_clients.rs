//! Issue 7: the mock server's own defences that mock-server/tests/protocol.rs
//! and admin.rs do not already cover (malformed frames, invalid UTF-8,
//! oversize frames and bad admin input are there): it binds loopback by
//! default and caps connections per IP, and keeps serving past the cap.

mod common;

use std::time::Duration;

use common::Client;
use volt_mock_server::{Server, ServerConfig, ServerEvent};

#[test]
fn binds_loopback_by_default() {
    assert!(ServerConfig::default().listen.ip().is_loopback());
    let s = Server::start(ServerConfig::default().cluster("c1", "pw1")).unwrap();
    assert!(s.local_addr().ip().is_loopback());
}

#[test]
fn connections_over_the_per_ip_cap_are_refused_and_the_server_keeps_serving() {
    let mut cfg = ServerConfig::default().cluster("c1", "pw1");
    cfg.max_connections_per_ip = 3;
    let s = Server::start(cfg).unwrap();
    let addr = s.local_addr();
    let held: Vec<Client> = (0..3)
        .map(|_| Client::registered(addr, "c1", "pw1"))
        .collect();
    // The fourth upgrade from the same address is refused.
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(tungstenite::client::client(url, tcp).is_err());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    assert!(s
        .wait_for_event(0, deadline, |e| matches!(
            e,
            ServerEvent::ConnectionRefused { .. }
        ))
        .is_some());
    // Freeing the slots lets the next one in.
    drop(held);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut gone = 0;
    assert!(s
        .wait_for_event(0, deadline, |e| {
            if matches!(
                e,
                ServerEvent::Disconnected {
                    cluster: Some(_),
                    ..
                }
            ) {
                gone += 1;
            }
            gone == 3
        })
        .is_some());
    let mut c = Client::registered(addr, "c1", "pw1");
    c.send(r#"42/daemon,["command",{"requestId":"r","command":"echo"}]"#);
    assert!(c.recv_text().contains("command-response"));
}

#[test]
fn a_frame_and_the_end_of_the_stream_arriving_together_end_the_session() {
    // The server skips the read that would only say "would block" after a
    // short one; the end of the stream arriving with the data must still
    // be seen. Repeated: some of these land in one readiness event.
    let s = Server::start(ServerConfig::default().cluster("c1", "pw1")).unwrap();
    let addr = s.local_addr();
    const CLIENTS: usize = 30;
    // Kept open for reading: the server gets nothing after the end of the
    // stream (a message has no reply, which would bounce off a closed
    // socket and end the session another way).
    let mut held = Vec::new();
    for _ in 0..CLIENTS {
        let mut c = Client::registered(addr, "c1", "pw1");
        c.send(r#"42/daemon,["message",{"x":1}]"#);
        c.ws.get_ref().shutdown(std::net::Shutdown::Write).unwrap();
        held.push(c);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut gone = 0;
    let all_gone = s.wait_for_event(0, deadline, |e| {
        if matches!(e, ServerEvent::Disconnected { .. }) {
            gone += 1;
        }
        gone == CLIENTS
    });
    assert!(all_gone.is_some(), "{gone} of {CLIENTS} sessions ended");
}
