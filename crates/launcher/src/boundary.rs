//! The boundary between the launcher and the agents it runs.
//!
//! An agent runs code a model chose, from a prompt anyone with task access
//! wrote: it is treated as hostile. Three things keep it away from the
//! launcher's service token, state and repositories:
//!
//! - **Who it runs as** ([`AgentUser`]): the launcher, started as root,
//!   runs every agent — and every `git` in an agent's folder — as
//!   `OPS_AGENT_USER` (the package's `ops-agent`). Root agents are refused
//!   unless `OPS_AGENT_USER=root` says so. A launcher started as another
//!   user runs agents as itself, and says that nothing separates them.
//! - **What it sees of the environment** ([`agent_env`]): an allow-list,
//!   never the launcher's own environment minus a few names.
//! - **What it can reach of the file system** ([`Sandbox`]): optionally,
//!   bubblewrap with the agent's folder and home writable, the rest
//!   read-only, and the launcher's log, state and other tasks' folders
//!   hidden.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Debian package's agent user.
pub const PACKAGE_AGENT_USER: &str = "ops-agent";

/// The user agents run as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// `HOME` of the agents: where their CLIs keep logins and caches.
    pub home: PathBuf,
    /// Another user than the launcher's: every agent process drops to it.
    pub separate: bool,
}

/// One `/etc/passwd` entry.
struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

fn passwd_of(pw: *const libc::passwd) -> Option<Passwd> {
    if pw.is_null() {
        return None;
    }
    // SAFETY: a non-null entry from getpwnam_r/getpwuid_r, whose strings
    // live in the buffer the caller still holds.
    unsafe {
        let pw = &*pw;
        Some(Passwd {
            name: CStr::from_ptr(pw.pw_name).to_string_lossy().into_owned(),
            uid: pw.pw_uid,
            gid: pw.pw_gid,
            home: PathBuf::from(CStr::from_ptr(pw.pw_dir).to_string_lossy().into_owned()),
        })
    }
}

fn lookup(
    by: impl Fn(*mut libc::passwd, *mut libc::c_char, usize, *mut *mut libc::passwd) -> i32,
) -> Option<Passwd> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: zeroed is a valid (empty) passwd record to be filled in.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let rc = by(&mut entry, buf.as_mut_ptr(), buf.len(), &mut found);
    if rc != 0 {
        return None;
    }
    passwd_of(found)
}

fn user_named(name: &str) -> Option<Passwd> {
    let c = CString::new(name).ok()?;
    // SAFETY: getpwnam_r with a buffer and entry owned by `lookup`.
    lookup(|e, b, n, r| unsafe { libc::getpwnam_r(c.as_ptr(), e, b, n, r) })
}

fn user_with_uid(uid: u32) -> Option<Passwd> {
    // SAFETY: as above.
    lookup(|e, b, n, r| unsafe { libc::getpwuid_r(uid, e, b, n, r) })
}

/// The launcher's effective uid.
pub fn launcher_uid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// What the launcher says at start about who runs the agents.
#[derive(Debug, PartialEq, Eq)]
pub enum Notice {
    /// Agents run as a separate, unprivileged user.
    Separated,
    /// Local use: agents run as the launcher's own (non-root) user.
    SameUser,
    /// `OPS_AGENT_USER=root`, set on purpose.
    Root,
}

impl AgentUser {
    /// Who agents run as, from `OPS_AGENT_USER` (`configured`) and who the
    /// launcher is. `home` is the launcher's `HOME`, kept for agents that
    /// run as the launcher's own user.
    pub fn resolve(
        configured: Option<&str>,
        home: Option<&str>,
    ) -> Result<(AgentUser, Notice), String> {
        Self::resolve_for(launcher_uid(), configured, home)
    }

    /// The launcher's own user, with `home` as its `HOME` when given.
    pub fn current(home: Option<&str>) -> AgentUser {
        Self::own(launcher_uid(), user_with_uid(launcher_uid()), home)
    }

