//! The payload of the `message` event, both directions: a JSON object whose
//! string `type` says what it is. Unknown types are kept whole, so new server
//! message types never break an old daemon.

use serde::de::{Deserializer, Error as _};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

macro_rules! message_types {
    ($( $(#[$doc:meta])* $variant:ident = $tag:literal {
        $( $(#[$fattr:meta])* $field:ident : $ty:ty ),* $(,)?
    } )*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
            #[serde(rename_all = "camelCase")]
            pub struct $variant {
                $( $(#[$fattr])* pub $field: $ty, )*
                /// Fields this version does not know, kept as they came.
                #[serde(flatten)]
                pub extra: Map<String, Value>,
            }
        )*

        /// A fire-and-forget message, either direction (the `message` event).
        ///
        /// Serializing gives exactly the wire object; deserializing never
        /// fails on an object with a string `type` (unknown types and known
        /// types with fields of the wrong shape become [`Other`](Self::Other)).
        ///
        /// ```
        /// use volt_protocol::message::TeamClusterDaemonMessage;
        /// use serde_json::json;
        /// let m: TeamClusterDaemonMessage =
        ///     serde_json::from_value(json!({"type":"tunnel-close","tunnelId":"t1"})).unwrap();
        /// assert!(matches!(m, TeamClusterDaemonMessage::TunnelClose(ref t) if t.tunnel_id == "t1"));
        /// let other: TeamClusterDaemonMessage =
        ///     serde_json::from_value(json!({"type":"brand-new","x":1})).unwrap();
        /// assert_eq!(other.message_type(), "brand-new");
        /// assert_eq!(serde_json::to_value(&other).unwrap(), json!({"type":"brand-new","x":1}));
        /// ```
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        pub enum TeamClusterDaemonMessage {
            $( $(#[$doc])* $variant($variant), )*
            /// A message of a type this version does not know, as raw JSON.
            Other(Value),
        }

        impl TeamClusterDaemonMessage {
            /// The wire `type` of this message.
            pub fn message_type(&self) -> &str {
                match self {
                    $( Self::$variant(_) => $tag, )*
                    Self::Other(v) => v.get("type").and_then(Value::as_str).unwrap_or(""),
                }
            }

            /// The wire object.
            pub fn to_value(&self) -> Result<Value, serde_json::Error> {
                let (tag, body) = match self {
                    $( Self::$variant(m) => ($tag, serde_json::to_value(m)?), )*
                    Self::Other(v) => return Ok(v.clone()),
                };
                let Value::Object(fields) = body else {
                    return Err(<serde_json::Error as serde::de::Error>::custom("message body is not an object"));
                };
                let mut out = Map::with_capacity(fields.len() + 1);
                out.insert("type".into(), Value::String(tag.into()));
                out.extend(fields.into_iter().filter(|(k, _)| k != "type"));
                Ok(Value::Object(out))
            }

            /// Reads a wire object. Fails only when `value` is not an object
            /// with a string `type`.
            pub fn from_value(value: Value) -> Result<Self, serde_json::Error> {
                let tag = match value.get("type") {
                    Some(Value::String(t)) => t.clone(),
                    Some(_) => return Err(<serde_json::Error as serde::de::Error>::custom("message `type` is not a string")),
                    None if value.is_object() => return Err(<serde_json::Error as serde::de::Error>::custom("message has no `type`")),
                    None => return Err(<serde_json::Error as serde::de::Error>::custom("message is not an object")),
                };
                let typed = match tag.as_str() {
                    $( $tag => without_type(&value)
                        .and_then(|v| serde_json::from_value::<$variant>(v).ok())
                        .map(Self::$variant), )*
                    _ => None,
                };
                Ok(typed.unwrap_or(Self::Other(value)))
            }
        }
    };
}

fn without_type(value: &Value) -> Option<Value> {
    let mut obj = value.as_object()?.clone();
    obj.shift_remove("type");
    Some(Value::Object(obj))
}

message_types! {
    /// `session-open`: open a terminal session.
    SessionOpen = "session-open" {
        /// The session's id.
        session_id: String,
        /// Terminal width in columns.
        cols: u32,
        /// Terminal height in rows.
        rows: u32,
        /// The command to run, when not the default shell.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        command: Option<String>,
    }
    /// `session-input`: keystrokes for a session.
    SessionInput = "session-input" {
        /// The session's id.
        session_id: String,
        /// The bytes, base64.
        chunk_base64: String,
    }
    /// `session-data`: output of a session.
    SessionData = "session-data" {
        /// The session's id.
        session_id: String,
        /// The bytes, base64.
        chunk_base64: String,
    }
    /// `session-resize`: the terminal changed size.
    SessionResize = "session-resize" {
        /// The session's id.
        session_id: String,
        /// Terminal width in columns.
        cols: u32,
        /// Terminal height in rows.
        rows: u32,
    }
    /// `session-close`: the session ended.
    SessionClose = "session-close" {
        /// The session's id.
        session_id: String,
        /// Why, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    }
    /// `tunnel-open`: open a TCP tunnel.
    TunnelOpen = "tunnel-open" {
        /// The tunnel's id.
        tunnel_id: String,
        /// Target host.
        host: String,
        /// Target port.
        port: u16,
    }
    /// `tunnel-data`: bytes through a tunnel.
    TunnelData = "tunnel-data" {
        /// The tunnel's id.
        tunnel_id: String,
        /// The bytes, base64.
        chunk_base64: String,
    }
    /// `tunnel-state`: a tunnel changed state.
    TunnelState = "tunnel-state" {
        /// The tunnel's id.
        tunnel_id: String,
        /// Its new state.
        state: TunnelStatus,
        /// What went wrong, for `error`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    }
    /// `tunnel-close`: close a tunnel.
    TunnelClose = "tunnel-close" {
        /// The tunnel's id.
        tunnel_id: String,
    }
    /// `exposure-snapshot`: the full list of exposures.
    ExposureSnapshot = "exposure-snapshot" {
        /// The exposures, as objects.
        exposures: Vec<Map<String, Value>>,
    }
}

/// The states a tunnel reports in `tunnel-state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TunnelStatus {
    /// Being opened.
    Opening,
    /// Open.
    Open,
    /// Closed.
    Closed,
    /// Failed; see the message's `error`.
    Error,
}

impl Serialize for TeamClusterDaemonMessage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value()
            .map_err(<S::Error as serde::ser::Error>::custom)?
            .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for TeamClusterDaemonMessage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::from_value(Value::deserialize(deserializer)?).map_err(D::Error::custom)
    }
}
