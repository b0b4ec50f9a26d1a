//! Enrollment over HTTP: one request, once per client lifetime, which may
//! rotate the daemon password.

use std::io::Read;
use std::sync::Arc;

use serde_json::{json, Value};
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

use crate::error::{DaemonClientError, DaemonClientErrorCode};
use crate::options::{ClusterDaemonClientOptions, EnrollmentOptions};

/// Largest enrollment response body read; anything bigger is refused.
const MAX_BODY: u64 = 1024 * 1024;

/// Whether `connect()` must enroll, per the contract: a URL and a token,
/// unless explicitly disabled. `enabled == true` without a token is a
/// configuration error caught by validation.
pub(crate) fn wanted(options: &ClusterDaemonClientOptions) -> Option<(&EnrollmentOptions, &str)> {
    let e = options.enrollment.as_ref()?;
    if e.enabled == Some(false) {
        return None;
    }
    let token = options.credentials.enrollment_token.as_deref()?;
    Some((e, token))
}

/// Resolves the enrollment URL against `server_url` (RFC 3986).
pub(crate) fn resolve_url(server_url: &str, reference: &str) -> Result<url::Url, String> {
    if let Ok(abs) = url::Url::parse(reference) {
        return Ok(abs);
    }
    let base = url::Url::parse(server_url).map_err(|e| format!("server_url is not a URL: {e}"))?;
    base.join(reference)
        .map_err(|e| format!("enrollment URL {reference:?} does not resolve: {e}"))
}

fn failed(message: impl Into<String>) -> DaemonClientError {
    DaemonClientError::new(DaemonClientErrorCode::EnrollmentFailed, message)
}

/// Runs the enrollment request; returns the rotated password, if the server sent one.
pub(crate) fn enroll(
    options: &ClusterDaemonClientOptions,
    enrollment: &EnrollmentOptions,
    token: &str,
    current_password: &str,
) -> Result<Option<String>, DaemonClientError> {
    let url = resolve_url(&options.server_url, &enrollment.url).map_err(failed)?;
    let agent = agent(options, enrollment)?;
    let creds = &options.credentials;
    let body = json!({
        "teamClusterId": creds.team_cluster_id,
        "enrollmentToken": token,
        "installedVersion": creds.installed_version,
        "daemonPassword": current_password,
    });
    log::info!("enrolling cluster {} at {url}", creds.team_cluster_id);
    let response = agent
        .post(url.as_str())
        .header("Accept", "application/json")
        .header("Authorization", &format!("Bearer {token}"))
        .send_json(&body)
        .map_err(|e| {
            failed(format!(
                "enrollment request to {url} failed: {}",
                transport_error(&e)
            ))
        })?;
    let status = response.status().as_u16();
    let mut text = String::new();
    let read = response
        .into_body()
        .into_reader()
        .take(MAX_BODY)
        .read_to_string(&mut text);
    let parsed: Option<Value> = serde_json::from_str(&text).ok();
    if !(200..300).contains(&status) {
        let server_message = parsed
            .as_ref()
            .and_then(|v| v.get("message"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let server_code = parsed
            .as_ref()
            .and_then(|v| v.get("code"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        return Err(
            failed(format!("enrollment at {url} answered HTTP {status}"))
                .with_status(status)
                .with_server(server_code, server_message),
        );
    }
    if let Err(e) = read {
        return Err(
            failed(format!("reading the enrollment response failed: {e}")).with_status(status),
        );
    }
    let Some(Value::Object(obj)) = parsed else {
        return Err(failed(format!(
            "enrollment at {url} answered HTTP {status} with a body that is not a JSON object"
        ))
        .with_status(status));
    };
    Ok(obj
        .get("daemonPassword")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .map(str::to_owned))
}

/// Describes a ureq error without echoing request headers (the token).
fn transport_error(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        ureq::Error::Io(io) => format!("I/O error: {io}"),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        other => other.to_string(),
    }
}

fn agent(
    options: &ClusterDaemonClientOptions,
    enrollment: &EnrollmentOptions,
) -> Result<ureq::Agent, DaemonClientError> {
    let tls = &options.socket.tls;
    let roots = if tls.root_certificates_pem.is_empty() {
        RootCerts::PlatformVerifier
    } else {
        let certs = tls
            .root_certificates_pem
            .iter()
            .map(|pem| {
                Certificate::from_pem(pem)
                    .map(|c| c.to_owned())
                    .map_err(|e| failed(format!("a root certificate is not valid PEM: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        RootCerts::Specific(Arc::new(certs))
    };
    let tls_config = TlsConfig::builder()
        .provider(TlsProvider::NativeTls)
        .root_certs(roots)
        .disable_verification(tls.danger_accept_invalid_certs)
        .build();
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(enrollment.timeout))
        .http_status_as_error(false)
        .tls_config(tls_config)
        .build();
    Ok(config.into())
}
