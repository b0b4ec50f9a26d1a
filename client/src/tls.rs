//! The one set of TLS trust rules, shared by the control socket (`wss://`)
//! and enrollment (`https://`).

use crate::options::TlsOptions;

/// A connector that trusts the system's roots plus `tls.root_certificates_pem`,
/// and verifies certificates and host names unless
/// `tls.danger_accept_invalid_certs` is set. The error says which step failed.
pub(crate) fn tls_connector(tls: &TlsOptions) -> Result<native_tls::TlsConnector, String> {
    let mut builder = native_tls::TlsConnector::builder();
    for pem in &tls.root_certificates_pem {
        let cert = native_tls::Certificate::from_pem(pem)
            .map_err(|e| format!("loading a root certificate failed: {e}"))?;
        builder.add_root_certificate(cert);
    }
    if tls.danger_accept_invalid_certs {
        builder
            .danger_accept_invalid_certs(true)
            .danger_accept_invalid_hostnames(true);
    }
    builder
        .build()
        .map_err(|e| format!("TLS setup failed: {e}"))
}
