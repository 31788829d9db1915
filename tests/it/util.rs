//! The test harness: each test gets its own temp dir and a real
//! `ops-center serve` on a free port, and talks to it over real HTTP.
//! Every process a test runs for long (servers, launchers) is a [`Proc`]:
//! started, signalled, waited for and killed in one place.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use ops_center::protocol::accounts::{NewUser, Workspace, WorkspaceChange};
use ops_center::protocol::admin::{ClockAdvance, TestHold, TestHoldState};
use ops_center::protocol::dispatch::{
    ClaimAnswer, ClaimProof, ClaimRequest, HeartbeatAnswer, HeartbeatReport,
};
use ops_center::protocol::errors::ErrorBody;
use ops_center::protocol::tasks::{NewTask, TaskView};

use crate::client::{self, Answer, Report, TaskSpec};
use crate::harness;

pub const TOKEN: &str = "test-service-token-0123456789abcdef";
pub const ADMIN: &str = "root";
pub const ADMIN_PW: &str = "root-password-123";

/// The user the tests run as. The tests' launchers run their agents as it
/// too (`OPS_AGENT_USER`), but for the tests of the agent boundary, which
/// make an agent user of their own.
pub fn own_user() -> String {
    ops_center::launcher::boundary::AgentUser::current(None).name
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ops-center")
}

/// A running server with its temp dir. Dropping it kills the process.
pub struct Server {
    /// First, so that it is dropped (the process killed, its log printed)
    /// before the temp dir is removed.
    process: Proc,
    pub dir: tempfile::TempDir,
    pub addr: String,
    /// What the server printed on stdout before `listening on`.
    pub banner: Vec<String>,
    env: Vec<(String, String)>,
    /// `--bind` of the next start: port 0 unless `keep_port` pinned it.
    bind: String,
    /// RLIMIT_NOFILE of the server process, when set.
    pub nofile: Option<u64>,
    /// The database file: `ops.db` in `dir` unless `start_on` chose one.
    db: PathBuf,
}

