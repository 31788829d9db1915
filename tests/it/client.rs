//! The typed side of the test client: one method per protocol call the
//! tests make, taking and returning the `ops_center::protocol` types.
//!
//! Each call answers an [`Answer`]: `.ok()` asserts the route's success
//! status (201 for the creates, 200 else) and reads the body as its
//! protocol type; `.refused(status, code)` asserts a refusal and its error
//! code. An `Answer` is also the raw [`Res`] (status, headers, text, JSON)
//! for the tests whose point is the wire. Tests that send what the protocol
//! types cannot express (bad input, absent fields) use `Client::post` and
//! friends with a `serde_json::Value`.

use std::marker::PhantomData;
use std::ops::Deref;

use serde::de::DeserializeOwned;
use serde::Serialize;

use ops_center::protocol::accounts::{
    LoggedIn, Login, Me, MemberRole, MemberSet, NewUser, NewWorkspace, UserView, Workspace,
    WorkspaceChange, WorkspaceList,
};
use ops_center::protocol::admin::{
    AgentChange, AgentList, AgentView, Setting, SettingChange, SettingsView,
};
use ops_center::protocol::dispatch::{
    AgentCapability, CancelEnded, ClaimAnswer, ClaimProof, ClaimRequest, Failed, Finished,
    HeartbeatAnswer, HeartbeatReport, Output, ReconcileRequest, Reconciled, ReportBody, StaleTasks,
    Started, WorkerForgotten,
};
use ops_center::protocol::errors::ErrorBody;
use ops_center::protocol::events::{AlertList, AlertView, EventList};
use ops_center::protocol::health::{Health, WorkerView};
use ops_center::protocol::review::{
    NewReviewComment, Review, ReviewComment, ReviewFileDiff, ReviewSend,
};
use ops_center::protocol::runs::{FollowUpRequest, TaskRuns, Transcript, WorkspaceUsage};
use ops_center::protocol::tasks::{
    Comment, DispatchAnswer, NewComment, NewTask, StatusChange, TaskDetail, TaskEdit, TaskList,
    TaskView,
};
use ops_center::protocol::watchdog::WatchdogReport;
use ops_center::protocol::Deleted;

use crate::util::{Client, Res};

/// The answer to a typed call: the raw response, and what the route
/// answers when it succeeds.
pub struct Answer<T> {
    res: Res,
    call: String,
    success: u16,
    body: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Answer<T> {
    /// Asserts the route's success status and reads the body as `T`.
    #[track_caller]
    pub fn ok(&self) -> T {
        assert_eq!(
            self.res.status, self.success,
            "{}: {}",
            self.call, self.res.text
        );
        self.res.body()
    }

    /// Asserts a refusal with `status` and error `code`; the error body.
    #[track_caller]
    pub fn refused(&self, status: u16, code: &str) -> ErrorBody {
        assert_eq!(
            (self.res.status, self.res.error()),
            (status, code),
            "{}: {}",
            self.call,
            self.res.text
        );
        self.res.body()
    }

    /// Names the call in its failure messages (a loop's case, say).
    pub fn context(mut self, what: impl std::fmt::Display) -> Self {
        self.call = format!("{what}: {}", self.call);
        self
    }

    /// The raw response.
    pub fn res(self) -> Res {
        self.res
    }
}

impl<T> Deref for Answer<T> {
    type Target = Res;
    fn deref(&self) -> &Res {
        &self.res
    }
}

/// A body-less request's body: the tests send `{}`.
#[derive(Serialize)]
struct Empty {}

impl Client {
    /// `method path` with `body` serialized as JSON, the raw answer.
    pub fn send(&self, method: &str, path: &str, body: &impl Serialize) -> Res {
        self.raw(method, path, &bytes(body))
    }

    fn call<T>(&self, method: &str, path: &str, body: &[u8], success: u16) -> Answer<T> {
        Answer {
            res: self.raw(method, path, body),
            call: format!("{method} {path}"),
            success,
            body: PhantomData,
        }
    }

    fn get_as<T>(&self, path: &str) -> Answer<T> {
        self.call("GET", path, b"", 200)
    }

    fn post_as<T>(&self, path: &str, body: &impl Serialize) -> Answer<T> {
        self.call("POST", path, &bytes(body), 200)
    }

    fn create_as<T>(&self, path: &str, body: &impl Serialize) -> Answer<T> {
        self.call("POST", path, &bytes(body), 201)
    }

