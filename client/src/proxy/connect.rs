//! The CONNECT tunnel: the request, the proxy's answer, and the exchange
//! over any stream (the socket's non-blocking one, enrollment's blocking
//! one). Messages name the proxy's host and port and the status, never the
//! credentials.

use std::io::{self, Read, Write};

use base64::Engine as _;

use super::{ProxyCredentials, ProxyUrl};

/// Largest answer head a proxy may send to CONNECT.
const MAX_HEAD: usize = 16 * 1024;
/// Most header fields in that head.
const MAX_HEADERS: usize = 64;

/// Why a tunnel was not opened.
#[derive(Debug)]
pub(crate) enum Failed<W> {
    /// Waiting for the stream ended (deadline, disconnect).
    Wait(W),
    /// Reading or writing failed: the message, and the I/O error's kind.
    Io(String, io::ErrorKind),
    /// The proxy answered, but not with a tunnel (non-2xx, or not HTTP).
    Refused(String),
}

/// Refuses credentials a `Proxy-Authorization` header cannot carry. The
/// message never quotes them.
pub(crate) fn check_credentials(c: &ProxyCredentials) -> Result<(), String> {
    let clean = |s: &str| s.chars().all(|ch| !ch.is_control());
    if c.username.contains(':') {
        return Err(
            "the proxy user name contains ':', which basic authentication cannot carry".into(),
        );
    }
    if !clean(&c.username) || !clean(&c.password) {
        return Err("the proxy credentials contain control characters".into());
    }
    Ok(())
}

