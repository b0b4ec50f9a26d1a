//! Thread hygiene, measured on the whole process (`/proc/self/task`). One
//! test only in this binary: parallel tests would change the thread count
//! under our feet. For the same reason the process-global count of
//! unexpected panics is asserted here.

mod e2e_support;

use std::time::Duration;

use e2e_support::*;
use serde_json::{json, Value};
use volt_daemon_client::CommandResult;
use volt_testkit::{
    fail_on_unexpected_panics, thread_count, unexpected_panics, wait_until, MockServer,
    ServerEvent, DEFAULT_CLUSTER,
};

fn back_to(baseline: usize, what: &str) {
    assert!(
        wait_until(WAIT, || thread_count() == baseline),
        "{what}: {} threads, {baseline} before connect()",
        thread_count()
    );
}

#[test]
fn every_way_of_stopping_leaves_the_thread_count_where_it_was() {
    fail_on_unexpected_panics();
    let server = MockServer::builder()
        .ping_interval(Duration::from_millis(100))
        .ping_timeout(Duration::from_millis(100))
        .start();
    let baseline = thread_count();
    assert!(baseline > 0, "/proc/self/task is readable");

    // connect() .. disconnect(), with a heartbeat and a busy handler pool.
    let client = client_with(&server, |o| {
        o.heartbeat.interval = Duration::from_millis(20);
        o.handlers.threads = 3;
    });
    client.register_handler_fn("echo", |p, _c| Ok(CommandResult::data(p)));
    connect(&client);
    assert!(
        wait_until(WAIT, || thread_count() >= baseline + 3 + 3),
        "conn, events, heartbeat and 3 handler threads"
    );
    server
        .wait_for_heartbeats(DEFAULT_CLUSTER, 2, WAIT)
        .unwrap();
    assert_eq!(
        server.dispatch(DEFAULT_CLUSTER, "echo", json!(1)).data,
        Some(json!(1))
    );
    disconnect(&client);
    back_to(baseline, "after disconnect()");

    // Again after a reconnection (a new heartbeat thread per connection).
    connect(&client);
    let mark = server.mark();
    server.drop_transport(DEFAULT_CLUSTER).unwrap();
    wait_registered(&server, mark);
    assert!(wait_until(WAIT, || client.is_ready()));
    disconnect(&client);
    back_to(baseline, "after a reconnection and disconnect()");

    // Dropping the last clone disconnects and joins.
    connect(&client);
    let clone = client.clone();
    drop(client);
    bounded("drop of the last clone", WAIT, move || drop(clone));
    back_to(baseline, "after dropping the last clone");

    // disconnect() from inside a handler: the handler's own thread ends
    // when the handler returns.
    let client = client_with(&server, |_| {});
    let c = client.clone();
    client.register_handler_fn("shutdown", move |_p, _ctx| {
        c.disconnect();
        Ok(CommandResult::empty())
    });
    connect(&client);
    let _ = server.dispatch_with_timeout(
        DEFAULT_CLUSTER,
        "shutdown",
        Value::Null,
        Duration::from_millis(500),
    );
    assert!(wait_until(WAIT, || !client.is_ready()));
    back_to(baseline, "after disconnect() from a handler");

    // disconnect() from a callback: the event thread ends when it returns.
    let client = client_with(&server, |_| {});
    let c = client.clone();
    client.on_connected(move || c.disconnect());
    connect(&client);
    back_to(baseline, "after disconnect() from on_connected");

    // A kick ends the connection thread; disconnect() ends the rest.
    let client = connected(&server);
    server.kick(DEFAULT_CLUSTER).unwrap();
    server
        .expect_event(|e| matches!(e, ServerEvent::Kicked { .. }), WAIT)
        .unwrap();
    assert!(wait_until(WAIT, || !client.is_ready()));
    disconnect(&client);
    back_to(baseline, "after a kick and disconnect()");

    // A failed first connect() leaves nothing running after disconnect().
    server.set_faults(volt_testkit::Faults {
        refuse_connections: 1,
        ..Default::default()
    });
    let client = client_with(&server, |_| {});
    assert!(client.connect().is_err());
    disconnect(&client);
    back_to(baseline, "after a failed connect()");

    assert_eq!(unexpected_panics(), 0, "a thread panicked (see the output)");
}
