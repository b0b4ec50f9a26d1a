//! Helpers shared by the network fault tests (issue 16): a mock server, a
//! [`FaultProxy`] in front of it and a client connected through it; the
//! echo worker loop and thread count of the soaks; a byte pattern for
//! binary payloads.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use volt_daemon_client::{
    ClusterDaemonClient, ClusterDaemonClientOptions, CommandResult, DaemonClientErrorCode as Code,
};
use volt_testkit::{
    client_options, wait_until, FaultProxy, MockServer, DEFAULT_CLUSTER, DEFAULT_PASSWORD,
};

use crate::reliability_support::{record, Ev, Recorder};

/// How long a test waits for what takes milliseconds on an idle machine.
pub const LONG: Duration = Duration::from_secs(15);

/// A client of `server` that connects through `proxy`, with an `echo`
/// handler; `options` adjusts its options first.
pub fn client_via(
    proxy: &FaultProxy,
    server: &MockServer,
    options: impl FnOnce(&mut ClusterDaemonClientOptions),
) -> ClusterDaemonClient {
    let mut o = client_options(server, DEFAULT_CLUSTER, DEFAULT_PASSWORD);
    o.control_socket_url = proxy.url();
    options(&mut o);
    let client = ClusterDaemonClient::new(o).unwrap();
    client.register_handler_fn("echo", |p, _| Ok(CommandResult::data(p)));
    client
}

/// A server, a proxy in front of it and a client connected through it.
/// Fields drop in order: the client first, the server last.
pub struct Rig {
    pub client: ClusterDaemonClient,
    pub events: Recorder,
    pub proxy: FaultProxy,
    pub server: MockServer,
}

impl Rig {
    /// [`connect_with`](Self::connect_with) with the default options.
    pub fn connect(server: MockServer, faults: impl FnOnce(&FaultProxy)) -> Rig {
        Rig::connect_with(server, faults, |_| {})
    }

    /// Starts a proxy to `server`, sets its `faults`, connects a
    /// [`client_via`] it (with `options`) and waits for `on_connected`.
    pub fn connect_with(
        server: MockServer,
        faults: impl FnOnce(&FaultProxy),
        options: impl FnOnce(&mut ClusterDaemonClientOptions),
    ) -> Rig {
        let proxy = FaultProxy::start(server.local_addr()).unwrap();
        faults(&proxy);
        let client = client_via(&proxy, &server, options);
        let events = record(&client);
        client.connect().unwrap();
        events.wait(LONG, Ev::is_connected);
        Rig {
            client,
            events,
            proxy,
            server,
        }
    }
}

/// `len` bytes of a pattern that shows a lost, duplicated or moved byte.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// The client's threads now (named `volt-*`, the mock server's excluded).
pub fn client_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|n| {
            let n = n.trim();
            n.starts_with("volt-") && !n.starts_with("volt-mock")
        })
        .count()
}

/// Outcome counts of a soak: every command issued ends in exactly one.
#[derive(Debug, Default)]
pub struct Outcomes {
    pub issued: AtomicU64,
    pub ok: AtomicU64,
    pub not_ready: AtomicU64,
    pub timeout: AtomicU64,
}

impl Outcomes {
    /// (ok, not ready, timeout), as they stand.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.ok.load(Ordering::SeqCst),
            self.not_ready.load(Ordering::SeqCst),
            self.timeout.load(Ordering::SeqCst),
        )
    }
}

/// Worker `t` of a soak: sends `echo` commands until `total` are issued
/// (by all workers), checks each reply is its own and counts each outcome.
/// After a `SOCKET_NOT_READY` it waits (up to 10 s) for the reconnection
/// rather than spin. Panics on any other outcome.
pub fn echo_worker(client: &ClusterDaemonClient, t: u64, total: u64, outcomes: &Outcomes) {
    loop {
        let n = outcomes.issued.fetch_add(1, Ordering::SeqCst);
        if n >= total {
            outcomes.issued.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        match client.send_command("echo", Some(json!({ "t": t, "n": n }))) {
            Ok(data) => {
                assert_eq!(data, Some(json!({ "t": t, "n": n })), "a crossed reply");
                outcomes.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if e.code() == Code::SocketNotReady => {
                outcomes.not_ready.fetch_add(1, Ordering::Relaxed);
                wait_until(Duration::from_secs(10), || client.is_ready());
            }
            Err(e) if e.code() == Code::CommandTimeout => {
                outcomes.timeout.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => panic!("unexpected outcome: {e}"),
        }
    }
}

/// A self-signed certificate for `127.0.0.1` (its own root), made at run
/// time: (certificate PEM, PKCS #8 key PEM), for `MockServerBuilder::tls`.
pub fn self_signed_for_loopback() -> (Vec<u8>, Vec<u8>) {
    use openssl::{asn1::Asn1Time, hash::MessageDigest, pkey::PKey, rsa::Rsa, x509};
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = x509::X509Name::builder().unwrap();
    name.append_entry_by_text("CN", "127.0.0.1").unwrap();
    let name = name.build();
    let mut cert = x509::X509::builder().unwrap();
    cert.set_version(2).unwrap();
    cert.set_subject_name(&name).unwrap();
    cert.set_issuer_name(&name).unwrap();
    cert.set_pubkey(&key).unwrap();
    cert.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    cert.set_not_after(&Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    let san = x509::extension::SubjectAlternativeName::new()
        .ip("127.0.0.1")
        .build(&cert.x509v3_context(None, None))
        .unwrap();
    cert.append_extension(san).unwrap();
    cert.sign(&key, MessageDigest::sha256()).unwrap();
    let pem = cert.build().to_pem().unwrap();
    (pem, key.private_key_to_pem_pkcs8().unwrap())
}