    fn own(me: u32, pw: Option<Passwd>, home: Option<&str>) -> AgentUser {
        AgentUser {
            name: pw
                .as_ref()
                .map(|p| p.name.clone())
                .unwrap_or_else(|| me.to_string()),
            uid: me,
            // SAFETY: getegid cannot fail.
            gid: unsafe { libc::getegid() },
            home: home
                .map(PathBuf::from)
                .or_else(|| pw.map(|p| p.home))
                .unwrap_or_else(|| PathBuf::from("/")),
            separate: false,
        }
    }

    fn resolve_for(
        me: u32,
        configured: Option<&str>,
        home: Option<&str>,
    ) -> Result<(AgentUser, Notice), String> {
        let own = |pw: Option<Passwd>| Self::own(me, pw, home);
        let Some(name) = configured else {
            if me == 0 {
                return Err(format!(
                    "the launcher runs as root and would run agents as root, where an agent can read the \
                     service token: set OPS_AGENT_USER to an unprivileged user whose CLIs are logged in \
                     (the package creates {PACKAGE_AGENT_USER}), or OPS_AGENT_USER=root to accept that risk"
                ));
            }
            return Ok((own(user_with_uid(me)), Notice::SameUser));
        };
        let pw = user_named(name).ok_or_else(|| {
            format!(
                "OPS_AGENT_USER={name}: no such user on this host (create it: useradd --system \
                 --create-home --home-dir /var/lib/{name} --shell /usr/sbin/nologin {name})"
            )
        })?;
        if pw.uid == me {
            let notice = if me == 0 {
                Notice::Root
            } else {
                Notice::SameUser
            };
            return Ok((own(Some(pw)), notice));
        }
        if me != 0 {
            return Err(format!(
                "OPS_AGENT_USER={name}: running agents as another user needs the launcher to run as root \
                 (it runs as uid {me}); unset OPS_AGENT_USER to run them as the launcher's own user"
            ));
        }
        if pw.uid == 0 {
            // Another name for root (uid 0): the same as root itself.
            return Ok((own(Some(pw)), Notice::Root));
        }
        if pw.gid == 0 {
            return Err(format!(
                "OPS_AGENT_USER={name}: its primary group is root's (gid 0); give it a group of its own"
            ));
        }
        if !pw.home.is_dir() {
            return Err(format!(
                "OPS_AGENT_USER={name}: its home {} does not exist; the agent CLIs keep their logins \
                 there (create it: install -d -o {name} -g {name} -m 750 {})",
                pw.home.display(),
                pw.home.display()
            ));
        }
        Ok((
            AgentUser {
                name: pw.name,
                uid: pw.uid,
                gid: pw.gid,
                home: pw.home,
                separate: true,
            },
            Notice::Separated,
        ))
    }

