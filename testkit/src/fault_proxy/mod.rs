//! [`FaultProxy`]: a TCP proxy on loopback that misbehaves on demand, the
//! way real networks do below the protocol (latency, slow links, tiny
//! segments, half-open connections, resets in the middle of a frame).

mod conn;
mod state;

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use socket2::SockRef;

use conn::Conn;
use state::{Cut, CutKind, Shared};
pub use state::{ProxyStats, Toward};

/// How long the proxy waits for the upstream server to accept a connection.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The seed [`FaultProxy::start`] gives the jitter RNG.
pub const FAULT_PROXY_SEED: u64 = 0x70c5_1c05;

/// A TCP proxy on `127.0.0.1` between a client and any server, whose faults
/// change while traffic flows. Blocking threads, no async runtime: one
/// accept thread, and per connection a supervisor with a reader and a
/// writer per direction. Dropping it closes every connection and joins
/// every thread it started.
///
/// Deterministic where it matters: jitter comes from an RNG seeded per
/// connection and direction (from [`start_seeded`](Self::start_seeded)'s
/// seed and the connection's index), and cuts fall at byte counts.
///
/// ```
/// use std::io::{Read, Write};
/// use std::net::{TcpListener, TcpStream};
/// use std::time::Duration;
/// use volt_testkit::{FaultProxy, Toward};
///
/// // An echo server behind the proxy.
/// let server = TcpListener::bind("127.0.0.1:0").unwrap();
/// let addr = server.local_addr().unwrap();
/// let echo = std::thread::spawn(move || {
///     let (mut s, _) = server.accept().unwrap();
///     let mut buf = [0u8; 64];
///     while let Ok(n @ 1..) = s.read(&mut buf) {
///         if s.write_all(&buf[..n]).is_err() {
///             break;
///         }
///     }
/// });
///
/// let proxy = FaultProxy::start(addr).unwrap();
/// // One byte at a time toward the client, 10 ms late each way.
/// proxy.slice(Toward::Client, 1, Duration::ZERO);
/// proxy.latency(Toward::Both, Duration::from_millis(10), Duration::ZERO);
/// let mut c = TcpStream::connect(proxy.local_addr()).unwrap();
/// c.write_all(b"hello").unwrap();
/// let mut got = [0u8; 5];
/// c.read_exact(&mut got).unwrap();
/// assert_eq!(&got, b"hello");
/// assert_eq!(proxy.stats().bytes_to_client, 5);
///
/// // The next 3 bytes toward the server go through, then both sides get a RST.
/// proxy.heal();
/// proxy.reset_after(Toward::Server, 3);
/// c.write_all(b"abcdef").unwrap();
/// let mut rest = Vec::new();
/// let _ = c.read_to_end(&mut rest); // "abc" echoed, then reset
/// assert!(rest.len() <= 3);
/// drop(proxy);
/// echo.join().unwrap();
/// ```
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy to `upstream` on an ephemeral loopback port, with
    /// [`FAULT_PROXY_SEED`].
    pub fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        FaultProxy::start_seeded(upstream, FAULT_PROXY_SEED)
    }

    /// A proxy to `upstream` whose jitter comes from `seed`.
    pub fn start_seeded(upstream: SocketAddr, seed: u64) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let acceptor = std::thread::Builder::new()
            .name("faultproxy-acc".into())
            .spawn(move || accept_loop(listener, upstream, seed, s))?;
        Ok(FaultProxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// Where clients connect.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: the proxy as a server URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every chunk read toward `toward` is delivered `delay` ± `jitter`
    /// (uniform, seeded) after it was read; bytes are never reordered.
    pub fn latency(&self, toward: Toward, delay: Duration, jitter: Duration) {
        self.each(toward, |d| {
            d.latency = delay;
            d.jitter = jitter.min(delay);
        });
    }

    /// At most `bytes_per_s` toward `toward` (each connection on its own).
    pub fn bandwidth(&self, toward: Toward, bytes_per_s: u64) {
        self.each(toward, |d| d.bytes_per_s = Some(bytes_per_s));
    }

    /// Delivers in writes of at most `max_segment_bytes` (down to 1, sent
    /// with `TCP_NODELAY`), waiting `delay` after each.
    pub fn slice(&self, toward: Toward, max_segment_bytes: usize, delay: Duration) {
        self.each(toward, |d| {
            d.slice = Some((max_segment_bytes.max(1), delay))
        });
    }

    /// Stops forwarding both ways and keeps every socket open: a half-open
    /// connection, where no byte and no FIN ever comes. New connections
    /// are accepted and stall the same way.
    pub fn blackhole(&self) {
        self.shared.update(|s| s.blackhole = true);
    }

    /// After `bytes` more bytes toward `toward` (counted from now on open
    /// connections, from their start on new ones), both sides of that
    /// connection get a TCP RST; the bytes before the cut are delivered.
    /// One shot: the first connection to reach the count is cut, and the
    /// fault is disarmed (arm it again for another).
    pub fn reset_after(&self, toward: Toward, bytes: u64) {
        self.cut(toward, bytes, CutKind::Reset);
    }

    /// As [`reset_after`](Self::reset_after), but an orderly close (FIN) of
    /// both sides.
    pub fn close_after(&self, toward: Toward, bytes: u64) {
        self.cut(toward, bytes, CutKind::Close);
    }

    /// New connections are reset as soon as they are accepted (a listener
    /// that refuses); open ones are left alone.
    pub fn refuse_new(&self) {
        self.shared.update(|s| s.refuse_new = true);
    }

    /// Clears every fault: bytes held by a blackhole flow on.
    pub fn heal(&self) {
        self.shared.update(|s| {
            s.dirs = Default::default();
            s.blackhole = false;
            s.refuse_new = false;
        });
    }

    /// Bytes and connections so far.
    pub fn stats(&self) -> ProxyStats {
        self.shared.counters.snapshot()
    }

    fn each(&self, toward: Toward, f: impl Fn(&mut state::DirFaults)) {
        self.shared.update(|s| {
            for &i in toward.indexes() {
                f(&mut s.dirs[i]);
            }
        });
    }

    fn cut(&self, toward: Toward, after: u64, kind: CutKind) {
        self.shared.update(|s| {
            s.next_gen += 1;
            let cut = Cut {
                gen: s.next_gen,
                after,
                kind,
            };
            for &i in toward.indexes() {
                s.dirs[i].cut = Some(cut);
            }
        });
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.update(|s| s.shutdown = true);
        // Wakes the blocking accept.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

type Open = Arc<Mutex<Vec<(u64, Arc<Conn>)>>>;

fn accept_loop(listener: TcpListener, upstream: SocketAddr, seed: u64, shared: Arc<Shared>) {
    let open: Open = Arc::default();
    let mut supervisors: Vec<JoinHandle<()>> = Vec::new();
    let mut index = 0u64;
    for client in listener.incoming() {
        let (shutdown, refuse) = {
            let s = shared.lock();
            (s.shutdown, s.refuse_new)
        };
        if shutdown {
            break;
        }
        supervisors.retain(|h| !h.is_finished());
        let Ok(client) = client else { continue };
        if refuse {
            let _ = SockRef::from(&client).set_linger(Some(Duration::ZERO));
            shared.counters.refused.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        let Some(conn) = connect_upstream(client, upstream, &shared) else {
            continue;
        };
        index += 1;
        let (conn, id) = (Arc::new(conn), index);
        open.lock().push((id, conn.clone()));
        shared.counters.accepted.fetch_add(1, Ordering::SeqCst);
        shared.counters.open.fetch_add(1, Ordering::SeqCst);
        let (open2, shared2) = (open.clone(), shared.clone());
        let spawned = std::thread::Builder::new()
            .name("faultproxy-conn".into())
            .spawn(move || {
                conn.run(id, seed);
                open2.lock().retain(|(i, _)| *i != id);
                shared2.counters.open.fetch_sub(1, Ordering::SeqCst);
                // The last handle of both sockets closes here.
                drop(conn);
            });
        match spawned {
            Ok(h) => supervisors.push(h),
            Err(_) => {
                stop_one(&open, id);
                shared.counters.open.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
    for (_, conn) in open.lock().iter() {
        conn.stop();
    }
    for h in supervisors {
        let _ = h.join();
    }
}

fn stop_one(open: &Open, id: u64) {
    let mut open = open.lock();
    if let Some(pos) = open.iter().position(|(i, _)| *i == id) {
        open.remove(pos).1.stop();
    }
}

/// The server side of a new connection; `None` (and the client reset) when
/// the upstream server cannot be reached.
fn connect_upstream(client: TcpStream, upstream: SocketAddr, shared: &Arc<Shared>) -> Option<Conn> {
    let server = TcpStream::connect_timeout(&upstream, UPSTREAM_CONNECT_TIMEOUT);
    match server.and_then(|server| Conn::new(client.try_clone()?, server, shared.clone())) {
        Ok(conn) => Some(conn),
        Err(e) => {
            log::debug!("fault proxy: upstream {upstream} unreachable: {e}");
            let _ = SockRef::from(&client).set_linger(Some(Duration::ZERO));
            None
        }
    }
}
