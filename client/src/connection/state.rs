//! The connection's pure state machine: what an inbound packet means in
//! the current phase (registering, serving, or refused), the registration,
//! its rejection and its deadline, repeated reverse-command ids, and the
//! 503 reply of a full handler pool. It does no I/O and reads no clock (the
//! time is an argument): it returns what to do, and the reader does it.
//!
//! Phases: `Registering` goes to `Serving` on the server's `40`, or to
//! `Refused` on its `44` or at the registration deadline; nothing leaves
//! `Serving` or `Refused` (a session ends through [`Action::End`], and the
//! next connection has a new `State`). While serving, a second `40` or a
//! `44` is something the contract does not allow: a `PROTOCOL_ERROR` for
//! `on_error`, dropped, and the session goes on.

use std::collections::{HashSet, VecDeque};
use std::time::Instant;

use serde_json::Value;

use crate::error::{DaemonClientError, DaemonClientErrorCode};
use crate::job::error_reply;
use crate::protocol::binary::Complete;
use crate::protocol::envelope::{CommandResponse, Outgoing, ReverseCommand, VoltEvent};
use crate::protocol::message::TeamClusterDaemonMessage;
use crate::protocol::socket::PacketType;
use crate::protocol::Incoming;

/// Why a live session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// `disconnect()`.
    Stopped,
    /// The server sent `41`: no reconnect.
    Kicked,
    /// Transport loss or protocol failure: reconnect.
    Lost(&'static str),
}

impl End {
    /// The reason given to `on_disconnected`.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            End::Stopped => "io client disconnect",
            End::Kicked => "io server disconnect",
            End::Lost(r) => r,
        }
    }
}

/// Where the connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// `40` sent, awaiting the server's `40` or `44` until the deadline.
    Registering,
    /// Registered: commands, events and reverse commands flow.
    Serving,
    /// The server refused the registration (or never answered it): the
    /// connection is to be closed; what it still reads is ignored.
    Refused(DaemonClientError),
}

/// What the reader must do about an inbound packet.
#[derive(Debug)]
pub(crate) enum Action {
    /// Nothing.
    None,
    /// Answer an Engine.IO ping with this text; the ping window restarts.
    Pong(String),
    /// The registration is decided (accepted or refused):
    /// [`State::registration`] says which. Stop this turn's reading.
    Settled,
    /// The session is over.
    End(End),
    /// A reply, for its command's waiter.
    Complete(CommandResponse),
    /// A reverse command, for the handler pool ([`State::busy_reply`] when
    /// the pool is full).
    Dispatch(ReverseCommand),
    /// A message, for `on_message`.
    Message(TeamClusterDaemonMessage),
    /// An error for `on_error`; the session goes on.
    Report(DaemonClientError),
}

/// The state of one connection.
pub(crate) struct State {
    phase: Phase,
    /// When `Registering` gives up.
    deadline: Instant,
    namespace: String,
    /// Reverse-command request ids seen on this connection: a repeated one
    /// is refused, so each id gets exactly one reply.
    reverse_ids: RecentIds,
}

impl State {
    /// A connection that has sent its registration to `namespace`, to be
    /// answered by `deadline`.
    pub(crate) fn new(namespace: &str, deadline: Instant) -> Self {
        State {
            phase: Phase::Registering,
            deadline,
            namespace: namespace.to_owned(),
            reverse_ids: RecentIds::default(),
        }
    }

    #[cfg(test)]
    pub(crate) fn phase(&self) -> &Phase {
        &self.phase
    }

    /// Whether commands, events and reverse commands flow.
    pub(crate) fn is_serving(&self) -> bool {
        self.phase == Phase::Serving
    }

    /// The registration's outcome once decided: `None` while registering.
    pub(crate) fn registration(&self) -> Option<Result<(), DaemonClientError>> {
        match &self.phase {
            Phase::Registering => None,
            Phase::Serving => Some(Ok(())),
            Phase::Refused(e) => Some(Err(e.clone())),
        }
    }

    /// When the poll must wake for the registration deadline, if it still
    /// runs.
    pub(crate) fn registration_deadline(&self) -> Option<Instant> {
        (self.phase == Phase::Registering).then_some(self.deadline)
    }

