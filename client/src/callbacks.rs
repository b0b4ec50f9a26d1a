//! Registering what user code the client runs: reverse-command handlers
//! (on `volt-handler-N`) and callbacks (on `volt-events`).

use std::sync::Arc;

use serde_json::Value;

use crate::connection_state::StateChange;
use crate::error::DaemonClientError;
use crate::protocol::message::TeamClusterDaemonMessage;
use crate::reverse_channel::{CommandContext, CommandResult, HandlerError, ReverseChannelHandler};
use crate::ClusterDaemonClient;

impl ClusterDaemonClient {
    /// Registers the handler of a reverse command (replacing an earlier
    /// one). Handlers survive reconnection.
    ///
    /// ```
    /// # use volt_daemon_client::*;
    /// # let client = ClusterDaemonClient::new(ClusterDaemonClientOptions::new(
    /// #     "http://127.0.0.1:8080", "ws://127.0.0.1:8080", DaemonCredentials::new("cluster-1", "pw"),
    /// # )).unwrap();
    /// struct Uptime;
    /// impl ReverseChannelHandler for Uptime {
    ///     fn handle(&self, _payload: serde_json::Value, ctx: &CommandContext) -> Result<CommandResult, HandlerError> {
    ///         Ok(CommandResult::data(serde_json::json!({ "command": ctx.command(), "seconds": 42 })))
    ///     }
    /// }
    /// client.register_handler("uptime", Uptime);
    /// ```
    pub fn register_handler(&self, command: &str, handler: impl ReverseChannelHandler) -> &Self {
        self.shared()
            .handlers
            .insert(command.to_owned(), Arc::new(handler));
        self
    }

    /// Registers a closure as the handler of a reverse command.
    ///
    /// ```
    /// # use volt_daemon_client::*;
    /// # let client = ClusterDaemonClient::new(ClusterDaemonClientOptions::new("http://127.0.0.1:1", "ws://127.0.0.1:1", DaemonCredentials::new("c", "p"))).unwrap();
    /// client.register_handler_fn("echo", |payload, _ctx| Ok(CommandResult::data(payload)));
    /// ```
    pub fn register_handler_fn(
        &self,
        command: &str,
        f: impl Fn(Value, &CommandContext) -> Result<CommandResult, HandlerError>
            + Send
            + Sync
            + 'static,
    ) -> &Self {
        self.register_handler(command, f)
    }

    /// Removes a handler; the command then gets 404 `UNKNOWN_COMMAND`.
    ///
    /// ```
    /// # use volt_daemon_client::*;
    /// # let client = ClusterDaemonClient::new(ClusterDaemonClientOptions::new(
    /// #     "http://127.0.0.1:8080", "ws://127.0.0.1:8080", DaemonCredentials::new("cluster-1", "pw"),
    /// # )).unwrap();
    /// client
    ///     .register_handler_fn("temp", |_, _| Ok(CommandResult::empty()))
    ///     .unregister_handler("temp");
    /// ```
    pub fn unregister_handler(&self, command: &str) -> &Self {
        self.shared().handlers.remove(command);
        self
    }

    /// Called with every message from the server, in order.
    ///
    /// ```
    /// # use volt_daemon_client::*;
    /// # let client = ClusterDaemonClient::new(ClusterDaemonClientOptions::new(
    /// #     "http://127.0.0.1:8080", "ws://127.0.0.1:8080", DaemonCredentials::new("cluster-1", "pw"),
    /// # )).unwrap();
    /// client.on_message(|m| match m {
    ///     TeamClusterDaemonMessage::SessionInput(input) => println!("input for {}", input.session_id),
    ///     other => println!("message {}", other.message_type()),
    /// });
    /// ```
    pub fn on_message(
        &self,
        f: impl Fn(&TeamClusterDaemonMessage) + Send + Sync + 'static,
    ) -> &Self {
        self.shared().callbacks.message.write().push(Arc::new(f));
        self
    }