    fn patch_as<T>(&self, path: &str, body: &impl Serialize) -> Answer<T> {
        self.call("PATCH", path, &bytes(body), 200)
    }

    fn put_as<T>(&self, path: &str, body: &impl Serialize) -> Answer<T> {
        self.call("PUT", path, &bytes(body), 200)
    }

    fn delete_as<T>(&self, path: &str) -> Answer<T> {
        self.call("DELETE", path, b"", 200)
    }

    // Tasks.

    /// `POST /api/tasks`.
    pub fn create_task(&self, task: &NewTask) -> Answer<TaskView> {
        self.create_as("/api/tasks", task)
    }

    /// Creates a task (which must succeed); its id.
    #[track_caller]
    pub fn new_task(&self, task: &NewTask) -> i64 {
        self.create_task(task).ok().id
    }

    /// `GET /api/tasks/:id`.
    pub fn task(&self, id: i64) -> Answer<TaskDetail> {
        self.get_as(&format!("/api/tasks/{id}"))
    }

    /// `GET /api/tasks` with `query` (`""` or `?…`).
    pub fn tasks(&self, query: &str) -> Answer<TaskList> {
        self.get_as(&format!("/api/tasks{query}"))
    }

    /// `PATCH /api/tasks/:id`.
    pub fn edit_task(&self, id: i64, edit: &TaskEdit) -> Answer<TaskView> {
        self.patch_as(&format!("/api/tasks/{id}"), edit)
    }

    /// `PATCH /api/tasks/:id?force=true` (admins and the service).
    pub fn force_edit(&self, id: i64, edit: &TaskEdit) -> Answer<TaskView> {
        self.patch_as(&format!("/api/tasks/{id}?force=true"), edit)
    }

    /// `PATCH /api/tasks/:id/status`.
    pub fn move_task(&self, id: i64, status: &str) -> Answer<TaskView> {
        self.move_task_query(id, status, "")
    }

    /// `PATCH /api/tasks/:id/status?force=true`.
    pub fn force_task(&self, id: i64, status: &str) -> Answer<TaskView> {
        self.move_task_query(id, status, "?force=true")
    }

    fn move_task_query(&self, id: i64, status: &str, query: &str) -> Answer<TaskView> {
        let change = StatusChange {
            status: status.into(),
        };
        self.patch_as(&format!("/api/tasks/{id}/status{query}"), &change)
    }

    /// `POST /api/tasks/:id/comments`.
    pub fn comment(&self, id: i64, body: &str, kind: Option<&str>) -> Answer<Comment> {
        let comment = NewComment {
            body: body.into(),
            kind: kind.map(str::to_string),
        };
        self.create_as(&format!("/api/tasks/{id}/comments"), &comment)
    }

    /// `POST /api/tasks/:id/dispatch`.
    pub fn dispatch(&self, id: i64) -> Answer<DispatchAnswer> {
        self.post_as(&format!("/api/tasks/{id}/dispatch"), &Empty {})
    }

    /// `POST /api/tasks/:id/retry`.
    pub fn retry(&self, id: i64) -> Answer<DispatchAnswer> {
        self.post_as(&format!("/api/tasks/{id}/retry"), &Empty {})
    }

    /// `POST /api/tasks/:id/follow-up`.
    pub fn follow_up(&self, id: i64, message: &str) -> Answer<DispatchAnswer> {
        let body = FollowUpRequest {
            message: message.into(),
        };
        self.post_as(&format!("/api/tasks/{id}/follow-up"), &body)
    }

    /// `GET /api/tasks/:id/runs`.
    pub fn runs(&self, id: i64) -> Answer<TaskRuns> {
        self.get_as(&format!("/api/tasks/{id}/runs"))
    }

    /// `GET /api/tasks/:id/transcript?after=`.
    pub fn transcript(&self, id: i64, after: i64) -> Answer<Transcript> {
        self.get_as(&format!("/api/tasks/{id}/transcript?after={after}"))
    }

    /// `GET /api/workspaces/:id/usage` (`query`: `""` or `?month=…`).
    pub fn usage(&self, ws: i64, query: &str) -> Answer<WorkspaceUsage> {
        self.get_as(&format!("/api/workspaces/{ws}/usage{query}"))
    }

