//! `ops-center smoke dispatch` and `ops-center smoke watchdog`: API-level
//! checks against a live server (`OPS_API_BASE`, `OPS_SERVICE_TOKEN`) with
//! no AI runtime. The smoke is its own worker: it heartbeats and claims
//! like a launcher, for a temporary agent only it serves, so that no real
//! task can be claimed by it. Everything it creates is registered for
//! cleanup the moment it exists and removed at the end, also after a
//! failed step: tasks, the agent, alerts, its heartbeat, and the previous
//! `dispatch_enabled`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;

use ops_launcher::api::{Api, ApiError};
use ops_protocol::admin::{AgentChange, AgentView, Setting, SettingChange, SettingValue};
use ops_protocol::dispatch::{
    AgentCapability, ClaimAnswer, ClaimProof, ClaimRequest, Failed, Finished, HeartbeatAnswer,
    HeartbeatReport, Output, ReconcileRequest, Reconciled, Report, ReportBody, Started,
};
use ops_protocol::events::{AlertList, AlertView};
use ops_protocol::health::Health;
use ops_protocol::tasks::{NewTask, TaskDetail, TaskView};
use ops_protocol::watchdog::WatchdogReport;

pub fn main(args: &[String]) -> ExitCode {
    let which = match args {
        [w] if w == "dispatch" || w == "watchdog" => w.as_str(),
        _ => {
            eprintln!("usage: ops-center smoke dispatch | ops-center smoke watchdog");
            return ExitCode::from(2);
        }
    };
    let env = |k: &str| {
        std::env::var(k)
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let (Some(base), Some(token)) = (env("OPS_API_BASE"), env("OPS_SERVICE_TOKEN")) else {
        eprintln!("[smoke] FAIL OPS_API_BASE and OPS_SERVICE_TOKEN must be set (e.g. OPS_API_BASE=http://127.0.0.1:3847/api)");
        return ExitCode::FAILURE;
    };
    let workspace_id = match env("OPS_WORKSPACE_ID").map(|s| s.parse::<i64>()) {
        None => 1,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("[smoke] FAIL OPS_WORKSPACE_ID must be a positive workspace id");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let mut s = Smoke::new(
        Api::new(&base, &token, Duration::from_secs(20)),
        workspace_id,
        &mut out,
    );
    let ok = match which {
        "dispatch" => s.run("dispatch", dispatch_steps),
        _ => s.run("watchdog", watchdog_steps),
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Something the smoke created or changed, undone at the end.
enum Undo {
    Task(i64),
    Agent(i64),
    Worker(String),
    Setting(&'static str, String),
    Alert(i64),
}

pub struct Smoke<'o> {
    api: Api,
    workspace_id: i64,
    out: &'o mut dyn Write,
    undo: Vec<Undo>,
    /// Unique per run: names of the temporary agent, worker and tasks.
    tag: String,
    steps: usize,
}

type Step<T> = Result<T, String>;

fn api_err(what: &str, e: ApiError) -> String {
    format!("{what}: {e}")
}

impl<'o> Smoke<'o> {
    pub fn new(api: Api, workspace_id: i64, out: &'o mut dyn Write) -> Smoke<'o> {
        let tag = format!(
            "smoke-{}-{}",
            std::process::id(),
            ops_base::time::now_ms() % 100_000_000
        );
        Smoke {
            api,
            workspace_id,
            out,
            undo: Vec::new(),
            tag,
            steps: 0,
        }
    }

    fn say(&mut self, line: &str) {
        let _ = writeln!(self.out, "[smoke] {line}");
        let _ = self.out.flush();
    }

    /// Runs the steps, then the cleanup; prints one line per step.
    pub fn run(&mut self, name: &str, steps: fn(&mut Smoke) -> Step<()>) -> bool {
        self.say(&format!(
            "{name}: against {} (workspace {})",
            self.api.base(),
            self.workspace_id
        ));
        let result = steps(self);
        if let Err(e) = &result {
            self.say(&format!("FAIL {e}"));
        }
        let cleaned = self.cleanup();
        match (&result, cleaned) {
            (Ok(()), true) => {
                self.say(&format!(
                    "PASS {name}: {} steps passed, temporary data removed.",
                    self.steps
                ));
                true
            }
            (Ok(()), false) => {
                self.say(&format!(
                    "FAIL {name}: steps passed but cleanup did not finish (see above)."
                ));
                false
            }
            (Err(_), _) => {
                self.say(&format!(
                    "FAIL {name}: stopped after {} passing step(s).",
                    self.steps
                ));
                false
            }
        }
    }

    /// Prints a passing step.
    fn pass(&mut self, what: &str) {
        self.steps += 1;
        self.say(&format!("ok {}: {what}", self.steps));
    }

    fn cleanup(&mut self) -> bool {
        let mut ok = true;
        while let Some(u) = self.undo.pop() {
            let (what, r) = match &u {
                Undo::Setting(key, value) => (
                    format!("restore {key}={value}"),
                    self.api
                        .put_as::<Setting>(
                            &format!("settings/{key}"),
                            &SettingChange {
                                value: value.clone(),
                            },
                        )
                        .map(|_| serde_json::Value::Null),
                ),
                Undo::Task(id) => (
                    format!("delete task {id}"),
                    self.api.delete(&format!("tasks/{id}")),
                ),
                Undo::Agent(id) => (
                    format!("delete agent {id}"),
                    self.api.delete(&format!("agents/{id}")),
                ),
                Undo::Worker(w) => (
                    format!("forget worker {w}"),
                    self.api.delete(&format!("dispatch/workers/{w}")),
                ),
                Undo::Alert(id) => {
                    let _ = self.api.post(&format!("alerts/{id}/resolve"), &json!({}));
                    (
                        format!("resolve and delete alert {id}"),
                        self.api.delete(&format!("alerts/{id}")),
                    )
                }
            };
            match r {
                Ok(_) => self.say(&format!("cleanup: {what}")),
                Err(ApiError::Status { status: 404, .. }) => {
                    self.say(&format!("cleanup: {what} (already gone)"))
                }
                Err(e) => {
                    ok = false;
                    self.say(&format!("cleanup FAILED: {what}: {e}"));
                }
            }
        }
        ok
    }

    fn setting(&self, key: &str) -> Step<String> {
        let v: Setting = self
            .api
            .get_as(&format!("settings/{key}"))
            .map_err(|e| api_err(&format!("read setting {key}"), e))?;
        Ok(match v.value {
            Some(SettingValue::Text(s)) => s,
            Some(SettingValue::Flag(b)) => b.to_string(),
            Some(SettingValue::Number(n)) => n.to_string(),
            None => "null".into(),
        })
    }

    /// Sets a setting, remembering the old value for the cleanup.
    fn set_setting(&mut self, key: &'static str, value: &str) -> Step<()> {
        let before = self.setting(key)?;
        if before == value {
            return Ok(());
        }
        self.api
            .put_as::<Setting>(
                &format!("settings/{key}"),
                &SettingChange {
                    value: value.to_string(),
                },
            )
            .map_err(|e| api_err(key, e))?;
        if !self
            .undo
            .iter()
            .any(|u| matches!(u, Undo::Setting(k, _) if *k == key))
        {
            self.undo.push(Undo::Setting(key, before));
        }
        Ok(())
    }

    fn worker(&self) -> String {
        format!("{}-worker", self.tag)
    }

    fn agent_slug(&self) -> String {
        format!("{}-agent", self.tag)
    }

    /// A temporary agent that only this smoke's worker serves.
    fn create_agent(&mut self) -> Step<()> {
        let slug = self.agent_slug();
        let change = AgentChange {
            slug: Some(slug.clone()),
            name: Some(format!("Smoke test agent {}", self.tag)),
            active: Some(true),
            ..AgentChange::default()
        };
        let a: AgentView = self
            .api
            .post_as("agents", &change)
            .map_err(|e| api_err("create temporary agent", e))?;
        let id = a.id;
        self.undo.push(Undo::Agent(id));
        self.pass(&format!("temporary agent {slug} (id {id}) created"));
        Ok(())
    }

    fn heartbeat(&mut self) -> Step<()> {
        let body = HeartbeatReport {
            worker_id: self.worker(),
            host: "smoke".into(),
            pid: Some(i64::from(std::process::id())),
            version: env!("CARGO_PKG_VERSION").into(),
            agents: vec![AgentCapability {
                slug: self.agent_slug(),
                cli: "(smoke: no runtime)".into(),
                available: true,
                authenticated: true,
                reason: Some(String::new()),
            }],
            models: Vec::new(),
            slots_total: 1,
            slots_busy: 0,
            running_task_ids: Vec::new(),
            draining: false,
            workspace_id: None,
            starting: false,
        };
        let w = self.worker();
        if !self
            .undo
            .iter()
            .any(|u| matches!(u, Undo::Worker(x) if *x == w))
        {
            self.undo.push(Undo::Worker(w));
        }
        self.api
            .post_as::<HeartbeatAnswer>("dispatch/heartbeat", &body)
            .map_err(|e| api_err("heartbeat", e))?;
        Ok(())
    }

    fn create_task(&mut self, label: &str, sensitive: bool) -> Step<i64> {
        let new = NewTask {
            workspace_id: Some(self.workspace_id),
            title: format!("[{}] {label}", self.tag),
            description: Some(format!(
                "Temporary task of ops-center smoke ({label}); deleted when the smoke ends."
            )),
            execution: Some("interactive".into()),
            agent: Some(self.agent_slug()),
            sensitive: Some(sensitive),
            ..NewTask::default()
        };
        let t: TaskView = self
            .api
            .post_as("tasks", &new)
            .map_err(|e| api_err(&format!("create task {label}"), e))?;
        let id = t.id;
        self.undo.push(Undo::Task(id));
        Ok(id)
    }

    fn task(&self, id: i64) -> Step<TaskDetail> {
        self.api
            .get_as(&format!("tasks/{id}"))
            .map_err(|e| api_err(&format!("read task {id}"), e))
    }

    fn expect_status(&self, id: i64, want: &str) -> Step<TaskDetail> {
        let t = self.task(id)?;
        if t.task.status == want {
            return Ok(t);
        }
        Err(format!(
            "task {id} should be {want}, is {:?} (blocked_reason: {:?})",
            t.task.status, t.task.blocked_reason
        ))
    }

    fn dispatch(&self, id: i64) -> Step<()> {
        self.api
            .post(&format!("tasks/{id}/dispatch"), &json!({}))
            .map(|_| ())
            .map_err(|e| api_err(&format!("dispatch task {id}"), e))
    }

    /// Claims as the smoke's worker; the claim must hand out `want`.
    fn claim(&mut self, want: i64) -> Step<String> {
        self.heartbeat()?;
        let request = ClaimRequest {
            worker_id: self.worker(),
            agent_slugs: Some(vec![self.agent_slug()]),
            workspace_id: None,
        };
        let v: ClaimAnswer = self
            .api
            .post_as("dispatch/next", &request)
            .map_err(|e| api_err("claim", e))?;
        let Some(task) = &v.task else {
            return Err(format!("claim returned no task: reason {:?}", v.reason));
        };
        if task.id != want {
            return Err(format!(
                "claim handed out task {}, expected {want}",
                task.id
            ));
        }
        v.claim_token
            .clone()
            .ok_or(format!("claim answer without claim_token: {v:?}"))
    }

    fn report(&self, id: i64, token: &str, report: Report) -> Result<TaskView, ApiError> {
        let claim = ClaimProof {
            worker_id: self.worker(),
            claim_token: token.to_string(),
        };
        let path = format!("dispatch/tasks/{id}/{}", report.kind());
        match report {
            Report::Started(report) => self.api.post_as(&path, &ReportBody { claim, report }),
            Report::Output(report) => self.api.post_as(&path, &ReportBody { claim, report }),
            Report::Finished(report) => self.api.post_as(&path, &ReportBody { claim, report }),
            Report::Failed(report) => self.api.post_as(&path, &ReportBody { claim, report }),
        }
    }

    /// Enables dispatch for the run if it is off (restored at cleanup).
    fn enable_dispatch(&mut self) -> Step<()> {
        let before = self.setting("dispatch_enabled")?;
        self.set_setting("dispatch_enabled", "true")?;
        self.pass(&format!(
            "dispatch_enabled=true (was {before}; restored at the end)"
        ));
        Ok(())
    }
}

fn dispatch_steps(s: &mut Smoke) -> Step<()> {
    let h: Health = s
        .api
        .get_as("dispatch/health")
        .map_err(|e| api_err("health", e))?;
    if !h.ok {
        return Err(format!("health is not ok: {h:?}"));
    }
    s.pass("GET /api/dispatch/health answers ok=true");
    s.create_agent()?;
    s.heartbeat()?;
    s.pass(&format!("heartbeat as worker {}", s.worker()));

    let id = s.create_task("dispatch", false)?;
    s.expect_status(id, "next")?;
    s.pass(&format!("task {id} created: next"));
    s.dispatch(id)?;
    s.expect_status(id, "queued")?;
    s.pass(&format!("task {id} dispatched: queued"));

    s.enable_dispatch()?;
    let token = s.claim(id)?;
    s.expect_status(id, "dispatching")?;
    s.pass(&format!("task {id} claimed: dispatching"));

    s.report(
        id,
        &token,
        Report::Started(Started {
            pid: Some(i64::from(std::process::id())),
            log_path: Some("(smoke)".into()),
            err_log_path: Some("(smoke)".into()),
        }),
    )
    .map_err(|e| api_err("started", e))?;
    s.expect_status(id, "doing")?;
    s.pass(&format!("task {id} started: doing"));

    let x = Report::Output(Output {
        chunk: "x".into(),
        offset: None,
        events: Vec::new(),
    });
    match s.report(id, "not-the-token", x) {
        Err(e) if e.code() == "stale_claim" => {
            s.pass("a report with a wrong claim token is refused (409 stale_claim)")
        }
        other => {
            return Err(format!(
                "a wrong claim token should be 409 stale_claim, got {other:?}"
            ))
        }
    }

    s.report(
        id,
        &token,
        Report::Output(Output {
            chunk: "smoke output line\n".into(),
            offset: None,
            events: Vec::new(),
        }),
    )
    .map_err(|e| api_err("output", e))?;
    s.report(
        id,
        &token,
        Report::Finished(Finished {
            exit_code: Some(0),
            signal: None,
            output: "smoke deliverable".into(),
            change: None,
        }),
    )
    .map_err(|e| api_err("finished", e))?;
    let t = s.expect_status(id, "review")?;
    if t.task.dispatch_output.as_deref() != Some("smoke deliverable") {
        return Err(format!(
            "dispatch_output should hold the output, is {:?}",
            t.task.dispatch_output
        ));
    }
    let logs = t
        .comments
        .iter()
        .filter(|c| c.author == "ai-dispatch" && c.kind == "log")
        .count();
    if logs == 0 {
        return Err("the output report left no ai-dispatch log comment".into());
    }
    s.pass(&format!(
        "task {id} finished: review, with dispatch_output and {logs} log comment(s)"
    ));

    let g = s.create_task("human gate", true)?;
    match s.dispatch(g) {
        Err(e) if e.contains("human_gate") => {}
        other => {
            return Err(format!(
                "dispatching a sensitive task should be 409 human_gate, got {other:?}"
            ))
        }
    }
    let t = s.task(g)?.task;
    let reason = t.blocked_reason.clone().unwrap_or_default();
    if !t.blocked || !reason.contains("Human Gate") || t.status == "queued" {
        return Err(format!(
            "sensitive task {g} should be blocked at the Human Gate, is {t:?}"
        ));
    }
    s.pass(&format!(
        "sensitive task {g} blocked by the Human Gate: {reason}"
    ));
    Ok(())
}

fn watchdog_steps(s: &mut Smoke) -> Step<()> {
    let threshold: i64 = s
        .setting("watchdog_failure_threshold")?
        .parse()
        .map_err(|e| format!("watchdog_failure_threshold is not a number: {e}"))?;
    s.create_agent()?;
    s.heartbeat()?;
    s.pass(&format!("heartbeat as worker {}", s.worker()));
    s.enable_dispatch()?;

    // A stale dispatch: claim a task, then reconcile it alone with
    // minutes=0 (task_ids keeps every other dispatching task out of it).
    let stale = s.create_task("stale dispatch", false)?;
    s.dispatch(stale)?;
    s.claim(stale)?;
    s.expect_status(stale, "dispatching")?;
    s.pass(&format!("task {stale} claimed and left dispatching"));
    let request = ReconcileRequest {
        minutes: Some(0),
        task_ids: Some(vec![stale]),
    };
    let r: Reconciled = s
        .api
        .post_as("dispatch/reconcile-stale", &request)
        .map_err(|e| api_err("reconcile-stale", e))?;
    if r.task_ids != [stale] {
        return Err(format!(
            "reconcile-stale should have reconciled exactly task {stale}, answered {r:?}"
        ));
    }
    let t = s.expect_status(stale, "waiting")?;
    let blocker = t.comments.iter().any(|c| c.kind == "blocker");
    if !t.task.blocked || t.task.claimed_by.is_some() || !blocker {
        return Err(format!(
            "reconciled task {stale} should be blocked, unclaimed, with a blocker comment: {t:?}"
        ));
    }
    let alert = find_alert(s, "dispatch.stale", &format!("task:{stale}"))?
        .ok_or(format!("no dispatch.stale alert for task {stale}"))?;
    s.undo.push(Undo::Alert(alert.id));
    if alert.status != "open" {
        return Err(format!(
            "the dispatch.stale alert should be open: {alert:?}"
        ));
    }
    s.pass(&format!(
        "stale dispatch reconciled: task {stale} waiting+blocked, alert {} open",
        alert.id
    ));

    let f = s.create_task("recurring failure", false)?;
    for attempt in 1..=threshold {
        if attempt > 1 {
            s.api
                .patch(&format!("tasks/{f}"), &json!({"blocked": false}))
                .map_err(|e| api_err("unblock", e))?;
        }
        s.dispatch(f)?;
        let token = s.claim(f)?;
        s.report(
            f,
            &token,
            Report::Failed(Failed {
                exit_code: Some(1),
                signal: None,
                signature: "launcher process exited early (code=1, signal=null)".into(),
                reason: format!("smoke: simulated failure {attempt} of {threshold}"),
                evidence: "smoke: no runtime was started".into(),
                rate_limited: None,
                change: None,
            }),
        )
        .map_err(|e| api_err("failed", e))?;
        s.expect_status(f, "waiting")?;
    }
    s.pass(&format!(
        "task {f} failed {threshold} times (watchdog_failure_threshold)"
    ));

    let report: WatchdogReport = s
        .api
        .post_as("watchdog/run", &json!({}))
        .map_err(|e| api_err("watchdog run", e))?;
    // Register everything the run raised for our subjects before checking,
    // so that a failed check still cleans up.
    let ours = [
        format!("task:{f}"),
        format!("agent:{}", s.agent_slug()),
        format!("task:{stale}"),
    ];
    let mut seen = Vec::new();
    for raised in &report.alerts {
        let a = &raised.alert;
        if !ours.contains(&a.subject) {
            continue;
        }
        if let Some(fu) = a.followup_task_id {
            s.undo.push(Undo::Task(fu));
        }
        let id = a.id;
        if !s
            .undo
            .iter()
            .any(|u| matches!(u, Undo::Alert(x) if *x == id))
        {
            s.undo.push(Undo::Alert(id));
        }
        seen.push(a.clone());
    }
    s.pass(&format!(
        "POST /api/watchdog/run answered ({} alert(s) in its report)",
        report.alerts.len()
    ));
    for subject in [format!("task:{f}"), format!("agent:{}", s.agent_slug())] {
        let Some(a) = seen
            .iter()
            .find(|a| a.kind == "dispatch.recurring_failure" && a.subject == subject)
        else {
            return Err(format!(
                "the watchdog raised no dispatch.recurring_failure alert for {subject}"
            ));
        };
        let fu = a
            .followup_task_id
            .ok_or(format!("alert {} has no follow-up task", a.id))?;
        let t = s.task(fu)?.task;
        if t.execution != "manual" {
            return Err(format!("follow-up task {fu} should be manual: {t:?}"));
        }
        s.pass(&format!(
            "alert {} (recurring failures on {subject}) open, follow-up task {fu}",
            a.id
        ));
    }
    Ok(())
}

fn find_alert(s: &Smoke, kind: &str, subject: &str) -> Step<Option<AlertView>> {
    let v: AlertList = s
        .api
        .get_as("alerts?status=open&limit=1000")
        .map_err(|e| api_err("list alerts", e))?;
    Ok(v.alerts
        .into_iter()
        .find(|a| a.kind == kind && a.subject == subject))
}
