//! Reverse commands (the server's `reverse-command`s to a daemon) and the
//! reassembly of their replies: a `reverse-response`, and for a stream its
//! chunks and `reverse-stream-end`.

use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use serde_json::Value;
use volt_protocol::envelope::{
    ReplyBody, ReverseCommand, ReverseResponse, ReverseStream, ReverseStreamEnd, VoltEvent,
};

use super::State;
use crate::model::*;
use crate::timers::TimerKind;

/// Where a reverse command's reply goes.
pub(crate) type ReplyTo = Sender<Result<ReverseReply, DispatchError>>;

/// A reverse command waiting for its reply.
pub(crate) struct Pending {
    pub conn: u64,
    cluster: String,
    pub reply: ReplyTo,
    response: Option<ReverseResponse>,
    chunks: Vec<Vec<u8>>,
    end: Option<ReverseStreamEnd>,
}

impl State {
    /// Sends a reverse command to the cluster's newest connection; its
    /// reply (or failure) goes to `reply`.
    pub(crate) fn dispatch(
        &mut self,
        cluster: &str,
        command: String,
        payload: Option<Value>,
        timeout: Duration,
        reply: ReplyTo,
    ) {
        let Some(id) = self.newest(cluster) else {
            let _ = reply.send(Err(DispatchError::NotConnected(cluster.into())));
            return;
        };
        let request_id = uuid::Uuid::new_v4().to_string();
        let text = VoltEvent::ReverseCommand(ReverseCommand {
            request_id: request_id.clone(),
            command: command.clone(),
            payload,
        })
        .encode(&self.cfg.namespace)
        .text;
        self.pending.insert(
            request_id.clone(),
            Pending {
                conn: id,
                cluster: cluster.into(),
                reply,
                response: None,
                chunks: Vec::new(),
                end: None,
            },
        );
        let kind = TimerKind::DispatchTimeout(request_id.clone());
        self.timer(Instant::now() + timeout, id, kind);
        self.send_text(id, text);
        self.emit(ServerEvent::ReverseCommandSent {
            conn: id,
            cluster: cluster.into(),
            request_id,
            command,
        });
    }

    pub(super) fn dispatch_timed_out(&mut self, rid: &str) {
        if let Some(p) = self.pending.remove(rid) {
            let _ = p.reply.send(Err(DispatchError::Timeout(Duration::ZERO)));
        }
    }

    /// Fails every reverse command pending on connection `id`.
    pub(super) fn fail_pending(&mut self, id: u64, reason: &str) {
        let ids: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.conn == id)
            .map(|(k, _)| k.clone())
            .collect();
        for rid in ids {
            if let Some(p) = self.pending.remove(&rid) {
                let _ = p
                    .reply
                    .send(Err(DispatchError::Disconnected(reason.into())));
            }
        }
    }

    pub(super) fn on_reverse_response(&mut self, id: u64, r: ReverseResponse) {
        let rid = r.request_id.clone();
        match self.pending.get_mut(&rid) {
            Some(p) if p.conn == id && p.response.is_none() => {
                p.response = Some(r);
                self.maybe_finish(&rid);
            }
            Some(p) if p.conn == id => {
                self.protocol_error(id, format!("second reverse-response for {rid}"))
            }
            _ => self.protocol_error(id, format!("stray reverse-response for {rid}")),
        }
    }

    pub(super) fn on_reverse_stream(&mut self, id: u64, s: ReverseStream) {
        match self.pending.get_mut(&s.request_id) {
            Some(p) if p.conn == id && p.end.is_none() => p.chunks.push(s.chunk),
            _ => self.protocol_error(
                id,
                format!("stray reverse-stream chunk for {}", s.request_id),
            ),
        }
    }

    pub(super) fn on_reverse_stream_end(&mut self, id: u64, e: ReverseStreamEnd) {
        let rid = e.request_id.clone();
        match self.pending.get_mut(&rid) {
            Some(p) if p.conn == id && p.end.is_none() => {
                p.end = Some(e);
                self.maybe_finish(&rid);
            }
            _ => self.protocol_error(id, format!("stray reverse-stream-end for {rid}")),
        }
    }

    /// Answers a reverse command once its reply is whole.
    fn maybe_finish(&mut self, rid: &str) {
        let Some(p) = self.pending.get(rid) else {
            return;
        };
        let Some(resp) = &p.response else { return };
        if matches!(resp.body, ReplyBody::Stream) && p.end.is_none() {
            return;
        }
        let Some(p) = self.pending.remove(rid) else {
            return;
        };
        let Some(resp) = p.response else { return };
        let mut reply = ReverseReply {
            request_id: resp.request_id,
            command: resp.command,
            status: resp.status,
            headers: resp.headers,
            error: resp.error,
            ..ReverseReply::default()
        };
        match resp.body {
            ReplyBody::None => {}
            ReplyBody::Data(d) => reply.data = Some(d),
            ReplyBody::Body(b) => reply.body = Some(b),
            ReplyBody::Stream => {
                reply.stream = Some(p.chunks.concat());
                reply.stream_chunks = p.chunks;
                if let Some(end) = p.end {
                    reply.chunks = Some(end.chunks);
                    if reply.error.is_none() {
                        reply.error = end.error;
                    }
                }
            }
        }
        let _ = p.reply.send(Ok(reply.clone()));
        self.emit(ServerEvent::ReverseReply {
            conn: p.conn,
            cluster: p.cluster,
            reply: Box::new(reply),
        });
    }
}
