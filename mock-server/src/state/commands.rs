//! The daemon's `command`s: what each is answered (the one place), and
//! the history of what the daemons sent.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use serde_json::Value;
use volt_protocol::envelope::{CommandRequest, ErrorBody};

use super::{Received, State};
use crate::events::Logged;
use crate::model::*;
use crate::timers::TimerKind;
use crate::wire::{command_response_frame, write_envelope, ReplyData, HEARTBEAT};

/// The command whose default answer is its own payload.
const ECHO: &str = "echo";

impl State {
    /// The `command-response` frame for a command and its delay; `None`
    /// for [`Responder::NoReply`]. The one place that decides what a
    /// command is answered (`echo`: its payload as it came). Serialized
    /// from borrowed fields: neither the responder nor the payload is copied.
    fn reply_to(
        &self,
        rid: &str,
        command: &str,
        payload: Option<&RawValue>,
        scratch: &mut Vec<u8>,
    ) -> Option<(String, Option<Duration>)> {
        let unknown;
        let (data, error, delay) = match self.responders.get(command) {
            Some(Responder::NoReply) => return None,
            Some(Responder::Ok { data, delay }) => {
                (data.as_ref().map(ReplyData::Value), None, *delay)
            }
            Some(Responder::Err { error, delay }) => (None, Some(error), *delay),
            None => match command {
                HEARTBEAT => (None, None, None),
                ECHO => (payload.map(|p| ReplyData::Raw(p.get())), None, None),
                other => {
                    unknown = ErrorBody::new("UNKNOWN_COMMAND", format!("unknown command {other}"));
                    (None, Some(&unknown), None)
                }
            },
        };
        let ok = error.is_none();
        let text = command_response_frame(scratch, &self.response_prefix, rid, ok, data, error);
        Some((text, delay))
    }

    /// A daemon's `command`, its payload unparsed JSON text.
    pub(super) fn on_command(
        &mut self,
        id: u64,
        rid: &str,
        command: &str,
        payload: Option<&RawValue>,
    ) {
        self.stats.commands += 1;
        let dropping = self.faults.drop_on_command.as_deref() == Some(command);
        let reply = if dropping {
            None
        } else {
            let mut scratch = std::mem::take(&mut self.scratch);
            let reply = self.reply_to(rid, command, payload, &mut scratch);
            self.scratch = scratch;
            reply
        };
        if command == HEARTBEAT {
            if let Some(reg) = self.reg_mut(id) {
                reg.info.heartbeats += 1;
            }
        }
        if self.cfg.record_history {
            self.record_command(id, rid, command, payload);
        }
        if dropping {
            return self.cut(id, "dropOnCommand fault");
        }
        match reply {
            None => {}
            Some((text, delay)) => match State::delay_of(delay) {
                Some(d) => self.timer(Instant::now() + d, id, TimerKind::Send(text)),
                None => self.send_text(id, text),
            },
        }
    }

    /// A `command` the general decoder read (payload parsed): handled as
    /// the fast path handles one, from its payload's JSON text.
    pub(super) fn on_command_value(&mut self, id: u64, req: CommandRequest) {
        let raw = req
            .payload
            .as_ref()
            .and_then(|p| serde_json::value::to_raw_value(p).ok());
        self.on_command(id, &req.request_id, &req.command, raw.as_deref());
    }

    /// Records a daemon's `command` (history on): its envelope, written
    /// once as JSON text, goes to the per-cluster list and (shared) to the
    /// event log; a heartbeat's payload is parsed for [`DaemonInfo`].
    fn record_command(&mut self, id: u64, rid: &str, command: &str, payload: Option<&RawValue>) {
        let Some(cluster) = self.cluster_arc(id) else {
            return;
        };
        let mut buf = std::mem::take(&mut self.rec_scratch);
        write_envelope(&mut buf, rid, command, payload.map(RawValue::get));
        // Everything written is UTF-8 (JSON text and escaped strings).
        let json: Arc<str> = Arc::from(std::str::from_utf8(&buf).unwrap_or_default());
        self.rec_scratch = buf;
        if command == HEARTBEAT {
            let payload: Option<Value> = payload.and_then(|p| serde_json::from_str(p.get()).ok());
            if let Some(reg) = self.reg_mut(id) {
                reg.info.last_heartbeat = payload.clone();
                reg.info.last_heartbeat_at = Some(epoch_ms());
            }
            self.emit(ServerEvent::Heartbeat {
                conn: id,
                cluster: cluster.to_string(),
                request_id: rid.to_owned(),
                payload,
            });
        } else {
            self.events.push(Logged::Command {
                conn: id,
                cluster: cluster.clone(),
                json: json.clone(),
            });
        }
        let limit = self.cfg.history_limit;
        let r = self.received_of(&cluster);
        if r.commands.len() >= limit {
            r.commands.pop_front();
        }
        r.commands.push_back(json);
    }

    /// Records a daemon's `message` (history on).
    pub(super) fn record_message(&mut self, id: u64, message: Value) {
        let Some(cluster) = self.cluster_of(id) else {
            return;
        };
        let limit = self.cfg.history_limit;
        let r = self.received_of(&cluster);
        if r.messages.len() >= limit {
            r.messages.pop_front();
        }
        r.messages.push_back(message.clone());
        self.emit(ServerEvent::Message {
            conn: id,
            cluster,
            message,
        });
    }

    /// The history of a cluster (created on first use, without copying
    /// the name when it exists).
    fn received_of(&mut self, cluster: &str) -> &mut Received {
        if !self.received.contains_key(cluster) {
            self.received
                .insert(cluster.to_owned(), Received::default());
        }
        self.received
            .get_mut(cluster)
            .expect("the entry was just made")
    }

    /// The `message` objects the cluster's daemons sent, in order.
    pub(crate) fn received_messages(&self, cluster: &str) -> Vec<Value> {
        self.received
            .get(cluster)
            .map(|r| r.messages.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The `command` envelopes the cluster's daemons sent, as the JSON
    /// texts recorded (shared: parse them off the loop).
    pub(crate) fn received_commands(&self, cluster: &str) -> VecDeque<Arc<str>> {
        self.received
            .get(cluster)
            .map(|r| r.commands.clone())
            .unwrap_or_default()
    }

    /// The recorded frames, of every connection or of one cluster's.
    pub(crate) fn frames(&self, cluster: Option<&str>) -> Vec<FrameRecord> {
        self.frames
            .iter()
            .filter(|f| cluster.is_none() || f.cluster.as_deref() == cluster)
            .cloned()
            .collect()
    }

    /// Forgets the recorded frames.
    pub(crate) fn clear_frames(&mut self) {
        self.frames.clear();
    }
}
