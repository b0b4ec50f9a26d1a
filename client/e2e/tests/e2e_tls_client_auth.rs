//! Issue 14, client certificates (mutual TLS): the mock server requires a
//! client certificate from its client CA (`tls_client_ca`, the binary's
//! `--tls-client-ca`). A daemon with `TlsOptions::with_client_identity`
//! enrolls and connects, and `GET /admin/daemons` shows its verified
//! subject; without a certificate, or with one from another CA, the socket
//! and enrollment are refused with the TLS reason in the message.
//!
//! Runs on both TLS backends (`scripts/test` runs it again with
//! `--no-default-features --features rustls`).

mod tls_support;

use std::time::Duration;

use volt_daemon_client::{
    ClusterDaemonClient, ClusterDaemonClientOptions, DaemonClientErrorCode as Code,
};
use volt_testkit::{fail_on_unexpected_panics, unexpected_panics, MockServer, ServerEvent};

use tls_support::{assert_refused, ca, ca_other, tls_options, Ca};

const LONG: Duration = Duration::from_secs(10);

/// A TLS server for 127.0.0.1 whose certificate and client CA are `ca`'s.
fn mtls_server(ca: &Ca) -> MockServer {
    let cert = ca.leaf(&["localhost"], &["127.0.0.1"]);
    MockServer::builder()
        .tls(&cert.0, &cert.1)
        .tls_client_ca(&ca.pem())
        .cluster("c-tls", "pw-tls")
        .enrollment_token("tok-tls")
        .start()
}

/// Options trusting `ca`, presenting `identity` when there is one.
fn options(
    server: &MockServer,
    ca: &Ca,
    identity: Option<&(Vec<u8>, Vec<u8>)>,
    enroll: bool,
) -> ClusterDaemonClientOptions {
    let mut o = tls_options(server, "127.0.0.1", &[ca.pem()], enroll);
    if let Some((cert, key)) = identity {
        o.socket.tls = o.socket.tls.with_client_identity(cert.clone(), key.clone());
    }
    o
}

/// The server's alert for a missing client certificate, as each backend
/// words it. With TLS 1.3 the server's verdict comes after the
/// client's Finished, so it surfaces in the first read: the WebSocket
/// upgrade, or the enrollment response.
const NO_CERTIFICATE: &[&str] = &["alert certificate required", "alert: certificaterequired"];
/// The server's alert for a client certificate from an unknown CA.
const UNKNOWN_CA: &[&str] = &["alert unknown ca", "alert: unknownca"];

#[test]
fn a_client_certificate_from_the_client_ca_enrolls_connects_and_shows_its_subject() {
    fail_on_unexpected_panics();
    let ca = ca("volt mTLS CA");
    let server = mtls_server(&ca);
    let identity = ca.client("daemon-7.c-tls");
    let client = ClusterDaemonClient::new(options(&server, &ca, Some(&identity), true)).unwrap();
    client.connect().unwrap();
    assert!(client.is_ready());
    server
        .expect_event(
            |e| matches!(e, ServerEvent::Enrollment { status: 200, .. }),
            LONG,
        )
        .unwrap();
    let daemons = server.daemons();
    assert_eq!(daemons.len(), 1);
    assert_eq!(
        daemons[0].client_certificate_subject.as_deref(),
        Some("CN=daemon-7.c-tls")
    );
    // `GET /admin/daemons` is this list as JSON.
    let json = serde_json::to_value(&daemons).unwrap();
    assert_eq!(json[0]["clientCertificateSubject"], "CN=daemon-7.c-tls");
    client.disconnect();
    assert_eq!(unexpected_panics(), 0);
}

#[test]
fn no_client_certificate_is_refused_for_the_socket_and_enrollment() {
    fail_on_unexpected_panics();
    let ca = ca("volt mTLS CA");
    let server = mtls_server(&ca);
    assert_refused(
        &server,
        options(&server, &ca, None, false),
        Code::SocketConnectionFailed,
        NO_CERTIFICATE,
    );
    assert_refused(
        &server,
        options(&server, &ca, None, true),
        Code::EnrollmentFailed,
        NO_CERTIFICATE,
    );
    assert_eq!(unexpected_panics(), 0);
}

#[test]
fn a_client_certificate_from_another_ca_is_refused_for_the_socket_and_enrollment() {
    fail_on_unexpected_panics();
    let ca = ca("volt mTLS CA");
    let server = mtls_server(&ca);
    let foreign = ca_other().client("daemon-7.c-tls");
    assert_refused(
        &server,
        options(&server, &ca, Some(&foreign), false),
        Code::SocketConnectionFailed,
        UNKNOWN_CA,
    );
    assert_refused(
        &server,
        options(&server, &ca, Some(&foreign), true),
        Code::EnrollmentFailed,
        UNKNOWN_CA,
    );
    assert_eq!(unexpected_panics(), 0);
}

#[test]
fn a_client_key_that_is_not_pkcs8_pem_fails_without_quoting_it() {
    fail_on_unexpected_panics();
    let ca = ca("volt mTLS CA");
    let server = mtls_server(&ca);
    let (cert, _) = ca.client("daemon-7.c-tls");
    let secret = "-----BEGIN PRIVATE KEY-----\nnot-a-key-8f3a1c\n-----END PRIVATE KEY-----\n";
    let mut o = options(&server, &ca, None, false);
    o.socket.tls = o
        .socket
        .tls
        .with_client_identity(cert, secret.as_bytes().to_vec());
    assert!(!format!("{o:?}").contains("not-a-key-8f3a1c"));
    let client = ClusterDaemonClient::new(o).unwrap();
    let err = client.connect().unwrap_err();
    assert_eq!(err.code(), Code::SocketConnectionFailed, "{err}");
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("client"), "{shown}");
    assert!(!shown.contains("not-a-key-8f3a1c"), "{shown}");
    client.disconnect();
    assert_eq!(unexpected_panics(), 0);
}
