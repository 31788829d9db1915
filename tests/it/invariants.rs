//! Random sequences of operations against a real server keep the
//! dispatcher's invariants: one holder per claim, `done` only with evidence
//! or force, the Human Gate respected, every transition recorded.

use proptest::prelude::*;
use serde_json::{json, Value};

use ops_center::protocol::dispatch::ReconcileRequest;
use ops_center::protocol::tasks::{NewTask, TaskEdit};

use crate::client::{failed, finished, output, started, task, unblocked, TaskSpec};
use crate::util::{enable_dispatch, Client, Server, Worker};

#[derive(Clone, Debug)]
enum Op {
    Create {
        ai: bool,
        sensitive: bool,
        hermes: bool,
    },
    Dispatch(usize),
    Approve(usize),
    EditPrompt(usize),
    Unblock(usize),
    SetStatus(usize, &'static str, bool),
    Claim(usize),
    Started(usize),
    Output(usize),
    Finished(usize, bool),
    Failed(usize),
    Reconcile,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(ai, sensitive, hermes)| Op::Create { ai, sensitive, hermes }),
        3 => any::<usize>().prop_map(Op::Dispatch),
        1 => any::<usize>().prop_map(Op::Approve),
        1 => any::<usize>().prop_map(Op::EditPrompt),
        1 => any::<usize>().prop_map(Op::Unblock),
        2 => (any::<usize>(), prop::sample::select(vec!["next", "doing", "review", "done", "waiting"]), any::<bool>())
            .prop_map(|(t, s, f)| Op::SetStatus(t, s, f)),
        3 => (0usize..3).prop_map(Op::Claim),
        2 => any::<usize>().prop_map(Op::Started),
        2 => any::<usize>().prop_map(Op::Output),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(c, o)| Op::Finished(c, o)),
        1 => any::<usize>().prop_map(Op::Failed),
        1 => Just(Op::Reconcile),
    ]
}

struct Run {
    srv: Server,
    svc: Client,
    admin: Client,
    workers: Vec<Worker>,
    tasks: Vec<i64>,
    /// Every claim ever handed out: (task, worker index, token).
    claims: Vec<(i64, usize, String)>,
}

impl Run {
    fn pick(&self, i: usize) -> Option<i64> {
        (!self.tasks.is_empty()).then(|| self.tasks[i % self.tasks.len()])
    }