    /// `GET /api/tasks/:id/review` (`query`: `""` or `?run=N`).
    pub fn review(&self, id: i64, query: &str) -> Answer<Review> {
        self.get_as(&format!("/api/tasks/{id}/review{query}"))
    }

    /// `GET /api/tasks/:id/review/files/:index` (`query`: `""` or `?run=N`).
    pub fn review_file(&self, id: i64, index: i64, query: &str) -> Answer<ReviewFileDiff> {
        self.get_as(&format!("/api/tasks/{id}/review/files/{index}{query}"))
    }

    /// `POST /api/tasks/:id/review/comments`.
    pub fn review_comment(&self, id: i64, comment: &NewReviewComment) -> Answer<ReviewComment> {
        self.create_as(&format!("/api/tasks/{id}/review/comments"), comment)
    }

    /// `DELETE /api/tasks/:id/review/comments/:cid`.
    pub fn delete_review_comment(&self, id: i64, cid: i64) -> Answer<Deleted> {
        self.delete_as(&format!("/api/tasks/{id}/review/comments/{cid}"))
    }

    /// `POST /api/tasks/:id/review/send`.
    pub fn send_review(&self, id: i64, message: Option<&str>) -> Answer<DispatchAnswer> {
        let body = ReviewSend {
            message: message.map(str::to_string),
        };
        self.post_as(&format!("/api/tasks/{id}/review/send"), &body)
    }

    /// `POST /api/tasks/:id/cancel`.
    pub fn cancel(&self, id: i64) -> Answer<TaskView> {
        self.post_as(&format!("/api/tasks/{id}/cancel"), &Empty {})
    }

    /// `POST /api/tasks/:id/approve`.
    pub fn approve(&self, id: i64) -> Answer<TaskView> {
        self.post_as(&format!("/api/tasks/{id}/approve"), &Empty {})
    }

    /// `POST /api/tasks/:id/archive`.
    pub fn archive(&self, id: i64) -> Answer<TaskView> {
        self.post_as(&format!("/api/tasks/{id}/archive"), &Empty {})
    }

    /// `POST /api/tasks/:id/unarchive`.
    pub fn unarchive(&self, id: i64) -> Answer<TaskView> {
        self.post_as(&format!("/api/tasks/{id}/unarchive"), &Empty {})
    }

    /// `DELETE /api/tasks/:id`.
    pub fn delete_task(&self, id: i64) -> Answer<Deleted> {
        self.delete_as(&format!("/api/tasks/{id}"))
    }

    // Dispatch.

    /// `POST /api/dispatch/heartbeat`.
    pub fn heartbeat(&self, report: &HeartbeatReport) -> Answer<HeartbeatAnswer> {
        self.post_as("/api/dispatch/heartbeat", report)
    }

    /// `POST /api/dispatch/next`.
    pub fn claim(&self, request: &ClaimRequest) -> Answer<ClaimAnswer> {
        self.post_as("/api/dispatch/next", request)
    }

    /// `POST /api/dispatch/tasks/:id/<kind>` with the claim's proof.
    pub fn report<R: Report>(&self, task: i64, proof: ClaimProof, report: R) -> Answer<TaskView> {
        let body = ReportBody {
            claim: proof,
            report,
        };
        self.post_as(&format!("/api/dispatch/tasks/{task}/{}", R::KIND), &body)
    }

    /// `POST /api/dispatch/reconcile-stale`.
    pub fn reconcile(&self, request: &ReconcileRequest) -> Answer<Reconciled> {
        self.post_as("/api/dispatch/reconcile-stale", request)
    }

    /// `GET /api/dispatch/stale`.
    pub fn stale(&self) -> Answer<StaleTasks> {
        self.get_as("/api/dispatch/stale")
    }

    /// `GET /api/dispatch/health` with `query` (`""` or `?…`).
    pub fn health(&self, query: &str) -> Answer<Health> {
        self.get_as(&format!("/api/dispatch/health{query}"))
    }

    /// `DELETE /api/dispatch/workers/:id`.
    pub fn forget_worker(&self, id: &str) -> Answer<WorkerForgotten> {
        self.delete_as(&format!("/api/dispatch/workers/{id}"))
    }

    // Settings, agents, the watchdog, events and alerts.

    /// `GET /api/settings`.
    pub fn settings(&self) -> Answer<SettingsView> {
        self.get_as("/api/settings")
    }

