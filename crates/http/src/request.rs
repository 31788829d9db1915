//! What a handler sees of a request: method, path, query, headers, body,
//! and the client's address and scheme (through a trusted proxy or not).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::edge::{BodyCharge, ConnInfo};
use super::fields::Fields;
use super::responder::Responder;
use ops_base::error::{Error, Result};

/// Bodies larger than this are refused with 413.
pub const MAX_BODY: usize = 1024 * 1024;

pub struct Req {
    pub method: String,
    /// The path as sent (still percent-encoded: the router splits it into
    /// segments before decoding each, so `%2F` never becomes a `/`).
    pub path: String,
    pub query: HashMap<String, String>,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub client_ip: Option<IpAddr>,
    pub https: bool,
    /// How the answer gets back, until a handler takes it over.
    responder: Mutex<Option<Responder>>,
    /// The connection it came on (none in unit tests).
    pub(super) conn: Option<Arc<ConnInfo>>,
    /// When it was handed to the handler pool.
    pub(super) queued_at: Instant,
    /// Its body's place in the server's budget, given back when dropped.
    pub(super) charge: Option<BodyCharge>,
}

impl Req {
    /// A request: `path_and_query` as sent, header names in lower case,
    /// from `peer`; its body still to come.
    pub(super) fn new(
        method: &str,
        path_and_query: &str,
        headers: Vec<(String, String)>,
        peer: Option<IpAddr>,
        trust_proxy: bool,
    ) -> Req {
        let (path, qs) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let mut req = Req {
            method: method.to_string(),
            path: path.to_string(),
            query: parse_query(qs),
            headers,
            body: Vec::new(),
            client_ip: peer,
            https: false,
            responder: Mutex::new(None),
            conn: None,
            queued_at: Instant::now(),
            charge: None,
        };
        req.client_ip =
            super::auth::client_addr(req.header("x-forwarded-for"), req.client_ip, trust_proxy);
        if trust_proxy {
            req.https = req
                .header("x-forwarded-proto")
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
        }
        req
    }

    pub(super) fn set_responder(&self, r: Responder) {
        *self.responder.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
    }

    pub(super) fn take_responder(&self) -> Option<Responder> {
        self.responder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// The request's connection has shown a valid token or session: it is
    /// no longer anonymous for the connection budgets.
    pub(super) fn mark_authenticated(&self) {
        if let Some(c) = &self.conn {
            c.authenticate();
        }
    }

    /// Whether the client has gone: an answer would reach nobody.
    pub(super) fn client_gone(&self) -> bool {
        self.responder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(Responder::is_gone)
    }

    /// Takes over the answer: the handler's own return value is then
    /// ignored, and the returned [`Responder`] answers (from any thread) by
    /// `until` at the latest, else the client gets 503. `None` when the
    /// answer was already taken over.
    pub fn defer(&self, until: Instant) -> Option<Responder> {
        let r = self.take_responder()?;
        r.park(until);
        Some(r)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.header("cookie")?.split(';').find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then_some(v)
        })
    }

    /// The body as a JSON object with only `allowed` keys.
    pub fn fields(&self, allowed: &[&str]) -> Result<Fields> {
        Fields::parse(&self.body, allowed)
    }

    pub fn query_str(&self, key: &str) -> Option<&str> {
        self.query
            .get(key)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    pub fn query_i64(&self, key: &str) -> Result<Option<i64>> {
        self.query_str(key)
            .map(|v| {
                v.parse::<i64>().map_err(|_| Error::BadRequest {
                    code: "invalid_query",
                    message: format!("query parameter `{key}` must be a whole number, got {v:?}"),
                })
            })
            .transpose()
    }

    pub fn query_bool(&self, key: &str) -> Result<Option<bool>> {
        self.query_str(key)
            .map(|v| match v {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(Error::BadRequest {
                    code: "invalid_query",
                    message: format!("query parameter `{key}` must be true or false, got {v:?}"),
                }),
            })
            .transpose()
    }

    /// `?force=true`.
    pub fn force(&self) -> Result<bool> {
        Ok(self.query_bool("force")?.unwrap_or(false))
    }

    /// `limit` (1..=1000, default 50) and `offset` (>= 0).
    pub fn page(&self) -> Result<ops_app::Page> {
        let limit = self.query_i64("limit")?.unwrap_or(50);
        let offset = self.query_i64("offset")?.unwrap_or(0);
        if !(1..=1000).contains(&limit) {
            return Err(Error::BadRequest {
                code: "invalid_query",
                message: "`limit` must be from 1 to 1000".into(),
            });
        }
        if offset < 0 {
            return Err(Error::BadRequest {
                code: "invalid_query",
                message: "`offset` must not be negative".into(),
            });
        }
        Ok(ops_app::Page { limit, offset })
    }
}

fn parse_query(qs: &str) -> HashMap<String, String> {
    qs.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

pub(super) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_queries() {
        let q = parse_query("status=next&agent=open%20code&x=a+b&empty=");
        assert_eq!(q["status"], "next");
        assert_eq!(q["agent"], "open code");
        assert_eq!(q["x"], "a b");
        assert_eq!(q["empty"], "");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("%é"), "%é");
    }
}
