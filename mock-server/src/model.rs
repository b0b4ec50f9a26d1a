//! The public data types of the mock server: what it reports (daemons,
//! events, replies, frames) and what it can be told (responders, faults,
//! enrollment settings).

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use volt_protocol::envelope::{CommandRequest, ErrorBody};

/// Milliseconds since the Unix epoch, as the admin API reports times.
pub fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One connected (registered) daemon, as `GET /admin/daemons` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonInfo {
    /// The cluster it registered as.
    pub team_cluster_id: String,
    /// The socket.io sid the server gave it (not the Engine.IO sid).
    pub sid: String,
    /// `installedVersion` from its registration (`None` when null or absent).
    pub installed_version: Option<String>,
    /// `client` from its registration.
    pub client: Option<String>,
    /// When it registered, epoch ms.
    pub connected_at: u64,
    /// The subject of its verified client certificate (`CN=...`), when the
    /// server requires them (`--tls-client-ca`); absent from the JSON otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificate_subject: Option<String>,
    /// Heartbeats (`runtime.heartbeat` commands) received on this connection.
    pub heartbeats: u64,
    /// The last heartbeat's payload, `None` when none arrived (or it had none).
    pub last_heartbeat: Option<Value>,
    /// When the last heartbeat arrived, epoch ms.
    pub last_heartbeat_at: Option<u64>,
    /// The server's id for the underlying connection (matches [`ServerEvent`]s).
    #[serde(skip)]
    pub conn: u64,
}

/// How the server answers a daemon's `command` (see `PUT /admin/responders/{command}`).
#[derive(Debug, Clone, PartialEq)]
pub enum Responder {
    /// `ok: true`, with `data` when given.
    Ok {
        /// The reply's `data` (left out when `None`).
        data: Option<Value>,
        /// Wait this long before answering.
        delay: Option<Duration>,
    },
    /// `ok: false` with this error.
    Err {
        /// The reply's `error`.
        error: ErrorBody,
        /// Wait this long before answering.
        delay: Option<Duration>,
    },
    /// Never answer.
    NoReply,
}

impl Responder {
    /// `ok: true` with `data`.
    pub fn ok(data: Value) -> Self {
        Responder::Ok {
            data: Some(data),
            delay: None,
        }
    }

    /// `ok: false` with `code` and `message`.
    pub fn err(code: &str, message: &str) -> Self {
        Responder::Err {
            error: ErrorBody::new(code, message),
            delay: None,
        }
    }

    /// The same answer, sent after `delay`.
    pub fn delayed(self, delay: Duration) -> Self {
        match self {
            Responder::Ok { data, .. } => Responder::Ok {
                data,
                delay: Some(delay),
            },
            Responder::Err { error, .. } => Responder::Err {
                error,
                delay: Some(delay),
            },
            Responder::NoReply => Responder::NoReply,
        }
    }

    /// Reads the admin API's JSON form:
    /// `{"ok":true,"data":…}` | `{"ok":false,"error":{"code","message"}}` |
    /// `{"noReply":true}`, each with an optional `"delayMs":N`.
    ///
    /// ```
    /// use volt_mock_server::Responder;
    /// let r = Responder::from_json(&serde_json::json!({"ok": true, "data": 1})).unwrap();
    /// assert_eq!(r, Responder::ok(serde_json::json!(1)));
    /// assert!(Responder::from_json(&serde_json::json!({"ok": "yes"})).is_err());
    /// ```
    pub fn from_json(v: &Value) -> Result<Self, String> {
        let obj = v.as_object().ok_or("a responder must be a JSON object")?;
        for key in obj.keys() {
            if !["ok", "data", "error", "noReply", "delayMs"].contains(&key.as_str()) {
                return Err(format!("unknown responder field {key:?}"));
            }
        }
        let delay = match obj.get("delayMs") {
            None | Some(Value::Null) => None,
            Some(d) => Some(Duration::from_millis(
                d.as_u64().ok_or("delayMs must be a non-negative integer")?,
            )),
        };
        match (obj.get("noReply"), obj.get("ok")) {
            (Some(Value::Bool(true)), _) => Ok(Responder::NoReply),
            (Some(Value::Bool(false)) | None, Some(Value::Bool(true))) => Ok(Responder::Ok {
                data: obj.get("data").cloned(),
                delay,
            }),
            (Some(Value::Bool(false)) | None, Some(Value::Bool(false))) => {
                let error = obj
                    .get("error")
                    .filter(|e| e.is_object())
                    .ok_or("ok:false needs an error object {code, message}")?;
                let error: ErrorBody = serde_json::from_value(error.clone())
                    .map_err(|e| format!("bad error object: {e}"))?;
                Ok(Responder::Err { error, delay })
            }
            (Some(_), _) => Err("noReply must be a boolean".into()),
            _ => Err("a responder needs \"ok\": true|false or \"noReply\": true".into()),
        }
    }
}

