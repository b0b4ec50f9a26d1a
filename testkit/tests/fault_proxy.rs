//! FaultProxy against a real echo server over real sockets: every fault,
//! the counters, and that dropping it joins its threads.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use volt_testkit::{wait_until, FaultProxy, Toward};

const LONG: Duration = Duration::from_secs(10);

/// The thread-count test must not overlap the others.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Echoes every connection until EOF or error; joined by the test.
struct Echo {
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    fn start(connections: usize) -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let thread = std::thread::spawn(move || {
            let mut served = Vec::new();
            for _ in 0..connections {
                let (mut s, _) = listener.accept().unwrap();
                served.push(std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = s.read(&mut buf) {
                        if s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }));
            }
            for t in served {
                t.join().unwrap();
            }
        });
        Echo {
            addr,
            thread: Some(thread),
        }
    }

    fn join(mut self) {
        self.thread.take().unwrap().join().unwrap();
    }
}

fn connect(proxy: &FaultProxy) -> TcpStream {
    let s = TcpStream::connect(proxy.local_addr()).unwrap();
    s.set_read_timeout(Some(LONG)).unwrap();
    s
}

fn round_trip(s: &mut TcpStream, data: &[u8]) -> Vec<u8> {
    s.write_all(data).unwrap();
    let mut got = vec![0u8; data.len()];
    s.read_exact(&mut got).unwrap();
    got
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

fn proxy_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|n| n.starts_with("faultproxy"))
        .count()
}

/// Runs `test` with a proxy in front of an echo server that serves
/// `connections`, then drops the proxy (closing what it still forwards)
/// and joins the echo server: every thread either started is joined.
fn through_proxy_to_echo(connections: usize, test: impl FnOnce(&FaultProxy)) {
    let _s = serial();
    let echo = Echo::start(connections);
    let proxy = FaultProxy::start(echo.addr).unwrap();
    test(&proxy);
    drop(proxy);
    echo.join();
}

#[test]
fn forwards_both_ways_and_counts_bytes_and_connections() {
    through_proxy_to_echo(2, |proxy| {
        for _ in 0..2 {
            let mut c = connect(proxy);
            assert_eq!(round_trip(&mut c, b"ping"), b"ping");
        }
        let stats = proxy.stats();
        assert_eq!(stats.bytes_to_server, 8);
        assert_eq!(stats.bytes_to_client, 8);
        assert_eq!(stats.connections_total, 2);
        assert!(wait_until(LONG, || proxy.stats().connections_open == 0));
    });
}

#[test]
fn one_byte_slices_both_ways_keep_every_byte_in_order() {
    through_proxy_to_echo(1, |proxy| {
        proxy.slice(Toward::Both, 1, Duration::ZERO);
        let mut c = connect(proxy);
        let data = pattern(20_000);
        assert_eq!(round_trip(&mut c, &data), data);
    });
}

#[test]
fn blackhole_holds_bytes_without_closing_and_heal_delivers_them() {
    through_proxy_to_echo(1, |proxy| {
        let mut c = connect(proxy);
        assert_eq!(round_trip(&mut c, b"before"), b"before");
        proxy.blackhole();
        c.write_all(b"during").unwrap();
        // Half-open: neither data nor EOF nor error for a while.
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 6];
        let err = c.read(&mut buf).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{err}"
        );
        proxy.heal();
        c.set_read_timeout(Some(LONG)).unwrap();
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"during");
    });
}

#[test]
fn reset_after_delivers_exactly_the_bytes_before_the_cut_then_resets_both_sides() {
    through_proxy_to_echo(1, |proxy| {
        let mut c = connect(proxy);
        proxy.reset_after(Toward::Client, 5);
        c.write_all(b"0123456789").unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 16];
        let err = loop {
            match c.read(&mut buf) {
                Ok(0) => panic!("an orderly close, not a reset, after {got:?}"),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
        assert!(got.len() <= 5 && b"01234".starts_with(&got), "{got:?}");
        assert!(wait_until(LONG, || proxy.stats().resets == 1));
        // One shot: a new connection is not cut.
        let mut c2 = TcpStream::connect(proxy.local_addr());
        drop(c2.as_mut().map(|_| ()));
    });
}

#[test]
fn close_after_delivers_exactly_the_bytes_then_an_orderly_close() {
    through_proxy_to_echo(1, |proxy| {
        let mut c = connect(proxy);
        proxy.close_after(Toward::Server, 4);
        c.write_all(b"abcdefgh").unwrap();
        let mut got = Vec::new();
        let _ = c.read_to_end(&mut got);
        assert!(b"abcd".starts_with(&got), "{got:?}");
        assert!(wait_until(LONG, || proxy.stats().closes == 1));
        assert_eq!(proxy.stats().bytes_to_server, 4);
    });
}

#[test]
fn refuse_new_resets_new_connections_and_leaves_open_ones_working() {
    through_proxy_to_echo(1, |proxy| {
        let mut open = connect(proxy);
        assert_eq!(round_trip(&mut open, b"x"), b"x");
        proxy.refuse_new();
        let mut refused = connect(proxy);
        let mut buf = [0u8; 1];
        let outcome = refused.read(&mut buf);
        assert!(matches!(outcome, Ok(0) | Err(_)), "{outcome:?}");
        assert!(wait_until(LONG, || proxy.stats().refused == 1));
        assert_eq!(round_trip(&mut open, b"y"), b"y");
        assert_eq!(proxy.stats().connections_total, 1);
    });
}

#[test]
fn latency_delays_each_direction() {
    through_proxy_to_echo(1, |proxy| {
        let mut c = connect(proxy);
        proxy.latency(
            Toward::Both,
            Duration::from_millis(60),
            Duration::from_millis(20),
        );
        for _ in 0..5 {
            let started = Instant::now();
            assert_eq!(round_trip(&mut c, b"t"), b"t");
            // Two legs of at least 40 ms each.
            assert!(
                started.elapsed() >= Duration::from_millis(80),
                "{:?}",
                started.elapsed()
            );
        }
    });
}

#[test]
fn bandwidth_limits_the_rate() {
    through_proxy_to_echo(1, |proxy| {
        proxy.bandwidth(Toward::Server, 256 * 1024);
        let mut c = connect(proxy);
        let data = pattern(128 * 1024);
        let started = Instant::now();
        let writer = {
            let mut w = c.try_clone().unwrap();
            let data = data.clone();
            std::thread::spawn(move || w.write_all(&data).unwrap())
        };
        let mut got = vec![0u8; data.len()];
        c.read_exact(&mut got).unwrap();
        writer.join().unwrap();
        assert_eq!(got, data);
        // 128 KiB at 256 KiB/s: half a second (the first piece goes at once).
        assert!(
            started.elapsed() >= Duration::from_millis(400),
            "{:?}",
            started.elapsed()
        );
    });
}

#[test]
fn drop_joins_every_thread_even_with_connections_blackholed() {
    let _s = serial();
    let echo = Echo::start(3);
    let proxy = FaultProxy::start(echo.addr).unwrap();
    let mut clients: Vec<TcpStream> = (0..3).map(|_| connect(&proxy)).collect();
    for c in &mut clients {
        assert_eq!(round_trip(c, b"z"), b"z");
    }
    proxy.blackhole();
    for c in &mut clients {
        c.write_all(b"held").unwrap();
    }
    assert!(
        proxy_threads() > 3 * 5,
        "an acceptor, and 5 threads per connection"
    );
    drop(proxy);
    assert_eq!(proxy_threads(), 0, "every proxy thread is joined on drop");
    drop(clients);
    echo.join();
}
