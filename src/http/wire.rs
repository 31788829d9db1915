//! HTTP/1.1 on the wire, without sockets: the request head (with its
//! limits), request body framing (`Content-Length` or chunked), and the
//! bytes of a response head. The event loop feeds these with what it read.

use super::request::MAX_BODY;
use super::response::Resp;

/// One line of the head (request line or header) may not be longer.
pub const MAX_LINE: usize = 8 * 1024;
/// The whole head may not be longer.
pub const MAX_HEAD: usize = 64 * 1024;
/// Header fields beyond this many are refused like an oversized head.
const MAX_HEADERS: usize = 128;

/// A request refused before a handler saw it. The connection is closed
/// after the answer: what follows on it cannot be trusted to be a request.
#[derive(Debug)]
pub struct Reject {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Reject {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Reject {
        Reject {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn resp(&self) -> Resp {
        Resp::error(self.code, self.status, &self.message)
    }

    fn head_too_large(what: &str) -> Reject {
        Reject::new(
            431,
            "header_too_large",
            format!(
                "{what}: a head line may have at most {MAX_LINE} bytes and the head \
                 {MAX_HEAD} bytes in at most {MAX_HEADERS} fields"
            ),
        )
    }

    pub fn body_too_large() -> Reject {
        Reject::new(
            413,
            "payload_too_large",
            format!("the request body is larger than {MAX_BODY} bytes"),
        )
    }
}

/// How the body of a request is delimited.
#[derive(Debug, PartialEq)]
pub enum Framing {
    Length(usize),
    Chunked,
}

/// A parsed request head.
#[derive(Debug)]
pub struct Head {
    pub method: String,
    pub target: String,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub framing: Framing,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on HTTP/1.1.
    pub expects_continue: bool,
}

impl Head {
    fn header<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.headers
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether a body follows the head.
    pub fn has_body(&self) -> bool {
        self.framing != Framing::Length(0)
    }
}

/// Parses the head at the start of `buf`: `Ok(None)` when more bytes are
/// needed (and the limits still allow them), else the head and its length.
/// Empty lines before the request line are skipped (RFC 9112 §2.2).
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, Reject> {
    let skip = buf
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .unwrap_or(buf.len());
    let text = &buf[skip..];
    let Some(end) = head_end(text)? else {
        return Ok(None);
    };
    let first = text.split(|b| *b == b'\n').next().unwrap_or_default();
    check_request_line(first.strip_suffix(b"\r").unwrap_or(first))?;
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut slots);
    match parsed.parse(&text[..end]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(Reject::new(400, "bad_request", "incomplete request head"))
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Reject::head_too_large("too many header fields"))
        }
        Err(e) => {
            return Err(Reject::new(
                400,
                "bad_request",
                format!("malformed request head: {e}"),
            ))
        }
    }
    let minor = parsed.version.unwrap_or(1);
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect();
    let mut head = Head {
        method: parsed.method.unwrap_or_default().to_ascii_uppercase(),
        target: parsed.path.unwrap_or_default().to_string(),
        headers,
        framing: Framing::Length(0),
        keep_alive: false,
        expects_continue: false,
    };
    head.framing = framing(&head)?;
    let connection: Vec<String> = head
        .header("connection")
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    head.keep_alive = if minor == 0 {
        connection.iter().any(|t| t == "keep-alive")
    } else {
        !connection.iter().any(|t| t == "close")
    };
    head.expects_continue = minor == 1
        && head
            .header("expect")
            .any(|v| v.eq_ignore_ascii_case("100-continue"));
    Ok(Some((head, skip + end)))
}

/// The length of the head up to and including its empty line, checking
/// the line and head limits on what has arrived so far.
fn head_end(buf: &[u8]) -> Result<Option<usize>, Reject> {
    let mut start = 0;
    for (i, b) in buf.iter().enumerate() {
        if *b != b'\n' {
            continue;
        }
        if i - start > MAX_LINE {
            return Err(Reject::head_too_large("a head line is too long"));
        }
        let line = &buf[start..i];
        if line.is_empty() || line == b"\r" {
            return if i + 1 > MAX_HEAD {
                Err(Reject::head_too_large("the request head is too large"))
            } else {
                Ok(Some(i + 1))
            };
        }
        start = i + 1;
    }
    if buf.len() - start > MAX_LINE {
        return Err(Reject::head_too_large("a head line is too long"));
    }
    if buf.len() > MAX_HEAD {
        return Err(Reject::head_too_large("the request head is too large"));
    }
    Ok(None)
}

