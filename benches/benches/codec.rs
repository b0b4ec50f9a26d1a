//! Codec: encode and decode of each VOLT packet type, no I/O.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::{json, Map};
use volt_daemon_client::TeamClusterDaemonMessage;
use volt_protocol::envelope::{
    CommandRequest, CommandResponse, ReplyBody, ReverseCommand, ReverseResponse, ReverseStream,
    ReverseStreamEnd, VoltEvent,
};
use volt_protocol::{Decoder, Incoming, Limits};

const NS: &str = "/daemon";
const RID: &str = "3f2b8c1e-8a4d-4c2e-9b7a-0d1e2f3a4b5c";

fn events() -> Vec<(&'static str, VoltEvent)> {
    let payload = volt_benches::payload(64);
    vec![
        (
            "command",
            VoltEvent::Command(CommandRequest {
                request_id: RID.into(),
                command: "echo".into(),
                payload: Some(payload.clone()),
            }),
        ),
        (
            "command-response",
            VoltEvent::CommandResponse(CommandResponse {
                request_id: RID.into(),
                ok: true,
                data: Some(payload.clone()),
                error: None,
            }),
        ),
        (
            "reverse-command",
            VoltEvent::ReverseCommand(ReverseCommand {
                request_id: RID.into(),
                command: "list-files".into(),
                payload: Some(json!({"path": "/var/log"})),
            }),
        ),
        (
            "reverse-response-data",
            VoltEvent::ReverseResponse(ReverseResponse {
                request_id: RID.into(),
                command: "list-files".into(),
                status: 200,
                headers: Map::new(),
                body: ReplyBody::Data(json!(["a.txt", "b.txt", "c.txt"])),
                error: None,
            }),
        ),
        (
            "reverse-response-body-4k",
            VoltEvent::ReverseResponse(ReverseResponse {
                request_id: RID.into(),
                command: "read-file".into(),
                status: 200,
                headers: Map::new(),
                body: ReplyBody::Body(vec![7u8; 4096]),
                error: None,
            }),
        ),
        (
            "reverse-stream-4k",
            VoltEvent::ReverseStream(ReverseStream {
                request_id: RID.into(),
                seq: 3,
                chunk: vec![7u8; 4096],
            }),
        ),
        (
            "reverse-stream-end",
            VoltEvent::ReverseStreamEnd(ReverseStreamEnd {
                request_id: RID.into(),
                chunks: 4,
                error: None,
            }),
        ),
        (
            "message",
            VoltEvent::Message(
                TeamClusterDaemonMessage::from_value(json!({
                    "type": "session-data", "sessionId": "s1", "chunkBase64": "aGVsbG8gd29ybGQ="
                }))
                .expect("a valid message"),
            ),
        ),
    ]
}

fn decode(d: &mut Decoder, text: &str, attachments: &[Vec<u8>]) -> VoltEvent {
    let mut out = d.text(text).expect("decodes");
    for a in attachments {
        out = d.binary(a.clone()).expect("decodes");
    }
    let Some(Incoming::Packet(p)) = out else {
        panic!("not a packet")
    };
    VoltEvent::from_packet(p).expect("an event")
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(1));
    for (name, event) in events() {
        g.bench_function(format!("encode/{name}"), |b| {
            b.iter_batched(|| event.clone(), |e| e.encode(NS), BatchSize::SmallInput)
        });
        let out = event.clone().encode(NS);
        let text = out.text[..].to_owned();
        let mut d = Decoder::new(Limits::default());
        assert_eq!(decode(&mut d, &text, &out.attachments), event);
        g.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| black_box(decode(&mut d, black_box(&text), &out.attachments)))
        });
    }
    let mut d = Decoder::new(Limits::default());
    g.bench_function("decode/ping", |b| {
        b.iter(|| black_box(d.text(black_box("2")).expect("decodes")))
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