    /// The owner of `path` (not following a link), as a user commands can
    /// run as: a repository's git runs as its owner, who alone decides
    /// its configuration (the rule git's own `safe.directory` follows).
    pub fn owner_of(path: &Path) -> Result<AgentUser, String> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let me = launcher_uid();
        if m.uid() == me {
            return Ok(Self::current(None));
        }
        if me != 0 {
            return Err(format!(
                "{} belongs to uid {}: a launcher that does not run as root (uid {me}) uses only its own \
                 user's repositories",
                path.display(),
                m.uid()
            ));
        }
        Ok(match user_with_uid(m.uid()) {
            Some(pw) => AgentUser {
                name: pw.name,
                uid: pw.uid,
                gid: pw.gid,
                home: pw.home,
                separate: true,
            },
            None => AgentUser {
                name: m.uid().to_string(),
                uid: m.uid(),
                gid: m.gid(),
                home: PathBuf::from("/nonexistent"),
                separate: true,
            },
        })
    }

    /// Makes `cmd` run as the agent user (nothing when it is the
    /// launcher's own). The standard library drops the supplementary
    /// groups too when it switches users from root.
    pub fn apply(&self, cmd: &mut Command) {
        if self.separate {
            cmd.uid(self.uid).gid(self.gid);
        }
    }

    /// Gives `path` to the agent user (nothing when it is the launcher's).
    pub fn give(&self, path: &Path) -> std::io::Result<()> {
        if self.separate {
            std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid))?;
        }
        Ok(())
    }

    /// Lets the agent user's group read `path`, owned by the launcher.
    pub fn share_read(&self, path: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        if self.separate {
            std::os::unix::fs::lchown(path, None, Some(self.gid))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o640))?;
        }
        Ok(())
    }

    /// Whether the agent user may write `path` (owner, group or others),
    /// read from its mode: a repository an agent can write is one whose
    /// configuration it controls.
    pub fn may_write(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Ok(m) = std::fs::symlink_metadata(path) else {
            return false;
        };
        let mode = m.mode();
        m.uid() == self.uid
            || mode & 0o002 != 0
            || (mode & 0o020 != 0 && (m.gid() == self.gid || self.in_group(m.gid())))
    }

    /// Whether the mode of `m` gives the agent user execute (search)
    /// permission, as its owner, through its group or as anyone.
    fn may_execute(&self, m: &std::fs::Metadata) -> bool {
        use std::os::unix::fs::MetadataExt;
        let mode = m.mode();
        if m.uid() == self.uid {
            mode & 0o100 != 0
        } else if m.gid() == self.gid || self.in_group(m.gid()) {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        }
    }

    /// Whether the agent user can run the program at `path` (a CLI found
    /// on the launcher's `PATH` may live where only root can reach, such
    /// as root's home): said as the reason the runtime is missing, rather
    /// than as a failed logged-in check.
    pub fn can_execute(&self, path: &Path) -> Result<(), String> {
        if !self.separate {
            return Ok(());
        }
        let real = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for p in [path, real.as_path()] {
            if let Some(dir) = p.parent() {
                self.can_reach(dir)?;
            }
        }
        let m = std::fs::metadata(&real).map_err(|e| format!("{}: {e}", real.display()))?;
        if !self.may_execute(&m) {
            use std::os::unix::fs::MetadataExt;
            return Err(format!(
                "the agent user {} may not execute {} (mode {:o}, owner uid {})",
                self.name,
                real.display(),
                m.mode() & 0o7777,
                m.uid()
            ));
        }
        Ok(())
    }

    /// Whether the agent user can pass through every folder on the way to
    /// `dir` (and `dir` itself): its clones and prompts are there. See also
    /// [`check_private`].
    pub fn can_reach(&self, dir: &Path) -> Result<(), String> {
        use std::os::unix::fs::MetadataExt;
        if !self.separate {
            return Ok(());
        }
        for d in dir.ancestors() {
            let m = std::fs::metadata(d).map_err(|e| format!("{}: {e}", d.display()))?;
            let mode = m.mode();
            if !self.may_execute(&m) {
                return Err(format!(
                    "the agent user {} cannot pass through {} (mode {:o}, owner uid {}): its clones and \
                     prompt files must be reachable; choose a folder outside it",
                    self.name,
                    d.display(),
                    mode & 0o7777,
                    m.uid()
                ));
            }
        }
        Ok(())
    }

    fn in_group(&self, gid: u32) -> bool {
        let Ok(name) = CString::new(self.name.as_str()) else {
            return false;
        };
        let mut groups = vec![0 as libc::gid_t; 256];
        let mut n = groups.len() as libc::c_int;
        // SAFETY: getgrouplist writes at most `n` ids into `groups`.
        let rc = unsafe {
            libc::getgrouplist(
                name.as_ptr(),
                self.gid as libc::gid_t,
                groups.as_mut_ptr(),
                &mut n,
            )
        };
        rc >= 0 && groups[..n.max(0) as usize].contains(&gid)
    }

    /// A command whose environment is only what a program running as the
    /// agent user needs to work (`PATH`, `HOME`, `USER`, `LOGNAME`, the
    /// locale) and that runs as that user: for the launcher's own helpers
    /// in agent territory, such as `git` in a task's folder.
    pub fn plain_command(&self, program: &str, path_var: Option<&str>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear();
        for (k, v) in self.identity_env() {
            cmd.env(k, v);
        }
        if let Some(p) = path_var {
            cmd.env("PATH", p);
        }
        self.apply(&mut cmd);
        cmd
    }

    fn identity_env(&self) -> [(&'static str, String); 3] {
        [
            ("HOME", self.home.display().to_string()),
            ("USER", self.name.clone()),
            ("LOGNAME", self.name.clone()),
        ]
    }
}

