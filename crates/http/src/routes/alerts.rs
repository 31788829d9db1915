//! The alerts: listing, resolving and deleting them.

use crate::auth::authenticate;
use crate::request::Req;
use crate::response::Resp;
use crate::App;
use ops_base::error::{Error, Result};
use ops_protocol::Deleted;

pub fn list(app: &App, req: &Req) -> Result<Resp> {
    let who = authenticate(app, req)?;
    let status = req.query_str("status");
    if let Some(s) = status {
        if s != "open" && s != "resolved" {
            return Err(Error::BadRequest {
                code: "invalid_query",
                message: "`status` must be open or resolved".into(),
            });
        }
    }
    Ok(Resp::ok(ops_app::alerts::list(
        &app.db,
        &who,
        status,
        req.page()?,
    )?))
}

pub fn resolve(app: &App, req: &Req, id: i64) -> Result<Resp> {
    let who = authenticate(app, req)?;
    req.fields(&[])?;
    Ok(Resp::ok(ops_app::alerts::resolve(&app.db, &who, id)?))
}

pub fn delete(app: &App, req: &Req, id: i64) -> Result<Resp> {
    let who = authenticate(app, req)?;
    ops_app::alerts::delete(&app.db, &who, id)?;
    Ok(Resp::ok(Deleted { deleted: id }))
}
