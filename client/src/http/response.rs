//! Reading the response: the head (status, interim 1xx heads, framing
//! headers) and the body, framed by `Content-Length`, chunked encoding or
//! the end of the connection, each within its limit.

use std::io::{self, Read};

use super::{
    io_error, ErrorKind, HttpError, Limits, Response, MAX_CHUNK_LINE, MAX_HEADERS, READ_CHUNK,
};

/// A reader with a buffer of what was read but not yet used.
struct Source<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    /// Where reads land before joining `buf` (no zero-filling per read).
    scratch: Box<[u8; READ_CHUNK]>,
}

impl<R: Read> Source<R> {
    fn new(inner: R) -> Self {
        Source {
            inner,
            buf: Vec::new(),
            pos: 0,
            scratch: Box::new([0; READ_CHUNK]),
        }
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        debug_assert!(self.pos <= self.buf.len());
        if self.pos >= self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Reads more into the buffer; `false` at the end of the stream.
    fn fill(&mut self, step: &str) -> Result<bool, HttpError> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        loop {
            match self.inner.read(&mut self.scratch[..]) {
                Ok(n) => {
                    self.buf.extend_from_slice(&self.scratch[..n]);
                    return Ok(n > 0);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(step, &e)),
            }
        }
    }

    /// Appends exactly `n` bytes to `out`.
    fn read_exact_into(
        &mut self,
        n: usize,
        out: &mut Vec<u8>,
        step: &str,
    ) -> Result<(), HttpError> {
        let mut missing = n;
        while missing > 0 {
            if self.buffered().is_empty() && !self.fill(step)? {
                return Err(HttpError::malformed(format!(
                    "{step}: the connection closed {missing} bytes early"
                )));
            }
            let take = missing.min(self.buffered().len());
            out.extend_from_slice(&self.buffered()[..take]);
            self.consume(take);
            missing -= take;
        }
        Ok(())
    }

    /// One line ending in CRLF (or a bare LF), without its ending; at most
    /// `max` bytes long.
    fn read_line(&mut self, max: usize, step: &str) -> Result<Vec<u8>, HttpError> {
        let mut scanned = 0;
        loop {
            let data = self.buffered();
            if let Some(i) = data[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + i;
                let line = data[..end].strip_suffix(b"\r").unwrap_or(&data[..end]);
                if line.len() > max {
                    return Err(HttpError::malformed(format!(
                        "{step}: the line is too long"
                    )));
                }
                let line = line.to_vec();
                self.consume(end + 1);
                return Ok(line);
            }
            scanned = data.len();
            // `max` bytes and a CR may still end in an LF; more may not.
            if scanned > max + 1 {
                return Err(HttpError::malformed(format!(
                    "{step}: the line is too long"
                )));
            }
            if !self.fill(step)? {
                return Err(HttpError::malformed(format!(
                    "{step}: the connection closed inside a chunked body"
                )));
            }
        }
    }
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    Close,
}

/// Reads one response from `reader`: the head (skipping interim 1xx
/// responses), then the body as the head frames it, within `limits`. Body
/// errors carry the status.
pub(crate) fn read_response<R: Read>(reader: R, limits: &Limits) -> Result<Response, HttpError> {
    let mut src = Source::new(reader);
    let (status, framing) = read_head(&mut src, limits.max_head)?;
    let body = read_body(&mut src, framing, limits).map_err(|mut e| {
        e.status = Some(status);
        e
    })?;
    Ok(Response { status, body })
}

/// What one parse of the buffered bytes found.
enum Parsed {
    Head {
        len: usize,
        status: u16,
        framing: Framing,
    },
    Interim {
        len: usize,
    },
    Partial,
}

/// Parses `data` as a response head; `skipped` bytes of interim heads came
/// before it.
fn parse_head(data: &[u8], skipped: usize, max_head: usize) -> Result<Parsed, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(data) {
        Ok(httparse::Status::Complete(len)) => {
            if skipped + len > max_head {
                return Err(head_too_large(max_head));
            }
            let status = response.code.unwrap_or(0);
            match status {
                101 => Err(HttpError::malformed(
                    "the server switched protocols (HTTP 101) unasked",
                )),
                100..=199 => Ok(Parsed::Interim { len }),
                200..=999 => Ok(Parsed::Head {
                    len,
                    status,
                    framing: framing(status, response.headers)?,
                }),
                _ => Err(HttpError::malformed(format!(
                    "the response status {status} is not valid"
                ))),
            }
        }
        Ok(httparse::Status::Partial) => Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => Err(HttpError::too_large(format!(
            "the response head has more than {MAX_HEADERS} header fields"
        ))),
        Err(e) => Err(HttpError::malformed(format!(
            "the response head is not valid HTTP/1.x ({e})"
        ))),
    }
}