/// The registration rejection fault: every `40` is answered with this.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RejectRegistration {
    /// `data.code` of the `44` (`data` is left out when `None`).
    #[serde(default)]
    pub code: Option<String>,
    /// `message` of the `44` (default `registration rejected`).
    #[serde(default)]
    pub message: Option<String>,
}

/// The fault set (`PUT /admin/faults` replaces it whole). Faults are tied to
/// protocol points, never to wall-clock time.
///
/// ```
/// use volt_mock_server::Faults;
/// let f: Faults = serde_json::from_str(r#"{"refuseConnections":2,"stopPings":true}"#).unwrap();
/// assert_eq!(f.refuse_connections, 2);
/// assert!(serde_json::from_str::<Faults>(r#"{"stopPings":"yes"}"#).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Faults {
    /// Refuse (HTTP 503) the next N WebSocket upgrade attempts on the socket.io path.
    #[serde(default)]
    pub refuse_connections: u32,
    /// Reject every registration with this code and message.
    #[serde(default)]
    pub reject_registration: Option<RejectRegistration>,
    /// Freeze: send no pings, drop no silent client, read nothing from any
    /// connection (live ones too) until cleared.
    #[serde(default)]
    pub stop_pings: bool,
    /// Cut each connection (no close frame) once it has received N frames
    /// from its client; the Nth frame is recorded but not processed.
    #[serde(default)]
    pub drop_after_frames: Option<u64>,
    /// Cut the connection (no close frame, no reply) that sends a `command`
    /// with this name.
    #[serde(default)]
    pub drop_on_command: Option<String>,
}

/// Enrollment settings (`PUT /admin/enrollment`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentSettings {
    /// Valid one-time tokens; each is removed when used.
    pub tokens: Vec<String>,
    /// When set, a successful enrollment rotates the cluster's password to this
    /// and returns it as `daemonPassword`.
    pub rotate_to: Option<String>,
    /// When set, every enrollment fails with this HTTP status.
    pub fail_status: Option<u16>,
}

/// A daemon's whole reply to a reverse command.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReverseReply {
    /// The request id the server chose.
    pub request_id: String,
    /// The command, as the daemon echoed it.
    pub command: String,
    /// The reply's status.
    pub status: u16,
    /// The reply's headers.
    pub headers: Map<String, Value>,
    /// `data`, when the reply carried it (`Some(Null)` for `"data":null`).
    pub data: Option<Value>,
    /// `body`'s bytes, when the reply carried a body.
    pub body: Option<Vec<u8>>,
    /// The stream's chunks concatenated, when the reply was a stream.
    pub stream: Option<Vec<u8>>,
    /// The stream's chunks one by one, in `seq` order of arrival.
    pub stream_chunks: Vec<Vec<u8>>,
    /// `chunks` from the stream's end.
    pub chunks: Option<u64>,
    /// The reply's error, or its stream's end error.
    pub error: Option<ErrorBody>,
}

impl ReverseReply {
    /// The admin API's JSON form: `{"requestId","command","status","headers",
    /// "data"?,"bodyBase64"?,"stream"?,"streamBase64"?,"chunks"?,"error"?}`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("requestId".into(), self.request_id.clone().into());
        m.insert("command".into(), self.command.clone().into());
        m.insert("status".into(), self.status.into());
        m.insert("headers".into(), Value::Object(self.headers.clone()));
        if let Some(d) = &self.data {
            m.insert("data".into(), d.clone());
        }
        if let Some(b) = &self.body {
            m.insert("bodyBase64".into(), b64(b).into());
        }
        if let Some(s) = &self.stream {
            m.insert("stream".into(), true.into());
            m.insert("streamBase64".into(), b64(s).into());
        }
        if let Some(c) = self.chunks {
            m.insert("chunks".into(), c.into());
        }
        if let Some(e) = &self.error {
            m.insert(
                "error".into(),
                serde_json::to_value(e).unwrap_or(Value::Null),
            );
        }
        Value::Object(m)
    }
}

/// Why a call aimed at a daemon failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    /// No live registered connection for that cluster.
    #[error("daemon {0} is not connected")]
    NotConnected(String),
    /// The daemon did not answer in time.
    #[error("no reverse-response within {0:?}")]
    Timeout(Duration),
    /// The daemon's connection ended before it answered.
    #[error("daemon disconnected ({0})")]
    Disconnected(String),
    /// The server is stopped.
    #[error("the mock server is stopped")]
    Stopped,
}

/// One WebSocket data frame, for raw injection and transcripts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawFrame {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
}

impl RawFrame {
    /// The JSON form used by `GET /admin/frames`: `{"type":"text","data":…}`
    /// or `{"type":"binary","data":"<base64>"}`.
    pub fn to_json(&self) -> Value {
        match self {
            RawFrame::Text(t) => serde_json::json!({"type": "text", "data": t}),
            RawFrame::Binary(b) => serde_json::json!({"type": "binary", "data": b64(b)}),
        }
    }
}

/// Which way a recorded frame went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Client to server.
    In,
    /// Server to client.
    Out,
}

