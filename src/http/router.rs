//! Maps method and path to a handler. A known path with another method is
//! a 405 naming the accepted ones; an unknown path is a 404. Paths outside
//! `/api/` are the web UI's files.

use super::request::Req;
use super::response::Resp;
use super::routes::{accounts, admin, dispatch, feed, stream, tasks, ui};
use super::App;
use crate::error::{Error, Result};

/// Picks the handler for the request's method among `(method, handler)`
/// pairs, or answers 405.
macro_rules! methods {
    ($req:expr, { $($m:literal => $h:expr),+ $(,)? }) => {
        match $req.method.as_str() {
            $($m => $h,)+
            _ => Ok(Resp::method_not_allowed(&[$($m),+])),
        }
    };
}

pub fn route(app: &App, req: &Req) -> Result<Resp> {
    if req.path == "/metrics" {
        return methods!(req, { "GET" => admin::metrics(app, req) });
    }
    let Some(rest) = req.path.strip_prefix("/api/") else {
        return ui::serve(req);
    };
    let segs: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    match segs.as_slice() {
        ["auth", "login"] => methods!(req, { "POST" => accounts::login(app, req) }),
        ["auth", "logout"] => methods!(req, { "POST" => accounts::logout(app, req) }),
        ["auth", "me"] => methods!(req, { "GET" => accounts::me(app, req) }),
        ["users"] => methods!(req, {
            "GET" => accounts::list_users(app, req),
            "POST" => accounts::create_user(app, req),
        }),
        ["users", id] => {
            let id = parse_id("user", id)?;
            methods!(req, {
                "PATCH" => accounts::edit_user(app, req, id),
                "DELETE" => accounts::delete_user(app, req, id),
            })
        }
        ["workspaces"] => methods!(req, {
            "GET" => accounts::list_workspaces(app, req),
            "POST" => accounts::create_workspace(app, req),
        }),
        ["workspaces", ws] => {
            let ws = parse_id("workspace", ws)?;
            methods!(req, { "PATCH" => accounts::edit_workspace(app, req, ws) })
        }
        ["workspaces", ws, "members", user] => {
            let (ws, user) = (parse_id("workspace", ws)?, parse_id("user", user)?);
            methods!(req, {
                "PUT" => accounts::set_member(app, req, ws, user),
                "DELETE" => accounts::remove_member(app, req, ws, user),
            })
        }
        ["settings"] => methods!(req, { "GET" => admin::settings(app, req) }),
        ["settings", key] => methods!(req, {
            "GET" => admin::setting(app, req, key),
            "PUT" => admin::set_setting(app, req, key),
        }),
        ["agents"] => methods!(req, {
            "GET" => admin::list_agents(app, req),
            "POST" => admin::create_agent(app, req),
        }),
        ["agents", id] => {
            let id = parse_id("agent", id)?;
            methods!(req, {
                "GET" => admin::get_agent(app, req, id),
                "PATCH" => admin::edit_agent(app, req, id),
                "DELETE" => admin::delete_agent(app, req, id),
            })
        }
        ["tasks"] => methods!(req, {
            "GET" => tasks::list(app, req),
            "POST" => tasks::create(app, req),
        }),
        ["tasks", id] => {
            let id = parse_id("task", id)?;
            methods!(req, {
                "GET" => tasks::get(app, req, id),
                "PATCH" => tasks::edit(app, req, id),
                "DELETE" => tasks::delete(app, req, id),
            })
        }
        ["tasks", id, "status"] => {
            let id = parse_id("task", id)?;
            methods!(req, { "PATCH" => tasks::set_status(app, req, id) })
        }
        ["tasks", id, "comments"] => {
            let id = parse_id("task", id)?;
            methods!(req, { "POST" => tasks::comment(app, req, id) })
        }
        ["tasks", id, "archive"] => {
            let id = parse_id("task", id)?;
            methods!(req, { "POST" => tasks::archive(app, req, id) })
        }
        ["tasks", id, "dispatch"] => {
            let id = parse_id("task", id)?;
            methods!(req, { "POST" => dispatch::dispatch(app, req, id) })
        }
        ["tasks", id, "approve"] => {
            let id = parse_id("task", id)?;
            methods!(req, { "POST" => dispatch::approve(app, req, id) })
        }
        ["dispatch", "heartbeat"] => methods!(req, { "POST" => dispatch::heartbeat(app, req) }),
        ["dispatch", "health"] => methods!(req, { "GET" => dispatch::health(app, req) }),
        ["dispatch", "next"] => methods!(req, {
            "POST" => dispatch::next(app, req),
            "GET" => dispatch::next(app, req),
        }),
        ["dispatch", "tasks", id, kind @ ("started" | "output" | "finished" | "failed")] => {
            let id = parse_id("task", id)?;
            methods!(req, { "POST" => dispatch::report(app, req, id, kind) })
        }
        ["dispatch", "reconcile-stale"] => {
            methods!(req, { "POST" => dispatch::reconcile(app, req) })
        }
        ["dispatch", "stale"] => methods!(req, { "GET" => dispatch::stale(app, req) }),
        ["dispatch", "workers", worker] => {
            methods!(req, { "DELETE" => dispatch::forget_worker(app, req, worker) })
        }
        ["test", "clock"] if app.test_clock => {
            methods!(req, { "POST" => admin::advance_clock(app, req) })
        }
        ["watchdog", "run"] => methods!(req, { "POST" => dispatch::watchdog_run(app, req) }),
        ["events"] => methods!(req, { "GET" => feed::events(app, req) }),
        ["stream"] => methods!(req, { "GET" => stream::open(app, req) }),
        ["alerts"] => methods!(req, { "GET" => feed::alerts(app, req) }),
        ["alerts", id] => {
            let id = parse_id("alert", id)?;
            methods!(req, { "DELETE" => feed::delete_alert(app, req, id) })
        }
        ["alerts", id, "resolve"] => {
            let id = parse_id("alert", id)?;
            methods!(req, { "POST" => feed::resolve_alert(app, req, id) })
        }
        _ => Err(Error::not_found(format!("no route {}", req.path))),
    }
}

fn parse_id(what: &str, s: &str) -> Result<i64> {
    s.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Error::BadRequest {
            code: "invalid_id",
            message: format!("{what} id must be a positive whole number, got {s:?}"),
        })
}
