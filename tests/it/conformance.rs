//! RFC 9112 conformance of the HTTP edge, over raw sockets: framing,
//! smuggling attempts, `Host`, request targets, methods, pipelining,
//! `HEAD`, `Expect: 100-continue`, `Connection: close`, HTTP/1.0
//! keep-alive. Each case says what the RFC requires.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use crate::client::task;
use crate::util::{Server, TOKEN};

fn connect(srv: &Server) -> TcpStream {
    let s = TcpStream::connect(&srv.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s
}

/// Everything until the server closes.
fn read_to_close(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "no close within the read timeout: {e}; got {:?}",
                String::from_utf8_lossy(&buf)
            ),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Sends `bytes` on a new connection; what came back until the server
/// closed it.
fn exchange(srv: &Server, bytes: &[u8]) -> String {
    let mut s = connect(srv);
    let _ = s.write_all(bytes);
    read_to_close(&mut s)
}

/// The status codes of every response in `text`, in order.
/// (A response to an HTTP/1.0 request says HTTP/1.0.)
fn statuses(text: &str) -> Vec<u16> {
    text.match_indices("HTTP/1.")
        .filter(|(i, _)| *i == 0 || text[..*i].ends_with('}') || text[..*i].ends_with("\r\n\r\n"))
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

/// Whether the (first) response says the connection closes.
fn says_close(text: &str) -> bool {
    text.lines()
        .take_while(|l| !l.is_empty())
        .any(|l| l.starts_with("Connection:") && l.contains("close"))
}

fn auth() -> String {
    format!("X-OPS-Service-Token: {TOKEN}\r\n")
}

/// A task body, chunked in two.
fn chunked_task(title: &str) -> String {
    let body = format!(r#"{{"title":"{title}"}}"#);
    let (a, b) = body.split_at(5);
    format!("{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n", a.len(), b.len())
}

#[test]
fn message_framing_refuses_what_could_smuggle_a_request() {
    let srv = Server::start();
    let post = |extra: &str, body: &str| {
        format!(
            "POST /api/tasks HTTP/1.1\r\nHost: x\r\n{}Content-Type: application/json\r\n{extra}\r\n{body}",
            auth()
        )
    };
    let next = "GET /api/openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let refused: Vec<(&str, String)> = vec![
        // §6.3: two different lengths cannot both be right.
        ("two lengths", post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!")),
        ("a length that is not a number", post("Content-Length: +5\r\n", "hello")),
        // §6.3: chunked must be the final coding, else the length is unknown.
        ("chunked not last", post("Transfer-Encoding: chunked, identity\r\n", &chunked_task("x"))),
        ("gzip alone", post("Transfer-Encoding: gzip\r\n", "hello")),
        // §7.1: a chunk size is hex digits, nothing else; lines end in CRLF.
        ("a plus sign", post("Transfer-Encoding: chunked\r\n", "+a\r\n0123456789\r\n0\r\n\r\n")),
        ("a leading space", post("Transfer-Encoding: chunked\r\n", " a\r\n0123456789\r\n0\r\n\r\n")),
        ("a bare LF", post("Transfer-Encoding: chunked\r\n", "a\n0123456789\n0\n\n")),
        // §5.2: obs-fold is refused in a request.
        ("obs-fold", post("X-Folded: a\r\n b\r\nContent-Length: 2\r\n", "{}")),
        // §5: a NUL in a field value.
        ("NUL", post("X-Nul: a\0b\r\nContent-Length: 2\r\n", "{}")),
        // §6.1: HTTP/1.0 has no Transfer-Encoding: the framing is faulty.
        (
            "HTTP/1.0 with Transfer-Encoding",
            format!(
                "POST /api/tasks HTTP/1.0\r\n{}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{}",
                auth(),
                chunked_task("x")
            ),
        ),
    ];
    for (what, req) in refused {
        // A pipelined request after a refused one is never answered: the
        // connection closes after the refusal.
        let text = exchange(&srv, format!("{req}{next}").as_bytes());
        assert_eq!(statuses(&text), [400], "{what}: {text}");
        assert!(text.contains("Connection: close\r\n"), "{what}: {text}");
        assert!(text.contains(r#""error":"bad_request""#), "{what}: {text}");
    }
    // A malformed trailer does not swallow the next pipelined request: the
    // request is refused and the connection closed.
    let text = exchange(
        &srv,
        format!(
            "{}{next}",
            post(
                "Transfer-Encoding: chunked\r\n",
                "2\r\n{}\r\n0\r\nbad trailer\r\n\r\n"
            )
        )
        .as_bytes(),
    );
    assert_eq!(statuses(&text), [400], "{text}");

    // §6.3: Transfer-Encoding overrides Content-Length, and the connection
    // closes after the answer, so whatever the length would have framed
    // is never read as a request.
    let smuggled = "GET /api/tasks/1 HTTP/1.1\r\nHost: x\r\n\r\n";
    let body = chunked_task("te wins");
    let text = exchange(
        &srv,
        format!(
            "{}{smuggled}",
            post(
                &format!(
                    "Transfer-Encoding: chunked\r\nContent-Length: {}\r\n",
                    body.len() + smuggled.len()
                ),
                &body
            )
        )
        .as_bytes(),
    );
    assert_eq!(statuses(&text), [201], "{text}");
    assert!(text.contains("te wins"), "{text}");
    assert!(says_close(&text), "{text}");
}

#[test]
fn host_targets_and_methods() {
    let srv = Server::start();
    let get = |line: &str, fields: &str| {
        exchange(
            &srv,
            format!("{line}\r\n{fields}{}Connection: close\r\n\r\n", auth()).as_bytes(),
        )
    };
    let doc = "GET /api/openapi.json HTTP/1.1";
    // §3.2: exactly one valid Host in HTTP/1.1, else 400.
    for (what, fields) in [
        ("no Host", ""),
        ("two Hosts", "Host: a\r\nHost: b\r\n"),
        ("an invalid Host", "Host: a b\r\n"),
        ("user info in Host", "Host: me@a\r\n"),
    ] {
        let text = get(doc, fields);
        assert_eq!(statuses(&text), [400], "{what}: {text}");
        assert!(text.contains(r#""error":"bad_request""#), "{what}: {text}");
    }
    assert_eq!(statuses(&get(doc, "Host: x\r\n")), [200]);
    // HTTP/1.0 needs none.
    let text = exchange(&srv, b"GET /api/openapi.json HTTP/1.0\r\n\r\n");
    assert_eq!(statuses(&text), [200], "{text}");

    // §3.2.2: the absolute form is accepted; its path is what is routed.
    let text = get("GET http://x/api/openapi.json HTTP/1.1", "Host: x\r\n");
    assert_eq!(statuses(&text), [200], "{text}");

    // §3: a target longer than the server parses is 414, however long.
    for len in [9 * 1024, 100 * 1024] {
        let line = format!("GET /{} HTTP/1.1", "a".repeat(len));
        let text = get(&line, "Host: x\r\n");
        assert_eq!(statuses(&text), [414], "{len}: {text}");
        assert!(text.contains(r#""error":"uri_too_long""#), "{text}");
    }

    // RFC 9110 §9.1, §15.5.6: methods are case-sensitive, and any method a
    // route does not take, known (PUT, TRACE) or not (`get`, QUERY), is
    // 405 with the methods it does take in Allow.
    let text = get("get /api/openapi.json HTTP/1.1", "Host: x\r\n");
    assert_eq!(statuses(&text), [405], "{text}");
    assert!(text.contains("Allow: GET\r\n"), "{text}");
    let text = get(
        "PUT /api/openapi.json HTTP/1.1",
        "Host: x\r\nContent-Length: 0\r\n",
    );
    assert_eq!(statuses(&text), [405], "{text}");
    assert!(text.contains("Allow: GET\r\n"), "{text}");
    for method in ["TRACE", "OPTIONS", "QUERY"] {
        let text = get(&format!("{method} /api/tasks HTTP/1.1"), "Host: x\r\n");
        assert_eq!(statuses(&text), [405], "{method}: {text}");
        assert!(text.contains("Allow: GET, POST\r\n"), "{method}: {text}");
    }

    // RFC 3986 §2.2: an encoded slash is data, not a separator.
    let text = get("GET /api/tasks%2F1 HTTP/1.1", "Host: x\r\n");
    assert_eq!(statuses(&text), [404], "{text}");
    // Other encodings are decoded per segment.
    let id = srv.service().new_task(&task("encoded"));
    let text = get(&format!("GET /api/tas%6Bs/{id} HTTP/1.1"), "Host: x\r\n");
    assert_eq!(statuses(&text), [200], "{text}");
}

#[test]
fn pipelining_head_continue_close_and_http_1_0() {
    let srv = Server::start();
    let a = auth();
    // §9.3.2: pipelined requests are answered in order.
    let id = srv.service().new_task(&task("pipelined"));
    let mut s = connect(&srv);
    s.write_all(
        format!(
            "GET /api/tasks/{id} HTTP/1.1\r\nHost: x\r\n{a}\r\n\
             GET /api/tasks/999999 HTTP/1.1\r\nHost: x\r\n{a}\r\n\
             POST /api/tasks HTTP/1.1\r\nHost: x\r\n{a}Content-Type: application/json\r\nContent-Length: 18\r\n\r\n{{\"title\":\"second\"}}\
             GET /api/auth/me HTTP/1.1\r\nHost: x\r\n{a}Connection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let text = read_to_close(&mut s);
    assert_eq!(statuses(&text), [200, 404, 201, 200], "{text}");
    let (first, rest) = text.split_once("pipelined").unwrap();
    assert!(!first.contains("second"));
    assert!(rest.find("not_found").unwrap() < rest.find("second").unwrap());
    assert!(rest.trim_end().ends_with(r#""role":"service"}"#), "{text}");

    // RFC 9110 §9.3.2: HEAD gets the GET's head (its length too), no body;
    // the connection goes on.
    let text = exchange(
        &srv,
        b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /api/openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(statuses(&text), [200, 200], "{text}");
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("Content-Length: "), "{head}");
    assert!(
        rest.starts_with("HTTP/1.1 200"),
        "a HEAD answer has no body: {text}"
    );

    // RFC 9110 §10.1.1: 100 Continue, then the answer.
    let body = r#"{"title":"continued"}"#;
    let mut s = connect(&srv);
    s.write_all(
        format!(
            "POST /api/tasks HTTP/1.1\r\nHost: x\r\n{a}Content-Type: application/json\r\n\
             Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let mut interim = [0u8; 25];
    s.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(body.as_bytes()).unwrap();
    let text = read_to_close(&mut s);
    assert_eq!(statuses(&text), [201], "{text}");

    // §9.6: Connection: close is honoured: the answer says so, then EOF.
    let mut s = connect(&srv);
    s.write_all(b"GET /api/openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let text = read_to_close(&mut s);
    assert!(text.contains("Connection: close\r\n"), "{text}");

    // §9.3: HTTP/1.0 closes unless it asks to keep alive.
    let mut s = connect(&srv);
    s.write_all(b"GET /api/openapi.json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("\"openapi\"") || !got.ends_with(b"}") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let first = String::from_utf8_lossy(&got).into_owned();
    assert!(
        first
            .to_ascii_lowercase()
            .contains("connection: keep-alive\r\n"),
        "{first}"
    );
    s.write_all(b"GET /api/auth/me HTTP/1.0\r\n\r\n").unwrap();
    let text = read_to_close(&mut s);
    assert_eq!(statuses(&text), [401], "{text}");
    let _ = s.shutdown(Shutdown::Both);
}
