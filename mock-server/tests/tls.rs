//! wss and https with a certificate made in the test (openssl, test-only).

mod common;

use std::net::TcpStream;
use std::time::Duration;

use openssl::asn1::Asn1Time;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509Name, X509};
use tungstenite::Message;
use volt_mock_server::{Server, ServerConfig, TlsConfig};

/// A self-signed certificate for `localhost`/127.0.0.1: (cert PEM, key PKCS #8 PEM).
fn self_signed() -> (Vec<u8>, Vec<u8>) {
    self_signed_as("localhost")
}

/// A self-signed certificate named `CN=cn`, also valid for `localhost`/127.0.0.1.
fn self_signed_as(cn: &str) -> (Vec<u8>, Vec<u8>) {
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509Name::builder().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    let san = SubjectAlternativeName::new()
        .dns("localhost")
        .ip("127.0.0.1")
        .build(&b.x509v3_context(None, None))
        .unwrap();
    b.append_extension(san).unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    let cert = b.build();
    (
        cert.to_pem().unwrap(),
        key.private_key_to_pem_pkcs8().unwrap(),
    )
}

/// A daemon of `c1` opened over wss through `connector` and registered.
fn register_over_wss(
    addr: std::net::SocketAddr,
    connector: &native_tls::TlsConnector,
) -> tungstenite::WebSocket<native_tls::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let tls = connector.connect("localhost", tcp).unwrap();
    let url = format!(
        "wss://localhost:{}/socket.io/?EIO=4&transport=websocket",
        addr.port()
    );
    let (mut ws, _) = tungstenite::client::client(url, tls).unwrap();
    assert!(ws
        .read()
        .unwrap()
        .to_text()
        .unwrap()
        .starts_with("0{\"sid\""));
    ws.send(Message::text(r#"40/daemon,{"teamClusterId":"c1","daemonPassword":"pw1","installedVersion":null,"client":"t"}"#)).unwrap();
    assert!(ws
        .read()
        .unwrap()
        .to_text()
        .unwrap()
        .starts_with("40/daemon,"));
    ws
}

#[test]
fn wss_and_https() {
    let (cert, key) = self_signed();
    let mut cfg = ServerConfig::default().cluster("c1", "pw1");
    cfg.tls = Some(TlsConfig {
        cert_pem: cert.clone(),
        key_pem: key,
    });
    let s = Server::start(cfg).unwrap();
    assert!(s.url().starts_with("https://127.0.0.1:"));
    let addr = s.local_addr();
    let connector = native_tls::TlsConnector::builder()
        .add_root_certificate(native_tls::Certificate::from_pem(&cert).unwrap())
        .build()
        .unwrap();
    // wss: open, register, echo.
    let mut ws = register_over_wss(addr, &connector);
    ws.send(Message::text(
        r#"42/daemon,["command",{"requestId":"r","command":"echo","payload":"big"}]"#,
    ))
    .unwrap();
    assert_eq!(
        ws.read().unwrap().to_text().unwrap(),
        r#"42/daemon,["command-response",{"requestId":"r","ok":true,"data":"big"}]"#
    );
    // A large reply still flows through the non-blocking TLS stream.
    let big = "y".repeat(200_000);
    s.send_message("c1", serde_json::json!({"type": "x", "pad": big}))
        .unwrap();
    assert!(ws.read().unwrap().to_text().unwrap().len() > 200_000);
    // https: the admin API.
    let tcp = TcpStream::connect(addr).unwrap();
    let mut tls = connector.connect("localhost", tcp).unwrap();
    use std::io::{Read, Write};
    tls.write_all(b"GET /admin/daemons HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    let _ = tls.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"teamClusterId\":\"c1\""), "{out}");
    // An untrusted client (no root) fails the handshake; the server goes on.
    let tcp = TcpStream::connect(addr).unwrap();
    assert!(native_tls::TlsConnector::new()
        .unwrap()
        .connect("localhost", tcp)
        .is_err());
    assert_eq!(s.daemons().len(), 1);
}

/// GET /admin/daemons over TLS through `connector`: the response, or why not.
fn admin_daemons(
    addr: std::net::SocketAddr,
    connector: &native_tls::TlsConnector,
) -> Result<String, String> {
    use std::io::{Read, Write};
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = connector
        .connect("localhost", tcp)
        .map_err(|e| e.to_string())?;
    tls.write_all(b"GET /admin/daemons HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    tls.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

#[test]
fn a_required_client_certificate_is_verified_and_its_subject_shown_in_admin_daemons() {
    let (cert, key) = self_signed();
    let (client_cert, client_key) = self_signed_as("daemon-9");
    let mut cfg = ServerConfig::default().cluster("c1", "pw1");
    cfg.tls = Some(TlsConfig {
        cert_pem: cert.clone(),
        key_pem: key,
    });
    cfg.tls_client_ca_pem = Some(client_cert.clone());
    let s = Server::start(cfg).unwrap();
    let addr = s.local_addr();
    let root = native_tls::Certificate::from_pem(&cert).unwrap();
    let with_identity = native_tls::TlsConnector::builder()
        .add_root_certificate(root.clone())
        .identity(native_tls::Identity::from_pkcs8(&client_cert, &client_key).unwrap())
        .build()
        .unwrap();
    // A daemon with the certificate registers over wss.
    let _ws = register_over_wss(addr, &with_identity);
    let out = admin_daemons(addr, &with_identity).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.contains(r#""clientCertificateSubject":"CN=daemon-9""#),
        "{out}"
    );
    // Without a certificate, nothing is served; the server goes on.
    let without = native_tls::TlsConnector::builder()
        .add_root_certificate(root)
        .build()
        .unwrap();
    match admin_daemons(addr, &without) {
        Ok(out) => assert!(!out.contains("HTTP/1.1"), "{out}"),
        Err(e) => assert!(e.contains("alert") || e.contains("certificate"), "{e}"),
    }
    assert_eq!(s.daemons().len(), 1);
}
