//! HTTP request heads: parsing (with `httparse`) and the few questions the
//! router asks of them.

/// Largest request head accepted.
pub(crate) const MAX_HEAD: usize = 16 * 1024;

/// A parsed request head.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub method: String,
    /// The path, still percent-encoded.
    pub path: String,
    pub query: Vec<(String, String)>,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    /// Bytes the head took in the buffer.
    pub len: usize,
}

/// `Ok(None)`: incomplete, read more.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(len)) => {
            let target = req.path.unwrap_or("/");
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            let query = query
                .split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect();
            Ok(Some(Head {
                method: req.method.unwrap_or("").to_owned(),
                path: path.to_owned(),
                query,
                headers: req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect(),
                len,
            }))
        }
        Err(e) => Err(format!("malformed HTTP request: {e}")),
    }
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .any(|(k, v)| k == name && v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    /// Whether the path is the socket.io path (with or without the final slash).
    pub fn is_socket_path(&self, socket_path: &str) -> bool {
        self.path == socket_path || self.path == socket_path.trim_end_matches('/')
    }

    /// The `Sec-WebSocket-Key` when this is a valid Engine.IO v4 WebSocket
    /// upgrade on the socket.io path.
    pub fn ws_key(&self, socket_path: &str) -> Option<&str> {
        if self.method != "GET"
            || !self.is_socket_path(socket_path)
            || self.query("EIO") != Some("4")
            || self.query("transport") != Some("websocket")
            || !self.header_has_token("upgrade", "websocket")
            || !self.header_has_token("connection", "upgrade")
            || self.header("sec-websocket-version") != Some("13")
        {
            return None;
        }
        self.header("sec-websocket-key")
    }
}

/// Decodes `%XX` escapes (and keeps anything malformed as it is).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(b) = hex {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The reason phrase of a status.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// A whole `Connection: close` JSON response.
pub(crate) fn json_response(status: u16, body: &serde_json::Value) -> Vec<u8> {
    let body = body.to_string();
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}