/// Refuses a folder of the launcher's (its log folder, its worktrees
/// folder) that anyone but the launcher's user or root could rename,
/// replace or fill: neither it nor a folder above it may belong to another
/// user or be writable by group or others (a sticky folder such as /tmp
/// excepted: there only an entry's owner may rename it). Else an agent
/// could swap the folder for one of its own, with records the launcher
/// would act on as root.
pub fn check_private(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let me = launcher_uid();
    for (i, d) in dir.ancestors().enumerate() {
        let m = std::fs::symlink_metadata(d).map_err(|e| format!("{}: {e}", d.display()))?;
        let mode = m.mode();
        let owner_ok = m.uid() == me || (i > 0 && m.uid() == 0);
        let sticky = mode & 0o1000 != 0;
        if m.file_type().is_symlink() {
            return Err(format!(
                "{} is a link: name the folder it points to",
                d.display()
            ));
        }
        if !owner_ok || (mode & 0o022 != 0 && !(sticky && i > 0)) {
            return Err(format!(
                "{} (owner uid {}, mode {:o}) could be replaced by another user: it and every folder above \
                 it must be the launcher's or root's and not writable by others",
                d.display(),
                m.uid(),
                mode & 0o7777
            ));
        }
    }
    Ok(())
}

/// Variables every agent gets from the launcher's environment, besides
/// `HOME`, `USER`, `LOGNAME` and `PWD`, which are set for it.
const BASE: &[&str] = &["PATH", "LANG", "LC_*", "TERM", "TZ"];

/// The variables each built-in agent's CLI is documented to read.
pub fn builtin_env(slug: &str) -> &'static [&'static str] {
    match slug {
        "claudecode" => &["ANTHROPIC_*", "CLAUDE_*"],
        "codex" => &["OPENAI_*", "CODEX_*"],
        "opencode" => &["OPENCODE_*", "*_API_KEY", "*_BASE_URL"],
        "hermes" => &["HERMES_*", "OPENROUTER_*", "OPENAI_*"],
        _ => &[],
    }
}

/// One entry of an allow-list: `NAME`, `PREFIX_*` or `*_SUFFIX`.
fn matches(pattern: &str, name: &str) -> bool {
    if let Some(prefix) = pattern.strip_suffix('*') {
        name.starts_with(prefix)
    } else if let Some(suffix) = pattern.strip_prefix('*') {
        name.ends_with(suffix)
    } else {
        name == pattern
    }
}

/// `AGENT_ENV_<SLUG>=NAME,PREFIX_*,…`: checked entries. A bare `*`, or an
/// entry that would let through the launcher's own configuration, is
/// refused: the point is that agents get only what is named.
pub fn parse_env_list(var: &str, raw: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for entry in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let core = entry.trim_start_matches('*').trim_end_matches('*');
        let stars = entry.len() - core.len();
        let valid = !core.is_empty()
            && stars <= 1
            && core.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "{var}: {entry:?} is not a variable name, NAME_PREFIX_* or *_NAME_SUFFIX"
            ));
        }
        // One name standing for each of the launcher's own (a prefix with
        // a tail): a pattern matching any of them is refused.
        let mut own = LAUNCHER_NAMES
            .iter()
            .map(|n| n.to_string())
            .chain(LAUNCHER_PREFIXES.iter().map(|p| format!("{p}X")));
        if let Some(own) = own.find(|n| matches(entry, n)) {
            return Err(format!(
                "{var}: {entry:?} would pass the launcher's own {own} to agents"
            ));
        }
        out.push(entry.to_string());
    }
    Ok(out)
}

