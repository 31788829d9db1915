use ops_protocol::accounts::{LoggedIn, LoggedOut, MemberRemoved, UserList, WorkspaceList};
use ops_protocol::Deleted;

use crate::auth::{authenticate, check_origin, SESSION_COOKIE};
use crate::request::Req;
use crate::response::Resp;
use crate::App;
use ops_app::accounts;
use ops_base::error::{Error, Result};
use ops_domain::access::Role;

pub fn login(app: &App, req: &Req) -> Result<Resp> {
    let f = req.fields(&["username", "password"])?;
    let username = f.required_str("username")?;
    let password = f.required_str("password")?;
    check_origin(app, req)?;
    let attempt = app.login_limiter.begin(req.client_ip, &username)?;
    let (token, user) = match accounts::login(&app.db, &username, &password) {
        Ok(ok) => ok,
        Err(e @ Error::Unauthorized(_)) => {
            log::warn!("failed login for {username:?} from {:?}", req.client_ip);
            attempt.failed();
            return Err(e);
        }
        Err(e @ Error::RateLimited { .. }) => {
            attempt.crowded_out();
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    attempt.succeeded();
    let secure = if req.https { "; Secure" } else { "" };
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        accounts::SESSION_TTL_MS / 1000
    );
    Ok(Resp::ok(LoggedIn {
        id: user.id,
        username: user.username,
        is_admin: user.is_admin,
    })
    .with_header("Set-Cookie", cookie))
}

pub fn logout(app: &App, req: &Req) -> Result<Resp> {
    check_origin(app, req)?;
    if let Some(cookie) = req.cookie(SESSION_COOKIE) {
        accounts::logout(&app.db, cookie)?;
    }
    Ok(Resp::ok(LoggedOut { logged_out: true }).with_header(
        "Set-Cookie",
        format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    ))
}

pub fn me(app: &App, req: &Req) -> Result<Resp> {
    let who = authenticate(app, req)?;
    Ok(Resp::ok(accounts::me(&app.db, &who)?))
}

pub fn list_users(app: &App, req: &Req) -> Result<Resp> {
    let who = authenticate(app, req)?;
    let users = accounts::list_users(&app.db, &who)?;
    Ok(Resp::ok(UserList {
        total: users.len() as i64,
        users,
    }))
}

pub fn create_user(app: &App, req: &Req) -> Result<Resp> {
    let who = authenticate(app, req)?;
    let f = req.fields(&["username", "password", "is_admin"])?;
    let user = accounts::create_user(
        &app.db,
        &who,
        f.required_str("username")?,
        f.required_str("password")?,
        f.bool("is_admin")?.unwrap_or(false),
    )?;
    Ok(Resp::created(user))
}

pub fn edit_user(app: &App, req: &Req, id: i64) -> Result<Resp> {
    let who = authenticate(app, req)?;
    let f = req.fields(&["password", "is_admin"])?;
    Ok(Resp::ok(accounts::edit_user(
        &app.db,
        &who,
        id,
        f.str("password")?,
        f.bool("is_admin")?,
    )?))
}

pub fn delete_user(app: &App, req: &Req, id: i64) -> Result<Resp> {
    let who = authenticate(app, req)?;
    accounts::delete_user(&app.db, &who, id)?;
    Ok(Resp::ok(Deleted { deleted: id }))
}

pub fn list_workspaces(app: &App, req: &Req) -> Result<Resp> {
    let who = authenticate(app, req)?;
    let workspaces = accounts::list_workspaces(&app.db, &who)?;
    Ok(Resp::ok(WorkspaceList {
        total: workspaces.len() as i64,
        workspaces,
    }))
}

pub fn create_workspace(app: &App, req: &Req) -> Result<Resp> {
    let who = authenticate(app, req)?;
    let f = req.fields(&["name"])?;
    Ok(Resp::created(accounts::create_workspace(
        &app.db,
        &who,
        f.required_str("name")?,
    )?))
}

pub fn edit_workspace(app: &App, req: &Req, ws: i64) -> Result<Resp> {
    let who = authenticate(app, req)?;
    let f = req.fields(&["repo_path", "base_ref", "repo_roots", "budget_usd_month"])?;
    let (repo_path, base_ref) = super::tasks::repo_fields(&f)?;
    let budget = match f.raw("budget_usd_month") {
        None => None,
        Some(serde_json::Value::Null) => Some(None),
        Some(v) => match v.as_f64() {
            Some(usd) if usd.is_finite() && (0.0..=BUDGET_MAX_USD).contains(&usd) => {
                Some(Some(usd))
            }
            _ => {
                return Err(Error::invalid_field(
                    "budget_usd_month",
                    format!(
                        "must be a number of USD from 0 to {BUDGET_MAX_USD}, or null for no budget"
                    ),
                ))
            }
        },
    };
    // `null` clears the list, as `[]` does.
    let repo_roots = match f.raw("repo_roots") {
        Some(serde_json::Value::Null) => Some(Vec::new()),
        _ => f.str_list("repo_roots")?,
    };
    Ok(Resp::ok(accounts::edit_workspace(
        &app.db,
        &who,
        ws,
        accounts::WorkspaceEdit {
            repo_path,
            base_ref,
            repo_roots,
            budget_usd_month: budget,
        },
    )?))
}

/// The largest monthly budget accepted: a typo of a few digits is refused.
const BUDGET_MAX_USD: f64 = 1_000_000.0;

/// `GET /api/workspaces/:id/usage?month=2026-12`.
pub fn workspace_usage(app: &App, req: &Req, ws: i64) -> Result<Resp> {
    let who = authenticate(app, req)?;
    Ok(Resp::ok(ops_app::runs::workspace_usage(
        &app.db,
        &who,
        ws,
        req.query_str("month"),
    )?))
}

pub fn set_member(app: &App, req: &Req, ws: i64, user: i64) -> Result<Resp> {
    let who = authenticate(app, req)?;
    let f = req.fields(&["role"])?;
    let role = f.required_str("role")?;
    let role = Role::parse(&role)
        .ok_or_else(|| Error::invalid_field("role", "must be admin or member"))?;
    Ok(Resp::ok(accounts::set_member(
        &app.db, &who, ws, user, role,
    )?))
}

pub fn remove_member(app: &App, req: &Req, ws: i64, user: i64) -> Result<Resp> {
    let who = authenticate(app, req)?;
    accounts::remove_member(&app.db, &who, ws, user)?;
    Ok(Resp::ok(MemberRemoved {
        workspace_id: ws,
        user_id: user,
        removed: true,
    }))
}