/// Reads the head of the final response: its status and body framing.
///
/// The buffered bytes are parsed again only when an empty line arrived, or
/// when they doubled since the last parse (which still catches a garbage
/// answer at once): a head sent a byte at a time costs linear time.
fn read_head<R: Read>(src: &mut Source<R>, max_head: usize) -> Result<(u16, Framing), HttpError> {
    const STEP: &str = "reading the response head";
    // Bytes of interim (1xx) heads already skipped: they count toward the cap.
    let mut skipped = 0usize;
    // How much of the buffered data was searched for an empty line, and
    // how much was buffered at the last parse.
    let mut searched = 0usize;
    let mut parsed_at = 0usize;
    loop {
        let data = src.buffered();
        let from = searched.saturating_sub(2);
        let tail = &data[from..];
        let empty_line =
            tail.windows(2).any(|w| w == b"\n\n") || tail.windows(3).any(|w| w == b"\n\r\n");
        searched = data.len();
        let parsed =
            if !data.is_empty() && (empty_line || parsed_at == 0 || data.len() >= 2 * parsed_at) {
                parsed_at = data.len();
                parse_head(data, skipped, max_head)?
            } else {
                Parsed::Partial
            };
        match parsed {
            Parsed::Head {
                len,
                status,
                framing,
            } => {
                src.consume(len);
                return Ok((status, framing));
            }
            Parsed::Interim { len } => {
                skipped += len;
                src.consume(len);
                searched = 0;
                parsed_at = 0;
                continue;
            }
            Parsed::Partial => {}
        }
        if skipped + src.buffered().len() >= max_head {
            return Err(head_too_large(max_head));
        }
        if !src.fill(STEP)? {
            let data = src.buffered();
            if data.is_empty() && skipped == 0 {
                return Err(HttpError::malformed(
                    "the server closed the connection without answering",
                ));
            }
            // Garbage is reported as such, a cut-off head as cut off.
            parse_head(data, skipped, max_head)?;
            return Err(HttpError::malformed(
                "the connection closed inside the response head",
            ));
        }
    }
}

fn head_too_large(max_head: usize) -> HttpError {
    HttpError::too_large(format!(
        "the response head is larger than {} KiB",
        max_head / 1024
    ))
}

/// The body framing of a final response (RFC 9112 §6.3). A transfer coding
/// overrides `Content-Length`; only `chunked` alone is supported (no
/// `Accept-Encoding`/`TE` is sent, so nothing else is due).
fn framing(status: u16, headers: &[httparse::Header<'_>]) -> Result<Framing, HttpError> {
    if status == 204 || status == 304 {
        return Ok(Framing::Empty);
    }
    let mut codings: Option<Vec<String>> = None;
    let mut length: Option<u64> = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let value = std::str::from_utf8(h.value)
                .map_err(|_| HttpError::malformed("Transfer-Encoding is not text"))?;
            let list = codings.get_or_insert_with(Vec::new);
            list.extend(
                value
                    .split(',')
                    .map(|c| c.trim_matches([' ', '\t']))
                    .filter(|c| !c.is_empty())
                    .map(str::to_ascii_lowercase),
            );
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let n = content_length(h.value)?;
            if length.is_some_and(|prev| prev != n) {
                return Err(HttpError::malformed(
                    "the response has conflicting Content-Length values",
                ));
            }
            length = Some(n);
        }
    }
    match (codings, length) {
        (Some(c), _) if c.len() == 1 && c[0] == "chunked" => Ok(Framing::Chunked),
        (Some(_), _) => Err(HttpError::malformed(
            "the response uses a Transfer-Encoding other than chunked",
        )),
        (None, Some(n)) => Ok(Framing::Length(n)),
        (None, None) => Ok(Framing::Close),
    }
}

/// A `Content-Length` value: digits, or a list of equal ones (RFC 9110
/// §8.6). Too large for `u64` saturates (it is over any limit anyway).
fn content_length(value: &[u8]) -> Result<u64, HttpError> {
    let bad = || HttpError::malformed("the response's Content-Length is not a number");
    let mut result: Option<u64> = None;
    for part in value.split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        let n = part.iter().fold(0u64, |n, &d| {
            n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
        });
        if result.is_some_and(|r| r != n) {
            return Err(bad());
        }
        result = Some(n);
    }
    result.ok_or_else(bad)
}

