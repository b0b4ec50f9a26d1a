//! Plain HTTP on the server's port: the admin API, enrollment, and the
//! error answers for the socket.io path. Each request runs on a short-lived
//! thread and talks to the event loop through a [`ServerHandle`].

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::core::Shared;
use crate::head::{self, parse_head, percent_decode, Head};
use crate::model::*;
use crate::server::ServerHandle;

const IO_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BODY: usize = 64 * 1024 * 1024;

type HttpResult = Result<(u16, Value), (u16, String)>;

/// Serves one plain HTTP request whose first bytes the loop already read.
pub(crate) fn serve_plain(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    buf: Vec<u8>,
    _peer: SocketAddr,
) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let handle = ServerHandle::from_shared(shared);
    serve(&handle, &mut stream, buf);
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Runs the TLS handshake, reads the request head, then either hands a
/// WebSocket upgrade to the loop or serves the HTTP request here.
pub(crate) fn serve_tls(
    shared: Arc<Shared>,
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
    if let Some(key) = head.ws_key(&shared.config.path).map(str::to_owned) {
        let leftover = buf[head.len..].to_vec();
        let tcp = tls.get_ref();
        if tcp.set_read_timeout(None).is_err()
            || tcp.set_write_timeout(None).is_err()
            || tcp.set_nonblocking(true).is_err()
        {
            return;
        }
        let _ = shared.send(Box::new(move |core| {
            core.adopt_tls(tls, peer, key, leftover)
        }));
        return;
    }
    let handle = ServerHandle::from_shared(shared);
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

fn admin(handle: &ServerHandle, method: &str, path: &[&str], body: &[u8]) -> HttpResult {
    let not_allowed = || Err((405, format!("{method} not allowed here")));
    match (method, path) {
        ("GET", ["daemons"]) => Ok((
            200,
            serde_json::to_value(handle.daemons()).unwrap_or_default(),
        )),
        ("POST", ["daemons", id, "commands"]) => {
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
            let reply = handle.dispatch(
                id,
                command,
                b.get("payload").cloned(),
                Duration::from_millis(timeout),
            );
            Ok((200, from_dispatch(reply)?.to_json()))
        }
        ("GET", ["daemons", id, "commands"]) => {
            Ok((200, Value::Array(handle.received_commands(id))))
        }
        ("POST", ["daemons", id, "messages"]) => {
            let message = json_body(body)?.ok_or_else(|| bad("the body must be the message"))?;
            from_dispatch(handle.send_message(id, message))?;
            Ok((202, json!({})))
        }
        ("GET", ["daemons", id, "messages"]) => {
            Ok((200, Value::Array(handle.received_messages(id))))
        }
        ("POST", ["daemons", id, "kick"]) => {
            let n = from_dispatch(handle.kick(id))?;
            Ok((200, json!({ "kicked": n })))
        }
        ("POST", ["daemons", id, "drop"]) => {
            let n = from_dispatch(handle.drop_transport(id))?;
            Ok((200, json!({ "dropped": n })))
        }
        ("POST", ["daemons", id, "raw"]) => {
            let b = object_body(body)?;
            let frame = match (b.get("text"), b.get("binaryBase64")) {
                (Some(Value::String(t)), None) => RawFrame::Text(t.clone()),
                (None, Some(Value::String(b64))) => RawFrame::Binary(
                    base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .map_err(|e| bad(format!("bad binaryBase64: {e}")))?,
                ),
                _ => {
                    return Err(bad(
                        "give exactly one of \"text\" or \"binaryBase64\" (strings)",
                    ))
                }
            };
            from_dispatch(handle.send_raw(id, frame))?;
            Ok((202, json!({})))
        }
        ("PUT", ["responders", command]) => {
            let spec = json_body(body)?.ok_or_else(|| bad("the body must be a responder"))?;
            let responder = Responder::from_json(&spec).map_err(bad)?;
            handle.set_responder(command, responder);
            Ok((200, json!({})))
        }
        ("DELETE", ["responders", command]) => {
            handle.clear_responder(command);
            Ok((200, json!({})))
        }
        (_, ["responders", _]) => not_allowed(),
        ("GET", ["faults"]) => Ok((
            200,
            serde_json::to_value(handle.faults()).unwrap_or_default(),
        )),
        ("PUT", ["faults"]) => {
            let b = object_body(body)?;
            let faults: Faults = serde_json::from_value(Value::Object(b))
                .map_err(|e| bad(format!("bad faults: {e}")))?;
            handle.set_faults(faults);
            Ok((
                200,
                serde_json::to_value(handle.faults()).unwrap_or_default(),
            ))
        }
        ("DELETE", ["faults"]) => {
            handle.clear_faults();
            Ok((
                200,
                serde_json::to_value(handle.faults()).unwrap_or_default(),
            ))
        }
        (_, ["faults"]) => not_allowed(),
        ("POST", ["clusters"]) => {
            let b = object_body(body)?;
            let (Some(Value::String(id)), Some(Value::String(pw))) =
                (b.get("teamClusterId"), b.get("daemonPassword"))
            else {
                return Err(bad("teamClusterId and daemonPassword must be strings"));
            };
            handle.add_cluster(id, pw);
            Ok((201, json!({ "teamClusterId": id })))
        }
        ("GET", ["enrollment"]) => Ok((
            200,
            serde_json::to_value(handle.enrollment()).unwrap_or_default(),
        )),
        ("PUT", ["enrollment"]) => {
            let b = object_body(body)?;
            let mut settings = handle.enrollment();
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
            handle.set_enrollment(settings.clone());
            Ok((200, serde_json::to_value(settings).unwrap_or_default()))
        }
        (_, ["enrollment"]) => not_allowed(),
        ("GET", ["frames"]) => {
            let frames: Vec<Value> = handle
                .frames(None)
                .into_iter()
                .map(|f| {
                    let mut v = f.frame.to_json();
                    v["dir"] = json!(f.dir);
                    v["conn"] = json!(f.conn);
                    v["teamClusterId"] = json!(f.cluster);
                    v
                })
                .collect();
            Ok((200, Value::Array(frames)))
        }
        ("DELETE", ["frames"]) => {
            handle.clear_frames();
            Ok((200, json!({})))
        }
        ("GET", ["stats"]) => {
            let s = handle.stats();
            Ok((
                200,
                json!({
                    "connections": s.connections,
                    "connectionsTotal": s.connections_total,
                    "framesIn": s.frames_in,
                    "framesOut": s.frames_out,
                    "protocolErrors": s.protocol_errors,
                    "commands": s.commands,
                }),
            ))
        }
        _ => Err((
            404,
            format!("no admin route for {method} /admin/{}", path.join("/")),
        )),
    }
}
