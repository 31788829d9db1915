//! Who is calling: the service token header or a session cookie; and the
//! login rate limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::request::Req;
use super::App;
use ops_app::accounts;
use ops_base::error::{Error, Result};
use ops_domain::access::Principal;

pub const TOKEN_HEADER: &str = "x-ops-service-token";
pub const SESSION_COOKIE: &str = "ops_session";

/// The caller, or 401. A service token header that is present but wrong is
/// refused even when a valid cookie comes with it.
pub fn authenticate(app: &App, req: &Req) -> Result<Principal> {
    let who = identify(app, req)?;
    req.mark_authenticated();
    Ok(who)
}

fn identify(app: &App, req: &Req) -> Result<Principal> {
    if let Some(token) = req.header(TOKEN_HEADER) {
        if accounts::is_service_token(&app.db, token.trim())? {
            return Ok(Principal::Service);
        }
        return Err(Error::Unauthorized("invalid service token".into()));
    }
    if let Some(cookie) = req.cookie(SESSION_COOKIE) {
        check_origin(app, req)?;
        check_json_body(req)?;
        return accounts::session_principal(&app.db, cookie)?
            .ok_or_else(|| Error::Unauthorized("your session has expired; log in again".into()));
    }
    Err(Error::Unauthorized(ANONYMOUS.into()))
}

/// [`authenticate`], where the service token may also come as
/// `Authorization: Bearer <token>`: the one way every Prometheus release
/// can send a secret read from a file. Only `GET /metrics` takes it.
pub fn authenticate_scraper(app: &App, req: &Req) -> Result<Principal> {
    let bearer = req
        .header("authorization")
        .and_then(|v| v.trim().strip_prefix("Bearer "));
    match bearer {
        Some(token) if req.header(TOKEN_HEADER).is_none() => {
            if accounts::is_service_token(&app.db, token.trim())? {
                req.mark_authenticated();
                Ok(Principal::Service)
            } else {
                Err(Error::Unauthorized("invalid service token".into()))
            }
        }
        _ => authenticate(app, req),
    }
}

const ANONYMOUS: &str =
    "authentication required: send X-OPS-Service-Token or log in (POST /api/auth/login)";

/// API paths that anyone may call; every other `/api/` path needs a
/// caller. A wrong method on one of them is the router's 405 with `Allow`,
/// whoever asks, as on any path whose right method needs no caller.
const PUBLIC_API: [&str; 3] = ["/api/auth/login", "/api/auth/logout", "/api/openapi.json"];

/// A request with a body to an `/api/` route that needs a caller but that
/// names none (no token header, no session cookie) is refused from its
/// head alone: an anonymous client never gets its body read or buffered.
pub fn refuse_before_body(req: &Req) -> Option<Error> {
    let private =
        req.path.starts_with("/api/") && !PUBLIC_API.contains(&req.path.trim_end_matches('/'));
    (private && req.header(TOKEN_HEADER).is_none() && req.cookie(SESSION_COOKIE).is_none())
        .then(|| Error::Unauthorized(ANONYMOUS.into()))
}

/// Methods that change something: the ones a cross-site page must not
/// send with the session cookie.
fn is_unsafe(method: &str) -> bool {
    matches!(method, "POST" | "PUT" | "PATCH" | "DELETE")
}

/// A browser's unsafe request must come from the server's own origin: a
/// foreign `Origin` (compared with `Host`, or with `X-Forwarded-Host` under
/// `TRUST_PROXY`) or `Sec-Fetch-Site: cross-site` is 403 `cross_origin`.
/// A request with neither header (curl with a cookie jar) passes: only
/// browsers carry the cookie on their own, and they send `Origin` on every
/// cross-origin write. Login and cookie-authenticated routes call it.
pub fn check_origin(app: &App, req: &Req) -> Result<()> {
    if !is_unsafe(&req.method) {
        return Ok(());
    }
    if req
        .header("sec-fetch-site")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("cross-site"))
    {
        return Err(Error::CrossOrigin(
            "a cross-site request may not use the session cookie".into(),
        ));
    }
    let Some(origin) = req.header("origin") else {
        return Ok(());
    };
    let forwarded = app
        .trust_proxy
        .then(|| req.header("x-forwarded-host"))
        .flatten()
        .and_then(|v| v.rsplit(',').next());
    let own = forwarded.or(req.header("host")).unwrap_or_default();
    if same_host(origin, own) {
        return Ok(());
    }
    Err(Error::CrossOrigin(format!(
        "requests with the session cookie must come from this server's own pages, not from {origin:?}"
    )))
}