    /// The time is `now`: a registration unanswered by its deadline is
    /// refused.
    pub(crate) fn on_tick(&mut self, now: Instant) -> Action {
        if self.phase == Phase::Registering && now >= self.deadline {
            self.phase = Phase::Refused(DaemonClientError::connection(
                "registration got no answer within connect_timeout",
            ));
            return Action::Settled;
        }
        Action::None
    }

    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    /// A decoded Engine.IO packet.
    pub(crate) fn on_incoming(&mut self, incoming: Incoming) -> Action {
        match incoming {
            Incoming::Ping(data) => Action::Pong(format!("3{data}")),
            Incoming::Pong(_) | Incoming::Noop => Action::None,
            Incoming::Close => Action::End(End::Lost("transport close")),
            Incoming::Open(_) => Action::Report(DaemonClientError::protocol(
                "a second Engine.IO open packet",
            )),
            Incoming::Packet(complete) => self.on_packet(complete),
        }
    }

    fn on_packet(&mut self, complete: Complete) -> Action {
        match self.phase {
            Phase::Registering => self.on_packet_registering(&complete),
            Phase::Serving => self.on_packet_serving(complete),
            Phase::Refused(_) => Action::None,
        }
    }

    /// A packet before the server answered the registration: only its
    /// answer (or a kick) counts.
    fn on_packet_registering(&mut self, complete: &Complete) -> Action {
        let packet = &complete.packet;
        let ours = packet.namespace == self.namespace;
        match packet.packet_type {
            // A server refusing the namespace answers on the main one.
            PacketType::ConnectError => {
                self.phase = Phase::Refused(rejection(packet.data.as_ref()));
                Action::Settled
            }
            PacketType::Connect if ours => {
                self.phase = Phase::Serving;
                Action::Settled
            }
            PacketType::Disconnect if ours => Action::End(End::Kicked),
            _ if !ours => foreign(&packet.namespace),
            other => Action::Report(DaemonClientError::protocol(format!(
                "unexpected {other:?} packet during registration"
            ))),
        }
    }

    /// A packet while serving.
    fn on_packet_serving(&mut self, complete: Complete) -> Action {
        let packet = &complete.packet;
        if packet.namespace != self.namespace {
            return foreign(&packet.namespace);
        }
        match packet.packet_type {
            PacketType::Event | PacketType::BinaryEvent => match VoltEvent::from_packet(complete) {
                Ok(event) => self.on_event(event),
                Err(e) => Action::Report(DaemonClientError::protocol(e)),
            },
            PacketType::Disconnect => Action::End(End::Kicked),
            PacketType::Connect => Action::Report(DaemonClientError::protocol(
                "a second registration answer (CONNECT) on a registered connection: dropped",
            )),
            PacketType::ConnectError => Action::Report(DaemonClientError::protocol(
                "a registration refusal (CONNECT_ERROR) on a registered connection: dropped",
            )),
            other => Action::Report(DaemonClientError::protocol(format!(
                "unexpected {other:?} packet"
            ))),
        }
    }

    /// A VOLT event on our namespace, while serving.
    pub(crate) fn on_event(&mut self, event: VoltEvent) -> Action {
        match event {
            VoltEvent::CommandResponse(r) => Action::Complete(r),
            VoltEvent::ReverseCommand(cmd) if !self.reverse_ids.insert(&cmd.request_id) => {
                Action::Report(DaemonClientError::protocol(format!(
                    "reverse-command {:?} repeats requestId {:?}: dropped (it has its reply)",
                    cmd.command, cmd.request_id
                )))
            }
            VoltEvent::ReverseCommand(cmd) => Action::Dispatch(cmd),
            VoltEvent::Message(m) => Action::Message(m),
            other => Action::Report(DaemonClientError::protocol(format!(
                "the server sent a {:?} event, which only daemons send",
                other.name()
            ))),
        }
    }

    /// The reply to a reverse command the full handler pool cannot take.
    pub(crate) fn busy_reply(&self, cmd: &ReverseCommand) -> Outgoing {
        error_reply(cmd, 503, "BUSY", "the handler pool is saturated".into())
            .encode(&self.namespace)
    }
}

/// The report for a packet on a namespace that is not ours.
fn foreign(namespace: &str) -> Action {
    Action::Report(DaemonClientError::protocol(format!(
        "packet for namespace {namespace:?} dropped"
    )))
}

