//! Engine.IO / Socket.IO behaviour of the mock server, with a raw client.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tungstenite::Message;
use volt_mock_server::{Faults, RejectRegistration, Responder, ServerEvent};

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

#[test]
fn handshake_frame_shape() {
    let s = server();
    let (_c, h) = Client::open(s.local_addr());
    let keys: Vec<&str> = h.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "sid",
            "upgrades",
            "pingInterval",
            "pingTimeout",
            "maxPayload"
        ]
    );
    assert_eq!(h["sid"].as_str().unwrap().len(), 20);
    assert_eq!(h["upgrades"], json!([]));
    assert_eq!(h["pingInterval"], 25000);
    assert_eq!(h["pingTimeout"], 20000);
    assert_eq!(h["maxPayload"], 1000000);
}

#[test]
fn registration_accepted_rejected_and_retried() {
    let s = server();
    let (mut c, _) = Client::open(s.local_addr());
    assert_eq!(
        c.register("c1", "wrong"),
        r#"44/daemon,{"message":"invalid credentials","data":{"code":"INVALID_CREDENTIALS"}}"#
    );
    let ok = c.register("c1", "pw1");
    assert!(ok.starts_with(r#"40/daemon,{"sid":""#), "{ok}");
    let d = s.daemons();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].team_cluster_id, "c1");
    assert_eq!(d[0].installed_version.as_deref(), Some("1.0.0"));
    assert_eq!(d[0].client.as_deref(), Some("test/0.1"));
    assert!(ok.contains(&d[0].sid));
    s.wait_for_event(0, soon(), |e| matches!(e, ServerEvent::RegistrationRejected { code: Some(c), .. } if c == "INVALID_CREDENTIALS")).unwrap();
    s.wait_for_event(
        0,
        soon(),
        |e| matches!(e, ServerEvent::Registered { cluster, .. } if cluster == "c1"),
    )
    .unwrap();
    // A second 40 on a live registration drops the connection.
    c.send(r#"40/daemon,{"teamClusterId":"c1","daemonPassword":"pw1","installedVersion":null,"client":"x"}"#);
    c.recv_close();
    s.wait_for_event(0, soon(), |e| matches!(e, ServerEvent::Disconnected { .. }))
        .unwrap();
}

#[test]
fn unknown_namespace_and_bad_auth_shape() {
    let s = server();
    let (mut c, _) = Client::open(s.local_addr());
    c.send("40/x,{}");
    assert_eq!(c.recv_text(), r#"44/x,{"message":"Invalid namespace"}"#);
    c.send("40/daemon,{\"teamClusterId\":1}");
    let t = c.recv_text();
    assert!(t.contains("INVALID_REGISTRATION"), "{t}");
    c.send("40/daemon,");
    assert!(c.recv_text().contains("INVALID_REGISTRATION"));
}

#[test]
fn pings_come_at_the_interval_and_silent_clients_are_dropped() {
    let s = fast_server(100, 100);
    let (mut c, _) = Client::open(s.local_addr());
    let t0 = Instant::now();
    for _ in 0..3 {
        assert_eq!(c.recv(), Message::text("2"));
        c.send("3");
    }
    let el = t0.elapsed();
    assert!(
        el >= Duration::from_millis(290) && el < Duration::from_millis(1500),
        "{el:?}"
    );
    // Now stay silent: closed at pingInterval + pingTimeout.
    let t1 = Instant::now();
    assert_eq!(c.recv(), Message::text("2"));
    c.recv_close();
    let el = t1.elapsed();
    assert!(
        el >= Duration::from_millis(180) && el < Duration::from_millis(1500),
        "{el:?}"
    );
    s.wait_for_event(
        0,
        soon(),
        |e| matches!(e, ServerEvent::Disconnected { reason, .. } if reason == "ping timeout"),
    )
    .unwrap();
}

#[test]
fn client_ping_is_disconnected() {
    let s = server();
    let (mut c, _) = Client::open(s.local_addr());
    c.send("2");
    c.recv_close();
}

#[test]
fn commands_are_answered_the_same_with_history_off_where_payloads_are_read_raw() {
    // With history off, echo sends the payload back unparsed and other
    // commands are parsed from the raw read; with it on, the general path.
    // Same commands, same replies either way.
    let commands = [
        r#"42/daemon,["command",{"requestId":"r1","command":"echo","payload":{"a":1,"b":[1,2,{"c":null}]}}]"#,
        r#"42/daemon,["command",{"requestId":"r2","command":"echo"}]"#,
        r#"42/daemon,["command",{"requestId":"r3","command":"echo","payload":null}]"#,
        r#"42/daemon,["command",{"requestId":"r\"4","command":"echo","payload":"q\"\\\u00e9\n\ud83d\ude00"}]"#,
        r#"42/daemon,["command",{"command":"echo","payload":[1.5,-2e3,true],"requestId":"r5","extra":1}]"#,
        r#"42/daemon,["command",{"requestId":"r6","command":"echo","payload":{"big":12345678901234567890}}]"#,
        // Not echo: parsed once from the raw read, handled as usual.
        r#"42/daemon,["command",{"requestId":"r7","command":"runtime.heartbeat","payload":{"load":1}}]"#,
        r#"42/daemon,["command",{"requestId":"r8","command":"nope","payload":[1]}]"#,
    ];
    let replies = |record_history: bool| -> Vec<serde_json::Value> {
        let mut cfg = volt_mock_server::ServerConfig::default().cluster("c1", "pw1");
        cfg.record_history = record_history;
        let s = volt_mock_server::Server::start(cfg).unwrap();
        let mut c = Client::registered(s.local_addr(), "c1", "pw1");
        commands
            .iter()
            .map(|command| {
                c.send(command);
                let (name, body) = c.recv_event();
                assert_eq!(name, "command-response");
                body
            })
            .collect()
    };
    let unparsed = replies(false);
    assert_eq!(unparsed, replies(true));
    assert_eq!(unparsed[0]["data"], json!({"a":1,"b":[1,2,{"c":null}]}));
    assert_eq!(unparsed[3]["requestId"], "r\"4");
    assert_eq!(unparsed[3]["data"], "q\"\\\u{e9}\n\u{1f600}");
    assert_eq!(unparsed[7]["error"]["code"], "UNKNOWN_COMMAND");
}

#[test]
fn echo_heartbeat_and_unknown_command() {
    let s = server();
    let mut c = Client::registered(s.local_addr(), "c1", "pw1");
    c.send(r#"42/daemon,["command",{"requestId":"r1","command":"echo","payload":{"a":1,"b":[1,2,{"c":null}]}}]"#);
    assert_eq!(
        c.recv_text(),
        r#"42/daemon,["command-response",{"requestId":"r1","ok":true,"data":{"a":1,"b":[1,2,{"c":null}]}}]"#
    );
    c.send(r#"42/daemon,["command",{"requestId":"r2","command":"echo"}]"#);
    assert_eq!(
        c.recv_text(),
        r#"42/daemon,["command-response",{"requestId":"r2","ok":true}]"#
    );
    c.send(r#"42/daemon,["command",{"requestId":"r3","command":"runtime.heartbeat","payload":{"load":1}}]"#);
    assert_eq!(
        c.recv_text(),
        r#"42/daemon,["command-response",{"requestId":"r3","ok":true}]"#
    );
    c.send(r#"42/daemon,["command",{"requestId":"r4","command":"nope"}]"#);
    assert_eq!(
        c.recv_text(),
        r#"42/daemon,["command-response",{"requestId":"r4","ok":false,"error":{"code":"UNKNOWN_COMMAND","message":"unknown command nope"}}]"#
    );
    let d = &s.daemons()[0];
    assert_eq!(d.heartbeats, 1);
    assert_eq!(d.last_heartbeat, Some(json!({"load":1})));
    assert!(d.last_heartbeat_at.is_some());
    assert_eq!(s.received_commands("c1").len(), 4);
}

#[test]
fn responders_override_delay_and_no_reply() {
    let s = server();
    let mut c = Client::registered(s.local_addr(), "c1", "pw1");
    s.set_responder("echo", Responder::err("NOT_FOUND", "no such volume"));
    s.set_responder(
        "slow",
        Responder::ok(json!(7)).delayed(Duration::from_millis(150)),
    );
    s.set_responder("silent", Responder::NoReply);
    c.send(r#"42/daemon,["command",{"requestId":"a","command":"echo"}]"#);
    assert_eq!(
        c.recv_text(),
        r#"42/daemon,["command-response",{"requestId":"a","ok":false,"error":{"code":"NOT_FOUND","message":"no such volume"}}]"#
    );
    c.send(r#"42/daemon,["command",{"requestId":"b","command":"silent"}]"#);
    let t = Instant::now();
    c.send(r#"42/daemon,["command",{"requestId":"c","command":"slow"}]"#);
    assert_eq!(
        c.recv_text(),
        r#"42/daemon,["command-response",{"requestId":"c","ok":true,"data":7}]"#
    );
    assert!(t.elapsed() >= Duration::from_millis(140));
    s.clear_responder("echo");
    c.send(r#"42/daemon,["command",{"requestId":"d","command":"echo","payload":1}]"#);
    assert_eq!(
        c.recv_text(),
        r#"42/daemon,["command-response",{"requestId":"d","ok":true,"data":1}]"#
    );
}

#[test]
fn reverse_commands_with_data_body_and_stream() {
    let s = server();
    let addr = s.local_addr();
    let h = s.handle();
    let daemon = std::thread::spawn(move || {
        let mut c = Client::registered(addr, "c1", "pw1");
        for _ in 0..4 {
            let (name, cmd) = c.recv_event();
            assert_eq!(name, "reverse-command");
            let rid = cmd["requestId"].as_str().unwrap().to_owned();
            match cmd["command"].as_str().unwrap() {
                "list" => c.send(&format!(r#"42/daemon,["reverse-response",{{"requestId":"{rid}","command":"list","status":200,"headers":{{"x":"y"}},"data":[1,"two"]}}]"#)),
                "blob" => {
                    c.send(&format!(r#"451-/daemon,["reverse-response",{{"requestId":"{rid}","command":"blob","status":200,"headers":{{}},"body":{{"_placeholder":true,"num":0}}}}]"#));
                    c.send_binary(&[0, 1, 2, 3]);
                }
                "chunks" => {
                    c.send(&format!(r#"42/daemon,["reverse-response",{{"requestId":"{rid}","command":"chunks","status":200,"headers":{{}},"stream":true}}]"#));
                    for (seq, chunk) in [[0u8, 1, 2], [3, 4, 5]].iter().enumerate() {
                        c.send(&format!(r#"451-/daemon,["reverse-stream",{{"requestId":"{rid}","seq":{seq},"chunk":{{"_placeholder":true,"num":0}}}}]"#));
                        c.send_binary(chunk);
                    }
                    c.send(&format!(r#"42/daemon,["reverse-stream-end",{{"requestId":"{rid}","chunks":2,"error":{{"code":"HANDLER_ERROR","message":"boom"}}}}]"#));
                }
                "missing" => c.send(&format!(r#"42/daemon,["reverse-response",{{"requestId":"{rid}","command":"missing","status":404,"headers":{{}},"error":{{"code":"UNKNOWN_COMMAND","message":"no handler"}}}}]"#)),
                other => panic!("{other}"),
            }
        }
        c
    });
    s.wait_for_event(0, soon(), |e| matches!(e, ServerEvent::Registered { .. }))
        .unwrap();
    let t = Duration::from_secs(5);
    let r = h
        .dispatch("c1", "list", Some(json!({"dir":"/"})), t)
        .unwrap();
    assert_eq!((r.status, r.data.clone()), (200, Some(json!([1, "two"]))));
    assert_eq!(r.headers["x"], "y");
    let r = h.dispatch("c1", "blob", None, t).unwrap();
    assert_eq!(r.body, Some(vec![0, 1, 2, 3]));
    assert_eq!(r.to_json()["bodyBase64"], "AAECAw==");
    let r = h.dispatch("c1", "chunks", None, t).unwrap();
    assert_eq!(r.stream, Some(vec![0, 1, 2, 3, 4, 5]));
    assert_eq!(r.chunks, Some(2));
    assert_eq!(r.error.unwrap().code, "HANDLER_ERROR");
    let r = h.dispatch("c1", "missing", None, t).unwrap();
    assert_eq!(r.status, 404);
    let _c = daemon.join().unwrap();
    // Timeout and not connected.
    let e = h
        .dispatch("c1", "x", None, Duration::from_millis(100))
        .unwrap_err();
    assert_eq!(
        e,
        volt_mock_server::DispatchError::Timeout(Duration::from_millis(100))
    );
    assert!(matches!(
        h.dispatch("c2", "x", None, t),
        Err(volt_mock_server::DispatchError::NotConnected(_))
    ));
}

#[test]
fn messages_both_ways() {
    let s = server();
    let mut c = Client::registered(s.local_addr(), "c1", "pw1");
    s.send_message(
        "c1",
        json!({"type":"session-input","sessionId":"s1","chunkBase64":"aGk=","extraField":42}),
    )
    .unwrap();
    assert_eq!(
        c.recv_text(),
        r#"42/daemon,["message",{"type":"session-input","sessionId":"s1","chunkBase64":"aGk=","extraField":42}]"#
    );
    c.send(r#"42/daemon,["message",{"tunnelId":"t1","type":"tunnel-state","state":"open"}]"#);
    s.wait_for_event(0, soon(), |e| matches!(e, ServerEvent::Message { .. }))
        .unwrap();
    assert_eq!(
        s.received_messages("c1"),
        vec![json!({"tunnelId":"t1","type":"tunnel-state","state":"open"})]
    );
}

#[test]
fn kick_and_drop() {
    let s = server();
    let mut c = Client::registered(s.local_addr(), "c1", "pw1");
    assert_eq!(s.kick("c1").unwrap(), 1);
    assert_eq!(c.recv_text(), "41/daemon,");
    assert!(s.daemons().is_empty());
    // The engine connection stays: registering again works.
    assert!(c.register("c1", "pw1").starts_with("40/daemon,"));
    assert_eq!(s.drop_transport("c1").unwrap(), 1);
    assert!(c.recv_close().is_none(), "a drop sends no close frame");
    assert!(s.kick("c1").is_err());
}

#[test]
fn raw_frames_reach_the_client() {
    let s = server();
    let mut c = Client::registered(s.local_addr(), "c1", "pw1");
    s.send_raw("c1", volt_mock_server::RawFrame::Text("4garbage".into()))
        .unwrap();
    assert_eq!(c.recv_text(), "4garbage");
    s.send_raw("c1", volt_mock_server::RawFrame::Binary(vec![9]))
        .unwrap();
    assert_eq!(c.recv(), Message::binary(vec![9]));
}

#[test]
fn faults() {
    let s = server();
    let addr = s.local_addr();
    s.set_faults(Faults {
        refuse_connections: 2,
        ..Faults::default()
    });
    for _ in 0..2 {
        let stream = std::net::TcpStream::connect(addr).unwrap();
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        assert!(tungstenite::client::client(url, stream).is_err());
    }
    assert_eq!(s.faults().refuse_connections, 0);
    let (mut c, _) = Client::open(addr);
    s.set_faults(Faults {
        reject_registration: Some(RejectRegistration {
            code: Some("MAINTENANCE".into()),
            message: Some("later".into()),
        }),
        ..Faults::default()
    });
    assert_eq!(
        c.register("c1", "pw1"),
        r#"44/daemon,{"message":"later","data":{"code":"MAINTENANCE"}}"#
    );
    s.clear_faults();
    assert!(c.register("c1", "pw1").starts_with("40/daemon,"));
    // dropAfterFrames: the 2nd frame from the client cuts the connection.
    s.set_faults(Faults {
        drop_after_frames: Some(2),
        ..Faults::default()
    });
    let (mut c, _) = Client::open(addr);
    c.send(r#"40/daemon,{"teamClusterId":"c1","daemonPassword":"pw1","installedVersion":null,"client":"x"}"#);
    assert!(c.recv_text().starts_with("40/daemon,"));
    c.send(r#"42/daemon,["command",{"requestId":"r","command":"echo"}]"#);
    assert!(c.recv_close().is_none());
    s.clear_faults();
}

#[test]
fn stop_pings_freezes_and_thaws() {
    let s = fast_server(100, 100);
    let (mut c, _) = Client::open(s.local_addr());
    s.set_faults(Faults {
        stop_pings: true,
        ..Faults::default()
    });
    c.ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // No ping for well past interval + timeout, and the connection stays.
    assert!(c.ws.read().is_err(), "no frame while frozen");
    s.clear_faults();
    let (mut c, _) = Client::open(s.local_addr());
    c.ws.get_mut()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(c.recv(), Message::text("2"));
}

#[test]
fn oversized_frame_closes_with_1009() {
    let mut cfg = volt_mock_server::ServerConfig::default().cluster("c1", "pw1");
    cfg.max_payload = 1000;
    let s = volt_mock_server::Server::start(cfg).unwrap();
    let mut c = Client::registered(s.local_addr(), "c1", "pw1");
    c.send(&format!(
        r#"42/daemon,["message",{{"type":"x","pad":"{}"}}]"#,
        "a".repeat(2000)
    ));
    let f = c.recv_close().expect("a close frame");
    assert_eq!(u16::from(f.code), 1009);
}

#[test]
fn malformed_frames_are_survived() {
    let s = server();
    let addr = s.local_addr();
    // Each of these either gets ignored (protocol error logged) or closes
    // that one connection; the server keeps serving.
    let bad: &[&str] = &[
        "",
        "x",
        "4",
        "49",
        "42/daemon,",
        "42/daemon,[",
        "42/daemon,{}",
        "451-/daemon,[\"x\"]",
        "45999-/daemon,[\"x\"]",
        "42/daemon,[\"command\",1]",
        "42/daemon,[\"command-response\",{}]",
        "42/daemon,[\"reverse-response\",{\"requestId\":\"nope\",\"command\":\"x\"}]",
        "42/daemon,[\"message\",{\"no\":\"type\"}]",
        "42/daemon,[\"what\",{}]",
        "43/daemon,[]",
        "0{\"sid\":\"x\"}",
        "1",
        "41/other,",
        "40/daemon,[1]",
    ];
    for frame in bad {
        let mut c = Client::registered(addr, "c1", "pw1");
        c.send(frame);
        c.send_binary(&[1, 2, 3]);
        c.send(r#"42/daemon,["command",{"requestId":"r","command":"echo"}]"#);
        // Reads until the echo or the end; either is fine.
        loop {
            match c.ws.read() {
                Ok(Message::Text(t)) if t.as_str() == "2" => c.send("3"),
                Ok(Message::Text(t)) if t.contains("command-response") => break,
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
    // Invalid UTF-8 in a text frame.
    let mut c = Client::registered(addr, "c1", "pw1");
    let frame = tungstenite::protocol::frame::Frame::message(
        vec![0xff, 0xfe],
        tungstenite::protocol::frame::coding::OpCode::Data(
            tungstenite::protocol::frame::coding::Data::Text,
        ),
        true,
    );
    let _ = c.ws.send(Message::Frame(frame));
    c.recv_close();
    assert!(s.stats().protocol_errors > 5);
    let mut c = Client::registered(addr, "c1", "pw1");
    c.send(r#"42/daemon,["command",{"requestId":"r","command":"echo"}]"#);
    assert!(c.recv_text().contains("command-response"));
}

#[test]
fn a_thousand_daemons_connect_and_register() {
    let s = server();
    let addr = s.local_addr();
    let n = 1000;
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                (0..n / 8)
                    .map(|_| Client::registered(addr, "c1", "pw1"))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let clients: Vec<Client> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(clients.len(), n);
    assert_eq!(s.daemons().len(), n);
    assert_eq!(s.stats().connections, n as u64);
}
