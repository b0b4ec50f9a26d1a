//! A recorder of a client's callbacks: every event in order, with the
//! time it ran, and waits with a deadline over a cursor.

use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use parking_lot::Mutex;
use volt_daemon_client::{
    ClusterDaemonClient, DaemonClientError, DaemonClientErrorCode, TeamClusterDaemonMessage,
};

use crate::Deadline;

/// One client callback, as recorded.
#[derive(Debug, Clone)]
pub enum ClientEvent {
    /// `on_connected`.
    Connected,
    /// `on_disconnected`, with its reason.
    Disconnected(String),
    /// `on_error`.
    Error(DaemonClientError),
    /// `on_message`.
    Message(TeamClusterDaemonMessage),
    /// `on_password_rotated`, with the new password.
    PasswordRotated(String),
}

impl ClientEvent {
    /// Whether it is `Connected`.
    pub fn is_connected(&self) -> bool {
        matches!(self, ClientEvent::Connected)
    }
    /// Whether it is a `Disconnected`, whatever the reason.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, ClientEvent::Disconnected(_))
    }
    /// Whether it is a `Disconnected` with this reason.
    pub fn is_disconnected_with(&self, reason: &str) -> bool {
        matches!(self, ClientEvent::Disconnected(r) if r == reason)
    }
    /// Whether it is an `Error` with this code.
    pub fn is_error(&self, code: DaemonClientErrorCode) -> bool {
        matches!(self, ClientEvent::Error(e) if e.code() == code)
    }
    /// Whether it is a `Message`.
    pub fn is_message(&self) -> bool {
        matches!(self, ClientEvent::Message(_))
    }
}

/// A wait on a [`ClientRecorder`] that ran out of time.
#[derive(Debug, Clone)]
pub struct ClientWaitError {
    /// What was waited for.
    pub what: String,
    /// Every event recorded so far.
    pub seen: Vec<ClientEvent>,
}

impl std::error::Error for ClientWaitError {}

impl std::fmt::Display for ClientWaitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no {} client event in time; seen: {:?}",
            self.what, self.seen
        )
    }
}

/// Records every callback of a client in order, with the time it ran.
/// Waits look past a cursor, which moves past what they find: successive
/// waits see successive events.
///
/// ```
/// use std::time::Duration;
/// use volt_daemon_client::ClusterDaemonClient;
/// use volt_testkit::{client_options, ClientRecorder, MockServer, DEFAULT_CLUSTER, DEFAULT_PASSWORD};
/// let server = MockServer::start();
/// let client = ClusterDaemonClient::new(client_options(&server, DEFAULT_CLUSTER, DEFAULT_PASSWORD)).unwrap();
/// let rec = ClientRecorder::attach(&client);
/// client.connect().unwrap();
/// rec.wait_connected(Duration::from_secs(5)).unwrap();
/// server.drop_transport(DEFAULT_CLUSTER).unwrap(); // cut without a close frame
/// assert_eq!(rec.wait_disconnected(Duration::from_secs(5)).unwrap(), "transport close");
/// rec.wait_connected(Duration::from_secs(5)).unwrap(); // it reconnects by itself
/// client.disconnect();
/// assert!(rec.count(|e| e.is_connected()) >= 2);
/// ```
#[derive(Debug)]
pub struct ClientRecorder {
    rx: Receiver<(Instant, ClientEvent)>,
    seen: Mutex<Vec<(Instant, ClientEvent)>>,
    cursor: Mutex<usize>,
}

impl ClientRecorder {
    /// Registers the recording callbacks on `client`.
    pub fn attach(client: &ClusterDaemonClient) -> ClientRecorder {
        let (tx, rx) = crossbeam_channel::unbounded();
        let push = move |e: ClientEvent| {
            let _ = tx.send((Instant::now(), e));
        };
        let p = push.clone();
        client.on_connected(move || p(ClientEvent::Connected));
        let p = push.clone();
        client.on_disconnected(move |r| p(ClientEvent::Disconnected(r.to_owned())));
        let p = push.clone();
        client.on_error(move |e| p(ClientEvent::Error(e.clone())));
        let p = push.clone();
        client.on_message(move |m| p(ClientEvent::Message(m.clone())));
        client.on_password_rotated(move |pw| push(ClientEvent::PasswordRotated(pw.to_owned())));
        ClientRecorder {
            rx,
            seen: Mutex::new(Vec::new()),
            cursor: Mutex::new(0),
        }
    }

