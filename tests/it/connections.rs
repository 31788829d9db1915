//! docs/SPEC.md §6: stalled, idle and excess clients cannot stall the server;
//! deadlines close them; the head limits answer instead of hanging.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::{wait_for, Server, TOKEN};

/// Short deadlines so the tests are quick; long enough that a loaded
/// machine still gets all clients in place before they pass.
const READ_TIMEOUT: u64 = 4;
const IDLE_TIMEOUT: u64 = 4;

fn server(max_connections: usize) -> Server {
    raise_nofile();
    Server::start_with(&[
        ("OPS_HTTP_READ_TIMEOUT", &READ_TIMEOUT.to_string()),
        ("OPS_HTTP_IDLE_TIMEOUT", &IDLE_TIMEOUT.to_string()),
        ("OPS_HTTP_MAX_CONNECTIONS", &max_connections.to_string()),
    ])
}

/// Lets this process (and the servers it starts) open as many descriptors
/// as the hard limit allows.
fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit with a valid rlimit struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    lim.rlim_cur
}

fn connect(srv: &Server) -> TcpStream {
    let s = TcpStream::connect(&srv.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s
}

/// Sends `bytes` on a new connection and reads the answer to the end (the
/// server closes after each refusal).
fn exchange(srv: &Server, bytes: &[u8]) -> (u16, String) {
    let mut s = connect(srv);
    // The server may answer and stop reading before all of a large request
    // is written.
    let _ = s.write_all(bytes);
    let text = read_to_close(&mut s).expect("an answer, then close");
    (status_of(&text), text)
}

fn status_of(text: &str) -> u16 {
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"))
}

/// Everything until the server closes (EOF or reset), or an error when the
/// read timeout passes first.
fn read_to_close(s: &mut TcpStream) -> std::io::Result<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset && !buf.is_empty() => break,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => return Err(e),
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The p99 of `n` fresh-connection `GET /api/dispatch/health` calls.
fn health_p99(srv: &Server, n: usize) -> Duration {
    let client = srv.service();
    let mut samples: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            let res = client.get("/api/dispatch/health");
            assert_eq!(res.status, 200, "{}", res.text);
            t.elapsed()
        })
        .collect();
    samples.sort();
    samples[(n * 99).div_ceil(100) - 1]
}

/// Waits up to `secs` for the server to answer a health call again.
fn answers_again(srv: &Server, secs: u64) {
    wait_for(secs, "the server to answer again", || {
        let res = srv
            .service()
            .try_raw("GET", "/api/dispatch/health", b"")
            .ok()?;
        (res.status == 200).then_some(())
    });
}

/// Asserts that every socket is closed by the server between `min` and
/// `max` after `since`.
fn all_closed_by_deadline(socks: Vec<TcpStream>, since: Instant, min: Duration, max: Duration) {
    for mut s in socks {
        let left = (since + max).saturating_duration_since(Instant::now());
        s.set_read_timeout(Some(left.max(Duration::from_millis(100))))
            .unwrap();
        let text = read_to_close(&mut s).expect("closed by the deadline");
        assert!(
            text.is_empty() || status_of(&text) == 408,
            "unexpected answer {text:?}"
        );
        assert!(since.elapsed() >= min, "closed before its deadline");
    }
}

