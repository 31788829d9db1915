//! Reading and changing `ops_settings`.

use serde_json::json;

use super::event;
use ops_base::error::Result;
use ops_base::time::now_ms;
use ops_domain::access::Principal;
use ops_domain::settings::{self, Settings, DISPATCH_ENABLED, SERVICE_API_TOKEN, TOKEN_ORIGIN};
use ops_protocol::admin::{Clock, Setting};
use ops_store::db::Db;

/// Moves the server's clock forward (a test server only: the route
/// exists with `OPS_TEST_CLOCK=1`). Operators only.
pub fn advance_clock(who: &Principal, seconds: i64) -> Result<Clock> {
    who.require_operator("moving the clock")?;
    ops_base::time::advance(seconds * 1000);
    Ok(Clock {
        now: ops_base::time::rfc3339(now_ms()),
    })
}

pub fn load(db: &Db) -> Result<Settings> {
    ops_store::settings::load(&*db.read()?)
}

/// `PUT /api/settings/:key`. Workspace admins may toggle
/// `dispatch_enabled`; every other key needs an operator.
pub fn set(db: &Db, who: &Principal, key: &str, raw: &str) -> Result<Setting> {
    if key == DISPATCH_ENABLED {
        who.require_ops_admin("toggling dispatch")?;
    } else if key == SERVICE_API_TOKEN {
        // Not the token itself: whoever holds it could otherwise lock the
        // admins' launchers out and keep the only valid credential.
        who.require_global_admin(
            "changing the service token (also: ops-center admin set-service-token)",
        )?;
    } else {
        who.require_operator("changing settings")?;
    }
    let value = settings::validate(key, raw)?;
    let key = key.to_string();
    let actor = who.actor();
    let cache = db.settings.clone();
    let written = db.write(move |conn| {
        let now = now_ms();
        let before = ops_store::settings::get(conn, &key)?;
        ops_store::settings::set(conn, &key, &value, now)?;
        cache.forget();
        if key == SERVICE_API_TOKEN {
            ops_store::settings::set(conn, TOKEN_ORIGIN, "api", now)?;
        }
        let shown = |v: Option<String>| {
            if key == SERVICE_API_TOKEN {
                v.map(|_| "[redacted]".to_string())
            } else {
                v
            }
        };
        event(
            conn,
            now,
            None,
            None,
            "settings.changed",
            &actor,
            json!({"key": key, "from": shown(before), "to": shown(Some(value.clone()))}),
        )?;
        let s = ops_store::settings::load(conn)?;
        Ok(Setting {
            value: s.value(&key),
            key,
        })
    });
    forgotten(db, written)
}

/// The writer's settings cache is forgotten inside the write, so that the
/// requests after it in the same group commit see the new value, and
/// again once the commit's outcome is known: had it rolled back, a request
/// of that batch could have cached the value that never was.
fn forgotten<T>(db: &Db, written: Result<T>) -> Result<T> {
    db.settings.forget();
    written
}

/// Writes the service token (start-up seeding, `ops-center admin`).
/// `origin` is `env`, `generated` or `admin`.
pub fn set_service_token(db: &Db, token: String, origin: &'static str, actor: &str) -> Result<()> {
    let actor = actor.to_string();
    let cache = db.settings.clone();
    let written = db.write(move |conn| {
        let now = now_ms();
        if ops_store::settings::get(conn, SERVICE_API_TOKEN)?.as_deref() == Some(token.as_str()) {
            return Ok(());
        }
        ops_store::settings::set(conn, SERVICE_API_TOKEN, &token, now)?;
        ops_store::settings::set(conn, TOKEN_ORIGIN, origin, now)?;
        cache.forget();
        event(
            conn,
            now,
            None,
            None,
            "settings.changed",
            &actor,
            json!({"key": SERVICE_API_TOKEN, "to": "[redacted]", "origin": origin}),
        )
    });
    forgotten(db, written)
}
