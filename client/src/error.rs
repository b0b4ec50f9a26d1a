//! Typed errors with the fixed codes of the contract.

use std::fmt;

/// The fixed error codes. `as_str()` gives the wire/TypeScript spelling.
///
/// ```
/// use volt_daemon_client::DaemonClientErrorCode;
/// assert_eq!(DaemonClientErrorCode::CommandTimeout.as_str(), "COMMAND_TIMEOUT");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DaemonClientErrorCode {
    /// The enrollment request failed (transport, TLS, timeout, non-2xx, bad body).
    EnrollmentFailed,
    /// DNS, TCP, TLS, WebSocket upgrade or Engine.IO handshake failed or timed out.
    SocketConnectionFailed,
    /// The server refused the registration (`44`).
    SocketRegistrationFailed,
    /// No answer to a command within its timeout.
    CommandTimeout,
    /// The server answered a command with `ok: false`.
    CommandRejected,
    /// The client is not connected and registered.
    SocketNotReady,
    /// A reverse-channel handler failed or panicked.
    HandlerError,
    /// A fire-and-forget message could not be sent.
    EmitFailed,
    /// An outgoing frame would exceed the server's `maxPayload`.
    PayloadTooLarge,
    /// The server sent something the protocol does not allow.
    ProtocolError,
}

impl DaemonClientErrorCode {
    /// The code as the TypeScript package spells it, e.g. `"ENROLLMENT_FAILED"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EnrollmentFailed => "ENROLLMENT_FAILED",
            Self::SocketConnectionFailed => "SOCKET_CONNECTION_FAILED",
            Self::SocketRegistrationFailed => "SOCKET_REGISTRATION_FAILED",
            Self::CommandTimeout => "COMMAND_TIMEOUT",
            Self::CommandRejected => "COMMAND_REJECTED",
            Self::SocketNotReady => "SOCKET_NOT_READY",
            Self::HandlerError => "HANDLER_ERROR",
            Self::EmitFailed => "EMIT_FAILED",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::ProtocolError => "PROTOCOL_ERROR",
        }
    }
}

impl fmt::Display for DaemonClientErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error of the client: a fixed code, a message saying what went wrong
/// and where, and what the server said when it said something.
///
/// Never carries a password or a token.
///
/// ```
/// use volt_daemon_client::{DaemonClientError, DaemonClientErrorCode};
/// let e = DaemonClientError::new(DaemonClientErrorCode::SocketNotReady, "not connected");
/// assert_eq!(e.to_string(), "SOCKET_NOT_READY: not connected");
/// assert_eq!(e.code(), DaemonClientErrorCode::SocketNotReady);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonClientError {
    code: DaemonClientErrorCode,
    message: String,
    server_code: Option<String>,
    server_message: Option<String>,
    status: Option<u16>,
}

impl DaemonClientError {
    /// An error with a code and a message.
    pub fn new(code: DaemonClientErrorCode, message: impl Into<String>) -> Self {
        DaemonClientError {
            code,
            message: message.into(),
            server_code: None,
            server_message: None,
            status: None,
        }
    }

    /// Adds what the server said (its error code and message).
    pub fn with_server(mut self, code: Option<String>, message: Option<String>) -> Self {
        self.server_code = code.filter(|c| !c.is_empty());
        self.server_message = message.filter(|m| !m.is_empty());
        self
    }

    /// Adds the HTTP status of a failed enrollment.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// The fixed code.
    pub fn code(&self) -> DaemonClientErrorCode {
        self.code
    }

    /// What went wrong, in words.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The server's error code (`COMMAND_REJECTED`, `SOCKET_REGISTRATION_FAILED`,
    /// `ENROLLMENT_FAILED`), when it sent one.
    pub fn server_code(&self) -> Option<&str> {
        self.server_code.as_deref()
    }

    /// The server's error message, when it sent one.
    pub fn server_message(&self) -> Option<&str> {
        self.server_message.as_deref()
    }

    /// The HTTP status of a failed enrollment.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    pub(crate) fn not_ready(why: &str) -> Self {
        Self::new(DaemonClientErrorCode::SocketNotReady, why)
    }

    pub(crate) fn protocol(why: impl fmt::Display) -> Self {
        Self::new(DaemonClientErrorCode::ProtocolError, why.to_string())
    }

    pub(crate) fn connection(why: impl fmt::Display) -> Self {
        Self::new(
            DaemonClientErrorCode::SocketConnectionFailed,
            why.to_string(),
        )
    }

    /// A connect() that a disconnect() ended: both the handle and
    /// enrollment report it, so it lives with the other errors rather than
    /// with either of them.
    pub(crate) fn connect_interrupted() -> Self {
        Self::connection("connect() interrupted by disconnect()")
    }
}

impl fmt::Display for DaemonClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        match (&self.server_code, &self.server_message) {
            (Some(c), Some(m)) => write!(f, " (server: {c}: {m})"),
            (Some(c), None) => write!(f, " (server: {c})"),
            (None, Some(m)) => write!(f, " (server: {m})"),
            (None, None) => Ok(()),
        }
    }
}

impl std::error::Error for DaemonClientError {}