    /// `GET /api/settings/:key`.
    pub fn setting(&self, key: &str) -> Answer<Setting> {
        self.get_as(&format!("/api/settings/{key}"))
    }

    /// `PUT /api/settings/:key`.
    pub fn set_setting(&self, key: &str, value: &str) -> Answer<Setting> {
        let change = SettingChange {
            value: value.into(),
        };
        self.put_as(&format!("/api/settings/{key}"), &change)
    }

    /// `GET /api/agents`.
    pub fn agents(&self) -> Answer<AgentList> {
        self.get_as("/api/agents")
    }

    /// `GET /api/agents/:id`.
    pub fn agent(&self, id: i64) -> Answer<AgentView> {
        self.get_as(&format!("/api/agents/{id}"))
    }

    /// `POST /api/agents`.
    pub fn create_agent(&self, agent: &AgentChange) -> Answer<AgentView> {
        self.create_as("/api/agents", agent)
    }

    /// `PATCH /api/agents/:id`.
    pub fn edit_agent(&self, id: i64, change: &AgentChange) -> Answer<AgentView> {
        self.patch_as(&format!("/api/agents/{id}"), change)
    }

    /// `POST /api/watchdog/run`.
    pub fn watchdog(&self) -> Answer<WatchdogReport> {
        self.post_as("/api/watchdog/run", &Empty {})
    }

    /// `GET /api/events` with `query` (`""` or `?…`).
    pub fn events(&self, query: &str) -> Answer<EventList> {
        self.get_as(&format!("/api/events{query}"))
    }

    /// `GET /api/alerts` with `query` (`""` or `?…`).
    pub fn alerts(&self, query: &str) -> Answer<AlertList> {
        self.get_as(&format!("/api/alerts{query}"))
    }

    /// `POST /api/alerts/:id/resolve`.
    pub fn resolve_alert(&self, id: i64) -> Answer<AlertView> {
        self.post_as(&format!("/api/alerts/{id}/resolve"), &Empty {})
    }

    // Accounts.

    /// `POST /api/auth/login`.
    pub fn log_in(&self, username: &str, password: &str) -> Answer<LoggedIn> {
        let login = Login {
            username: username.into(),
            password: password.into(),
        };
        self.post_as("/api/auth/login", &login)
    }

    /// `GET /api/auth/me`.
    pub fn me(&self) -> Answer<Me> {
        self.get_as("/api/auth/me")
    }

    /// `POST /api/users`.
    pub fn create_user(&self, user: &NewUser) -> Answer<UserView> {
        self.create_as("/api/users", user)
    }

    /// `GET /api/workspaces`: those the caller sees.
    pub fn workspaces(&self) -> Answer<WorkspaceList> {
        self.get_as("/api/workspaces")
    }

    /// `POST /api/workspaces`.
    pub fn create_workspace(&self, name: &str) -> Answer<Workspace> {
        let ws = NewWorkspace { name: name.into() };
        self.create_as("/api/workspaces", &ws)
    }

    /// `PATCH /api/workspaces/:id`.
    pub fn edit_workspace(&self, id: i64, change: &WorkspaceChange) -> Answer<Workspace> {
        self.patch_as(&format!("/api/workspaces/{id}"), change)
    }

