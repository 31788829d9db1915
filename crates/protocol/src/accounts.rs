//! Logins, users and workspaces.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `POST /api/auth/login`: `{"username","password"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Login {
    pub username: String,
    pub password: String,
}

/// What a successful login answers (the session is in the cookie).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LoggedIn {
    pub id: i64,
    pub username: String,
    pub is_admin: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LoggedOut {
    pub logged_out: bool,
}

/// A user; never the password hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UserView {
    pub id: i64,
    pub username: String,
    pub is_admin: bool,
    pub created_at: String,
    pub workspaces: Vec<Membership>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Membership {
    pub workspace_id: i64,
    /// `admin` or `member`.
    pub role: String,
}

/// `GET /api/auth/me`: the service is `{"role":"service"}`; a person is
/// their user and `role` `admin` or `user`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Me {
    #[serde(flatten)]
    pub user: Option<UserView>,
    pub role: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UserList {
    pub users: Vec<UserView>,
    pub total: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Workspace {
    pub id: i64,
    pub name: String,
    pub created_at: String,
    /// The repository its tasks run in (a git checkout on the launcher
    /// hosts), unless a task names its own; `None`: none.
    pub repo_path: Option<String>,
    pub base_ref: Option<String>,
    /// Where a task of this workspace may name its own repository: a
    /// task's `repo_path` must be the workspace's `repo_path` or lie under
    /// one of these absolute paths (by whole components). Sorted; empty:
    /// a task may name no repository but the workspace's.
    pub repo_roots: Vec<String>,
    /// Its monthly budget in USD (`null`: none): at 80 % an alert, at
    /// 100 % its dispatches are refused and its running agents stopped.
    #[serde(default)]
    pub budget_usd_month: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WorkspaceList {
    pub workspaces: Vec<Workspace>,
    pub total: i64,
}

/// `PUT /api/workspaces/:ws/members/:user`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MemberSet {
    pub workspace_id: i64,
    pub user_id: i64,
    pub role: String,
}

/// `DELETE /api/workspaces/:ws/members/:user`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MemberRemoved {
    pub workspace_id: i64,
    pub user_id: i64,
    pub removed: bool,
}

/// `POST /api/users`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NewUser {
    pub username: String,
    pub password: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub is_admin: Option<bool>,
}

/// `PATCH /api/users/:id`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UserChange {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub is_admin: Option<bool>,
}

/// `POST /api/workspaces`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NewWorkspace {
    pub name: String,
}

/// `PATCH /api/workspaces/:id`: the repository (`null` or `""` clears
/// it) and the roots its tasks' own repositories must lie under (the whole
/// list, replacing the old one; `[]` or `null` allows none). A workspace
/// admin's or global admin's call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WorkspaceChange {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub repo_path: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub base_ref: Option<Option<String>>,
    /// Absolute paths, each checked as `repo_path` is; at most 64.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub repo_roots: Option<Vec<String>>,
    /// USD a month, 0 to 1,000,000; `null`: no budget.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub budget_usd_month: Option<Option<f64>>,
}

/// `PUT /api/workspaces/:id/members/:user_id`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MemberRole {
    pub role: String,
}
