//! Issue 7, security: TLS is verified (trusted roots and host names) for both
//! the control socket (`wss://`) and enrollment (`https://`), and no secret
//! (daemon password, old or rotated, or enrollment token) shows in `Debug`
//! output, error `Display`, or the logs at any level.
//!
//! The certificates are generated here at run time with openssl (test-only;
//! nothing is committed).

mod proxy_support;
mod reliability_support;

use std::sync::{Mutex, Once};
use std::time::Duration;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509Name, X509};
use proxy_support::Proxy;
use reliability_support::{record, Ev};
use serde_json::json;
use volt_daemon_client::{
    ClusterDaemonClient, ClusterDaemonClientOptions, CommandResult, DaemonClientError,
    DaemonClientErrorCode as Code, DaemonCredentials, EnrollmentOptions, ProxyOptions, TlsOptions,
};
use volt_testkit::{
    fail_on_unexpected_panics, unexpected_panics, MockServer, Responder, ServerEvent,
};

const LONG: Duration = Duration::from_secs(10);

struct Ca {
    cert: X509,
    key: PKey<Private>,
}

fn name(cn: &str) -> openssl::x509::X509Name {
    let mut n = X509Name::builder().unwrap();
    n.append_entry_by_text("CN", cn).unwrap();
    n.build()
}

fn serial() -> openssl::asn1::Asn1Integer {
    let mut bn = BigNum::new().unwrap();
    bn.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    bn.to_asn1_integer().unwrap()
}

fn key() -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
}

/// A test certificate authority.
fn ca(cn: &str) -> Ca {
    let key = key();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&serial()).unwrap();
    b.set_subject_name(&name(cn)).unwrap();
    b.set_issuer_name(&name(cn)).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
        .unwrap();
    b.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()
            .unwrap(),
    )
    .unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    Ca {
        cert: b.build(),
        key,
    }
}

impl Ca {
    fn pem(&self) -> Vec<u8> {
        self.cert.to_pem().unwrap()
    }

    /// A server certificate signed by this CA, valid for exactly these
    /// names and addresses: (chain PEM, PKCS #8 key PEM).
    fn leaf(&self, dns: &[&str], ips: &[&str]) -> (Vec<u8>, Vec<u8>) {
        let key = key();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&serial()).unwrap();
        b.set_subject_name(&name(dns.first().or(ips.first()).unwrap()))
            .unwrap();
        b.set_issuer_name(self.cert.subject_name()).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
            .unwrap();
        let mut san = SubjectAlternativeName::new();
        for d in dns {
            san.dns(d);
        }
        for ip in ips {
            san.ip(ip);
        }
        let san = san
            .build(&b.x509v3_context(Some(&self.cert), None))
            .unwrap();
        b.append_extension(san).unwrap();
        b.sign(&self.key, MessageDigest::sha256()).unwrap();
        let mut chain = b.build().to_pem().unwrap();
        chain.extend(self.pem());
        (chain, key.private_key_to_pem_pkcs8().unwrap())
    }
}

fn tls_server(cert: &(Vec<u8>, Vec<u8>)) -> MockServer {
    MockServer::builder()
        .tls(&cert.0, &cert.1)
        .cluster("c-tls", "pw-tls")
        .enrollment_token("tok-tls")
        .start()
}

/// Options for `server` reached at `host`, trusting `roots`, with
/// enrollment when `enroll`.
fn tls_options(
    server: &MockServer,
    host: &str,
    roots: &[Vec<u8>],
    enroll: bool,
) -> ClusterDaemonClientOptions {
    let url = format!("https://{host}:{}", server.local_addr().port());
    let mut creds = DaemonCredentials::new("c-tls", "pw-tls");
    if enroll {
        creds = creds.with_enrollment_token("tok-tls");
    }
    let mut o = ClusterDaemonClientOptions::new(&url, &url, creds);
    if enroll {
        o.enrollment = Some(EnrollmentOptions::new(
            "/api/team-clusters/c-tls/healthcheck",
        ));
    }
    o.socket.connect_timeout = Duration::from_secs(5);
    o.socket.reconnect = false;
    o.socket.tls = TlsOptions::default();
    for r in roots {
        o.socket.tls = o.socket.tls.with_root_certificate_pem(r.clone());
    }
    o
}

