//! Issue 14, HTTP proxies: the control socket and enrollment go through a
//! real proxy (the npm package `proxy`, see `proxy_support`) by a CONNECT
//! tunnel; credentials, refusals, `NO_PROXY`, and a proxy that dies while
//! connected. TLS inside the tunnel is in `security.rs` (it needs the test
//! CA); the environment variables in `proxy_env.rs` (a process of its own).

mod e2e_support;
mod proxy_support;

use std::time::Duration;

use e2e_support::*;
use proxy_support::Proxy;
use volt_daemon_client::{
    ClusterDaemonClient, DaemonClientErrorCode as Code, EnrollmentOptions, ProxyOptions,
};
use volt_testkit::{fail_on_unexpected_panics, MockServer, ServerEvent, DEFAULT_CLUSTER};

/// How long the proxy may take to log a request it handled.
const SEEN: Duration = Duration::from_secs(5);

fn target(server: &MockServer) -> String {
    format!("CONNECT 127.0.0.1:{}", server.local_addr().port())
}

fn through(
    proxy: ProxyOptions,
) -> impl FnOnce(&mut volt_daemon_client::ClusterDaemonClientOptions) {
    move |o| o.socket.proxy = proxy
}

#[test]
fn a_ws_connection_goes_through_the_proxy_tunnel() {
    fail_on_unexpected_panics();
    let proxy = Proxy::start(None);
    let server = MockServer::start();
    let client = connected_with(&server, through(ProxyOptions::new(proxy.url())));
    proxy.expect(&format!("{} allowed", target(&server)), SEEN);
    // The tunnel carries the whole session: a reverse command round trip.
    client.register_handler_fn("echo", |payload, _| {
        Ok(volt_daemon_client::CommandResult::data(payload))
    });
    let reply = server.dispatch(DEFAULT_CLUSTER, "echo", serde_json::json!({"via": "proxy"}));
    assert_eq!(reply.status, 200, "{reply:?}");
    disconnect(&client);
}

#[test]
fn basic_credentials_the_proxy_accepts_open_the_tunnel() {
    fail_on_unexpected_panics();
    let proxy = Proxy::start(Some("daemon:pr0xy-pw"));
    let server = MockServer::start();
    let options = ProxyOptions::new(proxy.url()).with_credentials("daemon", "pr0xy-pw");
    let client = connected_with(&server, through(options));
    proxy.expect(&format!("{} allowed", target(&server)), SEEN);
    disconnect(&client);
    // Credentials in the URL work the same.
    let in_url = ProxyOptions::new(format!("http://daemon:pr0xy-pw@127.0.0.1:{}", proxy.port()));
    let client = connected_with(&server, through(in_url));
    disconnect(&client);
}

#[test]
fn credentials_the_proxy_refuses_fail_connect_naming_the_proxy_and_407_only() {
    fail_on_unexpected_panics();
    let proxy = Proxy::start(Some("daemon:pr0xy-pw"));
    let server = MockServer::start();
    for options in [
        ProxyOptions::new(proxy.url()).with_credentials("daemon", "wr0ng-pw"),
        ProxyOptions::new(proxy.url()),
    ] {
        let client = client_with(&server, through(options));
        let c = client.clone();
        let err = bounded("connect()", WAIT * 2, move || c.connect()).unwrap_err();
        assert_eq!(err.code(), Code::SocketConnectionFailed, "{err}");
        let shown = err.to_string();
        assert!(
            shown.contains(&format!("127.0.0.1:{}", proxy.port())),
            "{shown}"
        );
        assert!(shown.contains("HTTP 407"), "{shown}");
        assert!(
            !shown.contains("wr0ng-pw") && !shown.contains("pr0xy-pw"),
            "{shown}"
        );
        assert!(!client.is_ready());
    }
    proxy.expect(&format!("{} denied", target(&server)), SEEN);
    let registered = |e: &ServerEvent| matches!(e, ServerEvent::Registered { .. });
    assert_eq!(count_events(&server, registered), 0);
}

fn enrolling(
    server: &MockServer,
    socket: ProxyOptions,
    enrollment: Option<ProxyOptions>,
) -> ClusterDaemonClient {
    client_with(server, |o| {
        o.credentials.enrollment_token = Some("one-time-token".into());
        o.enrollment = Some(
            EnrollmentOptions::new(server.enrollment_url(DEFAULT_CLUSTER)).with_proxy(enrollment),
        );
        o.socket.proxy = socket;
    })
}

