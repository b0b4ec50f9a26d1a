//! The event loop: one thread owns every WebSocket connection and all of the
//! server's state. Other threads (the admin API, the testkit, TLS handshakes)
//! talk to it by sending closures over a bounded channel and waking it.

use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use crossbeam_channel::{Receiver, Sender};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use parking_lot::Mutex;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};
use volt_protocol::binary::Complete;
use volt_protocol::envelope::{
    decode_command_ref, names, CommandRequest, ErrorBody, ReplyBody, ReverseCommand,
    ReverseResponse, ReverseStreamEnd, VoltEvent,
};
use volt_protocol::socket::{Packet, PacketType};
use volt_protocol::{DecodeError, Decoder, Incoming, Limits};

use crate::config::ServerConfig;
use crate::events::{EventLog, Logged};
use crate::head;
use crate::model::*;
use crate::stream::{Stream, Transport};
use crate::timers::{Timer, TimerKind};
use crate::wire::{command_response_frame, command_response_prefix, write_envelope, ReplyData};
use volt_protocol::id_hash::IdMap;

const LISTENER: Token = Token(0);
/// The command name of a daemon's heartbeat.
const HEARTBEAT: &str = "runtime.heartbeat";
const WAKER: Token = Token(1);
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// Most HTTP (admin, enrollment, TLS handshake) threads at once.
pub(crate) const MAX_HTTP_THREADS: usize = 512;

/// A request to the loop.
pub(crate) type Call = Box<dyn FnOnce(&mut Core) + Send>;

/// What the loop shares with the other threads.
pub(crate) struct Shared {
    pub config: ServerConfig,
    pub local_addr: SocketAddr,
    pub events: EventLog,
    pub stats: Mutex<Stats>,
    pub calls: Sender<Call>,
    pub waker: Waker,
    pub stopping: AtomicBool,
    pub tls: Option<crate::tls::TlsAcceptor>,
    pub http_active: AtomicUsize,
    /// HTTP threads: a clone of their socket (to cut it on shutdown) and the handle.
    pub http_threads: Mutex<Vec<(Option<TcpStream>, JoinHandle<()>)>>,
}

impl Shared {
    /// Runs `call` on the loop. `false` when the loop is gone.
    pub(crate) fn send(&self, call: Call) -> bool {
        if self.stopping.load(AtomicOrdering::Acquire) {
            return false;
        }
        if self.calls.send(call).is_err() {
            return false;
        }
        self.waker.wake().is_ok()
    }

    pub(crate) fn spawn_http(
        self: &Arc<Self>,
        sock: Option<TcpStream>,
        f: impl FnOnce() + Send + 'static,
    ) {
        let shared = self.clone();
        shared.http_active.fetch_add(1, AtomicOrdering::AcqRel);
        let handle = std::thread::Builder::new()
            .name("volt-mock-http".into())
            .spawn(move || {
                f();
                shared.http_active.fetch_sub(1, AtomicOrdering::AcqRel);
            });
        match handle {
            Ok(h) => {
                let mut threads = self.http_threads.lock();
                threads.retain(|(_, h)| !h.is_finished());
                threads.push((sock, h));
            }
            Err(e) => {
                self.http_active.fetch_sub(1, AtomicOrdering::AcqRel);
                log::error!("cannot spawn an HTTP thread: {e}");
            }
        }
    }
}

