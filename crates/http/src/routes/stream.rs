//! `GET /api/stream`: the event stream (see `event_stream`).

use crate::auth::authenticate;
use crate::auth::{SESSION_COOKIE, TOKEN_HEADER};
use crate::event_stream::{Client, Credential};
use crate::request::Req;
use crate::response::Resp;
use crate::App;
use ops_base::error::{Error, Result};
use ops_domain::access::Principal;

pub fn open(app: &App, req: &Req) -> Result<Resp> {
    let who = authenticate(app, req)?;
    let last_event_id = last_event_id(req)?;
    let caller = match &who {
        Principal::Service => "service".to_string(),
        Principal::Human(h) => format!("user:{}", h.id),
    };
    let credential = match req.header(TOKEN_HEADER) {
        Some(token) => Credential::Service(token.trim().to_string()),
        None => Credential::Session(req.cookie(SESSION_COOKIE).unwrap_or_default().to_string()),
    };
    let slot = app.streams.reserve(&caller)?;
    let Some(responder) = req.take_responder() else {
        return Err(Error::Internal(
            "the stream's answer was already taken".into(),
        ));
    };
    let stream = responder.stream(Resp::stream_head(
        "text/event-stream",
        vec![
            ("Cache-Control", "no-store".into()),
            // Tells a proxy such as nginx not to hold the events back.
            ("X-Accel-Buffering", "no".into()),
        ],
    ));
    app.streams.open(Client {
        stream,
        credential,
        workspaces: who.visible_workspaces(),
        last_event_id,
        slot,
    });
    // Not sent: the answer is the stream.
    Ok(Resp::ok(serde_json::Value::Null))
}

/// Where to resume: the `Last-Event-ID` header (sent by EventSource when
/// it reconnects), else the `last_event_id` query parameter (for clients
/// that cannot set headers).
fn last_event_id(req: &Req) -> Result<Option<i64>> {
    let (raw, name) = match req.header("last-event-id") {
        Some(h) => (Some(h.trim()), "the Last-Event-ID header"),
        None => (req.query_str("last_event_id"), "`last_event_id`"),
    };
    raw.filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| Error::BadRequest {
                    code: "invalid_last_event_id",
                    message: format!("{name} must be an event id (a whole number >= 0), got {s:?}"),
                })
        })
        .transpose()
}
