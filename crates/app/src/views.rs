//! Rows of `store/` as the protocol's types: the one place where a row
//! becomes what the API shows (timestamps as RFC 3339, the password hash
//! and the claim token left out).

use ops_base::time::rfc3339;
use ops_domain::repo;
use ops_protocol::accounts::{Membership, UserView, Workspace};
use ops_protocol::admin::AgentView;
use ops_protocol::events::{AlertView, Event};
use ops_protocol::health::WorkerView;
use ops_protocol::review::{ReviewComment, ReviewFile, ReviewHunk, ReviewLine};
use ops_protocol::runs::RunView;
use ops_protocol::tasks::{Comment, TaskChange, TaskView};

fn ts(ms: Option<i64>) -> Option<String> {
    ms.map(rfc3339)
}

pub fn task(t: &ops_store::tasks::Task) -> TaskView {
    let effective = repo::effective(
        (t.repo_path.as_deref(), t.base_ref.as_deref()),
        (
            t.workspace_repo_path.as_deref(),
            t.workspace_base_ref.as_deref(),
        ),
    );
    TaskView {
        id: t.id,
        workspace_id: t.workspace_id,
        title: t.title.clone(),
        description: t.description.clone(),
        status: t.status.as_str().to_string(),
        execution: t.execution.as_str().to_string(),
        agent_id: t.agent_id,
        agent: t.agent_slug.clone(),
        model: t.model.clone(),
        priority: t.priority,
        sensitive: t.sensitive,
        gate_approved_by: t.gate_approved_by.clone(),
        gate_approved_at: ts(t.gate_approved_at),
        blocked: t.blocked,
        blocked_reason: t.blocked_reason.clone(),
        dispatch_output: t.dispatch_output.clone(),
        dispatch_attempts: t.dispatch_attempts,
        claimed_by: t.claimed_by.clone(),
        claimed_at: ts(t.claimed_at),
        dispatch_started_at: ts(t.dispatch_started_at),
        dispatch_finished_at: ts(t.dispatch_finished_at),
        exit_code: t.exit_code,
        exit_signal: t.exit_signal.clone(),
        log_path: t.log_path.clone(),
        err_log_path: t.err_log_path.clone(),
        created_at: rfc3339(t.created_at),
        updated_at: rfc3339(t.updated_at),
        archived_at: ts(t.archived_at),
        repo_path: t.repo_path.clone(),
        base_ref: t.base_ref.clone(),
        effective_repo_path: effective.map(|(p, _)| p.to_string()),
        effective_base_ref: effective.and_then(|(_, r)| r.map(str::to_string)),
        expects_changes: t.expects_changes,
        not_before: ts(t.not_before),
        follow_up: t.follow_up.clone(),
    }
}

/// A run of task `t` (a run still marked running whose claim is no longer
/// the task's shows as `lost`).
pub fn run(r: &ops_store::runs::Run, t: &ops_store::tasks::Task) -> RunView {
    RunView {
        task_id: r.task_id,
        number: r.number,
        worker_id: r.worker_id.clone(),
        agent: r.agent_slug.clone(),
        model: r.model.clone(),
        started_at: rfc3339(r.started_at),
        ended_at: ts(r.ended_at),
        outcome: super::runs::outcome_of(r, t),
        exit_code: r.exit_code,
        signal: r.signal.clone(),
        session_id: r.session_id.clone(),
        follow_up: r.follow_up.clone(),
        resumed_session: r.resumed_session.clone(),
        tokens_in: r.tokens_in,
        tokens_out: r.tokens_out,
        cost_usd: r.cost_usd,
        cost_source: r.cost_source.clone(),
    }
}

pub fn tasks(list: &[ops_store::tasks::Task]) -> Vec<TaskView> {
    list.iter().map(task).collect()
}

pub fn change(c: &ops_store::changes::StoredChange) -> TaskChange {
    TaskChange {
        branch: c.change.branch.clone(),
        head: c.change.head.clone(),
        base: c.change.base.clone(),
        status: c.change.status.clone(),
        diff_stat: c.change.diff_stat.clone(),
        patch: c.change.patch.clone(),
        patch_truncated: c.change.truncated,
        reported_at: rfc3339(c.reported_at),
    }
}

pub fn comment(c: &ops_store::comments::Comment) -> Comment {
    Comment {
        id: c.id,
        task_id: c.task_id,
        author: c.author.clone(),
        kind: c.kind.clone(),
        body: c.body.clone(),
        created_at: rfc3339(c.created_at),
    }
}

