//! The `native-tls` backend: OpenSSL, Secure Transport or SChannel, with
//! the system's trusted roots.

use std::io::{Read, Write};

use super::Handshake;
use super::TlsOptions;

pub(super) const NAME: &str = "native-tls";

pub(super) struct Connector(native_tls::TlsConnector);

impl Connector {
    pub(super) fn new(tls: &TlsOptions) -> Result<Self, String> {
        let mut builder = native_tls::TlsConnector::builder();
        for pem in &tls.root_certificates_pem {
            let cert = native_tls::Certificate::from_pem(pem)
                .map_err(|e| format!("loading a root certificate failed: {e}"))?;
            builder.add_root_certificate(cert);
        }
        if let Some(id) = &tls.client_identity {
            // The error comes from the TLS library: it names what is wrong,
            // never the key's bytes.
            let identity = native_tls::Identity::from_pkcs8(id.cert_pem(), id.key_pem())
                .map_err(|e| format!("loading the client certificate and key failed: {e}"))?;
            builder.identity(identity);
        }
        if tls.danger_accept_invalid_certs {
            builder
                .danger_accept_invalid_certs(true)
                .danger_accept_invalid_hostnames(true);
        }
        builder
            .build()
            .map(Connector)
            .map_err(|e| format!("TLS setup failed: {e}"))
    }

    pub(super) fn connect<S: Read + Write>(&self, host: &str, stream: S) -> Handshake<S> {
        outcome(self.0.connect(host, stream))
    }
}

fn outcome<S: Read + Write>(
    r: Result<native_tls::TlsStream<S>, native_tls::HandshakeError<S>>,
) -> Handshake<S> {
    match r {
        Ok(s) => Handshake::Done(super::TlsStream(TlsStream(s))),
        Err(native_tls::HandshakeError::WouldBlock(mid)) => {
            Handshake::WouldBlock(super::MidHandshake(MidHandshake(mid)))
        }
        Err(native_tls::HandshakeError::Failure(e)) => Handshake::Failed(e.to_string()),
    }
}

pub(super) struct MidHandshake<S>(native_tls::MidHandshakeTlsStream<S>);

impl<S: Read + Write> MidHandshake<S> {
    pub(super) fn handshake(self) -> Handshake<S> {
        outcome(self.0.handshake())
    }
}

pub(super) struct TlsStream<S>(native_tls::TlsStream<S>);

impl<S: Read + Write> TlsStream<S> {
    pub(super) fn get_mut(&mut self) -> &mut S {
        self.0.get_mut()
    }

    pub(super) fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }

    pub(super) fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    pub(super) fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}