/// One recorded frame (only when frame recording is on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameRecord {
    /// The connection it went over.
    pub conn: u64,
    /// The cluster that connection had registered as, when it had.
    pub cluster: Option<String>,
    /// Which way.
    pub dir: Direction,
    /// The frame.
    pub frame: RawFrame,
}

/// Something the server saw or did, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A WebSocket connection was opened (the open packet went out).
    Connected {
        /// Connection id.
        conn: u64,
        /// The Engine.IO sid.
        engine_sid: String,
        /// The peer's address.
        peer: SocketAddr,
    },
    /// An upgrade attempt was refused (fault or per-IP cap).
    ConnectionRefused {
        /// The peer's address.
        peer: SocketAddr,
        /// Why.
        reason: String,
    },
    /// A daemon registered.
    Registered {
        /// Connection id.
        conn: u64,
        /// Its cluster.
        cluster: String,
        /// The socket.io sid given to it.
        sid: String,
        /// Its `installedVersion`.
        installed_version: Option<String>,
        /// Its `client`.
        client: Option<String>,
    },
    /// A registration was answered with `44`.
    RegistrationRejected {
        /// Connection id.
        conn: u64,
        /// The cluster it claimed, when it sent one.
        cluster: Option<String>,
        /// The namespace it tried.
        namespace: String,
        /// `data.code`, when the rejection had one.
        code: Option<String>,
        /// The rejection's message.
        message: String,
    },
    /// A `command` other than `runtime.heartbeat`.
    Command {
        /// Connection id.
        conn: u64,
        /// Its cluster.
        cluster: String,
        /// The envelope.
        request: CommandRequest,
    },
    /// A `runtime.heartbeat` command.
    Heartbeat {
        /// Connection id.
        conn: u64,
        /// Its cluster.
        cluster: String,
        /// Its request id.
        request_id: String,
        /// Its payload.
        payload: Option<Value>,
    },
    /// A `message` from the daemon.
    Message {
        /// Connection id.
        conn: u64,
        /// Its cluster.
        cluster: String,
        /// The message object, as received.
        message: Value,
    },
    /// A reverse command was sent to a daemon.
    ReverseCommandSent {
        /// Connection id.
        conn: u64,
        /// Its cluster.
        cluster: String,
        /// The request id.
        request_id: String,
        /// The command.
        command: String,
    },
    /// A daemon's complete reply to a reverse command.
    ReverseReply {
        /// Connection id.
        conn: u64,
        /// Its cluster.
        cluster: String,
        /// The reply.
        reply: Box<ReverseReply>,
    },
    /// The server kicked a daemon (`41/daemon,`).
    Kicked {
        /// Connection id.
        conn: u64,
        /// Its cluster.
        cluster: String,
    },
    /// The daemon left the namespace (`41/daemon,` from it) while the
    /// connection stays up.
    Unregistered {
        /// Connection id.
        conn: u64,
        /// Its cluster.
        cluster: String,
    },
    /// A connection ended.
    Disconnected {
        /// Connection id.
        conn: u64,
        /// The cluster it was registered as at the end, if any.
        cluster: Option<String>,
        /// Why: `transport close`, `ping timeout`, `server drop`, `kick`, ...
        reason: String,
    },
    /// The client sent something the protocol does not allow.
    ProtocolError {
        /// Connection id.
        conn: u64,
        /// Its cluster, when registered.
        cluster: Option<String>,
        /// What was wrong.
        error: String,
    },
    /// An enrollment request was answered.
    Enrollment {
        /// The cluster in the URL.
        cluster: String,
        /// The HTTP status answered.
        status: u16,
    },
}

impl ServerEvent {
    /// The cluster the event concerns, when it concerns one.
    pub fn cluster(&self) -> Option<&str> {
        match self {
            ServerEvent::Registered { cluster, .. }
            | ServerEvent::Command { cluster, .. }
            | ServerEvent::Heartbeat { cluster, .. }
            | ServerEvent::Message { cluster, .. }
            | ServerEvent::ReverseCommandSent { cluster, .. }
            | ServerEvent::ReverseReply { cluster, .. }
            | ServerEvent::Kicked { cluster, .. }
            | ServerEvent::Unregistered { cluster, .. }
            | ServerEvent::Enrollment { cluster, .. } => Some(cluster),
            ServerEvent::RegistrationRejected { cluster, .. }
            | ServerEvent::Disconnected { cluster, .. }
            | ServerEvent::ProtocolError { cluster, .. } => cluster.as_deref(),
            ServerEvent::Connected { .. } | ServerEvent::ConnectionRefused { .. } => None,
        }
    }
}

/// Counters, for tests and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Live WebSocket connections.
    pub connections: u64,
    /// WebSocket connections accepted since start.
    pub connections_total: u64,
    /// Data frames received.
    pub frames_in: u64,
    /// Data frames sent.
    pub frames_out: u64,
    /// Protocol errors seen.
    pub protocol_errors: u64,
    /// `command`s answered or recorded.
    pub commands: u64,
}
