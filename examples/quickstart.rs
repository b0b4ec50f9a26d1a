//! The main job: starts an embedded mock VOLT server, connects a daemon with
//! enrollment, and exercises every feature once, printing what happens.
//!
//! Run it with `cargo run --example quickstart`.

use std::io::Cursor;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;
use volt_daemon_client::{
    ClusterDaemonClient, CommandResult, DaemonCredentials, EnrollmentOptions,
    TeamClusterDaemonMessage,
};
use volt_testkit::{client_options, MockServer, ServerEvent};

const CLUSTER: &str = "cluster-demo";
const WAIT: Duration = Duration::from_secs(5);

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result {
    // 1. A mock VOLT server in this process: one cluster, a one-time
    //    enrollment token, and a password rotation on enrollment.
    let server = start_server();
    println!("mock VOLT server   {}", server.url());
    // 2. The daemon: enrollment on, handlers, callbacks.
    let (client, said) = daemon(&server)?;
    // 3. Connect: enrollment -> socket -> registration -> heartbeat.
    client.connect()?;
    println!("{:<18}{}", "event", said.recv_timeout(WAIT)?);
    println!(
        "enrolled          password now {}",
        if client.daemon_password() == "rotated-password" {
            "rotated"
        } else {
            "unchanged"
        }
    );
    commands_and_heartbeat(&server, &client)?;
    reverse_commands(&server)?;
    messages(&server, &client, &said)?;

    // 7. The server drops the transport: the client reconnects by itself.
    server.drop_transport(CLUSTER)?;
    println!("{:<18}{}", "event", said.recv_timeout(WAIT)?);
    println!("{:<18}{}", "event", said.recv_timeout(WAIT)?);
    let reply = client.send_command("echo", Some(json!("after reconnect")))?;
    println!("command echo      -> {}", reply.unwrap_or_default());

    // 8. Disconnect: graceful, joins every thread.
    client.disconnect();
    println!("{:<18}{}", "event", said.recv_timeout(WAIT)?);
    println!("done              every feature exercised once");
    Ok(())
}

fn start_server() -> MockServer {
    MockServer::builder()
        .cluster(CLUSTER, "initial-password")
        .enrollment_token("one-time-token")
        .rotate_password("rotated-password")
        .ping_interval(Duration::from_millis(500))
        .ping_timeout(Duration::from_millis(500))
        .start()
}

/// The client, and what its callbacks said, in order.
fn daemon(server: &MockServer) -> Result<(ClusterDaemonClient, mpsc::Receiver<String>)> {
    let mut options = client_options(server, CLUSTER, "initial-password");
    options.credentials = DaemonCredentials::new(CLUSTER, "initial-password")
        .with_enrollment_token("one-time-token")
        .with_installed_version("1.4.2");
    options.enrollment = Some(EnrollmentOptions::new(format!(
        "/api/team-clusters/{CLUSTER}/healthcheck"
    )));
    options.heartbeat.interval = Duration::from_millis(300);
    options.heartbeat = options
        .heartbeat
        .with_payload_factory(|| json!({ "containers": 3, "load": 0.25 }));
    let client = ClusterDaemonClient::new(options)?;

    let (said_tx, said) = mpsc::channel::<String>();
    let tx = said_tx.clone();
    client.on_connected(move || {
        let _ = tx.send("connected".into());
    });
    let tx = said_tx.clone();
    client.on_disconnected(move |reason| {
        let _ = tx.send(format!("disconnected ({reason})"));
    });
    let tx = said_tx.clone();
    client.on_message(move |m| {
        let _ = tx.send(format!(
            "message from server: {}",
            serde_json::to_string(m).unwrap_or_default()
        ));
    });
    client
        .on_password_rotated(|_| println!("password          rotated by enrollment (persist it!)"));
    client.on_error(|e| println!("on_error          {e}"));
    handlers(&client);
    Ok((client, said))
}

fn handlers(client: &ClusterDaemonClient) {
    client.register_handler_fn("list-files", |payload, ctx| {
        let dir = payload.get("dir").and_then(|d| d.as_str()).unwrap_or("/");
        println!(
            "handler           {} (request {}) for {dir}",
            ctx.command(),
            ctx.request_id()
        );
        Ok(CommandResult::data(json!(["a.txt", "b.txt"])))
    });
    client.register_handler_fn("read-file", |_payload, _ctx| {
        Ok(CommandResult::body(b"hello from the daemon".to_vec())
            .with_header("content-type", "text/plain"))
    });
    client.register_handler_fn("tail-log", |_payload, _ctx| {
        // 200 KiB: sent as several 64 KiB chunks.
        Ok(CommandResult::stream(Cursor::new(vec![b'x'; 200 * 1024])))
    });
}

fn commands_and_heartbeat(server: &MockServer, client: &ClusterDaemonClient) -> Result {
    // 4. A command, a rejected command, a heartbeat.
    let reply = client.send_command("echo", Some(json!({ "hello": "volt" })))?;
    println!("command echo      -> {}", reply.unwrap_or_default());
    match client.send_command("no-such-command", None) {
        Err(e) => println!(
            "command rejected  -> {} ({})",
            e.code().as_str(),
            e.server_code().unwrap_or("")
        ),
        Ok(v) => println!("command unexpectedly answered {v:?}"),
    }
    server.wait_for_heartbeats(CLUSTER, 1, WAIT)?;
    let daemon = &server.daemons()[0];
    println!(
        "heartbeat         {} received, last payload {}",
        daemon.heartbeats,
        daemon.last_heartbeat.clone().unwrap_or_default()
    );
    Ok(())
}

fn reverse_commands(server: &MockServer) -> Result {
    // 5. Reverse commands: data, body, stream, and one with no handler.
    let r = server.try_dispatch(CLUSTER, "list-files", json!({ "dir": "/var/log" }))?;
    println!(
        "reverse data      <- status {} data {}",
        r.status,
        r.data.unwrap_or_default()
    );
    let r = server.try_dispatch(CLUSTER, "read-file", json!(null))?;
    println!(
        "reverse body      <- status {} {:?}",
        r.status,
        String::from_utf8_lossy(&r.body.unwrap_or_default())
    );
    let r = server.try_dispatch(CLUSTER, "tail-log", json!(null))?;
    println!(
        "reverse stream    <- status {} {} chunks, {} bytes",
        r.status,
        r.chunks.unwrap_or_default(),
        r.stream_chunks.iter().map(Vec::len).sum::<usize>()
    );
    let r = server.try_dispatch(CLUSTER, "reboot", json!(null))?;
    println!(
        "reverse unknown   <- status {} {:?}",
        r.status,
        r.error.map(|e| e.code)
    );
    Ok(())
}

fn messages(
    server: &MockServer,
    client: &ClusterDaemonClient,
    said: &mpsc::Receiver<String>,
) -> Result {
    // 6. Messages both ways.
    client.emit(&serde_json::from_value::<TeamClusterDaemonMessage>(
        json!({
            "type": "tunnel-state", "tunnelId": "t1", "state": "open"
        }),
    )?)?;
    server.expect_event(|e| matches!(e, ServerEvent::Message { .. }), WAIT)?;
    println!("message to server {}", server.received_messages(CLUSTER)[0]);
    server.send_message(
        CLUSTER,
        json!({ "type": "session-input", "sessionId": "s1", "chunkBase64": "aGk=" }),
    )?;
    println!("{:<18}{}", "event", said.recv_timeout(WAIT)?);
    Ok(())
}
