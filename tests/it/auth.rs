//! Logins, sessions, secrets at start, rate limiting and TRUST_PROXY.

use std::process::Command;

use serde_json::json;

use crate::util::{bin, Server, ADMIN, ADMIN_PW, TOKEN};

#[test]
fn login_session_logout() {
    let srv = Server::start();
    let bad = srv.client().post(
        "/api/auth/login",
        &json!({"username": ADMIN, "password": "wrong-password-123"}),
    );
    assert_eq!(bad.status, 401, "{}", bad.text);
    assert_eq!(bad.error(), "unauthorized");
    let unknown = srv.client().post(
        "/api/auth/login",
        &json!({"username": "ghost", "password": "wrong-password-123"}),
    );
    assert_eq!(unknown.status, 401);
    assert_eq!(
        unknown.json["message"], bad.json["message"],
        "unknown user and bad password look alike"
    );

    let r = srv.client().post(
        "/api/auth/login",
        &json!({"username": ADMIN, "password": ADMIN_PW}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let cookie = r.header("set-cookie").unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP without a trusted proxy: {cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let me = srv.client().header("Cookie", &session).get("/api/auth/me");
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.json["username"], ADMIN);
    assert_eq!(me.json["is_admin"], true);
    assert!(me.json.get("password_hash").is_none());

    // The database keeps only a digest of the session cookie.
    let value = session.split('=').nth(1).unwrap();
    let stored: String = srv
        .sql()
        .query_row("SELECT token_hash FROM sessions", [], |r| r.get(0))
        .unwrap();
    assert_ne!(stored, value);

    let out = srv
        .client()
        .header("Cookie", &session)
        .post("/api/auth/logout", &json!({}));
    assert_eq!(out.status, 200);
    assert_eq!(
        srv.client()
            .header("Cookie", &session)
            .get("/api/auth/me")
            .status,
        401
    );
    // Logging out is a change: it writes its event, once.
    let logouts = || srv.service().get("/api/events?kind=auth.logout").json;
    let e = logouts();
    assert_eq!(e["total"], 1, "{e}");
    assert_eq!(e["events"][0]["actor"], format!("user:{ADMIN}"), "{e}");
    let again = srv
        .client()
        .header("Cookie", &session)
        .post("/api/auth/logout", &json!({}));
    assert_eq!(again.status, 200);
    assert_eq!(logouts()["total"], 1, "a second logout changes nothing");
    assert_eq!(
        srv.client()
            .header("Cookie", "ops_session=forged")
            .get("/api/auth/me")
            .status,
        401
    );
    assert_eq!(srv.service().get("/api/auth/me").json["role"], "service");
}

#[test]
fn repeated_failed_logins_are_rate_limited() {
    let srv = Server::start();
    for _ in 0..5 {
        let r = srv.client().post(
            "/api/auth/login",
            &json!({"username": ADMIN, "password": "wrong-password-123"}),
        );
        assert_eq!(r.status, 401);
    }
    // Even the right password is refused while the client is limited.
    let r = srv.client().post(
        "/api/auth/login",
        &json!({"username": ADMIN, "password": ADMIN_PW}),
    );
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.error(), "rate_limited");
    assert!(r.header("retry-after").is_some());
    // Without TRUST_PROXY a forged X-Forwarded-For does not escape it.
    let r = srv.client().header("X-Forwarded-For", "203.0.113.9").post(
        "/api/auth/login",
        &json!({"username": ADMIN, "password": ADMIN_PW}),
    );
    assert_eq!(r.status, 429);
}

#[test]
fn trust_proxy_uses_forwarded_headers() {
    let srv = Server::start_with(&[("TRUST_PROXY", "true")]);
    let via = |ip: &str| {
        srv.client()
            .header("X-Forwarded-For", ip)
            .header("X-Forwarded-Proto", "https")
    };
    let r = via("198.51.100.1").post(
        "/api/auth/login",
        &json!({"username": ADMIN, "password": ADMIN_PW}),
    );
    assert_eq!(r.status, 200);
    assert!(
        r.header("set-cookie").unwrap().contains("Secure"),
        "HTTPS through the proxy gets a Secure cookie"
    );
    for _ in 0..5 {
        via("198.51.100.2").post(
            "/api/auth/login",
            &json!({"username": ADMIN, "password": "nope-nope-nope"}),
        );
    }
    let limited = via("198.51.100.2").post(
        "/api/auth/login",
        &json!({"username": ADMIN, "password": ADMIN_PW}),
    );
    assert_eq!(limited.status, 429);
    let other = via("198.51.100.3").post(
        "/api/auth/login",
        &json!({"username": ADMIN, "password": ADMIN_PW}),
    );
    assert_eq!(
        other.status, 200,
        "another client address is not limited: {}",
        other.text
    );
}

#[test]
fn secrets_generated_once_when_none_configured() {
    let mut srv = Server::start_with(&[
        ("OPS_SERVICE_TOKEN", ""),
        ("OPS_ADMIN_USER", ""),
        ("OPS_ADMIN_PASSWORD", ""),
    ]);
    let token = srv.printed("generated service token: ");
    let password = srv.printed("password ");
    assert!(token.len() >= 32);
    let r = srv
        .client()
        .header("X-OPS-Service-Token", &token)
        .get("/api/tasks");
    assert_eq!(r.status, 200, "{}", r.text);
    srv.login("admin", &password);

    srv.restart();
    assert!(
        srv.banner.is_empty(),
        "secrets are printed only once: {:?}",
        srv.banner
    );
    assert_eq!(
        srv.client()
            .header("X-OPS-Service-Token", &token)
            .get("/api/tasks")
            .status,
        200
    );
    srv.login("admin", &password);
}

#[test]
fn restart_with_new_secrets_rotates_them() {
    let mut srv = Server::start();
    let session = srv.admin();
    assert_eq!(session.get("/api/auth/me").status, 200);
    srv.signal_and_wait("TERM");
    let db = srv.db_path();
    let out = Command::new(bin())
        .args(["serve", "--bind", "127.0.0.1:0", "--db"])
        .arg(&db)
        .env_clear()
        .env("OPS_ADMIN_USER", ADMIN)
        .env("OPS_ADMIN_PASSWORD", "short")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a weak admin password refuses to start"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("OPS_ADMIN_PASSWORD") && err.contains("12"),
        "{err}"
    );
    let out = Command::new(bin())
        .args(["serve", "--bind", "127.0.0.1:0", "--db"])
        .arg(&db)
        .env_clear()
        .env("OPS_SERVICE_TOKEN", "weak")
        .output()
        .unwrap();
    assert!(!out.status.success(), "a weak token refuses to start");
    assert!(String::from_utf8_lossy(&out.stderr).contains("OPS_SERVICE_TOKEN"));

    // Restart on the same file with a rotated password and token.
    srv.set_env("OPS_ADMIN_PASSWORD", "rotated-password-456");
    srv.set_env(
        "OPS_SERVICE_TOKEN",
        "rotated-service-token-abcdefghijklmnop",
    );
    srv.start_again();
    let bad = srv.client().post(
        "/api/auth/login",
        &json!({"username": ADMIN, "password": ADMIN_PW}),
    );
    assert_eq!(bad.status, 401, "the old password stops working");
    srv.login(ADMIN, "rotated-password-456");
    assert_eq!(
        session.clone_to(&srv).get("/api/auth/me").status,
        401,
        "rotation ends old sessions"
    );
    assert_eq!(
        srv.client()
            .header("X-OPS-Service-Token", TOKEN)
            .get("/api/tasks")
            .status,
        401
    );
    assert_eq!(
        srv.client()
            .header(
                "X-OPS-Service-Token",
                "rotated-service-token-abcdefghijklmnop"
            )
            .get("/api/tasks")
            .status,
        200
    );
}