/// The launcher's own variables (see [`launcher_only`]).
const LAUNCHER_NAMES: [&str; 4] = [
    "OPS_SERVICE_TOKEN",
    "OPS_API_BASE",
    "OPS_WORKSPACE_ID",
    "RUST_LOG",
];
const LAUNCHER_PREFIXES: [&str; 6] = [
    "OPS_LAUNCHER_",
    "OPS_AGENT_",
    "AGENT_CMD_",
    "AGENT_AUTH_CHECK_",
    "AGENT_ENV_",
    "SUPPORTED_",
];

/// The launcher's own configuration, never passed to an agent whatever
/// an allow-list says: the service token (with it an agent could report
/// on its own task, or on others), and settings such as `RUST_LOG`, which
/// would make a Rust CLI fill its error log with debug lines.
pub fn launcher_only(name: &str) -> bool {
    LAUNCHER_NAMES.contains(&name) || LAUNCHER_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The environment of an agent of `slug` working in `workdir`: from the
/// launcher's environment (`launcher`) only what the allow-list names —
/// [`BASE`], the CLI's documented variables ([`builtin_env`]) and `extra`
/// (`AGENT_ENV_<SLUG>`) — plus its identity and `PWD`. Some CLIs (opencode)
/// take their folder from `PWD` rather than the working directory.
pub fn agent_env(
    slug: &str,
    extra: &[String],
    launcher: impl IntoIterator<Item = (String, String)>,
    user: &AgentUser,
    workdir: &Path,
) -> Vec<(String, String)> {
    let allowed = |name: &str| {
        BASE.iter()
            .chain(builtin_env(slug))
            .copied()
            .chain(extra.iter().map(String::as_str))
            .any(|p| matches(p, name))
    };
    let mut env: Vec<(String, String)> = launcher
        .into_iter()
        .filter(|(k, _)| allowed(k) && !launcher_only(k))
        .filter(|(k, _)| !matches!(k.as_str(), "HOME" | "USER" | "LOGNAME" | "PWD"))
        .collect();
    env.extend(
        user.identity_env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v)),
    );
    env.push(("PWD".into(), workdir.display().to_string()));
    env.sort();
    env
}

/// `OPS_AGENT_SANDBOX`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sandbox {
    Off,
    /// bubblewrap, at this path.
    Bwrap(PathBuf),
}

/// What a sandboxed agent may see besides the read-only system.
pub struct SandboxView<'a> {
    /// The agent's folder (its clone, or its working directory): writable.
    pub workdir: &'a Path,
    /// The agent user's home: writable (the CLIs' logins and caches).
    pub home: &'a Path,
    /// Folders hidden behind an empty one: the launcher's log and state
    /// folder, and the folder of every task's clone.
    pub hidden: &'a [PathBuf],
    /// Files shown read-only inside hidden folders (the prompt file).
    pub shown: &'a [&'a Path],
}

impl Sandbox {
    /// The sandbox named by `OPS_AGENT_SANDBOX` (`none`, `bwrap`), found
    /// on `PATH`. Not checked to work: see [`Sandbox::check`].
    pub fn parse(raw: Option<&str>, path_var: Option<&str>) -> Result<Sandbox, String> {
        match raw.map(str::trim).filter(|s| !s.is_empty()) {
            None | Some("none") => Ok(Sandbox::Off),
            Some("bwrap") => super::command::resolve_cli("bwrap", path_var)
                .map(Sandbox::Bwrap)
                .map_err(|e| {
                    format!(
                        "OPS_AGENT_SANDBOX=bwrap: bubblewrap is not installed ({e}; Debian: apt-get install bubblewrap)"
                    )
                }),
            Some(other) => Err(format!(
                "OPS_AGENT_SANDBOX must be none or bwrap, got {other:?}"
            )),
        }
    }

