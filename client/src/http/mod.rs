//! A small blocking HTTP/1.1 client for exactly one kind of request: the
//! enrollment `POST` of a JSON body with a bearer token.
//!
//! It replaces a general HTTP client because those log raw request heads
//! (the `Authorization` header) at TRACE. This module logs nothing but the
//! URL without its query string and the response status, and its errors
//! never quote the request or the response.
//!
//! One deadline bounds the whole exchange: TCP connect, TLS handshake,
//! sending, and reading the response. Redirects are not followed. The
//! response head is capped at [`MAX_HEAD`] bytes and the body at
//! [`MAX_BODY`]; the body is framed by `Content-Length`, by
//! `Transfer-Encoding: chunked`, or by the end of the connection.
//!
//! DNS resolution uses the system resolver, which has no timeout: a hanging
//! resolver can outlast the deadline (the control socket has the same limit).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::proxy::ProxyOptions;
use crate::tls::TlsOptions;

mod response;

pub(crate) use response::read_response;

/// Largest response head (status line, headers, and any interim 1xx heads).
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Largest response body; a larger one is an error, never truncated.
pub(crate) const MAX_BODY: usize = 1024 * 1024;
/// Largest chunk-size line (the size and its extensions).
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Most header fields in a response head.
const MAX_HEADERS: usize = 128;
/// Bytes asked of the stream per read call.
const READ_CHUNK: usize = 8 * 1024;

/// What kind of failure an [`HttpError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// The URL or a header value cannot be sent.
    InvalidRequest,
    /// DNS or TCP connect failed.
    Connect,
    /// The deadline passed.
    Timeout,
    /// The TLS handshake failed (trust, host name, protocol).
    Tls,
    /// Sending or receiving failed.
    Io,
    /// The response is not valid HTTP/1.x.
    Malformed,
    /// The response head or body is over its limit.
    TooLarge,
}

/// A failed exchange. `message` says what went wrong, never quoting the
/// request or the response; `status` is set when the response head was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpError {
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
    pub(crate) status: Option<u16>,
}

impl HttpError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        HttpError {
            kind,
            message: message.into(),
            status: None,
        }
    }

    fn malformed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Malformed, message)
    }

    fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::TooLarge, message)
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Maps an I/O error of `step`; timeouts (blocking sockets report them as
/// `WouldBlock` on Unix) become [`ErrorKind::Timeout`].
fn io_error(step: &str, e: &io::Error) -> HttpError {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            HttpError::new(ErrorKind::Timeout, format!("{step} timed out"))
        }
        _ => HttpError::new(ErrorKind::Io, format!("{step} failed: {e}")),
    }
}

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

/// The response limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_head: usize,
    pub(crate) max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: MAX_HEAD,
            max_body: MAX_BODY,
        }
    }
}

/// `url` for messages and logs: scheme, host, port and path; no user
/// information, query or fragment.
pub(crate) fn display_url(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}{}", url.scheme(), url.path()),
        None => format!("{}://{host}{}", url.scheme(), url.path()),
    }
}

/// Where a request goes, from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    tls: bool,
    /// For DNS and TLS verification: a domain or an IP address, no brackets.
    host: String,
    port: u16,
    /// The `Host` header: brackets around IPv6, the port unless default.
    host_header: String,
    /// Path and query.
    request_target: String,
}

impl Target {
    fn parse(url: &url::Url) -> Result<Self, HttpError> {
        let invalid = |why: &str| HttpError::new(ErrorKind::InvalidRequest, why);
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            other => {
                return Err(invalid(&format!(
                    "the URL scheme {other:?} is not http or https"
                )))
            }
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            _ => return Err(invalid("the URL has no host")),
        };
        let port = url
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        let host_str = url.host_str().unwrap_or_default();
        let host_header = match url.port() {
            Some(p) => format!("{host_str}:{p}"),
            None => host_str.to_owned(),
        };
        let mut request_target = url.path().to_owned();
        if request_target.is_empty() {
            request_target.push('/');
        }
        if let Some(q) = url.query() {
            request_target.push('?');
            request_target.push_str(q);
        }
        Ok(Target {
            tls,
            host,
            port,
            host_header,
            request_target,
        })
    }
}

