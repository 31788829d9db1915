//! Who is calling: the service token header or a session cookie; and the
//! login rate limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::request::Req;
use super::App;
use crate::app::accounts;
use crate::domain::access::Principal;
use crate::error::{Error, Result};
use crate::secrets::constant_time_eq;
use crate::store;

pub const TOKEN_HEADER: &str = "x-ops-service-token";
pub const SESSION_COOKIE: &str = "ops_session";

/// The caller, or 401. A service token header that is present but wrong is
/// refused even when a valid cookie comes with it.
pub fn authenticate(app: &App, req: &Req) -> Result<Principal> {
    if let Some(token) = req.header(TOKEN_HEADER) {
        let expected =
            store::settings::get(&*app.db.read()?, crate::domain::settings::SERVICE_API_TOKEN)?
                .unwrap_or_default();
        if !expected.is_empty() && constant_time_eq(token.trim(), &expected) {
            return Ok(Principal::Service);
        }
        return Err(Error::Unauthorized("invalid service token".into()));
    }
    if let Some(cookie) = req.cookie(SESSION_COOKIE) {
        return accounts::session_principal(&app.db, cookie)?
            .ok_or_else(|| Error::Unauthorized("your session has expired; log in again".into()));
    }
    Err(Error::Unauthorized(ANONYMOUS.into()))
}

/// API routes that anyone may call; every other `/api/` route needs a
/// caller.
const PUBLIC_API: [&str; 2] = ["/api/auth/login", "/api/auth/logout"];

/// A request with a body to an `/api/` route that needs a caller but that
/// names none (no token header, no session cookie) is refused from its
/// head alone: an anonymous client never gets its body read or buffered.
pub fn refuse_before_body(req: &Req) -> Option<Error> {
    let private =
        req.path.starts_with("/api/") && !PUBLIC_API.contains(&req.path.trim_end_matches('/'));
    (private && req.header(TOKEN_HEADER).is_none() && req.cookie(SESSION_COOKIE).is_none())
        .then(|| Error::Unauthorized(ANONYMOUS.into()))
}

const ANONYMOUS: &str =
    "authentication required: send X-OPS-Service-Token or log in (POST /api/auth/login)";

/// Failed logins per client address: after `MAX_FAILURES` within `WINDOW`,
/// further attempts are refused until the window has passed.
pub struct LoginLimiter {
    failures: Mutex<HashMap<Option<IpAddr>, (u32, Instant)>>,
}

const MAX_FAILURES: u32 = 5;
const WINDOW: Duration = Duration::from_secs(15 * 60);

impl LoginLimiter {
    pub fn new() -> LoginLimiter {
        LoginLimiter {
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Refuses when the client has used up its attempts.
    pub fn check(&self, ip: Option<IpAddr>) -> Result<()> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((n, since)) = map.get(&ip) {
            let age = since.elapsed();
            if *n >= MAX_FAILURES && age < WINDOW {
                return Err(Error::RateLimited {
                    retry_after_secs: (WINDOW - age).as_secs().max(1),
                });
            }
        }
        Ok(())
    }

    pub fn failed(&self, ip: Option<IpAddr>) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, (_, since)| since.elapsed() < WINDOW);
        }
        let entry = map.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    pub fn succeeded(&self, ip: Option<IpAddr>) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ip);
    }
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self::new()
    }
}
