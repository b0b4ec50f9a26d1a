//! Why a server could not start: its own module, so that both the TLS
//! setup and the server can name it without importing each other.

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Binding or setting up the listener failed.
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS certificate or key could not be loaded.
    #[error("bad TLS identity: {0}")]
    Tls(#[from] native_tls::Error),
    /// The certificate, key or client CA for client certificates
    /// (`tls_client_ca_pem`) could not be loaded.
    #[error("bad TLS setup for client certificates: {0}")]
    ClientAuth(String),
}