#[test]
fn token_changed_through_settings() {
    let srv = Server::start();
    let new = "another-service-token-0123456789abcd";
    // The token cannot replace itself: its holder would keep the only
    // valid credential. Nothing changes.
    let before = srv.fingerprint();
    let r = srv
        .service()
        .put("/api/settings/service_api_token", &json!({"value": new}));
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.error(), "forbidden");
    assert_eq!(srv.fingerprint(), before);
    assert_eq!(srv.service().get("/api/tasks").status, 200);
    // A global admin can.
    let r = srv
        .admin()
        .put("/api/settings/service_api_token", &json!({"value": new}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["value"], "[redacted]");
    assert_eq!(
        srv.service().get("/api/tasks").status,
        401,
        "the old token stops working at once"
    );
    assert_eq!(
        srv.client()
            .header("X-OPS-Service-Token", new)
            .get("/api/tasks")
            .status,
        200
    );
    let weak = srv
        .admin()
        .put("/api/settings/service_api_token", &json!({"value": "abc"}));
    assert_eq!(weak.status, 400);
    let s = srv
        .client()
        .header("X-OPS-Service-Token", new)
        .get("/api/settings");
    assert_eq!(s.json["service_api_token"], "[redacted]");
    assert!(!s.text.contains(new));
}

fn login_as(c: &crate::util::Client, password: &str) -> crate::util::Res {
    c.post(
        "/api/auth/login",
        &json!({"username": ADMIN, "password": password}),
    )
}