/// Whether `origin` (`scheme://host[:port]`) names the host `host`
/// (`host[:port]`), default ports (80, 443) aside and letter case ignored.
fn same_host(origin: &str, host: &str) -> bool {
    let Some((scheme, rest)) = origin.trim().split_once("://") else {
        return false; // "null" or garbage
    };
    let strip = |h: &str| -> String {
        let h = h.trim().to_ascii_lowercase();
        for default in [":80", ":443"] {
            if let Some(bare) = h.strip_suffix(default) {
                return bare.to_string();
            }
        }
        h
    };
    matches!(scheme, "http" | "https") && !host.trim().is_empty() && strip(rest) == strip(host)
}

/// A cookie-authenticated write with a body must say it is JSON: HTML
/// forms can only send `text/plain`, urlencoded or multipart bodies
/// without a preflight, so this shuts out forged form posts even where
/// `Origin` is absent. 415 `unsupported_media_type` otherwise.
fn check_json_body(req: &Req) -> Result<()> {
    if !is_unsafe(&req.method) || req.body.is_empty() {
        return Ok(());
    }
    let media = req
        .header("content-type")
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase());
    if media.as_deref() == Some("application/json") {
        return Ok(());
    }
    Err(Error::UnsupportedMediaType(format!(
        "send the body as Content-Type: application/json (got {})",
        req.header("content-type").unwrap_or("no Content-Type")
    )))
}

/// The client's address. Under `TRUST_PROXY` it is the rightmost
/// `X-Forwarded-For` entry: the one the (single) reverse proxy appended
/// for the peer it saw; entries left of it were sent by the client and
/// prove nothing. Without `TRUST_PROXY`, or when that entry is not an
/// address, it is the TCP peer.
pub fn client_addr(
    forwarded_for: Option<&str>,
    peer: Option<IpAddr>,
    trust_proxy: bool,
) -> Option<IpAddr> {
    if !trust_proxy {
        return peer;
    }
    forwarded_for
        .and_then(|v| v.rsplit(',').next())
        .and_then(|s| s.trim().parse().ok())
        .or(peer)
}

/// The login limits. Per client address: at most [`ADDR_MAX_FAILURES`]
/// failed logins per [`WINDOW`]; then every attempt from it, whatever the
/// user or password, is 429 until the window has passed. Per user: after
/// [`USER_MAX_FAILURES`] failures from anywhere in the window the user is
/// under lock, and only addresses with no failure (and no attempt under
/// way) in their own window may try it — so a guesser spread over many
/// addresses gets one guess per address, while the user's correct password
/// from a clean address still logs in. An attempt is reserved before the
/// password is checked (and counts as a failure until it is known), so
/// concurrent attempts cannot get past the limit together.
pub struct LoginLimiter {
    state: Mutex<Counters>,
}

pub const ADDR_MAX_FAILURES: u32 = 5;
pub const USER_MAX_FAILURES: u32 = 10;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Entries kept before expired ones are swept.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Default)]
struct Counters {
    by_addr: HashMap<Option<IpAddr>, Window>,
    by_user: HashMap<String, Window>,
}

/// Failures within a window that starts at the first one, and attempts
/// whose outcome is not known yet.
struct Window {
    failures: u32,
    pending: u32,
    since: Instant,
}

impl Window {
    fn new() -> Window {
        Window {
            failures: 0,
            pending: 0,
            since: Instant::now(),
        }
    }

    /// Failures of the current window plus attempts under way.
    fn load(&self) -> u32 {
        let failures = if self.since.elapsed() < WINDOW {
            self.failures
        } else {
            0
        };
        failures + self.pending
    }

    fn retry_after(&self) -> u64 {
        WINDOW.saturating_sub(self.since.elapsed()).as_secs().max(1)
    }

    fn fail(&mut self) {
        if self.since.elapsed() >= WINDOW {
            self.failures = 0;
            self.since = Instant::now();
        }
        self.failures += 1;
    }
}

fn entry<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Window>, key: K) -> &mut Window {
    if map.len() > SWEEP_ABOVE {
        map.retain(|_, w| w.pending > 0 || w.since.elapsed() < WINDOW);
    }
    map.entry(key).or_insert_with(Window::new)
}

/// A reserved login attempt: report its outcome with [`Attempt::failed`]
/// or [`Attempt::succeeded`]; dropped without either (an error other than
/// a wrong password), it is released without counting.
pub struct Attempt<'a> {
    limiter: &'a LoginLimiter,
    ip: Option<IpAddr>,
    user: String,
    /// `Some(true)`: right password; `Some(false)`: wrong one.
    outcome: Option<bool>,
    /// A failure that counts for the address only.
    user_spared: bool,
}

