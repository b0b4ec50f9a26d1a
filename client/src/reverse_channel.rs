//! Commands from the server: handlers, their results, and the fixed pool of
//! `volt-handler-N` threads that runs them and sends the replies.

use crate::worker::Worker;
use std::collections::HashMap;
use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::RwLock;
use serde_json::{Map, Value};

use crate::drain::DrainGate;
use crate::error::{DaemonClientError, DaemonClientErrorCode};
use crate::events::EventSink;
use crate::job::{error_reply, Job};
use crate::protocol::envelope::{
    ErrorBody, ReplyBody, ReverseCommand, ReverseResponse, ReverseStream, ReverseStreamEnd,
    VoltEvent,
};
use crate::wire::OutboxError;

/// What a handler returns when it fails.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// Handles one reverse command. Implemented for every matching closure.
///
/// ```
/// use volt_daemon_client::{CommandContext, CommandResult, HandlerError, ReverseChannelHandler};
/// struct ListFiles;
/// impl ReverseChannelHandler for ListFiles {
///     fn handle(&self, _payload: serde_json::Value, _ctx: &CommandContext) -> Result<CommandResult, HandlerError> {
///         Ok(CommandResult::data(serde_json::json!(["a.txt", "b.txt"])))
///     }
/// }
/// ```
pub trait ReverseChannelHandler: Send + Sync + 'static {
    /// Runs the command. `payload` is `Null` when the server sent none.
    fn handle(
        &self,
        payload: Value,
        context: &CommandContext,
    ) -> Result<CommandResult, HandlerError>;
}

impl<F> ReverseChannelHandler for F
where
    F: Fn(Value, &CommandContext) -> Result<CommandResult, HandlerError> + Send + Sync + 'static,
{
    fn handle(
        &self,
        payload: Value,
        context: &CommandContext,
    ) -> Result<CommandResult, HandlerError> {
        self(payload, context)
    }
}

/// What a handler knows about the command it runs.
#[derive(Debug, Clone)]
pub struct CommandContext {
    command: String,
    request_id: String,
}

impl CommandContext {
    /// The command name.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// The server's request id.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }
}

enum ResultBody {
    Empty,
    Data(Value),
    Body(Vec<u8>),
    Stream(Box<dyn Read + Send>),
}

/// A handler's answer: JSON data, bytes, a stream, or nothing, with a
/// status (200) and headers. Data, body and stream exclude each other by
/// construction.
///
/// ```
/// use volt_daemon_client::CommandResult;
/// let r = CommandResult::body(vec![1, 2, 3]).with_status(201).with_header("content-type", "application/octet-stream");
/// assert_eq!(r.status(), 201);
/// let s = CommandResult::stream(std::io::Cursor::new(vec![0u8; 10]));
/// let e = CommandResult::empty().with_status(204);
/// # let _ = (s, e);
/// ```
pub struct CommandResult {
    status: u16,
    headers: Map<String, Value>,
    body: ResultBody,
}

impl std::fmt::Debug for CommandResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.body {
            ResultBody::Empty => "empty",
            ResultBody::Data(_) => "data",
            ResultBody::Body(_) => "body",
            ResultBody::Stream(_) => "stream",
        };
        f.debug_struct("CommandResult")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("kind", &kind)
            .finish()
    }
}

impl CommandResult {
    fn with_body(body: ResultBody) -> Self {
        CommandResult {
            status: 200,
            headers: Map::new(),
            body,
        }
    }

    /// Replies with JSON `data`.
    pub fn data(data: Value) -> Self {
        Self::with_body(ResultBody::Data(data))
    }

    /// Replies with bytes, sent as one binary attachment.
    pub fn body(bytes: Vec<u8>) -> Self {
        Self::with_body(ResultBody::Body(bytes))
    }

    /// Replies with a stream, read to its end in chunks that fit the
    /// server's `maxPayload`.
    pub fn stream(reader: impl Read + Send + 'static) -> Self {
        Self::with_body(ResultBody::Stream(Box::new(reader)))
    }

    /// Replies with status and headers only.
    pub fn empty() -> Self {
        Self::with_body(ResultBody::Empty)
    }

    /// Sets the status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers
            .insert(name.into(), Value::String(value.into()));
        self
    }

    /// The status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The headers, as [`with_header`](Self::with_header) set them.
    ///
    /// ```
    /// use volt_daemon_client::CommandResult;
    /// let r = CommandResult::empty().with_header("x-test", "1");
    /// assert_eq!(r.headers()["x-test"], "1");
    /// assert!(CommandResult::empty().headers().is_empty());
    /// ```
    pub fn headers(&self) -> &Map<String, Value> {
        &self.headers
    }
}