    fn current_claim(&self, task: i64) -> (Option<String>, Option<String>) {
        self.srv
            .sql()
            .query_row(
                "SELECT claimed_by, claim_token FROM tasks WHERE id = ?1",
                [task],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Create {
                ai,
                sensitive,
                hermes,
            } => {
                let agent = if hermes { "hermes" } else { "codex" };
                let plain = NewTask {
                    sensitive: Some(sensitive),
                    ..task("p")
                };
                let new = if ai {
                    plain.description("prompt").interactive(agent)
                } else {
                    plain
                };
                self.tasks.push(self.svc.new_task(&new));
            }
            Op::Dispatch(i) => {
                if let Some(t) = self.pick(i) {
                    let r = self.svc.dispatch(t);
                    assert!(r.status == 200 || r.status == 409, "{}", r.text);
                }
            }
            Op::Approve(i) => {
                if let Some(t) = self.pick(i) {
                    let r = self.admin.approve(t);
                    assert!(r.status == 200 || r.status == 409, "{}", r.text);
                }
            }
            Op::EditPrompt(i) => {
                if let Some(t) = self.pick(i) {
                    let prompt = TaskEdit {
                        description: Some(format!("prompt {}", self.claims.len())),
                        ..TaskEdit::default()
                    };
                    self.svc.edit_task(t, &prompt).ok();
                }
            }
            Op::Unblock(i) => {
                if let Some(t) = self.pick(i) {
                    self.svc.edit_task(t, &unblocked());
                }
            }
            Op::SetStatus(i, status, force) => {
                if let Some(t) = self.pick(i) {
                    let r = if force {
                        self.svc.force_task(t, status)
                    } else {
                        self.svc.move_task(t, status)
                    };
                    assert!(r.status == 200 || r.status == 409, "{}", r.text);
                }
            }
            Op::Claim(w) => {
                let r = self.workers[w].claim();
                if let Some(task) = r.task {
                    assert!(
                        !task.sensitive || task.gate_approved_at.is_some(),
                        "an unapproved sensitive task was handed out: {task:?}"
                    );
                    self.claims
                        .push((task.id, w, r.claim_token.expect("a claim token")));
                }
            }
            Op::Started(c) | Op::Output(c) | Op::Finished(c, _) | Op::Failed(c) => {
                if self.claims.is_empty() {
                    return;
                }
                let (task, w, token) = self.claims[c % self.claims.len()].clone();
                let (holder, current) = self.current_claim(task);
                let worker = &self.workers[w];
                let (kind, r) = match *op {
                    Op::Started(_) => ("started", worker.report(task, &token, started(Some(1)))),
                    Op::Output(_) => ("output", worker.report(task, &token, output("work"))),
                    Op::Finished(_, with_output) => {
                        let out = if with_output { "done" } else { "" };
                        (
                            "finished",
                            worker.report(task, &token, finished(Some(0), out)),
                        )
                    }
                    _ => {
                        let failure = failed("command not found", "r", "e");
                        ("failed", worker.report(task, &token, failure))
                    }
                };
                let holds = holder.as_deref() == Some(self.workers[w].id.as_str())
                    && current.as_deref() == Some(token.as_str());
                if r.status == 200 {
                    assert!(
                        holds,
                        "a {kind} report was accepted from a worker not holding the claim"
                    );
                } else {
                    assert_eq!(r.status, 409, "{}", r.text);
                    if !holds {
                        assert_eq!(r.error(), "stale_claim");
                    }
                }
            }
            Op::Reconcile => {
                let all = ReconcileRequest {
                    minutes: Some(0),
                    task_ids: None,
                };
                self.svc.reconcile(&all).ok();
            }
        }
    }