fn new_sid() -> String {
    let bytes: [u8; 15] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

struct Reg {
    /// Shared with every history entry of this connection (no copy each).
    cluster: Arc<str>,
    sid: String,
    installed_version: Option<String>,
    client: Option<String>,
    connected_at: u64,
    heartbeats: u64,
    last_heartbeat: Option<Value>,
    last_heartbeat_at: Option<u64>,
}

struct WsConn {
    ws: WebSocket<Stream>,
    decoder: Decoder,
    reg: Option<Reg>,
    next_ping: Instant,
    pong_deadline: Option<Instant>,
    frames_in: u64,
    /// The Socket.IO session ended (`Disconnected` logged); data is ignored.
    ended: bool,
    /// Our close frame went out (or theirs came): nothing more is written.
    closing: bool,
    dirty: bool,
}

enum ConnKind {
    Head { stream: TcpStream, buf: Vec<u8> },
    Ws(Box<WsConn>),
}

struct Conn {
    peer: SocketAddr,
    kind: ConnKind,
}

struct Pending {
    conn: u64,
    cluster: String,
    reply: Sender<Result<ReverseReply, DispatchError>>,
    response: Option<ReverseResponse>,
    chunks: Vec<Vec<u8>>,
    end: Option<ReverseStreamEnd>,
}

#[derive(Default)]
pub(crate) struct Received {
    pub messages: VecDeque<Value>,
    /// Each request's envelope as JSON text ([`write_envelope`]), shared
    /// with the event log; [`parse_envelope`] turns one into the JSON the
    /// admin API and [`ServerHandle`](crate::ServerHandle) show.
    pub commands: VecDeque<Arc<str>>,
}

/// All state of the server, owned by the loop thread.
pub(crate) struct Core {
    pub shared: Arc<Shared>,
    registry: Registry,
    conns: ConnMap,
    next_id: u64,
    timers: BinaryHeap<Timer>,
    timer_seq: u64,
    pub clusters: HashMap<String, String>,
    pub enrollment: EnrollmentSettings,
    pub responders: HashMap<String, Responder>,
    pub faults: Faults,
    by_cluster: HashMap<String, Vec<u64>>,
    pub received: HashMap<String, Received>,
    pending: HashMap<String, Pending>,
    pub frames: VecDeque<FrameRecord>,
    per_ip: HashMap<IpAddr, usize>,
    events: Vec<Logged>,
    stats: Stats,
    to_read: Vec<u64>,
    dirty: Vec<u64>,
    ws_config: WebSocketConfig,
    limits: Limits,
    /// [`command_response_prefix`] of our namespace.
    response_prefix: String,
    /// Reused by [`command_response_frame`].
    scratch: Vec<u8>,
    /// Reused by [`write_envelope`].
    rec_scratch: Vec<u8>,
}

/// Starts the loop thread.
pub(crate) fn start(
    config: ServerConfig,
    tls: Option<crate::tls::TlsAcceptor>,
) -> io::Result<(Arc<Shared>, JoinHandle<()>)> {
    let std_listener = std::net::TcpListener::bind(config.listen)?;
    std_listener.set_nonblocking(true)?;
    let local_addr = std_listener.local_addr()?;
    let mut listener = mio::net::TcpListener::from_std(std_listener);
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let waker = Waker::new(poll.registry(), WAKER)?;
    let (tx, rx) = crossbeam_channel::bounded::<Call>(65_536);
    let history = config.history_limit;
    let shared = Arc::new(Shared {
        local_addr,
        events: EventLog::new(history),
        stats: Mutex::new(Stats::default()),
        calls: tx,
        waker,
        stopping: AtomicBool::new(false),
        tls,
        http_active: AtomicUsize::new(0),
        http_threads: Mutex::new(Vec::new()),
        config,
    });
    let cfg = &shared.config;
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(64 * 1024)
        .max_write_buffer_size(64 * 1024 * 1024 + 2 * cfg.max_payload)
        .max_message_size(Some(cfg.max_payload))
        .max_frame_size(Some(cfg.max_payload));
    let core = Core {
        registry: poll.registry().try_clone()?,
        conns: HashMap::default(),
        next_id: 2,
        timers: BinaryHeap::new(),
        timer_seq: 0,
        clusters: cfg.clusters.iter().cloned().collect(),
        enrollment: EnrollmentSettings {
            tokens: cfg.enrollment_tokens.clone(),
            rotate_to: cfg.rotate_password.clone(),
            fail_status: None,
        },
        responders: HashMap::new(),
        faults: Faults::default(),
        by_cluster: HashMap::new(),
        received: HashMap::new(),
        pending: HashMap::new(),
        frames: VecDeque::new(),
        per_ip: HashMap::new(),
        events: Vec::new(),
        stats: Stats::default(),
        to_read: Vec::new(),
        dirty: Vec::new(),
        ws_config,
        limits: Limits {
            max_frame_bytes: cfg.max_payload,
            ..Limits::default()
        },
        response_prefix: command_response_prefix(&cfg.namespace),
        scratch: Vec::new(),
        rec_scratch: Vec::new(),
        shared: shared.clone(),
    };
    let handle = std::thread::Builder::new()
        .name("volt-mock-loop".into())
        .spawn(move || run(core, poll, listener, rx))?;
    Ok((shared, handle))
}

fn run(mut core: Core, mut poll: Poll, mut listener: mio::net::TcpListener, rx: Receiver<Call>) {
    let mut events = Events::with_capacity(1024);
    loop {
        let timeout = core.next_timeout();
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                log::error!("poll failed: {e}");
                break;
            }
        }
        for ev in events.iter() {
            match ev.token() {
                LISTENER => core.accept(&mut listener),
                WAKER => {}
                Token(id) => {
                    let id = id as u64;
                    if ev.is_writable() {
                        core.on_writable(id);
                    }
                    if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                        core.on_readable(id, !ev.is_read_closed() && !ev.is_error());
                    }
                }
            }
        }
        while let Ok(call) = rx.try_recv() {
            call(&mut core);
        }
        core.fire_timers(Instant::now());
        while let Some(id) = core.to_read.pop() {
            core.on_readable(id, false);
        }
        // Events first: a client that reacts to a frame (say, the ack of
        // its registration) then always finds the event recorded.
        core.shared.events.extend(&mut core.events);
        core.flush_dirty();
        core.publish();
        if core.shared.stopping.load(AtomicOrdering::Acquire) {
            break;
        }
    }
    // Run what was queued (their reply channels then see the stop).
    while let Ok(call) = rx.try_recv() {
        call(&mut core);
    }
    core.shutdown_all();
    core.publish();
    core.shared.events.close();
}

type ConnMap = IdMap<u64, Conn>;

/// The WebSocket connection `id` (borrowing only the connection table).
fn ws_in(conns: &mut ConnMap, id: u64) -> Option<&mut WsConn> {
    match conns.get_mut(&id) {
        Some(Conn {
            kind: ConnKind::Ws(w),
            ..
        }) => Some(w),
        _ => None,
    }
}

fn ws_error_is_would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if io.kind() == io::ErrorKind::WouldBlock)
}

impl Core {
    fn cfg(&self) -> &ServerConfig {
        &self.shared.config
    }

    fn emit(&mut self, e: ServerEvent) {
        self.events.push(Logged::Event(e));
    }

    fn publish(&mut self) {
        self.shared.events.extend(&mut self.events);
        *self.shared.stats.lock() = self.stats;
    }

    fn add_timer(&mut self, at: Instant, conn: u64, kind: TimerKind) {
        self.timer_seq += 1;
        self.timers.push(Timer {
            at,
            seq: self.timer_seq,
            conn,
            kind,
        });
    }

    fn next_timeout(&self) -> Option<Duration> {
        if !self.to_read.is_empty() {
            return Some(Duration::ZERO);
        }
        self.timers.peek().map(|t| {
            t.at.saturating_duration_since(Instant::now())
                .min(Duration::from_secs(3600))
        })
    }

    fn ws(&mut self, id: u64) -> Option<&mut WsConn> {
        ws_in(&mut self.conns, id)
    }

    fn cluster_of(&self, id: u64) -> Option<String> {
        match self.conns.get(&id) {
            Some(Conn {
                kind: ConnKind::Ws(w),
                ..
            }) => w.reg.as_ref().map(|r| r.cluster.to_string()),
            _ => None,
        }
    }

    /// The cluster a connection registered as, shared (no copy).
    fn cluster_arc(&self, id: u64) -> Option<Arc<str>> {
        match self.conns.get(&id) {
            Some(Conn {
                kind: ConnKind::Ws(w),
                ..
            }) => w.reg.as_ref().map(|r| r.cluster.clone()),
            _ => None,
        }
    }

    // ------------------------------------------------------------------
    // Accepting and routing