/// Whether `v` can be sent as a header value as is: no control characters
/// (they would end the header or the head early).
fn valid_header_value(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// The request head of a JSON `POST` with a bearer token.
fn request_head(target: &Target, bearer_token: &str, body_len: usize) -> String {
    format!(
        "POST {} HTTP/1.1\r\n\
         Host: {}\r\n\
         User-Agent: volt-daemon-client/{}\r\n\
         Accept: application/json\r\n\
         Content-Type: application/json\r\n\
         Authorization: Bearer {bearer_token}\r\n\
         Content-Length: {body_len}\r\n\
         Connection: close\r\n\
         \r\n",
        target.request_target,
        target.host_header,
        env!("CARGO_PKG_VERSION"),
    )
}

/// Sends `POST url` with the JSON `body` and `Authorization: Bearer
/// <bearer_token>`, and reads the whole response, all within `timeout`.
/// TLS follows `tls` (the same rules as the control socket), and the
/// route `proxy` (a CONNECT tunnel, TLS inside it). Any status is a
/// [`Response`]; only transport and framing failures are errors.
pub(crate) fn post_json(
    url: &url::Url,
    bearer_token: &str,
    body: &[u8],
    tls: &TlsOptions,
    proxy: &ProxyOptions,
    timeout: Duration,
) -> Result<Response, HttpError> {
    let deadline = Instant::now() + timeout;
    let shown = display_url(url);
    let target = Target::parse(url)?;
    if !valid_header_value(bearer_token) {
        return Err(HttpError::new(
            ErrorKind::InvalidRequest,
            "the bearer token contains control characters, which a header cannot carry",
        ));
    }
    let result = exchange(&target, bearer_token, body, tls, proxy, deadline).map_err(|mut e| {
        // The deadline cuts I/O short in ways a TLS layer may not report as
        // a timeout: past it, every failure is one.
        if e.kind != ErrorKind::Timeout && Instant::now() >= deadline {
            e.kind = ErrorKind::Timeout;
            e.message = format!("{} (timed out)", e.message);
        }
        if e.kind == ErrorKind::Timeout {
            e.message = format!("{} ({timeout:?} for the whole exchange)", e.message);
        }
        e
    });
    match &result {
        Ok(r) => log::debug!("POST {shown}: HTTP {}", r.status),
        Err(e) => match e.status {
            Some(status) => log::debug!("POST {shown}: HTTP {status}, body unreadable"),
            None => log::debug!("POST {shown}: no response"),
        },
    }
    result
}

fn exchange(
    target: &Target,
    bearer_token: &str,
    body: &[u8],
    tls: &TlsOptions,
    proxy: &ProxyOptions,
    deadline: Instant,
) -> Result<Response, HttpError> {
    // Built before connecting so that a TLS setup error costs no connection.
    let connector = if target.tls {
        Some(crate::tls::Connector::new(tls).map_err(|e| HttpError::new(ErrorKind::Tls, e))?)
    } else {
        None
    };
    let stream = connect_routed(target, proxy, deadline)?;
    let mut conn = match connector {
        None => Conn::Plain(stream),
        Some(connector) => match connector.connect(&target.host, stream) {
            crate::tls::Handshake::Done(s) => Conn::Tls(Box::new(s)),
            crate::tls::Handshake::Failed(e) => {
                return Err(HttpError::new(
                    ErrorKind::Tls,
                    format!("the TLS handshake ({}) failed: {e}", crate::tls::BACKEND),
                ))
            }
            crate::tls::Handshake::WouldBlock(_) => {
                return Err(HttpError::new(
                    ErrorKind::Timeout,
                    "the TLS handshake timed out",
                ))
            }
        },
    };
    let mut request = request_head(target, bearer_token, body.len()).into_bytes();
    request.extend_from_slice(body);
    let sent = conn.write_all(&request).and_then(|()| conn.flush());
    // The request holds the token and the password: do not keep it around.
    request.fill(0);
    std::hint::black_box(&request);
    sent.map_err(|e| io_error("sending the request", &e))?;
    read_response(conn, &Limits::default())
}

/// Connects to `target`, or to the proxy `proxy` picks for it and through
/// its CONNECT tunnel, by `deadline`.
fn connect_routed(
    target: &Target,
    proxy: &ProxyOptions,
    deadline: Instant,
) -> Result<DeadlineStream, HttpError> {
    use crate::proxy::connect::{establish, Failed};
    let route = crate::proxy::route(
        proxy,
        &crate::proxy::env::process,
        target.tls,
        &target.host,
        target.port,
    );
    let route = route.map_err(|e| HttpError::new(ErrorKind::InvalidRequest, e))?;
    let Some(proxy) = route else {
        let tcp = connect(&target.host, target.port, deadline)?;
        return Ok(DeadlineStream { tcp, deadline });
    };
    let shown = proxy.shown();
    let tcp = connect(&proxy.host, proxy.port, deadline).map_err(|mut e| {
        e.message = format!("proxy {shown}: {}", e.message);
        e
    })?;
    let mut stream = DeadlineStream { tcp, deadline };
    // The stream blocks (until the deadline): it never asks to wait.
    let tunnel = establish(&mut stream, &proxy, &target.host, target.port, || Err(()));
    tunnel.map_err(|f| match f {
        Failed::Io(m, kind) => io_error(&m, &io::Error::from(kind)),
        Failed::Wait(()) => HttpError::new(ErrorKind::Timeout, "the CONNECT tunnel timed out"),
        Failed::Refused(m) => HttpError::new(ErrorKind::Connect, m),
    })?;
    Ok(stream)
}

/// Connects to the first address of `host:port` that answers, by `deadline`.
fn connect(host: &str, port: u16, deadline: Instant) -> Result<TcpStream, HttpError> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| {
            HttpError::new(
                ErrorKind::Connect,
                format!("the DNS lookup of {host} failed: {e}"),
            )
        })?
        .collect();
    let mut last = None;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HttpError::new(
                ErrorKind::Timeout,
                format!("connecting to {addr} timed out"),
            ));
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(e) => {
                let mut err = io_error(&format!("connecting to {addr}"), &e);
                if err.kind == ErrorKind::Io {
                    err.kind = ErrorKind::Connect;
                }
                last = Some(err);
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        HttpError::new(
            ErrorKind::Connect,
            format!("the DNS lookup of {host} found no address"),
        )
    }))
}