/// `METHOD TARGET HTTP/1.x` in visible ASCII; another HTTP version is 505.
fn check_request_line(line: &[u8]) -> Result<(), Reject> {
    let bad = |m: &str| Reject::new(400, "bad_request", m);
    if line
        .iter()
        .any(|b| !(0x21..=0x7e).contains(b) && *b != b' ')
    {
        return Err(bad(
            "the request line may hold only visible ASCII characters and spaces",
        ));
    }
    let parts: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
    let [_, _, version] = parts.as_slice() else {
        return Err(bad("the request line must be `METHOD TARGET HTTP/1.1`"));
    };
    match *version {
        b"HTTP/1.0" | b"HTTP/1.1" => Ok(()),
        v if v.starts_with(b"HTTP/") => Err(Reject::new(
            505,
            "http_version_not_supported",
            "only HTTP/1.0 and HTTP/1.1 are served",
        )),
        _ => Err(bad("the request line must end in HTTP/1.0 or HTTP/1.1")),
    }
}

/// `Content-Length` or `Transfer-Encoding: chunked`; both at once, or two
/// lengths that differ, could be read differently by a proxy: refused.
fn framing(head: &Head) -> Result<Framing, Reject> {
    let te: Vec<&str> = head.header("transfer-encoding").collect();
    let lengths: Vec<&str> = head.header("content-length").collect();
    if !te.is_empty() {
        let codings: Vec<String> = te
            .iter()
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .collect();
        if codings != ["chunked"] {
            return Err(Reject::new(
                501,
                "not_implemented",
                format!(
                    "Transfer-Encoding {:?} is not supported; send chunked or Content-Length",
                    te.join(", ")
                ),
            ));
        }
        if !lengths.is_empty() {
            return Err(Reject::new(
                400,
                "bad_request",
                "a request may not carry both Content-Length and Transfer-Encoding",
            ));
        }
        return Ok(Framing::Chunked);
    }
    let mut length = None;
    for v in lengths.iter().flat_map(|v| v.split(',')) {
        let n = v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|_| v.trim().bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                Reject::new(
                    400,
                    "bad_request",
                    format!("Content-Length must be a whole number, got {v:?}"),
                )
            })?;
        if length.is_some_and(|l| l != n) {
            return Err(Reject::new(
                400,
                "bad_request",
                "the request carries different Content-Length values",
            ));
        }
        length = Some(n);
    }
    match length {
        Some(n) if n > MAX_BODY as u64 => Err(Reject::body_too_large()),
        Some(n) => Ok(Framing::Length(n as usize)),
        None => Ok(Framing::Length(0)),
    }
}

/// An incremental decoder of a chunked body (RFC 9112 §7.1), bounded by
/// [`MAX_BODY`]; chunk extensions and trailer fields are read and dropped.
#[derive(Debug, Default)]
pub struct Chunked {
    state: ChunkState,
    line: Vec<u8>,
    trailer_bytes: usize,
}

#[derive(Debug, Default, PartialEq)]
enum ChunkState {
    #[default]
    Size,
    Data(usize),
    DataEnd,
    Trailer,
    Done,
}

