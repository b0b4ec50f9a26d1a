//! The `rustls` backend: rustls on the ring provider, trusting the
//! webpki-roots bundle (Mozilla's roots, compiled in) plus the extra roots;
//! with the `rustls-platform-verifier` feature, the operating system's
//! verifier and roots plus the extra roots instead.

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct};
use rustls::{SignatureScheme, StreamOwned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};

use super::Handshake;
use super::{ClientIdentity, TlsOptions};

pub(super) const NAME: &str = "rustls";

pub(super) struct Connector(Arc<ClientConfig>);

impl Connector {
    pub(super) fn new(tls: &TlsOptions) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup failed: {e}"))?;
        let builder = if tls.danger_accept_invalid_certs {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        } else {
            verified(builder, provider, &tls.root_certificates_pem)?
        };
        let config = match &tls.client_identity {
            None => builder.with_no_client_auth(),
            Some(id) => {
                let (chain, key) = identity(id)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("loading the client certificate and key failed: {e}"))?
            }
        };
        Ok(Connector(Arc::new(config)))
    }

    pub(super) fn connect<S: Read + Write>(&self, host: &str, stream: S) -> Handshake<S> {
        let name = match ServerName::try_from(host.to_owned()) {
            Ok(name) => name,
            Err(e) => {
                return Handshake::Failed(format!("{host:?} is not a valid server name: {e}"))
            }
        };
        match ClientConnection::new(self.0.clone(), name) {
            Ok(conn) => MidHandshake { conn, stream }.handshake(),
            Err(e) => Handshake::Failed(e.to_string()),
        }
    }
}

type WantsVerifier = rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>;
type WantsClientCert = rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>;

/// Verification against the webpki-roots bundle plus `pems`.
#[cfg(not(feature = "rustls-platform-verifier"))]
fn verified(
    builder: WantsVerifier,
    _provider: Arc<CryptoProvider>,
    pems: &[Vec<u8>],
) -> Result<WantsClientCert, String> {
    Ok(builder.with_root_certificates(roots(pems)?))
}

/// Verification by the operating system, trusting `pems` as well.
#[cfg(feature = "rustls-platform-verifier")]
fn verified(
    builder: WantsVerifier,
    provider: Arc<CryptoProvider>,
    pems: &[Vec<u8>],
) -> Result<WantsClientCert, String> {
    let mut extra = Vec::new();
    for pem in pems {
        extra.extend(
            certificates(pem).map_err(|e| format!("loading a root certificate failed: {e}"))?,
        );
    }
    let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider)
        .map_err(|e| format!("loading the platform verifier failed: {e}"))?;
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier)))
}

/// The webpki-roots bundle plus every certificate in `pems`.
#[cfg(not(feature = "rustls-platform-verifier"))]
fn roots(pems: &[Vec<u8>]) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for pem in pems {
        let certs =
            certificates(pem).map_err(|e| format!("loading a root certificate failed: {e}"))?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("loading a root certificate failed: {e}"))?;
        }
    }
    Ok(roots)
}

/// Every certificate in `pem`; at least one.
fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate found".into());
    }
    Ok(certs)
}

/// The chain and the key of `id`. Errors about the key never quote it.
fn identity(
    id: &ClientIdentity,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let chain = certificates(id.cert_pem())
        .map_err(|e| format!("loading the client certificate failed: {e}"))?;
    let key = PrivatePkcs8KeyDer::from_pem_slice(id.key_pem()).map_err(|_| {
        "loading the client private key failed: no PKCS #8 PEM key (-----BEGIN PRIVATE KEY-----)"
            .to_owned()
    })?;
    Ok((chain, PrivateKeyDer::Pkcs8(key)))
}

pub(super) struct MidHandshake<S> {
    conn: ClientConnection,
    stream: S,
}

impl<S: Read + Write> MidHandshake<S> {
    /// Moves the handshake on until it is done, fails, or would block.
    pub(super) fn handshake(mut self) -> Handshake<S> {
        while self.conn.is_handshaking() {
            match self.conn.complete_io(&mut self.stream) {
                Ok((0, 0)) => {
                    return Handshake::Failed("the TLS handshake stalled".into());
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Handshake::WouldBlock(super::MidHandshake(self));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Handshake::Failed("the server closed the connection".into());
                }
                Err(e) => return Handshake::Failed(e.to_string()),
            }
        }
        // Whatever the handshake still has to send (the client's Finished)
        // goes out ahead of the first write.
        Handshake::Done(super::TlsStream(TlsStream(StreamOwned::new(
            self.conn,
            self.stream,
        ))))
    }
}

pub(super) struct TlsStream<S: Read + Write>(StreamOwned<ClientConnection, S>);

impl<S: Read + Write> TlsStream<S> {
    pub(super) fn get_mut(&mut self) -> &mut S {
        &mut self.0.sock
    }

    pub(super) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }

    pub(super) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    pub(super) fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// `danger_accept_invalid_certs`: any certificate for any name, but the
/// handshake signatures still checked (the peer holds the key it shows).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
