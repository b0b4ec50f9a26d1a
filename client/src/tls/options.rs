//! What the caller configures TLS with. Defined next to the backends that
//! read it rather than with the other options, so that `options`, `http` and
//! the socket's transport all depend on `tls` and `tls` on none of them.

use std::fmt;

/// TLS settings for `wss://` and `https://`, the same on both TLS backends
/// (the `native-tls` feature, the default, or `rustls`). Verification is
/// always on unless `danger_accept_invalid_certs` says otherwise. `Debug`
/// shows no private key.
///
/// ```
/// use volt_daemon_client::TlsOptions;
/// let tls = TlsOptions::default()
///     .with_root_certificate_pem(b"-----BEGIN CERTIFICATE-----...".to_vec())
///     .with_client_identity(
///         b"-----BEGIN CERTIFICATE-----...".to_vec(),
///         b"-----BEGIN PRIVATE KEY-----...".to_vec(),
///     );
/// assert_eq!(tls.root_certificates_pem.len(), 1);
/// assert!(!tls.danger_accept_invalid_certs);
/// assert!(!format!("{tls:?}").contains("PRIVATE KEY"));
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TlsOptions {
    /// Extra trusted roots, PEM, added to the backend's roots (for the
    /// socket and for enrollment alike): the system's with `native-tls`,
    /// the webpki-roots bundle with `rustls`.
    pub root_certificates_pem: Vec<Vec<u8>>,
    /// The certificate the client presents when the server asks for one
    /// (mutual TLS), on the socket and at enrollment alike.
    pub client_identity: Option<ClientIdentity>,
    /// Accept any certificate and host name. Only for tests.
    pub danger_accept_invalid_certs: bool,
}

impl TlsOptions {
    /// Adds a trusted root certificate (PEM).
    pub fn with_root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates_pem.push(pem.into());
        self
    }

    /// Presents this client certificate (mutual TLS): `cert_pem` is the
    /// certificate chain, leaf first, and `key_pem` its private key, PKCS #8
    /// (`-----BEGIN PRIVATE KEY-----`). Checked when connecting.
    pub fn with_client_identity(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.client_identity = Some(ClientIdentity {
            cert_pem: cert_pem.into(),
            key_pem: key_pem.into(),
        });
        self
    }

    /// Accept any certificate and host name. Only for tests.
    pub fn with_danger_accept_invalid_certs(mut self, danger_accept_invalid_certs: bool) -> Self {
        self.danger_accept_invalid_certs = danger_accept_invalid_certs;
        self
    }
}

/// A client certificate and its private key, PEM (see
/// [`TlsOptions::with_client_identity`]). `Debug` never shows the key, and
/// the key's memory is zeroed when the identity is dropped.
///
/// ```
/// use volt_daemon_client::TlsOptions;
/// let tls = TlsOptions::default().with_client_identity(b"CERT".to_vec(), b"KEY-s3cret".to_vec());
/// let id = tls.client_identity.as_ref().unwrap();
/// assert_eq!(id.cert_pem(), b"CERT");
/// assert!(!format!("{id:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
pub struct ClientIdentity {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl ClientIdentity {
    /// The certificate chain, PEM.
    pub fn cert_pem(&self) -> &[u8] {
        &self.cert_pem
    }

    /// The private key, PKCS #8 PEM (for the TLS backend only).
    pub(crate) fn key_pem(&self) -> &[u8] {
        &self.key_pem
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl Drop for ClientIdentity {
    fn drop(&mut self) {
        self.key_pem.fill(0);
        std::hint::black_box(&self.key_pem);
    }
}