    /// Proves the sandbox can be made here, as the agent user: bubblewrap
    /// needs user namespaces, which some hosts and containers turn off. A
    /// launcher asked for a sandbox refuses to start without one rather
    /// than run agents unsandboxed.
    pub fn check(&self, user: &AgentUser, path_var: Option<&str>) -> Result<(), String> {
        let Sandbox::Bwrap(bwrap) = self else {
            return Ok(());
        };
        let home = user.home.clone();
        let view = SandboxView {
            workdir: &home,
            home: &home,
            hidden: &[],
            shown: &[],
        };
        let argv = self.wrap(&view, &["true".to_string()]);
        let mut cmd = user.plain_command(&argv[0], path_var);
        cmd.args(&argv[1..]);
        match super::process::run_command(cmd, std::time::Duration::from_secs(20)) {
            Ok(_) => Ok(()),
            Err(e) => Err(format!(
                "OPS_AGENT_SANDBOX=bwrap: {} cannot make a sandbox on this host as {} ({e}); user \
                 namespaces are likely unavailable (sysctl kernel.unprivileged_userns_clone, \
                 user.max_user_namespaces, or an AppArmor or container policy). Refusing to run agents \
                 unsandboxed: fix that, or set OPS_AGENT_SANDBOX=none",
                bwrap.display(),
                user.name
            )),
        }
    }

    /// `argv` as the sandbox runs it.
    pub fn wrap(&self, view: &SandboxView, argv: &[String]) -> Vec<String> {
        let Sandbox::Bwrap(bwrap) = self else {
            return argv.to_vec();
        };
        let p = |p: &Path| p.display().to_string();
        let mut a: Vec<String> = [
            "--die-with-parent",
            "--new-session",
            "--unshare-pid",
            "--unshare-ipc",
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--tmpfs",
            "/tmp",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for h in view.hidden {
            a.extend(["--tmpfs".into(), p(h)]);
        }
        for f in view.shown {
            a.extend(["--ro-bind".into(), p(f), p(f)]);
        }
        for w in [view.home, view.workdir] {
            a.extend(["--bind".into(), p(w), p(w)]);
        }
        a.extend(["--chdir".into(), p(view.workdir), "--".into()]);
        let mut out = vec![p(bwrap)];
        out.extend(a);
        out.extend(argv.iter().cloned());
        out
    }
}

/// Who agents run as, what they see and where: resolved once at start.
#[derive(Clone, Debug)]
pub struct Boundary {
    pub user: AgentUser,
    pub sandbox: Sandbox,
    /// `AGENT_ENV_<SLUG>` per slug.
    pub env_extra: HashMap<String, Vec<String>>,
    pub path_var: Option<String>,
    /// What a sandbox hides from agents: the launcher's log folder and the
    /// worktrees folder (each agent is shown its own clone in it).
    pub hidden: Vec<PathBuf>,
}

impl Boundary {
    /// Resolves the launcher's configuration at start: who agents run as
    /// and, when a sandbox is asked for, proof that it can be made here.
    pub fn from_config(cfg: &super::config::LauncherConfig) -> Result<(Boundary, Notice), String> {
        let home = std::env::var("HOME").ok();
        let (mut b, notice) = Self::resolve(
            cfg.agent_user.as_deref(),
            cfg.sandbox.as_deref(),
            cfg.agent_env.clone(),
            cfg.path_var.as_deref(),
            home.as_deref(),
        )?;
        b.hidden = vec![cfg.log_dir.clone(), cfg.worktrees_dir(b.user.separate)];
        Ok((b, notice))
    }

    /// [`Boundary::from_config`] from its parts (`OPS_AGENT_USER`,
    /// `OPS_AGENT_SANDBOX`, `AGENT_ENV_<SLUG>`, `PATH`, `HOME`).
    pub fn resolve(
        agent_user: Option<&str>,
        sandbox: Option<&str>,
        env_extra: HashMap<String, Vec<String>>,
        path_var: Option<&str>,
        home: Option<&str>,
    ) -> Result<(Boundary, Notice), String> {
        let (user, notice) = AgentUser::resolve(agent_user, home)?;
        let sandbox = Sandbox::parse(sandbox, path_var)?;
        sandbox.check(&user, path_var)?;
        Ok((
            Boundary {
                user,
                sandbox,
                env_extra,
                path_var: path_var.map(str::to_string),
                hidden: Vec::new(),
            },
            notice,
        ))
    }

