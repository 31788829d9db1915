//! The audit log: `GET /api/events`.

use crate::auth::authenticate;
use crate::request::Req;
use crate::response::Resp;
use crate::App;
use ops_base::error::Result;

pub fn events(app: &App, req: &Req) -> Result<Resp> {
    let who = authenticate(app, req)?;
    let filter = ops_app::audit::EventFilter {
        task_id: req.query_i64("task_id")?,
        kind: req.query_str("kind").map(str::to_string),
        workspaces: who.visible_workspaces(),
    };
    Ok(Resp::ok(ops_app::audit::list(
        &app.db,
        &filter,
        req.page()?,
    )?))
}
