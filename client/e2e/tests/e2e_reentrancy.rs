//! User code calling back into the client from its own threads (handlers,
//! callbacks): never a deadlock. Every risky wait is bounded.

mod e2e_support;

use std::time::Duration;

use e2e_support::*;
use serde_json::{json, Value};
use volt_daemon_client::{CommandResult, DaemonClientErrorCode as Code};
use volt_testkit::{fail_on_unexpected_panics, MockServer, ServerEvent, DEFAULT_CLUSTER};

#[test]
fn a_handler_can_send_a_command_and_reply_with_its_result() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |o| o.handlers.threads = 1);
    let c = client.clone();
    client.register_handler_fn("proxy", move |payload, _ctx| {
        let reply = c.send_command("echo", Some(json!({"via": payload})))?;
        Ok(CommandResult::data(reply.unwrap_or(Value::Null)))
    });
    connect(&client);
    let s = std::sync::Arc::new(server);
    let s2 = s.clone();
    let reply = bounded("dispatch proxy", WAIT, move || {
        s2.dispatch(DEFAULT_CLUSTER, "proxy", json!(42))
    });
    assert_eq!(reply.data, Some(json!({"via": 42})));
    disconnect(&client);
}

#[test]
fn on_connected_and_on_message_can_send_commands() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |_| {});
    let (tx, rx) = crossbeam_channel::unbounded();
    let (c, t) = (client.clone(), tx.clone());
    client.on_connected(move || {
        let _ = t.send(("connected", c.send_command("echo", Some(json!("hello")))));
    });
    let c = client.clone();
    client.on_message(move |m| {
        let _ = tx.send((
            "message",
            c.send_command("echo", Some(json!(m.message_type()))),
        ));
        let _ = c.emit(m);
    });
    connect(&client);
    let (from, r) = recv(&rx, "command from on_connected", WAIT);
    assert_eq!((from, r.unwrap()), ("connected", Some(json!("hello"))));
    server
        .send_message(DEFAULT_CLUSTER, json!({"type": "ping-me"}))
        .unwrap();
    let (from, r) = recv(&rx, "command from on_message", WAIT);
    assert_eq!((from, r.unwrap()), ("message", Some(json!("ping-me"))));
    // ...and emit from on_message reached the server.
    server
        .expect_event(|e| matches!(e, ServerEvent::Message { .. }), WAIT)
        .unwrap();
    disconnect(&client);
}

#[test]
fn on_error_can_disconnect_the_client() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |_| {});
    let (tx, rx) = crossbeam_channel::unbounded();
    let c = client.clone();
    client.on_error(move |e| {
        c.disconnect();
        let _ = tx.send((e.code(), c.is_ready()));
    });
    connect(&client);
    server
        .send_raw_text(DEFAULT_CLUSTER, r#"42/daemon,["message",{"no":"type"}]"#)
        .unwrap();
    let (code, ready) = recv(&rx, "disconnect() from on_error returned", WAIT);
    assert_eq!(code, Code::ProtocolError);
    assert!(!ready);
    assert!(!client.is_ready());
    server
        .expect_event(|e| matches!(e, ServerEvent::Unregistered { .. }), WAIT)
        .unwrap();
    // Stopped for good: no reconnection.
    let mark = server.mark();
    assert!(server
        .expect_event_from(mark, is_registered, QUIET)
        .is_err());
    // And it can connect again.
    connect(&client);
    disconnect(&client);
}

#[test]
fn on_disconnected_can_disconnect_the_client_and_stop_reconnection() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |_| {});
    let (tx, rx) = crossbeam_channel::unbounded();
    let c = client.clone();
    client.on_disconnected(move |reason| {
        if reason == "transport close" {
            c.disconnect();
            let _ = tx.send(reason.to_owned());
        }
    });
    connect(&client);
    server.drop_transport(DEFAULT_CLUSTER).unwrap();
    assert_eq!(
        recv(&rx, "disconnect() from on_disconnected returned", WAIT),
        "transport close"
    );
    // Whatever the reconnection had reached, disconnect() stopped it.
    assert!(!client.is_ready());
    assert!(volt_testkit::wait_until(WAIT, || server
        .daemons()
        .is_empty()));
    let mark = server.mark();
    assert!(server
        .expect_event_from(mark, |e| matches!(e, ServerEvent::Connected { .. }), QUIET)
        .is_err());
    assert!(!client.is_ready());
    connect(&client);
    disconnect(&client);
}

