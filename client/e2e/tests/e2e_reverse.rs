//! The reverse channel end to end: every kind of handler result, errors,
//! panics and pool saturation.

mod e2e_support;

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use e2e_support::*;
use serde_json::{json, Value};
use volt_daemon_client::{
    CommandContext, CommandResult, DaemonClientErrorCode as Code, HandlerError,
    ReverseChannelHandler,
};
use volt_testkit::{fail_on_unexpected_panics, MockServer, ServerEvent, DEFAULT_CLUSTER};

#[test]
fn a_data_handler_gets_payload_and_context_and_its_data_is_the_reply() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |_| {});
    let (tx, rx) = crossbeam_channel::unbounded();
    client.register_handler_fn("list-files", move |payload, ctx| {
        tx.send((ctx.command().to_owned(), ctx.request_id().to_owned()))
            .unwrap();
        Ok(CommandResult::data(json!({"got": payload})).with_header("x-kind", "files"))
    });
    connect(&client);
    let reply = server.dispatch(DEFAULT_CLUSTER, "list-files", json!({"dir": "/tmp"}));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.command, "list-files");
    assert_eq!(reply.data, Some(json!({"got": {"dir": "/tmp"}})));
    assert_eq!(reply.headers.get("x-kind"), Some(&json!("files")));
    assert!(reply.error.is_none());
    let (command, request_id) = recv(&rx, "handler context", WAIT);
    assert_eq!(command, "list-files");
    assert_eq!(request_id, reply.request_id);
    // No payload: the handler sees Null.
    let reply = server.dispatch(DEFAULT_CLUSTER, "list-files", Value::Null);
    assert_eq!(reply.data, Some(json!({"got": null})));
    disconnect(&client);
}

struct Upper;

impl ReverseChannelHandler for Upper {
    fn handle(&self, payload: Value, _ctx: &CommandContext) -> Result<CommandResult, HandlerError> {
        let s = payload.as_str().ok_or("payload must be a string")?;
        Ok(CommandResult::data(json!(s.to_uppercase())))
    }
}

#[test]
fn a_trait_handler_can_be_registered_replaced_and_unregistered() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = connected(&server);
    client.register_handler("shout", Upper);
    let reply = server.dispatch(DEFAULT_CLUSTER, "shout", json!("hi"));
    assert_eq!(reply.data, Some(json!("HI")));
    client.register_handler_fn("shout", |_p, _c| Ok(CommandResult::data(json!("replaced"))));
    let reply = server.dispatch(DEFAULT_CLUSTER, "shout", json!("hi"));
    assert_eq!(reply.data, Some(json!("replaced")));
    client.unregister_handler("shout");
    let reply = server.dispatch(DEFAULT_CLUSTER, "shout", json!("hi"));
    assert_eq!(reply.status, 404);
    disconnect(&client);
}

#[test]
fn a_body_handler_replies_with_one_binary_attachment() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |_| {});
    let bytes: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let expected = bytes.clone();
    client.register_handler_fn("read-file", move |_p, _c| {
        Ok(CommandResult::body(bytes.clone()).with_status(201))
    });
    connect(&client);
    let reply = server.dispatch(DEFAULT_CLUSTER, "read-file", Value::Null);
    assert_eq!(reply.status, 201);
    assert_eq!(reply.body, Some(expected));
    assert_eq!(reply.data, None);
    assert_eq!(reply.stream, None);
    disconnect(&client);
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn a_stream_handler_sends_its_reader_in_64k_chunks_then_the_end() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |_| {});
    let len = 200 * 1024;
    client.register_handler_fn("tail-log", move |_p, _c| {
        Ok(CommandResult::stream(std::io::Cursor::new(pattern(len))))
    });
    connect(&client);
    let reply = server.dispatch(DEFAULT_CLUSTER, "tail-log", Value::Null);
    assert_eq!(reply.status, 200);
    assert!(reply.error.is_none(), "{:?}", reply.error);
    assert_eq!(reply.stream_chunks.len(), 4, "200 KiB in 64 KiB chunks");
    assert!(reply.stream_chunks[..3]
        .iter()
        .all(|c| c.len() == 64 * 1024));
    assert_eq!(reply.chunks, Some(4));
    assert_eq!(reply.stream, Some(pattern(len)));
    disconnect(&client);
}

/// Gives `ok` bytes, then fails.
struct Failing {
    ok: usize,
}

impl Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.ok == 0 {
            return Err(std::io::Error::other("disk gone"));
        }
        let n = buf.len().min(self.ok);
        buf[..n].fill(1);
        self.ok -= n;
        Ok(n)
    }
}

#[test]
fn a_stream_read_error_ends_the_stream_early_with_handler_error() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |_| {});
    let rec = Recorder::attach(&client);
    client.register_handler_fn("tail-log", |_p, _c| {
        Ok(CommandResult::stream(Failing { ok: 64 * 1024 }))
    });
    connect(&client);
    let reply = server.dispatch(DEFAULT_CLUSTER, "tail-log", Value::Null);
    assert_eq!(reply.chunks, Some(1), "{reply:?}");
    assert_eq!(reply.stream.as_ref().map(Vec::len), Some(64 * 1024));
    let err = reply.error.expect("an end error");
    assert_eq!(err.code, "HANDLER_ERROR");
    assert!(err.message.contains("disk gone"), "{}", err.message);
    rec.expect("HANDLER_ERROR", |cb| cb.is_error(Code::HandlerError));
    disconnect(&client);
}

