//! The one set of TLS trust rules, shared by the control socket (`wss://`)
//! and enrollment (`https://`), over whichever backend the build chose:
//! the `native-tls` feature (the default) or the `rustls` feature, exactly
//! one of them.
//!
//! The entry point, [`Connector::connect`], takes a stream that is already
//! connected (a TCP socket, or a tunnel through a proxy) and the server's
//! host name: that name, never the stream's peer, is the one sent in SNI and
//! verified. It works on blocking and non-blocking streams alike: on a
//! non-blocking one, [`Handshake::WouldBlock`] hands back the handshake to
//! resume when the socket is ready.

#[cfg(all(feature = "native-tls", feature = "rustls"))]
compile_error!(
    "volt-daemon-client: the features `native-tls` and `rustls` are exclusive; \
     turn one off (for rustls: `default-features = false, features = [\"rustls\"]`)"
);
#[cfg(not(any(feature = "native-tls", feature = "rustls")))]
compile_error!(
    "volt-daemon-client: turn on one TLS backend, the feature `native-tls` (the default) \
     or `rustls`"
);

#[cfg(feature = "native-tls")]
mod native;
mod options;
#[cfg(feature = "native-tls")]
use native as backend;

#[cfg(all(feature = "rustls", not(feature = "native-tls")))]
mod rustls;
#[cfg(all(feature = "rustls", not(feature = "native-tls")))]
use self::rustls as backend;

use std::io::{self, Read, Write};

pub use options::{ClientIdentity, TlsOptions};

/// The backend this build uses, for logs and error messages.
pub(crate) const BACKEND: &str = backend::NAME;

/// A configured client side of TLS: the system's roots (native-tls) or the
/// webpki-roots bundle (rustls), plus `tls.root_certificates_pem`; the
/// client identity when there is one; certificates and host names verified
/// unless `tls.danger_accept_invalid_certs` is set.
pub(crate) struct Connector(backend::Connector);

impl Connector {
    /// Builds the connector. The error says which step failed and never
    /// quotes the private key.
    pub(crate) fn new(tls: &TlsOptions) -> Result<Self, String> {
        backend::Connector::new(tls).map(Connector)
    }

    /// Starts the handshake with `host` (a domain or an IP address, no
    /// brackets) over `stream`, which is already connected.
    pub(crate) fn connect<S: Read + Write>(&self, host: &str, stream: S) -> Handshake<S> {
        self.0.connect(host, stream)
    }
}

/// Where a handshake stands.
pub(crate) enum Handshake<S: Read + Write> {
    /// Done: the stream is encrypted and the server verified.
    Done(TlsStream<S>),
    /// The stream is non-blocking and would block: resume with
    /// [`MidHandshake::handshake`] once it is ready.
    WouldBlock(MidHandshake<S>),
    /// Failed; why, in words (trust, host name, protocol, I/O).
    Failed(String),
}

/// A handshake waiting for its stream.
pub(crate) struct MidHandshake<S: Read + Write>(backend::MidHandshake<S>);

impl<S: Read + Write> MidHandshake<S> {
    /// Carries on where the handshake stopped.
    pub(crate) fn handshake(self) -> Handshake<S> {
        self.0.handshake()
    }
}

/// An established TLS stream over `S`.
pub(crate) struct TlsStream<S: Read + Write>(backend::TlsStream<S>);

impl<S: Read + Write> TlsStream<S> {
    /// The stream under the TLS layer.
    pub(crate) fn get_mut(&mut self) -> &mut S {
        self.0.get_mut()
    }
}

impl<S: Read + Write> Read for TlsStream<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<S: Read + Write> Write for TlsStream<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_pem_with_no_certificate_fails_naming_the_step() {
        let tls = TlsOptions::default().with_root_certificate_pem(b"not a certificate".to_vec());
        let err = Connector::new(&tls).err().expect("a bad root must fail");
        assert!(err.contains("root certificate"), "{err}");
    }

    #[test]
    fn a_client_identity_that_cannot_be_read_fails_without_quoting_the_key() {
        let cert = b"-----BEGIN CERTIFICATE-----\nMIIBnotacert\n-----END CERTIFICATE-----\n";
        let key = b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcy05ZjFh\n-----END PRIVATE KEY-----\n";
        let tls = TlsOptions::default().with_client_identity(cert.to_vec(), key.to_vec());
        let err = Connector::new(&tls)
            .err()
            .expect("a bad identity must fail");
        assert!(err.contains("client"), "{err}");
        assert!(!err.contains("c2VjcmV0"), "{err}");
    }

    #[test]
    fn a_handshake_with_a_peer_that_closes_at_once_fails_with_a_reason() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        drop(listener.accept().unwrap());
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let connector = Connector::new(&TlsOptions::default()).unwrap();
        match connector.connect("localhost", client) {
            Handshake::Failed(why) => assert!(!why.is_empty()),
            Handshake::Done(_) => panic!("no server, yet the handshake succeeded"),
            Handshake::WouldBlock(_) => panic!("a blocking stream would block"),
        }
    }
}
