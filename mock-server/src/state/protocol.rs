//! Engine.IO and Socket.IO: incoming frames, namespaces, registration and
//! the daemon's events.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Map, Value};
use volt_protocol::binary::Complete;
use volt_protocol::envelope::{decode_command_ref, names, VoltEvent};
use volt_protocol::socket::{Packet, PacketType};
use volt_protocol::{DecodeError, Incoming};

use super::commands::Command;
use super::{new_sid, Reg, State};
use crate::model::*;
use crate::wire::command_object;

impl State {
    /// Counts an incoming frame and applies `dropAfterFrames`: `false` when
    /// the session is gone (or was just cut).
    fn frame_in(&mut self, id: u64) -> bool {
        let drop_after = self.faults.drop_after_frames;
        let Some(s) = self.sessions.get_mut(&id) else {
            return false;
        };
        self.stats.frames_in += 1;
        s.frames_in += 1;
        if drop_after.is_some_and(|n| s.frames_in >= n) {
            self.cut(id, "dropAfterFrames fault");
            return false;
        }
        true
    }

    /// An incoming text frame. A registered daemon's plain event on our
    /// namespace (the hot path: `command`) is decoded straight into its
    /// envelope; everything else, and anything the fast path declines or
    /// fails on, goes through the general decoder.
    pub(crate) fn on_text(&mut self, id: u64, text: &str) {
        if self.cfg.record_frames && self.is_live(id) {
            self.record(id, Direction::In, &RawFrame::Text(text.to_owned()));
        }
        // `frame_in` is false for a connection without a live session.
        if !self.frame_in(id) || self.command_fast_path(id, text) {
            return;
        }
        let namespace = &self.cfg.namespace;
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let fast = match s.reg.is_some() {
            true => match s.decoder.event_fast_path(text, namespace) {
                // A message keeps its JSON exactly as it came, and errors are
                // named by the general path: both take it.
                Some(Ok(VoltEvent::Message(_))) | Some(Err(_)) | None => None,
                Some(Ok(event)) => Some(event),
            },
            false => None,
        };
        if let Some(event) = fast {
            return self.on_volt_event(id, event, None);
        }
        let decoded = s.decoder.text(text);
        self.on_decoded(id, decoded);
    }

    /// An incoming binary frame (an attachment of a binary packet).
    pub(crate) fn on_binary(&mut self, id: u64, bytes: Vec<u8>) {
        if !self.is_live(id) {
            return;
        }
        let frame = RawFrame::Binary(bytes);
        self.record(id, Direction::In, &frame);
        if !self.frame_in(id) {
            return;
        }
        let RawFrame::Binary(bytes) = frame else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let decoded = s.decoder.binary(bytes);
        self.on_decoded(id, decoded);
    }

    /// A registered daemon's `command` is read with its payload left raw
    /// (benchmarks send them by the hundred thousand). False when the
    /// frame is not a plain command: the caller's paths take it.
    fn command_fast_path(&mut self, id: u64, text: &str) -> bool {
        let namespace = &self.cfg.namespace;
        let Some(json) = self
            .sessions
            .get_mut(&id)
            .filter(|s| s.reg.is_some())
            .and_then(|s| s.decoder.event_json(text, namespace))
        else {
            return false;
        };
        let Some(req) = decode_command_ref(json) else {
            return false;
        };
        // The history keeps the command object as it came, when it can.
        let object = match self.cfg.record_history {
            true => req.payload.and_then(|p| command_object(json, p.get())),
            false => None,
        };
        let cmd = Command {
            rid: &req.request_id,
            command: &req.command,
            payload: req.payload,
            object,
        };
        self.on_command(id, cmd);
        true
    }

    fn on_decoded(&mut self, id: u64, decoded: Result<Option<Incoming>, DecodeError>) {
        match decoded {
            Err(e) => {
                // socket.io closes the connection on a packet it cannot parse.
                self.protocol_error(id, e.to_string());
                self.close(id, "parse error");
            }
            Ok(None) | Ok(Some(Incoming::Noop)) => {}
            Ok(Some(Incoming::Pong(_))) => self.on_pong(id, Instant::now()),
            Ok(Some(Incoming::Ping(_))) => {
                self.protocol_error(id, "the client sent a ping".into());
                self.close(id, "client ping");
            }
            Ok(Some(Incoming::Close)) => self.close(id, "transport close"),
            Ok(Some(Incoming::Open(_))) => {
                self.protocol_error(id, "the client sent an open packet".into());
            }
            Ok(Some(Incoming::Packet(c))) => self.on_packet(id, c),
        }
    }