/// File `index` of a parsed diff, without its hunks.
pub fn review_file(index: usize, f: &ops_domain::diff::FileDiff) -> ReviewFile {
    ReviewFile {
        index: index as i64,
        old_path: f.old_path.clone(),
        new_path: f.new_path.clone(),
        status: f.status.as_str().to_string(),
        similarity: f.similarity.map(i64::from),
        additions: i64::from(f.additions),
        deletions: i64::from(f.deletions),
        binary: f.binary,
        incomplete: f.incomplete,
    }
}

pub fn review_hunk(h: &ops_domain::diff::Hunk) -> ReviewHunk {
    ReviewHunk {
        header: h.header.clone(),
        old_start: i64::from(h.old_start),
        old_lines: i64::from(h.old_lines),
        new_start: i64::from(h.new_start),
        new_lines: i64::from(h.new_lines),
        lines: h
            .lines
            .iter()
            .map(|l| ReviewLine {
                kind: l.kind.as_str().to_string(),
                old: l.old.map(i64::from),
                new: l.new.map(i64::from),
                text: l.text.clone(),
                no_newline: l.no_newline,
            })
            .collect(),
    }
}

pub fn review_comment(c: &ops_store::review_comments::ReviewComment) -> ReviewComment {
    ReviewComment {
        id: c.id,
        run: c.run,
        file: c.file.clone(),
        line: c.line,
        end_line: c.end_line,
        side: c.side.clone(),
        body: c.body.clone(),
        hunk: c.hunk.clone(),
        author: c.author.clone(),
        created_at: rfc3339(c.created_at),
        sent_at: ts(c.sent_at),
        sent_in_run: c.sent_in_run,
    }
}

pub fn event(e: &ops_store::events::Event) -> Event {
    Event {
        id: e.id,
        at: rfc3339(e.at),
        workspace_id: e.workspace_id,
        task_id: e.task_id,
        kind: e.kind.clone(),
        actor: e.actor.clone(),
        // Written by `app::event` as JSON; kept as text if it is not.
        payload: serde_json::from_str(&e.payload)
            .unwrap_or_else(|_| serde_json::Value::String(e.payload.clone())),
        output: None,
    }
}

/// A committed event as the event stream sends it: a `dispatch.output`
/// event carries its chunk.
pub fn streamed(c: &ops_store::events::Committed) -> Event {
    Event {
        output: c.output.clone(),
        ..event(&c.event)
    }
}

pub fn alert(a: &ops_store::alerts::Alert) -> AlertView {
    AlertView {
        id: a.id,
        kind: a.kind.clone(),
        subject: a.subject.clone(),
        task_id: a.task_id,
        followup_task_id: a.followup_task_id,
        status: a.status.clone(),
        title: a.title.clone(),
        detail: a.detail.clone(),
        occurrences: a.occurrences,
        first_seen_at: rfc3339(a.first_seen_at),
        last_seen_at: rfc3339(a.last_seen_at),
        resolved_at: ts(a.resolved_at),
    }
}

pub fn agent(a: &ops_store::agents::Agent) -> AgentView {
    AgentView {
        id: a.id,
        slug: a.slug.clone(),
        name: a.name.clone(),
        active: a.active,
        launch_command: a.launch_command.clone(),
        model: a.model.clone(),
        created_at: rfc3339(a.created_at),
        updated_at: rfc3339(a.updated_at),
    }
}

pub fn user(u: &ops_store::users::User, memberships: &[(i64, String)]) -> UserView {
    UserView {
        id: u.id,
        username: u.username.clone(),
        is_admin: u.is_admin,
        created_at: rfc3339(u.created_at),
        workspaces: memberships
            .iter()
            .map(|(ws, role)| Membership {
                workspace_id: *ws,
                role: role.clone(),
            })
            .collect(),
    }
}

pub fn workspace(w: &ops_store::workspaces::Workspace) -> Workspace {
    Workspace {
        id: w.id,
        name: w.name.clone(),
        created_at: rfc3339(w.created_at),
        repo_path: w.repo_path.clone(),
        base_ref: w.base_ref.clone(),
        repo_roots: w.repo_roots.clone(),
        budget_usd_month: w.budget_usd_month,
    }
}

pub fn worker(h: &ops_store::heartbeats::Heartbeat, fresh: bool) -> WorkerView {
    WorkerView {
        worker_id: h.worker_id.clone(),
        host: h.host.clone(),
        pid: h.pid,
        version: h.version.clone(),
        agents: h.agents.clone(),
        usable_agents: h.usable_slugs(),
        models: h.models.clone(),
        slots_total: h.slots_total,
        slots_busy: h.slots_busy,
        running_task_ids: h.running_task_ids.clone(),
        draining: h.draining,
        workspace_id: h.workspace_id,
        last_seen_at: rfc3339(h.last_seen_at),
        fresh,
    }
}
