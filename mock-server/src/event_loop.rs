//! The event loop: one thread polls every connection, accepts and
//! upgrades them, runs the timers, feeds what arrives to the [`State`] and
//! carries out the [`Action`]s it answers with. Other threads reach it
//! through the [`Shared`] channels (calls from a [`ServerHandle`], TLS
//! upgrades) and its waker.

use std::collections::BinaryHeap;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::{Events, Interest, Poll, Token, Waker};
use parking_lot::Mutex;
use serde_json::json;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use crate::config::ServerConfig;
use crate::conn::{would_block, Conns, HeadRead, Written};
use crate::events::EventLog;
use crate::handle::{Call, ServerHandle, Shared, TlsUpgrade};
use crate::head;
use crate::model::*;
use crate::state::{Action, State};
use crate::stream::{Stream, Transport};
use crate::timers::{Timer, TimerKind};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// Most HTTP (admin, enrollment, TLS handshake) threads at once.
const MAX_HTTP_THREADS: usize = 512;

/// The loop thread's own data.
struct Loop {
    shared: Arc<Shared>,
    state: State,
    conns: Conns,
    timers: BinaryHeap<Timer>,
    timer_seq: u64,
    /// Connections to read on this wake without a readiness event.
    to_read: Vec<u64>,
    /// The actions being carried out (reused).
    batch: Vec<Action>,
    /// Connections whose flush ended them (reused).
    ended: Vec<(u64, &'static str)>,
    ws_config: WebSocketConfig,
}

/// How many connections the kernel queues before `accept`. The standard
/// library's 128 is too few for a fleet reconnecting after a restart: 1,000
/// daemons arriving within 300 ms overflowed it, and each dropped SYN cost
/// its daemon a 1 s TCP retransmission. Linux caps it at `somaxconn`.
const LISTEN_BACKLOG: i32 = 4096;

/// A non-blocking listener on `addr` with [`LISTEN_BACKLOG`] (and, as the
/// standard library does, `SO_REUSEADDR`, so a restarted server can bind
/// its old port while old connections sit in TIME_WAIT).
fn bind(addr: std::net::SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Binds and starts the loop thread.
pub(crate) fn start(
    config: ServerConfig,
    tls: Option<crate::tls::TlsAcceptor>,
) -> io::Result<(ServerHandle, JoinHandle<()>)> {
    let std_listener = bind(config.listen)?;
    let local_addr = std_listener.local_addr()?;
    let mut listener = mio::net::TcpListener::from_std(std_listener);
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let waker = Waker::new(poll.registry(), WAKER)?;
    let (calls, calls_rx) = crossbeam_channel::bounded::<Call>(65_536);
    let (upgrades, upgrades_rx) = crossbeam_channel::bounded::<TlsUpgrade>(1024);
    let shared = Arc::new(Shared {
        local_addr,
        events: EventLog::new(config.history_limit),
        stats: Mutex::new(Stats::default()),
        calls,
        upgrades,
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
    let lp = Loop {
        state: State::new(cfg),
        conns: Conns::new(poll.registry().try_clone()?, 2),
        timers: BinaryHeap::new(),
        timer_seq: 0,
        to_read: Vec::new(),
        batch: Vec::new(),
        ended: Vec::new(),
        ws_config,
        shared: shared.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("volt-mock-loop".into())
        .spawn(move || lp.run(poll, listener, calls_rx, upgrades_rx))?;
    Ok((ServerHandle::from_shared(shared), thread))
}

impl Loop {
    fn run(
        mut self,
        mut poll: Poll,
        mut listener: mio::net::TcpListener,
        calls: Receiver<Call>,
        upgrades: Receiver<TlsUpgrade>,
    ) {
        let mut events = Events::with_capacity(1024);
        loop {
            if let Err(e) = poll.poll(&mut events, self.next_timeout()) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("poll failed: {e}");
                    break;
                }
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(&mut listener),
                    WAKER => {}
                    Token(id) => {
                        let id = id as u64;
                        if ev.is_writable() {
                            self.conns.mark_dirty(id);
                        }
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.on_readable(id, !ev.is_read_closed() && !ev.is_error());
                        }
                    }
                }
            }
            while let Ok(u) = upgrades.try_recv() {
                self.adopt_tls(u);
            }
            self.run_calls(&calls);
            self.fire_timers(Instant::now());
            while let Some(id) = self.to_read.pop() {
                self.on_readable(id, false);
            }
            // Events first: a client that reacts to a frame (say, the ack of
            // its registration) then always finds the event recorded.
            self.shared.events.extend(self.state.events_mut());
            self.flush_dirty();
            self.publish();
            if self.shared.stopping.load(Ordering::Acquire) {
                break;
            }
        }
        // Run what was queued (their reply channels then see the stop).
        self.run_calls(&calls);
        self.shutdown_all();
        self.publish();
        self.shared.events.close();
    }

    fn run_calls(&mut self, calls: &Receiver<Call>) {
        while let Ok(call) = calls.try_recv() {
            call(&mut self.state);
            self.apply_actions();
        }
    }

    fn publish(&mut self) {
        self.shared.events.extend(self.state.events_mut());
        *self.shared.stats.lock() = self.state.stats();
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

    /// Carries out what the state asked for, until it asks nothing more.
    fn apply_actions(&mut self) {
        while self.state.has_actions() {
            let mut batch = std::mem::take(&mut self.batch);
            self.state.swap_actions(&mut batch);
            for action in batch.drain(..) {
                self.apply(action);
            }
            self.batch = batch;
        }
    }

    fn apply(&mut self, action: Action) {
        match action {
            Action::Send(id, frame) => match self.conns.write(id, frame) {
                Written::Queued => self.state.note_frame_out(),
                Written::Skipped => {}
                Written::Failed(reason) => self.drop_conn(id, reason),
            },
            Action::Close(id) => self.close_conn(id, None),
            Action::Cut { conn, flush } => {
                if flush {
                    self.conns.flush(conn);
                }
                self.remove_conn(conn);
            }
            Action::Timer { at, conn, kind } => self.add_timer(at, conn, kind),
            Action::Read(id) => self.to_read.push(id),
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while self.timers.peek().is_some_and(|t| t.at <= now) {
            let Some(t) = self.timers.pop() else { break };
            match t.kind {
                TimerKind::HeadTimeout if self.conns.is_head(t.conn) => self.remove_conn(t.conn),
                TimerKind::CloseLinger if self.conns.is_closing(t.conn) => self.remove_conn(t.conn),
                TimerKind::HeadTimeout | TimerKind::CloseLinger => {}
                kind => {
                    self.state.on_timer(t.conn, kind, now);
                    self.apply_actions();
                }
            }
        }
    }

    // ------------------------------------------------------------------
    // Accepting and upgrading

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
            if self.over_ip_cap(peer) {
                log::warn!("refusing {peer}: connection cap per IP reached");
                let _ = stream.shutdown(Shutdown::Both);
                continue;
            }
            if let Some(acceptor) = self.shared.tls.clone() {
                if self.shared.http_active.load(Ordering::Acquire) >= MAX_HTTP_THREADS {
                    let _ = stream.shutdown(Shutdown::Both);
                    continue;
                }
                let handle = ServerHandle::from_shared(self.shared.clone());
                let clone = stream.try_clone().ok();
                self.shared.spawn_http(clone, move || {
                    crate::http::serve_tls(handle, acceptor, stream, peer)
                });
                continue;
            }
            match self.conns.register(&stream, peer) {
                Ok(id) => {
                    self.conns.insert_head(id, peer, stream);
                    self.add_timer(Instant::now() + HEAD_TIMEOUT, id, TimerKind::HeadTimeout);
                }
                Err(e) => log::warn!("cannot register {peer}: {e}"),
            }
        }
    }

    /// Whether `peer`'s IP has its most connections (logged when so).
    fn over_ip_cap(&mut self, peer: SocketAddr) -> bool {
        if self.conns.count_of(peer.ip()) < self.shared.config.max_connections_per_ip {
            return false;
        }
        self.state.emit(ServerEvent::ConnectionRefused {
            peer,
            reason: "connection cap per IP reached".into(),
        });
        true
    }

    fn read_head(&mut self, id: u64) {
        match self.conns.read_head(id) {
            HeadRead::Pending => {}
            HeadRead::Eof => self.remove_conn(id),
            HeadRead::Reject(status, message) => self.reject_raw(id, status, &message),
            HeadRead::Done {
                stream,
                peer,
                buf,
                head,
            } => match head.ws_key(&self.shared.config.path).map(str::to_owned) {
                Some(key) => {
                    let leftover = buf[head.len..].to_vec();
                    self.upgrade(id, peer, Transport::Plain(stream), &key, leftover);
                }
                None => self.hand_to_http(stream, peer, buf),
            },
        }
    }

    /// Answers a connection still in the head state and closes it.
    fn reject_raw(&mut self, id: u64, status: u16, message: &str) {
        let response = head::json_response(status, &json!({ "message": message }));
        self.conns.answer_head(id, &response);
        self.remove_conn(id);
    }

    /// Serves a plain HTTP request on its own thread.
    fn hand_to_http(&mut self, mut stream: TcpStream, peer: SocketAddr, buf: Vec<u8>) {
        self.conns.unregister(&stream, peer);
        if self.shared.http_active.load(Ordering::Acquire) >= MAX_HTTP_THREADS {
            let response = head::json_response(
                503,
                &json!({ "message": "too many concurrent HTTP requests" }),
            );
            let _ = stream.write_all(&response);
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        if stream.set_nonblocking(false).is_err() {
            return;
        }
        let handle = ServerHandle::from_shared(self.shared.clone());
        let clone = stream.try_clone().ok();
        self.shared.spawn_http(clone, move || {
            crate::http::serve_plain(handle, stream, buf, peer)
        });
    }

    /// Takes over a TLS stream whose upgrade request a handshake thread read.
    fn adopt_tls(&mut self, u: TlsUpgrade) {
        if self.over_ip_cap(u.peer) {
            return;
        }
        let Ok(id) = self.conns.register(u.tls.get_ref(), u.peer) else {
            return;
        };
        let transport = Transport::Tls(Box::new(u.tls));
        self.upgrade(id, u.peer, transport, &u.key, u.leftover);
        // TLS may hold decrypted bytes no readiness event will announce.
        self.to_read.push(id);
    }

    /// Turns a registered connection into a WebSocket: 101, then the open
    /// packet (unless `refuseConnections` refuses it).
    fn upgrade(
        &mut self,
        id: u64,
        peer: SocketAddr,
        mut transport: Transport,
        key: &str,
        leftover: Vec<u8>,
    ) {
        if self.state.refuse_upgrade() {
            let resp = head::json_response(
                503,
                &json!({"code": 503, "message": "connection refused (refuseConnections fault)"}),
            );
            let _ = match &mut transport {
                Transport::Plain(s) => s.write_all(&resp),
                Transport::Tls(s) => s.write_all(&resp),
            };
            let tcp = transport.tcp();
            let _ = tcp.shutdown(Shutdown::Both);
            self.conns.unregister(tcp, peer);
            self.state.emit(ServerEvent::ConnectionRefused {
                peer,
                reason: "refuseConnections fault".into(),
            });
            return;
        }
        let subject = match &transport {
            Transport::Tls(s) => s.client_subject().map(str::to_owned),
            Transport::Plain(_) => None,
        };
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
        self.conns.insert_ws(id, peer, ws);
        self.state.open(id, peer, Instant::now());
        self.state.set_client_subject(id, subject);
        self.apply_actions();
        if has_leftover {
            self.to_read.push(id);
        }
    }

    // ------------------------------------------------------------------
    // Reading, writing, closing

    /// `may_skip`: the event allows skipping the last read (`Stream::arm_read`).
    fn on_readable(&mut self, id: u64, may_skip: bool) {
        if self.conns.is_head(id) {
            return self.read_head(id);
        }
        if !self.state.frozen() && self.conns.arm_read(id, may_skip) {
            self.read_ws(id);
        }
    }

    fn read_ws(&mut self, id: u64) {
        while let Some(read) = self.conns.read(id) {
            match read {
                Ok(Message::Text(t)) => self.state.on_text(id, t.as_str()),
                Ok(Message::Binary(b)) => self.state.on_binary(id, b.to_vec()),
                Ok(Message::Close(_)) => {
                    // tungstenite queued the close reply; the next read ends it.
                    self.state.end_session(id, "transport close");
                    self.conns.set_closing(id);
                    self.add_timer(Instant::now() + CLOSE_LINGER, id, TimerKind::CloseLinger);
                }
                Ok(_) => {}
                Err(e) if would_block(&e) => return,
                Err(e) => return self.on_read_error(id, e),
            }
            self.apply_actions();
        }
    }

    fn on_read_error(&mut self, id: u64, e: tungstenite::Error) {
        match e {
            tungstenite::Error::Capacity(e) => {
                let error = format!("frame over maxPayload: {e}");
                let reason = "transport error (frame over maxPayload)";
                self.state.transport_failed(id, Some(error), reason);
                let frame = CloseFrame {
                    code: CloseCode::Size,
                    reason: "frame over maxPayload".into(),
                };
                self.close_conn(id, Some(frame));
            }
            tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
                self.drop_conn(id, "transport close")
            }
            e => {
                let error = match e {
                    tungstenite::Error::Io(_) => None,
                    e => Some(format!("WebSocket error: {e}")),
                };
                self.state.transport_failed(id, error, "transport error");
                self.remove_conn(id);
            }
        }
        self.apply_actions();
    }

    fn flush_dirty(&mut self) {
        let mut ended = std::mem::take(&mut self.ended);
        self.conns.flush_dirty(&mut ended);
        for (id, reason) in ended.drain(..) {
            self.drop_conn(id, reason);
        }
        self.ended = ended;
        self.apply_actions();
    }

    /// Sends a close frame and lets the connection linger until the
    /// client closes or [`CLOSE_LINGER`] passes.
    fn close_conn(&mut self, id: u64, frame: Option<CloseFrame>) {
        if self.conns.close(id, frame) {
            self.add_timer(Instant::now() + CLOSE_LINGER, id, TimerKind::CloseLinger);
        }
    }

    /// Ends the session and cuts the connection without a close frame.
    fn drop_conn(&mut self, id: u64, reason: &str) {
        self.state.end_session(id, reason);
        self.remove_conn(id);
    }

    fn remove_conn(&mut self, id: u64) {
        if self.conns.remove(id) {
            self.state.note_ws_closed();
        }
    }

    fn shutdown_all(&mut self) {
        for id in self.conns.ids() {
            let frame = CloseFrame {
                code: CloseCode::Away,
                reason: "server shutting down".into(),
            };
            self.conns.close(id, Some(frame));
            self.drop_conn(id, "server shutting down");
        }
        self.state.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;
    use std::time::Duration;

    /// With the standard library's backlog of 128 the kernel drops the SYNs
    /// beyond it while nothing accepts, and those connects time out.
    #[test]
    fn the_listener_queues_a_fleets_worth_of_connections_before_accepting_any() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let queued: Vec<TcpStream> = (0..600)
            .map(|i| {
                TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                    .unwrap_or_else(|e| panic!("connection {i} was not queued: {e}"))
            })
            .collect();
        assert_eq!(queued.len(), 600);
    }
}