/// Registered handlers, by command name.
#[derive(Default)]
pub(crate) struct Handlers {
    map: RwLock<HashMap<String, Arc<dyn ReverseChannelHandler>>>,
}

impl Handlers {
    pub(crate) fn insert(&self, command: String, handler: Arc<dyn ReverseChannelHandler>) {
        self.map.write().insert(command, handler);
    }

    pub(crate) fn remove(&self, command: &str) {
        self.map.write().remove(command);
    }

    fn get(&self, command: &str) -> Option<Arc<dyn ReverseChannelHandler>> {
        self.map.read().get(command).cloned()
    }
}

/// Stream chunks are at most this big (and never bigger than `maxPayload`).
const MAX_CHUNK: usize = 64 * 1024;

/// The pool's queue and threads.
pub(crate) struct HandlerPool {
    tx: Sender<Job>,
    threads: Vec<Worker>,
    /// Set by `disconnect()`: queued jobs are skipped, not run.
    stopping: Arc<AtomicBool>,
    /// Counts the jobs in flight; refuses new ones while draining.
    gate: Arc<DrainGate>,
}

impl HandlerPool {
    pub(crate) fn spawn(
        threads: usize,
        queue_capacity: usize,
        handlers: Arc<Handlers>,
        events: EventSink,
        reply_timeout: Duration,
        gate: Arc<DrainGate>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(queue_capacity.max(1));
        let stopping = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|i| {
                let (rx, handlers, events) = (rx.clone(), handlers.clone(), events.clone());
                let (stopping, gate) = (stopping.clone(), gate.clone());
                Worker::spawn(format!("volt-handler-{i}"), move || {
                    worker(&rx, &handlers, &events, reply_timeout, &stopping, &gate)
                })
            })
            .collect::<std::io::Result<_>>()?;
        Ok(HandlerPool {
            tx,
            threads,
            stopping,
            gate,
        })
    }

    /// Closes the queue and joins the workers (but the caller, when
    /// `disconnect()` runs inside a handler).
    pub(crate) fn stop(self) {
        self.stopping.store(true, Ordering::Release);
        drop(self.tx);
        self.threads.into_iter().for_each(Worker::join);
    }

    /// Jobs waiting for a handler thread.
    pub(crate) fn queued(&self) -> usize {
        self.tx.len()
    }

    /// A sender for the connection thread.
    pub(crate) fn sender(&self) -> JobSender {
        JobSender {
            tx: self.tx.clone(),
            gate: self.gate.clone(),
        }
    }
}

/// Queues jobs without blocking; a full queue means 503 BUSY.
#[derive(Clone)]
pub(crate) struct JobSender {
    tx: Sender<Job>,
    gate: Arc<DrainGate>,
}

impl JobSender {
    /// Queues `job`, or hands it back when the pool is saturated.
    /// While draining, the job goes to the drain's refusals (503 DRAINING).
    pub(crate) fn offer(&self, job: Job) -> Result<(), Box<Job>> {
        let job = match self.gate.refuse(job) {
            Ok(()) => return Ok(()),
            Err(job) => *job,
        };
        self.gate.started();
        self.tx.try_send(job).map_err(|e| {
            self.gate.finished();
            match e {
                TrySendError::Full(j) | TrySendError::Disconnected(j) => Box::new(j),
            }
        })
    }
}

fn worker(
    rx: &Receiver<Job>,
    handlers: &Handlers,
    events: &EventSink,
    reply_timeout: Duration,
    stopping: &AtomicBool,
    gate: &DrainGate,
) {
    for job in rx {
        if !stopping.load(Ordering::Acquire) {
            run_job(job, handlers, events, reply_timeout);
        }
        gate.finished();
    }
}