/// connect() must fail with `code`, and the server must see no registration.
fn assert_refused(server: &MockServer, options: ClusterDaemonClientOptions, code: Code) {
    let client = ClusterDaemonClient::new(options).unwrap();
    let err = client.connect().unwrap_err();
    assert_eq!(err.code(), code, "{err}");
    assert!(!client.is_ready());
    client.disconnect();
    assert!(!server.events().iter().any(|e| matches!(
        e,
        ServerEvent::Registered { .. } | ServerEvent::Enrollment { .. }
    )));
}

#[test]
fn wss_and_https_enrollment_work_with_a_test_ca_given_through_tls_options() {
    fail_on_unexpected_panics();
    let ca = ca("volt test CA");
    let server = tls_server(&ca.leaf(&["localhost"], &["127.0.0.1"]));
    assert!(server.url().starts_with("https://"));
    for host in ["127.0.0.1", "localhost"] {
        let mut options = tls_options(&server, host, &[ca.pem()], host == "127.0.0.1");
        options.socket.reconnect = true;
        let client = ClusterDaemonClient::new(options).unwrap();
        client.register_handler_fn("echo", |p, _| Ok(CommandResult::data(p)));
        client.connect().unwrap();
        assert!(client.is_ready());
        assert_eq!(
            client.send_command("echo", Some(json!(host))).unwrap(),
            Some(json!(host))
        );
        let r = server.dispatch("c-tls", "echo", json!("back"));
        assert_eq!(r.status, 200);
        client.disconnect();
    }
    server
        .expect_event(
            |e| matches!(e, ServerEvent::Enrollment { status: 200, .. }),
            LONG,
        )
        .unwrap();
    assert_eq!(unexpected_panics(), 0);
}

#[test]
fn untrusted_certificate_fails_the_socket_and_enrollment() {
    fail_on_unexpected_panics();
    let ca = ca("volt test CA");
    let other = ca_other();
    let server = tls_server(&ca.leaf(&["localhost"], &["127.0.0.1"]));
    // Trusting another CA, or only the system's roots.
    for roots in [vec![other.pem()], vec![]] {
        assert_refused(
            &server,
            tls_options(&server, "127.0.0.1", &roots, false),
            Code::SocketConnectionFailed,
        );
        assert_refused(
            &server,
            tls_options(&server, "127.0.0.1", &roots, true),
            Code::EnrollmentFailed,
        );
    }
    assert_eq!(unexpected_panics(), 0);
}

fn ca_other() -> Ca {
    ca("some other CA")
}

#[test]
fn wrong_host_name_fails_the_socket_and_enrollment() {
    fail_on_unexpected_panics();
    let ca = ca("volt test CA");
    // A certificate for another name, reached at 127.0.0.1.
    let server = tls_server(&ca.leaf(&["volt.example.com"], &[]));
    assert_refused(
        &server,
        tls_options(&server, "127.0.0.1", &[ca.pem()], false),
        Code::SocketConnectionFailed,
    );
    assert_refused(
        &server,
        tls_options(&server, "127.0.0.1", &[ca.pem()], true),
        Code::EnrollmentFailed,
    );
    // A certificate only for 127.0.0.1, reached as localhost.
    let server = tls_server(&ca.leaf(&[], &["127.0.0.1"]));
    assert_refused(
        &server,
        tls_options(&server, "localhost", &[ca.pem()], false),
        Code::SocketConnectionFailed,
    );
    assert_refused(
        &server,
        tls_options(&server, "localhost", &[ca.pem()], true),
        Code::EnrollmentFailed,
    );
    assert_eq!(unexpected_panics(), 0);
}