    /// Called each time the client becomes ready.
    ///
    /// ```
    /// # use volt_daemon_client::*;
    /// # let client = ClusterDaemonClient::new(ClusterDaemonClientOptions::new(
    /// #     "http://127.0.0.1:8080", "ws://127.0.0.1:8080", DaemonCredentials::new("cluster-1", "pw"),
    /// # )).unwrap();
    /// client.on_connected(|| println!("registered"));
    /// ```
    pub fn on_connected(&self, f: impl Fn() + Send + Sync + 'static) -> &Self {
        self.shared().callbacks.connected.write().push(Arc::new(f));
        self
    }

    /// Called on every disconnection with its reason (`io client disconnect`,
    /// `io server disconnect`, `transport close`, `ping timeout`, ...).
    ///
    /// ```
    /// # use volt_daemon_client::*;
    /// # let client = ClusterDaemonClient::new(ClusterDaemonClientOptions::new(
    /// #     "http://127.0.0.1:8080", "ws://127.0.0.1:8080", DaemonCredentials::new("cluster-1", "pw"),
    /// # )).unwrap();
    /// client.on_disconnected(|reason| println!("disconnected: {reason}"));
    /// ```
    pub fn on_disconnected(&self, f: impl Fn(&str) + Send + Sync + 'static) -> &Self {
        self.shared()
            .callbacks
            .disconnected
            .write()
            .push(Arc::new(f));
        self
    }

    /// Called with errors no caller receives (heartbeats, handlers, protocol).
    ///
    /// ```
    /// # use volt_daemon_client::*;
    /// # let client = ClusterDaemonClient::new(ClusterDaemonClientOptions::new(
    /// #     "http://127.0.0.1:8080", "ws://127.0.0.1:8080", DaemonCredentials::new("cluster-1", "pw"),
    /// # )).unwrap();
    /// client.on_error(|e| eprintln!("volt: {e}"));
    /// ```
    pub fn on_error(&self, f: impl Fn(&DaemonClientError) + Send + Sync + 'static) -> &Self {
        self.shared().callbacks.error.write().push(Arc::new(f));
        self
    }

    /// Called with the new password when enrollment rotates it.
    ///
    /// ```
    /// # use volt_daemon_client::*;
    /// # let client = ClusterDaemonClient::new(ClusterDaemonClientOptions::new(
    /// #     "http://127.0.0.1:8080", "ws://127.0.0.1:8080", DaemonCredentials::new("cluster-1", "pw"),
    /// # )).unwrap();
    /// client.on_password_rotated(|new_password| {
    ///     // Persist it: the next start must register with it.
    ///     let _ = std::fs::write("/tmp/volt-daemon-password", new_password);
    /// });
    /// ```
    pub fn on_password_rotated(&self, f: impl Fn(&str) + Send + Sync + 'static) -> &Self {
        self.shared()
            .callbacks
            .password_rotated
            .write()
            .push(Arc::new(f));
        self
    }

    /// Called with each change of [`state`](Self::state): the new state,
    /// the previous one and why, in order, on `volt-events` (with the other
    /// callbacks). `on_connected` and `on_disconnected` still fire as well.
    ///
    /// ```
    /// # use volt_daemon_client::*;
    /// # let client = ClusterDaemonClient::new(ClusterDaemonClientOptions::new(
    /// #     "http://127.0.0.1:8080", "ws://127.0.0.1:8080", DaemonCredentials::new("cluster-1", "pw"),
    /// # )).unwrap();
    /// client.on_state_change(|change| match &change.state {
    ///     ConnectionState::Reconnecting { attempt, delay } => {
    ///         eprintln!("reconnecting (attempt {attempt}) in {delay:?}: {}", change.reason)
    ///     }
    ///     ConnectionState::GaveUp { attempts } => eprintln!("gave up after {attempts}"),
    ///     other => eprintln!("{other:?}"),
    /// });
    /// ```
    pub fn on_state_change(&self, f: impl Fn(&StateChange) + Send + Sync + 'static) -> &Self {
        self.shared()
            .callbacks
            .state_change
            .write()
            .push(Arc::new(f));
        self
    }
}