impl LoginLimiter {
    pub fn new() -> LoginLimiter {
        LoginLimiter {
            state: Mutex::new(Counters::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves an attempt by `user` from `ip`, or refuses it with 429.
    pub fn begin(&self, ip: Option<IpAddr>, user: &str) -> Result<Attempt<'_>> {
        let user = user.to_lowercase();
        let mut c = self.lock();
        let addr = entry(&mut c.by_addr, ip);
        if addr.load() >= ADDR_MAX_FAILURES {
            return Err(Error::RateLimited {
                retry_after_secs: addr.retry_after(),
            });
        }
        let addr_clean = addr.load() == 0;
        let by_user = entry(&mut c.by_user, user.clone());
        if by_user.load() >= USER_MAX_FAILURES && !addr_clean {
            return Err(Error::RateLimited {
                retry_after_secs: by_user.retry_after(),
            });
        }
        by_user.pending += 1;
        entry(&mut c.by_addr, ip).pending += 1;
        Ok(Attempt {
            limiter: self,
            ip,
            user,
            outcome: None,
            user_spared: false,
        })
    }
}

impl Attempt<'_> {
    /// A wrong password: counts for the address and the user.
    pub fn failed(mut self) {
        self.outcome = Some(false);
    }

    /// Refused for want of a turn at hashing (`429`, the server checks
    /// few passwords at once): counts for the address, not the user, so
    /// that flooding logins beyond what the server checks spends the
    /// address's failures while the user's account is not locked by it.
    pub fn crowded_out(mut self) {
        self.outcome = Some(false);
        self.user_spared = true;
    }

    /// The right password: the user's failures are forgotten (the
    /// address's are not, so that logging in to one's own account cannot
    /// reset a guesser's count).
    pub fn succeeded(mut self) {
        self.outcome = Some(true);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let mut c = self.limiter.lock();
        let failed = self.outcome == Some(false);
        if let Some(w) = c.by_addr.get_mut(&self.ip) {
            w.pending = w.pending.saturating_sub(1);
            if failed {
                w.fail();
            }
        }
        if let Some(w) = c.by_user.get_mut(&self.user) {
            w.pending = w.pending.saturating_sub(1);
            match self.outcome {
                Some(false) if self.user_spared => {}
                Some(false) => w.fail(),
                Some(true) => w.failures = 0,
                None => {}
            }
        }
    }
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_matches_host() {
        assert!(same_host("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(same_host("https://OPS.example", "ops.example"));
        assert!(same_host("https://ops.example:443", "ops.example"));
        assert!(!same_host("https://evil.example", "ops.example"));
        assert!(!same_host("http://127.0.0.1:9999", "127.0.0.1:8080"));
        assert!(!same_host("null", "ops.example"));
        assert!(!same_host("ftp://ops.example", "ops.example"));
        assert!(!same_host("http://ops.example", ""));
    }

    #[test]
    fn client_addr_is_what_the_proxy_appended() {
        let peer: Option<IpAddr> = "10.0.0.1".parse().ok();
        let a = |s: &str| s.parse::<IpAddr>().ok();
        assert_eq!(client_addr(Some("1.2.3.4"), peer, false), peer);
        assert_eq!(client_addr(Some("1.2.3.4"), peer, true), a("1.2.3.4"));
        assert_eq!(
            client_addr(Some("6.6.6.6, 7.7.7.7 , 1.2.3.4"), peer, true),
            a("1.2.3.4")
        );
        assert_eq!(client_addr(Some("1.2.3.4, junk"), peer, true), peer);
        assert_eq!(client_addr(None, peer, true), peer);
    }

    #[test]
    fn limits_hold_per_address_and_spare_clean_addresses() {
        let l = LoginLimiter::new();
        let ip = |n: u8| Some(IpAddr::from([192, 0, 2, n]));
        // Reserved attempts count before their outcome is known.
        let held: Vec<_> = (0..ADDR_MAX_FAILURES)
            .map(|_| l.begin(ip(1), "root").unwrap())
            .collect();
        assert!(l.begin(ip(1), "root").is_err());
        drop(held); // released without counting
        for _ in 0..ADDR_MAX_FAILURES {
            l.begin(ip(1), "root").unwrap().failed();
        }
        assert!(matches!(
            l.begin(ip(1), "someone-else"),
            Err(Error::RateLimited { .. })
        ));
        // The user is now under lock after enough failures from others...
        for _ in 0..ADDR_MAX_FAILURES - 1 {
            l.begin(ip(2), "root").unwrap().failed();
        }
        assert_eq!(USER_MAX_FAILURES, 2 * ADDR_MAX_FAILURES);
        l.begin(ip(3), "root").unwrap().failed();
        assert!(
            l.begin(ip(2), "root").is_err(),
            "a failed address is locked for the user"
        );
        assert!(l.begin(ip(2), "other").is_ok(), "not for other users");
        // ...but a clean address may still try it, and a success ends it.
        l.begin(ip(9), "root").unwrap().succeeded();
        assert!(l.begin(ip(2), "root").is_ok());
    }
}
