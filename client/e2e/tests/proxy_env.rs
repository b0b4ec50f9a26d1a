//! Issue 14: the proxy environment variables, read by the real process.
//! The environment is process-global, so this binary holds one test only;
//! which variable wins is unit-tested on a map (`client/src/proxy/env.rs`).

mod e2e_support;
mod proxy_support;

use std::time::Duration;

use e2e_support::*;
use proxy_support::Proxy;
use volt_daemon_client::{EnrollmentOptions, ProxyOptions};
use volt_testkit::{fail_on_unexpected_panics, MockServer, DEFAULT_CLUSTER};

const NAMES: [&str; 8] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

#[test]
fn the_default_options_follow_http_proxy_and_no_proxy_from_the_environment() {
    fail_on_unexpected_panics();
    for name in NAMES {
        std::env::remove_var(name);
    }
    let proxy = Proxy::start(None);
    let server = MockServer::builder()
        .enrollment_token("one-time-token")
        .start();
    let tunnel = format!("CONNECT 127.0.0.1:{}", server.local_addr().port());
    let tunnels = || {
        proxy
            .requests()
            .iter()
            .filter(|r| r.starts_with(&tunnel))
            .count()
    };
    let from_env = |o: &mut volt_daemon_client::ClusterDaemonClientOptions| {
        o.socket.proxy = ProxyOptions::from_environment();
    };

    // HTTP_PROXY: ws and http (enrollment) both take it.
    std::env::set_var("HTTP_PROXY", proxy.url());
    let client = client_with(&server, |o| {
        from_env(o);
        o.credentials.enrollment_token = Some("one-time-token".into());
        o.enrollment = Some(EnrollmentOptions::new(
            server.enrollment_url(DEFAULT_CLUSTER),
        ));
    });
    connect(&client);
    disconnect(&client);
    assert!(
        volt_testkit::wait_until(Duration::from_secs(5), || tunnels() == 2),
        "{:?}",
        proxy.requests()
    );

    // NO_PROXY names the server: direct.
    std::env::set_var("no_proxy", "example.invalid, 127.0.0.0/8");
    disconnect(&connected_with(&server, from_env));
    std::env::remove_var("no_proxy");
    // ProxyOptions::none() ignores the environment: direct.
    disconnect(&connected_with(&server, |o| {
        o.socket.proxy = ProxyOptions::none()
    }));
    // HTTPS_PROXY is for wss/https only: a ws connection goes direct.
    std::env::remove_var("HTTP_PROXY");
    std::env::set_var("HTTPS_PROXY", proxy.url());
    disconnect(&connected_with(&server, from_env));
    assert_eq!(tunnels(), 2, "{:?}", proxy.requests());

    // ALL_PROXY covers ws too.
    std::env::set_var("ALL_PROXY", proxy.url());
    disconnect(&connected_with(&server, from_env));
    assert!(
        volt_testkit::wait_until(Duration::from_secs(5), || tunnels() == 3),
        "{:?}",
        proxy.requests()
    );
    for name in NAMES {
        std::env::remove_var(name);
    }
}