    fn check_invariants(&self) {
        let conn = self.srv.sql();
        // One holder per claim: a dispatching task has its worker and token,
        // a claim is never half cleared, and no two tasks share a token. (A
        // task moved to doing by hand is a person's, with no claim.)
        let held: Vec<(i64, Option<String>, Option<String>)> = conn
            .prepare(
                "SELECT id, claimed_by, claim_token FROM tasks
                 WHERE status = 'dispatching' OR claimed_by IS NOT NULL OR claim_token IS NOT NULL",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for (id, by, token) in &held {
            assert!(
                by.is_some() && token.is_some(),
                "task {id} is claimed without a holder"
            );
        }
        let dup: i64 = conn
            .query_row("SELECT COUNT(*) - COUNT(DISTINCT claim_token) FROM tasks WHERE claim_token IS NOT NULL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(dup, 0, "two tasks share a claim token");

        // The counts kept by triggers match the tasks.
        let drift: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM (
                   SELECT workspace_id, agent_id, status, blocked, archived, SUM(n) AS n FROM (
                     SELECT workspace_id, agent_id, status, blocked, archived, n FROM task_counts
                     UNION ALL
                     SELECT workspace_id, COALESCE(agent_id, 0), status, blocked != 0,
                            archived_at IS NOT NULL, -1 FROM tasks)
                   GROUP BY 1, 2, 3, 4, 5 HAVING SUM(n) != 0)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(drift, 0, "task_counts differs from the tasks");

        // done only with evidence or force.
        let unguarded: Vec<i64> = conn
            .prepare(
                "SELECT id FROM tasks t WHERE status = 'done' AND (execution = 'interactive' OR agent_id IS NOT NULL)
                   AND COALESCE(TRIM(dispatch_output), '') = ''
                   AND NOT EXISTS (SELECT 1 FROM task_comments c WHERE c.task_id = t.id AND c.author = 'ai-dispatch' AND c.kind = 'log')
                   AND NOT EXISTS (SELECT 1 FROM events e WHERE e.task_id = t.id AND e.kind = 'task.done_forced')",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(
            unguarded.is_empty(),
            "done without evidence or force: {unguarded:?}"
        );

        // A task is never done and blocked at once.
        let done_blocked: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM tasks WHERE status = 'done' AND blocked != 0",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(done_blocked, 0, "a task is done and blocked");

        // Every transition has its event: a task's latest recorded `to` is
        // its status.
        for &t in &self.tasks {
            let status: String = conn
                .query_row("SELECT status FROM tasks WHERE id = ?1", [t], |r| r.get(0))
                .unwrap();
            let last: Option<String> = conn
                .query_row(
                    "SELECT json_extract(payload, '$.to') FROM events
                     WHERE task_id = ?1 AND json_extract(payload, '$.to') IS NOT NULL ORDER BY id DESC LIMIT 1",
                    [t],
                    |r| r.get(0),
                )
                .ok();
            assert_eq!(
                last.unwrap_or_else(|| "next".into()),
                status,
                "task {t}: status without its event"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_the_invariants(ops in prop::collection::vec(op(), 1..60)) {
        let srv = Server::start();
        enable_dispatch(&srv);
        let workers: Vec<Worker> = (0..3).map(|i| Worker::new(&srv, &format!("w{i}"))).collect();
        workers[0].heartbeat(&["codex", "hermes"], &[]);
        workers[1].heartbeat(&["codex"], &[]);
        workers[2].heartbeat(&["hermes"], &[]);
        let mut run = Run { svc: srv.service(), admin: srv.admin(), srv, workers, tasks: Vec::new(), claims: Vec::new() };
        for op in &ops {
            run.apply(op);
            run.check_invariants();
        }
    }
}

/// What the service token alone may try against sensitive tasks.
#[derive(Clone, Debug)]
enum GateOp {
    /// A sensitive task for codex or hermes; `approved`: a human approved
    /// it right after creation (the only human act in a run).
    Create {
        hermes: bool,
        approved: bool,
    },
    /// A PATCH of the task with any of these fields.
    Patch(usize, Vec<(&'static str, Value)>),
    SetStatus(usize, &'static str),
    Dispatch(usize),
    Approve(usize),
    /// An edit of codex (false) or hermes (true) by the service.
    EditAgent(bool, &'static str, Value),
    Claim,
    Reconcile,
}

fn gate_op() -> impl Strategy<Value = GateOp> {
    let field = prop_oneof![
        Just(("sensitive", json!(false))),
        Just(("blocked", json!(false))),
        Just(("blocked_reason", Value::Null)),
        Just(("description", json!("do something else"))),
        Just(("title", json!("renamed"))),
        Just(("agent", json!("hermes"))),
        Just(("agent", json!("codex"))),
        Just(("model", json!("gpt-5"))),
        Just(("priority", json!(9))),
        Just(("execution", json!("interactive"))),
    ];
    prop_oneof![
        2 => (any::<bool>(), any::<bool>()).prop_map(|(hermes, approved)| GateOp::Create { hermes, approved }),
        4 => (any::<usize>(), prop::collection::vec(field, 1..4)).prop_map(|(t, f)| GateOp::Patch(t, f)),
        2 => (any::<usize>(), prop::sample::select(vec!["next", "waiting", "review", "doing"]))
            .prop_map(|(t, s)| GateOp::SetStatus(t, s)),
        4 => any::<usize>().prop_map(GateOp::Dispatch),
        1 => any::<usize>().prop_map(GateOp::Approve),
        2 => (any::<bool>(), prop::sample::select(vec![
                ("launch_command", json!("sh -c 'other'")),
                ("model", json!("m2")),
                ("name", json!("Renamed")),
                ("active", json!(true)),
            ])).prop_map(|(h, (k, v))| GateOp::EditAgent(h, k, v)),
        4 => Just(GateOp::Claim),
        1 => Just(GateOp::Reconcile),
    ]
}

/// A task's fields that decide what runs.
fn run_fields(t: &Value) -> Value {
    json!([
        t["title"],
        t["description"],
        t["agent"],
        t["model"],
        t["sensitive"]
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, max_shrink_iters: 200, ..ProptestConfig::default() })]

    /// No sequence of service-token calls gets a sensitive task claimed
    /// unless a human approved exactly what runs: the task's prompt, agent
    /// and model, and the agent's command and model, unchanged since.
    #[test]
    fn the_service_token_alone_never_releases_sensitive_work(ops in prop::collection::vec(gate_op(), 1..40)) {
        let srv = Server::start();
        enable_dispatch(&srv);
        let svc = srv.service();
        let admin = srv.admin();
        let w = Worker::new(&srv, "w");
        w.heartbeat(&["codex", "hermes"], &[]);
        // task id -> (agent slug, approved and unchanged since)
        let mut tasks: Vec<(i64, String, bool)> = Vec::new();
        let agent_id = |hermes: bool| if hermes { 4 } else { 3 };
        for op in &ops {
            match op {
                GateOp::Create { hermes, approved } => {
                    let slug = if *hermes { "hermes" } else { "codex" };
                    let id = svc.new_task(&task("s").interactive(slug).description("p").sensitive());
                    if *approved {
                        let r = admin.approve(id);
                        prop_assert_eq!(r.status, 200, "{}", r.text);
                    }
                    tasks.push((id, slug.to_string(), *approved));
                }
                GateOp::Patch(i, fields) if !tasks.is_empty() => {
                    let k = i % tasks.len();
                    let id = tasks[k].0;
                    let before = svc.get(&format!("/api/tasks/{id}")).json;
                    let body: serde_json::Map<String, Value> =
                        fields.iter().map(|(f, v)| (f.to_string(), v.clone())).collect();
                    let r = svc.patch(&format!("/api/tasks/{id}"), &Value::Object(body));
                    prop_assert!([200, 403, 409].contains(&r.status), "{}", r.text);
                    if r.status == 200 {
                        if run_fields(&before) != run_fields(&r.json) {
                            tasks[k].2 = false;
                        }
                        tasks[k].1 = r.json["agent"].as_str().unwrap().to_string();
                    }
                    if fields.iter().any(|(f, v)| *f == "sensitive" && *v == json!(false)) {
                        prop_assert_eq!(r.status, 403, "the service cleared sensitive: {}", r.text);
                    }
                }
                GateOp::SetStatus(i, s) if !tasks.is_empty() => {
                    let id = tasks[i % tasks.len()].0;
                    let r = svc.move_task(id, s);
                    prop_assert!(r.status == 200 || r.status == 409, "{}", r.text);
                }
                GateOp::Dispatch(i) if !tasks.is_empty() => {
                    let id = tasks[i % tasks.len()].0;
                    let r = svc.dispatch(id);
                    prop_assert!(r.status == 200 || r.status == 409, "{}", r.text);
                }
                GateOp::Approve(i) if !tasks.is_empty() => {
                    let id = tasks[i % tasks.len()].0;
                    let r = svc.approve(id);
                    prop_assert_eq!(r.status, 403, "{}", r.text);
                }
                GateOp::EditAgent(hermes, key, value) => {
                    let a = agent_id(*hermes);
                    let before = svc.get(&format!("/api/agents/{a}")).json;
                    let r = svc.patch(&format!("/api/agents/{a}"), &json!({ *key: value }));
                    prop_assert_eq!(r.status, 200, "{}", r.text);
                    let slug = r.json["slug"].as_str().unwrap().to_string();
                    let altered = ["launch_command", "model"].iter().any(|k| before[*k] != r.json[*k]);
                    if altered {
                        for t in tasks.iter_mut().filter(|t| t.1 == slug) {
                            t.2 = false;
                        }
                    }
                }
                GateOp::Claim => {
                    if let Some(claimed) = w.claim().task {
                        let id = claimed.id;
                        let t = tasks.iter().find(|t| t.0 == id).unwrap();
                        prop_assert!(claimed.sensitive);
                        prop_assert!(t.2, "task {} was claimed without a standing human approval: {:?}", id, claimed);
                    }
                }
                GateOp::Reconcile => {
                    let all = ReconcileRequest { minutes: Some(0), task_ids: None };
                    let r = svc.reconcile(&all);
                    prop_assert_eq!(r.status, 200, "{}", r.text);
                }
                _ => {}
            }
        }
        let cleared: i64 = srv.sql()
            .query_row("SELECT COUNT(*) FROM tasks WHERE sensitive = 0", [], |r| r.get(0))
            .unwrap();
        prop_assert_eq!(cleared, 0, "a task lost its sensitive flag");
    }
}
