//! Failover across `control_socket_url` and `socket.fallback_urls`, end to
//! end with two mock server instances: one is killed and the client moves
//! on, then the first comes back; the URL that registered last is tried
//! first; the backoff grows per full round of URLs.

mod e2e_support;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use crossbeam_channel::Receiver;
use e2e_support::*;
use volt_daemon_client::{ClusterDaemonClient, ConnectionState as S, StateChange};
use volt_testkit::{fail_on_unexpected_panics, wait_until, MockServer, DEFAULT_CLUSTER};

fn start_on(addr: SocketAddr) -> MockServer {
    MockServer::builder().listen(addr).start()
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// A client of `first` with `fallback` as its one fallback URL.
fn failover_client(first: &MockServer, fallback: String) -> ClusterDaemonClient {
    client_with(first, |o| o.socket.fallback_urls = vec![fallback])
}

fn registrations(server: &MockServer) -> usize {
    count_events(server, is_registered)
}

/// Waits for a `Ready` change on `url`.
fn ready_on(rx: &Receiver<StateChange>, url: &str) {
    loop {
        let c = recv(rx, &format!("ready on {url}"), WAIT);
        if let S::Ready { url: u, .. } = &c.state {
            if u == url {
                return;
            }
        }
    }
}

fn changes(client: &ClusterDaemonClient) -> Receiver<StateChange> {
    let (tx, rx) = crossbeam_channel::unbounded();
    client.on_state_change(move |c| {
        let _ = tx.send(c.clone());
    });
    rx
}

#[test]
fn a_killed_server_is_left_for_the_fallback_and_taken_back_when_it_returns() {
    fail_on_unexpected_panics();
    let a = MockServer::start();
    let a_addr = a.local_addr();
    let a_url = a.url();
    let b = MockServer::start();
    let client = failover_client(&a, b.url());
    let rx = changes(&client);
    connect(&client);
    assert_eq!(client.state().url(), Some(a_url.as_str()));

    drop(a); // killed
    ready_on(&rx, &b.url());
    assert_eq!(registrations(&b), 1);
    assert!(client.is_ready());
    let reply = b.try_dispatch(DEFAULT_CLUSTER, "nope", serde_json::Value::Null);
    assert!(
        reply.is_ok(),
        "the fallback serves reverse commands: {reply:?}"
    );

    let a = start_on(a_addr); // back
    drop(b);
    ready_on(&rx, &a_url);
    assert_eq!(registrations(&a), 1);
    assert_eq!(client.state().url(), Some(a_url.as_str()));
    disconnect(&client);
}

#[test]
fn the_url_that_registered_last_is_tried_first_after_a_drop() {
    fail_on_unexpected_panics();
    let b = MockServer::start();
    let a_addr = free_addr();
    let a_url = format!("http://{a_addr}");
    // Nothing on the first URL yet: even a connect() that does not retry
    // walks to the fallback.
    let client = client_with(&b, |o| {
        o.control_socket_url = a_url.clone();
        o.socket.fallback_urls = vec![b.url()];
    });
    let rec = Recorder::attach(&client);
    connect(&client);
    assert_eq!(client.state().url(), Some(b.url().as_str()));
    rec.expect("the first URL's failure on on_error", |cb| {
        cb.is_error(volt_daemon_client::DaemonClientErrorCode::SocketConnectionFailed)
    });
    let a = start_on(a_addr);
    let mark = b.mark();
    b.drop_transport(DEFAULT_CLUSTER).unwrap();
    wait_registered(&b, mark);
    assert!(wait_until(WAIT, || client.state().is_ready()));
    assert_eq!(registrations(&a), 0, "the first URL was not tried");
    assert_eq!(client.state().url(), Some(b.url().as_str()));
    disconnect(&client);
}

#[test]
fn the_backoff_grows_per_full_round_of_urls_not_per_url() {
    fail_on_unexpected_panics();
    let a = MockServer::start();
    let b_url = format!("http://{}", free_addr());
    let client = client_with(&a, |o| {
        o.socket.fallback_urls = vec![b_url.clone()];
        o.socket.randomization_factor = 0.0;
        o.socket.reconnect_base_delay = Duration::from_millis(20);
        o.socket.reconnect_max_delay = Duration::from_millis(1000);
        o.socket.max_reconnect_attempts = Some(5);
    });
    connect(&client);
    let rx = changes(&client);
    let a_url = a.url();
    drop(a);
    let mut delays = Vec::new();
    let mut urls = Vec::new();
    loop {
        let c = recv(&rx, "a state change", WAIT);
        match c.state {
            S::Reconnecting { delay, .. } => delays.push(delay.as_millis()),
            S::Connecting { url, .. } => urls.push(url),
            S::GaveUp { attempts } => {
                assert_eq!(attempts, 5);
                break;
            }
            _ => {}
        }
    }
    assert_eq!(delays, [20, 20, 40, 40, 80]);
    let (a, b) = (a_url.as_str(), b_url.as_str());
    assert_eq!(urls, [a, b, a, b, a]);
    disconnect(&client);
}