/// `host:port` of the target as CONNECT names it (brackets around IPv6).
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The CONNECT request for `host:port`, with basic credentials if any.
pub(crate) fn request(
    host: &str,
    port: u16,
    credentials: Option<&ProxyCredentials>,
) -> Result<Vec<u8>, String> {
    let target = authority(host, port);
    let mut head = format!(
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: volt-daemon-client/{}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    if let Some(c) = credentials {
        check_credentials(c)?;
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", c.username, c.password));
        head.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    head.push_str("\r\n");
    Ok(head.into_bytes())
}

/// The status in a complete answer head, or `None` while it is partial.
pub(crate) fn parse_answer(head: &[u8], proxy: &str) -> Result<Option<(usize, u16)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut answer = httparse::Response::new(&mut headers);
    match answer.parse(head) {
        Ok(httparse::Status::Complete(len)) => Ok(Some((len, answer.code.unwrap_or(0)))),
        Ok(httparse::Status::Partial) if head.len() >= MAX_HEAD => Err(format!(
            "the proxy {proxy} sent an answer head over {} KiB",
            MAX_HEAD / 1024
        )),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(format!("the proxy {proxy} did not answer in HTTP: {e}")),
    }
}

/// The message for a refused tunnel: the proxy and the status, nothing the
/// proxy wrote (it could echo anything).
pub(crate) fn refusal(proxy: &str, target: &str, status: u16) -> String {
    let why = match status {
        407 => " (proxy authentication required: credentials missing or refused)",
        403 => " (forbidden by the proxy)",
        502..=504 => " (the proxy could not reach the server)",
        _ => "",
    };
    format!("the proxy {proxy} refused the tunnel to {target}: HTTP {status}{why}")
}

/// Opens a tunnel to `host:port` through `proxy` over `stream`, which is
/// connected to the proxy. `wait` is called when the stream would block and
/// returns when it may be ready. A proxy that sends bytes past its answer
/// head is refused (the server cannot have spoken yet).
pub(crate) fn establish<S: Read + Write, W>(
    stream: &mut S,
    proxy: &ProxyUrl,
    host: &str,
    port: u16,
    mut wait: impl FnMut() -> Result<(), W>,
) -> Result<(), Failed<W>> {
    let shown = proxy.shown();
    let target = authority(host, port);
    let mut out = request(host, port, proxy.credentials.as_ref()).map_err(Failed::Refused)?;
    let mut sent = 0;
    let written = loop {
        if sent == out.len() {
            break Ok(());
        }
        match stream.write(&out[sent..]) {
            Ok(0) => break Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait().map_err(Failed::Wait)?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    // The request may hold the credentials: do not keep it around.
    out.fill(0);
    std::hint::black_box(&out);
    let io_failed = |step: &str, e: io::Error| {
        Failed::Io(format!("{step} the proxy {shown} failed: {e}"), e.kind())
    };
    written.map_err(|e| io_failed("sending CONNECT to", e))?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => {
                return Err(Failed::Refused(format!(
                    "the proxy {shown} closed the connection before answering CONNECT"
                )))
            }
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait().map_err(Failed::Wait)?;
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_failed("reading the answer of", e)),
        }
        if let Some((len, status)) = parse_answer(&head, &shown).map_err(Failed::Refused)? {
            if !(200..300).contains(&status) {
                return Err(Failed::Refused(refusal(&shown, &target, status)));
            }
            // The server speaks only after the client (TLS or the upgrade
            // come first): bytes past the head are not the server's.
            if head.len() > len {
                return Err(Failed::Refused(format!(
                    "the proxy {shown} sent bytes past its CONNECT answer"
                )));
            }
            log::debug!("tunnel to {target} open through the proxy {shown}");
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A proxy's side as bytes: answers `answer`, a few bytes per read,
    /// blocking once before each read; records what the client wrote.
    struct Scripted {
        answer: Vec<u8>,
        pos: usize,
        blocked: bool,
        written: Vec<u8>,
    }

    impl Scripted {
        fn new(answer: &[u8]) -> Self {
            Scripted {
                answer: answer.to_vec(),
                pos: 0,
                blocked: false,
                written: Vec::new(),
            }
        }
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.blocked = !self.blocked;
            if self.blocked {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(7).min(self.answer.len() - self.pos);
            buf[..n].copy_from_slice(&self.answer[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(5);
            self.written.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn proxy(credentials: Option<ProxyCredentials>) -> ProxyUrl {
        ProxyUrl {
            host: "proxy.corp".into(),
            port: 3128,
            credentials,
        }
    }

    fn run(
        answer: &[u8],
        credentials: Option<ProxyCredentials>,
    ) -> (Result<(), Failed<()>>, String) {
        let mut s = Scripted::new(answer);
        let mut waits = 0;
        let r = establish(&mut s, &proxy(credentials), "volt.example.com", 443, || {
            waits += 1;
            Ok(())
        });
        assert!(waits > 0 || r.is_err());
        (r, String::from_utf8(s.written).unwrap())
    }

    #[test]
    fn the_connect_request_names_the_target_and_carries_basic_credentials() {
        let plain = String::from_utf8(request("volt.example.com", 443, None).unwrap()).unwrap();
        assert!(
            plain.starts_with(
                "CONNECT volt.example.com:443 HTTP/1.1\r\nHost: volt.example.com:443\r\n"
            ),
            "{plain}"
        );
        assert!(!plain.contains("Proxy-Authorization"), "{plain}");
        assert!(plain.ends_with("\r\n\r\n"));
        let creds = ProxyCredentials::new("Aladdin", "open sesame");
        let auth = String::from_utf8(request("::1", 8080, Some(&creds)).unwrap()).unwrap();
        assert!(
            auth.starts_with("CONNECT [::1]:8080 HTTP/1.1\r\n"),
            "{auth}"
        );
        assert!(
            auth.contains("\r\nProxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n"),
            "{auth}"
        );
    }

    #[test]
    fn a_2xx_answer_opens_the_tunnel_over_a_stream_that_blocks() {
        let creds = ProxyCredentials::new("u", "p");
        let (r, sent) = run(
            b"HTTP/1.1 200 Connection established\r\nProxy-Agent: x\r\n\r\n",
            Some(creds),
        );
        assert!(r.is_ok(), "{r:?}");
        assert!(
            sent.starts_with("CONNECT volt.example.com:443 HTTP/1.1\r\n")
                && sent.ends_with("\r\n\r\n"),
            "{sent}"
        );
        assert!(run(b"HTTP/1.0 204 OK\r\n\r\n", None).0.is_ok());
    }

    #[test]
    fn a_refusal_names_the_proxy_and_the_status_but_not_the_credentials() {
        let creds = ProxyCredentials::new("daemon", "hunter2");
        let answer = b"HTTP/1.1 407 hunter2\r\nProxy-Authenticate: Basic realm=\"p\"\r\nContent-Length: 4\r\n\r\nnope";
        match run(answer, Some(creds)).0 {
            Err(Failed::Refused(m)) => {
                assert!(
                    m.contains("proxy.corp:3128") && m.contains("HTTP 407"),
                    "{m}"
                );
                assert!(m.contains("volt.example.com:443"), "{m}");
                assert!(!m.contains("hunter2") && !m.contains("daemon"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        for (answer, want) in [
            (&b"HTTP/1.1 502 Bad Gateway\r\n\r\n"[..], "HTTP 502"),
            (b"HTTP/1.1 301 Moved\r\nLocation: x\r\n\r\n", "HTTP 301"),
            (b"SSH-2.0-OpenSSH\r\n\r\n", "did not answer in HTTP"),
            (
                b"HTTP/1.1 200 OK\r\n",
                "closed the connection before answering",
            ),
            (
                b"HTTP/1.1 200 OK\r\n\r\n\x16\x03",
                "bytes past its CONNECT answer",
            ),
        ] {
            match run(answer, None).0 {
                Err(Failed::Refused(m)) => assert!(m.contains(want), "{m}"),
                other => panic!("{want}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_endless_answer_head_is_bounded() {
        let mut answer = b"HTTP/1.1 200 OK\r\n".to_vec();
        answer.extend(std::iter::repeat_n(b'x', 2 * MAX_HEAD));
        match run(&answer, None).0 {
            Err(Failed::Refused(m)) => assert!(m.contains("over 16 KiB"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn waiting_that_ends_ends_the_tunnel() {
        let mut s = Scripted::new(b"HTTP/1.1 200 OK\r\n\r\n");
        let r = establish(&mut s, &proxy(None), "h", 1, || Err("deadline"));
        assert!(matches!(r, Err(Failed::Wait("deadline"))), "{r:?}");
    }
}