    fn accept(&mut self, listener: &mut mio::net::TcpListener) {
        loop {
            let (stream, peer) = match listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: leave it for the next wake.
                    log::warn!("accept failed: {e}");
                    return;
                }
            };
            let stream: TcpStream = stream.into();
            let _ = stream.set_nodelay(true);
            let count = self.per_ip.get(&peer.ip()).copied().unwrap_or(0);
            if count >= self.cfg().max_connections_per_ip {
                log::warn!("refusing {peer}: connection cap per IP reached");
                self.emit(ServerEvent::ConnectionRefused {
                    peer,
                    reason: "connection cap per IP reached".into(),
                });
                let _ = stream.shutdown(Shutdown::Both);
                continue;
            }
            if self.shared.http_active.load(AtomicOrdering::Acquire) >= MAX_HTTP_THREADS
                && self.shared.tls.is_some()
            {
                let _ = stream.shutdown(Shutdown::Both);
                continue;
            }
            if let Some(acceptor) = self.shared.tls.clone() {
                let shared = self.shared.clone();
                let clone = stream.try_clone().ok();
                self.shared.spawn_http(clone, move || {
                    crate::http::serve_tls(shared, acceptor, stream, peer)
                });
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            if let Err(e) = self.registry.register(
                &mut SourceFd(&stream.as_raw_fd()),
                Token(id as usize),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                log::warn!("cannot register {peer}: {e}");
                continue;
            }
            *self.per_ip.entry(peer.ip()).or_insert(0) += 1;
            self.conns.insert(
                id,
                Conn {
                    peer,
                    kind: ConnKind::Head {
                        stream,
                        buf: Vec::new(),
                    },
                },
            );
            self.add_timer(Instant::now() + HEAD_TIMEOUT, id, TimerKind::HeadTimeout);
        }
    }

    fn read_head(&mut self, id: u64) {
        let Some(Conn {
            kind: ConnKind::Head { stream, buf },
            ..
        }) = self.conns.get_mut(&id)
        else {
            return;
        };
        let mut eof = false;
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.len() > head::MAX_HEAD {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        let parsed = head::parse_head(buf);
        let too_big = buf.len() > head::MAX_HEAD;
        match parsed {
            Ok(Some(h)) => {
                let ws_key = h.ws_key(&self.cfg().path).map(str::to_owned);
                match ws_key {
                    Some(key) => {
                        let Some(conn) = self.conns.remove(&id) else {
                            return;
                        };
                        let ConnKind::Head { stream, buf } = conn.kind else {
                            return;
                        };
                        let leftover = buf[h.len..].to_vec();
                        self.upgrade(id, conn.peer, Transport::Plain(stream), &key, leftover);
                    }
                    None => self.hand_to_http(id),
                }
            }
            Ok(None) if too_big => self.reject_raw(id, 431, "request head too large"),
            Ok(None) if eof => self.remove_conn(id),
            Ok(None) => {}
            Err(msg) => self.reject_raw(id, 400, &msg),
        }
    }

    /// Answers a connection still in the head state and closes it.
    fn reject_raw(&mut self, id: u64, status: u16, message: &str) {
        if let Some(Conn {
            kind: ConnKind::Head { stream, .. },
            ..
        }) = self.conns.get_mut(&id)
        {
            let _ = stream.write_all(&head::json_response(status, &json!({ "message": message })));
        }
        self.remove_conn(id);
    }

    fn hand_to_http(&mut self, id: u64) {
        if self.shared.http_active.load(AtomicOrdering::Acquire) >= MAX_HTTP_THREADS {
            return self.reject_raw(id, 503, "too many concurrent HTTP requests");
        }
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        let ConnKind::Head { stream, buf } = conn.kind else {
            return;
        };
        let _ = self.registry.deregister(&mut SourceFd(&stream.as_raw_fd()));
        self.dec_ip(conn.peer.ip());
        if stream.set_nonblocking(false).is_err() {
            return;
        }
        let shared = self.shared.clone();
        let clone = stream.try_clone().ok();
        let peer = conn.peer;
        self.shared.spawn_http(clone, move || {
            crate::http::serve_plain(shared, stream, buf, peer)
        });
    }

    fn dec_ip(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// Takes over a TLS stream whose upgrade request a handshake thread read.
    pub(crate) fn adopt_tls(
        &mut self,
        tls: crate::tls::TlsStream,
        peer: SocketAddr,
        key: String,
        leftover: Vec<u8>,
    ) {
        let count = self.per_ip.get(&peer.ip()).copied().unwrap_or(0);
        if count >= self.cfg().max_connections_per_ip {
            self.emit(ServerEvent::ConnectionRefused {
                peer,
                reason: "connection cap per IP reached".into(),
            });
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        if self
            .registry
            .register(
                &mut SourceFd(&tls.get_ref().as_raw_fd()),
                Token(id as usize),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            return;
        }
        *self.per_ip.entry(peer.ip()).or_insert(0) += 1;
        self.upgrade(id, peer, Transport::Tls(Box::new(tls)), &key, leftover);
        // TLS may hold decrypted bytes no readiness event will announce.
        self.to_read.push(id);
    }

    /// Turns a registered connection into a WebSocket: 101, then the open packet.
    fn upgrade(
        &mut self,
        id: u64,
        peer: SocketAddr,
        transport: Transport,
        key: &str,
        leftover: Vec<u8>,
    ) {
        if self.faults.refuse_connections > 0 {
            self.faults.refuse_connections -= 1;
            let mut transport = transport;
            let resp = head::json_response(
                503,
                &json!({"code": 503, "message": "connection refused (refuseConnections fault)"}),
            );
            let _ = match &mut transport {
                Transport::Plain(s) => s.write_all(&resp),
                Transport::Tls(s) => s.write_all(&resp),
            };
            let tcp = transport.tcp();
            let _ = self.registry.deregister(&mut SourceFd(&tcp.as_raw_fd()));
            let _ = tcp.shutdown(Shutdown::Both);
            self.dec_ip(peer.ip());
            self.emit(ServerEvent::ConnectionRefused {
                peer,
                reason: "refuseConnections fault".into(),
            });
            return;
        }
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        let has_leftover = !leftover.is_empty();
        let ws = WebSocket::from_partially_read(
            Stream::new(transport, response.into_bytes()),
            leftover,
            Role::Server,
            Some(self.ws_config),
        );
        let now = Instant::now();
        let engine_sid = new_sid();
        let interval = self.cfg().ping_interval;
        self.conns.insert(
            id,
            Conn {
                peer,
                kind: ConnKind::Ws(Box::new(WsConn {
                    ws,
                    decoder: Decoder::new(self.limits.clone()),
                    reg: None,
                    next_ping: now + interval,
                    pong_deadline: None,
                    frames_in: 0,
                    ended: false,
                    closing: false,
                    dirty: false,
                })),
            },
        );
        self.stats.connections += 1;
        self.stats.connections_total += 1;
        let open = format!(
            "0{{\"sid\":\"{engine_sid}\",\"upgrades\":[],\"pingInterval\":{},\"pingTimeout\":{},\"maxPayload\":{}}}",
            interval.as_millis(),
            self.cfg().ping_timeout.as_millis(),
            self.cfg().max_payload
        );
        self.send_text(id, open);
        self.emit(ServerEvent::Connected {
            conn: id,
            engine_sid,
            peer,
        });
        self.add_timer(now + interval, id, TimerKind::Heartbeat);
        if has_leftover {
            self.to_read.push(id);
        }
    }

    // ------------------------------------------------------------------
    // I/O

    fn on_writable(&mut self, id: u64) {
        if let Some(w) = self.ws(id) {
            if !w.dirty {
                w.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    /// `may_skip`: the event allows skipping the last read (`Stream::arm_read`).
    fn on_readable(&mut self, id: u64, may_skip: bool) {
        let frozen = self.faults.stop_pings;
        match self.conns.get_mut(&id).map(|c| &mut c.kind) {
            Some(ConnKind::Head { .. }) => self.read_head(id),
            Some(ConnKind::Ws(w)) if !frozen => {
                w.ws.get_mut().arm_read(may_skip);
                self.read_ws(id)
            }
            _ => {}
        }
    }

    fn read_ws(&mut self, id: u64) {
        loop {
            let Some(w) = self.ws(id) else { return };
            let closing = w.ended;
            let msg = match w.ws.read() {
                Ok(m) => m,
                Err(e) if ws_error_is_would_block(&e) => break,
                Err(tungstenite::Error::Capacity(e)) => {
                    if !closing {
                        self.protocol_error(id, format!("frame over maxPayload: {e}"));
                        self.end_session(id, "transport error (frame over maxPayload)");
                    }
                    self.close_conn(
                        id,
                        Some(CloseFrame {
                            code: CloseCode::Size,
                            reason: "frame over maxPayload".into(),
                        }),
                    );
                    return;
                }
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    self.end_session(id, "transport close");
                    self.remove_conn(id);
                    return;
                }
                Err(e) => {
                    if !closing {
                        let msg = e.to_string();
                        let is_io = matches!(e, tungstenite::Error::Io(_));
                        if !is_io {
                            self.protocol_error(id, format!("WebSocket error: {msg}"));
                        }
                        self.end_session(id, "transport error");
                    }
                    self.remove_conn(id);
                    return;
                }
            };
            if closing {
                continue;
            }
            match msg {
                Message::Text(t) => self.on_text(id, t.as_str()),
                Message::Binary(b) => self.on_frame(id, RawFrame::Binary(b.to_vec())),
                Message::Close(_) => {
                    // tungstenite queued the close reply; the next read ends it.
                    self.end_session(id, "transport close");
                    if let Some(w) = self.ws(id) {
                        w.closing = true;
                    }
                    self.add_timer(Instant::now() + CLOSE_LINGER, id, TimerKind::CloseLinger);
                }
                _ => {}
            }
            // tungstenite may have a pong or close reply to send.
            self.mark_dirty(id);
        }
    }

    fn flush_dirty(&mut self) {
        while let Some(id) = self.dirty.pop() {
            let Some(w) = self.ws(id) else { continue };
            w.dirty = false;
            match w.ws.flush() {
                Ok(()) => {}
                Err(e) if ws_error_is_would_block(&e) => {}
                Err(tungstenite::Error::ConnectionClosed) => {
                    // Both close frames are through.
                    self.end_session(id, "transport close");
                    self.remove_conn(id);
                }
                Err(_) => {
                    self.end_session(id, "transport error");
                    self.remove_conn(id);
                }
            }
        }
    }

    fn mark_dirty(&mut self, id: u64) {
        if let Some(w) = ws_in(&mut self.conns, id) {
            if !w.dirty {
                w.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    fn record(&mut self, id: u64, dir: Direction, frame: &RawFrame) {
        if !self.cfg().record_frames {
            return;
        }
        if self.frames.len() >= self.cfg().history_limit {
            self.frames.pop_front();
        }
        let cluster = self.cluster_of(id);
        self.frames.push_back(FrameRecord {
            conn: id,
            cluster,
            dir,
            frame: frame.clone(),
        });
    }

    pub(crate) fn send_frame(&mut self, id: u64, frame: RawFrame) {
        self.record(id, Direction::Out, &frame);
        let Some(w) = ws_in(&mut self.conns, id) else {
            return;
        };
        if w.closing {
            return;
        }
        let msg = match frame {
            RawFrame::Text(t) => Message::text(t),
            RawFrame::Binary(b) => Message::binary(b),
        };
        // Buffered by tungstenite (it writes through only past its write
        // buffer size); `flush_dirty` flushes once per wake.
        let failure = match w.ws.write(msg) {
            Ok(()) => None,
            Err(e) if ws_error_is_would_block(&e) => None,
            Err(tungstenite::Error::WriteBufferFull(_)) => {
                log::warn!("connection {id}: write buffer full, dropping it");
                Some("write buffer full")
            }
            Err(_) => Some("transport error"),
        };
        if let Some(reason) = failure {
            self.end_session(id, reason);
            self.remove_conn(id);
            return;
        }
        if !w.dirty {
            w.dirty = true;
            self.dirty.push(id);
        }
        self.stats.frames_out += 1;
    }

    fn send_text(&mut self, id: u64, text: String) {
        self.send_frame(id, RawFrame::Text(text));
    }

    /// Sends a WebSocket close frame (or nothing, with `None` meaning an
    /// empty close frame) and lets the connection linger until the client
    /// closes or [`CLOSE_LINGER`] passes.
    fn close_conn(&mut self, id: u64, frame: Option<CloseFrame>) {
        let Some(w) = self.ws(id) else { return };
        if w.closing {
            return;
        }
        w.closing = true;
        let _ = w.ws.close(frame);
        let _ = w.ws.flush();
        self.add_timer(Instant::now() + CLOSE_LINGER, id, TimerKind::CloseLinger);
    }

    /// Forgets a connection: deregisters it and cuts the TCP connection
    /// (no close frame).
    fn remove_conn(&mut self, id: u64) {
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        let tcp = match &conn.kind {
            ConnKind::Head { stream, .. } => stream,
            ConnKind::Ws(w) => {
                self.stats.connections = self.stats.connections.saturating_sub(1);
                w.ws.get_ref().tcp()
            }
        };
        let _ = self.registry.deregister(&mut SourceFd(&tcp.as_raw_fd()));
        let _ = tcp.shutdown(Shutdown::Both);
        self.dec_ip(conn.peer.ip());
    }

    /// The Socket.IO session of a connection ends (unregister, fail its
    /// pending reverse commands, log `Disconnected`). Idempotent.
    fn end_session(&mut self, id: u64, reason: &str) {
        let Some(w) = self.ws(id) else { return };
        if w.ended {
            return;
        }
        w.ended = true;
        let reg = w.reg.take();
        let cluster = reg.map(|r| r.cluster.to_string());
        if let Some(c) = &cluster {
            self.unlink(c, id);
        }
        self.fail_pending(id, reason);
        self.emit(ServerEvent::Disconnected {
            conn: id,
            cluster,
            reason: reason.into(),
        });
    }

    fn unlink(&mut self, cluster: &str, id: u64) {
        if let Some(v) = self.by_cluster.get_mut(cluster) {
            v.retain(|c| *c != id);
            if v.is_empty() {
                self.by_cluster.remove(cluster);
            }
        }
    }

    fn fail_pending(&mut self, id: u64, reason: &str) {
        let ids: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.conn == id)
            .map(|(k, _)| k.clone())
            .collect();
        for rid in ids {
            if let Some(p) = self.pending.remove(&rid) {
                let _ = p
                    .reply
                    .send(Err(DispatchError::Disconnected(reason.into())));
            }
        }
    }

    /// Cuts a connection without a close frame.
    pub(crate) fn drop_conn(&mut self, id: u64, reason: &str) {
        self.end_session(id, reason);
        self.remove_conn(id);
    }

    fn protocol_error(&mut self, id: u64, error: String) {
        log::debug!("connection {id}: protocol error: {error}");
        self.stats.protocol_errors += 1;
        let cluster = self.cluster_of(id);
        self.emit(ServerEvent::ProtocolError {
            conn: id,
            cluster,
            error,
        });
    }

    // ------------------------------------------------------------------
    // Timers

    fn fire_timers(&mut self, now: Instant) {
        while self.timers.peek().is_some_and(|t| t.at <= now) {
            let Some(t) = self.timers.pop() else { break };
            match t.kind {
                TimerKind::Heartbeat => self.heartbeat_timer(t.conn, now),
                TimerKind::HeadTimeout => {
                    if matches!(
                        self.conns.get(&t.conn).map(|c| &c.kind),
                        Some(ConnKind::Head { .. })
                    ) {
                        self.remove_conn(t.conn);
                    }
                }
                TimerKind::CloseLinger => {
                    if self.ws(t.conn).is_some_and(|w| w.closing) {
                        self.remove_conn(t.conn);
                    }
                }
                TimerKind::Send(text) => {
                    if self.ws(t.conn).is_some_and(|w| w.reg.is_some()) {
                        self.send_text(t.conn, text);
                    }
                }
                TimerKind::DispatchTimeout(rid) => {
                    if let Some(p) = self.pending.remove(&rid) {
                        let _ = p.reply.send(Err(DispatchError::Timeout(Duration::ZERO)));
                    }
                }
            }
        }
    }

    fn heartbeat_timer(&mut self, id: u64, now: Instant) {
        if self.faults.stop_pings {
            return;
        }
        let timeout = self.cfg().ping_timeout;
        let Some(w) = self.ws(id) else { return };
        if w.ended {
            return;
        }
        if let Some(deadline) = w.pong_deadline {
            if now >= deadline {
                self.end_session(id, "ping timeout");
                self.close_conn(id, None);
            }
            return;
        }
        if now >= w.next_ping {
            let deadline = now + timeout;
            w.pong_deadline = Some(deadline);
            self.send_text(id, "2".into());
            self.add_timer(deadline, id, TimerKind::Heartbeat);
        }
    }

    fn on_pong(&mut self, id: u64) {
        let interval = self.cfg().ping_interval;
        let Some(w) = self.ws(id) else { return };
        if w.pong_deadline.take().is_none() {
            return; // an unsolicited pong: ignored, as engine.io does
        }
        let at = Instant::now() + interval;
        w.next_ping = at;
        self.add_timer(at, id, TimerKind::Heartbeat);
    }

    /// Applies a new fault set (thawing frozen connections when needed).
    pub(crate) fn set_faults(&mut self, faults: Faults) {
        let was_frozen = self.faults.stop_pings;
        self.faults = faults;
        if was_frozen && !self.faults.stop_pings {
            let now = Instant::now();
            let interval = self.cfg().ping_interval;
            let ids: Vec<u64> = self.conns.keys().copied().collect();
            for id in ids {
                if let Some(w) = self.ws(id) {
                    w.pong_deadline = None;
                    w.next_ping = now + interval;
                    self.add_timer(now + interval, id, TimerKind::Heartbeat);
                    self.to_read.push(id);
                }
            }
        }
    }

    // ------------------------------------------------------------------
    // Engine.IO / Socket.IO

    /// Counts an incoming frame and applies `dropAfterFrames`: `false` when
    /// the connection is gone (or was just dropped).
    fn frame_in(&mut self, id: u64) -> bool {
        self.stats.frames_in += 1;
        let drop_after = self.faults.drop_after_frames;
        let Some(w) = self.ws(id) else { return false };
        w.frames_in += 1;
        if drop_after.is_some_and(|n| w.frames_in >= n) {
            self.drop_conn(id, "dropAfterFrames fault");
            return false;
        }
        true
    }

    /// An incoming text frame. A registered daemon's plain event on our
    /// namespace (the hot path: `command`) is decoded straight into its
    /// envelope; everything else, and anything the fast path declines or
    /// fails on, goes through the general decoder exactly as before.
    fn on_text(&mut self, id: u64, text: &str) {
        if self.cfg().record_frames {
            self.record(id, Direction::In, &RawFrame::Text(text.to_owned()));
        }
        if !self.frame_in(id) {
            return;
        }
        if self.command_fast_path(id, text) {
            return;
        }
        let namespace = &self.shared.config.namespace;
        let fast = match ws_in(&mut self.conns, id) {
            Some(w) if w.reg.is_some() => match w.decoder.event_fast_path(text, namespace) {
                // A message keeps its JSON exactly as it came, and errors are
                // named by the general path: both take it.
                Some(Ok(VoltEvent::Message(_))) | Some(Err(_)) | None => None,
                Some(Ok(event)) => Some(event),
            },
            _ => None,
        };
        if let Some(event) = fast {
            return self.on_volt_event(id, event, None);
        }
        let Some(w) = self.ws(id) else { return };
        let decoded = w.decoder.text(text);
        self.on_decoded(id, decoded);
    }

    /// A registered daemon's `command` is read with its payload left raw
    /// (benchmarks send them by the hundred thousand): `echo` writes it
    /// back as it came and the history keeps it as text, so a payload is
    /// parsed only where a value is needed (a heartbeat's). False when the
    /// frame is not a plain command: the caller's paths take it.
    fn command_fast_path(&mut self, id: u64, text: &str) -> bool {
        let namespace = &self.shared.config.namespace;
        let Some(req) = ws_in(&mut self.conns, id)
            .filter(|w| w.reg.is_some())
            .and_then(|w| w.decoder.event_json(text, namespace))
            .and_then(decode_command_ref)
        else {
            return false;
        };
        self.on_command(id, &req.request_id, &req.command, req.payload);
        true
    }

    fn on_frame(&mut self, id: u64, frame: RawFrame) {
        self.record(id, Direction::In, &frame);
        if !self.frame_in(id) {
            return;
        }
        let Some(w) = self.ws(id) else { return };
        let decoded = match frame {
            RawFrame::Text(t) => w.decoder.text(&t),
            RawFrame::Binary(b) => w.decoder.binary(b),
        };
        self.on_decoded(id, decoded);
    }

    fn on_decoded(&mut self, id: u64, decoded: Result<Option<Incoming>, DecodeError>) {
        match decoded {
            Err(e) => {
                // socket.io closes the connection on a packet it cannot parse.
                self.protocol_error(id, e.to_string());
                self.end_session(id, "parse error");
                self.close_conn(id, None);
            }
            Ok(None) | Ok(Some(Incoming::Noop)) => {}
            Ok(Some(Incoming::Pong(_))) => self.on_pong(id),
            Ok(Some(Incoming::Ping(_))) => {
                self.protocol_error(id, "the client sent a ping".into());
                self.end_session(id, "client ping");
                self.close_conn(id, None);
            }
            Ok(Some(Incoming::Close)) => {
                self.end_session(id, "transport close");
                self.close_conn(id, None);
            }
            Ok(Some(Incoming::Open(_))) => {
                self.protocol_error(id, "the client sent an open packet".into());
            }
            Ok(Some(Incoming::Packet(c))) => self.on_packet(id, c),
        }
    }

    fn on_packet(&mut self, id: u64, complete: Complete) {
        let ns = self.cfg().namespace.clone();
        let packet = &complete.packet;
        let registered = self.ws(id).is_some_and(|w| w.reg.is_some());
        match packet.packet_type {
            PacketType::Connect if packet.namespace == ns => {
                let data = complete.packet.data;
                self.register(id, data);
            }
            PacketType::Connect if packet.namespace == "/" => {
                // The main namespace exists on every socket.io server.
                let text = format!("40{{\"sid\":\"{}\"}}", new_sid());
                self.send_text(id, text);
            }
            PacketType::Connect => {
                let nsp = packet.namespace.clone();
                let mut out = String::from("4");
                Packet::new(
                    PacketType::ConnectError,
                    nsp.clone(),
                    Some(json!({"message": "Invalid namespace"})),
                )
                .encode_into(&mut out);
                self.send_text(id, out);
                self.emit(ServerEvent::RegistrationRejected {
                    conn: id,
                    cluster: None,
                    namespace: nsp,
                    code: None,
                    message: "Invalid namespace".into(),
                });
            }
            PacketType::Disconnect if packet.namespace == ns && registered => {
                let reg = self.ws(id).and_then(|w| w.reg.take());
                if let Some(reg) = reg {
                    self.unlink(&reg.cluster, id);
                    self.fail_pending(id, "client namespace disconnect");
                    self.emit(ServerEvent::Unregistered {
                        conn: id,
                        cluster: reg.cluster.to_string(),
                    });
                }
            }
            PacketType::Event | PacketType::BinaryEvent if packet.namespace == ns && registered => {
                self.on_event(id, complete)
            }
            _ => {
                let what = format!(
                    "unexpected {:?} packet on {} ({})",
                    packet.packet_type,
                    packet.namespace,
                    if registered {
                        "registered"
                    } else {
                        "not registered"
                    }
                );
                self.protocol_error(id, what);
            }
        }
    }

    fn register(&mut self, id: u64, auth: Option<Value>) {
        let ns = self.cfg().namespace.clone();
        if self.ws(id).is_some_and(|w| w.reg.is_some()) {
            self.protocol_error(id, "second CONNECT on a live registration".into());
            self.end_session(id, "second registration");
            self.close_conn(id, None);
            return;
        }
        let claimed = auth
            .as_ref()
            .and_then(|a| a.get("teamClusterId"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let verdict =
            crate::admission::check_registration(&self.faults, &self.clusters, auth.as_ref());
        match verdict {
            Ok((cluster, installed_version, client)) => {
                let sid = new_sid();
                let mut out = String::from("4");
                Packet::new(PacketType::Connect, ns, Some(json!({ "sid": sid })))
                    .encode_into(&mut out);
                if let Some(w) = self.ws(id) {
                    w.reg = Some(Reg {
                        cluster: Arc::from(cluster.as_str()),
                        sid: sid.clone(),
                        installed_version: installed_version.clone(),
                        client: client.clone(),
                        connected_at: epoch_ms(),
                        heartbeats: 0,
                        last_heartbeat: None,
                        last_heartbeat_at: None,
                    });
                }
                self.by_cluster.entry(cluster.clone()).or_default().push(id);
                self.emit(ServerEvent::Registered {
                    conn: id,
                    cluster,
                    sid,
                    installed_version,
                    client,
                });
                self.send_text(id, out);
            }
            Err((code, message)) => {
                let mut body = Map::new();
                body.insert("message".into(), message.clone().into());
                if let Some(c) = &code {
                    body.insert("data".into(), json!({ "code": c }));
                }
                let mut out = String::from("4");
                Packet::new(
                    PacketType::ConnectError,
                    ns.clone(),
                    Some(Value::Object(body)),
                )
                .encode_into(&mut out);
                self.send_text(id, out);
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
        if self.ws(id).is_none_or(|w| w.reg.is_none()) {
            return;
        }
        // Keep a message's JSON exactly as it came.
        let raw_message = match &complete.packet.data {
            Some(Value::Array(a)) if a.first().and_then(Value::as_str) == Some(names::MESSAGE) => {
                a.get(1).cloned()
            }
            _ => None,
        };
        let event = match VoltEvent::from_packet(complete) {
            Ok(e) => e,
            Err(e) => {
                self.protocol_error(id, e.to_string());
                return;
            }
        };
        self.on_volt_event(id, event, raw_message);
    }

    /// A decoded event from a registered daemon (`raw_message`: a
    /// `message`'s argument exactly as it came, when known).
    fn on_volt_event(&mut self, id: u64, event: VoltEvent, raw_message: Option<Value>) {
        match event {
            VoltEvent::Command(req) => self.on_command_value(id, req),
            VoltEvent::Message(_) if !self.cfg().record_history => {}
            VoltEvent::Message(m) => {
                let Some(cluster) = self.cluster_of(id) else {
                    return;
                };
                let message = raw_message
                    .or_else(|| m.to_value().ok())
                    .unwrap_or(Value::Null);
                let limit = self.cfg().history_limit;
                let r = self.received.entry(cluster.clone()).or_default();
                if r.messages.len() >= limit {
                    r.messages.pop_front();
                }
                r.messages.push_back(message.clone());
                self.emit(ServerEvent::Message {
                    conn: id,
                    cluster,
                    message,
                });
            }
            VoltEvent::ReverseResponse(r) => {
                let rid = r.request_id.clone();
                match self.pending.get_mut(&rid) {
                    Some(p) if p.conn == id && p.response.is_none() => {
                        p.response = Some(r);
                        self.maybe_finish(&rid);
                    }
                    Some(p) if p.conn == id => {
                        self.protocol_error(id, format!("second reverse-response for {rid}"))
                    }
                    _ => self.protocol_error(id, format!("stray reverse-response for {rid}")),
                }
            }
            VoltEvent::ReverseStream(s) => match self.pending.get_mut(&s.request_id) {
                Some(p) if p.conn == id && p.end.is_none() => p.chunks.push(s.chunk),
                _ => self.protocol_error(
                    id,
                    format!("stray reverse-stream chunk for {}", s.request_id),
                ),
            },
            VoltEvent::ReverseStreamEnd(e) => {
                let rid = e.request_id.clone();
                match self.pending.get_mut(&rid) {
                    Some(p) if p.conn == id && p.end.is_none() => {
                        p.end = Some(e);
                        self.maybe_finish(&rid);
                    }
                    _ => self.protocol_error(id, format!("stray reverse-stream-end for {rid}")),
                }
            }
            other => {
                let name = other.name();
                self.protocol_error(id, format!("unexpected event {name:?} from a daemon"));
            }
        }
    }

    fn maybe_finish(&mut self, rid: &str) {
        let Some(p) = self.pending.get(rid) else {
            return;
        };
        let Some(resp) = &p.response else { return };
        let streaming = matches!(resp.body, ReplyBody::Stream);
        if streaming && p.end.is_none() {
            return;
        }
        let Some(p) = self.pending.remove(rid) else {
            return;
        };
        let Some(resp) = p.response else { return };
        let mut reply = ReverseReply {
            request_id: resp.request_id,
            command: resp.command,
            status: resp.status,
            headers: resp.headers,
            error: resp.error,
            ..ReverseReply::default()
        };
        match resp.body {
            ReplyBody::None => {}
            ReplyBody::Data(d) => reply.data = Some(d),
            ReplyBody::Body(b) => reply.body = Some(b),
            ReplyBody::Stream => {
                reply.stream = Some(p.chunks.concat());
                reply.stream_chunks = p.chunks;
                if let Some(end) = p.end {
                    reply.chunks = Some(end.chunks);
                    if reply.error.is_none() {
                        reply.error = end.error;
                    }
                }
            }
        }
        let _ = p.reply.send(Ok(reply.clone()));
        self.emit(ServerEvent::ReverseReply {
            conn: p.conn,
            cluster: p.cluster,
            reply: Box::new(reply),
        });
    }

    /// Records a daemon's `command` (history on): its envelope, written
    /// once as JSON text, goes to the per-cluster list and (shared) to the
    /// event log; a heartbeat's payload is parsed for [`DaemonInfo`].
    fn record_command(&mut self, id: u64, rid: &str, command: &str, payload: Option<&RawValue>) {
        let Some(cluster) = self.cluster_arc(id) else {
            return;
        };
        let mut buf = std::mem::take(&mut self.rec_scratch);
        write_envelope(&mut buf, rid, command, payload.map(RawValue::get));
        // Everything written is UTF-8 (JSON text and escaped strings).
        let json: Arc<str> = Arc::from(std::str::from_utf8(&buf).unwrap_or_default());
        self.rec_scratch = buf;
        if command == HEARTBEAT {
            let payload: Option<Value> = payload.and_then(|p| serde_json::from_str(p.get()).ok());
            if let Some(reg) = self.ws(id).and_then(|w| w.reg.as_mut()) {
                reg.last_heartbeat = payload.clone();
                reg.last_heartbeat_at = Some(epoch_ms());
            }
            self.emit(ServerEvent::Heartbeat {
                conn: id,
                cluster: cluster.to_string(),
                request_id: rid.to_owned(),
                payload,
            });
        } else {
            self.events.push(Logged::Command {
                conn: id,
                cluster: cluster.clone(),
                json: json.clone(),
            });
        }
        let limit = self.cfg().history_limit;
        if !self.received.contains_key(&*cluster) {
            self.received
                .insert(cluster.to_string(), Received::default());
        }
        if let Some(r) = self.received.get_mut(&*cluster) {
            if r.commands.len() >= limit {
                r.commands.pop_front();
            }
            r.commands.push_back(json);
        }
    }

    /// The `command-response` frame for a command and its delay; `None`
    /// for [`Responder::NoReply`]. The one place that decides what a
    /// command is answered (`echo`: its payload as it came). Serialized
    /// from borrowed fields: neither the responder nor the payload is copied.
    fn reply_to(
        &self,
        rid: &str,
        command: &str,
        payload: Option<&RawValue>,
        scratch: &mut Vec<u8>,
    ) -> Option<(String, Option<Duration>)> {
        let unknown;
        let (data, error, delay) = match self.responders.get(command) {
            Some(Responder::NoReply) => return None,
            Some(Responder::Ok { data, delay }) => {
                (data.as_ref().map(ReplyData::Value), None, *delay)
            }
            Some(Responder::Err { error, delay }) => (None, Some(error), *delay),
            None => match command {
                HEARTBEAT => (None, None, None),
                "echo" => (payload.map(|p| ReplyData::Raw(p.get())), None, None),
                other => {
                    unknown = ErrorBody::new("UNKNOWN_COMMAND", format!("unknown command {other}"));
                    (None, Some(&unknown), None)
                }
            },
        };
        let ok = error.is_none();
        let text = command_response_frame(scratch, &self.response_prefix, rid, ok, data, error);
        Some((text, delay))
    }

    /// A daemon's `command`, its payload unparsed JSON text.
    fn on_command(&mut self, id: u64, rid: &str, command: &str, payload: Option<&RawValue>) {
        self.stats.commands += 1;
        let dropping = self.faults.drop_on_command.as_deref() == Some(command);
        let reply = if dropping {
            None
        } else {
            let mut scratch = std::mem::take(&mut self.scratch);
            let reply = self.reply_to(rid, command, payload, &mut scratch);
            self.scratch = scratch;
            reply
        };
        if command == HEARTBEAT {
            if let Some(reg) = self.ws(id).and_then(|w| w.reg.as_mut()) {
                reg.heartbeats += 1;
            }
        }
        if self.cfg().record_history {
            self.record_command(id, rid, command, payload);
        }
        if dropping {
            self.drop_conn(id, "dropOnCommand fault");
            return;
        }
        match reply {
            None => {}
            Some((text, Some(d))) if !d.is_zero() => {
                self.add_timer(Instant::now() + d, id, TimerKind::Send(text))
            }
            Some((text, _)) => self.send_text(id, text),
        }
    }

    /// A `command` the general decoder read (payload parsed): handled as
    /// the fast path handles one, from its payload's JSON text.
    fn on_command_value(&mut self, id: u64, req: CommandRequest) {
        let raw = req
            .payload
            .as_ref()
            .and_then(|p| serde_json::value::to_raw_value(p).ok());
        self.on_command(id, &req.request_id, &req.command, raw.as_deref());
    }

    // ------------------------------------------------------------------
    // Requests from other threads

    /// The newest registered connection of a cluster.
    pub(crate) fn newest(&self, cluster: &str) -> Option<u64> {
        self.by_cluster.get(cluster).and_then(|v| v.last().copied())
    }

    /// Every registered connection of a cluster.
    pub(crate) fn all_of(&self, cluster: &str) -> Vec<u64> {
        self.by_cluster.get(cluster).cloned().unwrap_or_default()
    }

    pub(crate) fn dispatch(
        &mut self,
        cluster: &str,
        command: String,
        payload: Option<Value>,
        timeout: Duration,
        reply: Sender<Result<ReverseReply, DispatchError>>,
    ) {
        let Some(id) = self.newest(cluster) else {
            let _ = reply.send(Err(DispatchError::NotConnected(cluster.into())));
            return;
        };
        let request_id = uuid::Uuid::new_v4().to_string();
        let text = VoltEvent::ReverseCommand(ReverseCommand {
            request_id: request_id.clone(),
            command: command.clone(),
            payload,
        })
        .encode(&self.shared.config.namespace)
        .text;
        self.pending.insert(
            request_id.clone(),
            Pending {
                conn: id,
                cluster: cluster.into(),
                reply,
                response: None,
                chunks: Vec::new(),
                end: None,
            },
        );
        self.add_timer(
            Instant::now() + timeout,
            id,
            TimerKind::DispatchTimeout(request_id.clone()),
        );
        self.send_text(id, text);
        self.emit(ServerEvent::ReverseCommandSent {
            conn: id,
            cluster: cluster.into(),
            request_id,
            command,
        });
    }

    pub(crate) fn send_message(
        &mut self,
        cluster: &str,
        message: &Value,
    ) -> Result<(), DispatchError> {
        let id = self
            .newest(cluster)
            .ok_or_else(|| DispatchError::NotConnected(cluster.into()))?;
        let text = volt_protocol::envelope::event_frame(
            &self.shared.config.namespace,
            names::MESSAGE,
            &message.to_string(),
            0,
        );
        self.send_text(id, text);
        Ok(())
    }

    pub(crate) fn kick(&mut self, cluster: &str) -> Result<usize, DispatchError> {
        let ids = self.all_of(cluster);
        if ids.is_empty() {
            return Err(DispatchError::NotConnected(cluster.into()));
        }
        let ns = self.shared.config.namespace.clone();
        for &id in &ids {
            let mut out = String::from("4");
            Packet::new(PacketType::Disconnect, ns.clone(), None).encode_into(&mut out);
            self.send_text(id, out);
            if let Some(reg) = self.ws(id).and_then(|w| w.reg.take()) {
                self.unlink(&reg.cluster, id);
                self.fail_pending(id, "server namespace disconnect");
                self.emit(ServerEvent::Kicked {
                    conn: id,
                    cluster: reg.cluster.to_string(),
                });
            }
        }
        Ok(ids.len())
    }

    pub(crate) fn drop_cluster(&mut self, cluster: &str) -> Result<usize, DispatchError> {
        let ids = self.all_of(cluster);
        if ids.is_empty() {
            return Err(DispatchError::NotConnected(cluster.into()));
        }
        for &id in &ids {
            // Whatever was queued goes out first, then the TCP connection ends.
            if let Some(w) = self.ws(id) {
                let _ = w.ws.flush();
            }
            self.drop_conn(id, "server drop");
        }
        Ok(ids.len())
    }

    pub(crate) fn daemons(&self) -> Vec<DaemonInfo> {
        let mut out: Vec<DaemonInfo> = self
            .conns
            .iter()
            .filter_map(|(id, c)| match &c.kind {
                ConnKind::Ws(w) => w.reg.as_ref().map(|r| DaemonInfo {
                    team_cluster_id: r.cluster.to_string(),
                    sid: r.sid.clone(),
                    installed_version: r.installed_version.clone(),
                    client: r.client.clone(),
                    connected_at: r.connected_at,
                    client_certificate_subject: w.ws.get_ref().client_subject().map(str::to_owned),
                    heartbeats: r.heartbeats,
                    last_heartbeat: r.last_heartbeat.clone(),
                    last_heartbeat_at: r.last_heartbeat_at,
                    conn: *id,
                }),
                _ => None,
            })
            .collect();
        out.sort_by_key(|d| (d.connected_at, d.conn));
        out
    }

    /// Enrollment (contract section 1): answers `(status, body)`.
    pub(crate) fn enroll(
        &mut self,
        cluster: &str,
        authorization: Option<&str>,
        body: &[u8],
    ) -> (u16, Value) {
        let (status, body) = crate::admission::enroll(
            &mut self.enrollment,
            &mut self.clusters,
            cluster,
            authorization,
            body,
        );
        self.emit(ServerEvent::Enrollment {
            cluster: cluster.into(),
            status,
        });
        (status, body)
    }

    fn shutdown_all(&mut self) {
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for id in ids {
            if let Some(w) = self.ws(id) {
                let _ = w.ws.close(Some(CloseFrame {
                    code: CloseCode::Away,
                    reason: "server shutting down".into(),
                }));
                let _ = w.ws.flush();
            }
            self.end_session(id, "server shutting down");
            self.remove_conn(id);
        }
        for (_, p) in self.pending.drain() {
            let _ = p.reply.send(Err(DispatchError::Stopped));
        }
    }
}
