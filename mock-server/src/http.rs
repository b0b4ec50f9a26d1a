//! Plain HTTP on the server's port: the admin API, enrollment, and the
//! error answers for the socket.io path. Each request runs on a short-lived
//! thread and talks to the event loop through a [`ServerHandle`].

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::handle::{ServerHandle, TlsUpgrade};
use crate::head::{self, parse_head, percent_decode, Head};
use crate::model::*;

const IO_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BODY: usize = 64 * 1024 * 1024;

type HttpResult = Result<(u16, Value), (u16, String)>;

/// Serves one plain HTTP request whose first bytes the loop already read.
pub(crate) fn serve_plain(
    handle: ServerHandle,
    mut stream: TcpStream,
    buf: Vec<u8>,
    _peer: SocketAddr,
) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    serve(&handle, &mut stream, buf);
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Runs the TLS handshake, reads the request head, then either hands a
/// WebSocket upgrade to the loop or serves the HTTP request here.
pub(crate) fn serve_tls(
    handle: ServerHandle,
    acceptor: crate::tls::TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
) {
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let mut tls = match acceptor.accept(stream) {
        Ok(t) => t,
        Err(e) => {
            log::debug!("TLS handshake with {peer} failed: {e}");
            return;
        }
    };
    let mut buf = Vec::new();
    let head = match read_head(&mut tls, &mut buf) {
        Ok(h) => h,
        Err((status, message)) => {
            let _ = tls.write_all(&head::json_response(status, &json!({ "message": message })));
            return;
        }
    };
    if let Some(key) = head.ws_key(&handle.config().path).map(str::to_owned) {
        let leftover = buf[head.len..].to_vec();
        let tcp = tls.get_ref();
        if tcp.set_read_timeout(None).is_err()
            || tcp.set_write_timeout(None).is_err()
            || tcp.set_nonblocking(true).is_err()
        {
            return;
        }
        handle.upgrade_tls(TlsUpgrade {
            tls,
            peer,
            key,
            leftover,
        });
        return;
    }
    serve_with_head(&handle, &mut tls, buf, head);
    let _ = tls.shutdown();
}

fn read_head(stream: &mut impl Read, buf: &mut Vec<u8>) -> Result<Head, (u16, String)> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(h) = parse_head(buf).map_err(|m| (400, m))? {
            return Ok(h);
        }
        if buf.len() > head::MAX_HEAD {
            return Err((431, "request head too large".into()));
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err((
                    400,
                    "connection closed before the request head ended".into(),
                ))
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err((400, format!("read error: {e}"))),
        }
    }
}

fn serve(handle: &ServerHandle, stream: &mut (impl Read + Write), mut buf: Vec<u8>) {
    match read_head(stream, &mut buf) {
        Ok(head) => serve_with_head(handle, stream, buf, head),
        Err((status, message)) => {
            let _ = stream.write_all(&head::json_response(status, &json!({ "message": message })));
        }
    }
}

fn serve_with_head(
    handle: &ServerHandle,
    stream: &mut (impl Read + Write),
    mut buf: Vec<u8>,
    head: Head,
) {
    let result = read_body(stream, &mut buf, &head).and_then(|body| route(handle, &head, body));
    let (status, body) = match result {
        Ok(x) => x,
        Err((status, message)) => (status, json!({ "message": message })),
    };
    let _ = stream.write_all(&head::json_response(status, &body));
    let _ = stream.flush();
}

fn read_body<'a>(
    stream: &mut impl Read,
    buf: &'a mut Vec<u8>,
    head: &Head,
) -> Result<&'a [u8], (u16, String)> {
    if head
        .header("transfer-encoding")
        .is_some_and(|t| !t.eq_ignore_ascii_case("identity"))
    {
        return Err((
            411,
            "chunked request bodies are not supported: send Content-Length".into(),
        ));
    }
    let len = match head.header("content-length") {
        None => 0,
        Some(v) => v
            .trim()
            .parse::<usize>()
            .map_err(|_| (400, "bad Content-Length".to_owned()))?,
    };
    if len > MAX_BODY {
        return Err((413, "request body too large".into()));
    }
    let want = head.len + len;
    let mut chunk = [0u8; 16 * 1024];
    while buf.len() < want {
        match stream.read(&mut chunk) {
            Ok(0) => return Err((400, "connection closed before the body ended".into())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err((400, format!("read error: {e}"))),
        }
    }
    Ok(&buf[head.len..want])
}

fn bad(message: impl Into<String>) -> (u16, String) {
    (400, message.into())
}

fn json_body(body: &[u8]) -> Result<Option<Value>, (u16, String)> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| bad(format!("invalid JSON body: {e}")))
}

fn object_body(body: &[u8]) -> Result<Map<String, Value>, (u16, String)> {
    match json_body(body)? {
        Some(Value::Object(m)) => Ok(m),
        _ => Err(bad("the body must be a JSON object")),
    }
}

