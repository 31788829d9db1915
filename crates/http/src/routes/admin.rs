use serde_json::Value;

use crate::auth::authenticate;
use crate::fields::Fields;
use crate::request::Req;
use crate::response::Resp;
use crate::waiting::Wake;
use crate::App;
use ops_app::agents::{self, AgentInput};
use ops_app::settings;
use ops_base::error::{Error, Result};
use ops_domain::settings::known_keys;
use ops_protocol::admin::Setting;
use ops_protocol::Deleted;

/// `GET /metrics`: the Prometheus text format; service token or global
/// admin.
pub fn metrics(app: &App, req: &Req) -> Result<Resp> {
    let who = crate::auth::authenticate_scraper(app, req)?;
    let text = ops_app::metrics::scrape(&app.db, &who)?;
    Ok(Resp::text(ops_base::metrics::Text::CONTENT_TYPE, text))
}

pub fn settings(app: &App, req: &Req) -> Result<Resp> {
    authenticate(app, req)?;
    Ok(Resp::ok(settings::load(&app.db)?.view()))
}

pub fn setting(app: &App, req: &Req, key: &str) -> Result<Resp> {
    authenticate(app, req)?;
    if !known_keys().contains(&key) {
        return Err(Error::not_found(format!(
            "unknown setting `{key}`; known settings: {}",
            known_keys().join(", ")
        )));
    }
    let s = settings::load(&app.db)?;
    Ok(Resp::ok(Setting {
        key: key.to_string(),
        value: s.value(key),
    }))
}

/// `{"value": "..."}`; a JSON boolean or number is taken as its text.
pub fn set_setting(app: &App, req: &Req, key: &str) -> Result<Resp> {
    let who = authenticate(app, req)?;
    let f = req.fields(&["value"])?;
    let raw = match f.raw("value") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(Error::invalid_field("value", "must be a string")),
        None => return Err(Error::invalid_field("value", "is required")),
    };
    let answer = settings::set(&app.db, &who, key, &raw)?;
    // dispatch_enabled, or a setting a claim reads, may have changed what
    // parked claims get.
    app.waiting.wake(Wake::All);
    Ok(Resp::ok(answer))
}

/// `POST /api/test/clock` `{"advance_seconds": N}` (a test server only).
pub fn advance_clock(app: &App, req: &Req) -> Result<Resp> {
    let who = authenticate(app, req)?;
    let f = req.fields(&["advance_seconds"])?;
    let secs = f
        .i64_in("advance_seconds", 0..=10_000_000_000)?
        .ok_or_else(|| Error::invalid_field("advance_seconds", "is required"))?;
    Ok(Resp::ok(settings::advance_clock(&who, secs)?))
}

/// `POST /api/test/hold-park` (test servers only; see `protocol::admin::TestHold`).
pub fn test_hold(app: &App, req: &Req) -> Result<Resp> {
    let who = authenticate(app, req)?;
    who.require_service("the test hooks")?;
    let f = req.fields(&["worker_id", "action"])?;
    let worker = f.required_str("worker_id")?;
    let action = f.required_str("action")?;
    if !["arm", "wait", "release"].contains(&action.as_str()) {
        return Err(Error::invalid_field(
            "action",
            "must be arm, wait or release",
        ));
    }
    Ok(Resp::ok(ops_protocol::admin::TestHoldState {
        held: app.waiting.hold(&worker, &action),
    }))
}

pub fn list_agents(app: &App, req: &Req) -> Result<Resp> {
    authenticate(app, req)?;
    Ok(Resp::ok(agents::list(&app.db)?))
}

pub fn get_agent(app: &App, req: &Req, id: i64) -> Result<Resp> {
    authenticate(app, req)?;
    Ok(Resp::ok(agents::get(&app.db, id)?))
}

fn agent_input(f: &Fields) -> Result<AgentInput> {
    Ok(AgentInput {
        slug: f.str("slug")?,
        name: f.text("name", 200)?,
        active: f.bool("active")?,
        launch_command: f.nullable_str("launch_command")?,
        model: f.nullable_str("model")?,
    })
}

const AGENT_FIELDS: &[&str] = &["slug", "name", "active", "launch_command", "model"];

pub fn create_agent(app: &App, req: &Req) -> Result<Resp> {
    let who = authenticate(app, req)?;
    let input = agent_input(&req.fields(AGENT_FIELDS)?)?;
    Ok(Resp::created(agents::create(&app.db, &who, input)?))
}

pub fn edit_agent(app: &App, req: &Req, id: i64) -> Result<Resp> {
    let who = authenticate(app, req)?;
    let input = agent_input(&req.fields(AGENT_FIELDS)?)?;
    let agent = agents::edit(&app.db, &who, id, input)?;
    // An agent activated again makes its queued tasks claimable.
    app.waiting.wake(Wake::All);
    Ok(Resp::ok(agent))
}

pub fn delete_agent(app: &App, req: &Req, id: i64) -> Result<Resp> {
    let who = authenticate(app, req)?;
    agents::delete(&app.db, &who, id)?;
    Ok(Resp::ok(Deleted { deleted: id }))
}