impl Chunked {
    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes what it can of `input` into `body`; returns how many bytes
    /// of `input` it used (less than all only once the body is complete).
    pub fn feed(&mut self, input: &[u8], body: &mut Vec<u8>) -> Result<usize, Reject> {
        let bad = |m: &str| Reject::new(400, "bad_request", format!("chunked body: {m}"));
        let mut i = 0;
        while i < input.len() && self.state != ChunkState::Done {
            match self.state {
                ChunkState::Data(left) => {
                    let n = left.min(input.len() - i);
                    body.extend_from_slice(&input[i..i + n]);
                    i += n;
                    self.state = if n == left {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - n)
                    };
                }
                _ => {
                    let b = input[i];
                    i += 1;
                    if b != b'\n' {
                        self.line.push(b);
                        if self.line.len() > MAX_LINE {
                            return Err(bad("a line is too long"));
                        }
                        continue;
                    }
                    let line = std::mem::take(&mut self.line);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    match self.state {
                        ChunkState::Size => {
                            let size = line.split(|b| *b == b';').next().unwrap_or_default();
                            let size = std::str::from_utf8(size)
                                .ok()
                                .map(str::trim)
                                .filter(|s| !s.is_empty() && s.len() <= 8)
                                .and_then(|s| usize::from_str_radix(s, 16).ok())
                                .ok_or_else(|| bad("a chunk size is not a hex number"))?;
                            if body.len() + size > MAX_BODY {
                                return Err(Reject::body_too_large());
                            }
                            self.state = if size == 0 {
                                ChunkState::Trailer
                            } else {
                                ChunkState::Data(size)
                            };
                        }
                        ChunkState::DataEnd if line.is_empty() => self.state = ChunkState::Size,
                        ChunkState::DataEnd => return Err(bad("a chunk is longer than its size")),
                        ChunkState::Trailer if line.is_empty() => self.state = ChunkState::Done,
                        ChunkState::Trailer => {
                            self.trailer_bytes += line.len();
                            if self.trailer_bytes > MAX_HEAD {
                                return Err(Reject::head_too_large("the trailer is too large"));
                            }
                        }
                        ChunkState::Data(_) | ChunkState::Done => unreachable!(),
                    }
                }
            }
        }
        Ok(i)
    }
}

/// The head of a response with a body of `body_len` bytes; `None` for a
/// stream, which has no length and ends when the connection closes.
/// Answers are not stored by caches unless the handler says otherwise
/// with a `Cache-Control` header of its own.
pub fn response_head(resp: &Resp, body_len: Option<usize>, close: bool) -> Vec<u8> {
    use std::fmt::Write;
    let mut h = String::with_capacity(256);
    let _ = write!(
        h,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type
    );
    if !resp
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("cache-control"))
    {
        h.push_str("Cache-Control: no-store\r\n");
    }
    h.push_str("X-Content-Type-Options: nosniff\r\n");
    if let Some(n) = body_len {
        let _ = write!(h, "Content-Length: {n}\r\n");
    }
    for (name, value) in &resp.headers {
        let _ = write!(h, "{name}: {value}\r\n");
    }
    h.push_str(if close {
        "Connection: close\r\n\r\n"
    } else {
        "Connection: keep-alive\r\n\r\n"
    });
    h.into_bytes()
}

/// The complete bytes of `resp`.
pub fn response_bytes(resp: &Resp, close: bool) -> Vec<u8> {
    response_bytes_to(resp, close, false)
}

