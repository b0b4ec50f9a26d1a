//! The public snapshot of the client's figures, and how it serializes:
//! one JSON object a daemon can log or export in one line (durations as
//! whole microseconds, the uptime as whole milliseconds).

use std::time::Duration;

use serde::{Serialize, Serializer};

/// The client's figures at one moment, from
/// [`ClusterDaemonClient::stats`](crate::ClusterDaemonClient::stats).
///
/// Counters cover the client's whole life (every connection), heartbeats
/// included among the commands. A command that was sent ends as exactly
/// one of `commands_ok`, `commands_rejected`, `commands_timed_out` or
/// `commands_not_ready` (lost in flight), unless it is still in flight or
/// its [`PendingCommand`](crate::PendingCommand) was dropped unwaited for
/// and no reply came. `commands_not_ready` also counts commands refused
/// before anything was sent (not ready), which `commands_sent` does not.
///
/// ```
/// # use volt_daemon_client::*;
/// let client = ClusterDaemonClient::new(ClusterDaemonClientOptions::new(
///     "http://127.0.0.1:8080", "ws://127.0.0.1:8080", DaemonCredentials::new("cluster-1", "pw"),
/// ))?;
/// let _ = client.send_command("echo", None); // not connected: refused at once
/// let stats = client.stats();
/// assert_eq!((stats.commands_sent, stats.commands_not_ready), (0, 1));
/// assert_eq!(stats.uptime, None);
/// let line = serde_json::to_string(&stats).unwrap();
/// assert!(line.contains(r#""commands_not_ready":1"#));
/// # Ok::<(), DaemonClientError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ClientStats {
    /// Commands handed to the connection (heartbeats included).
    pub commands_sent: u64,
    /// Commands the server answered with `ok: true`.
    pub commands_ok: u64,
    /// Commands the server answered with `ok: false` (`COMMAND_REJECTED`).
    pub commands_rejected: u64,
    /// Commands that got no answer within their timeout (`COMMAND_TIMEOUT`).
    pub commands_timed_out: u64,
    /// Commands that failed with `SOCKET_NOT_READY`: refused because the
    /// client was not ready, or in flight when the connection was lost.
    pub commands_not_ready: u64,
    /// Commands awaiting a reply now.
    pub commands_in_flight: usize,
    /// Replies to the server's reverse commands, by status class.
    pub reverse_commands: ReverseCommandStats,
    /// `message` events received.
    pub messages_in: u64,
    /// `message` events sent ([`emit`](crate::ClusterDaemonClient::emit)).
    pub messages_out: u64,
    /// Bytes read from the socket once open (after the WebSocket upgrade).
    pub bytes_in: u64,
    /// Bytes written to the socket once open.
    pub bytes_out: u64,
    /// WebSocket frames read (pings included).
    pub frames_in: u64,
    /// WebSocket frames sent (pongs included).
    pub frames_out: u64,
    /// Registrations after the first of each `connect()`: automatic
    /// reconnections that succeeded.
    pub reconnections: u64,
    /// Reverse commands queued for the handler pool now.
    pub handler_queue_depth: usize,
    /// Events for the callbacks dropped because their queue was full.
    pub events_dropped: u64,
    /// Round trips of the answered commands (`commands_ok` and
    /// `commands_rejected`, heartbeats included): from sending the command
    /// to reading its `command-response` off the socket, before its caller
    /// is woken, so the caller's own scheduling is not in it.
    pub latency: LatencyStats,
    /// How long the current connection has been registered; `None` when
    /// not ready. Serialized as `uptime_ms`.
    #[serde(rename = "uptime_ms", serialize_with = "millis")]
    pub uptime: Option<Duration>,
    /// The control socket URL in use while ready (`control_socket_url` or
    /// one of `socket.fallback_urls`); `None` otherwise.
    pub url: Option<String>,
}

/// Replies to reverse commands, by the class of their status.
///
/// ```
/// # use volt_daemon_client::*;
/// let r = ReverseCommandStats::default();
/// assert_eq!(r.status_2xx + r.status_4xx + r.status_5xx + r.other, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ReverseCommandStats {
    /// 200..=299: the handler's result.
    pub status_2xx: u64,
    /// 400..=499: a handler's own 4xx, or no handler (404 `UNKNOWN_COMMAND`).
    pub status_4xx: u64,
    /// 500..=599: the handler failed (500) or the pool was full (503 `BUSY`).
    pub status_5xx: u64,
    /// Any other status a handler chose.
    pub other: u64,
}

/// Command round-trip latency (sending to reading the answer), from a
/// fixed-size log-linear histogram:
/// each quantile is at most 1/16 above the true value, never below it;
/// `max` is exact. Serialized in whole microseconds (`p50_us`, ...).
///
/// ```
/// # use volt_daemon_client::*;
/// let l = LatencyStats::default();
/// assert_eq!(l.count, 0);
/// assert_eq!(serde_json::to_value(l).unwrap()["p99_us"], 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LatencyStats {
    /// Round trips recorded.
    pub count: u64,
    /// The median.
    #[serde(rename = "p50_us", serialize_with = "micros")]
    pub p50: Duration,
    /// The 90th percentile.
    #[serde(rename = "p90_us", serialize_with = "micros")]
    pub p90: Duration,
    /// The 99th percentile.
    #[serde(rename = "p99_us", serialize_with = "micros")]
    pub p99: Duration,
    /// The slowest.
    #[serde(rename = "max_us", serialize_with = "micros")]
    pub max: Duration,
}

fn micros<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn millis<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_to_one_flat_json_object_with_units_in_the_names() {
        let stats = ClientStats {
            commands_sent: 3,
            latency: LatencyStats {
                count: 3,
                p50: Duration::from_micros(12),
                p90: Duration::from_micros(40),
                p99: Duration::from_micros(90),
                max: Duration::from_micros(95),
            },
            uptime: Some(Duration::from_millis(1500)),
            ..ClientStats::default()
        };
        let v = serde_json::to_value(&stats).unwrap();
        assert_eq!(v["commands_sent"], 3);
        assert_eq!(v["latency"]["p50_us"], 12);
        assert_eq!(v["latency"]["max_us"], 95);
        assert_eq!(v["uptime_ms"], 1500);
        assert_eq!(v["url"], serde_json::Value::Null);
        assert_eq!(v["reverse_commands"]["status_5xx"], 0);
    }
}
