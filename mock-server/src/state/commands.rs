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

/// A daemon's `command` as read from its frame.
#[derive(Clone, Copy)]
pub(super) struct Command<'a> {
    pub rid: &'a str,
    pub command: &'a str,
    /// Unparsed JSON text.
    pub payload: Option<&'a RawValue>,
    /// The command's `{...}` as it came in the frame, when known.
    pub object: Option<&'a str>,
}

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
    pub(super) fn on_command(&mut self, id: u64, cmd: Command<'_>) {
        let Command {
            rid,
            command,
            payload,
            ..
        } = cmd;
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
            self.record_command(id, cmd);
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
        self.on_command(
            id,
            Command {
                rid: &req.request_id,
                command: &req.command,
                payload: raw.as_deref(),
                object: None,
            },
        );
    }

    /// Records a daemon's `command` (history on): its envelope as JSON
    /// text (`object`, the frame's own, when given; else written once)
    /// goes to the cluster's history and, shared, to the event log: one
    /// allocation. A heartbeat's payload is parsed for [`DaemonInfo`].
    fn record_command(&mut self, id: u64, cmd: Command<'_>) {
        let Command {
            rid,
            command,
            payload,
            object,
        } = cmd;
        let Some((cluster, history)) = self.reg(id).map(|r| (r.cluster.clone(), r.history)) else {
            return;
        };
        let json: Arc<str> = match object {
            Some(object) => Arc::from(object),
            None => self.envelope(rid, command, payload),
        };
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
                cluster,
                json: json.clone(),
            });
        }
        push_bounded(
            &mut self.histories[history].commands,
            json,
            self.cfg.history_limit,
        );
    }

    /// A command's envelope written as JSON text ([`write_envelope`]).
    fn envelope(&mut self, rid: &str, command: &str, payload: Option<&RawValue>) -> Arc<str> {
        let mut buf = std::mem::take(&mut self.rec_scratch);
        write_envelope(&mut buf, rid, command, payload.map(RawValue::get));
        // Everything written is UTF-8 (JSON text and escaped strings).
        let json = Arc::from(std::str::from_utf8(&buf).unwrap_or_default());
        self.rec_scratch = buf;
        json
    }

    /// Records a daemon's `message` (history on).
    pub(super) fn record_message(&mut self, id: u64, message: Value) {
        let Some((cluster, history)) = self.reg(id).map(|r| (r.cluster.to_string(), r.history))
        else {
            return;
        };
        let limit = self.cfg.history_limit;
        push_bounded(
            &mut self.histories[history].messages,
            message.clone(),
            limit,
        );
        self.emit(ServerEvent::Message {
            conn: id,
            cluster,
            message,
        });
    }

    /// The index of a cluster's history (made on first use).
    pub(super) fn history_index(&mut self, cluster: &str) -> usize {
        if let Some(&i) = self.history_of.get(cluster) {
            return i;
        }
        self.histories.push(Received::default());
        let i = self.histories.len() - 1;
        self.history_of.insert(cluster.to_owned(), i);
        i
    }

    fn history(&self, cluster: &str) -> Option<&Received> {
        self.history_of.get(cluster).map(|&i| &self.histories[i])
    }

    /// The `message` objects the cluster's daemons sent, in order.
    pub(crate) fn received_messages(&self, cluster: &str) -> Vec<Value> {
        self.history(cluster)
            .map(|r| r.messages.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The `command` envelopes the cluster's daemons sent, as the JSON
    /// texts recorded (shared: parse them off the loop).
    pub(crate) fn received_commands(&self, cluster: &str) -> VecDeque<Arc<str>> {
        self.history(cluster)
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

/// Appends to a history list, dropping the oldest past `limit`.
fn push_bounded<T>(list: &mut VecDeque<T>, item: T, limit: usize) {
    if list.len() >= limit {
        list.pop_front();
    }
    list.push_back(item);
}
