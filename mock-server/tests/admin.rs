//! The HTTP side: admin API, enrollment, socket.io path errors.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use volt_mock_server::{Server, ServerConfig};

#[test]
fn polling_and_unknown_paths() {
    let s = server();
    let a = s.local_addr();
    let (st, b) = admin(a, "GET", "/socket.io/?EIO=4&transport=polling", "");
    assert_eq!(st, 400);
    assert!(b["message"]
        .as_str()
        .unwrap()
        .contains("WebSocket transport only"));
    assert!(b["code"].is_number());
    assert_eq!(
        admin(a, "GET", "/socket.io/?EIO=4&transport=websocket", "").0,
        400
    );
    assert_eq!(
        admin(a, "GET", "/socket.io/?EIO=3&transport=websocket", "").1["code"],
        5
    );
    let (st, b) = admin(a, "GET", "/nope", "");
    assert_eq!(st, 404);
    assert!(b["message"].is_string());
    assert_eq!(admin(a, "GET", "/admin/nope", "").0, 404);
}

#[test]
fn bad_admin_input_is_400() {
    let s = server();
    let a = s.local_addr();
    for (m, p, b) in [
        ("PUT", "/admin/faults", "{"),
        ("PUT", "/admin/faults", "[]"),
        ("PUT", "/admin/faults", r#"{"stopPings":"yes"}"#),
        ("PUT", "/admin/faults", r#"{"bogus":1}"#),
        ("PUT", "/admin/faults", r#"{"refuseConnections":-1}"#),
        ("PUT", "/admin/responders/x", r#"{"ok":"yes"}"#),
        ("PUT", "/admin/responders/x", r#"{"ok":false}"#),
        ("PUT", "/admin/responders/x", r#"{"ok":true,"delayMs":-5}"#),
        ("PUT", "/admin/responders/x", ""),
        ("POST", "/admin/clusters", r#"{"teamClusterId":1}"#),
        ("PUT", "/admin/enrollment", r#"{"tokens":"t"}"#),
        ("PUT", "/admin/enrollment", r#"{"failStatus":99}"#),
        ("POST", "/admin/daemons/c1/commands", r#"{"command":1}"#),
        (
            "POST",
            "/admin/daemons/c1/commands",
            r#"{"command":"x","timeoutMs":0}"#,
        ),
        ("POST", "/admin/daemons/c1/messages", ""),
        ("POST", "/admin/daemons/c1/raw", r#"{"binaryBase64":"!!"}"#),
    ] {
        let (st, body) = admin(a, m, p, b);
        assert_eq!(st, 400, "{m} {p} {b}: {body}");
        assert!(body["message"].is_string());
    }
    // Still serving.
    assert_eq!(admin(a, "GET", "/admin/daemons", "").0, 200);
}

#[test]
fn admin_api_end_to_end() {
    let s = server();
    let a = s.local_addr();
    assert_eq!(
        admin(
            a,
            "POST",
            "/admin/clusters",
            r#"{"teamClusterId":"c9","daemonPassword":"p9"}"#
        )
        .0,
        201
    );
    let mut c = Client::registered(a, "c9", "p9");
    let (st, list) = admin(a, "GET", "/admin/daemons", "");
    assert_eq!(st, 200);
    let d = &list[0];
    for k in [
        "teamClusterId",
        "sid",
        "installedVersion",
        "client",
        "connectedAt",
        "heartbeats",
        "lastHeartbeat",
        "lastHeartbeatAt",
    ] {
        assert!(d.get(k).is_some(), "{k} missing in {d}");
    }
    assert_eq!(d["lastHeartbeat"], serde_json::Value::Null);
    // Responder via HTTP.
    assert_eq!(
        admin(
            a,
            "PUT",
            "/admin/responders/get",
            r#"{"ok":true,"data":{"v":1}}"#
        )
        .0,
        200
    );
    c.send(r#"42/daemon,["command",{"requestId":"q","command":"get"}]"#);
    assert_eq!(
        c.recv_text(),
        r#"42/daemon,["command-response",{"requestId":"q","ok":true,"data":{"v":1}}]"#
    );
    assert_eq!(admin(a, "DELETE", "/admin/responders/get", "").0, 200);
    let (_, cmds) = admin(a, "GET", "/admin/daemons/c9/commands", "");
    assert_eq!(cmds, json!([{"requestId":"q","command":"get"}]));
    // Messages.
    assert_eq!(
        admin(
            a,
            "POST",
            "/admin/daemons/c9/messages",
            r#"{"type":"tunnel-close","tunnelId":"t"}"#
        )
        .0,
        202
    );
    assert_eq!(
        c.recv_text(),
        r#"42/daemon,["message",{"type":"tunnel-close","tunnelId":"t"}]"#
    );
    c.send(r#"42/daemon,["message",{"type":"x"}]"#);
    let (_, msgs) = loop {
        let r = admin(a, "GET", "/admin/daemons/c9/messages", "");
        if r.1.as_array().is_some_and(|v| !v.is_empty()) {
            break r;
        }
    };
    assert_eq!(msgs, json!([{"type":"x"}]));
    // A reverse command over HTTP, answered by the client thread.
    let t = std::thread::spawn(move || {
        let (_, cmd) = c.recv_event();
        let rid = cmd["requestId"].as_str().unwrap().to_owned();
        c.send(&format!(r#"42/daemon,["reverse-response",{{"requestId":"{rid}","command":"ls","status":201,"headers":{{}},"data":null}}]"#));
        c
    });
    let (st, r) = admin(
        a,
        "POST",
        "/admin/daemons/c9/commands",
        r#"{"command":"ls","payload":{"p":1}}"#,
    );
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["status"], 201);
    assert!(r.as_object().unwrap().contains_key("data"));
    let mut c = t.join().unwrap();
    let (st, _) = admin(
        a,
        "POST",
        "/admin/daemons/c9/commands",
        r#"{"command":"ls","timeoutMs":50}"#,
    );
    assert_eq!(st, 504);
    assert_eq!(c.recv_event().0, "reverse-command"); // the one that timed out
    assert_eq!(
        admin(
            a,
            "POST",
            "/admin/daemons/zz/commands",
            r#"{"command":"ls"}"#
        )
        .0,
        404
    );
    // Faults over HTTP.
    let (st, f) = admin(a, "PUT", "/admin/faults", r#"{"refuseConnections":1}"#);
    assert_eq!((st, f["refuseConnections"].as_u64()), (200, Some(1)));
    assert_eq!(
        admin(a, "DELETE", "/admin/faults", "").1["refuseConnections"],
        0
    );
    // Kick and drop.
    assert_eq!(
        admin(a, "POST", "/admin/daemons/c9/kick", "").1["kicked"],
        1
    );
    assert_eq!(c.recv_text(), "41/daemon,");
    assert_eq!(admin(a, "POST", "/admin/daemons/c9/kick", "").0, 404);
    c.register("c9", "p9");
    assert_eq!(
        admin(a, "POST", "/admin/daemons/c9/drop", "").1["dropped"],
        1
    );
    assert!(c.recv_close().is_none());
}

#[test]
fn enrollment() {
    let mut cfg = ServerConfig::default().cluster("c1", "old");
    cfg.enrollment_tokens = vec!["tok1".into(), "tok2".into()];
    let s = Server::start(cfg).unwrap();
    let a = s.local_addr();
    let path = "/api/team-clusters/c1/healthcheck";
    let body = |tok: &str| {
        format!(
            r#"{{"teamClusterId":"c1","enrollmentToken":"{tok}","installedVersion":"1.4.2","daemonPassword":"new"}}"#
        )
    };
    assert_eq!(http(a, "POST", path, &[], &body("tok1")).0, 401);
    assert_eq!(
        http(
            a,
            "POST",
            path,
            &[("Authorization", "Bearer bad")],
            &body("bad")
        )
        .0,
        401
    );
    let (st, r) = http(
        a,
        "POST",
        path,
        &[("Authorization", "Bearer tok1")],
        &body("tok1"),
    );
    assert_eq!(
        (st, &r),
        (200, &json!({"teamClusterId":"c1","enrolled":true}))
    );
    assert_eq!(s.cluster_password("c1").as_deref(), Some("new"));
    // One-time.
    assert_eq!(
        http(
            a,
            "POST",
            path,
            &[("Authorization", "Bearer tok1")],
            &body("tok1")
        )
        .0,
        401
    );
    assert_eq!(
        http(a, "POST", path, &[("Authorization", "Bearer tok2")], "nope").0,
        400
    );
    // Rotation.
    assert_eq!(
        admin(a, "PUT", "/admin/enrollment", r#"{"rotateTo":"rotated"}"#).0,
        200
    );
    let (st, r) = http(
        a,
        "POST",
        path,
        &[("Authorization", "Bearer tok2")],
        &body("tok2"),
    );
    assert_eq!((st, r["daemonPassword"].as_str()), (200, Some("rotated")));
    assert_eq!(s.cluster_password("c1").as_deref(), Some("rotated"));
    // failStatus.
    assert_eq!(
        admin(
            a,
            "PUT",
            "/admin/enrollment",
            r#"{"tokens":["t3"],"failStatus":503}"#
        )
        .0,
        200
    );
    let (st, r) = http(
        a,
        "POST",
        path,
        &[("Authorization", "Bearer t3")],
        &body("t3"),
    );
    assert_eq!(st, 503);
    assert!(r["message"].is_string());
    assert_eq!(
        admin(a, "GET", "/admin/enrollment", "").1["tokens"],
        json!(["t3"])
    );
}

#[test]
fn admin_token_guards_admin_routes_only() {
    let mut cfg = ServerConfig::default().cluster("c1", "pw");
    cfg.admin_token = Some("sekrit".into());
    let s = Server::start(cfg).unwrap();
    let a = s.local_addr();
    assert_eq!(admin(a, "GET", "/admin/daemons", "").0, 401);
    assert_eq!(
        http(
            a,
            "GET",
            "/admin/daemons",
            &[("Authorization", "Bearer wrong")],
            ""
        )
        .0,
        401
    );
    assert_eq!(
        http(
            a,
            "GET",
            "/admin/daemons",
            &[("Authorization", "Bearer sekrit")],
            ""
        )
        .0,
        200
    );
    // The socket path and enrollment are not guarded.
    let _c = Client::registered(a, "c1", "pw");
    assert_eq!(
        http(a, "POST", "/api/team-clusters/c1/healthcheck", &[], "{}").0,
        401
    );
}

#[test]
fn stop_frees_the_port_and_joins() {
    let s = server();
    let a = s.local_addr();
    let mut c = Client::registered(a, "c1", "pw1");
    s.stop();
    let f = c.recv_close();
    assert!(f.is_none_or(|f| u16::from(f.code) == 1001));
    assert!(std::net::TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_err());
}