/// A blocking TCP stream whose every read and write ends by the deadline.
#[derive(Debug)]
struct DeadlineStream {
    tcp: TcpStream,
    deadline: Instant,
}

impl DeadlineStream {
    fn left(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"))
        } else {
            Ok(left)
        }
    }
}

/// Reports a socket timeout as `TimedOut`, never `WouldBlock` (which a TLS
/// layer would take for a non-blocking socket).
fn timed_out<T>(r: io::Result<T>) -> io::Result<T> {
    r.map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock => io::Error::new(io::ErrorKind::TimedOut, "deadline passed"),
        _ => e,
    })
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.left()?;
        self.tcp.set_read_timeout(Some(left))?;
        timed_out(self.tcp.read(buf))
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.left()?;
        self.tcp.set_write_timeout(Some(left))?;
        timed_out(self.tcp.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

/// A plain or TLS connection.
enum Conn {
    Plain(DeadlineStream),
    Tls(Box<crate::tls::TlsStream<DeadlineStream>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::net::TcpListener;

    /// Yields at most one byte per read: every split point is exercised.
    struct Trickle<R>(R);

    impl<R: Read> Read for Trickle<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(1);
            self.0.read(&mut buf[..n])
        }
    }

    /// Yields `data`, then fails with `kind`.
    struct ThenFail {
        data: Cursor<Vec<u8>>,
        kind: io::ErrorKind,
        interrupted_once: bool,
    }

    impl Read for ThenFail {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if !self.interrupted_once {
                self.interrupted_once = true;
                return Err(io::Error::from(io::ErrorKind::Interrupted));
            }
            match self.data.read(buf)? {
                0 => Err(io::Error::from(self.kind)),
                n => Ok(n),
            }
        }
    }

    fn parse_with(input: &[u8], limits: Limits) -> Result<Response, HttpError> {
        let whole = read_response(Cursor::new(input.to_vec()), &limits);
        let trickled = read_response(Trickle(Cursor::new(input.to_vec())), &limits);
        assert_eq!(whole, trickled, "reads of any size give the same result");
        whole
    }

    fn parse(input: &[u8]) -> Result<Response, HttpError> {
        parse_with(input, Limits::default())
    }

    fn ok(input: &[u8]) -> (u16, String) {
        let r = parse(input).unwrap();
        (r.status, String::from_utf8(r.body).unwrap())
    }

    fn err(input: &[u8]) -> HttpError {
        parse(input).unwrap_err()
    }

    fn small() -> Limits {
        Limits {
            max_head: 256,
            max_body: 16,
        }
    }

    #[test]
    fn content_length_body() {
        assert_eq!(
            ok(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\":\"b c\"}"),
            (200, r#"{"a":"b c"}"#.into())
        );
        // Bytes after the body are not read as body.
        assert_eq!(
            ok(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nokEXTRA"),
            (201, "ok".into())
        );
        assert_eq!(
            ok(b"HTTP/1.0 500 Oops\r\nContent-Length: 0\r\n\r\n"),
            (500, "".into())
        );
        // Repeated equal values, as separate fields or a list, are one length.
        assert_eq!(
            ok(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nok"),
            (200, "ok".into())
        );
        // A reason phrase is optional.
        assert_eq!(
            ok(b"HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nok"),
            (200, "ok".into())
        );
    }

    #[test]
    fn content_length_errors() {
        let e = err(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort");
        assert_eq!((e.kind, e.status), (ErrorKind::Malformed, Some(200)));
        assert!(e.message.contains("closed 5 bytes early"), "{e}");
        for bad in ["abc", "-1", "+5", "", "1 2", "0x10", "2, 3"] {
            let input = format!("HTTP/1.1 200 OK\r\nContent-Length: {bad}\r\n\r\nok");
            assert_eq!(err(input.as_bytes()).kind, ErrorKind::Malformed, "{bad:?}");
        }
        let e = err(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc");
        assert!(e.message.contains("conflicting"), "{e}");
    }

    #[test]
    fn oversize_bodies_are_errors_not_truncations() {
        // Declared too large: refused before reading it.
        let e = parse_with(b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n", small()).unwrap_err();
        assert_eq!((e.kind, e.status), (ErrorKind::TooLarge, Some(200)));
        let e = err(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n");
        assert_eq!(e.kind, ErrorKind::TooLarge);
        // Exactly the limit is fine.
        let body = "x".repeat(16);
        let input = format!("HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n{body}");
        assert_eq!(
            parse_with(input.as_bytes(), small()).unwrap().body,
            body.as_bytes()
        );
        // The real limit, close-delimited and chunked.
        let mut input = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        input.resize(input.len() + MAX_BODY, b'x');
        assert_eq!(
            read_response(Cursor::new(input.clone()), &Limits::default())
                .unwrap()
                .body
                .len(),
            MAX_BODY
        );
        input.push(b'x');
        let e = read_response(Cursor::new(input), &Limits::default()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooLarge);
        assert!(e.message.contains("1024 KiB"), "{e}");
        let mut input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..=MAX_BODY / 4096 {
            input.extend_from_slice(b"1000\r\n");
            input.resize(input.len() + 4096, b'y');
            input.extend_from_slice(b"\r\n");
        }
        input.extend_from_slice(b"0\r\n\r\n");
        let e = read_response(Cursor::new(input), &Limits::default()).unwrap_err();
        assert_eq!((e.kind, e.status), (ErrorKind::TooLarge, Some(200)));
    }

    #[test]
    fn close_delimited_body() {
        assert_eq!(
            ok(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"x\":1}\r\nmore"),
            (200, "{\"x\":1}\r\nmore".into())
        );
        assert_eq!(ok(b"HTTP/1.0 200 OK\r\n\r\n"), (200, "".into()));
        let e = parse_with(b"HTTP/1.1 200 OK\r\n\r\n0123456789abcdefg", small()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooLarge);
    }

    #[test]
    fn no_body_for_204_and_304() {
        assert_eq!(
            ok(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"),
            (204, "".into())
        );
        assert_eq!(
            ok(b"HTTP/1.1 304 Not Modified\r\n\r\ngarbage"),
            (304, "".into())
        );
    }

    #[test]
    fn chunked_body() {
        let (status, body) = ok(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
            4\r\n{\"a\"\r\n\
            A;name=value;flag\r\n:\"0123456\"\r\n\
            1 ; q=\"quoted;semi\"\r\n}\r\n\
            0\r\n\r\n");
        assert_eq!((status, body.as_str()), (200, "{\"a\":\"0123456\"}"));
        // Trailers, upper-case hex, leading zeros, bare LF endings, and
        // Transfer-Encoding over Content-Length.
        let (_, body) = ok(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\ntransfer-encoding: Chunked\r\n\r\n\
            000B\r\nhello world\r\n\
            2\n!!\n\
            0;last\r\nExpires: never\r\nX-Checksum: abc\r\n\r\nignored",
        );
        assert_eq!(body, "hello world!!");
        // Transfer-Encoding split over fields is one list.
        assert_eq!(
            ok(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            (200, "".into())
        );
        // Data containing CRLF is data.
        assert_eq!(
            ok(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n\r\n\r\n\r\n0\r\n\r\n")
                .1,
            "\r\n\r\n"
        );
    }

    #[test]
    fn malformed_chunked_bodies() {
        let chunked = |rest: &str| {
            let input = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{rest}");
            parse(input.as_bytes()).unwrap_err()
        };
        for rest in [
            "g\r\n",                    // not hex
            "\r\n",                     // no size
            " 5\r\nhello\r\n0\r\n\r\n", // leading space
            "+5\r\nhello\r\n0\r\n\r\n", // sign
            "-1\r\n",
            "5\r\nhelloX\r\n0\r\n\r\n",      // longer than its size
            "5\r\nhello",                    // EOF before the chunk's end
            "5\r\nhel",                      // EOF inside a chunk
            "5\r\nhello\r\n",                // EOF before the last chunk
            "0\r\n",                         // EOF in trailers
            "0\r\nno-colon\r\n\r\n",         // bad trailer
            "0\r\n: empty-name\r\n\r\n",     // bad trailer
            "2;ext\u{1}\r\nok\r\n0\r\n\r\n", // control character in an extension
        ] {
            let e = chunked(rest);
            assert_eq!(
                (e.kind, e.status),
                (ErrorKind::Malformed, Some(200)),
                "{rest:?}: {e}"
            );
        }
        assert!(chunked("5\r\nhelloX\r\n")
            .message
            .contains("longer than its size"));
        // Sizes past u64, or past the limit.
        assert_eq!(chunked("1ffffffffffffffff\r\n").kind, ErrorKind::TooLarge);
        assert_eq!(chunked("fffffffffffffff\r\n").kind, ErrorKind::TooLarge);
        // An endless chunk-size line (extensions) is bounded.
        let e = chunked(&format!("1;{}", "e".repeat(10_000)));
        assert!(e.message.contains("too long"), "{e}");
        // So are trailers.
        let e = parse_with(
            format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: {}\r\n\r\n",
                "t".repeat(300)
            )
            .as_bytes(),
            small(),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
        // Codings other than chunked alone are refused.
        for te in ["gzip", "gzip, chunked", "chunked, gzip", "identity"] {
            let input = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\n");
            assert_eq!(err(input.as_bytes()).kind, ErrorKind::Malformed, "{te}");
        }
    }

    #[test]
    fn interim_responses_are_skipped() {
        assert_eq!(
            ok(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            (200, "ok".into())
        );
        assert_eq!(
            err(b"HTTP/1.1 101 Switching Protocols\r\n\r\n").kind,
            ErrorKind::Malformed
        );
        // Endless interim responses hit the head limit.
        let input = "HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_HEAD / 20);
        assert_eq!(err(input.as_bytes()).kind, ErrorKind::TooLarge);
    }

    #[test]
    fn malformed_heads() {
        let e = err(b"");
        assert_eq!((e.kind, e.status), (ErrorKind::Malformed, None));
        assert!(e.message.contains("without answering"), "{e}");
        let e = err(b"HTTP/1.1 200 OK\r\nContent-Le");
        assert!(e.message.contains("inside the response head"), "{e}");
        for bad in [
            &b"garbage\r\n\r\n"[..],
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/2 200 OK\r\n\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 099 Low\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n",
            b"<html>hello</html>",
        ] {
            let e = err(bad);
            assert_eq!(
                (e.kind, e.status),
                (ErrorKind::Malformed, None),
                "{bad:?}: {e}"
            );
        }
        // Heads over the limit, by size or by field count.
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "h".repeat(MAX_HEAD));
        let e = err(huge.as_bytes());
        assert_eq!(e.kind, ErrorKind::TooLarge);
        assert!(e.message.contains("64 KiB"), "{e}");
        let endless = format!("HTTP/1.1 200 OK\r\nX: {}", "h".repeat(2 * MAX_HEAD));
        assert_eq!(err(endless.as_bytes()).kind, ErrorKind::TooLarge);
        let many = format!(
            "HTTP/1.1 200 OK\r\n{}\r\n",
            "A: b\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(err(many.as_bytes()).kind, ErrorKind::TooLarge);
        let enough = format!(
            "HTTP/1.1 200 OK\r\n{}Content-Length: 0\r\n\r\n",
            "A: b\r\n".repeat(MAX_HEADERS - 1)
        );
        assert_eq!(ok(enough.as_bytes()), (200, "".into()));
    }

    #[test]
    fn read_errors_and_timeouts() {
        let fail = |data: &[u8], kind| {
            read_response(
                ThenFail {
                    data: Cursor::new(data.to_vec()),
                    kind,
                    interrupted_once: false,
                },
                &Limits::default(),
            )
            .unwrap_err()
        };
        let e = fail(b"HTTP/1.1 200 OK\r\n", io::ErrorKind::WouldBlock);
        assert_eq!((e.kind, e.status), (ErrorKind::Timeout, None));
        assert_eq!(e.message, "reading the response head timed out");
        let e = fail(
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc",
            io::ErrorKind::TimedOut,
        );
        assert_eq!((e.kind, e.status), (ErrorKind::Timeout, Some(200)));
        let e = fail(
            b"HTTP/1.1 503 No\r\n\r\nabc",
            io::ErrorKind::ConnectionReset,
        );
        assert_eq!((e.kind, e.status), (ErrorKind::Io, Some(503)));
        assert!(
            e.message.starts_with("reading the response body failed: "),
            "{e}"
        );
    }

    #[test]
    fn targets_and_request_heads() {
        let t = |s: &str| Target::parse(&url::Url::parse(s).unwrap());
        let a = t("https://user:pw@volt.example.com/api/x/healthcheck?a=1&b=%20#frag").unwrap();
        assert_eq!(
            a,
            Target {
                tls: true,
                host: "volt.example.com".into(),
                port: 443,
                host_header: "volt.example.com".into(),
                request_target: "/api/x/healthcheck?a=1&b=%20".into(),
            }
        );
        let b = t("http://[::1]:8080").unwrap();
        assert_eq!((b.tls, b.host.as_str(), b.port), (false, "::1", 8080));
        assert_eq!(
            (b.host_header.as_str(), b.request_target.as_str()),
            ("[::1]:8080", "/")
        );
        let c = t("HTTP://127.0.0.1:80/p?").unwrap();
        assert_eq!(
            (c.host_header.as_str(), c.port, c.request_target.as_str()),
            ("127.0.0.1", 80, "/p?")
        );
        let d = t("https://[2001:db8::1]/e").unwrap();
        assert_eq!(
            (d.host.as_str(), d.port, d.host_header.as_str()),
            ("2001:db8::1", 443, "[2001:db8::1]")
        );
        for bad in ["ftp://h/x", "ws://h/x", "file:///etc/passwd", "mailto:a@b"] {
            assert_eq!(t(bad).unwrap_err().kind, ErrorKind::InvalidRequest, "{bad}");
        }

        let head = request_head(&b, "tok-1", 42);
        assert_eq!(
            head,
            format!(
                "POST / HTTP/1.1\r\nHost: [::1]:8080\r\nUser-Agent: volt-daemon-client/{}\r\n\
                 Accept: application/json\r\nContent-Type: application/json\r\n\
                 Authorization: Bearer tok-1\r\nContent-Length: 42\r\nConnection: close\r\n\r\n",
                env!("CARGO_PKG_VERSION")
            )
        );
    }

    #[test]
    fn display_url_drops_user_info_query_and_fragment() {
        let d = |s: &str| display_url(&url::Url::parse(s).unwrap());
        assert_eq!(
            d("https://u:secret@h.example:8443/a/b?token=secret#secret"),
            "https://h.example:8443/a/b"
        );
        assert_eq!(d("http://[::1]/x"), "http://[::1]/x");
        assert_eq!(d("https://h:443/"), "https://h/");
    }

    #[test]
    fn a_token_that_would_break_the_head_is_refused_without_being_quoted() {
        let url = url::Url::parse("http://127.0.0.1:9/").unwrap();
        for token in ["a\r\nX-Injected: 1", "a\nb", "a\0b", "a\u{7f}"] {
            let e = post_json(
                &url,
                token,
                b"{}",
                &TlsOptions::default(),
                &ProxyOptions::none(),
                Duration::from_secs(1),
            )
            .unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidRequest);
            assert!(!e.message.contains(token));
        }
    }

    /// A one-connection server: hands the request to `answer`.
    fn serve(
        answer: impl FnOnce(TcpStream, Vec<u8>) + Send + 'static,
    ) -> (url::Url, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = url::Url::parse(&format!(
            "http://{}/enroll?x=1",
            listener.local_addr().unwrap()
        ))
        .unwrap();
        let h = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"{\"k\":1}") {
                let n = conn.read(&mut buf).unwrap();
                assert!(n > 0, "request cut short");
                request.extend_from_slice(&buf[..n]);
            }
            answer(conn, request);
        });
        (url, h)
    }

    #[test]
    fn post_json_over_tcp() {
        let (url, server) = serve(|mut conn, request| {
            let text = String::from_utf8(request).unwrap();
            assert!(text.starts_with("POST /enroll?x=1 HTTP/1.1\r\n"), "{text}");
            assert!(
                text.contains("\r\nAuthorization: Bearer tok-9\r\n"),
                "{text}"
            );
            assert!(text.contains("\r\nContent-Length: 7\r\n"), "{text}");
            assert!(text.ends_with("\r\n\r\n{\"k\":1}"), "{text}");
            conn.write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            )
            .unwrap();
            // Holds the connection open: the chunked body ends the read.
            std::thread::sleep(Duration::from_millis(500));
        });
        let t = Instant::now();
        let r = post_json(
            &url,
            "tok-9",
            b"{\"k\":1}",
            &TlsOptions::default(),
            &ProxyOptions::none(),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
        assert!(
            t.elapsed() < Duration::from_millis(400),
            "{:?}",
            t.elapsed()
        );
        server.join().unwrap();
    }

    #[test]
    fn one_deadline_bounds_the_whole_exchange() {
        // One byte every 100 ms: every read is quick, the whole is not.
        let (url, server) = serve(|mut conn, _| {
            for b in b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
                .iter()
                .chain([b'x'; 100].iter())
            {
                if conn.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let timeout = Duration::from_millis(700);
        let t = Instant::now();
        let e = post_json(
            &url,
            "tok",
            b"{\"k\":1}",
            &TlsOptions::default(),
            &ProxyOptions::none(),
            timeout,
        )
        .unwrap_err();
        let took = t.elapsed();
        assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
        assert!(e.message.contains("for the whole exchange"), "{e}");
        assert!(
            took >= timeout - Duration::from_millis(20)
                && took < timeout + Duration::from_millis(300),
            "{took:?}"
        );
        server.join().unwrap();
    }

    #[test]
    fn connection_refused_is_a_connect_error() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = url::Url::parse(&format!("http://127.0.0.1:{port}/enroll?token=zzz")).unwrap();
        let e = post_json(
            &url,
            "tok",
            b"{}",
            &TlsOptions::default(),
            &ProxyOptions::none(),
            Duration::from_secs(2),
        )
        .unwrap_err();
        assert_eq!((e.kind, e.status), (ErrorKind::Connect, None), "{e}");
        assert!(
            e.message
                .contains(&format!("connecting to 127.0.0.1:{port} failed")),
            "{e}"
        );
    }
}
