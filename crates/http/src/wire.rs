//! What the edge checks of a request head beyond what hyper parses, and the
//! bytes of the few answers written without hyper (a 408 to a head that
//! never ended, a 503 at accept, and the JSON form of hyper's own answers
//! to heads it could not parse). Pure functions, no sockets.

use super::response::Resp;

/// A request target (or any head line) may not be longer: 414 for the
/// target, 431 for a header field.
pub const MAX_LINE: usize = 8 * 1024;
/// The whole head may not be longer (hyper's read buffer is held to
/// about this): 431.
pub const MAX_HEAD: usize = 64 * 1024;
/// Header fields beyond this many are refused like an oversized head.
pub const MAX_HEADERS: usize = 128;

/// Whether `value` is a valid `Host` field value: `uri-host [":" port]`
/// (RFC 9112 §3.2, RFC 3986 §3.2.2), with no user information, path or
/// anything else. An empty value is valid only with no authority at all
/// (RFC 9112 §3.2: the target has none): not for this server's targets.
pub fn valid_host(value: &str) -> bool {
    let v = value.trim();
    if v.is_empty() || v.len() > 255 + 6 {
        return false;
    }
    let (host, port) = if let Some(rest) = v.strip_prefix('[') {
        // An IP literal.
        let Some((literal, after)) = rest.split_once(']') else {
            return false;
        };
        if literal.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("x", port),
                None => return false,
            },
        }
    } else {
        match v.rsplit_once(':') {
            Some((h, p)) => (h, p),
            None => (v, ""),
        }
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b));
    let port_ok = port.bytes().all(|b| b.is_ascii_digit()) && port.len() <= 5;
    host_ok && port_ok
}

/// The transfer codings of a request's `Transfer-Encoding` fields, in
/// order, lower case.
pub fn codings<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
    values
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The status hyper's own answer to an unparsable head should have, given
/// the head's first line as read (leading empty lines skipped): a request
/// line longer than [`MAX_LINE`] is 414, one naming another major HTTP
/// version 505, else what hyper chose (400 or 431).
pub fn refine_status(hyper_status: u16, first_line: &[u8], line_complete: bool) -> u16 {
    if first_line.len() > MAX_LINE {
        return 414;
    }
    if line_complete {
        let line = first_line.strip_suffix(b"\r").unwrap_or(first_line);
        if let Some(version) = line.rsplit(|b| *b == b' ').next() {
            if let Some(v) = version.strip_prefix(b"HTTP/") {
                if !v.starts_with(b"1.") && v.first().is_some_and(u8::is_ascii_digit) {
                    return 505;
                }
            }
        }
    }
    hyper_status
}

/// The JSON answer to a head the edge refuses before any handler.
pub fn refusal(status: u16) -> Resp {
    let (code, message) = match status {
        408 => (
            "request_timeout",
            "the request did not arrive in time; connection closed",
        ),
        414 => (
            "uri_too_long",
            "the request target is longer than 8192 bytes",
        ),
        431 => (
            "header_too_large",
            "the request head is too large: a head line may have at most 8192 bytes and the \
             head 65536 bytes in at most 128 fields",
        ),
        505 => (
            "http_version_not_supported",
            "only HTTP/1.0 and HTTP/1.1 are served",
        ),
        _ => ("bad_request", "malformed request head"),
    };
    Resp::error(code, status, message)
}

/// The complete bytes of `resp`, closing the connection: for the few
/// answers written straight to a socket.
pub fn response_bytes(resp: &Resp) -> Vec<u8> {
    use std::fmt::Write;
    let mut h = String::with_capacity(256);
    let _ = write!(
        h,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nCache-Control: no-store\r\n\
         X-Content-Type-Options: nosniff\r\nContent-Length: {}\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    );
    for (name, value) in &resp.headers {
        let _ = write!(h, "{name}: {value}\r\n");
    }
    h.push_str("Connection: close\r\n\r\n");
    let mut out = h.into_bytes();
    out.extend_from_slice(&resp.body);
    out
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        408 => "Request Timeout",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for ok in [
            "x",
            "127.0.0.1:3847",
            "ops.example",
            "ops.example:443",
            "[::1]:80",
            "[::1]",
        ] {
            assert!(valid_host(ok), "{ok}");
        }
        for bad in [
            "",
            " ",
            "a b",
            "user@host",
            "host/path",
            "host:port",
            "[::1",
            "[zz]:1",
            "h:123456",
        ] {
            assert!(!valid_host(bad), "{bad}");
        }
    }

    #[test]
    fn codings_in_order() {
        assert_eq!(codings(["chunked"].into_iter()), ["chunked"]);
        assert_eq!(
            codings(["gzip, Chunked", "identity"].into_iter()),
            ["gzip", "chunked", "identity"]
        );
    }

    #[test]
    fn refines_hypers_statuses() {
        assert_eq!(refine_status(400, b"GET / HTTP/2.0\r", true), 505);
        assert_eq!(refine_status(400, b"GET / HTTP/1.2\r", true), 400);
        assert_eq!(refine_status(400, b"GET / FTP/1.0", true), 400);
        assert_eq!(refine_status(431, &[b'a'; MAX_LINE + 1], false), 414);
        assert_eq!(refine_status(431, b"GET / HTTP/1.1", true), 431);
    }

    #[test]
    fn writes_refusals() {
        let text = String::from_utf8(response_bytes(
            &refusal(408).with_header("Retry-After", "1".into()),
        ))
        .unwrap();
        assert!(
            text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nRetry-After: 1\r\n"));
        let body = r#"{"error":"request_timeout","message":"the request did not arrive in time; connection closed"}"#;
        assert!(text.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
        assert!(text.ends_with(&format!("\r\nConnection: close\r\n\r\n{body}")));
        assert!(text.contains("\r\nCache-Control: no-store\r\n"));
    }
}