fn dispatch_status(e: &DispatchError) -> u16 {
    match e {
        DispatchError::NotConnected(_) => 404,
        DispatchError::Timeout(_) => 504,
        DispatchError::Disconnected(_) => 502,
        DispatchError::Stopped => 503,
    }
}

fn from_dispatch<T>(r: Result<T, DispatchError>) -> Result<T, (u16, String)> {
    r.map_err(|e| (dispatch_status(&e), e.to_string()))
}

fn route(handle: &ServerHandle, head: &Head, body: &[u8]) -> HttpResult {
    let cfg = handle.config();
    if head.is_socket_path(&cfg.path) {
        if head.query("EIO").is_some_and(|v| v != "4") {
            return Ok((
                400,
                json!({"code": 5, "message": "Unsupported protocol version"}),
            ));
        }
        return Ok((
            400,
            json!({"code": 0, "message": "WebSocket transport only (connect with ?EIO=4&transport=websocket and an Upgrade: websocket request; HTTP long-polling is not supported)"}),
        ));
    }
    let segs: Vec<String> = head
        .path
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let method = head.method.as_str();
    match segs.as_slice() {
        ["api", "team-clusters", id, "healthcheck"] => {
            if method != "POST" {
                return Err((405, format!("{method} not allowed here")));
            }
            Ok(handle.enroll(id, head.header("authorization"), body))
        }
        ["admin", rest @ ..] => {
            if let Some(token) = &cfg.admin_token {
                let given = head
                    .header("authorization")
                    .and_then(|a| a.strip_prefix("Bearer "));
                if given != Some(token.as_str()) {
                    return Err((
                        401,
                        "the admin API needs Authorization: Bearer <admin token>".into(),
                    ));
                }
            }
            admin(handle, method, rest, body)
        }
        _ => Err((404, format!("no route for {method} {}", head.path))),
    }
}

fn not_allowed(method: &str) -> HttpResult {
    Err((405, format!("{method} not allowed here")))
}

fn to_json(v: impl serde::Serialize) -> Value {
    serde_json::to_value(v).unwrap_or_default()
}

/// `/admin/...`: one function per resource.
fn admin(handle: &ServerHandle, method: &str, path: &[&str], body: &[u8]) -> HttpResult {
    match path {
        ["daemons"] if method == "GET" => Ok((200, to_json(handle.daemons()))),
        ["daemons", id, what] => daemon(handle, method, id, what, body),
        ["responders", command] => responders(handle, method, command, body),
        ["faults"] => faults(handle, method, body),
        ["clusters"] if method == "POST" => clusters(handle, body),
        ["enrollment"] => enrollment(handle, method, body),
        ["frames"] if method == "GET" => Ok((200, frames(handle))),
        ["frames"] if method == "DELETE" => {
            handle.clear_frames();
            Ok((200, json!({})))
        }
        ["stats"] if method == "GET" => Ok((200, stats(handle))),
        _ => Err((
            404,
            format!("no admin route for {method} /admin/{}", path.join("/")),
        )),
    }
}

fn no_route(method: &str, id: &str, what: &str) -> HttpResult {
    Err((
        404,
        format!("no admin route for {method} /admin/daemons/{id}/{what}"),
    ))
}

/// `/admin/daemons/<cluster>/<what>`.
fn daemon(handle: &ServerHandle, method: &str, id: &str, what: &str, body: &[u8]) -> HttpResult {
    match (method, what) {
        ("POST", "commands") => dispatch(handle, id, body),
        ("GET", "commands") => Ok((200, Value::Array(handle.received_commands(id)))),
        ("POST", "messages") => {
            let message = json_body(body)?.ok_or_else(|| bad("the body must be the message"))?;
            from_dispatch(handle.send_message(id, message))?;
            Ok((202, json!({})))
        }
        ("GET", "messages") => Ok((200, Value::Array(handle.received_messages(id)))),
        ("POST", "kick") => {
            let n = from_dispatch(handle.kick(id))?;
            Ok((200, json!({ "kicked": n })))
        }
        ("POST", "drop") => {
            let n = from_dispatch(handle.drop_transport(id))?;
            Ok((200, json!({ "dropped": n })))
        }
        ("POST", "raw") => {
            from_dispatch(handle.send_raw(id, raw_frame(body)?))?;
            Ok((202, json!({})))
        }
        _ => no_route(method, id, what),
    }
}

/// `POST /admin/daemons/<cluster>/commands`: a reverse command.
fn dispatch(handle: &ServerHandle, id: &str, body: &[u8]) -> HttpResult {
    let b = object_body(body)?;
    let command = b
        .get("command")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("command must be a string"))?;
    let timeout = match b.get("timeoutMs") {
        None | Some(Value::Null) => 10_000,
        Some(v) => v
            .as_u64()
            .filter(|t| *t > 0)
            .ok_or_else(|| bad("timeoutMs must be a positive integer"))?,
    };
    let payload = b.get("payload").cloned();
    let reply = handle.dispatch(id, command, payload, Duration::from_millis(timeout));
    Ok((200, from_dispatch(reply)?.to_json()))
}

