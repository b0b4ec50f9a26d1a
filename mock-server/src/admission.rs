//! Who may in: the registration check of a `40` and the enrollment
//! exchange. Pure rules over the cluster table, the enrollment settings
//! and the faults, so each is tested without a socket.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::model::{EnrollmentSettings, Faults};

/// A registration that passed: `(cluster, installedVersion, client)`.
pub(crate) type Admitted = (String, Option<String>, Option<String>);
/// A registration refused: `(data.code, message)` of the `44`.
pub(crate) type Refused = (Option<String>, String);

/// Enrollment (contract section 1): answers `(status, body)`, consuming
/// the token and setting the cluster's password on success.
pub(crate) fn enroll(
    settings: &mut EnrollmentSettings,
    clusters: &mut HashMap<String, String>,
    cluster: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> (u16, Value) {
    let fail = |status: u16, m: &str| (status, json!({ "message": m }));
    if let Some(status) = settings.fail_status {
        return fail(status, "enrollment failed (injected failure)");
    }
    let token = authorization.and_then(|a| a.strip_prefix("Bearer "));
    let Some(index) = token.and_then(|t| settings.tokens.iter().position(|x| x == t)) else {
        return fail(401, "invalid enrollment token");
    };
    let token = settings.tokens[index].clone();
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(body) else {
        return fail(400, "the body must be a JSON object");
    };
    if body.get("teamClusterId").and_then(Value::as_str) != Some(cluster) {
        return fail(400, "teamClusterId does not match the URL");
    }
    if body.get("enrollmentToken").and_then(Value::as_str) != Some(token.as_str()) {
        return fail(400, "enrollmentToken does not match the bearer token");
    }
    let Some(password) = body.get("daemonPassword").and_then(Value::as_str) else {
        return fail(400, "daemonPassword must be a string");
    };
    if !matches!(
        body.get("installedVersion"),
        Some(Value::String(_) | Value::Null)
    ) {
        return fail(400, "installedVersion must be a string or null");
    }
    settings.tokens.remove(index);
    let mut reply = json!({ "teamClusterId": cluster, "enrolled": true });
    match settings.rotate_to.clone() {
        Some(new) => {
            clusters.insert(cluster.into(), new.clone());
            reply["daemonPassword"] = Value::String(new);
        }
        None => {
            clusters.insert(cluster.into(), password.into());
        }
    }
    (200, reply)
}

/// Checks a `40`'s auth object against the faults and the clusters.
pub(crate) fn check_registration(
    faults: &Faults,
    clusters: &HashMap<String, String>,
    auth: Option<&Value>,
) -> Result<Admitted, Refused> {
    if let Some(fault) = &faults.reject_registration {
        return Err((
            fault.code.clone(),
            fault
                .message
                .clone()
                .unwrap_or_else(|| "registration rejected".into()),
        ));
    }
    let invalid = |m: &str| {
        Err((
            Some("INVALID_REGISTRATION".into()),
            format!("invalid registration: {m}"),
        ))
    };
    let Some(Value::Object(auth)) = auth else {
        return invalid("no auth object");
    };
    for field in ["teamClusterId", "daemonPassword", "client"] {
        if !auth.get(field).is_some_and(Value::is_string) {
            return invalid(&format!("{field} must be a string"));
        }
    }
    let installed = match auth.get("installedVersion") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Null) | None => None,
        Some(_) => return invalid("installedVersion must be a string or null"),
    };
    let cluster = auth["teamClusterId"].as_str().unwrap_or_default();
    let password = auth["daemonPassword"].as_str().unwrap_or_default();
    if clusters.get(cluster).map(String::as_str) != Some(password) {
        return Err((
            Some("INVALID_CREDENTIALS".into()),
            "invalid credentials".into(),
        ));
    }
    Ok((
        cluster.to_owned(),
        installed,
        auth["client"].as_str().map(str::to_owned),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RejectRegistration;

    fn clusters() -> HashMap<String, String> {
        HashMap::from([("c1".to_owned(), "pw".to_owned())])
    }

    #[test]
    fn registration_needs_the_right_password_and_string_fields() {
        let ok = json!({"teamClusterId": "c1", "daemonPassword": "pw", "client": "t/1", "installedVersion": null});
        assert_eq!(
            check_registration(&Faults::default(), &clusters(), Some(&ok)),
            Ok(("c1".into(), None, Some("t/1".into())))
        );
        let bad_pw = json!({"teamClusterId": "c1", "daemonPassword": "no", "client": "t"});
        let (code, _) =
            check_registration(&Faults::default(), &clusters(), Some(&bad_pw)).unwrap_err();
        assert_eq!(code.as_deref(), Some("INVALID_CREDENTIALS"));
        let (code, msg) = check_registration(&Faults::default(), &clusters(), None).unwrap_err();
        assert_eq!(code.as_deref(), Some("INVALID_REGISTRATION"));
        assert!(msg.contains("no auth object"));
        let faults = Faults {
            reject_registration: Some(RejectRegistration::default()),
            ..Faults::default()
        };
        assert_eq!(
            check_registration(&faults, &clusters(), Some(&ok)),
            Err((None, "registration rejected".into()))
        );
    }

    #[test]
    fn enrollment_consumes_its_token_and_rotates_the_password() {
        let mut settings = EnrollmentSettings {
            tokens: vec!["t1".into()],
            rotate_to: Some("new".into()),
            fail_status: None,
        };
        let mut cl = clusters();
        let body = br#"{"teamClusterId":"c1","enrollmentToken":"t1","daemonPassword":"x","installedVersion":null}"#;
        let (status, reply) = enroll(&mut settings, &mut cl, "c1", Some("Bearer t1"), body);
        assert_eq!(status, 200);
        assert_eq!(reply["daemonPassword"], "new");
        assert_eq!(cl["c1"], "new");
        assert!(settings.tokens.is_empty());
        let (status, _) = enroll(&mut settings, &mut cl, "c1", Some("Bearer t1"), body);
        assert_eq!(status, 401);
    }
}
