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

use serde_json::{json, Value};

use crate::launcher::api::{Api, ApiError};

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
            crate::time::now_ms() % 100_000_000
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
                        .put(&format!("settings/{key}"), &json!({"value": value})),
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
        let v = self
            .api
            .get(&format!("settings/{key}"))
            .map_err(|e| api_err(&format!("read setting {key}"), e))?;
        Ok(match &v["value"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    /// Sets a setting, remembering the old value for the cleanup.
    fn set_setting(&mut self, key: &'static str, value: &str) -> Step<()> {
        let before = self.setting(key)?;
        if before == value {
            return Ok(());
        }
        self.api
            .put(&format!("settings/{key}"), &json!({"value": value}))
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
        let a = self
            .api
            .post("agents", &json!({"slug": slug, "name": format!("Smoke test agent {}", self.tag), "active": true}))
            .map_err(|e| api_err("create temporary agent", e))?;
        let id = a["id"]
            .as_i64()
            .ok_or(format!("agent answer without id: {a}"))?;
        self.undo.push(Undo::Agent(id));
        self.pass(&format!("temporary agent {slug} (id {id}) created"));
        Ok(())
    }

    fn heartbeat(&mut self) -> Step<()> {
        let body = json!({
            "worker_id": self.worker(),
            "host": "smoke",
            "pid": std::process::id(),
            "version": env!("CARGO_PKG_VERSION"),
            "agents": [{"slug": self.agent_slug(), "cli": "(smoke: no runtime)", "available": true, "authenticated": true, "reason": ""}],
            "models": [],
            "slots_total": 1,
            "slots_busy": 0,
            "running_task_ids": [],
            "draining": false,
        });
        let w = self.worker();
        if !self
            .undo
            .iter()
            .any(|u| matches!(u, Undo::Worker(x) if *x == w))
        {
            self.undo.push(Undo::Worker(w));
        }
        self.api
            .post("dispatch/heartbeat", &body)
            .map_err(|e| api_err("heartbeat", e))?;
        Ok(())
    }

    fn create_task(&mut self, label: &str, sensitive: bool) -> Step<i64> {
        let t = self
            .api
            .post(
                "tasks",
                &json!({
                    "workspace_id": self.workspace_id,
                    "title": format!("[{}] {label}", self.tag),
                    "description": format!("Temporary task of ops-center smoke ({label}); deleted when the smoke ends."),
                    "execution": "interactive",
                    "agent": self.agent_slug(),
                    "sensitive": sensitive,
                }),
            )
            .map_err(|e| api_err(&format!("create task {label}"), e))?;
        let id = t["id"]
            .as_i64()
            .ok_or(format!("task answer without id: {t}"))?;
        self.undo.push(Undo::Task(id));
        Ok(id)
    }

    fn task(&self, id: i64) -> Step<Value> {
        self.api
            .get(&format!("tasks/{id}"))
            .map_err(|e| api_err(&format!("read task {id}"), e))
    }

    fn expect_status(&self, id: i64, want: &str) -> Step<Value> {
        let t = self.task(id)?;
        match t["status"].as_str() {
            Some(s) if s == want => Ok(t),
            other => Err(format!(
                "task {id} should be {want}, is {other:?} (blocked_reason: {})",
                t["blocked_reason"]
            )),
        }
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
        let v = self
            .api
            .post(
                "dispatch/next",
                &json!({"worker_id": self.worker(), "agent_slugs": [self.agent_slug()]}),
            )
            .map_err(|e| api_err("claim", e))?;
        if v["task"].is_null() {
            return Err(format!("claim returned no task: reason {}", v["reason"]));
        }
        let got = v["task"]["id"].as_i64().unwrap_or(0);
        if got != want {
            return Err(format!("claim handed out task {got}, expected {want}"));
        }
        v["claim_token"]
            .as_str()
            .map(str::to_string)
            .ok_or(format!("claim answer without claim_token: {v}"))
    }

    fn report(&self, id: i64, kind: &str, token: &str, mut body: Value) -> Result<Value, ApiError> {
        body["worker_id"] = json!(self.worker());
        body["claim_token"] = json!(token);
        self.api.post(&format!("dispatch/tasks/{id}/{kind}"), &body)
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
    let h = s
        .api
        .get("dispatch/health")
        .map_err(|e| api_err("health", e))?;
    if h["ok"] != json!(true) {
        return Err(format!("health is not ok: {h}"));
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
        "started",
        &token,
        json!({"pid": std::process::id(), "log_path": "(smoke)", "err_log_path": "(smoke)"}),
    )
    .map_err(|e| api_err("started", e))?;
    s.expect_status(id, "doing")?;
    s.pass(&format!("task {id} started: doing"));

    match s.report(id, "output", "not-the-token", json!({"chunk": "x"})) {
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
        "output",
        &token,
        json!({"chunk": "smoke output line\n"}),
    )
    .map_err(|e| api_err("output", e))?;
    s.report(
        id,
        "finished",
        &token,
        json!({"exit_code": 0, "signal": null, "output": "smoke deliverable"}),
    )
    .map_err(|e| api_err("finished", e))?;
    let t = s.expect_status(id, "review")?;
    if t["dispatch_output"] != json!("smoke deliverable") {
        return Err(format!(
            "dispatch_output should hold the output, is {}",
            t["dispatch_output"]
        ));
    }
    let logs = t["comments"].as_array().map_or(0, |c| {
        c.iter()
            .filter(|c| c["author"] == "ai-dispatch" && c["kind"] == "log")
            .count()
    });
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
    let t = s.task(g)?;
    let reason = t["blocked_reason"].as_str().unwrap_or("");
    if t["blocked"] != json!(true) || !reason.contains("Human Gate") || t["status"] == "queued" {
        return Err(format!(
            "sensitive task {g} should be blocked at the Human Gate, is {t}"
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
    let r = s
        .api
        .post(
            "dispatch/reconcile-stale",
            &json!({"minutes": 0, "task_ids": [stale]}),
        )
        .map_err(|e| api_err("reconcile-stale", e))?;
    let ids: Vec<i64> = r["task_ids"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    if ids != [stale] {
        return Err(format!(
            "reconcile-stale should have reconciled exactly task {stale}, answered {r}"
        ));
    }
    let t = s.expect_status(stale, "waiting")?;
    let blocker = t["comments"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["kind"] == "blocker"));
    if t["blocked"] != json!(true) || t["claimed_by"] != Value::Null || !blocker {
        return Err(format!(
            "reconciled task {stale} should be blocked, unclaimed, with a blocker comment: {t}"
        ));
    }
    let alert = find_alert(s, "dispatch.stale", &format!("task:{stale}"))?
        .ok_or(format!("no dispatch.stale alert for task {stale}"))?;
    s.undo.push(Undo::Alert(alert["id"].as_i64().unwrap_or(0)));
    if alert["status"] != "open" {
        return Err(format!("the dispatch.stale alert should be open: {alert}"));
    }
    s.pass(&format!(
        "stale dispatch reconciled: task {stale} waiting+blocked, alert {} open",
        alert["id"]
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
            "failed",
            &token,
            json!({"signature": "launcher process exited early (code=1, signal=null)",
                   "reason": format!("smoke: simulated failure {attempt} of {threshold}"),
                   "evidence": "smoke: no runtime was started"}),
        )
        .map_err(|e| api_err("failed", e))?;
        s.expect_status(f, "waiting")?;
    }
    s.pass(&format!(
        "task {f} failed {threshold} times (watchdog_failure_threshold)"
    ));

    let report = s
        .api
        .post("watchdog/run", &json!({}))
        .map_err(|e| api_err("watchdog run", e))?;
    // Register everything the run raised for our subjects before checking,
    // so that a failed check still cleans up.
    let ours = [
        format!("task:{f}"),
        format!("agent:{}", s.agent_slug()),
        format!("task:{stale}"),
    ];
    let mut seen = Vec::new();
    for a in report["alerts"].as_array().into_iter().flatten() {
        let subject = a["subject"].as_str().unwrap_or("");
        if !ours.iter().any(|o| o == subject) {
            continue;
        }
        if let Some(fu) = a["followup_task_id"].as_i64() {
            s.undo.push(Undo::Task(fu));
        }
        if let Some(id) = a["id"].as_i64() {
            if !s
                .undo
                .iter()
                .any(|u| matches!(u, Undo::Alert(x) if *x == id))
            {
                s.undo.push(Undo::Alert(id));
            }
        }
        seen.push((
            a["kind"].as_str().unwrap_or("").to_string(),
            subject.to_string(),
            a.clone(),
        ));
    }
    s.pass(&format!(
        "POST /api/watchdog/run answered ({} alert(s) in its report)",
        report["alerts"].as_array().map_or(0, Vec::len)
    ));
    for subject in [format!("task:{f}"), format!("agent:{}", s.agent_slug())] {
        let Some((_, _, a)) = seen
            .iter()
            .find(|(k, sub, _)| k == "dispatch.recurring_failure" && *sub == subject)
        else {
            return Err(format!(
                "the watchdog raised no dispatch.recurring_failure alert for {subject}"
            ));
        };
        let fu = a["followup_task_id"]
            .as_i64()
            .ok_or(format!("alert {} has no follow-up task", a["id"]))?;
        let t = s.task(fu)?;
        if t["execution"] != "manual" {
            return Err(format!("follow-up task {fu} should be manual: {t}"));
        }
        s.pass(&format!(
            "alert {} (recurring failures on {subject}) open, follow-up task {fu}",
            a["id"]
        ));
    }
    Ok(())
}

fn find_alert(s: &Smoke, kind: &str, subject: &str) -> Step<Option<Value>> {
    let v = s
        .api
        .get("alerts?status=open&limit=1000")
        .map_err(|e| api_err("list alerts", e))?;
    Ok(v["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["kind"] == kind && a["subject"] == subject)
        .cloned())
}