#[test]
fn an_empty_result_replies_with_status_and_headers_only() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |_| {});
    client.register_handler_fn("touch", |_p, _c| {
        Ok(CommandResult::empty()
            .with_status(204)
            .with_header("etag", "v1"))
    });
    connect(&client);
    let reply = server.dispatch(DEFAULT_CLUSTER, "touch", Value::Null);
    assert_eq!(reply.status, 204);
    assert_eq!(reply.headers.get("etag"), Some(&json!("v1")));
    assert_eq!((reply.data, reply.body, reply.stream), (None, None, None));
    assert!(reply.error.is_none());
    disconnect(&client);
}

#[test]
fn a_command_without_handler_gets_404_unknown_command() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = connected(&server);
    let reply = server.dispatch(DEFAULT_CLUSTER, "nobody-home", json!({}));
    assert_eq!(reply.status, 404);
    assert_eq!(reply.command, "nobody-home");
    assert_eq!(reply.error.unwrap().code, "UNKNOWN_COMMAND");
    disconnect(&client);
}

#[test]
fn a_failing_handler_gets_500_handler_error_and_on_error() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |_| {});
    let rec = Recorder::attach(&client);
    client.register_handler_fn("fails", |_p, _c| Err("permission denied".into()));
    connect(&client);
    let reply = server.dispatch(DEFAULT_CLUSTER, "fails", Value::Null);
    assert_eq!(reply.status, 500);
    let err = reply.error.unwrap();
    assert_eq!(err.code, "HANDLER_ERROR");
    assert!(err.message.contains("permission denied"), "{}", err.message);
    rec.expect("HANDLER_ERROR", |cb| cb.is_error(Code::HandlerError));
    disconnect(&client);
}

#[test]
fn a_panicking_handler_gets_500_and_the_pool_keeps_serving() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |o| o.handlers.threads = 1);
    let rec = Recorder::attach(&client);
    client.register_handler_fn("boom", |_p, _c| panic!("expected panic in a handler"));
    client.register_handler_fn("echo", |p, _c| Ok(CommandResult::data(p)));
    connect(&client);
    for _ in 0..3 {
        let reply = server.dispatch(DEFAULT_CLUSTER, "boom", Value::Null);
        assert_eq!(reply.status, 500);
        let err = reply.error.unwrap();
        assert_eq!(err.code, "HANDLER_ERROR");
        assert!(err.message.contains("expected panic"), "{}", err.message);
        rec.expect("HANDLER_ERROR", |cb| cb.is_error(Code::HandlerError));
    }
    // The single handler thread survived its panics.
    let reply = server.dispatch(DEFAULT_CLUSTER, "echo", json!("alive"));
    assert_eq!(reply.data, Some(json!("alive")));
    assert!(client.is_ready());
    disconnect(&client);
}

#[test]
fn a_saturated_handler_pool_answers_503_busy() {
    fail_on_unexpected_panics();
    let server = Arc::new(MockServer::start());
    let client = client_with(&server, |o| {
        o.handlers.threads = 1;
        o.handlers.queue_capacity = 1;
    });
    let (started_tx, started_rx) = crossbeam_channel::unbounded();
    let (gate_tx, gate_rx) = crossbeam_channel::unbounded::<()>();
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    client.register_handler_fn("block", move |p, _c| {
        r.fetch_add(1, Ordering::SeqCst);
        started_tx.send(()).unwrap();
        gate_rx
            .recv_timeout(WAIT)
            .map_err(|_| "the gate never opened")?;
        Ok(CommandResult::data(p))
    });
    connect(&client);
    let dispatch = |n: u64| {
        let s = server.clone();
        std::thread::spawn(move || s.try_dispatch(DEFAULT_CLUSTER, "block", json!(n)))
    };
    let sent = |n: usize| {
        server
            .expect_event_from(
                0,
                {
                    let mut seen = 0;
                    move |e| {
                        seen += usize::from(matches!(e, ServerEvent::ReverseCommandSent { .. }));
                        seen >= n
                    }
                },
                WAIT,
            )
            .unwrap();
    };
    // The one worker runs the first...
    let first = dispatch(1);
    recv(&started_rx, "first handler started", WAIT);
    // ...the queue holds the second (sent before any of the flood, on the
    // same connection, so the client reads it first)...
    let second = dispatch(2);
    sent(2);
    // ...and everything else is turned away at once.
    let flood: Vec<_> = (0..4)
        .map(|t| {
            let s = server.clone();
            std::thread::spawn(move || {
                (0..2)
                    .map(|i| s.try_dispatch(DEFAULT_CLUSTER, "block", json!(100 + t * 10 + i)))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for t in flood {
        for reply in t.join().unwrap() {
            let reply = reply.unwrap();
            assert_eq!(reply.status, 503, "{reply:?}");
            assert_eq!(reply.command, "block");
            assert_eq!(reply.error.unwrap().code, "BUSY");
        }
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // Open the gate: the running and the queued command complete.
    gate_tx.send(()).unwrap();
    gate_tx.send(()).unwrap();
    assert_eq!(first.join().unwrap().unwrap().data, Some(json!(1)));
    assert_eq!(second.join().unwrap().unwrap().data, Some(json!(2)));
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    // The pool serves again.
    gate_tx.send(()).unwrap();
    let reply = server.dispatch(DEFAULT_CLUSTER, "block", json!(3));
    assert_eq!((reply.status, reply.data), (200, Some(json!(3))));
    disconnect(&client);
}