#[test]
fn enrollment_and_the_socket_both_go_through_the_socket_proxy() {
    fail_on_unexpected_panics();
    let proxy = Proxy::start(None);
    let server = MockServer::builder()
        .enrollment_token("one-time-token")
        .start();
    let client = enrolling(&server, ProxyOptions::new(proxy.url()), None);
    connect(&client);
    let enrolled = |e: &ServerEvent| matches!(e, ServerEvent::Enrollment { status: 200, .. });
    assert_eq!(count_events(&server, enrolled), 1);
    // Two tunnels: the enrollment request, then the control socket.
    let tunnels = || {
        proxy
            .requests()
            .iter()
            .filter(|l| l.starts_with(&target(&server)) && l.ends_with("allowed"))
            .count()
    };
    assert!(
        volt_testkit::wait_until(SEEN, || tunnels() == 2),
        "{:?}",
        proxy.requests()
    );
    disconnect(&client);
}

#[test]
fn an_enrollment_proxy_that_refuses_fails_enrollment_naming_the_proxy_and_407() {
    fail_on_unexpected_panics();
    let good = Proxy::start(None);
    let strict = Proxy::start(Some("daemon:pr0xy-pw"));
    let server = MockServer::builder()
        .enrollment_token("one-time-token")
        .start();
    // Enrollment has its own proxy, which refuses; the socket's is never used.
    let refused = ProxyOptions::new(strict.url()).with_credentials("daemon", "wr0ng-pw");
    let client = enrolling(&server, ProxyOptions::new(good.url()), Some(refused));
    let c = client.clone();
    let err = bounded("connect()", WAIT * 2, move || c.connect()).unwrap_err();
    assert_eq!(err.code(), Code::EnrollmentFailed, "{err}");
    let shown = err.to_string();
    assert!(
        shown.contains(&format!("127.0.0.1:{}", strict.port())) && shown.contains("HTTP 407"),
        "{shown}"
    );
    assert!(
        !shown.contains("pr0xy-pw") && !shown.contains("wr0ng-pw"),
        "{shown}"
    );
    assert_eq!(
        err.status(),
        None,
        "the 407 is the proxy's, not the server's: {err}"
    );
    strict.expect("denied", SEEN);
    assert!(good.requests().is_empty(), "{:?}", good.requests());
}

#[test]
fn a_no_proxy_match_connects_directly() {
    fail_on_unexpected_panics();
    let proxy = Proxy::start(None);
    let server = MockServer::start();
    let options = ProxyOptions::new(proxy.url())
        .with_no_proxy(vec!["10.0.0.0/8".into(), "127.0.0.0/8".into()]);
    let client = connected_with(&server, through(options));
    disconnect(&client);
    // A port-restricted entry for another port does not match.
    let other_port = ProxyOptions::new(proxy.url()).with_no_proxy(vec!["127.0.0.1:1".into()]);
    assert!(
        proxy.requests().is_empty(),
        "bypassed, yet {:?}",
        proxy.requests()
    );
    let client = connected_with(&server, through(other_port));
    proxy.expect(&target(&server), SEEN);
    disconnect(&client);
}

#[test]
fn after_the_proxy_dies_the_client_reconnects_through_it_once_it_is_back() {
    fail_on_unexpected_panics();
    let proxy = Proxy::start(None);
    let port = proxy.port();
    let server = MockServer::start();
    let client = client_with(&server, through(ProxyOptions::new(proxy.url())));
    let rec = Recorder::attach(&client);
    connect(&client);
    let mark = server.mark();
    proxy.kill();
    rec.expect("disconnected", |cb| matches!(cb, Cb::Disconnected(_)));
    assert!(!client.is_ready());
    // Attempts fail while the proxy is down; then it is back on its port.
    let back = Proxy::start_on(port, None);
    wait_registered(&server, mark);
    back.expect(&format!("{} allowed", target(&server)), SEEN);
    assert!(volt_testkit::wait_until(WAIT, || client.is_ready()));
    disconnect(&client);
}

#[test]
fn the_connect_timeout_covers_a_proxy_that_never_answers() {
    fail_on_unexpected_panics();
    // A listener that accepts and stays silent: the tunnel never opens.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = MockServer::start();
    let client = client_with(&server, |o| {
        o.socket.proxy = ProxyOptions::new(format!("http://{}", silent.local_addr().unwrap()));
        o.socket.connect_timeout = Duration::from_millis(500);
    });
    let err = bounded("connect()", WAIT, move || client.connect()).unwrap_err();
    assert_eq!(err.code(), Code::SocketConnectionFailed, "{err}");
    assert!(
        err.message().contains("timed out (connect_timeout)"),
        "{err}"
    );
    assert!(err.message().contains("proxy"), "{err}");
}
