//! The event stream `GET /api/stream` (Server-Sent Events): what it
//! carries, to whom, resuming with `Last-Event-ID`, its caps and its
//! credentials.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::{output, started, task, TaskSpec};
use crate::util::*;

/// What a stream delivers: an event (`id`, parsed `data`) or a comment.
#[derive(Debug)]
enum Item {
    Event(i64, Value),
    Comment(String),
}

/// An open stream, read by a thread of its own.
struct Sse {
    sock: TcpStream,
    items: Receiver<Item>,
}

impl Sse {
    /// Opens `/api/stream<query>` with `client`'s credentials and `extra`
    /// headers; the status and body of a refusal otherwise.
    fn open(client: &Client, query: &str, extra: &[(&str, &str)]) -> Result<Sse, (u16, Value)> {
        let mut sock = TcpStream::connect(&client.addr).unwrap();
        let mut head =
            format!("GET /api/stream{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        for (k, v) in client.headers() {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        sock.write_all(head.as_bytes()).unwrap();
        let mut reader = BufReader::new(sock.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let status: u16 = line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            headers.push(line.trim().to_ascii_lowercase());
        }
        if status != 200 {
            let mut body = String::new();
            let _ = reader.read_to_string(&mut body);
            // The body may be chunked or sized; take the JSON object in it.
            let start = body.find('{').unwrap_or(0);
            let end = body.rfind('}').map_or(body.len(), |e| e + 1);
            return Err((
                status,
                serde_json::from_str(&body[start..end]).unwrap_or(Value::Null),
            ));
        }
        assert!(
            headers
                .iter()
                .any(|h| h == "content-type: text/event-stream"),
            "{headers:?}"
        );
        let (tx, items) = channel();
        std::thread::spawn(move || {
            let (mut id, mut data) = (None, None);
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let l = line.trim_end_matches('\n');
                if let Some(c) = l.strip_prefix(':') {
                    let _ = tx.send(Item::Comment(c.trim().to_string()));
                } else if let Some(v) = l.strip_prefix("id: ") {
                    id = Some(v.parse::<i64>().unwrap());
                } else if let Some(v) = l.strip_prefix("data: ") {
                    data = Some(serde_json::from_str::<Value>(v).unwrap());
                } else if l.is_empty() {
                    if let (Some(i), Some(d)) = (id.take(), data.take()) {
                        if tx.send(Item::Event(i, d)).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(Sse { sock, items })
    }

    fn open_ok(client: &Client, query: &str, extra: &[(&str, &str)]) -> Sse {
        Sse::open(client, query, extra).unwrap_or_else(|e| panic!("stream refused: {e:?}"))
    }

    /// The next event within `secs`, comments skipped.
    fn next_event(&self, secs: f64) -> Option<(i64, Value)> {
        let until = Instant::now() + Duration::from_secs_f64(secs);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.items.recv_timeout(left) {
                Ok(Item::Event(id, v)) => return Some((id, v)),
                Ok(Item::Comment(_)) => continue,
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Every event that arrives until `secs` pass without one.
    fn drain(&self, secs: f64) -> Vec<(i64, Value)> {
        let mut out = Vec::new();
        while let Some(e) = self.next_event(secs) {
            out.push(e);
        }
        out
    }

    /// The first event matching `f` within `secs`, and when it came.
    fn wait_for(&self, secs: f64, f: impl Fn(&Value) -> bool) -> Option<(Value, Instant)> {
        let until = Instant::now() + Duration::from_secs_f64(secs);
        while let Some((_, v)) = self.next_event(
            until
                .saturating_duration_since(Instant::now())
                .as_secs_f64(),
        ) {
            if f(&v) {
                return Some((v, Instant::now()));
            }
        }
        None
    }

    fn close(self) {
        let _ = self.sock.shutdown(Shutdown::Both);
    }
}

#[test]
fn a_change_reaches_the_stream_within_a_second_and_output_chunks_too() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let sse = Sse::open_ok(&srv.admin(), "", &[]);
    // The stream starts from now: nothing older is replayed.
    assert!(sse.next_event(0.5).is_none(), "an old event was replayed");

    let changed = Instant::now();
    let id = srv.service().new_task(&task("live").interactive("codex"));
    let (ev, at) = sse
        .wait_for(1.0, |v| v["task_id"] == id)
        .expect("the new task's event within 1 s");
    assert!(at - changed < Duration::from_secs(1));
    assert_eq!(ev["kind"], "task.created", "{ev}");
    assert_eq!(ev["workspace_id"], 1);

    // A running task's output arrives as it is reported.
    let r = srv
        .service()
        .post(&format!("/api/tasks/{id}/dispatch"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);
    let (task, token) = w.claim_one();
    assert_eq!(task, id);
    let r = w.report(id, &token, started(Some(42)));
    assert_eq!(r.status, 200, "{}", r.text);
    let r = w.report(id, &token, output("line one\nline two\n"));
    assert_eq!(r.status, 200, "{}", r.text);
    let (ev, _) = sse
        .wait_for(1.0, |v| v["kind"] == "dispatch.output")
        .expect("the output chunk within 1 s");
    assert_eq!(ev["task_id"], id);
    assert_eq!(ev["output"], "line one\nline two\n");
    sse.close();
}

#[test]
fn a_member_sees_only_the_events_of_its_workspaces() {
    let srv = Server::start();
    let admin = srv.admin();
    let r = admin.post("/api/workspaces", &json!({"name": "other"}));
    assert_eq!(r.status, 201, "{}", r.text);
    let ws2 = r.json["id"].as_i64().unwrap();
    let (_, member) = srv.user("ana", Some((1, "member")));
    let (_, outsider) = srv.user("bob", Some((ws2, "member")));
    let mine = Sse::open_ok(&member, "", &[]);
    let theirs = Sse::open_ok(&outsider, "", &[]);
    let all = Sse::open_ok(&srv.service(), "", &[]);

    let t2 = admin.new_task(&task("secret").workspace(ws2));
    // An event of no workspace (a setting) is for operators only.
    let r = srv
        .service()
        .put("/api/settings/dispatch_enabled", &json!({"value": "true"}));
    assert_eq!(r.status, 200, "{}", r.text);
    let t1 = admin.new_task(&task("visible"));

    let seen = mine.drain(1.0);
    assert!(seen.iter().any(|(_, v)| v["task_id"] == t1), "{seen:?}");
    assert!(
        seen.iter().all(|(_, v)| v["workspace_id"] == 1),
        "a member saw another workspace's events: {seen:?}"
    );
    let seen = theirs.drain(0.3);
    assert!(seen.iter().any(|(_, v)| v["task_id"] == t2), "{seen:?}");
    assert!(
        seen.iter().all(|(_, v)| v["workspace_id"] == ws2),
        "{seen:?}"
    );
    let seen = all.drain(0.3);
    for want in [json!(t1), json!(t2)] {
        assert!(seen.iter().any(|(_, v)| v["task_id"] == want), "{seen:?}");
    }
    assert!(
        seen.iter().any(|(_, v)| v["workspace_id"].is_null()),
        "{seen:?}"
    );

    // Resuming replays with the same scoping.
    let first = seen.first().unwrap().0 - 1;
    let replay = Sse::open_ok(&member, "", &[("Last-Event-ID", &first.to_string())]).drain(0.5);
    assert!(replay.iter().any(|(_, v)| v["task_id"] == t1), "{replay:?}");
    assert!(
        replay.iter().all(|(_, v)| v["workspace_id"] == 1),
        "{replay:?}"
    );
}

#[test]
fn last_event_id_resumes_without_gaps_or_repeats() {
    let srv = Server::start();
    let svc = srv.service();
    let before = srv
        .sql()
        .query_row("SELECT MAX(id) FROM events", [], |r| r.get::<_, i64>(0))
        .unwrap();
    // Changes keep coming while the client disconnects and resumes.
    let writer = {
        let svc = svc.clone();
        std::thread::spawn(move || {
            for i in 0..600 {
                svc.new_task(&task(&format!("t{i}")));
            }
        })
    };
    let mut got: Vec<i64> = Vec::new();
    let mut last = before;
    let mut round = 0;
    while !writer.is_finished() || round < 2 {
        // Alternately by header and by query parameter.
        let sse = if round % 2 == 0 {
            Sse::open_ok(&svc, "", &[("Last-Event-ID", &last.to_string())])
        } else {
            Sse::open_ok(&svc, &format!("?last_event_id={last}"), &[])
        };
        let until = Instant::now() + Duration::from_millis(60);
        while Instant::now() < until {
            if let Some((id, v)) = sse.next_event(0.05) {
                assert_eq!(v["id"], id);
                got.push(id);
                last = id;
            }
        }
        sse.close();
        round += 1;
    }
    writer.join().unwrap();
    // What is still to come after the last resume.
    let sse = Sse::open_ok(&svc, "", &[("Last-Event-ID", &last.to_string())]);
    got.extend(sse.drain(1.0).into_iter().map(|(id, _)| id));

    let expected: Vec<i64> = {
        let conn = srv.sql();
        let mut stmt = conn
            .prepare("SELECT id FROM events WHERE id > ?1 ORDER BY id")
            .unwrap();
        stmt.query_map([before], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert!(expected.len() >= 600);
    assert!(round >= 3, "the stream was resumed only {round} times");
    let unique: HashSet<i64> = got.iter().copied().collect();
    assert_eq!(unique.len(), got.len(), "events repeated");
    assert_eq!(got, expected, "events missing or out of order");

    // A resume point that is not an id is refused.
    for bad in ["soon", "-3", "1.5"] {
        let (status, body) = Sse::open(&svc, "", &[("Last-Event-ID", bad)])
            .err()
            .unwrap();
        assert_eq!(status, 400);
        assert_eq!(body["error"], "invalid_last_event_id", "{body}");
        let (status, _) = Sse::open(&svc, &format!("?last_event_id={bad}"), &[])
            .err()
            .unwrap();
        assert_eq!(status, 400);
    }
}

#[test]
fn a_long_replay_comes_in_pages_and_the_client_resumes() {
    let srv = Server::start();
    let svc = srv.service();
    let before = srv
        .sql()
        .query_row("SELECT MAX(id) FROM events", [], |r| r.get::<_, i64>(0))
        .unwrap();
    for i in 0..700 {
        svc.new_task(&task(&format!("t{i}")));
    }
    let first = Sse::open_ok(&svc, "", &[("Last-Event-ID", &before.to_string())]);
    let page = first.drain(1.0);
    assert_eq!(page.len(), 500, "one page, then the stream ends");
    let last = page.last().unwrap().0;
    let rest = Sse::open_ok(&svc, "", &[("Last-Event-ID", &last.to_string())]).drain(1.0);
    assert_eq!(rest.len(), 200);
    assert_eq!(rest.first().unwrap().0, last + 1);
}

#[test]
fn streams_are_capped_per_caller_and_for_the_server() {
    let srv = Server::start_with(&[("OPS_STREAMS_PER_USER", "2"), ("OPS_STREAMS_MAX", "3")]);
    let (_, ana) = srv.user("ana", Some((1, "member")));
    let (_, bob) = srv.user("bob", Some((1, "member")));
    let a1 = Sse::open_ok(&ana, "", &[]);
    let _a2 = Sse::open_ok(&ana, "", &[]);
    let (status, body) = Sse::open(&ana, "", &[]).err().unwrap();
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "too_many_streams");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("2 event streams"),
        "{body}"
    );

    let _b1 = Sse::open_ok(&bob, "", &[]);
    let (status, body) = Sse::open(&srv.service(), "", &[]).err().unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "streams_full");

    // A closed stream gives its place back.
    a1.close();
    let a3 = wait_for(5, "a freed stream place", || Sse::open(&ana, "", &[]).ok());
    a3.close();
    // Other requests are not held by the open streams.
    assert_eq!(ana.get("/api/tasks").status, 200);
}

#[test]
fn a_stream_needs_credentials() {
    let srv = Server::start();
    let (status, body) = Sse::open(&srv.client(), "", &[]).err().unwrap();
    assert_eq!(status, 401);
    assert_eq!(body["error"], "unauthorized");
    let bad = srv.client().header("X-OPS-Service-Token", "wrong");
    assert_eq!(Sse::open(&bad, "", &[]).err().unwrap().0, 401);
    let member = srv.user("ana", Some((1, "member"))).1;
    let r = member.post("/api/auth/logout", &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(Sse::open(&member, "", &[]).err().unwrap().0, 401);
    // Allowed: a session cookie and the service token.
    Sse::open_ok(&srv.admin(), "", &[]).close();
    Sse::open_ok(&srv.service(), "", &[]).close();
}

#[test]
fn an_idle_stream_gets_keep_alive_comments_and_is_not_closed_as_idle() {
    // Connections idle longer than 2 s are closed; a stream is not idle.
    let srv = Server::start_with(&[
        ("OPS_HTTP_IDLE_TIMEOUT", "2"),
        ("OPS_HTTP_READ_TIMEOUT", "2"),
    ]);
    let sse = Sse::open_ok(&srv.service(), "", &[]);
    let until = Instant::now() + Duration::from_secs(17);
    let mut keep_alive = false;
    while Instant::now() < until && !keep_alive {
        match sse.items.recv_timeout(until - Instant::now()) {
            Ok(Item::Comment(c)) => keep_alive |= c == "keep-alive",
            Ok(Item::Event(..)) => {}
            Err(_) => break,
        }
    }
    assert!(
        keep_alive,
        "no keep-alive comment within 17 s (or the stream was closed)"
    );
    let id = srv.service().new_task(&task("still live"));
    assert!(sse.wait_for(1.0, |v| v["task_id"] == id).is_some());
}

#[test]
fn shutdown_ends_every_stream_and_the_server_stops_cleanly() {
    let mut srv = Server::start();
    let streams: Vec<Sse> = (0..3)
        .map(|_| Sse::open_ok(&srv.service(), "", &[]))
        .collect();
    let t = Instant::now();
    let status = srv.signal_and_wait("TERM");
    assert!(status.success(), "{status:?}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    for s in streams {
        // The reader thread saw the end of the stream: its channel is closed.
        let until = Instant::now() + Duration::from_secs(2);
        loop {
            match s
                .items
                .recv_timeout(until.saturating_duration_since(Instant::now()))
            {
                Ok(_) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("a stream stayed open after shutdown"),
            }
        }
    }
}

impl Sse {
    /// Whether the server ends the stream within `secs` (events before the
    /// end are skipped).
    fn ends_within(&self, secs: f64) -> bool {
        let until = Instant::now() + Duration::from_secs_f64(secs);
        loop {
            match self
                .items
                .recv_timeout(until.saturating_duration_since(Instant::now()))
            {
                Ok(_) => continue,
                Err(RecvTimeoutError::Disconnected) => return true,
                Err(RecvTimeoutError::Timeout) => return false,
            }
        }
    }
}

/// A user's password, as `Server::user` sets it.
fn password(name: &str) -> String {
    format!("{name}-password-1234")
}

#[test]
fn streams_end_when_their_session_ends() {
    let srv = Server::start();
    let admin = srv.admin();
    // Logout.
    let (_, ana) = srv.user("ana", Some((1, "member")));
    let sse = Sse::open_ok(&ana, "", &[]);
    let r = ana.post("/api/auth/logout", &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(sse.ends_within(1.0), "the stream outlived its logout");
    // A password change ends every session of the user.
    let (bob_id, bob) = srv.user("bob", Some((1, "member")));
    let sse = Sse::open_ok(&bob, "", &[]);
    let r = admin.patch(
        &format!("/api/users/{bob_id}"),
        &json!({"password": "a-brand-new-password"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        sse.ends_within(1.0),
        "the stream outlived the password change"
    );
    // So does deleting the user.
    let (cy_id, cy) = srv.user("cy", Some((1, "member")));
    let sse = Sse::open_ok(&cy, "", &[]);
    let r = admin.delete(&format!("/api/users/{cy_id}"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(sse.ends_within(1.0), "the stream outlived its user");
    // Another user's change leaves a stream alone.
    let (_, dee) = srv.user("dee", Some((1, "member")));
    let sse = Sse::open_ok(&dee, "", &[]);
    let (_, eve) = srv.user("eve", Some((1, "member")));
    let r = eve.post("/api/auth/logout", &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!sse.ends_within(1.5));
    let id = srv.service().new_task(&task("still here"));
    assert!(sse.wait_for(1.0, |v| v["task_id"] == id).is_some());
}

#[test]
fn streams_narrow_when_access_narrows() {
    let srv = Server::start();
    let admin = srv.admin();
    let r = admin.post("/api/workspaces", &json!({"name": "two"}));
    assert_eq!(r.status, 201, "{}", r.text);
    let ws2 = r.json["id"].as_i64().unwrap();
    let svc = srv.service();

    // Removed from a workspace: its events stop at once, the other's go on.
    let (ana_id, ana) = srv.user("ana", Some((1, "member")));
    let r = admin.put(
        &format!("/api/workspaces/{ws2}/members/{ana_id}"),
        &json!({"role": "member"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let sse = Sse::open_ok(&ana, "", &[]);
    let r = admin.delete(&format!("/api/workspaces/1/members/{ana_id}"));
    assert_eq!(r.status, 200, "{}", r.text);
    let hidden = svc.new_task(&task("ws1 after removal").workspace(1));
    let shown = svc.new_task(&task("ws2").workspace(ws2));
    let seen = sse.drain(1.0);
    assert!(seen.iter().any(|(_, v)| v["task_id"] == shown), "{seen:?}");
    assert!(
        !seen.iter().any(|(_, v)| v["task_id"] == hidden),
        "a removed member still got the workspace's events: {seen:?}"
    );

    // A global admin made a plain user: only their workspaces from then on.
    let (bob_id, _) = srv.user("bob", Some((ws2, "member")));
    let r = admin.patch(&format!("/api/users/{bob_id}"), &json!({"is_admin": true}));
    assert_eq!(r.status, 200, "{}", r.text);
    let bob = srv.login("bob", &password("bob"));
    let sse = Sse::open_ok(&bob, "", &[]);
    let before = svc.new_task(&task("ws1 while admin").workspace(1));
    assert!(sse.wait_for(1.0, |v| v["task_id"] == before).is_some());
    let r = admin.patch(&format!("/api/users/{bob_id}"), &json!({"is_admin": false}));
    assert_eq!(r.status, 200, "{}", r.text);
    let hidden = svc.new_task(&task("ws1 after demotion").workspace(1));
    let shown = svc.new_task(&task("ws2 still").workspace(ws2));
    let seen = sse.drain(1.0);
    assert!(seen.iter().any(|(_, v)| v["task_id"] == shown), "{seen:?}");
    assert!(
        !seen.iter().any(|(_, v)| v["task_id"] == hidden),
        "a demoted admin still got every workspace's events: {seen:?}"
    );
}

#[test]
fn a_stream_of_a_rotated_service_token_ends() {
    let srv = Server::start();
    let sse = Sse::open_ok(&srv.service(), "", &[]);
    let r = srv.admin().put(
        "/api/settings/service_api_token",
        &json!({"value": "another-service-token-0123456789abcdef"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(sse.ends_within(1.0), "the stream outlived its token");
}