#[test]
fn a_handler_can_disconnect_the_client() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |_| {});
    let (tx, rx) = crossbeam_channel::unbounded();
    let c = client.clone();
    client.register_handler_fn("shutdown", move |_p, _ctx| {
        c.disconnect();
        let _ = tx.send(c.is_ready());
        Ok(CommandResult::empty())
    });
    connect(&client);
    let server = std::sync::Arc::new(server);
    let s = server.clone();
    // The reply cannot go out any more: the dispatch sees the disconnection.
    let dispatched =
        std::thread::spawn(move || s.try_dispatch(DEFAULT_CLUSTER, "shutdown", Value::Null));
    assert!(!recv(&rx, "disconnect() from a handler returned", WAIT));
    assert!(!client.is_ready());
    assert!(bounded("dispatch", WAIT * 3, move || dispatched.join().unwrap()).is_err());
    let mark = server.mark();
    assert!(server
        .expect_event_from(mark, is_registered, QUIET)
        .is_err());
    connect(&client);
    let reply = server.dispatch(DEFAULT_CLUSTER, "unknown", Value::Null);
    assert_eq!(reply.status, 404);
    disconnect(&client);
}

#[test]
fn callbacks_can_register_handlers() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |_| {});
    let (tx, rx) = crossbeam_channel::unbounded();
    let c = client.clone();
    client.on_connected(move || {
        c.register_handler_fn("late", |p, _c| Ok(CommandResult::data(p)));
        // Registering callbacks from a callback does not deadlock either.
        c.on_error(|_| {});
        let _ = tx.send(());
    });
    connect(&client);
    recv(&rx, "on_connected returned", WAIT);
    let reply = server.dispatch(DEFAULT_CLUSTER, "late", json!("registered late"));
    assert_eq!(reply.data, Some(json!("registered late")));
    disconnect(&client);
}

#[test]
fn a_slow_callback_does_not_stall_pings_or_commands() {
    fail_on_unexpected_panics();
    // A 300 ms window: a loaded 2-core machine can stall a thread for 50 ms
    // (a 100 ms window lost the connection with a compiler running), and
    // eight pongs (400 ms or more) still outlast the window while the
    // callback blocks.
    let server = MockServer::builder()
        .ping_interval(Duration::from_millis(50))
        .ping_timeout(Duration::from_millis(250))
        .start();
    let client = client_with(&server, |_| {});
    let (release_tx, release_rx) = crossbeam_channel::unbounded::<()>();
    let (entered_tx, entered_rx) = crossbeam_channel::unbounded();
    client.on_message(move |_| {
        let _ = entered_tx.send(());
        let _ = release_rx.recv_timeout(WAIT);
    });
    connect(&client);
    server
        .send_message(DEFAULT_CLUSTER, json!({"type": "block"}))
        .unwrap();
    recv(&entered_rx, "callback entered", WAIT);
    // While the callback blocks, pings are answered (well past
    // pingInterval + pingTimeout) and commands complete.
    for i in 0..20 {
        assert_eq!(
            client.send_command("echo", Some(json!(i))).unwrap(),
            Some(json!(i))
        );
    }
    let pongs = || {
        server
            .frames(DEFAULT_CLUSTER)
            .iter()
            .filter(|f| {
                f.dir == volt_testkit::Direction::In
                    && f.frame == volt_testkit::RawFrame::Text("3".into())
            })
            .count()
    };
    assert!(volt_testkit::wait_until(WAIT, || pongs() >= 8));
    assert!(client.is_ready());
    assert_eq!(
        count_events(&server, is_registered),
        1,
        "the connection was never lost"
    );
    release_tx.send(()).unwrap();
    disconnect(&client);
}