/// The error for a `44`: the server's message and `data.code`.
fn rejection(data: Option<&Value>) -> DaemonClientError {
    let message = match data {
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => v.get("message").and_then(Value::as_str).map(str::to_owned),
        None => None,
    };
    let code = data
        .and_then(|v| v.get("data"))
        .and_then(|d| d.get("code"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    DaemonClientError::new(
        DaemonClientErrorCode::SocketRegistrationFailed,
        "the server refused the registration",
    )
    .with_server(code, message)
}

/// The last [`RecentIds::CAPACITY`] ids, oldest forgotten first.
#[derive(Default)]
struct RecentIds {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl RecentIds {
    const CAPACITY: usize = 4096;

    /// Records `id`; false when it was already there.
    fn insert(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() == Self::CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.set.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::protocol::{Decoder, Limits};

    /// Feeds one Engine.IO text frame.
    fn feed(state: &mut State, text: &str) -> Action {
        match Decoder::new(Limits::default())
            .text(text)
            .expect("well formed")
        {
            Some(incoming) => state.on_incoming(incoming),
            None => Action::None,
        }
    }

    /// A state registering until a deadline far away.
    fn registering() -> State {
        State::new("/daemon", Instant::now() + Duration::from_secs(3600))
    }

    fn serving() -> State {
        let mut state = registering();
        assert!(matches!(
            feed(&mut state, r#"40/daemon,{"sid":"s"}"#),
            Action::Settled
        ));
        state
    }

    /// The refusal's error, once refused.
    fn refusal(state: &State) -> DaemonClientError {
        match state.registration() {
            Some(Err(e)) => e,
            other => panic!("not refused: {other:?}"),
        }
    }

    fn reverse(id: &str) -> String {
        format!(
            r#"42/daemon,["reverse-command",{{"requestId":"{id}","command":"ls","payload":null}}]"#
        )
    }

    #[test]
    fn registration_is_accepted_by_a_connect_on_our_namespace() {
        let mut state = registering();
        assert_eq!(state.phase(), &Phase::Registering);
        assert_eq!(state.registration(), None);
        assert!(!state.is_serving());
        assert!(matches!(
            feed(&mut state, r#"40/daemon,{"sid":"s"}"#),
            Action::Settled
        ));
        assert_eq!(state.phase(), &Phase::Serving);
        assert_eq!(state.registration(), Some(Ok(())));
        assert!(state.is_serving());
        assert_eq!(state.registration_deadline(), None);
    }

    #[test]
    fn a_second_registration_ack_while_serving_is_a_protocol_error_and_serving_goes_on() {
        let mut state = serving();
        let Action::Report(e) = feed(&mut state, r#"40/daemon,{"sid":"t"}"#) else {
            panic!("not reported")
        };
        assert_eq!(e.code(), DaemonClientErrorCode::ProtocolError);
        assert_eq!(state.phase(), &Phase::Serving);
        // Still serving: a reply after it is routed.
        let reply = r#"42/daemon,["command-response",{"requestId":"q1","ok":true}]"#;
        assert!(matches!(feed(&mut state, reply), Action::Complete(_)));
    }

    #[test]
    fn a_connect_error_while_serving_is_a_protocol_error_not_a_refusal() {
        let mut state = serving();
        let text = r#"44/daemon,{"message":"late","data":{"code":"AUTH_FAILED"}}"#;
        let Action::Report(e) = feed(&mut state, text) else {
            panic!("not reported")
        };
        assert_eq!(e.code(), DaemonClientErrorCode::ProtocolError);
        assert_eq!(state.registration(), Some(Ok(())));
        // On another namespace: a foreign packet, dropped.
        assert!(matches!(
            feed(&mut state, r#"44{"message":"no"}"#),
            Action::Report(_)
        ));
        assert_eq!(state.phase(), &Phase::Serving);
    }

    #[test]
    fn a_connect_error_rejects_with_the_servers_code_and_message() {
        let mut state = registering();
        let text = r#"44/daemon,{"message":"bad password","data":{"code":"AUTH_FAILED"}}"#;
        assert!(matches!(feed(&mut state, text), Action::Settled));
        let e = refusal(&state);
        assert_eq!(e.code(), DaemonClientErrorCode::SocketRegistrationFailed);
        assert_eq!(e.server_code(), Some("AUTH_FAILED"));
        assert_eq!(e.server_message(), Some("bad password"));
        // On the main namespace too (a server refusing the namespace).
        let mut state = registering();
        assert!(matches!(
            feed(&mut state, r#"44{"message":"no"}"#),
            Action::Settled
        ));
        assert_eq!(refusal(&state).server_message(), Some("no"));
        assert_eq!(refusal(&state).server_code(), None);
    }

    #[test]
    fn a_refused_connection_ignores_what_it_still_reads() {
        let mut state = registering();
        feed(&mut state, r#"44/daemon,{"message":"no"}"#);
        assert!(matches!(
            feed(&mut state, r#"40/daemon,{"sid":"s"}"#),
            Action::None
        ));
        assert!(matches!(feed(&mut state, &reverse("r1")), Action::None));
        assert_eq!(refusal(&state).server_message(), Some("no"));
    }

    #[test]
    fn an_unanswered_registration_is_refused_at_its_deadline_only() {
        let start = Instant::now();
        let deadline = start + Duration::from_secs(20);
        let mut state = State::new("/daemon", deadline);
        assert_eq!(state.registration_deadline(), Some(deadline));
        assert!(matches!(
            state.on_tick(deadline - Duration::from_millis(1)),
            Action::None
        ));
        assert_eq!(state.registration(), None);
        assert!(matches!(state.on_tick(deadline), Action::Settled));
        let e = refusal(&state);
        assert_eq!(e.code(), DaemonClientErrorCode::SocketConnectionFailed);
        assert!(e.to_string().contains("connect_timeout"), "{e}");
        assert_eq!(state.registration_deadline(), None);
        // Ticks decide nothing more, and none while serving.
        assert!(matches!(state.on_tick(deadline), Action::None));
        let mut state = serving();
        assert!(matches!(
            state.on_tick(Instant::now() + Duration::from_secs(7200)),
            Action::None
        ));
        assert!(state.is_serving());
    }

    #[test]
    fn events_during_registration_are_reported_not_routed() {
        let mut state = registering();
        assert!(matches!(
            feed(&mut state, &reverse("r1")),
            Action::Report(_)
        ));
        assert_eq!(state.phase(), &Phase::Registering);
    }

    #[test]
    fn a_kick_during_registration_ends_the_session() {
        let mut state = registering();
        assert!(matches!(
            feed(&mut state, "41/daemon,"),
            Action::End(End::Kicked)
        ));
    }

    #[test]
    fn pings_are_answered_and_a_disconnect_is_a_kick() {
        let mut state = serving();
        assert!(matches!(feed(&mut state, "2probe"), Action::Pong(p) if p == "3probe"));
        assert!(matches!(
            feed(&mut state, "41/daemon,"),
            Action::End(End::Kicked)
        ));
        assert!(matches!(
            feed(&mut state, "1"),
            Action::End(End::Lost("transport close"))
        ));
    }

    #[test]
    fn serving_routes_replies_reverse_commands_and_messages() {
        let mut state = serving();
        let reply = r#"42/daemon,["command-response",{"requestId":"q1","ok":true,"data":1}]"#;
        assert!(matches!(feed(&mut state, reply), Action::Complete(r) if r.request_id == "q1"));
        assert!(
            matches!(feed(&mut state, &reverse("r1")), Action::Dispatch(c) if c.request_id == "r1")
        );
        let message = r#"42/daemon,["message",{"type":"hello"}]"#;
        assert!(
            matches!(feed(&mut state, message), Action::Message(m) if m.message_type() == "hello")
        );
    }

    #[test]
    fn a_repeated_reverse_command_id_is_refused_once_seen() {
        let mut state = serving();
        assert!(matches!(
            feed(&mut state, &reverse("r1")),
            Action::Dispatch(_)
        ));
        assert!(matches!(
            feed(&mut state, &reverse("r1")),
            Action::Report(_)
        ));
        assert!(matches!(
            feed(&mut state, &reverse("r2")),
            Action::Dispatch(_)
        ));
    }

    #[test]
    fn recent_ids_forget_the_oldest_beyond_capacity() {
        let mut ids = RecentIds::default();
        for i in 0..=RecentIds::CAPACITY {
            assert!(ids.insert(&i.to_string()));
        }
        assert!(ids.insert("0"), "the oldest was forgotten");
        assert!(!ids.insert(&RecentIds::CAPACITY.to_string()));
    }

    #[test]
    fn packets_for_another_namespace_are_dropped() {
        let mut state = serving();
        let text = r#"42/other,["message",{"type":"hello"}]"#;
        assert!(matches!(feed(&mut state, text), Action::Report(_)));
    }

    #[test]
    fn a_full_pool_answers_503_busy_on_our_namespace() {
        let mut state = serving();
        let Action::Dispatch(cmd) = feed(&mut state, &reverse("r9")) else {
            panic!("not dispatched")
        };
        let out = state.busy_reply(&cmd);
        assert!(
            out.text.starts_with(r#"42/daemon,["reverse-response","#),
            "{}",
            out.text
        );
        assert!(out.text.contains(r#""status":503"#), "{}", out.text);
        assert!(out.text.contains(r#""BUSY""#), "{}", out.text);
        assert!(out.text.contains(r#""r9""#), "{}", out.text);
    }

    #[test]
    fn events_only_daemons_send_are_reported() {
        let mut state = serving();
        let text = r#"42/daemon,["command",{"requestId":"q","command":"x"}]"#;
        assert!(matches!(feed(&mut state, text), Action::Report(_)));
    }
}
