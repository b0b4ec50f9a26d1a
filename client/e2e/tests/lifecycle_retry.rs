//! Retrying the first connect (`socket.retry_initial_connect`),
//! `connect_in_background()` and `wait_ready()`, end to end: a daemon that
//! starts before its server, and the failures that are never retried.

mod e2e_support;

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use e2e_support::*;
use volt_daemon_client::{
    ClusterDaemonClient, ClusterDaemonClientOptions, ConnectionState as S,
    DaemonClientErrorCode as Code, EnrollmentOptions,
};
use volt_testkit::{
    fail_on_unexpected_panics, Faults, MockServer, RejectRegistration, ServerEvent, DEFAULT_CLUSTER,
};

/// A loopback address nothing listens on (yet).
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// Test options (as the testkit's) for a server that will listen on `addr`.
fn options_for(addr: SocketAddr) -> ClusterDaemonClientOptions {
    let probe = MockServer::start();
    let mut o = options(&probe);
    let url = format!("http://{addr}");
    o.server_url = url.clone();
    o.control_socket_url = url;
    o.socket.retry_initial_connect = true;
    o
}

fn start_on(addr: SocketAddr) -> MockServer {
    MockServer::builder().listen(addr).start()
}

/// Runs `client.connect()` on a thread; its result arrives on the receiver.
type Connecting = (
    std::thread::JoinHandle<()>,
    crossbeam_channel::Receiver<Result<(), volt_daemon_client::DaemonClientError>>,
);

fn connect_on_a_thread(client: &ClusterDaemonClient) -> Connecting {
    let (tx, done) = crossbeam_channel::bounded(1);
    let c = client.clone();
    (
        std::thread::spawn(move || tx.send(c.connect()).unwrap()),
        done,
    )
}

fn connection_errors(rec: &Recorder) -> usize {
    rec.log()
        .iter()
        .filter(|c| c.is_error(Code::SocketConnectionFailed))
        .count()
}

#[test]
fn a_retrying_connect_waits_for_a_server_that_starts_later() {
    fail_on_unexpected_panics();
    let addr = free_addr();
    let client = ClusterDaemonClient::new(options_for(addr)).unwrap();
    let rec = Recorder::attach(&client);
    let (t, done) = connect_on_a_thread(&client);
    // Each failed attempt goes to on_error; connect() is still waiting.
    rec.expect("a failed attempt", |cb| {
        cb.is_error(Code::SocketConnectionFailed)
    });
    rec.expect("another failed attempt", |cb| {
        cb.is_error(Code::SocketConnectionFailed)
    });
    assert!(done.try_recv().is_err(), "connect() returned early");
    assert!(matches!(
        client.state(),
        S::Reconnecting { .. } | S::Connecting { .. }
    ));
    let server = start_on(addr);
    recv(&done, "connect()", WAIT).expect("connect() succeeds once the server is up");
    t.join().unwrap();
    assert!(client.is_ready());
    assert!(connection_errors(&rec) >= 2);
    assert_eq!(client.wait_ready(Duration::ZERO), Ok(()));
    disconnect(&client);
    drop(server);
}

#[test]
fn connect_in_background_returns_at_once_and_wait_ready_sees_the_server_come_up() {
    fail_on_unexpected_panics();
    let addr = free_addr();
    let client = ClusterDaemonClient::new(options_for(addr)).unwrap();
    let rec = Recorder::attach(&client);
    let started = Instant::now();
    client.connect_in_background().unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(!client.state().is_terminal());
    let e = client.wait_ready(Duration::from_millis(100)).unwrap_err();
    assert_eq!(e.code(), Code::SocketNotReady);
    assert!(e.to_string().contains("within the timeout"), "{e}");
    // A second call while it is trying is a no-op.
    client.connect_in_background().unwrap();
    rec.expect("a failed attempt", |cb| {
        cb.is_error(Code::SocketConnectionFailed)
    });
    let server = start_on(addr);
    client
        .wait_ready(WAIT)
        .expect("ready once the server is up");
    rec.expect("on_connected", Cb::is_connected);
    assert_eq!(
        server.events().iter().filter(|e| is_registered(e)).count(),
        1
    );
    disconnect(&client);
}

