//! Maps method and path to a handler. A known path with another method is
//! a 405 naming the accepted ones; an unknown path is a 404. Paths outside
//! `/api/` are the web UI's files.

use super::request::{percent_decode, Req};
use super::response::Resp;
use super::routes::{accounts, admin, alerts, dispatch, events, review, stream, tasks, ui};
use super::App;
use ops_base::error::{Error, Result};

/// Path parameters, in the order of the pattern's `{...}` segments,
/// percent-decoded.
pub struct Params(Vec<String>);

impl Params {
    /// The `i`-th parameter as a positive id, or 400 naming `what`.
    fn id(&self, i: usize, what: &str) -> Result<i64> {
        parse_id(what, &self.0[i])
    }

    fn text(&self, i: usize) -> &str {
        &self.0[i]
    }
}

type Handler = fn(&App, &Req, &Params) -> Result<Resp>;

/// One route: a method, a path pattern (`{name}` matches one segment) and
/// its handler. `ROUTES` is the one list of what the server answers: the
/// router walks it and the OpenAPI document (`openapi.rs`) is checked
/// against it.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    /// Served only with the test clock (`OPS_TEST_CLOCK=1`).
    pub test_only: bool,
    handler: Handler,
}

const fn r(method: &'static str, path: &'static str, handler: Handler) -> Route {
    Route {
        method,
        path,
        test_only: false,
        handler,
    }
}

pub const ROUTES: &[Route] = &[
    r("GET", "/metrics", |a, q, _| admin::metrics(a, q)),
    r("GET", "/api/openapi.json", |a, _, _| {
        Ok(Resp::static_file(
            "application/json",
            super::openapi::document(a.test_clock),
        ))
    }),
    r("POST", "/api/auth/login", |a, q, _| accounts::login(a, q)),
    r("POST", "/api/auth/logout", |a, q, _| accounts::logout(a, q)),
    r("GET", "/api/auth/me", |a, q, _| accounts::me(a, q)),
    r("GET", "/api/users", |a, q, _| accounts::list_users(a, q)),
    r("POST", "/api/users", |a, q, _| accounts::create_user(a, q)),
    r("PATCH", "/api/users/{id}", |a, q, p| {
        accounts::edit_user(a, q, p.id(0, "user")?)
    }),
    r("DELETE", "/api/users/{id}", |a, q, p| {
        accounts::delete_user(a, q, p.id(0, "user")?)
    }),
    r("GET", "/api/workspaces", |a, q, _| {
        accounts::list_workspaces(a, q)
    }),
    r("POST", "/api/workspaces", |a, q, _| {
        accounts::create_workspace(a, q)
    }),
    r("PATCH", "/api/workspaces/{id}", |a, q, p| {
        accounts::edit_workspace(a, q, p.id(0, "workspace")?)
    }),
    r("GET", "/api/workspaces/{id}/usage", |a, q, p| {
        accounts::workspace_usage(a, q, p.id(0, "workspace")?)
    }),
    r(
        "PUT",
        "/api/workspaces/{id}/members/{user_id}",
        |a, q, p| accounts::set_member(a, q, p.id(0, "workspace")?, p.id(1, "user")?),
    ),
    r(
        "DELETE",
        "/api/workspaces/{id}/members/{user_id}",
        |a, q, p| accounts::remove_member(a, q, p.id(0, "workspace")?, p.id(1, "user")?),
    ),
    r("GET", "/api/settings", |a, q, _| admin::settings(a, q)),
    r("GET", "/api/settings/{key}", |a, q, p| {
        admin::setting(a, q, p.text(0))
    }),
    r("PUT", "/api/settings/{key}", |a, q, p| {
        admin::set_setting(a, q, p.text(0))
    }),
    r("GET", "/api/agents", |a, q, _| admin::list_agents(a, q)),
    r("POST", "/api/agents", |a, q, _| admin::create_agent(a, q)),
    r("GET", "/api/agents/{id}", |a, q, p| {
        admin::get_agent(a, q, p.id(0, "agent")?)
    }),
    r("PATCH", "/api/agents/{id}", |a, q, p| {
        admin::edit_agent(a, q, p.id(0, "agent")?)
    }),
    r("DELETE", "/api/agents/{id}", |a, q, p| {
        admin::delete_agent(a, q, p.id(0, "agent")?)
    }),
    r("GET", "/api/tasks", |a, q, _| tasks::list(a, q)),
    r("POST", "/api/tasks", |a, q, _| tasks::create(a, q)),
    r("GET", "/api/tasks/{id}", |a, q, p| {
        tasks::get(a, q, p.id(0, "task")?)
    }),
    r("PATCH", "/api/tasks/{id}", |a, q, p| {
        tasks::edit(a, q, p.id(0, "task")?)
    }),
    r("DELETE", "/api/tasks/{id}", |a, q, p| {
        tasks::delete(a, q, p.id(0, "task")?)
    }),
    r("PATCH", "/api/tasks/{id}/status", |a, q, p| {
        tasks::set_status(a, q, p.id(0, "task")?)
    }),
    r("POST", "/api/tasks/{id}/comments", |a, q, p| {
        tasks::comment(a, q, p.id(0, "task")?)
    }),
    r("POST", "/api/tasks/{id}/archive", |a, q, p| {
        tasks::archive(a, q, p.id(0, "task")?)
    }),
    r("POST", "/api/tasks/{id}/unarchive", |a, q, p| {
        tasks::unarchive(a, q, p.id(0, "task")?)
    }),
    r("POST", "/api/tasks/{id}/dispatch", |a, q, p| {
        dispatch::dispatch(a, q, p.id(0, "task")?)
    }),
    r("POST", "/api/tasks/{id}/retry", |a, q, p| {
        dispatch::retry(a, q, p.id(0, "task")?)
    }),
    r("POST", "/api/tasks/{id}/follow-up", |a, q, p| {
        dispatch::follow_up(a, q, p.id(0, "task")?)
    }),
    r("GET", "/api/tasks/{id}/runs", |a, q, p| {
        tasks::runs(a, q, p.id(0, "task")?)
    }),
    r("GET", "/api/tasks/{id}/transcript", |a, q, p| {
        tasks::transcript(a, q, p.id(0, "task")?)
    }),
    r("GET", "/api/tasks/{id}/review", |a, q, p| {
        review::get(a, q, p.id(0, "task")?)
    }),
    r("GET", "/api/tasks/{id}/review/files/{index}", |a, q, p| {
        review::file(a, q, p.id(0, "task")?, p.text(1))
    }),
    r("POST", "/api/tasks/{id}/review/comments", |a, q, p| {
        review::comment(a, q, p.id(0, "task")?)
    }),
    r(
        "DELETE",
        "/api/tasks/{id}/review/comments/{cid}",
        |a, q, p| review::delete_comment(a, q, p.id(0, "task")?, p.id(1, "review comment")?),
    ),
    r("POST", "/api/tasks/{id}/review/send", |a, q, p| {
        review::send(a, q, p.id(0, "task")?)
    }),
    r("POST", "/api/tasks/{id}/cancel", |a, q, p| {
        tasks::cancel(a, q, p.id(0, "task")?)
    }),
    r("POST", "/api/tasks/{id}/approve", |a, q, p| {
        dispatch::approve(a, q, p.id(0, "task")?)
    }),
    r("POST", "/api/dispatch/heartbeat", |a, q, _| {
        dispatch::heartbeat(a, q)
    }),
    r("GET", "/api/dispatch/health", |a, q, _| {
        dispatch::health(a, q)
    }),
    r("POST", "/api/dispatch/next", |a, q, _| dispatch::next(a, q)),
    r("GET", "/api/dispatch/next", |a, q, _| dispatch::next(a, q)),
    r("POST", "/api/dispatch/tasks/{id}/started", |a, q, p| {
        dispatch::report(a, q, p.id(0, "task")?, "started")
    }),
    r("POST", "/api/dispatch/tasks/{id}/output", |a, q, p| {
        dispatch::report(a, q, p.id(0, "task")?, "output")
    }),
    r("POST", "/api/dispatch/tasks/{id}/finished", |a, q, p| {
        dispatch::report(a, q, p.id(0, "task")?, "finished")
    }),
    r("POST", "/api/dispatch/tasks/{id}/failed", |a, q, p| {
        dispatch::report(a, q, p.id(0, "task")?, "failed")
    }),
    r("POST", "/api/dispatch/tasks/{id}/cancelled", |a, q, p| {
        dispatch::cancelled(a, q, p.id(0, "task")?)
    }),
    r("POST", "/api/dispatch/reconcile-stale", |a, q, _| {
        dispatch::reconcile(a, q)
    }),
    r("GET", "/api/dispatch/stale", |a, q, _| {
        dispatch::stale(a, q)
    }),
    r("DELETE", "/api/dispatch/workers/{worker_id}", |a, q, p| {
        dispatch::forget_worker(a, q, p.text(0))
    }),
    Route {
        method: "POST",
        path: "/api/test/clock",
        test_only: true,
        handler: |a, q, _| admin::advance_clock(a, q),
    },
    Route {
        method: "POST",
        path: "/api/test/hold-park",
        test_only: true,
        handler: |a, q, _| admin::test_hold(a, q),
    },
    r("POST", "/api/watchdog/run", |a, q, _| {
        dispatch::watchdog_run(a, q)
    }),
    r("GET", "/api/events", |a, q, _| events::events(a, q)),
    r("GET", "/api/stream", |a, q, _| stream::open(a, q)),
    r("GET", "/api/alerts", |a, q, _| alerts::list(a, q)),
    r("DELETE", "/api/alerts/{id}", |a, q, p| {
        alerts::delete(a, q, p.id(0, "alert")?)
    }),
    r("POST", "/api/alerts/{id}/resolve", |a, q, p| {
        alerts::resolve(a, q, p.id(0, "alert")?)
    }),
];