/// The body of `POST /admin/daemons/<cluster>/raw`.
fn raw_frame(body: &[u8]) -> Result<RawFrame, (u16, String)> {
    let b = object_body(body)?;
    match (b.get("text"), b.get("binaryBase64")) {
        (Some(Value::String(t)), None) => Ok(RawFrame::Text(t.clone())),
        (None, Some(Value::String(b64))) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(RawFrame::Binary)
            .map_err(|e| bad(format!("bad binaryBase64: {e}"))),
        _ => Err(bad(
            "give exactly one of \"text\" or \"binaryBase64\" (strings)",
        )),
    }
}

/// `/admin/responders/<command>`.
fn responders(handle: &ServerHandle, method: &str, command: &str, body: &[u8]) -> HttpResult {
    match method {
        "PUT" => {
            let spec = json_body(body)?.ok_or_else(|| bad("the body must be a responder"))?;
            let responder = Responder::from_json(&spec).map_err(bad)?;
            handle.set_responder(command, responder);
            Ok((200, json!({})))
        }
        "DELETE" => {
            handle.clear_responder(command);
            Ok((200, json!({})))
        }
        _ => not_allowed(method),
    }
}

/// `/admin/faults`.
fn faults(handle: &ServerHandle, method: &str, body: &[u8]) -> HttpResult {
    match method {
        "GET" => {}
        "PUT" => {
            let b = object_body(body)?;
            let faults: Faults = serde_json::from_value(Value::Object(b))
                .map_err(|e| bad(format!("bad faults: {e}")))?;
            handle.set_faults(faults);
        }
        "DELETE" => handle.clear_faults(),
        _ => return not_allowed(method),
    }
    Ok((200, to_json(handle.faults())))
}

/// `POST /admin/clusters`.
fn clusters(handle: &ServerHandle, body: &[u8]) -> HttpResult {
    let b = object_body(body)?;
    let (Some(Value::String(id)), Some(Value::String(pw))) =
        (b.get("teamClusterId"), b.get("daemonPassword"))
    else {
        return Err(bad("teamClusterId and daemonPassword must be strings"));
    };
    handle.add_cluster(id, pw);
    Ok((201, json!({ "teamClusterId": id })))
}

/// `/admin/enrollment`.
fn enrollment(handle: &ServerHandle, method: &str, body: &[u8]) -> HttpResult {
    match method {
        "GET" => Ok((200, to_json(handle.enrollment()))),
        "PUT" => {
            let mut settings = handle.enrollment();
            update_enrollment(&mut settings, &object_body(body)?)?;
            handle.set_enrollment(settings.clone());
            Ok((200, to_json(settings)))
        }
        _ => not_allowed(method),
    }
}

/// Applies the fields of a `PUT /admin/enrollment` body.
fn update_enrollment(
    settings: &mut EnrollmentSettings,
    b: &Map<String, Value>,
) -> Result<(), (u16, String)> {
    for key in b.keys() {
        if !["tokens", "rotateTo", "failStatus"].contains(&key.as_str()) {
            return Err(bad(format!("unknown enrollment field {key:?}")));
        }
    }
    if let Some(t) = b.get("tokens") {
        settings.tokens = serde_json::from_value(t.clone())
            .map_err(|_| bad("tokens must be an array of strings"))?;
    }
    match b.get("rotateTo") {
        None => {}
        Some(Value::Null) => settings.rotate_to = None,
        Some(Value::String(s)) => settings.rotate_to = Some(s.clone()),
        Some(_) => return Err(bad("rotateTo must be a string or null")),
    }
    match b.get("failStatus") {
        None => {}
        Some(Value::Null) => settings.fail_status = None,
        Some(v) => {
            let s = v
                .as_u64()
                .filter(|s| (100..=599).contains(s))
                .ok_or_else(|| bad("failStatus must be an HTTP status or null"))?;
            settings.fail_status = Some(s as u16);
        }
    }
    Ok(())
}

/// `GET /admin/frames`.
fn frames(handle: &ServerHandle) -> Value {
    let frames = handle.frames(None).into_iter().map(|f| {
        let mut v = f.frame.to_json();
        v["dir"] = json!(f.dir);
        v["conn"] = json!(f.conn);
        v["teamClusterId"] = json!(f.cluster);
        v
    });
    Value::Array(frames.collect())
}

/// `GET /admin/stats`.
fn stats(handle: &ServerHandle) -> Value {
    let s = handle.stats();
    json!({
        "connections": s.connections,
        "connectionsTotal": s.connections_total,
        "framesIn": s.frames_in,
        "framesOut": s.frames_out,
        "protocolErrors": s.protocol_errors,
        "commands": s.commands,
    })
}
