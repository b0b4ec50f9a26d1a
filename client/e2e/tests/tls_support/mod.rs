//! Certificates for the TLS tests, generated at run time with openssl
//! (test-only; nothing is committed): certificate authorities, server
//! certificates for given names, client certificates; and the options and
//! servers the TLS tests share. Used by `security.rs` and `e2e_tls_client_auth.rs`.
#![allow(dead_code)]

use std::time::Duration;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509Builder, X509Name, X509};
use volt_daemon_client::{
    ClusterDaemonClient, ClusterDaemonClientOptions, DaemonClientErrorCode, DaemonCredentials,
    EnrollmentOptions, TlsOptions,
};
use volt_testkit::{MockServer, ServerEvent};

/// The client's TLS backend in this run, as its error messages name it.
pub const BACKEND: &str = if cfg!(feature = "rustls") {
    "rustls"
} else {
    "native-tls"
};

/// A test certificate authority.
pub struct Ca {
    cert: X509,
    key: PKey<Private>,
}

fn name(cn: &str) -> X509Name {
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

/// A certificate for `key`, named `cn`, valid from today for two days.
fn builder(cn: &str, key: &PKey<Private>) -> X509Builder {
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&serial()).unwrap();
    b.set_subject_name(&name(cn)).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    b
}

/// A test certificate authority named `cn`.
pub fn ca(cn: &str) -> Ca {
    let key = key();
    let mut b = builder(cn, &key);
    b.set_issuer_name(&name(cn)).unwrap();
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

/// A second, unrelated authority.
pub fn ca_other() -> Ca {
    ca("some other CA")
}

impl Ca {
    /// The authority's certificate, PEM.
    pub fn pem(&self) -> Vec<u8> {
        self.cert.to_pem().unwrap()
    }

    /// A server certificate signed by this CA, valid for exactly these
    /// names and addresses: (chain PEM, PKCS #8 key PEM).
    pub fn leaf(&self, dns: &[&str], ips: &[&str]) -> (Vec<u8>, Vec<u8>) {
        let key = key();
        let mut b = builder(dns.first().or(ips.first()).unwrap(), &key);
        b.set_issuer_name(self.cert.subject_name()).unwrap();
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
        self.finish(b, &key)
    }

    /// A client certificate signed by this CA, with subject `CN=cn`:
    /// (chain PEM, PKCS #8 key PEM).
    pub fn client(&self, cn: &str) -> (Vec<u8>, Vec<u8>) {
        let key = key();
        let mut b = builder(cn, &key);
        b.set_issuer_name(self.cert.subject_name()).unwrap();
        b.append_extension(ExtendedKeyUsage::new().client_auth().build().unwrap())
            .unwrap();
        self.finish(b, &key)
    }

    fn finish(&self, mut b: X509Builder, key: &PKey<Private>) -> (Vec<u8>, Vec<u8>) {
        b.sign(&self.key, MessageDigest::sha256()).unwrap();
        let mut chain = b.build().to_pem().unwrap();
        chain.extend(self.pem());
        (chain, key.private_key_to_pem_pkcs8().unwrap())
    }
}

/// A TLS mock server with the certificate `cert`, cluster `c-tls` and
/// enrollment token `tok-tls`.
pub fn tls_server(cert: &(Vec<u8>, Vec<u8>)) -> MockServer {
    MockServer::builder()
        .tls(&cert.0, &cert.1)
        .cluster("c-tls", "pw-tls")
        .enrollment_token("tok-tls")
        .start()
}

/// Options for `server` reached at `host`, trusting `roots`, with
/// enrollment when `enroll`.
pub fn tls_options(
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

/// connect() must fail with `code`, its message saying one of `reasons`
/// (in any case), and the server must see no registration and no
/// enrollment. Returns the message.
pub fn assert_refused(
    server: &MockServer,
    options: ClusterDaemonClientOptions,
    code: DaemonClientErrorCode,
    reasons: &[&str],
) -> String {
    let client = ClusterDaemonClient::new(options).unwrap();
    let err = client.connect().unwrap_err();
    assert_eq!(err.code(), code, "{err}");
    let shown = err.to_string();
    let lower = shown.to_lowercase();
    assert!(
        reasons.iter().any(|r| lower.contains(&r.to_lowercase())),
        "{shown} says none of {reasons:?}"
    );
    assert!(!client.is_ready());
    client.disconnect();
    assert!(!server.events().iter().any(|e| matches!(
        e,
        ServerEvent::Registered { .. } | ServerEvent::Enrollment { .. }
    )));
    shown
}