    fn on_packet(&mut self, id: u64, complete: Complete) {
        let packet = &complete.packet;
        let ours = packet.namespace == self.cfg.namespace;
        let registered = self.reg(id).is_some();
        match packet.packet_type {
            PacketType::Connect if ours => self.register(id, complete.packet.data),
            PacketType::Connect if packet.namespace == "/" => {
                // The main namespace exists on every socket.io server.
                let text = format!("40{{\"sid\":\"{}\"}}", new_sid());
                self.send_text(id, text);
            }
            PacketType::Connect => {
                let nsp = packet.namespace.clone();
                let body = json!({"message": "Invalid namespace"});
                self.send_packet(id, PacketType::ConnectError, nsp.clone(), Some(body));
                self.emit(ServerEvent::RegistrationRejected {
                    conn: id,
                    cluster: None,
                    namespace: nsp,
                    code: None,
                    message: "Invalid namespace".into(),
                });
            }
            PacketType::Disconnect if ours && registered => {
                if let Some(cluster) = self.unregister(id, "client namespace disconnect") {
                    self.emit(ServerEvent::Unregistered { conn: id, cluster });
                }
            }
            PacketType::Event | PacketType::BinaryEvent if ours && registered => {
                self.on_event(id, complete)
            }
            _ => {
                let state = match registered {
                    true => "registered",
                    false => "not registered",
                };
                let what = format!(
                    "unexpected {:?} packet on {} ({state})",
                    packet.packet_type, packet.namespace,
                );
                self.protocol_error(id, what);
            }
        }
    }

    /// Queues a Socket.IO packet.
    pub(super) fn send_packet(
        &mut self,
        id: u64,
        packet_type: PacketType,
        namespace: String,
        data: Option<Value>,
    ) {
        let mut out = String::from("4");
        Packet::new(packet_type, namespace, data).encode_into(&mut out);
        self.send_text(id, out);
    }

    fn register(&mut self, id: u64, auth: Option<Value>) {
        let ns = self.cfg.namespace.clone();
        if self.reg(id).is_some() {
            self.protocol_error(id, "second CONNECT on a live registration".into());
            self.close(id, "second registration");
            return;
        }
        let verdict =
            crate::admission::check_registration(&self.faults, &self.clusters, auth.as_ref());
        match verdict {
            Ok((cluster, installed_version, client)) => {
                let sid = new_sid();
                let history = self.history_index(&cluster);
                if let Some(s) = self.sessions.get_mut(&id) {
                    s.reg = Some(Reg {
                        cluster: Arc::from(cluster.as_str()),
                        history,
                        info: DaemonInfo {
                            team_cluster_id: cluster.clone(),
                            sid: sid.clone(),
                            installed_version: installed_version.clone(),
                            client: client.clone(),
                            connected_at: epoch_ms(),
                            client_certificate_subject: s.client_subject.clone(),
                            heartbeats: 0,
                            last_heartbeat: None,
                            last_heartbeat_at: None,
                            conn: id,
                        },
                    });
                }
                self.by_cluster.entry(cluster.clone()).or_default().push(id);
                self.emit(ServerEvent::Registered {
                    conn: id,
                    cluster,
                    sid: sid.clone(),
                    installed_version,
                    client,
                });
                self.send_packet(id, PacketType::Connect, ns, Some(json!({ "sid": sid })));
            }
            Err((code, message)) => {
                let mut body = Map::new();
                body.insert("message".into(), message.clone().into());
                if let Some(c) = &code {
                    body.insert("data".into(), json!({ "code": c }));
                }
                let body = Some(Value::Object(body));
                self.send_packet(id, PacketType::ConnectError, ns.clone(), body);
                let claimed = auth
                    .as_ref()
                    .and_then(|a| a.get("teamClusterId"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                self.emit(ServerEvent::RegistrationRejected {
                    conn: id,
                    cluster: claimed,
                    namespace: ns,
                    code,
                    message,
                });
            }
        }
    }

    fn on_event(&mut self, id: u64, complete: Complete) {
        // Keep a message's JSON exactly as it came.
        let raw_message = match &complete.packet.data {
            Some(Value::Array(a)) if a.first().and_then(Value::as_str) == Some(names::MESSAGE) => {
                a.get(1).cloned()
            }
            _ => None,
        };
        match VoltEvent::from_packet(complete) {
            Ok(event) => self.on_volt_event(id, event, raw_message),
            Err(e) => self.protocol_error(id, e.to_string()),
        }
    }

    /// A decoded event from a registered daemon (`raw_message`: a
    /// `message`'s argument exactly as it came, when known).
    fn on_volt_event(&mut self, id: u64, event: VoltEvent, raw_message: Option<Value>) {
        match event {
            VoltEvent::Command(req) => self.on_command_value(id, req),
            VoltEvent::Message(m) => {
                if !self.cfg.record_history {
                    return;
                }
                let message = raw_message
                    .or_else(|| m.to_value().ok())
                    .unwrap_or(Value::Null);
                self.record_message(id, message);
            }
            VoltEvent::ReverseResponse(r) => self.on_reverse_response(id, r),
            VoltEvent::ReverseStream(s) => self.on_reverse_stream(id, s),
            VoltEvent::ReverseStreamEnd(e) => self.on_reverse_stream_end(id, e),
            other => {
                let name = other.name();
                self.protocol_error(id, format!("unexpected event {name:?} from a daemon"));
            }
        }
    }
}
