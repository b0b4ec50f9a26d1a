//! One proxied connection: per direction a reader (socket to delay line) and
//! a writer (delay line to socket, paced and sliced).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rand::rngs::StdRng;
use rand::SeedableRng;
use socket2::SockRef;

use super::state::{CutKind, DirCursor, Shared};

/// Chunks in flight per direction: a full delay line stops the reader, so a
/// slow link pushes back on the sender as a real one does.
const LINE_CHUNKS: usize = 64;
const READ_BYTES: usize = 16 * 1024;
/// How long a blocked write waits before it looks whether the connection ended.
const WRITE_POLL: Duration = Duration::from_millis(50);

enum Then {
    Go,
    Eof,
    Cut(CutKind),
    /// The source failed (reset by its peer): pass the reset on.
    Broken,
}

struct Chunk {
    data: Vec<u8>,
    at: Instant,
    then: Then,
}

/// Both sockets of one connection.
pub(crate) struct Conn {
    /// `[client side, server side]`.
    sockets: [TcpStream; 2],
    ended: AtomicBool,
    shared: Arc<Shared>,
}

impl Conn {
    pub fn new(client: TcpStream, server: TcpStream, shared: Arc<Shared>) -> io::Result<Conn> {
        for s in [&client, &server] {
            // Slices must leave as separate segments.
            s.set_nodelay(true)?;
            s.set_write_timeout(Some(WRITE_POLL))?;
        }
        Ok(Conn {
            sockets: [client, server],
            ended: AtomicBool::new(false),
            shared,
        })
    }

    fn is_ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// Marks the connection ended and wakes its readers (shutdown of the
    /// read side sends nothing to the peers) and waiters.
    fn end(&self) {
        {
            let _state = self.shared.lock();
            self.ended.store(true, Ordering::SeqCst);
            self.shared.changed.notify_all();
        }
        for s in &self.sockets {
            let _ = s.shutdown(Shutdown::Read);
        }
    }

    /// Both peers get a RST when the last handle closes.
    fn reset(&self) {
        for s in &self.sockets {
            let _ = SockRef::from(s).set_linger(Some(Duration::ZERO));
        }
        self.end();
    }

    /// Both peers get a FIN now.
    fn close(&self) {
        for s in &self.sockets {
            let _ = s.shutdown(Shutdown::Write);
        }
        self.end();
    }

    /// The proxy stops: an orderly close of both sides.
    pub fn stop(&self) {
        self.close();
    }

    /// Runs both directions until the connection ends. Each thread is
    /// joined (a scope alone only waits for their closures to return, not
    /// for the threads to exit).
    pub fn run(&self, index: u64, seed: u64) {
        std::thread::scope(|s| {
            let mut threads = Vec::new();
            for dir in 0..2 {
                let (tx, rx) = crossbeam_channel::bounded(LINE_CHUNKS);
                let rng = StdRng::seed_from_u64(seed ^ (index << 1 | dir as u64));
                threads.extend(
                    std::thread::Builder::new()
                        .name("faultproxy-rd".into())
                        .spawn_scoped(s, move || self.read_side(dir, rng, tx)),
                );
                threads.extend(
                    std::thread::Builder::new()
                        .name("faultproxy-wr".into())
                        .spawn_scoped(s, move || self.write_side(dir, rx)),
                );
            }
            for t in threads {
                let _ = t.join();
            }
        });
    }

    fn read_side(&self, dir: usize, rng: StdRng, tx: Sender<Chunk>) {
        let mut src = &self.sockets[dir];
        let mut cursor = DirCursor {
            rng,
            count: 0,
            last_delivery: Instant::now(),
            cut_base: None,
        };
        let mut buf = vec![0u8; READ_BYTES];
        loop {
            // A blackhole leaves the bytes in the kernel buffers, as a dead
            // route does: the sender sees neither progress nor an error.
            if !self.shared.wait(None, || self.is_ended(), |s| s.blackhole) {
                return;
            }
            let (n, then) = match src.read(&mut buf) {
                Ok(0) => (0, Then::Eof),
                Ok(n) => (n, Then::Go),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => (0, Then::Broken),
            };
            if self.is_ended() {
                return;
            }
            let (at, cut) = self.shared.plan(dir, &mut cursor, n);
            let (keep, then) = match cut {
                Some(c) => (c.keep, Then::Cut(c.kind)),
                None => (n, then),
            };
            let last = !matches!(then, Then::Go);
            let chunk = Chunk {
                data: buf[..keep].to_vec(),
                at,
                then,
            };
            if tx.send(chunk).is_err() || last {
                return;
            }
        }
    }

    fn write_side(&self, dir: usize, rx: Receiver<Chunk>) {
        let dst = &self.sockets[1 - dir];
        // Bandwidth pacing runs across chunks.
        let mut next_at = Instant::now();
        while let Ok(chunk) = rx.recv() {
            if !self
                .shared
                .wait(Some(chunk.at), || self.is_ended(), |_| false)
            {
                return;
            }
            if self.deliver(dir, dst, &chunk.data, &mut next_at).is_err() {
                // The destination is gone: so is the connection.
                self.reset();
                return;
            }
            let counters = &self.shared.counters;
            match chunk.then {
                Then::Go => continue,
                Then::Eof => {
                    let _ = dst.shutdown(Shutdown::Write);
                }
                Then::Cut(CutKind::Reset) | Then::Broken => {
                    if matches!(chunk.then, Then::Cut(_)) {
                        counters.resets.fetch_add(1, Ordering::SeqCst);
                    }
                    self.reset();
                }
                Then::Cut(CutKind::Close) => {
                    counters.closes.fetch_add(1, Ordering::SeqCst);
                    self.close();
                }
            }
            return;
        }
    }

    /// Writes `data` under the faults in force at each piece: blackhole,
    /// slices, bandwidth.
    fn deliver(
        &self,
        dir: usize,
        mut dst: &TcpStream,
        data: &[u8],
        next_at: &mut Instant,
    ) -> io::Result<()> {
        let mut sent = 0;
        while sent < data.len() {
            if !self.shared.wait(None, || self.is_ended(), |s| s.blackhole) {
                return Err(io::ErrorKind::ConnectionAborted.into());
            }
            let f = self.shared.lock().dirs[dir];
            let piece = f.slice.map_or(data.len(), |(max, _)| max.max(1));
            let mut piece = piece.min(data.len() - sent);
            if let Some(rate) = f.bytes_per_s {
                // Pieces of about 10 ms keep the rate smooth.
                piece = piece.min((rate / 100).max(1) as usize);
                if !self
                    .shared
                    .wait(Some(*next_at), || self.is_ended(), |_| false)
                {
                    return Err(io::ErrorKind::ConnectionAborted.into());
                }
                let cost = Duration::from_secs_f64(piece as f64 / rate.max(1) as f64);
                *next_at = (*next_at).max(Instant::now()) + cost;
            }
            // Counted before the write: once the peer has the bytes, so do
            // the stats (a test may read them as soon as the server replied).
            self.shared.counters.bytes[dir].fetch_add(piece as u64, Ordering::SeqCst);
            self.write_all(&mut dst, &data[sent..sent + piece])?;
            sent += piece;
            if let Some((_, delay)) = f.slice.filter(|(_, d)| !d.is_zero()) {
                let until = Some(Instant::now() + delay);
                if !self.shared.wait(until, || self.is_ended(), |_| false) {
                    return Err(io::ErrorKind::ConnectionAborted.into());
                }
            }
        }
        Ok(())
    }

    fn write_all(&self, dst: &mut &TcpStream, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match dst.write(buf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    if self.is_ended() {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