#[test]
fn stalled_and_idle_clients_do_not_delay_others() {
    let srv = server(4000);
    let since = Instant::now();
    let mut socks = Vec::new();
    for i in 0..64 {
        let mut s = connect(&srv);
        s.write_all(format!("GET /api/tasks HTTP/1.1\r\nHost: x\r\nX-Stalled: {i}").as_bytes())
            .unwrap();
        socks.push(s);
    }
    for (path, token) in [("/api/auth/login", None), ("/api/tasks", Some(TOKEN))] {
        for _ in 0..64 {
            let mut s = connect(&srv);
            let auth = token
                .map(|t| format!("X-OPS-Service-Token: {t}\r\n"))
                .unwrap_or_default();
            s.write_all(
                format!(
                    "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 100000\r\n\r\n{{\"title\":"
                )
                .as_bytes(),
            )
            .unwrap();
            socks.push(s);
        }
    }
    // As many idle connections as this machine's descriptor limit allows
    // (the test and the server share it), up to 2,000.
    let idle = 2000.min((nofile_limit() as usize).saturating_sub(400) / 2);
    assert!(idle >= 500, "descriptor limit too low for this test");
    let idle_socks: Vec<TcpStream> = (0..idle).map(|_| connect(&srv)).collect();
    let opened = since.elapsed();
    assert!(
        opened < Duration::from_secs(READ_TIMEOUT) / 2,
        "opening the clients took {opened:?}: too slow to test the deadlines"
    );

    let p99 = health_p99(&srv, 50);
    assert!(p99 < Duration::from_millis(100), "p99 {p99:?}");
    // 8 handler threads (util.rs), the event loop, the writer, the
    // watchdog, the reader pool's workers, main: about 15, whatever the
    // number of clients.
    let threads = srv.proc_status("Threads");
    assert!(
        threads <= 24,
        "{threads} threads with {} clients",
        socks.len() + idle
    );

    let deadline = Duration::from_secs(READ_TIMEOUT);
    let margin = Duration::from_secs(6);
    all_closed_by_deadline(
        socks,
        since,
        deadline - Duration::from_millis(500),
        deadline + margin,
    );
    all_closed_by_deadline(
        idle_socks,
        since,
        deadline - Duration::from_millis(500),
        deadline + margin,
    );
    assert_eq!(srv.service().get("/api/dispatch/health").status, 200);
}