#[test]
fn concurrent_wrong_passwords_get_no_more_than_the_limit() {
    let srv = Server::start();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..40)
            .map(|_| s.spawn(|| login_as(&srv.client(), "wrong-password-123").status))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wrong = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(wrong + limited, 40, "{statuses:?}");
    assert!(wrong <= 5, "{wrong} passwords were checked: {statuses:?}");
    let r = login_as(&srv.client(), ADMIN_PW);
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(r.header("retry-after").is_some());
}

#[test]
fn rotating_the_forwarded_for_does_not_escape_the_limit() {
    let srv = Server::start_with(&[("TRUST_PROXY", "true")]);
    // The proxy appends the address it saw; the client controls only what
    // comes before it.
    let via_proxy = |forged: &str, peer: &str| {
        srv.client()
            .header("X-Forwarded-For", &format!("{forged}, {peer}"))
    };
    let mut wrong = 0;
    for i in 0..30 {
        let r = login_as(
            &via_proxy(&format!("10.9.{i}.1"), "198.51.100.7"),
            "nope-nope-nope",
        );
        match r.status {
            401 => wrong += 1,
            429 => assert!(r.header("retry-after").is_some()),
            other => panic!("unexpected {other}: {}", r.text),
        }
    }
    assert_eq!(wrong, 5, "attempts checked from one real address");
    // During that address's lockout the right password from another
    // address still logs in.
    let r = login_as(&via_proxy("10.9.0.1", "198.51.100.8"), ADMIN_PW);
    assert_eq!(r.status, 200, "{}", r.text);
}

