//! Users, sessions, workspaces and memberships, and the secrets set up at
//! start.

use serde_json::json;

use super::{event, views};
use crate::secrets;
use ops_base::error::{Error, Result};
use ops_base::time::now_ms;
use ops_domain::access::{Human, Principal, Role};
use ops_domain::repo;
use ops_domain::settings::{validate_token, SERVICE_API_TOKEN};
use ops_protocol::accounts::{Me, MemberSet, UserView, Workspace};
use ops_store::db::Db;
use ops_store::{sessions, users, users::User, workspaces};

/// How long a login lasts.
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;

/// What the server's environment says about secrets at start.
#[derive(Default, Clone)]
pub struct StartSecrets {
    pub admin_user: Option<String>,
    pub admin_password: Option<String>,
    pub service_token: Option<String>,
}

/// Creates or rotates the admin and the service token as configured, or
/// generates them when none exist. Returns lines to print once (the
/// generated secrets); an unusable configuration is an error.
pub fn bootstrap(db: &Db, cfg: &StartSecrets) -> Result<Vec<String>> {
    let mut shown = Vec::new();
    match (&cfg.admin_user, &cfg.admin_password) {
        (Some(user), Some(password)) => {
            check_username(user).map_err(|e| Error::bad_request(format!("OPS_ADMIN_USER: {e}")))?;
            secrets::check_password_strength(password)
                .map_err(|e| Error::bad_request(format!("OPS_ADMIN_PASSWORD: {e}")))?;
            ensure_admin(db, user, password)?;
        }
        (None, None) => {
            if users::admin_count(&*db.read()?)? == 0 {
                let password = secrets::random_hex(12);
                ensure_admin(db, "admin", &password)?;
                shown.push(format!(
                    "generated admin login: user admin, password {password} (shown once; set \
                     OPS_ADMIN_USER and OPS_ADMIN_PASSWORD to choose your own)"
                ));
            }
        }
        _ => {
            return Err(Error::bad_request(
                "set both OPS_ADMIN_USER and OPS_ADMIN_PASSWORD, or neither",
            ))
        }
    }
    let stored =
        ops_store::settings::get(&*db.read()?, SERVICE_API_TOKEN)?.filter(|t| !t.is_empty());
    match (&cfg.service_token, stored) {
        (Some(token), _) => {
            validate_token(token)
                .map_err(|e| Error::bad_request(format!("OPS_SERVICE_TOKEN: {e}")))?;
            super::settings::set_service_token(db, token.clone(), "env", "system")?;
        }
        (None, None) => {
            let token = secrets::random_hex(32);
            super::settings::set_service_token(db, token.clone(), "generated", "system")?;
            shown.push(format!(
                "generated service token: {token} (shown once; it is ops_settings.service_api_token, \
                 sent as X-OPS-Service-Token; set OPS_SERVICE_TOKEN to choose your own)"
            ));
        }
        (None, Some(_)) => {}
    }
    Ok(shown)
}

/// Creates the admin, or makes the existing user an admin with this
/// password (ending their sessions when the password changed).
pub fn ensure_admin(db: &Db, username: &str, password: &str) -> Result<()> {
    let existing = users::by_username(&*db.read()?, username)?;
    if let Some(u) = &existing {
        if u.is_admin && secrets::verify_password(password, &u.password_hash) {
            return Ok(());
        }
    }
    let hash = secrets::hash_password(password)?;
    let username = username.to_string();
    db.write(move |conn| {
        let now = now_ms();
        match users::by_username(conn, &username)? {
            Some(mut u) => {
                u.password_hash = hash;
                u.is_admin = true;
                users::save(conn, &u, now)?;
                sessions::delete_for_user(conn, u.id)?;
                event(
                    conn,
                    now,
                    None,
                    None,
                    "user.admin_rotated",
                    "system",
                    json!({"user_id": u.id, "username": username}),
                )
            }
            None => {
                let id = users::insert(conn, &username, &hash, true, now)?;
                event(
                    conn,
                    now,
                    None,
                    None,
                    "user.created",
                    "system",
                    json!({"user_id": id, "username": username, "is_admin": true}),
                )
            }
        }
    })
}