    /// `PUT /api/workspaces/:ws/members/:user`.
    pub fn set_member(&self, ws: i64, user: i64, role: &str) -> Answer<MemberSet> {
        let role = MemberRole { role: role.into() };
        self.put_as(&format!("/api/workspaces/{ws}/members/{user}"), &role)
    }
}

fn bytes(body: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(body).expect("protocol types serialize")
}

/// A worker's report about a task it holds: its fields, and the last
/// segment of its path.
pub trait Report: Serialize {
    const KIND: &'static str;
}

impl Report for Started {
    const KIND: &'static str = "started";
}
impl Report for Output {
    const KIND: &'static str = "output";
}
impl Report for Finished {
    const KIND: &'static str = "finished";
}
impl Report for Failed {
    const KIND: &'static str = "failed";
}
impl Report for CancelEnded {
    const KIND: &'static str = "cancelled";
}

/// `started`, with the agent's pid when given.
pub fn started(pid: Option<i64>) -> Started {
    Started {
        pid,
        log_path: None,
        err_log_path: None,
    }
}

/// `output`: one chunk, without an offset (as an older launcher sends it).
pub fn output(chunk: &str) -> Output {
    Output {
        chunk: chunk.into(),
        offset: None,
        events: Vec::new(),
    }
}

/// `finished` with no signal and no change.
pub fn finished(exit_code: Option<i64>, output: &str) -> Finished {
    Finished {
        exit_code,
        signal: None,
        output: output.into(),
        change: None,
    }
}

/// `failed` with no exit code, signal or change.
pub fn failed(signature: &str, reason: &str, evidence: &str) -> Failed {
    Failed {
        signature: signature.into(),
        reason: reason.into(),
        evidence: evidence.into(),
        exit_code: None,
        signal: None,
        rate_limited: None,
        change: None,
    }
}

/// `cancelled`: how the agent of a cancelled run ended.
pub fn cancel_ended(exit_code: Option<i64>, signal: Option<&str>, elapsed_ms: i64) -> CancelEnded {
    CancelEnded {
        exit_code,
        signal: signal.map(str::to_string),
        elapsed_ms,
    }
}

/// An agent a worker reports usable (installed and logged in).
pub fn usable(slug: &str) -> AgentCapability {
    AgentCapability {
        slug: slug.into(),
        cli: slug.into(),
        available: true,
        authenticated: true,
        reason: None,
    }
}

/// An agent a worker has installed but not logged in, and why.
pub fn logged_out(slug: &str, cli: &str, reason: &str) -> AgentCapability {
    AgentCapability {
        slug: slug.into(),
        cli: cli.into(),
        available: true,
        authenticated: false,
        reason: Some(reason.into()),
    }
}

/// A task with `title` and every other field left to its default.
pub fn task(title: &str) -> NewTask {
    NewTask {
        title: title.into(),
        ..NewTask::default()
    }
}

/// A new task built field by field: `task("t").agent("codex").priority(5)`.
pub trait TaskSpec {
    fn description(self, text: &str) -> Self;
    /// `execution: interactive`, dispatchable to `agent`.
    fn interactive(self, agent: &str) -> Self;
    fn agent(self, slug: &str) -> Self;
    fn model(self, model: &str) -> Self;
    fn priority(self, priority: i64) -> Self;
    fn sensitive(self) -> Self;
    fn workspace(self, id: i64) -> Self;
    fn repo(self, path: &str) -> Self;
    fn base_ref(self, base: &str) -> Self;
    fn expects_changes(self, expects: bool) -> Self;
}

impl TaskSpec for NewTask {
    fn description(self, text: &str) -> Self {
        NewTask {
            description: Some(text.into()),
            ..self
        }
    }
    fn interactive(self, agent: &str) -> Self {
        NewTask {
            execution: Some("interactive".into()),
            ..self.agent(agent)
        }
    }
    fn agent(self, slug: &str) -> Self {
        NewTask {
            agent: Some(slug.into()),
            ..self
        }
    }
    fn model(self, model: &str) -> Self {
        NewTask {
            model: Some(model.into()),
            ..self
        }
    }
    fn priority(self, priority: i64) -> Self {
        NewTask {
            priority: Some(priority),
            ..self
        }
    }
    fn sensitive(self) -> Self {
        NewTask {
            sensitive: Some(true),
            ..self
        }
    }
    fn workspace(self, id: i64) -> Self {
        NewTask {
            workspace_id: Some(id),
            ..self
        }
    }
    fn repo(self, path: &str) -> Self {
        NewTask {
            repo_path: Some(path.into()),
            ..self
        }
    }
    fn base_ref(self, base: &str) -> Self {
        NewTask {
            base_ref: Some(base.into()),
            ..self
        }
    }
    fn expects_changes(self, expects: bool) -> Self {
        NewTask {
            expects_changes: Some(expects),
            ..self
        }
    }
}

/// The edit that lifts a task's block.
pub fn unblocked() -> TaskEdit {
    TaskEdit {
        blocked: Some(false),
        ..TaskEdit::default()
    }
}

/// The edit that blocks a task for `reason`.
pub fn blocked_with(reason: &str) -> TaskEdit {
    TaskEdit {
        blocked: Some(true),
        blocked_reason: Some(Some(reason.into())),
        ..TaskEdit::default()
    }
}

/// The views of health's worker list, in its order.
pub fn workers(health: &Health) -> Vec<WorkerView> {
    health
        .workers
        .iter()
        .map(|w| w.view().expect("a worker view"))
        .collect()
}