#[test]
fn a_user_under_attack_from_many_addresses_still_logs_in_from_a_clean_one() {
    let srv = Server::start_with(&[("TRUST_PROXY", "true")]);
    let from = |ip: &str| srv.client().header("X-Forwarded-For", ip);
    srv.user("colleague", None);
    // 10 failures for the admin from three addresses, none of them locked
    // by its own count except the first.
    for (ip, n) in [("203.0.113.1", 5), ("203.0.113.2", 4), ("203.0.113.3", 1)] {
        for _ in 0..n {
            assert_eq!(login_as(&from(ip), "nope-nope-nope").status, 401);
        }
    }
    // The user is now under lock: an address that has failed may not try
    // it again, even with the right password...
    let r = login_as(&from("203.0.113.2"), ADMIN_PW);
    assert_eq!((r.status, r.error()), (429, "rate_limited"), "{}", r.text);
    // ...though it may log in as someone else,
    let r = from("203.0.113.2").post(
        "/api/auth/login",
        &json!({"username": "colleague", "password": "colleague-password-1234"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    // and a clean address gets the admin in.
    assert_eq!(login_as(&from("203.0.113.50"), ADMIN_PW).status, 200);
}

#[test]
fn cookie_writes_must_come_from_the_own_origin_as_json() {
    let srv = Server::start();
    let admin = srv.admin();
    let own = format!("http://{}", srv.addr);
    let new_admin =
        |name: &str| json!({"username": name, "password": "forged-password-123", "is_admin": true});
    let before = srv.fingerprint();
    let evil = ("Origin", "https://evil.example");
    let text = ("Content-Type", "text/plain");
    type Case<'a> = (&'a [(&'a str, &'a str)], u16, &'a str);
    let refused: [Case; 7] = [
        (&[evil, text], 403, "cross_origin"),
        (&[evil], 403, "cross_origin"),
        (&[("Origin", "null")], 403, "cross_origin"),
        (&[("Sec-Fetch-Site", "cross-site")], 403, "cross_origin"),
        (&[text], 415, "unsupported_media_type"),
        (
            &[("Content-Type", "application/x-www-form-urlencoded")],
            415,
            "unsupported_media_type",
        ),
        (&[("Content-Type", "")], 415, "unsupported_media_type"),
    ];
    let with = |headers: &[(&str, &str)]| {
        headers
            .iter()
            .fold(admin.clone(), |c, (k, v)| c.header(k, v))
    };
    let refused = refused.map(|(h, status, code)| (with(h), status, code));
    for (i, (client, status, code)) in refused.iter().enumerate() {
        let r = client.post("/api/users", &new_admin(&format!("forged{i}")));
        assert_eq!(
            (r.status, r.error()),
            (*status, *code),
            "case {i}: {}",
            r.text
        );
    }
    let r = admin
        .clone()
        .header("Origin", "https://evil.example")
        .post("/api/auth/logout", &json!({}));
    assert_eq!(r.status, 403, "{}", r.text);
    let r = srv.client().header("Origin", "https://evil.example").post(
        "/api/auth/login",
        &json!({"username": ADMIN, "password": ADMIN_PW}),
    );
    assert_eq!((r.status, r.error()), (403, "cross_origin"));
    assert_eq!(
        srv.fingerprint(),
        before,
        "a refused request changed something"
    );

    // Reads are not writes; the own origin, same-origin fetch metadata
    // and no Origin at all (curl with a cookie jar) are allowed.
    let r = admin
        .clone()
        .header("Origin", "https://evil.example")
        .get("/api/users");
    assert_eq!(r.status, 200);
    for (i, client) in [
        admin.clone().header("Origin", &own),
        admin
            .clone()
            .header("Origin", &own)
            .header("Sec-Fetch-Site", "same-origin")
            .header("Content-Type", "application/json; charset=utf-8"),
        admin.clone(),
    ]
    .iter()
    .enumerate()
    {
        let r = client.post("/api/users", &new_admin(&format!("fine{i}")));
        assert_eq!(r.status, 201, "case {i}: {}", r.text);
    }
}

#[test]
fn the_service_token_needs_no_origin_or_content_type() {
    let srv = Server::start();
    for (i, client) in [
        srv.service().header("Content-Type", ""),
        srv.service()
            .header("Content-Type", "application/x-www-form-urlencoded"),
        srv.service().header("Origin", "https://elsewhere.example"),
    ]
    .iter()
    .enumerate()
    {
        let r = client.post("/api/tasks", &json!({"title": format!("curl {i}")}));
        assert_eq!(r.status, 201, "case {i}: {}", r.text);
    }
}

#[test]
fn behind_a_proxy_the_origin_is_compared_with_the_forwarded_host() {
    let srv = Server::start_with(&[("TRUST_PROXY", "true")]);
    let admin = srv
        .admin()
        .header("X-Forwarded-Host", "ops.example.com")
        .header("X-Forwarded-Proto", "https");
    let r = admin
        .clone()
        .header("Origin", "https://ops.example.com")
        .post("/api/workspaces", &json!({"name": "via proxy"}));
    assert_eq!(r.status, 201, "{}", r.text);
    let r = admin
        .clone()
        .header("Origin", &format!("http://{}", srv.addr))
        .post("/api/workspaces", &json!({"name": "not the public origin"}));
    assert_eq!((r.status, r.error()), (403, "cross_origin"), "{}", r.text);
}

/// `n` failed logins from distinct addresses (a trusted proxy's
/// `X-Forwarded-For`, so the per-address limit never stops them), sent by
/// `threads` clients at once; the statuses, in no order.
fn bad_logins(srv: &Server, n: usize, threads: usize) -> Vec<u16> {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (client, barrier) = (srv.client(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                (0..n / threads)
                    .map(|i| {
                        let ip = format!("10.{}.{}.{}", t, i / 250, i % 250 + 1);
                        let r = client.clone().header("X-Forwarded-For", &ip).post(
                            "/api/auth/login",
                            &json!({"username": ADMIN, "password": "not-the-password"}),
                        );
                        if r.status == 429 {
                            assert!(r.header("retry-after").is_some(), "{}", r.text);
                        }
                        r.status
                    })
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

#[test]
fn a_thousand_bad_logins_leave_the_server_small() {
    let srv = Server::start_with(&[("TRUST_PROXY", "true")]);
    let before = srv.proc_status("VmRSS");
    let statuses = bad_logins(&srv, 1000, 4);
    let hashed = statuses.iter().filter(|s| **s == 401).count();
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    assert!(hashed >= 900, "only {hashed} of 1,000 logins were checked");
    let after = srv.proc_status("VmRSS");
    eprintln!("RSS before {before} kB, after {hashed} failed logins {after} kB");
    assert!(
        after < 64 * 1024,
        "RSS grew from {before} kB to {after} kB after {hashed} password checks"
    );
    // The server still answers, and the right password still logs in from
    // a clean address.
    let r = srv.client().header("X-Forwarded-For", "192.0.2.200").post(
        "/api/auth/login",
        &json!({"username": ADMIN, "password": ADMIN_PW}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
}

#[test]
fn logins_beyond_the_hashing_queue_are_refused_at_once() {
    let srv = Server::start_with(&[("TRUST_PROXY", "true")]);
    // 16 at once: 2 are hashed, 2 wait their turn, the rest get 429 with
    // Retry-After instead of holding a thread each.
    let statuses = bad_logins(&srv, 16, 16);
    let busy = statuses.iter().filter(|s| **s == 429).count();
    assert!(busy >= 1, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
}