/// Every log record of the process, as `LEVEL target: message` lines.
static LOGS: Mutex<String> = Mutex::new(String::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        use std::fmt::Write;
        let mut logs = LOGS.lock().unwrap_or_else(|p| p.into_inner());
        // The mock server runs in this process and legitimately sees the
        // password; its threads (`volt-mock-*`) are told apart by name.
        if std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("volt-mock"))
        {
            return;
        }
        let _ = writeln!(logs, "{} {}: {}", r.level(), r.target(), r.args());
    }
    fn flush(&self) {}
}

fn capture_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        log::set_boxed_logger(Box::new(Capture)).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    });
}

const OLD_PASSWORD: &str = "old-Pa55word-7c1e";
const NEW_PASSWORD: &str = "new-Pa55word-93ab";
const TOKEN: &str = "enroll-T0ken-5d2f";
const BAD_TOKEN: &str = "wrong-T0ken-0a8b";
const PROXY_USER: &str = "daemon-proxy-user";
const PROXY_PASSWORD: &str = "pr0xy-Pa55-4e7d";
const BAD_PROXY_PASSWORD: &str = "bad-pr0xy-Pa55-11c3";

fn assert_no_secret(what: &str, text: &str) {
    use base64::Engine as _;
    // The proxy password also as it travels, inside `Basic` credentials.
    let basic =
        |pw: &str| base64::engine::general_purpose::STANDARD.encode(format!("{PROXY_USER}:{pw}"));
    let (good, bad) = (basic(PROXY_PASSWORD), basic(BAD_PROXY_PASSWORD));
    for secret in [
        OLD_PASSWORD,
        NEW_PASSWORD,
        TOKEN,
        BAD_TOKEN,
        PROXY_PASSWORD,
        BAD_PROXY_PASSWORD,
        &good,
        &bad,
    ] {
        assert!(
            !text.contains(secret),
            "{what} shows a secret ({secret}):\n{text}"
        );
    }
}