impl Server {
    /// A server with the test token and admin configured.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    pub fn start_with(extra: &[(&str, &str)]) -> Server {
        Server::start_limited(extra, None)
    }

    /// A server whose process may hold at most `nofile` descriptors.
    pub fn start_limited(extra: &[(&str, &str)], nofile: Option<u64>) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("ops.db");
        Server::start_on_limited(dir, db, extra, nofile)
    }

    /// A server on the database file `db` (e.g. on a file system the test
    /// mounted), logging into `dir`.
    pub fn start_on(dir: tempfile::TempDir, db: PathBuf, extra: &[(&str, &str)]) -> Server {
        Server::start_on_limited(dir, db, extra, None)
    }

    fn start_on_limited(
        dir: tempfile::TempDir,
        db: PathBuf,
        extra: &[(&str, &str)],
        nofile: Option<u64>,
    ) -> Server {
        let mut env = vec![
            ("OPS_SERVICE_TOKEN".to_string(), TOKEN.to_string()),
            ("OPS_ADMIN_USER".to_string(), ADMIN.to_string()),
            ("OPS_ADMIN_PASSWORD".to_string(), ADMIN_PW.to_string()),
            // Time moves through `advance_clock`, never by rewriting
            // timestamps behind the writer.
            ("OPS_TEST_CLOCK".to_string(), "1".to_string()),
        ];
        for (k, v) in extra {
            env.retain(|(ek, _)| ek != k);
            if !v.is_empty() {
                env.push((k.to_string(), v.to_string()));
            }
        }
        let log = dir.path().join("server.log");
        let mut s = Server {
            process: Proc::new("server", log),
            dir,
            addr: String::new(),
            banner: Vec::new(),
            env,
            bind: "127.0.0.1:0".to_string(),
            nofile,
            db,
        };
        s.spawn();
        s
    }

    /// The word after `prefix` in the generated secrets: the start-up
    /// banner, or the credentials file it names (stdout is not a terminal).
    pub fn printed(&self, prefix: &str) -> String {
        let file = std::fs::read_to_string(self.credentials_path()).unwrap_or_default();
        let banner = format!("{}\n{file}", self.banner.join("\n"));
        let after = banner
            .split(prefix)
            .nth(1)
            .unwrap_or_else(|| panic!("{prefix:?} not printed: {banner}"));
        after
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    }

    pub fn db_path(&self) -> PathBuf {
        self.db.clone()
    }

    /// Where the server writes generated secrets when stdout is no
    /// terminal.
    pub fn credentials_path(&self) -> PathBuf {
        self.db.with_file_name("initial-credentials")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(bin());
        cmd.args(["serve", "--bind", &self.bind, "--db"])
            .arg(self.db_path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("OPS_HTTP_THREADS", "8");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(n) = self.nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe and touches no memory
            // of the parent; it runs in the child between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let (addr, banner) = self.process.serve(cmd, Duration::from_secs(30));
        self.addr = addr;
        self.banner = banner;
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// A field of /proc/<pid>/status (e.g. `Threads`, `VmRSS` in kB).
    pub fn proc_status(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    /// Sends `signal` (e.g. "TERM") and waits for the exit status.
    pub fn signal_and_wait(&mut self, signal: &str) -> ExitStatus {
        self.process.signal_and_wait(signal, 30)
    }

    /// Later starts bind the address of this one, so that clients (a
    /// launcher) configured with it reach the restarted server.
    pub fn keep_port(&mut self) {
        self.bind = self.addr.clone();
    }

    /// Changes a variable for the next start.
    pub fn set_env(&mut self, k: &str, v: &str) {
        self.env.retain(|(ek, _)| ek != k);
        self.env.push((k.to_string(), v.to_string()));
    }

    /// Starts the (stopped) server again on the same file.
    pub fn start_again(&mut self) {
        self.spawn();
    }

    /// Stops the server cleanly and starts it again on the same file.
    pub fn restart(&mut self) {
        let status = self.signal_and_wait("TERM");
        assert!(
            status.success(),
            "server exited with {status} on SIGTERM\n{}",
            self.log()
        );
        self.spawn();
    }

    pub fn client(&self) -> Client {
        Client {
            addr: self.addr.clone(),
            headers: Vec::new(),
        }
    }

    /// A client sending the service token.
    pub fn service(&self) -> Client {
        self.client().header("X-OPS-Service-Token", TOKEN)
    }

    /// A client logged in as `user`.
    pub fn login(&self, user: &str, password: &str) -> Client {
        let r = self.client().log_in(user, password);
        assert_eq!(r.status, 200, "login as {user}: {}", r.text);
        let cookie = r
            .header("set-cookie")
            .expect("cookie")
            .split(';')
            .next()
            .unwrap()
            .to_string();
        self.client().header("Cookie", &cookie)
    }

    pub fn admin(&self) -> Client {
        self.login(ADMIN, ADMIN_PW)
    }

    /// A user (created through the API by the admin) with `role` in
    /// workspace `ws` (or none), logged in.
    pub fn user(&self, name: &str, ws_role: Option<(i64, &str)>) -> (i64, Client) {
        let pw = format!("{name}-password-1234");
        let new = NewUser {
            username: name.into(),
            password: pw.clone(),
            is_admin: None,
        };
        let id = self.admin().create_user(&new).ok().id;
        if let Some((ws, role)) = ws_role {
            self.admin().set_member(ws, id, role).ok();
        }
        (id, self.login(name, &pw))
    }

    /// Moves the server's clock `secs` ahead (`POST /api/test/clock`):
    /// claims, heartbeats and events age together, as they would if the
    /// time really passed. A restarted server starts at the wall clock
    /// again.
    pub fn advance_clock(&self, secs: i64) {
        let advance = ClockAdvance {
            advance_seconds: secs,
        };
        let r = self.service().send("POST", "/api/test/clock", &advance);
        assert_eq!(r.status, 200, "{}", r.text);
    }

    /// The value of the unlabelled gauge `name` in `GET /metrics`.
    pub fn gauge(&self, name: &str) -> f64 {
        let r = self.service().get("/metrics");
        assert_eq!(r.status, 200, "{}", r.text);
        r.text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in\n{}", r.text))
            .trim()
            .parse()
            .unwrap()
    }

    /// Waits until exactly `n` long-poll claims are parked in the waiting
    /// room (`ops_dispatch_claims_parked`): a claim counted there is woken
    /// by any later dispatch.
    pub fn wait_parked(&self, n: usize) {
        wait_until(20, &format!("{n} parked claim(s)"), || {
            self.gauge("ops_dispatch_claims_parked") == n as f64
        });
    }

    /// `POST /api/test/hold-park` for `worker` (`arm`, `wait` or
    /// `release` the hold of its next long-poll claim before it parks);
    /// whether a claim is held there.
    pub fn hold_park(&self, worker: &str, action: &str) -> bool {
        let hold = TestHold {
            worker_id: worker.into(),
            action: action.into(),
        };
        let r = self.service().send("POST", "/api/test/hold-park", &hold);
        assert_eq!(r.status, 200, "{}", r.text);
        r.body::<TestHoldState>().held
    }

    /// Opens the database file directly, read-only: tests check what the
    /// server wrote, they never write behind its writer thread (time moves
    /// through [`Server::advance_clock`]).
    pub fn sql(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.db_path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .expect("open db read-only")
    }

    /// A writing connection to the database file, for what no API can do:
    /// damaging the file on purpose (the integrity check, internal errors),
    /// writing while the server is stopped as an outside tool would, and
    /// aging one claim but not another (the clock moves them all).
    pub fn sql_write(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.db_path()).expect("open db")
    }

    /// Every row of the tables the API changes, as text: equal
    /// fingerprints mean nothing changed.
    pub fn fingerprint(&self) -> String {
        let conn = self.sql();
        let mut out = String::new();
        for table in [
            "tasks",
            "task_comments",
            "ops_settings",
            "users",
            "workspace_members",
            "workspaces",
            "agents",
            "events",
            "alerts",
            "worker_heartbeats",
            "task_id_high_water",
            "workspace_repo_roots",
        ] {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM {table} ORDER BY 1"))
                .unwrap();
            let n = stmt.column_count();
            let rows = stmt
                .query_map([], |r| {
                    Ok((0..n)
                        .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                        .collect::<Vec<_>>()
                        .join("|"))
                })
                .unwrap();
            for row in rows {
                out.push_str(table);
                out.push(':');
                out.push_str(&row.unwrap());
                out.push('\n');
            }
        }
        out
    }
}

/// A process a test runs (a server, a launcher), and the log it writes.
/// Dropping it kills the process, and prints the log if the test failed.
pub struct Proc {
    what: &'static str,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    /// Nothing running yet.
    pub fn new(what: &'static str, log: PathBuf) -> Proc {
        Proc {
            what,
            log,
            child: None,
        }
    }

    /// Starts `cmd` with no input and its output dropped (the process
    /// writes its own log).
    pub fn start(&mut self, mut cmd: Command) {
        assert!(self.child.is_none(), "the {} still runs", self.what);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the {}: {e}", self.what));
        self.child = Some(child);
    }

    /// Starts `cmd` (an `ops-center serve …`), its stderr appended to the
    /// log, and waits up to `timeout` for it to listen: its address and
    /// what it printed before.
    pub fn serve(&mut self, cmd: Command, timeout: Duration) -> (String, Vec<String>) {
        assert!(self.child.is_none(), "the {} still runs", self.what);
        let started =
            harness::start_serve(cmd, &self.log, timeout).unwrap_or_else(|e| panic!("{e}"));
        self.child = Some(started.child);
        (started.addr, started.banner)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (e.g. "TERM", "HUP") and leaves the process running.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status();
        assert!(ok.is_ok_and(|s| s.success()), "kill -{signal} failed");
    }

    /// Sends `signal` and waits up to `secs` for the exit status.
    pub fn signal_and_wait(&mut self, signal: &str, secs: u64) -> ExitStatus {
        self.signal(signal);
        self.wait_exit(secs, &format!("after SIG{signal}"))
    }

    /// Waits up to `secs` for the process to end on its own (`why` says
    /// what should end it); its exit status. A process that does not end
    /// fails the test (and is killed when the `Proc` is dropped).
    pub fn wait_exit(&mut self, secs: u64, why: &str) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let what = self.what;
        let status = wait_for(secs, &format!("the {what} to exit {why}"), || {
            child.try_wait().expect("wait")
        });
        self.child = None;
        status
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("kill -9");
        child.wait().expect("wait");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            harness::end(&mut c);
        }
        if std::thread::panicking() {
            eprintln!(
                "--- {} log ({}) ---\n{}",
                self.what,
                self.log.display(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// A running `ops-center launcher`. Dropping it kills it (not the agents
/// it started: those are detached; see `AgentGuard`).
pub struct Launcher {
    process: Proc,
    pub log_dir: PathBuf,
    pub log_file: PathBuf,
    env: Vec<(String, String)>,
}

impl Launcher {
    /// A launcher for `srv` with a fast heartbeat and claim poll; `vars`
    /// add to or override the environment.
    pub fn start(srv: &Server, log_dir: &Path, vars: &[(&str, &str)]) -> Launcher {
        let mut env: Vec<(String, String)> = [
            ("OPS_API_BASE", format!("http://{}/api", srv.addr)),
            ("OPS_SERVICE_TOKEN", TOKEN.to_string()),
            ("OPS_LAUNCHER_LOG_DIR", log_dir.display().to_string()),
            ("OPS_LAUNCHER_HEARTBEAT_SECONDS", "1".to_string()),
            ("OPS_LAUNCHER_POLL_SECONDS", "1".to_string()),
            ("OPS_AGENT_USER", own_user()),
            ("RUST_LOG", "info".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in vars {
            env.retain(|(ek, _)| ek != k);
            env.push((k.to_string(), v.to_string()));
        }
        let log_file = log_dir.with_extension("launcher.log");
        let mut l = Launcher {
            process: Proc::new("launcher", log_file.clone()),
            log_dir: log_dir.to_path_buf(),
            log_file,
            env,
        };
        l.spawn();
        l
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(bin());
        cmd.arg("launcher")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("OPS_LAUNCHER_LOG_FILE", &self.log_file)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.process.start(cmd);
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    pub fn start_again(&mut self) {
        self.spawn();
    }

    /// Its environment (beside `PATH` and its log file).
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Leaves `key` out of the environment of the next start.
    pub fn unset(&mut self, key: &str) {
        self.env.retain(|(k, _)| k != key);
    }

    /// Waits for the launcher to die on its own (a crash point), as a
    /// `kill -9` at that point would leave things.
    pub fn wait_crash(&mut self, secs: u64) {
        let st = self.process.wait_exit(secs, "at its crash point");
        assert!(!st.success(), "the launcher exited cleanly: {st}");
    }

    pub fn signal_and_wait(&mut self, sig: &str) -> ExitStatus {
        self.process.signal_and_wait(sig, 20)
    }

    /// Sends a signal and leaves the launcher running.
    pub fn signal(&self, sig: &str) {
        self.process.signal(sig);
    }

    pub fn state_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.log_dir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.to_string_lossy().ends_with(".state.json"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Kills a detached agent's process group when the test ends, however it
/// ends.
pub struct AgentGuard(pub u32);

impl Drop for AgentGuard {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .stderr(Stdio::null())
            .status();
    }
}

/// A minimal HTTP/1.1 client (one connection per request), so tests can
/// also send what a well-behaved client library would not.
#[derive(Clone)]
pub struct Client {
    pub addr: String,
    headers: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct Res {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body as received (after any chunked framing).
    pub body: Vec<u8>,
    pub text: String,
    pub json: Value,
}

impl Res {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `error` code of a JSON error body.
    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or("")
    }

    /// Asserts a refusal with `status` and error `code`; the error body.
    #[track_caller]
    pub fn refused(&self, status: u16, code: &str) -> ErrorBody {
        assert_eq!((self.status, self.error()), (status, code), "{}", self.text);
        self.body()
    }

    /// The body read as its protocol type (panics, with the body, when it
    /// is not that shape).
    pub fn body<A: serde::de::DeserializeOwned>(&self) -> A {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not the protocol's shape ({e}): {}", self.text))
    }
}

impl Client {
    /// The same credentials against another (restarted) server.
    pub fn clone_to(&self, srv: &Server) -> Client {
        Client {
            addr: srv.addr.clone(),
            headers: self.headers.clone(),
        }
    }

    /// Adds a header to every request; an empty value sends no such
    /// header (`Content-Type` with "" sends a body with no type at all).
    pub fn header(mut self, name: &str, value: &str) -> Client {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The headers sent with every request (credentials among them).
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    pub fn get(&self, path: &str) -> Res {
        self.raw("GET", path, b"")
    }

    pub fn delete(&self, path: &str) -> Res {
        self.raw("DELETE", path, b"")
    }

    pub fn post(&self, path: &str, body: &Value) -> Res {
        self.raw("POST", path, body.to_string().as_bytes())
    }

    pub fn put(&self, path: &str, body: &Value) -> Res {
        self.raw("PUT", path, body.to_string().as_bytes())
    }

    pub fn patch(&self, path: &str, body: &Value) -> Res {
        self.raw("PATCH", path, body.to_string().as_bytes())
    }

    pub fn raw(&self, method: &str, path: &str, body: &[u8]) -> Res {
        self.try_raw(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub fn try_raw(&self, method: &str, path: &str, body: &[u8]) -> std::io::Result<Res> {
        let mut s = TcpStream::connect(&self.addr)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        // A JSON body says so, unless the test sets (or drops) the type.
        let typed = self
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        if !body.is_empty() && !typed {
            head.push_str("Content-Type: application/json\r\n");
        }
        for (k, v) in self.headers.iter().filter(|(_, v)| !v.is_empty()) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes())?;
        // A server may answer (e.g. 413) before reading a large body.
        let _ = s.write_all(body);
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)?;
        parse_response(&buf)
    }
}

fn parse_response(buf: &[u8]) -> std::io::Result<Res> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let mut body = buf[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    let text = String::from_utf8_lossy(&body).to_string();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Res {
        status,
        headers,
        body,
        text,
        json,
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..pos]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[pos + 2..pos + 2 + size]);
        b = &b[pos + 2 + size + 2..];
    }
    out
}

/// Polls `f` until it returns `Some`, or panics after `secs`.
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Polls `condition` until it holds, or panics after `secs`: a wait for a
/// state, never a sleep for a time.
pub fn wait_until(secs: u64, what: &str, mut condition: impl FnMut() -> bool) {
    wait_for(secs, what, || condition().then_some(()))
}

/// A fake worker speaking the dispatch protocol with the service token.
pub struct Worker {
    pub id: String,
    pub client: Client,
}

impl Worker {
    pub fn new(srv: &Server, id: &str) -> Worker {
        Worker {
            id: id.to_string(),
            client: srv.service(),
        }
    }

    /// The heartbeat [`Worker::heartbeat`] sends: `usable` slugs available
    /// and logged in, two free slots, no task running.
    pub fn heartbeat_of(&self, usable: &[&str], models: &[&str]) -> HeartbeatReport {
        HeartbeatReport {
            worker_id: self.id.clone(),
            host: "test-host".into(),
            pid: Some(1),
            version: "test".into(),
            agents: usable.iter().map(|s| client::usable(s)).collect(),
            models: models.iter().map(|m| m.to_string()).collect(),
            slots_total: 2,
            slots_busy: 0,
            running_task_ids: Vec::new(),
            draining: false,
            workspace_id: None,
            starting: false,
        }
    }

    /// A heartbeat reporting `usable` slugs as available and logged in.
    #[track_caller]
    pub fn heartbeat(&self, usable: &[&str], models: &[&str]) -> HeartbeatAnswer {
        self.beat(&self.heartbeat_of(usable, models)).ok()
    }

    /// Sends `report` as this worker's heartbeat.
    pub fn beat(&self, report: &HeartbeatReport) -> Answer<HeartbeatAnswer> {
        self.client.heartbeat(report)
    }

    /// A claim for any agent and workspace.
    pub fn request(&self) -> ClaimRequest {
        ClaimRequest {
            worker_id: self.id.clone(),
            agent_slugs: None,
            workspace_id: None,
        }
    }

    /// `POST /api/dispatch/next` for any agent and workspace.
    #[track_caller]
    pub fn claim(&self) -> ClaimAnswer {
        self.client.claim(&self.request()).ok()
    }

    /// Claims and returns (task id, claim token), or panics with the reason.
    #[track_caller]
    pub fn claim_one(&self) -> (i64, String) {
        let answer = self.claim();
        match (answer.task, answer.claim_token) {
            (Some(task), Some(token)) => (task.id, token),
            (task, _) => panic!("no task claimed: {:?} {task:?}", answer.reason),
        }
    }

    /// Claims, asserting that nothing is handed out; the reason.
    #[track_caller]
    pub fn no_claim(&self) -> String {
        let answer = self.claim();
        assert!(
            answer.task.is_none() && answer.claim_token.is_none(),
            "claimed {answer:?}"
        );
        answer.reason.expect("a reason")
    }

    /// The proof of holding the claim `token`.
    pub fn proof(&self, token: &str) -> ClaimProof {
        ClaimProof {
            worker_id: self.id.clone(),
            claim_token: token.to_string(),
        }
    }

    /// Reports `report` about `task` under the claim `token`.
    pub fn report<R: Report>(&self, task: i64, token: &str, report: R) -> Answer<TaskView> {
        self.client.report(task, self.proof(token), report)
    }

    /// A report whose body is not the protocol's (a bad value, a field
    /// left out), with this worker's claim proof added.
    pub fn report_raw(&self, task: i64, token: &str, kind: &str, mut body: Value) -> Res {
        body["worker_id"] = Value::from(self.id.clone());
        body["claim_token"] = Value::from(token);
        self.client
            .post(&format!("/api/dispatch/tasks/{task}/{kind}"), &body)
    }
}

/// What [`queued_task`] queues: a task, or an agent's slug for the usual
/// interactive one.
pub trait IntoTask {
    fn into_task(self) -> NewTask;
}

impl IntoTask for &str {
    fn into_task(self) -> NewTask {
        dispatchable(self)
    }
}

impl IntoTask for NewTask {
    fn into_task(self) -> NewTask {
        self
    }
}

/// The interactive task [`queued_task`] makes for `agent`.
pub fn dispatchable(agent: &str) -> NewTask {
    client::task("dispatch me")
        .description("do it")
        .interactive(agent)
}

/// Creates a task and queues it (`dispatch_enabled` or not); its id.
#[track_caller]
pub fn queued_task(srv: &Server, task: impl IntoTask) -> i64 {
    let svc = srv.service();
    let id = svc.new_task(&task.into_task());
    let queued = svc.dispatch(id).ok();
    assert_eq!(queued.task.status, "queued");
    id
}

/// Lets the tasks of workspace `ws` name their own repository under
/// `roots` (`PATCH /api/workspaces/:id` with `repo_roots`, as the global
/// admin); returns the workspace as answered.
#[track_caller]
pub fn set_repo_roots(srv: &Server, ws: i64, roots: &[&str]) -> Workspace {
    let change = WorkspaceChange {
        repo_roots: Some(roots.iter().map(|r| r.to_string()).collect()),
        ..WorkspaceChange::default()
    };
    srv.admin().edit_workspace(ws, &change).ok()
}

#[track_caller]
pub fn enable_dispatch(srv: &Server) {
    srv.service().set_setting("dispatch_enabled", "true").ok();
}

/// The kinds of a task's events, oldest first.
#[track_caller]
pub fn event_kinds(srv: &Server, task: i64) -> Vec<String> {
    let list = srv
        .service()
        .events(&format!("?task_id={task}&limit=1000"))
        .ok();
    let mut kinds: Vec<String> = list.events.into_iter().map(|e| e.kind).collect();
    kinds.reverse();
    kinds
}