    /// The environment of an agent of `slug` in `workdir`.
    pub fn env_for(&self, slug: &str, workdir: &Path) -> Vec<(String, String)> {
        let extra = self.env_extra.get(slug).map_or(&[][..], |v| &v[..]);
        agent_env(slug, extra, std::env::vars(), &self.user, workdir)
    }

    /// `sh -c cmd` as an agent of `slug` would run it (same user, same
    /// environment), in the agent user's home: for logged-in checks and
    /// `--help` probes of the CLIs.
    pub fn shell(&self, slug: &str, cmd: &str) -> Command {
        let home = &self.user.home;
        let argv = self.sandbox.wrap(
            &SandboxView {
                workdir: home,
                home,
                hidden: &self.hidden,
                shown: &[],
            },
            &["sh".to_string(), "-c".to_string(), format!("{cmd} 2>&1")],
        );
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..])
            .env_clear()
            .envs(self.env_for(slug, home))
            .current_dir(home);
        self.user.apply(&mut c);
        c
    }

    /// One line for the launcher's start and `doctor`.
    pub fn describe(&self, notice: &Notice) -> String {
        let who = match notice {
            Notice::Separated => format!(
                "agents run as {} (uid {}, home {}), separate from the launcher",
                self.user.name,
                self.user.uid,
                self.user.home.display()
            ),
            Notice::SameUser => format!(
                "agents run as the launcher's own user {} (uid {}): nothing separates them from the \
                 launcher's token and files; run the launcher as root with OPS_AGENT_USER to separate them",
                self.user.name, self.user.uid
            ),
            Notice::Root => "agents run as root (OPS_AGENT_USER=root): an agent can read the service token \
                 and the launcher's state; set OPS_AGENT_USER to an unprivileged user"
                .to_string(),
        };
        let sandbox = match &self.sandbox {
            Sandbox::Off => "no sandbox (OPS_AGENT_SANDBOX=none)".to_string(),
            Sandbox::Bwrap(p) => format!("sandbox: bubblewrap ({})", p.display()),
        };
        format!("{who}; {sandbox}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> AgentUser {
        AgentUser {
            name: "someone".into(),
            uid: 4242,
            gid: 4242,
            home: "/home/someone".into(),
            separate: true,
        }
    }

    #[test]
    fn the_environment_is_an_allow_list() {
        let launcher = [
            ("PATH", "/usr/bin"),
            ("HOME", "/root"),
            ("LANG", "C.UTF-8"),
            ("LC_TIME", "es_ES.UTF-8"),
            ("OPS_SERVICE_TOKEN", "secret"),
            ("OPS_API_BASE", "http://x/api"),
            ("AWS_SECRET_ACCESS_KEY", "aws"),
            ("SSH_AUTH_SOCK", "/tmp/ssh"),
            ("OPENAI_API_KEY", "sk"),
            ("ANTHROPIC_API_KEY", "ant"),
            ("GIT_DIR", "/elsewhere"),
            ("MY_TOOL_URL", "u"),
            ("RUST_LOG", "debug"),
            ("PWD", "/root"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let names = |slug: &str, extra: &[&str]| -> Vec<String> {
            let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
            agent_env(
                slug,
                &extra,
                launcher.clone(),
                &me(),
                Path::new("/w/task-1"),
            )
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
        };
        let codex = names("codex", &[]);
        assert_eq!(
            codex,
            [
                "HOME=/home/someone",
                "LANG=C.UTF-8",
                "LC_TIME=es_ES.UTF-8",
                "LOGNAME=someone",
                "OPENAI_API_KEY=sk",
                "PATH=/usr/bin",
                "PWD=/w/task-1",
                "USER=someone",
            ]
        );
        assert!(names("claudecode", &[]).contains(&"ANTHROPIC_API_KEY=ant".to_string()));
        assert!(!names("claudecode", &[])
            .iter()
            .any(|v| v.starts_with("OPENAI")));
        let opencode = names("opencode", &[]);
        assert!(opencode.contains(&"OPENAI_API_KEY=sk".to_string()));
        assert!(!opencode.iter().any(|v| v.starts_with("AWS_")));
        let custom = names("mine", &["MY_TOOL_*", "SSH_AUTH_SOCK"]);
        assert!(custom.contains(&"MY_TOOL_URL=u".to_string()));
        assert!(custom.contains(&"SSH_AUTH_SOCK=/tmp/ssh".to_string()));
        assert!(!custom.iter().any(|v| v.starts_with("OPENAI")));
        for all in [codex, opencode, custom] {
            for v in all {
                assert!(
                    !v.contains("secret") && !v.starts_with("GIT_") && !v.starts_with("RUST_LOG"),
                    "{v}"
                );
            }
        }
    }

    #[test]
    fn allow_lists_are_checked() {
        assert_eq!(
            parse_env_list("AGENT_ENV_X", " FOO, BAR_* ,*_KEY,").unwrap(),
            ["FOO", "BAR_*", "*_KEY"]
        );
        for bad in [
            "*",
            "A*B",
            "**X",
            "A-B",
            "OPS_*",
            "*_TOKEN",
            "OPS_SERVICE_TOKEN",
            "AGENT_*",
        ] {
            assert!(parse_env_list("AGENT_ENV_X", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn root_needs_an_agent_user_or_says_so() {
        let e = AgentUser::resolve_for(0, None, Some("/root")).unwrap_err();
        assert!(e.contains("OPS_AGENT_USER"), "{e}");
        let (u, n) = AgentUser::resolve_for(0, Some("root"), Some("/root")).unwrap();
        assert_eq!((u.uid, u.separate, n), (0, false, Notice::Root));
        let e = AgentUser::resolve_for(0, Some("no-such-user-here"), None).unwrap_err();
        assert!(e.contains("no such user"), "{e}");
        // Not root: agents run as the launcher's user, or the start fails.
        let (u, n) = AgentUser::resolve_for(4242, None, Some("/home/x")).unwrap();
        assert_eq!((u.uid, u.separate, n), (4242, false, Notice::SameUser));
        assert_eq!(u.home, PathBuf::from("/home/x"));
        let e = AgentUser::resolve_for(4242, Some("root"), None).unwrap_err();
        assert!(e.contains("needs the launcher to run as root"), "{e}");
    }

    #[test]
    fn the_sandbox_hides_and_shows() {
        let s = Sandbox::Bwrap("/usr/bin/bwrap".into());
        let logs = PathBuf::from("/var/lib/l");
        let wts = PathBuf::from("/var/lib/l/worktrees");
        let prompt = PathBuf::from("/var/lib/l/task-1.prompt.md");
        let argv = s.wrap(
            &SandboxView {
                workdir: Path::new("/var/lib/l/worktrees/task-1"),
                home: Path::new("/var/lib/ops-agent"),
                hidden: &[logs, wts.clone()],
                shown: &[&prompt],
            },
            &["codex".into(), "exec".into()],
        );
        let line = argv.join(" ");
        assert!(line.starts_with("/usr/bin/bwrap --die-with-parent --new-session --unshare-pid"));
        let at = |s: &str| line.find(s).unwrap_or_else(|| panic!("{s} in {line}"));
        // Hidden first, then what is shown inside them.
        assert!(at("--tmpfs /var/lib/l ") < at("--ro-bind /var/lib/l/task-1.prompt.md"));
        assert!(at("--tmpfs /var/lib/l/worktrees") < at("--bind /var/lib/l/worktrees/task-1"));
        assert!(line.ends_with("--chdir /var/lib/l/worktrees/task-1 -- codex exec"));
        assert_eq!(
            Sandbox::Off.wrap(
                &SandboxView {
                    workdir: &wts,
                    home: &wts,
                    hidden: &[],
                    shown: &[]
                },
                &["x".into()]
            ),
            ["x"]
        );
        assert!(Sandbox::parse(Some("firejail"), None).is_err());
        assert_eq!(Sandbox::parse(Some("none"), None).unwrap(), Sandbox::Off);
    }
}