fn run_job(job: Job, handlers: &Handlers, events: &EventSink, reply_timeout: Duration) {
    let Job {
        command: cmd,
        outbox,
        namespace,
    } = job;
    let send = |event: VoltEvent| -> Result<(), OutboxError> {
        // Counted before the server can see it; taken back if not sent.
        let status = crate::stats::reply_status(&event);
        status.inspect(|&s| outbox.stats().reverse_replied(s, 1));
        let sent = outbox.send(&event.encode(&namespace), Instant::now() + reply_timeout);
        if let (Some(s), Err(_)) = (status, &sent) {
            outbox.stats().reverse_replied(s, -1);
        }
        sent
    };
    let Some(handler) = handlers.get(&cmd.command) else {
        let msg = format!("no handler for command {}", cmd.command);
        let _ = send(error_reply(&cmd, 404, "UNKNOWN_COMMAND", msg));
        return;
    };
    let ctx = CommandContext {
        command: cmd.command.clone(),
        request_id: cmd.request_id.clone(),
    };
    let payload = cmd.payload.clone().unwrap_or(Value::Null);
    let result = match catch_unwind(AssertUnwindSafe(|| handler.handle(payload, &ctx))) {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => return handler_failed(&cmd, &send, events, format!("handler failed: {e}")),
        Err(panic) => {
            let what = panic_message(&panic);
            return handler_failed(&cmd, &send, events, format!("handler panicked: {what}"));
        }
    };
    let reply = |body| {
        VoltEvent::ReverseResponse(ReverseResponse {
            request_id: cmd.request_id.clone(),
            command: cmd.command.clone(),
            status: result.status,
            headers: result.headers.clone(),
            body,
            error: None,
        })
    };
    let outcome = match result.body {
        ResultBody::Empty => send(reply(ReplyBody::None)),
        ResultBody::Data(d) => send(reply(ReplyBody::Data(d))),
        ResultBody::Body(b) => send(reply(ReplyBody::Body(b))),
        ResultBody::Stream(reader) => match send(reply(ReplyBody::Stream)) {
            Ok(()) => {
                stream_chunks(&cmd, reader, outbox.max_payload(), &send, events);
                Ok(())
            }
            Err(e) => Err(e),
        },
    };
    if let Err(OutboxError::TooLarge { size, max }) = outcome {
        let msg = format!("reply of {size} bytes exceeds the server's maxPayload of {max}");
        handler_failed(&cmd, &send, events, msg);
    } else if let Err(e) = outcome {
        log::debug!("reply to {} not sent: {e:?}", cmd.command);
    }
}

fn handler_failed(
    cmd: &ReverseCommand,
    send: &dyn Fn(VoltEvent) -> Result<(), OutboxError>,
    events: &EventSink,
    message: String,
) {
    events.error(DaemonClientError::new(
        DaemonClientErrorCode::HandlerError,
        format!("reverse command {:?}: {message}", cmd.command),
    ));
    let _ = send(error_reply(cmd, 500, "HANDLER_ERROR", message));
}

fn stream_chunks(
    cmd: &ReverseCommand,
    mut reader: Box<dyn Read + Send>,
    max_payload: usize,
    send: &dyn Fn(VoltEvent) -> Result<(), OutboxError>,
    events: &EventSink,
) {
    let chunk_size = MAX_CHUNK.min(max_payload).max(1);
    let mut seq = 0u64;
    let end = |chunks: u64, error: Option<ErrorBody>| {
        VoltEvent::ReverseStreamEnd(ReverseStreamEnd {
            request_id: cmd.request_id.clone(),
            chunks,
            error,
        })
    };
    loop {
        let mut buf = vec![0u8; chunk_size];
        let read = catch_unwind(AssertUnwindSafe(|| read_full(&mut reader, &mut buf)));
        let n = match read {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                return stream_failed(
                    cmd,
                    seq,
                    format!("read error after {seq} chunks: {e}"),
                    send,
                    events,
                    &end,
                )
            }
            Err(p) => {
                return stream_failed(
                    cmd,
                    seq,
                    format!("stream panicked after {seq} chunks: {}", panic_message(&p)),
                    send,
                    events,
                    &end,
                )
            }
        };
        if n == 0 {
            let _ = send(end(seq, None));
            return;
        }
        buf.truncate(n);
        let chunk = VoltEvent::ReverseStream(ReverseStream {
            request_id: cmd.request_id.clone(),
            seq,
            chunk: buf,
        });
        if send(chunk).is_err() {
            // The connection is gone or stuck: nobody will read the rest.
            return;
        }
        seq += 1;
    }
}

fn stream_failed(
    cmd: &ReverseCommand,
    seq: u64,
    message: String,
    send: &dyn Fn(VoltEvent) -> Result<(), OutboxError>,
    events: &EventSink,
    end: &dyn Fn(u64, Option<ErrorBody>) -> VoltEvent,
) {
    events.error(DaemonClientError::new(
        DaemonClientErrorCode::HandlerError,
        format!("reverse command {:?}: {message}", cmd.command),
    ));
    let _ = send(end(seq, Some(ErrorBody::new("HANDLER_ERROR", message))));
}

/// Fills `buf` as far as the reader allows, so chunks are full-sized
/// except the last.
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if filled > 0 => {
                log::debug!("stream read error after a partial chunk: {e}");
                return Err(e);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