pub fn check_username(name: &str) -> std::result::Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
    if ok {
        Ok(())
    } else {
        Err("use 1 to 64 letters, digits, '.', '_', '-' or '@'".into())
    }
}

/// Checks the password and opens a session. Returns the cookie value and
/// the user.
pub fn login(db: &Db, username: &str, password: &str) -> Result<(String, User)> {
    let user = users::by_username(&*db.read()?, username)?;
    // Verify against something even for an unknown user, so that timing
    // does not tell which usernames exist.
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.as_str())
        .unwrap_or_else(|| dummy_hash());
    let ok = secrets::verify_login(password, hash)?;
    let user = match user {
        Some(u) if ok => u,
        _ => return Err(Error::Unauthorized("invalid username or password".into())),
    };
    let token = secrets::random_hex(32);
    let token_hash = secrets::sha256_hex(&token);
    let user_id = user.id;
    let name = user.username.clone();
    db.write(move |conn| {
        let now = now_ms();
        sessions::insert(conn, &token_hash, user_id, now, now + SESSION_TTL_MS)?;
        event(
            conn,
            now,
            None,
            None,
            "auth.login",
            &format!("user:{name}"),
            json!({}),
        )
    })?;
    Ok((token, user))
}

/// An argon2id hash of a random string, made once, used to spend the same
/// time on an unknown username as on a wrong password.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| secrets::hash_password(&secrets::random_hex(16)).unwrap_or_default())
}

/// Ends the session of `cookie`, with the event `auth.logout`; a cookie of
/// no live session changes nothing.
pub fn logout(db: &Db, cookie: &str) -> Result<()> {
    let token_hash = secrets::sha256_hex(cookie);
    db.write(move |conn| {
        let Some(user_id) = sessions::delete(conn, &token_hash)? else {
            return Ok(());
        };
        let name = users::get(conn, user_id)?.map_or_else(|| user_id.to_string(), |u| u.username);
        event(
            conn,
            now_ms(),
            None,
            None,
            "auth.logout",
            &format!("user:{name}"),
            json!({}),
        )
    })
}

/// The human behind a session cookie, if the session is live.
pub fn session_principal(db: &Db, cookie: &str) -> Result<Option<Principal>> {
    let conn = db.read()?;
    let Some(user_id) = sessions::user_of(&conn, &secrets::sha256_hex(cookie), now_ms())? else {
        return Ok(None);
    };
    let Some(user) = users::get(&conn, user_id)? else {
        return Ok(None);
    };
    Ok(Some(human_principal(&conn, user)?))
}

fn human_principal(conn: &rusqlite::Connection, user: User) -> Result<Principal> {
    let memberships = users::memberships(conn, user.id)?
        .into_iter()
        .filter_map(|(ws, role)| Role::parse(&role).map(|r| (ws, r)))
        .collect();
    Ok(Principal::Human(Human {
        id: user.id,
        username: user.username,
        is_admin: user.is_admin,
        memberships,
    }))
}

/// Whether `token` is the service token (none is set: nothing is).
pub fn is_service_token(db: &Db, token: &str) -> Result<bool> {
    let expected = ops_store::settings::get(&*db.read()?, SERVICE_API_TOKEN)?.unwrap_or_default();
    Ok(!expected.is_empty() && secrets::constant_time_eq(token, &expected))
}

/// `GET /api/auth/me`.
pub fn me(db: &Db, who: &Principal) -> Result<Me> {
    Ok(match who {
        Principal::Service => Me {
            user: None,
            role: "service".into(),
        },
        Principal::Human(h) => {
            let conn = db.read()?;
            let user = users::require(&conn, h.id)?;
            Me {
                user: Some(user_view(&conn, &user)?),
                role: if h.is_admin { "admin" } else { "user" }.into(),
            }
        }
    })
}

fn user_view(conn: &rusqlite::Connection, u: &User) -> Result<UserView> {
    Ok(views::user(u, &users::memberships(conn, u.id)?))
}

pub fn list_users(db: &Db, who: &Principal) -> Result<Vec<UserView>> {
    who.require_global_admin("managing users")?;
    let conn = db.read()?;
    users::list(&conn)?
        .iter()
        .map(|u| user_view(&conn, u))
        .collect()
}

