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