/// The routes `app` serves (the test clock's only when it is on).
pub fn served(app_test_clock: bool) -> impl Iterator<Item = &'static Route> {
    ROUTES
        .iter()
        .filter(move |r| app_test_clock || !r.test_only)
}

/// The parameters of `path` when it matches `pattern`. The path is split
/// at its `/` first and each segment decoded after, so an encoded slash
/// (`%2F`) stays inside its segment.
fn matches(pattern: &str, path: &str) -> Option<Params> {
    let mut params = Vec::new();
    let mut segs = path.split('/');
    for want in pattern.split('/') {
        let seg = segs.next()?;
        if want.starts_with('{') {
            if seg.is_empty() {
                return None;
            }
            params.push(percent_decode(seg));
        } else if want != seg && want != percent_decode(seg) {
            return None;
        }
    }
    segs.next().is_none().then_some(Params(params))
}

pub fn route(app: &App, req: &Req) -> Result<Resp> {
    let path = req.path.trim_end_matches('/');
    let mut allowed: Vec<&str> = Vec::new();
    for route in served(app.test_clock) {
        let Some(params) = matches(route.path, path) else {
            continue;
        };
        if route.method == req.method {
            return (route.handler)(app, req, &params);
        }
        allowed.push(route.method);
    }
    if !allowed.is_empty() {
        return Ok(Resp::method_not_allowed(&allowed));
    }

    if req.path.starts_with("/api/") {
        return Err(Error::not_found(format!("no route {}", req.path)));
    }
    ui::serve(req)
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