pub fn create_user(
    db: &Db,
    who: &Principal,
    username: String,
    password: String,
    is_admin: bool,
) -> Result<UserView> {
    who.require_global_admin("managing users")?;
    check_username(&username).map_err(|e| Error::invalid_field("username", e))?;
    secrets::check_password_strength(&password).map_err(|e| Error::invalid_field("password", e))?;
    let hash = secrets::hash_password(&password)?;
    let actor = who.actor();
    db.write(move |conn| {
        let now = now_ms();
        if users::by_username(conn, &username)?.is_some() {
            return Err(Error::conflict(
                "duplicate",
                format!("user {username:?} exists"),
            ));
        }
        let id = users::insert(conn, &username, &hash, is_admin, now)?;
        event(
            conn,
            now,
            None,
            None,
            "user.created",
            &actor,
            json!({"user_id": id, "username": username, "is_admin": is_admin}),
        )?;
        user_view(conn, &users::require(conn, id)?)
    })
}

pub fn edit_user(
    db: &Db,
    who: &Principal,
    id: i64,
    password: Option<String>,
    is_admin: Option<bool>,
) -> Result<UserView> {
    who.require_global_admin("managing users")?;
    let hash = match &password {
        Some(p) => {
            secrets::check_password_strength(p).map_err(|e| Error::invalid_field("password", e))?;
            Some(secrets::hash_password(p)?)
        }
        None => None,
    };
    let actor = who.actor();
    db.write(move |conn| {
        let now = now_ms();
        let mut u = users::require(conn, id)?;
        if let Some(h) = hash {
            u.password_hash = h;
            sessions::delete_for_user(conn, id)?;
        }
        if let Some(a) = is_admin {
            if u.is_admin && !a && users::admin_count(conn)? <= 1 {
                return Err(Error::conflict(
                    "last_admin",
                    "the last global admin cannot lose admin rights",
                ));
            }
            u.is_admin = a;
        }
        users::save(conn, &u, now)?;
        event(
            conn,
            now,
            None,
            None,
            "user.updated",
            &actor,
            json!({"user_id": id, "password_changed": password.is_some(), "is_admin": u.is_admin}),
        )?;
        user_view(conn, &u)
    })
}

pub fn delete_user(db: &Db, who: &Principal, id: i64) -> Result<()> {
    who.require_global_admin("managing users")?;
    let actor = who.actor();
    db.write(move |conn| {
        let now = now_ms();
        let u = users::require(conn, id)?;
        if u.is_admin && users::admin_count(conn)? <= 1 {
            return Err(Error::conflict(
                "last_admin",
                "the last global admin cannot be deleted",
            ));
        }
        users::delete(conn, id)?;
        event(
            conn,
            now,
            None,
            None,
            "user.deleted",
            &actor,
            json!({"user_id": id, "username": u.username}),
        )
    })
}

pub fn list_workspaces(db: &Db, who: &Principal) -> Result<Vec<Workspace>> {
    let visible = who.visible_workspaces();
    let list = workspaces::list(&*db.read()?, visible.as_deref())?;
    Ok(list.iter().map(views::workspace).collect())
}

pub fn create_workspace(db: &Db, who: &Principal, name: String) -> Result<Workspace> {
    who.require_global_admin("creating workspaces")?;
    if name.trim().is_empty() || name.len() > 200 {
        return Err(Error::invalid_field("name", "use 1 to 200 characters"));
    }
    let actor = who.actor();
    db.write(move |conn| {
        let now = now_ms();
        if workspaces::by_name(conn, &name)?.is_some() {
            return Err(Error::conflict(
                "duplicate",
                format!("workspace {name:?} exists"),
            ));
        }
        let id = workspaces::insert(conn, &name, now)?;
        event(
            conn,
            now,
            Some(id),
            None,
            "workspace.created",
            &actor,
            json!({"name": name}),
        )?;
        workspaces::require(conn, id).map(|w| views::workspace(&w))
    })
}

