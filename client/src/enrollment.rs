//! Enrollment over HTTP: one request, once per client lifetime, which may
//! rotate the daemon password.

use serde_json::{json, Value};

use crate::endpoint::resolve_url;
use crate::error::{DaemonClientError, DaemonClientErrorCode};
use crate::http;
use crate::options::{ClusterDaemonClientOptions, EnrollmentOptions};

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

fn failed(message: impl Into<String>) -> DaemonClientError {
    DaemonClientError::new(DaemonClientErrorCode::EnrollmentFailed, message)
}

/// Runs the enrollment request; returns the rotated password, if the server sent one.
///
/// Neither the token nor the password reaches a log record or an error:
/// messages name the URL without its query string (see [`http::display_url`]).
pub(crate) fn enroll(
    options: &ClusterDaemonClientOptions,
    enrollment: &EnrollmentOptions,
    token: &str,
    current_password: &str,
) -> Result<Option<String>, DaemonClientError> {
    let url = resolve_url(&options.server_url, &enrollment.url).map_err(failed)?;
    let shown = http::display_url(&url);
    let creds = &options.credentials;
    let body = json!({
        "teamClusterId": creds.team_cluster_id,
        "enrollmentToken": token,
        "installedVersion": creds.installed_version,
        "daemonPassword": current_password,
    });
    let body = serde_json::to_vec(&body)
        .map_err(|e| failed(format!("encoding the enrollment request failed: {e}")))?;
    log::info!("enrolling cluster {} at {shown}", creds.team_cluster_id);
    let proxy = enrollment.proxy.as_ref().unwrap_or(&options.socket.proxy);
    let result = http::post_json(
        &url,
        token,
        &body,
        &options.socket.tls,
        proxy,
        enrollment.timeout,
    );
    let response = match result {
        Ok(r) => r,
        // The head arrived but not the body: a failure status is still
        // reported as such (without the server's message).
        Err(e) => {
            return Err(match e.status {
                Some(status) if !(200..300).contains(&status) => failed(format!(
                    "enrollment at {shown} answered HTTP {status} (its body is unreadable: {e})"
                ))
                .with_status(status),
                Some(status) => failed(format!(
                    "reading the enrollment response from {shown} failed: {e}"
                ))
                .with_status(status),
                None => failed(format!("enrollment request to {shown} failed: {e}")),
            })
        }
    };
    let status = response.status;
    let parsed: Option<Value> = serde_json::from_slice(&response.body).ok();
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
            failed(format!("enrollment at {shown} answered HTTP {status}"))
                .with_status(status)
                .with_server(server_code, server_message),
        );
    }
    let Some(Value::Object(obj)) = parsed else {
        return Err(failed(format!(
            "enrollment at {shown} answered HTTP {status} with a body that is not a JSON object"
        ))
        .with_status(status));
    };
    Ok(obj
        .get("daemonPassword")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .map(str::to_owned))
}
