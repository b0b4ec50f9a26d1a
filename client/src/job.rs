//! A reverse command to answer, and the answer for one that nothing ran:
//! what the three that answer reverse commands share (the handler pool,
//! the connection's 503 `BUSY`, the drain's 503 `DRAINING`). Apart from the
//! pool so that the drain, which the pool consults, need not import it.

use serde_json::Map;

use crate::protocol::envelope::{ErrorBody, ReplyBody, ReverseCommand, ReverseResponse, VoltEvent};
use crate::wire::Outbox;

/// A reverse command and the connection its reply must go to.
pub(crate) struct Job {
    pub(crate) command: ReverseCommand,
    pub(crate) outbox: Outbox,
    pub(crate) namespace: String,
}

/// The reply to a reverse command for which nothing ran.
pub(crate) fn error_reply(
    cmd: &ReverseCommand,
    status: u16,
    code: &str,
    message: String,
) -> VoltEvent {
    VoltEvent::ReverseResponse(ReverseResponse {
        request_id: cmd.request_id.clone(),
        command: cmd.command.clone(),
        status,
        headers: Map::new(),
        body: ReplyBody::None,
        error: Some(ErrorBody::new(code, message)),
    })
}