pub fn set_member(
    db: &Db,
    who: &Principal,
    workspace_id: i64,
    user_id: i64,
    role: Role,
) -> Result<MemberSet> {
    who.require_workspace_admin(workspace_id)?;
    let actor = who.actor();
    db.write(move |conn| {
        let now = now_ms();
        workspaces::require(conn, workspace_id)?;
        users::require(conn, user_id)?;
        users::set_membership(conn, workspace_id, user_id, role.as_str())?;
        event(
            conn,
            now,
            Some(workspace_id),
            None,
            "workspace.member_set",
            &actor,
            json!({"user_id": user_id, "role": role.as_str()}),
        )?;
        Ok(MemberSet {
            workspace_id,
            user_id,
            role: role.as_str().to_string(),
        })
    })
}

pub fn remove_member(db: &Db, who: &Principal, workspace_id: i64, user_id: i64) -> Result<()> {
    who.require_workspace_admin(workspace_id)?;
    let actor = who.actor();
    db.write(move |conn| {
        let now = now_ms();
        workspaces::require(conn, workspace_id)?;
        if !users::remove_membership(conn, workspace_id, user_id)? {
            return Err(Error::not_found(format!(
                "user {user_id} is not a member of workspace {workspace_id}"
            )));
        }
        event(
            conn,
            now,
            Some(workspace_id),
            None,
            "workspace.member_removed",
            &actor,
            json!({"user_id": user_id}),
        )
    })
}

/// The fields of `PATCH /api/workspaces/:id`; `None` leaves a field as it
/// is, `Some(None)` clears it.
pub struct WorkspaceEdit {
    pub repo_path: Option<Option<String>>,
    pub base_ref: Option<Option<String>>,
    pub repo_roots: Option<Vec<String>>,
    pub budget_usd_month: Option<Option<f64>>,
}

/// `PATCH /api/workspaces/:id`: the repository its tasks run in, the
/// roots under which a task may name its own, and its monthly budget. `None` leaves a field,
/// `Some(None)` clears it; `repo_roots` replaces the whole list. A
/// workspace admin's call: the repository decides where the agents of
/// every task of the workspace work. A Human Gate approval is withdrawn
/// from the tasks whose repository this changes (those on the workspace's)
/// and from those whose own repository it no longer allows.
pub fn edit_workspace(
    db: &Db,
    who: &Principal,
    workspace_id: i64,
    edit: WorkspaceEdit,
) -> Result<Workspace> {
    who.require_workspace_admin(workspace_id)?;
    let WorkspaceEdit {
        repo_path,
        base_ref,
        repo_roots,
        budget_usd_month,
    } = edit;
    let repo_roots = repo_roots.map(repo::check_roots).transpose()?;
    let actor = who.actor();
    db.write(move |conn| {
        let now = now_ms();
        let old = workspaces::require(conn, workspace_id)?;
        if let Some(budget) = budget_usd_month.filter(|b| *b != old.budget_usd_month) {
            workspaces::set_budget(conn, workspace_id, budget)?;
            event(
                conn,
                now,
                Some(workspace_id),
                None,
                "workspace.budget_set",
                &actor,
                json!({"budget_usd_month": budget, "was": old.budget_usd_month}),
            )?;
        }
        let path = repo_path.unwrap_or(old.repo_path.clone());
        let base = base_ref.unwrap_or(old.base_ref.clone());
        let roots = repo_roots.unwrap_or(old.repo_roots.clone());
        let repo_changed = (&path, &base) != (&old.repo_path, &old.base_ref);
        if !repo_changed && roots == old.repo_roots {
            return workspaces::require(conn, workspace_id);
        }
        workspaces::set_repo(conn, workspace_id, path.as_deref(), base.as_deref())?;
        workspaces::set_repo_roots(conn, workspace_id, &roots)?;
        let mut withdrawn = if repo_changed {
            super::gate::withdraw_for_workspace_repo(conn, workspace_id, &actor, now)?
        } else {
            Vec::new()
        };
        let allowed = repo::Allowed {
            workspace_id,
            repo_path: path.as_deref(),
            roots: &roots,
        };
        withdrawn.extend(super::gate::withdraw_for_disallowed_repos(
            conn, &allowed, &actor, now,
        )?);
        event(
            conn,
            now,
            Some(workspace_id),
            None,
            "workspace.repo_set",
            &actor,
            json!({"repo_path": path, "base_ref": base, "repo_roots": roots,
                   "approvals_withdrawn": withdrawn}),
        )?;
        workspaces::require(conn, workspace_id)
    })
    .map(|w| views::workspace(&w))
}