/// The complete bytes of `resp` as the answer to a request that was a
/// `HEAD` or not. A 1xx, 204 or 304 has no body and no length (a 304's
/// length would have to be that of the 200 it stands for); the answer to
/// a `HEAD` has the length of the body a `GET` would get, and no body.
pub fn response_bytes_to(resp: &Resp, close: bool, head_request: bool) -> Vec<u8> {
    let bodiless = matches!(resp.status, 100..=199 | 204 | 304);
    let len = (!bodiless).then_some(resp.body.len());
    let mut out = response_head(resp, len, close);
    if !bodiless && !head_request {
        out.extend_from_slice(&resp.body);
    }
    out
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(s: &str) -> Result<Option<(Head, usize)>, Reject> {
        parse_head(s.as_bytes())
    }

    fn status(s: &[u8]) -> u16 {
        parse_head(s).expect_err("refused").status
    }

    #[test]
    fn parses_a_head_and_its_framing() {
        let text = "POST /api/x?a=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n";
        let (h, n) = head(&format!("\r\n{text}hello")).unwrap().unwrap();
        assert_eq!(n, 2 + text.len());
        assert_eq!(
            (h.method.as_str(), h.target.as_str()),
            ("POST", "/api/x?a=1")
        );
        assert_eq!(h.framing, Framing::Length(5));
        assert!(h.keep_alive && !h.expects_continue);
        let (h, _) = head("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive && !h.has_body());
        let (h, _) = head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.keep_alive);
        let (h, _) = head("PUT / HTTP/1.1\r\nConnection: close\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive && h.expects_continue);
        assert_eq!(h.framing, Framing::Chunked);
        assert!(head("GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
    }

    #[test]
    fn refuses_bad_heads() {
        assert_eq!(status("GET /\u{e9} HTTP/1.1\r\n\r\n".as_bytes()), 400);
        assert_eq!(status(b"GET / HTTP/2.0\r\n\r\n"), 505);
        assert_eq!(status(b"GET / FTP/1.0\r\n\r\n"), 400);
        assert_eq!(status(b"GET /\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nbad header\r\n\r\n"), 400);
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
            501
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n"),
            413
        );
    }

    #[test]
    fn limits_lines_and_heads_before_they_end() {
        let long = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_LINE));
        assert_eq!(status(long.as_bytes()), 431);
        let mut many = String::from("GET / HTTP/1.1\r\n");
        while many.len() <= MAX_HEAD {
            many.push_str(&format!("X-{}: {}\r\n", many.len(), "b".repeat(1000)));
        }
        assert_eq!(status(many.as_bytes()), 431);
        let mut fields = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            fields.push_str(&format!("X-{i}: 1\r\n"));
        }
        fields.push_str("\r\n");
        assert_eq!(status(fields.as_bytes()), 431);
    }

    #[test]
    fn decodes_chunked_bodies_in_pieces() {
        let wire = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        for split in 0..wire.len() - 4 {
            let mut c = Chunked::default();
            let mut body = Vec::new();
            let used = c.feed(&wire[..split], &mut body).unwrap();
            assert_eq!(used, split);
            let used = c.feed(&wire[split..], &mut body).unwrap();
            assert!(c.done());
            assert_eq!(body, b"hello world");
            assert_eq!(&wire[split + used..], b"NEXT");
        }
        let mut body = Vec::new();
        assert_eq!(
            Chunked::default()
                .feed(b"zz\r\n", &mut body)
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            Chunked::default()
                .feed(b"3\r\nabcd\r\n", &mut body)
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            Chunked::default()
                .feed(b"100001\r\n", &mut body)
                .unwrap_err()
                .status,
            413
        );
    }

    #[test]
    fn writes_response_heads() {
        let resp = Resp::error("x", 405, "m").with_header("Allow", "GET".into());
        let text = String::from_utf8(response_bytes(&resp, true)).unwrap();
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(text.contains("\r\nAllow: GET\r\n"));
        let body = r#"{"error":"x","message":"m"}"#;
        assert!(text.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
        assert!(text.ends_with(body));
        assert!(text.contains("\r\nConnection: close\r\n\r\n{"));
        assert!(text.contains("\r\nCache-Control: no-store\r\n"));
    }

    #[test]
    fn head_and_not_modified_answers_have_no_body() {
        let resp = Resp::error("x", 405, "m");
        let text = String::from_utf8(response_bytes_to(&resp, false, true)).unwrap();
        assert!(text.contains(&format!("\r\nContent-Length: {}\r\n", resp.body.len())));
        assert!(text.ends_with("\r\n\r\n"), "{text}");

        let mut resp = Resp::error("x", 304, "m").with_header("Cache-Control", "no-cache".into());
        let text = String::from_utf8(response_bytes(&resp, false)).unwrap();
        assert!(!text.contains("Content-Length"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
        assert_eq!(text.matches("Cache-Control").count(), 1, "{text}");
        assert!(text.contains("\r\nCache-Control: no-cache\r\n"));
        resp.status = 204;
        assert!(String::from_utf8(response_bytes(&resp, false))
            .unwrap()
            .ends_with("\r\n\r\n"));
    }
}