    /// Waits for the first event past the cursor that `pred` accepts and
    /// moves the cursor past it; returns it with the time it ran.
    pub fn wait_for(
        &self,
        what: &str,
        mut pred: impl FnMut(&ClientEvent) -> bool,
        deadline: impl Into<Deadline>,
    ) -> Result<(Instant, ClientEvent), ClientWaitError> {
        let deadline = deadline.into().0;
        let mut cursor = self.cursor.lock();
        loop {
            {
                let mut seen = self.seen.lock();
                seen.extend(self.rx.try_iter());
                if let Some(i) = (*cursor..seen.len()).find(|&i| pred(&seen[i].1)) {
                    *cursor = i + 1;
                    return Ok(seen[i].clone());
                }
                *cursor = seen.len();
            }
            match self.rx.recv_deadline(deadline) {
                Ok(e) => self.seen.lock().push(e),
                Err(_) => {
                    return Err(ClientWaitError {
                        what: what.into(),
                        seen: self.events(),
                    })
                }
            }
        }
    }

    /// Waits for the next `Connected`.
    pub fn wait_connected(&self, deadline: impl Into<Deadline>) -> Result<(), ClientWaitError> {
        self.wait_for("connected", ClientEvent::is_connected, deadline)
            .map(|_| ())
    }

    /// Waits for the next `Disconnected`; returns its reason.
    pub fn wait_disconnected(
        &self,
        deadline: impl Into<Deadline>,
    ) -> Result<String, ClientWaitError> {
        match self.wait_for("disconnected", ClientEvent::is_disconnected, deadline)? {
            (_, ClientEvent::Disconnected(r)) => Ok(r),
            _ => unreachable!("the predicate accepts only Disconnected"),
        }
    }

    /// Waits for the next `Error` with `code`.
    pub fn wait_error(
        &self,
        code: DaemonClientErrorCode,
        deadline: impl Into<Deadline>,
    ) -> Result<DaemonClientError, ClientWaitError> {
        match self.wait_for("error", |e| e.is_error(code), deadline)? {
            (_, ClientEvent::Error(e)) => Ok(e),
            _ => unreachable!("the predicate accepts only Error"),
        }
    }

    /// Waits for the next `Message`.
    pub fn wait_message(
        &self,
        deadline: impl Into<Deadline>,
    ) -> Result<TeamClusterDaemonMessage, ClientWaitError> {
        match self.wait_for("message", ClientEvent::is_message, deadline)? {
            (_, ClientEvent::Message(m)) => Ok(m),
            _ => unreachable!("the predicate accepts only Message"),
        }
    }

    /// Watches for `window`: an event past the cursor that `pred` accepts
    /// is an error. The cursor moves past everything seen.
    pub fn expect_none(
        &self,
        what: &str,
        window: Duration,
        mut pred: impl FnMut(&ClientEvent) -> bool,
    ) -> Result<(), Box<ClientEvent>> {
        match self.wait_for(what, &mut pred, window) {
            Ok((_, e)) => Err(Box::new(e)),
            Err(_) => Ok(()),
        }
    }

    /// Every event so far, in order.
    pub fn events(&self) -> Vec<ClientEvent> {
        let mut seen = self.seen.lock();
        seen.extend(self.rx.try_iter());
        seen.iter().map(|(_, e)| e.clone()).collect()
    }

    /// How many events so far `pred` accepts.
    pub fn count(&self, pred: impl Fn(&ClientEvent) -> bool) -> usize {
        self.events().iter().filter(|e| pred(e)).count()
    }
}