fn body_too_large(max_body: usize) -> HttpError {
    HttpError::too_large(format!(
        "the response body is larger than {} KiB",
        max_body / 1024
    ))
}

fn read_body<R: Read>(
    src: &mut Source<R>,
    framing: Framing,
    limits: &Limits,
) -> Result<Vec<u8>, HttpError> {
    const STEP: &str = "reading the response body";
    match framing {
        Framing::Empty => Ok(Vec::new()),
        Framing::Length(n) => {
            if n > limits.max_body as u64 {
                return Err(body_too_large(limits.max_body));
            }
            let n = n as usize;
            let mut body = Vec::with_capacity(n);
            src.read_exact_into(n, &mut body, STEP)?;
            Ok(body)
        }
        Framing::Chunked => read_chunked(src, limits),
        Framing::Close => {
            let mut body = Vec::new();
            loop {
                let data = src.buffered();
                if body.len() + data.len() > limits.max_body {
                    return Err(body_too_large(limits.max_body));
                }
                body.extend_from_slice(data);
                let n = data.len();
                src.consume(n);
                if !src.fill(STEP)? {
                    return Ok(body);
                }
            }
        }
    }
}

/// Decodes a chunked body (RFC 9112 §7.1): chunk extensions are ignored,
/// trailer fields are read and dropped. Every line and the total are bounded.
fn read_chunked<R: Read>(src: &mut Source<R>, limits: &Limits) -> Result<Vec<u8>, HttpError> {
    const STEP: &str = "reading the chunked response body";
    let mut body = Vec::new();
    loop {
        let line = src.read_line(MAX_CHUNK_LINE, STEP)?;
        let size = chunk_size(&line)?;
        if size == 0 {
            break;
        }
        if size > (limits.max_body - body.len()) as u64 {
            return Err(body_too_large(limits.max_body));
        }
        src.read_exact_into(size as usize, &mut body, STEP)?;
        let end = src.read_line(0, STEP).map_err(|e| match e.kind {
            ErrorKind::Malformed if e.message.ends_with("too long") => {
                HttpError::malformed(format!("{STEP}: a chunk is longer than its size"))
            }
            _ => e,
        })?;
        debug_assert!(end.is_empty());
    }
    let mut trailers = 0usize;
    loop {
        let left = limits.max_head.saturating_sub(trailers);
        let line = src.read_line(left, STEP).map_err(|e| match e.kind {
            ErrorKind::Malformed if e.message.ends_with("too long") => {
                HttpError::too_large(format!(
                    "the response trailers are larger than {} KiB",
                    limits.max_head / 1024
                ))
            }
            _ => e,
        })?;
        if line.is_empty() {
            return Ok(body);
        }
        trailers += line.len() + 2;
        let valid = line
            .iter()
            .position(|&b| b == b':')
            .is_some_and(|colon| colon > 0 && line[..colon].iter().all(|&b| is_tchar(b)))
            && line.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f));
        if !valid {
            return Err(HttpError::malformed(format!(
                "{STEP}: a trailer field is not valid"
            )));
        }
    }
}

/// A token character (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The size of a chunk-size line: hex digits, optional whitespace, then
/// optional `;` extensions (ignored, but no control characters).
fn chunk_size(line: &[u8]) -> Result<u64, HttpError> {
    let bad = || HttpError::malformed("the chunked response body has a malformed chunk size");
    let (size, ext) = match line.iter().position(|&b| b == b';') {
        Some(i) => (&line[..i], &line[i..]),
        None => (line, &line[line.len()..]),
    };
    let size = {
        let mut s = size;
        while let [rest @ .., b' ' | b'\t'] = s {
            s = rest;
        }
        s
    };
    if size.is_empty() || !size.iter().all(u8::is_ascii_hexdigit) {
        return Err(bad());
    }
    if ext.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(bad());
    }
    let digits = size.iter().skip_while(|&&b| b == b'0').count();
    if digits > 16 {
        return Err(HttpError::too_large(
            "the chunked response body has a chunk larger than any limit",
        ));
    }
    Ok(size.iter().fold(0u64, |n, &d| {
        let v = (d as char).to_digit(16).unwrap_or(0);
        (n << 4) | u64::from(v)
    }))
}