#[test]
fn a_retrying_connect_gives_up_after_max_reconnect_attempts() {
    fail_on_unexpected_panics();
    let mut o = options_for(free_addr());
    o.socket.max_reconnect_attempts = Some(3);
    let client = ClusterDaemonClient::new(o).unwrap();
    let rec = Recorder::attach(&client);
    let c = client.clone();
    let e = bounded("connect()", WAIT, move || c.connect()).unwrap_err();
    assert!(e.to_string().contains("gave up"), "{e}");
    assert_eq!(client.state(), S::GaveUp { attempts: 3 });
    rec.expect(
        "the give-up error",
        |cb| matches!(cb, Cb::Error(e) if e.to_string().contains("gave up")),
    );
    assert_eq!(connection_errors(&rec), 4, "three attempts and the give-up");
    disconnect(&client);
}

#[test]
fn a_refused_registration_is_not_retried() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    server.set_faults(Faults {
        reject_registration: Some(RejectRegistration {
            code: Some("INVALID_CREDENTIALS".into()),
            message: Some("invalid credentials".into()),
        }),
        ..Faults::default()
    });
    let client = client_with(&server, |o| o.socket.retry_initial_connect = true);
    let c = client.clone();
    let e = bounded("connect()", WAIT, move || c.connect()).unwrap_err();
    assert_eq!(e.code(), Code::SocketRegistrationFailed);
    assert_eq!(e.server_code(), Some("INVALID_CREDENTIALS"));
    assert!(matches!(client.state(), S::Disconnected { .. }));
    let attempts = |s: &MockServer| count_events(s, |e| matches!(e, ServerEvent::Connected { .. }));
    assert_eq!(attempts(&server), 1);
    assert!(server
        .expect_event_from(
            server.mark(),
            |e| matches!(e, ServerEvent::Connected { .. }),
            QUIET
        )
        .is_err());
    disconnect(&client);
}

#[test]
fn an_enrollment_answered_4xx_is_not_retried_but_a_5xx_is() {
    fail_on_unexpected_panics();
    let server = MockServer::builder().enrollment_token("tok").start();
    let enrolling = |server: &MockServer| {
        client_with(server, |o| {
            o.socket.retry_initial_connect = true;
            o.credentials.enrollment_token = Some("tok".into());
            o.enrollment = Some(EnrollmentOptions::new(
                server.enrollment_url(DEFAULT_CLUSTER),
            ));
        })
    };
    let enrollments =
        |s: &MockServer| count_events(s, |e| matches!(e, ServerEvent::Enrollment { .. }));

    server.set_enrollment_fail_status(Some(403));
    let client = enrolling(&server);
    let c = client.clone();
    let e = bounded("connect()", WAIT, move || c.connect()).unwrap_err();
    assert_eq!(e.code(), Code::EnrollmentFailed);
    assert_eq!(e.status(), Some(403));
    assert_eq!(enrollments(&server), 1);
    disconnect(&client);

    server.set_enrollment_fail_status(Some(503));
    let client = enrolling(&server);
    let rec = Recorder::attach(&client);
    client.connect_in_background().unwrap();
    rec.expect("a failed enrollment", |cb| {
        cb.is_error(Code::EnrollmentFailed)
    });
    assert!(!client.is_ready());
    server.set_enrollment_fail_status(None);
    client
        .wait_ready(WAIT)
        .expect("enrolled and ready once it answers 2xx");
    assert!(
        enrollments(&server) >= 3,
        "the failed ones and the good one"
    );
    disconnect(&client);
}

#[test]
fn disconnect_from_another_thread_ends_a_retrying_connect() {
    fail_on_unexpected_panics();
    let client = ClusterDaemonClient::new(options_for(free_addr())).unwrap();
    let rec = Recorder::attach(&client);
    let (t, done) = connect_on_a_thread(&client);
    rec.expect("a failed attempt", |cb| {
        cb.is_error(Code::SocketConnectionFailed)
    });
    let started = Instant::now();
    disconnect(&client);
    assert!(started.elapsed() < Duration::from_secs(1));
    let e = recv(&done, "connect()", WAIT).unwrap_err();
    t.join().unwrap();
    assert_eq!(e.code(), Code::SocketNotReady, "{e}");
    assert_eq!(
        client.state(),
        S::Disconnected {
            reason: "io client disconnect".into()
        }
    );
}

#[test]
fn without_retry_connect_in_background_makes_one_attempt_and_wait_ready_reports_it() {
    fail_on_unexpected_panics();
    let mut o = options_for(free_addr());
    o.socket.retry_initial_connect = false;
    let client = ClusterDaemonClient::new(o).unwrap();
    client.connect_in_background().unwrap();
    let e = client.wait_ready(WAIT).unwrap_err();
    assert_eq!(e.code(), Code::SocketConnectionFailed);
    assert!(matches!(client.state(), S::Disconnected { .. }));
    disconnect(&client);
}
