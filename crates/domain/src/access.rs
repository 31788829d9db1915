//! Who may do what. Every route asks one of these questions of the caller;
//! the answers are the table of docs/SPEC.md §4.6 and nowhere else.

use ops_base::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Human {
    pub id: i64,
    pub username: String,
    pub is_admin: bool,
    pub memberships: Vec<(i64, Role)>,
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub enum Principal {
    /// The holder of the service token: launchers, smokes, curl.
    Service,
    Human(Human),
}

impl Principal {
    /// How the caller is named in events and comments.
    pub fn actor(&self) -> String {
        match self {
            Principal::Service => "service".into(),
            Principal::Human(h) => format!("user:{}", h.username),
        }
    }

    pub fn is_global_admin(&self) -> bool {
        matches!(self, Principal::Human(h) if h.is_admin)
    }

    /// Global admin or service: sees and may administer everything,
    /// workers and what belongs to no workspace included.
    pub fn is_operator(&self) -> bool {
        matches!(self, Principal::Service) || self.is_global_admin()
    }

    fn role_in(&self, workspace_id: i64) -> Option<Role> {
        match self {
            Principal::Service => None,
            Principal::Human(h) => h
                .memberships
                .iter()
                .find(|(ws, _)| *ws == workspace_id)
                .map(|(_, r)| *r),
        }
    }

    fn is_workspace_admin_anywhere(&self) -> bool {
        matches!(self, Principal::Human(h) if h.memberships.iter().any(|(_, r)| *r == Role::Admin))
    }

    /// `None`: every workspace; otherwise the ones the caller belongs to.
    pub fn visible_workspaces(&self) -> Option<Vec<i64>> {
        match self {
            _ if self.is_operator() => None,
            Principal::Human(h) => Some(h.memberships.iter().map(|(ws, _)| *ws).collect()),
            Principal::Service => None,
        }
    }

    /// Reading a workspace's tasks, comments, events.
    pub fn can_read(&self, workspace_id: i64) -> Result<()> {
        if self.is_operator() || self.role_in(workspace_id).is_some() {
            return Ok(());
        }
        Err(Error::forbidden(format!(
            "you are not a member of workspace {workspace_id}"
        )))
    }

    /// Resolving an alert: operators, or an admin of the workspace of the
    /// task it is about.
    pub fn can_resolve_alert(&self, task_workspace: Option<i64>) -> Result<()> {
        match task_workspace {
            Some(ws) if !self.is_operator() && self.role_in(ws) == Some(Role::Admin) => Ok(()),
            _ => self.require_operator("resolving an alert outside the workspaces you administer"),
        }
    }

    /// Creating, editing, commenting and dispatching tasks.
    pub fn can_edit_tasks(&self, workspace_id: i64) -> Result<()> {
        self.can_read(workspace_id)
    }

    /// `?force=true`, settings other than `dispatch_enabled`, manual
    /// reconcile, agents, users.
    pub fn require_operator(&self, what: &str) -> Result<()> {
        if self.is_operator() {
            return Ok(());
        }
        Err(Error::forbidden(format!(
            "{what} needs a global admin or the service token"
        )))
    }

    /// Worker endpoints (heartbeat, claim, reports): the service token.
    pub fn require_service(&self, what: &str) -> Result<()> {
        match self {
            Principal::Service => Ok(()),
            Principal::Human(_) => Err(Error::forbidden(format!("{what} need the service token"))),
        }
    }

    pub fn require_global_admin(&self, what: &str) -> Result<()> {
        if self.is_global_admin() {
            return Ok(());
        }
        Err(Error::forbidden(format!("{what} needs a global admin")))
    }

    /// Toggling dispatch, refreshing health, inspecting stale tasks,
    /// running the watchdog, resolving alerts: operators and the admins of
    /// any workspace.
    pub fn require_ops_admin(&self, what: &str) -> Result<()> {
        if self.is_operator() || self.is_workspace_admin_anywhere() {
            return Ok(());
        }
        Err(Error::forbidden(format!(
            "{what} needs an admin (global or of a workspace) or the service token"
        )))
    }

    /// Managing a workspace's members: global admin or that workspace's
    /// admin.
    pub fn require_workspace_admin(&self, workspace_id: i64) -> Result<()> {
        if self.is_global_admin() || self.role_in(workspace_id) == Some(Role::Admin) {
            return Ok(());
        }
        Err(Error::forbidden(format!(
            "this needs a global admin or an admin of workspace {workspace_id}"
        )))
    }

    /// Removing something a person wrote in a workspace (a review
    /// comment): its author, an admin of that workspace, or an operator.
    pub fn can_remove_writing_of(&self, workspace_id: i64, author: &str) -> Result<()> {
        self.can_edit_tasks(workspace_id)?;
        if self.actor() == author
            || self.is_operator()
            || self.role_in(workspace_id) == Some(Role::Admin)
        {
            return Ok(());
        }
        Err(Error::forbidden(format!(
            "only its author ({author}) or an admin of workspace {workspace_id} may remove it"
        )))
    }

    /// Human Gate approval, and clearing a task's `sensitive`: a human
    /// admin (global, or of the task's workspace); never the service token,
    /// so that an automation cannot release sensitive work by itself.
    pub fn require_gate_approver(&self, workspace_id: i64, what: &str) -> Result<()> {
        match self {
            Principal::Service => Err(Error::forbidden(format!(
                "{what} is for a human admin, never the service token"
            ))),
            Principal::Human(_) => self.require_workspace_admin(workspace_id).map_err(|_| {
                Error::forbidden(format!(
                    "{what} needs a global admin or an admin of workspace {workspace_id}"
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn human(is_admin: bool, m: &[(i64, Role)]) -> Principal {
        Principal::Human(Human {
            id: 1,
            username: "u".into(),
            is_admin,
            memberships: m.to_vec(),
        })
    }

    #[test]
    fn matrix() {
        let service = Principal::Service;
        let admin = human(true, &[]);
        let ws_admin = human(false, &[(1, Role::Admin)]);
        let member = human(false, &[(1, Role::Member)]);
        let outsider = human(false, &[(2, Role::Member)]);

        for p in [&service, &admin, &ws_admin, &member] {
            assert!(p.can_read(1).is_ok());
            assert!(p.can_edit_tasks(1).is_ok());
        }
        assert!(outsider.can_read(1).is_err());

        // Removing a review comment: its author ("user:u"), an admin.
        for p in [&service, &admin, &ws_admin, &member] {
            assert!(p.can_remove_writing_of(1, "user:u").is_ok());
        }
        assert!(member.can_remove_writing_of(1, "user:other").is_err());
        assert!(ws_admin.can_remove_writing_of(1, "user:other").is_ok());
        assert!(outsider.can_remove_writing_of(1, "user:u").is_err());

        assert!(service.require_operator("x").is_ok());
        assert!(admin.require_operator("x").is_ok());
        assert!(ws_admin.require_operator("x").is_err());
        assert!(member.require_operator("x").is_err());

        assert!(ws_admin.require_ops_admin("x").is_ok());
        assert!(member.require_ops_admin("x").is_err());

        assert!(service.require_gate_approver(1, "x").is_err());
        assert!(admin.require_gate_approver(1, "x").is_ok());
        assert!(ws_admin.require_gate_approver(1, "x").is_ok());
        assert!(ws_admin.require_gate_approver(2, "x").is_err());
        assert!(member.require_gate_approver(1, "x").is_err());

        assert!(ws_admin.can_resolve_alert(Some(1)).is_ok());
        assert!(ws_admin.can_resolve_alert(Some(2)).is_err());
        assert!(ws_admin.can_resolve_alert(None).is_err());
        assert!(member.can_resolve_alert(Some(1)).is_err());
        assert!(service.can_resolve_alert(None).is_ok());
        assert!(admin.can_resolve_alert(Some(2)).is_ok());

        assert_eq!(member.visible_workspaces(), Some(vec![1]));
        assert_eq!(service.visible_workspaces(), None);
    }
}