#[test]
fn no_secret_in_debug_output_error_display_or_trace_logs_of_a_full_session() {
    fail_on_unexpected_panics();
    capture_logs();
    let cluster = "c-secrets";
    let server = MockServer::builder()
        .cluster(cluster, OLD_PASSWORD)
        .enrollment_token(TOKEN)
        .rotate_password(NEW_PASSWORD)
        .start();
    server.set_responder("refuse", Responder::err("NOPE", "refused"));
    let mut errors: Vec<DaemonClientError> = Vec::new();
    // Everything goes through a proxy that wants basic credentials.
    let proxy = Proxy::start(Some(&format!("{PROXY_USER}:{PROXY_PASSWORD}")));

    // A failed enrollment (wrong token) first: its error must not echo the token.
    let mut options = volt_testkit::client_options(&server, cluster, OLD_PASSWORD);
    options.socket.proxy =
        ProxyOptions::new(proxy.url()).with_credentials(PROXY_USER, PROXY_PASSWORD);
    errors.extend(refused_by_the_proxy(&options, proxy.port()));
    options.credentials = options.credentials.with_enrollment_token(BAD_TOKEN);
    options.enrollment = Some(EnrollmentOptions::new(server.enrollment_url(cluster)));
    let failing = ClusterDaemonClient::new(options.clone()).unwrap();
    errors.push(failing.connect().unwrap_err());
    assert_eq!(errors[0].code(), Code::EnrollmentFailed);
    failing.disconnect();

    // The full session: enrollment with rotation, commands, reverse
    // commands, messages, a reconnect, a rejected registration, a kick.
    options.credentials = DaemonCredentials::new(cluster, OLD_PASSWORD)
        .with_enrollment_token(TOKEN)
        .with_installed_version("1.0.0");
    let client = ClusterDaemonClient::new(options.clone()).unwrap();
    client.register_handler_fn("echo", |p, _| Ok(CommandResult::data(p)));
    let events = record(&client);
    let (rot_tx, rot_rx) = crossbeam_channel::bounded(1);
    client.on_password_rotated(move |p| {
        let _ = rot_tx.try_send(p == NEW_PASSWORD);
    });
    client.connect().unwrap();
    assert!(rot_rx.recv_timeout(LONG).unwrap(), "password rotated");
    assert_eq!(client.daemon_password(), NEW_PASSWORD);
    assert_eq!(
        client.send_command("echo", Some(json!({"n": 1}))).unwrap(),
        Some(json!({"n": 1}))
    );
    errors.push(client.send_command("refuse", None).unwrap_err());
    errors.push(client.send_command("unknown", None).unwrap_err());
    assert_eq!(server.dispatch(cluster, "echo", json!(2)).status, 200);
    assert_eq!(server.dispatch(cluster, "none", json!(3)).status, 404);
    server
        .send_message(cluster, json!({"type": "session-close", "sessionId": "s"}))
        .unwrap();
    server
        .send_raw_text(cluster, r#"42/daemon,["no-such-event",{}]"#)
        .unwrap();
    events.wait(LONG, |e| e.is_error(Code::ProtocolError));
    server.drop_transport(cluster).unwrap();
    events.wait(LONG, Ev::is_disconnected);
    events.wait(LONG, Ev::is_connected);
    assert_eq!(
        client.send_command("echo", Some(json!("again"))).unwrap(),
        Some(json!("again"))
    );
    // A client still holding the old password is rejected.
    let mut stale = options.clone();
    stale.enrollment = None;
    let stale = ClusterDaemonClient::new(stale).unwrap();
    errors.push(stale.connect().unwrap_err());
    assert_eq!(
        errors.last().unwrap().code(),
        Code::SocketRegistrationFailed
    );
    stale.disconnect();
    server.kick(cluster).unwrap();
    events.wait(LONG, |e| e.is_disconnected_with("io server disconnect"));
    errors.push(client.send_command("echo", None).unwrap_err());

    for e in events.all() {
        if let Ev::Error(e) = e {
            errors.push(e);
        }
    }
    assert!(proxy.requests().iter().any(|r| r.ends_with(" allowed")));
    for e in &errors {
        assert_no_secret("an error's Display", &e.to_string());
        assert_no_secret("an error's Debug", &format!("{e:?}"));
    }
    assert_no_secret("the options' Debug", &format!("{options:?}"));
    assert_no_secret("the client's Debug", &format!("{client:?}"));
    client.disconnect();

    let logs = LOGS.lock().unwrap().clone();
    // The capture really ran at trace level over the client's frames.
    assert!(logs.contains("TRACE volt_daemon_client"), "{logs}");
    assert!(logs.contains("enrollment rotated the daemon password"));
    // The client's own logs, at every level including TRACE.
    let targets = |keep: &dyn Fn(&str, &str) -> bool| -> String {
        logs.lines()
            .filter(|l| {
                let mut w = l.split_whitespace();
                let (level, target) = (w.next().unwrap_or(""), w.next().unwrap_or(""));
                keep(level, target)
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_no_secret(
        "the client's logs",
        &targets(&|_, t| t.starts_with("volt_daemon_client")),
    );
    // Everything the daemon's side logs at every level, its dependencies
    // included (tungstenite, native-tls, mio), but not the mock server's
    // threads (the test's server, not the daemon).
    assert_no_secret("all the logs at every level", &targets(&|_, _| true));
    assert_eq!(unexpected_panics(), 0);
}

/// The errors of a proxy that refuses the credentials (in the URL, then
/// as options), for enrollment and for the socket.
fn refused_by_the_proxy(options: &ClusterDaemonClientOptions, port: u16) -> Vec<DaemonClientError> {
    let in_url = format!("http://{PROXY_USER}:{BAD_PROXY_PASSWORD}@127.0.0.1:{port}");
    let as_options = ProxyOptions::new(format!("http://127.0.0.1:{port}"))
        .with_credentials(PROXY_USER, BAD_PROXY_PASSWORD);
    let mut errors = Vec::new();
    for (proxy, enroll) in [(ProxyOptions::new(in_url), true), (as_options, false)] {
        let mut o = options.clone();
        o.socket.proxy = proxy;
        if enroll {
            o.credentials = o.credentials.with_enrollment_token(BAD_TOKEN);
            o.enrollment = Some(EnrollmentOptions::new("/api/team-clusters/x/healthcheck"));
        }
        assert_no_secret("the options' Debug", &format!("{o:?}"));
        let client = ClusterDaemonClient::new(o).unwrap();
        let e = client.connect().unwrap_err();
        let code = if enroll {
            Code::EnrollmentFailed
        } else {
            Code::SocketConnectionFailed
        };
        assert_eq!(e.code(), code, "{e}");
        assert!(e.message().contains("HTTP 407"), "{e}");
        client.disconnect();
        errors.push(e);
    }
    errors
}

/// Guards the two workarounds: enrollment uses the client's own HTTP code
/// (ureq-proto hex-dumps request heads at TRACE, Bearer token included), and
/// the registration frame is written by the client (tungstenite logs every
/// frame it writes at TRACE).
#[test]
fn no_secret_in_trace_logs_of_the_client_dependencies() {
    capture_logs();
    let cluster = "c-secrets-http";
    let server = MockServer::builder()
        .cluster(cluster, OLD_PASSWORD)
        .enrollment_token(TOKEN)
        .start();
    let mut options = volt_testkit::client_options(&server, cluster, OLD_PASSWORD);
    options.credentials = options.credentials.with_enrollment_token(TOKEN);
    options.enrollment = Some(EnrollmentOptions::new(server.enrollment_url(cluster)));
    let client = ClusterDaemonClient::new(options).unwrap();
    client.connect().unwrap();
    client.disconnect();
    let logs = LOGS.lock().unwrap().clone();
    // Hex dumps cut secrets across lines: search the log with them joined.
    let deps: String = logs
        .lines()
        .filter(|l| {
            let t = l.split_whitespace().nth(1).unwrap_or("");
            t.starts_with("ureq") || t.starts_with("tungstenite")
        })
        .map(|l| l.rsplit("  ").next().unwrap_or(l))
        .collect::<Vec<_>>()
        .join("");
    assert_no_secret("the dependencies' TRACE logs", &deps);
}

#[test]
fn wss_through_a_proxy_verifies_the_servers_name_not_the_proxys() {
    fail_on_unexpected_panics();
    let proxy = Proxy::start(None);
    let ca = ca("volt test CA");
    // Valid for the server's name only: the proxy is 127.0.0.1.
    let server = tls_server(&ca.leaf(&["localhost"], &[]));
    let port = server.local_addr().port();
    let mut options = tls_options(&server, "localhost", &[ca.pem()], true);
    options.socket.proxy = ProxyOptions::new(proxy.url());
    let client = ClusterDaemonClient::new(options).unwrap();
    client.register_handler_fn("echo", |p, _| Ok(CommandResult::data(p)));
    client.connect().unwrap();
    assert_eq!(server.dispatch("c-tls", "echo", json!("tls")).status, 200);
    client.disconnect();
    // Enrollment (https) and the socket (wss), each in its own tunnel.
    let tunnels = proxy.requests();
    let to_server = format!("CONNECT localhost:{port} allowed");
    assert_eq!(
        tunnels.iter().filter(|r| **r == to_server).count(),
        2,
        "{tunnels:?}"
    );

    // A certificate for the proxy's address but not the server's name is
    // refused, through the tunnel as directly.
    let server = tls_server(&ca.leaf(&["volt.invalid"], &["127.0.0.1"]));
    for enroll in [true, false] {
        let mut options = tls_options(&server, "localhost", &[ca.pem()], enroll);
        options.socket.proxy = ProxyOptions::new(proxy.url());
        let code = if enroll {
            Code::EnrollmentFailed
        } else {
            Code::SocketConnectionFailed
        };
        assert_refused(&server, options, code);
    }
    assert_eq!(unexpected_panics(), 0);
}
