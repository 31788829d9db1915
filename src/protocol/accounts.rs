//! Logins, users and workspaces.

use serde::{Deserialize, Serialize};

/// `POST /api/auth/login`: `{"username","password"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Login {
    pub username: String,
    pub password: String,
}

/// What a successful login answers (the session is in the cookie).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoggedIn {
    pub id: i64,
    pub username: String,
    pub is_admin: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoggedOut {
    pub logged_out: bool,
}

/// A user; never the password hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserView {
    pub id: i64,
    pub username: String,
    pub is_admin: bool,
    pub created_at: String,
    pub workspaces: Vec<Membership>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Membership {
    pub workspace_id: i64,
    /// `admin` or `member`.
    pub role: String,
}

/// `GET /api/auth/me`: the service is `{"role":"service"}`; a person is
/// their user and `role` `admin` or `user`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Me {
    #[serde(flatten)]
    pub user: Option<UserView>,
    pub role: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserList {
    pub users: Vec<UserView>,
    pub total: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Workspace {
    pub id: i64,
    pub name: String,
    pub created_at: String,
    /// The repository its tasks run in (a git checkout on the launcher
    /// hosts), unless a task names its own; `None`: none.
    pub repo_path: Option<String>,
    pub base_ref: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceList {
    pub workspaces: Vec<Workspace>,
    pub total: i64,
}

/// `PUT /api/workspaces/:ws/members/:user`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberSet {
    pub workspace_id: i64,
    pub user_id: i64,
    pub role: String,
}

/// `DELETE /api/workspaces/:ws/members/:user`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberRemoved {
    pub workspace_id: i64,
    pub user_id: i64,
    pub removed: bool,
}
