//! Enrollment end to end: once per client lifetime, with password rotation.

mod e2e_support;

use e2e_support::*;
use serde_json::json;
use volt_daemon_client::{ClusterDaemonClient, DaemonClientErrorCode as Code, EnrollmentOptions};
use volt_testkit::{
    fail_on_unexpected_panics, MockServer, ServerEvent, DEFAULT_CLUSTER, DEFAULT_PASSWORD,
};

fn is_enrollment(e: &ServerEvent) -> bool {
    matches!(e, ServerEvent::Enrollment { .. })
}

fn enrolling_client(server: &MockServer, url: String) -> ClusterDaemonClient {
    client_with(server, |o| {
        o.credentials.enrollment_token = Some("one-time-token".into());
        o.credentials.installed_version = Some("1.4.2".into());
        o.enrollment = Some(EnrollmentOptions::new(url));
    })
}

#[test]
fn enrollment_rotates_the_password_and_every_registration_uses_the_new_one() {
    fail_on_unexpected_panics();
    let server = MockServer::builder()
        .enrollment_token("one-time-token")
        .rotate_password("rotated-pw")
        .start();
    let client = enrolling_client(&server, server.enrollment_url(DEFAULT_CLUSTER));
    let rec = Recorder::attach(&client);
    assert_eq!(client.daemon_password(), DEFAULT_PASSWORD);
    connect(&client);

    let cb = rec.expect("password rotated", |cb| {
        matches!(cb, Cb::PasswordRotated(_))
    });
    assert!(
        matches!(cb, Cb::PasswordRotated(ref p) if p == "rotated-pw"),
        "{cb:?}"
    );
    assert_eq!(client.daemon_password(), "rotated-pw");
    assert_eq!(
        server.cluster_password(DEFAULT_CLUSTER).as_deref(),
        Some("rotated-pw")
    );
    match server.expect_event_from(0, is_registered, WAIT).unwrap() {
        ServerEvent::Registered {
            installed_version, ..
        } => assert_eq!(installed_version.as_deref(), Some("1.4.2")),
        _ => unreachable!(),
    }
    let auths = registration_auths(&server);
    assert_eq!(auths.len(), 1);
    assert_eq!(auths[0]["daemonPassword"], json!("rotated-pw"));

    // A reconnection registers with the rotated password and does not enroll.
    let mark = server.mark();
    server.drop_transport(DEFAULT_CLUSTER).unwrap();
    wait_registered(&server, mark);
    rec.expect("disconnected", |cb| matches!(cb, Cb::Disconnected(_)));
    rec.expect("connected again", |cb| matches!(cb, Cb::Connected));
    // So does connect() after disconnect() (the token is used up: a second
    // enrollment would fail with 401).
    disconnect(&client);
    let mark = server.mark();
    connect(&client);
    wait_registered(&server, mark);
    let auths = registration_auths(&server);
    assert_eq!(auths.len(), 3, "{auths:?}");
    assert!(auths
        .iter()
        .all(|a| a["daemonPassword"] == json!("rotated-pw")));
    assert_eq!(
        count_events(&server, is_enrollment),
        1,
        "enrolled more than once"
    );
    assert_eq!(
        rec.log()
            .iter()
            .filter(|cb| matches!(cb, Cb::PasswordRotated(_)))
            .count(),
        1
    );
    disconnect(&client);
}

#[test]
fn a_relative_enrollment_url_resolves_against_the_server_url() {
    fail_on_unexpected_panics();
    let server = MockServer::builder()
        .enrollment_token("one-time-token")
        .start();
    let client = enrolling_client(
        &server,
        format!("/api/team-clusters/{DEFAULT_CLUSTER}/healthcheck"),
    );
    connect(&client);
    assert!(matches!(
        server.expect_event_from(0, is_enrollment, WAIT).unwrap(),
        ServerEvent::Enrollment { status: 200, .. }
    ));
    // No rotation: the password stays.
    assert_eq!(client.daemon_password(), DEFAULT_PASSWORD);
    disconnect(&client);
}

#[test]
fn enrollment_disabled_or_without_token_is_skipped() {
    fail_on_unexpected_panics();
    let server = MockServer::builder()
        .enrollment_token("one-time-token")
        .start();
    let client = client_with(&server, |o| {
        o.credentials.enrollment_token = Some("one-time-token".into());
        let mut e = EnrollmentOptions::new(server.enrollment_url(DEFAULT_CLUSTER));
        e.enabled = Some(false);
        o.enrollment = Some(e);
    });
    connect(&client);
    disconnect(&client);
    let client = client_with(&server, |o| {
        o.enrollment = Some(EnrollmentOptions::new(
            server.enrollment_url(DEFAULT_CLUSTER),
        ));
    });
    connect(&client);
    disconnect(&client);
    assert_eq!(count_events(&server, is_enrollment), 0);
}

#[test]
fn enrollment_enabled_without_a_token_is_a_configuration_error() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let mut o = options(&server);
    let mut e = EnrollmentOptions::new(server.enrollment_url(DEFAULT_CLUSTER));
    e.enabled = Some(true);
    o.enrollment = Some(e);
    let err = ClusterDaemonClient::new(o).unwrap_err();
    assert_eq!(err.code(), Code::EnrollmentFailed);
}