#[test]
fn a_stalled_head_gets_408_and_an_idle_keep_alive_connection_is_closed() {
    let srv = server(64);
    let mut stalled = connect(&srv);
    stalled
        .write_all(b"GET /api/tasks HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let since = Instant::now();

    let mut kept = connect(&srv);
    kept.write_all(
        format!(
            "GET /api/dispatch/health HTTP/1.1\r\nHost: x\r\nX-OPS-Service-Token: {TOKEN}\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let mut first = [0u8; 12];
    kept.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let idle_since = Instant::now();

    let text = read_to_close(&mut stalled).unwrap();
    assert_eq!(status_of(&text), 408, "{text}");
    assert!(text.contains("request_timeout"));
    let waited = since.elapsed();
    assert!(waited >= Duration::from_secs(READ_TIMEOUT) - Duration::from_millis(500));

    // The rest of the first response, then EOF at the idle deadline.
    read_to_close(&mut kept).unwrap();
    let waited = idle_since.elapsed();
    assert!(
        waited >= Duration::from_secs(IDLE_TIMEOUT) - Duration::from_millis(500)
            && waited < Duration::from_secs(IDLE_TIMEOUT + 6),
        "idle connection closed after {waited:?}"
    );
}

/// An authenticated keep-alive connection, left open after one request.
fn authenticated(srv: &Server) -> TcpStream {
    let mut s = connect(srv);
    s.write_all(
        format!("GET /api/auth/me HTTP/1.1\r\nHost: x\r\nX-OPS-Service-Token: {TOKEN}\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut first = [0u8; 12];
    s.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    s
}

#[test]
fn over_the_cap_the_next_connection_gets_503() {
    let srv = server(32);
    // Authenticated connections are never closed to make room.
    let held: Vec<TcpStream> = (0..32).map(|_| authenticated(&srv)).collect();
    let (status, text) = exchange(&srv, b"");
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("too_many_connections"), "{text}");
    assert!(text.contains("Connection: close"), "{text}");
    drop(held);
    answers_again(&srv, 10);
}

#[test]
fn running_out_of_descriptors_does_not_stop_accepting() {
    raise_nofile();
    let srv = Server::start_limited(&[("OPS_HTTP_MAX_CONNECTIONS", "10000")], Some(100));
    assert_eq!(srv.service().get("/api/dispatch/health").status, 200);
    let flood: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(&srv.addr).ok())
        .collect();
    wait_for(10, "the server to run out of descriptors", || {
        srv.log().contains("accept failed").then_some(())
    });
    drop(flood);
    answers_again(&srv, 15);
    // And it keeps answering.
    for _ in 0..20 {
        assert_eq!(srv.service().get("/api/dispatch/health").status, 200);
    }
}

#[test]
fn bad_heads_are_answered_not_hung() {
    let srv = server(256);
    let long = format!("GET / HTTP/1.1\r\nX-Long: {}\r\n\r\n", "a".repeat(9 * 1024));
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (long.into_bytes(), 431, "header_too_large"),
        ("GET /caf\u{e9} HTTP/1.1\r\nHost: x\r\n\r\n".into(), 400, "bad_request"),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n".to_vec(), 505, "http_version_not_supported"),
        // Chunked not the final coding: the length cannot be known, 400
        // (RFC 9112 §6.3); chunked last after a coding the server does not
        // know, 501 (§6.1).
        (
            format!("POST /api/tasks HTTP/1.1\r\nHost: x\r\nX-OPS-Service-Token: {TOKEN}\r\nTransfer-Encoding: gzip\r\n\r\n")
                .into_bytes(),
            400,
            "bad_request",
        ),
        (
            format!("POST /api/tasks HTTP/1.1\r\nHost: x\r\nX-OPS-Service-Token: {TOKEN}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n")
                .into_bytes(),
            501,
            "not_implemented",
        ),
        (b"GET / HTTP/1.1\r\nno colon\r\n\r\n".to_vec(), 400, "bad_request"),
        (
            format!("POST /api/tasks HTTP/1.1\r\nX-OPS-Service-Token: {TOKEN}\r\nContent-Length: 2000000\r\n\r\n")
                .into_bytes(),
            413,
            "payload_too_large",
        ),
    ];
    for (bytes, status, code) in cases {
        let (got, text) = exchange(&srv, &bytes);
        assert_eq!(got, status, "{text}");
        assert!(text.contains(&format!("\"error\":\"{code}\"")), "{text}");
        assert!(text.contains("Connection: close"), "{text}");
    }
}

#[test]
fn a_huge_header_line_does_not_grow_memory() {
    let srv = server(64);
    let before = srv.proc_status("VmRSS");
    for _ in 0..4 {
        let line = format!(
            "GET / HTTP/1.1\r\nX-Huge: {}\r\n\r\n",
            "b".repeat(256 * 1024)
        );
        let (status, text) = exchange(&srv, line.as_bytes());
        assert_eq!(status, 431, "{text}");
    }
    let after = srv.proc_status("VmRSS");
    assert!(
        after < before + 4 * 1024,
        "RSS grew from {before} kB to {after} kB"
    );
}

#[test]
fn anonymous_bodies_are_refused_from_the_head() {
    let srv = server(64);
    // The body never comes: the 401 must not wait for it.
    let mut s = connect(&srv);
    s.set_read_timeout(Some(Duration::from_secs(READ_TIMEOUT - 1)))
        .unwrap();
    s.write_all(b"POST /api/tasks HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let text = read_to_close(&mut s).expect("401 before the read deadline");
    assert_eq!(status_of(&text), 401, "{text}");
    assert!(!text.contains("100 Continue"), "{text}");
    // With a body sent at once, the client still reads the 401 (the
    // server drains what it does not read instead of resetting).
    let body = vec![b'x'; 300_000];
    let res = srv.client().raw("POST", "/api/tasks", &body);
    assert_eq!(res.status, 401, "{}", res.text);
    // Login is public: its body is read.
    let res = srv.client().post(
        "/api/auth/login",
        &json!({"username": "root", "password": "nope"}),
    );
    assert_eq!(res.status, 401, "{}", res.text);
    assert!(res.text.contains("unauthorized"));
}

#[test]
fn chunked_bodies_and_100_continue_work() {
    let srv = server(64);
    let body = json!({"title": "chunked task", "workspace_id": 1}).to_string();
    let (a, b) = body.split_at(7);
    let chunked = format!(
        "POST /api/tasks HTTP/1.1\r\nHost: x\r\nX-OPS-Service-Token: {TOKEN}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         {:x};ext=1\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    let (status, text) = exchange(&srv, chunked.as_bytes());
    assert_eq!(status, 201, "{text}");
    assert!(text.contains("chunked task"), "{text}");

    // curl's way: the head, wait for 100 Continue, then the body.
    let body = json!({"title": "continued task", "workspace_id": 1}).to_string();
    let mut s = connect(&srv);
    s.write_all(
        format!(
            "POST /api/tasks HTTP/1.1\r\nHost: x\r\nX-OPS-Service-Token: {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\
             Connection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let mut interim = [0u8; 25];
    s.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(body.as_bytes()).unwrap();
    let text = read_to_close(&mut s).unwrap();
    assert_eq!(status_of(&text), 201, "{text}");
    assert!(text.contains("continued task"), "{text}");
}

#[test]
fn keep_alive_and_http_1_0_are_honoured() {
    let srv = server(64);
    let mut s = connect(&srv);
    let get = format!(
        "GET /api/dispatch/health HTTP/1.1\r\nHost: x\r\nX-OPS-Service-Token: {TOKEN}\r\n\r\n"
    );
    // Two pipelined requests on one connection, then a closing one.
    s.write_all(format!("{get}{get}").as_bytes()).unwrap();
    s.write_all(b"GET /api/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let text = read_to_close(&mut s).unwrap();
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    assert_eq!(text.matches("HTTP/1.1 404").count(), 1, "{text}");
    // HTTP/1.0 closes by default.
    let (status, text) = exchange(
        &srv,
        format!("GET /api/dispatch/health HTTP/1.0\r\nX-OPS-Service-Token: {TOKEN}\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("Connection: close"));
    // HEAD is not served on the API: 405 naming the methods, without the
    // body (a HEAD answer never has one), so the connection stays usable.
    let (status, text) = exchange(
        &srv,
        b"HEAD /api/dispatch/health HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /api/dispatch/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 405, "{text}");
    assert!(text.contains("Allow: GET\r\n"), "{text}");
    assert!(text.contains("Connection: keep-alive\r\n"), "{text}");
    let (_, after_head) = text.split_once("\r\n\r\n").unwrap();
    assert!(after_head.starts_with("HTTP/1.1 401"), "{text}");
}

#[test]
fn request_bodies_held_in_memory_are_bounded() {
    let srv = server(256);
    // 80 bodies of almost 1 MiB each, all stalled just short of their
    // end: more than the 64 MiB the server holds for bodies being read.
    let head = format!(
        "POST /api/tasks HTTP/1.1\r\nHost: x\r\nX-OPS-Service-Token: {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 1048576\r\n\r\n"
    );
    let part = vec![b' '; 1_000_000];
    let mut socks: Vec<TcpStream> = (0..80)
        .map(|_| {
            let mut s = connect(&srv);
            s.write_all(head.as_bytes()).unwrap();
            // Refused ones may be closed before all of it is written.
            let _ = s.write_all(&part);
            s
        })
        .collect();
    let answers: Vec<u16> = socks
        .iter_mut()
        .map(|s| status_of(&read_to_close(s).expect("an answer, then close")))
        .collect();
    let busy = answers.iter().filter(|s| **s == 503).count();
    let timed_out = answers.iter().filter(|s| **s == 408).count();
    assert!(
        (8..=20).contains(&busy) && busy + timed_out == 80,
        "answers: {answers:?}"
    );
    answers_again(&srv, 10);
}

/// The p99 of `n` fresh-connection claims by a worker with a fresh
/// heartbeat (nothing is queued: each answers `no_task`).
fn claim_p99(srv: &Server, n: usize) -> Duration {
    let w = crate::util::Worker::new(srv, "edge-probe");
    w.heartbeat(&["codex"], &[]);
    let mut samples: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            let answer = w.claim();
            assert!(answer.reason.is_some(), "{answer:?}");
            t.elapsed()
        })
        .collect();
    samples.sort();
    samples[(n * 99).div_ceil(100) - 1]
}

#[test]
fn a_crlf_flood_does_not_delay_others() {
    let srv = server(1024);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooder = {
        let (addr, stop) = (srv.addr.clone(), stop.clone());
        std::thread::spawn(move || {
            let line = b"\r\n".repeat(8 * 1024);
            let mut sent = 0usize;
            let mut connections = 0;
            let until = Instant::now() + Duration::from_secs(20);
            // Empty lines before a request line, as fast as the server
            // takes them, connecting again whenever it closes.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < until {
                let Ok(mut s) = TcpStream::connect(&addr) else {
                    continue;
                };
                connections += 1;
                while let Ok(n) = s.write(&line) {
                    sent += n;
                    if stop.load(std::sync::atomic::Ordering::Relaxed) || n == 0 {
                        break;
                    }
                }
            }
            (sent, connections)
        })
    };
    // The flood is under way.
    wait_for(10, "the flood to start", || {
        srv.log()
            .contains("before a complete request head")
            .then_some(())
    });
    let health = health_p99(&srv, 50);
    let claim = claim_p99(&srv, 50);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, connections) = flooder.join().unwrap();
    assert!(sent > 1024 * 1024, "the flood sent only {sent} bytes");
    assert!(
        health < Duration::from_millis(100) && claim < Duration::from_millis(100),
        "health p99 {health:?}, claim p99 {claim:?} during a flood of {sent} bytes of empty lines \
         over {connections} connections"
    );
    // Each flooding connection was refused as an oversized head.
    assert!(srv.log().contains("- - 431"), "{}", srv.log());
}

#[test]
fn a_client_that_does_not_read_its_answers_is_cut_off() {
    let srv = server(1024);
    // Requests for a large answer, pipelined, never read: the answers
    // fill the socket buffers and stop.
    let mut s = connect(&srv);
    let request = b"GET /api/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n".repeat(400);
    let since = Instant::now();
    let _ = s.write_all(&request);
    let health = health_p99(&srv, 50);
    assert!(health < Duration::from_millis(100), "health p99 {health:?}");
    // The server gives up the writes that make no progress for the read
    // timeout and closes: reading now drains what was sent, then ends.
    // The short pause keeps the test from reading before the server's
    // writes have stalled; nothing the server exposes says they have.
    std::thread::sleep(Duration::from_millis(100));
    s.set_read_timeout(Some(Duration::from_secs(READ_TIMEOUT + 10)))
        .unwrap();
    let mut buf = vec![0u8; 1024 * 1024];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    assert!(
        closed,
        "the connection of a client that reads nothing stayed open"
    );
    assert!(
        since.elapsed() >= Duration::from_secs(READ_TIMEOUT) - Duration::from_millis(500),
        "closed after {:?}, before the write deadline",
        since.elapsed()
    );
}

/// `n` connections to `srv` from the loopback address `from`.
fn connect_from(srv: &Server, from: std::net::Ipv4Addr, n: usize) -> Vec<socket2::Socket> {
    let to: std::net::SocketAddr = srv.addr.parse().unwrap();
    (0..n)
        .map(|_| {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            s.bind(&std::net::SocketAddr::from((from, 0)).into())
                .unwrap();
            s.connect(&to.into()).unwrap();
            s
        })
        .collect()
}

#[test]
fn anonymous_idle_sockets_cannot_lock_out_authenticated_clients() {
    raise_nofile();
    assert!(
        nofile_limit() >= 4500,
        "descriptor limit too low for this test"
    );
    // The default cap: 1,024 connections, 128 of them only for
    // authenticated clients.
    let srv = Server::start_with(&[
        ("OPS_HTTP_READ_TIMEOUT", "30"),
        ("OPS_HTTP_IDLE_TIMEOUT", "60"),
    ]);
    // 2,000 anonymous idle sockets from one address, then 2,000 from 200.
    for (what, sources) in [
        ("one address", vec![std::net::Ipv4Addr::new(127, 0, 0, 1)]),
        (
            "200 addresses",
            (0..200u8)
                .map(|i| std::net::Ipv4Addr::new(127, 0, 1, i))
                .collect(),
        ),
    ] {
        let per = 2000 / sources.len();
        let idle: Vec<socket2::Socket> = sources
            .iter()
            .flat_map(|from| connect_from(&srv, *from, per))
            .collect();
        // Once the server has taken them from the listen queue (a first
        // call waits behind them), while they are all held:
        assert_eq!(srv.service().get("/api/dispatch/health").status, 200);
        let health = health_p99(&srv, 50);
        let claim = claim_p99(&srv, 50);
        assert!(
            health < Duration::from_millis(100) && claim < Duration::from_millis(100),
            "{what}: health p99 {health:?}, claim p99 {claim:?} with {} idle sockets",
            idle.len()
        );
        // The server holds at most its cap: the oldest idle anonymous
        // sockets were closed to make room.
        let open = std::fs::read_dir(format!("/proc/{}/fd", srv.pid()))
            .unwrap()
            .count();
        assert!(open < 1024 + 64, "{what}: {open} descriptors open");
        drop(idle);
    }
}

/// Reads one response with a length from a keep-alive connection:
/// (status, body).
fn read_response(s: &mut TcpStream) -> (u16, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("a response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap_or_else(|| panic!("no length: {head}"))
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0; len];
    s.read_exact(&mut body).unwrap();
    (
        status_of(&head),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[test]
fn answers_pair_with_their_requests_after_a_parked_one_times_out() {
    let srv = server(64);
    crate::util::enable_dispatch(&srv);
    crate::util::Worker::new(&srv, "pair").heartbeat(&["codex"], &[]);
    let hold = |action: &str| {
        let r = srv.service().post(
            "/api/test/hold-park",
            &json!({"worker_id": "pair", "action": action}),
        );
        assert_eq!(r.status, 200, "{}", r.text);
        r.json["held"].as_bool().unwrap()
    };
    // The claim's handler is held after it took the answer over and
    // before it parks: the edge answers it 503 at its deadline (its wait
    // plus 5 s), and the handler's late answer must not go to the next
    // request on the connection.
    hold("arm");
    let mut s = connect(&srv);
    s.write_all(
        format!(
            "POST /api/dispatch/next?wait=1 HTTP/1.1\r\nHost: x\r\nX-OPS-Service-Token: {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: 20\r\n\r\n{{\"worker_id\":\"pair\"}}\
             GET /api/dispatch/health HTTP/1.1\r\nHost: x\r\nX-OPS-Service-Token: {TOKEN}\r\n\r\n\
             GET /api/auth/me HTTP/1.1\r\nHost: x\r\nX-OPS-Service-Token: {TOKEN}\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    assert!(hold("wait"), "the claim never reached the hook");
    let (status, body) = read_response(&mut s);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(r#""error":"timeout""#), "{body}");
    // The late answer comes now; the next two are still theirs.
    hold("release");
    let (status, body) = read_response(&mut s);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("worker_summary"),
        "not health's answer: {body}"
    );
    let (status, body) = read_response(&mut s);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(r#""role":"service""#),
        "not /me's answer: {body}"
    );
}
