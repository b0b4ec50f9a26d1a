//! The server side of TLS. With no client CA it is native-tls, as before.
//! With a client CA (`--tls-client-ca`), native-tls cannot ask for client
//! certificates, so OpenSSL serves directly: every client must present a
//! certificate that chains to one of those CAs, or the handshake fails; the
//! verified subject is kept for `GET /admin/daemons`.

use std::io::{self, Read, Write};
use std::net::TcpStream;

use openssl::pkey::PKey;
use openssl::ssl::{SslAcceptor, SslMethod, SslStream, SslVerifyMode};
use openssl::x509::{X509NameRef, X509};

use crate::config::TlsConfig;
use crate::start_error::StartError;

/// Accepts TLS connections: plain server TLS, or TLS requiring a client
/// certificate.
#[derive(Clone)]
pub(crate) enum TlsAcceptor {
    Native(native_tls::TlsAcceptor),
    ClientAuth(SslAcceptor),
}

impl TlsAcceptor {
    /// The acceptor for `tls`, requiring client certificates that chain to
    /// `client_ca_pem` when it is given.
    pub(crate) fn new(tls: &TlsConfig, client_ca_pem: Option<&[u8]>) -> Result<Self, StartError> {
        let Some(ca_pem) = client_ca_pem else {
            let identity = native_tls::Identity::from_pkcs8(&tls.cert_pem, &tls.key_pem)?;
            return Ok(TlsAcceptor::Native(native_tls::TlsAcceptor::new(identity)?));
        };
        client_auth(tls, ca_pem).map_err(|e| StartError::ClientAuth(e.to_string()))
    }

    /// The handshake on a blocking stream; the error says why it failed.
    pub(crate) fn accept(&self, tcp: TcpStream) -> Result<TlsStream, String> {
        match self {
            TlsAcceptor::Native(a) => a
                .accept(tcp)
                .map(TlsStream::Native)
                .map_err(|e| e.to_string()),
            TlsAcceptor::ClientAuth(a) => {
                let s = a.accept(tcp).map_err(|e| e.to_string())?;
                let subject = s
                    .ssl()
                    .peer_certificate()
                    .map(|c| subject(c.subject_name()));
                Ok(TlsStream::ClientAuth { stream: s, subject })
            }
        }
    }
}

/// OpenSSL, requiring a client certificate that chains to `ca_pem`.
fn client_auth(tls: &TlsConfig, ca_pem: &[u8]) -> Result<TlsAcceptor, Box<dyn std::error::Error>> {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
    let mut chain = X509::stack_from_pem(&tls.cert_pem)?.into_iter();
    let leaf = chain.next().ok_or("no certificate in the --tls-cert PEM")?;
    b.set_certificate(&leaf)?;
    for extra in chain {
        b.add_extra_chain_cert(extra)?;
    }
    let key = PKey::private_key_from_pem(&tls.key_pem)?;
    b.set_private_key(&key)?;
    b.check_private_key()?;
    let cas = X509::stack_from_pem(ca_pem)?;
    if cas.is_empty() {
        return Err("no certificate in the client CA PEM".into());
    }
    for ca in cas {
        b.add_client_ca(&ca)?;
        b.cert_store_mut().add_cert(ca)?;
    }
    b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    Ok(TlsAcceptor::ClientAuth(b.build()))
}

/// `CN=daemon-1, O=...`: the name's entries in order.
fn subject(name: &X509NameRef) -> String {
    name.entries()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("?");
            format!("{key}={}", e.data().to_string().unwrap_or_default())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// An accepted TLS stream.
pub(crate) enum TlsStream {
    Native(native_tls::TlsStream<TcpStream>),
    ClientAuth {
        stream: SslStream<TcpStream>,
        /// The subject of the client certificate, verified in the handshake.
        subject: Option<String>,
    },
}

impl TlsStream {
    pub(crate) fn get_ref(&self) -> &TcpStream {
        match self {
            TlsStream::Native(s) => s.get_ref(),
            TlsStream::ClientAuth { stream, .. } => stream.get_ref(),
        }
    }

    /// The verified subject of the client's certificate, when one was required.
    pub(crate) fn client_subject(&self) -> Option<&str> {
        match self {
            TlsStream::Native(_) => None,
            TlsStream::ClientAuth { subject, .. } => subject.as_deref(),
        }
    }

    /// Sends close_notify (best effort).
    pub(crate) fn shutdown(&mut self) -> io::Result<()> {
        match self {
            TlsStream::Native(s) => s.shutdown(),
            TlsStream::ClientAuth { stream, .. } => {
                stream.shutdown().map(|_| ()).map_err(io::Error::other)
            }
        }
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            TlsStream::Native(s) => s.read(buf),
            TlsStream::ClientAuth { stream, .. } => stream.read(buf),
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            TlsStream::Native(s) => s.write(buf),
            TlsStream::ClientAuth { stream, .. } => stream.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            TlsStream::Native(s) => s.flush(),
            TlsStream::ClientAuth { stream, .. } => stream.flush(),
        }
    }
}
