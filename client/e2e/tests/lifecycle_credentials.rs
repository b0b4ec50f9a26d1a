//! A password provider (`DaemonCredentials::with_password_provider`), end
//! to end: asked before every registration, so a password rotated by
//! another process is picked up on the next reconnection; after an
//! enrollment rotation it is asked once `on_password_rotated` ran.

mod e2e_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use e2e_support::*;
use parking_lot::Mutex;
use serde_json::json;
use volt_daemon_client::{DaemonCredentials, EnrollmentOptions};
use volt_testkit::{fail_on_unexpected_panics, MockServer, DEFAULT_CLUSTER, DEFAULT_PASSWORD};

/// A secret store the provider reads, and how often it was asked.
fn store(initial: &str) -> (Arc<Mutex<String>>, Arc<AtomicUsize>) {
    (
        Arc::new(Mutex::new(initial.to_owned())),
        Arc::new(AtomicUsize::new(0)),
    )
}

fn provided(
    store: &Arc<Mutex<String>>,
    asked: &Arc<AtomicUsize>,
) -> impl Fn() -> String + Send + Sync + 'static {
    let (store, asked) = (store.clone(), asked.clone());
    move || {
        asked.fetch_add(1, Ordering::SeqCst);
        store.lock().clone()
    }
}

#[test]
fn the_provider_is_asked_before_every_registration_and_a_rotated_secret_is_used_on_reconnect() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let (secret, asked) = store(DEFAULT_PASSWORD);
    let client = client_with(&server, |o| {
        o.credentials = DaemonCredentials::new(DEFAULT_CLUSTER, "stale-and-unused")
            .with_password_provider(provided(&secret, &asked));
    });
    connect(&client);
    assert_eq!(asked.load(Ordering::SeqCst), 1);

    // Another process rotates the password: the server and the store.
    server.add_cluster(DEFAULT_CLUSTER, "rotated-elsewhere");
    *secret.lock() = "rotated-elsewhere".into();
    let mark = server.mark();
    server.drop_transport(DEFAULT_CLUSTER).unwrap();
    wait_registered(&server, mark);
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    let used: Vec<_> = registration_auths(&server)
        .iter()
        .map(|a| a["daemonPassword"].clone())
        .collect();
    assert_eq!(used, [json!(DEFAULT_PASSWORD), json!("rotated-elsewhere")]);
    assert!(!format!("{client:?}").contains("rotated-elsewhere"));
    disconnect(&client);
}

#[test]
fn after_an_enrollment_rotation_the_provider_is_asked_once_on_password_rotated_persisted_it() {
    fail_on_unexpected_panics();
    let server = MockServer::builder()
        .enrollment_token("tok")
        .rotate_password("rotated-by-enrollment")
        .start();
    let (secret, asked) = store(DEFAULT_PASSWORD);
    let client = client_with(&server, |o| {
        o.credentials = DaemonCredentials::new(DEFAULT_CLUSTER, DEFAULT_PASSWORD)
            .with_enrollment_token("tok")
            .with_password_provider(provided(&secret, &asked));
        o.enrollment = Some(EnrollmentOptions::new(
            server.enrollment_url(DEFAULT_CLUSTER),
        ));
    });
    let persisted = secret.clone();
    client.on_password_rotated(move |new| *persisted.lock() = new.to_owned());
    connect(&client);
    assert_eq!(client.daemon_password(), "rotated-by-enrollment");
    let auths = registration_auths(&server);
    assert_eq!(auths.len(), 1);
    assert_eq!(auths[0]["daemonPassword"], json!("rotated-by-enrollment"));
    // Once for the enrollment request, once for the registration.
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    disconnect(&client);
}

#[test]
fn a_panicking_provider_falls_back_to_the_stored_password() {
    fail_on_unexpected_panics();
    let server = MockServer::start();
    let client = client_with(&server, |o| {
        o.credentials = DaemonCredentials::new(DEFAULT_CLUSTER, DEFAULT_PASSWORD)
            .with_password_provider(|| panic!("expected panic: the secret store is down"));
    });
    connect(&client);
    assert_eq!(
        registration_auths(&server)[0]["daemonPassword"],
        json!(DEFAULT_PASSWORD)
    );
    disconnect(&client);
}
