//! `ops-center admin`: maintenance commands for the operator and the
//! packaging scripts. They open the same SQLite file as the server and may
//! run while it serves (WAL lets a second process write; the server reads
//! the service token on every request, so a rotation takes effect at once).
//!
//! Secrets never come from the command line, where `ps` and the shell
//! history would show them: they come from the environment or standard
//! input.

use std::fs::OpenOptions;
use std::io::{BufRead, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use crate::config::DEFAULT_DB;
use ops_app::secrets;
use ops_app::{accounts, settings as settings_app};
use ops_domain::settings::{validate_token, SERVICE_API_TOKEN};
use ops_store::db::{Db, Sync};

pub const USAGE: &str = "\
usage:
  ops-center admin set-service-token [--db PATH] [--stdin]
      sets ops_settings.service_api_token; the token comes from
      OPS_SERVICE_TOKEN or, when that is unset or with --stdin, from the
      first line of standard input
  ops-center admin set-admin-password [--db PATH] [--user NAME] [--stdin]
      creates the global admin NAME or sets its password (ending its
      sessions); NAME comes from --user or OPS_ADMIN_USER (else the first
      line of standard input), the password from OPS_ADMIN_PASSWORD or, when
      that is unset or with --stdin, from the next line of standard input
  ops-center admin backup --to FILE [--db PATH]
      writes a consistent copy of the database to the new file FILE (mode
      0600) while the server keeps running, and checks the copy
  ops-center admin check [--db PATH]
      checks a database (a replica, a restored file, a backup): integrity,
      schema version, task counts against the rows; prints what it found and
      exits 1 when anything is off
  ops-center admin restore-from-replica [--db PATH] [--timestamp T | --txid N]
      restores the database from its Litestream replica (the configuration
      in OPS_LITESTREAM_CONFIG, default /usr/share/ops-center/litestream.yml;
      the replica in LITESTREAM_REPLICA_URL), to its latest state or to a
      point in time (--timestamp 2026-01-02T15:04:05Z, or --txid of a
      Litestream transaction), checks the copy as admin check does, then
      puts it in place as admin restore does
  ops-center admin restore-from-replica --if-missing [--db PATH]
      what ops-center.service runs before the server starts: when
      replication is configured (OPS_REPLICA=litestream, or
      LITESTREAM_REPLICA_URL set) and the database is missing or empty,
      restores it from the replica (litestream restore -if-db-not-exists
      -if-replica-exists); refuses to go on when the database was never
      replicated but the replica already holds one (Litestream would replace
      the replica's latest state with it) unless OPS_DB_INIT=1; does
      nothing without replication
  ops-center admin restore --from FILE [--db PATH] [--id-margin N]
      replaces the database with FILE (a backup taken with admin backup)
      after checking FILE as admin check does; refuses while a server, or
      any other process (Litestream, a sqlite3 shell), has the database
      open; the database it replaces is kept beside it as
      PATH.before-restore-<time> (with its -wal and -shm). Task ids given
      before the restore are never given again: the next task id is past
      both files' highest and N more (default 1000; event task_ids.raised)

--db defaults to OPS_DB, else ./ops-center.db (the Debian package keeps it at
/var/lib/ops-center/ops.db). Secrets are never accepted as arguments.";

/// Where the command's input and output go (parameters so tests can feed
/// them).
pub struct Io<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub input: &'a mut dyn BufRead,
    /// Whether `input` is a terminal: then prompts are written to stderr.
    pub interactive: bool,
    pub out: &'a mut dyn Write,
}

/// `ops-center admin ...` from the real process environment.
pub fn main(args: &[String]) -> Result<(), String> {
    use std::io::IsTerminal;
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    let mut input = stdin.lock();
    let mut out = std::io::stdout();
    run(
        args,
        Io {
            env: &|k| std::env::var(k).ok(),
            input: &mut input,
            interactive,
            out: &mut out,
        },
    )
}

pub fn run(args: &[String], io: Io<'_>) -> Result<(), String> {
    let Some(cmd) = args.first().map(String::as_str) else {
        return Err(format!("admin needs a command\n\n{USAGE}"));
    };
    if matches!(cmd, "--help" | "-h" | "help") {
        writeln!(io.out, "{USAGE}").map_err(|e| e.to_string())?;
        return Ok(());
    }
    let accepted: &[&str] = match cmd {
        "set-service-token" => &["--db", "--stdin"],
        "set-admin-password" => &["--db", "--user", "--stdin"],
        "backup" => &["--db", "--to"],
        "check" => &["--db"],
        "restore" => &["--db", "--from", "--id-margin"],
        "restore-from-replica" => &["--db", "--if-missing", "--timestamp", "--txid"],
        other => return Err(format!("unknown admin command {other:?}\n\n{USAGE}")),
    };
    let opts = parse_options(cmd, &args[1..], accepted)?;
    if opts.help {
        writeln!(io.out, "{USAGE}").map_err(|e| e.to_string())?;
        return Ok(());
    }
    let db_path = db_path(opts.db.clone(), io.env);
    match cmd {
        "set-service-token" => set_service_token(&db_path, opts.stdin, io),
        "set-admin-password" => set_admin_password(&db_path, opts.user, opts.stdin, io),
        "backup" => {
            let to = opts
                .to
                .ok_or("backup needs --to FILE (a file that does not exist yet)")?;
            backup(&db_path, Path::new(&to), io.out)
        }
        "check" => check(&db_path, io.out),
        "restore" => {
            let from = opts
                .from
                .ok_or("restore needs --from FILE (a backup taken with admin backup)")?;
            let margin = match opts.id_margin.as_deref() {
                None => ops_app::serving::ID_MARGIN,
                Some(n) => n
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (0..=1_000_000_000).contains(n))
                    .ok_or_else(|| {
                        format!("--id-margin takes a number of task ids from 0 to 1000000000, got {n:?}")
                    })?,
            };
            restore(&db_path, Path::new(&from), margin, io.out)
        }
        "restore-from-replica" => {
            let replica = Replica::from_env(io.env, &db_path);
            if opts.if_missing {
                if opts.timestamp.is_some() || opts.txid.is_some() {
                    return Err(
                        "--if-missing restores the latest state: no --timestamp or --txid".into(),
                    );
                }
                restore_if_missing(&db_path, replica.as_ref(), io)
            } else {
                let replica = replica.ok_or(
                    "replication is not configured: set LITESTREAM_REPLICA_URL (and OPS_REPLICA=litestream) \
                     as for ops-center-litestream.service (/etc/default/ops-center-litestream)",
                )?;
                if opts.timestamp.is_some() && opts.txid.is_some() {
                    return Err("give --timestamp or --txid, not both".into());
                }
                restore_from_replica(&db_path, &replica, opts.timestamp, opts.txid, io.out)
            }
        }
        _ => unreachable!("checked above"),
    }
}

#[derive(Debug, Default)]
struct Options {
    db: Option<String>,
    user: Option<String>,
    to: Option<String>,
    from: Option<String>,
    id_margin: Option<String>,
    timestamp: Option<String>,
    txid: Option<String>,
    /// Read the secret from standard input even when its variable is set.
    stdin: bool,
    /// `restore-from-replica`: only when the database is missing or empty.
    if_missing: bool,
    help: bool,
}

fn parse_options(cmd: &str, args: &[String], accepted: &[&str]) -> Result<Options, String> {
    let mut opts = Options::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if matches!(arg.as_str(), "--help" | "-h") {
            opts.help = true;
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (arg.as_str(), None),
        };
        if matches!(
            flag,
            "--token" | "--service-token" | "--password" | "--admin-password"
        ) {
            return Err(format!(
                "{flag}: secrets are not taken from the command line (ps and the shell history \
                 would show them); set OPS_SERVICE_TOKEN / OPS_ADMIN_PASSWORD or give the value \
                 on standard input"
            ));
        }
        if flag == "--stdin" && accepted.contains(&flag) {
            if inline.is_some() {
                return Err("--stdin takes no value".into());
            }
            opts.stdin = true;
            continue;
        }
        if flag == "--if-missing" && accepted.contains(&flag) {
            if inline.is_some() {
                return Err("--if-missing takes no value".into());
            }
            opts.if_missing = true;
            continue;
        }
        if !accepted.contains(&flag) {
            return Err(format!(
                "unknown option {arg:?} for admin {cmd} (accepted: {})",
                accepted.join(", ")
            ));
        }
        let value = match inline.or_else(|| it.next().cloned()) {
            Some(v) if !v.trim().is_empty() => v,
            _ => return Err(format!("{flag} needs a value")),
        };
        match flag {
            "--db" => opts.db = Some(value),
            "--user" => opts.user = Some(value),
            "--to" => opts.to = Some(value),
            "--from" => opts.from = Some(value),
            "--id-margin" => opts.id_margin = Some(value),
            "--timestamp" => opts.timestamp = Some(value),
            "--txid" => opts.txid = Some(value),
            _ => unreachable!("only accepted flags reach here"),
        }
    }
    Ok(opts)
}

fn env_value(env: &dyn Fn(&str) -> Option<String>, key: &str) -> Option<String> {
    env(key)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn db_path(flag: Option<String>, env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    PathBuf::from(
        flag.or_else(|| env_value(env, "OPS_DB"))
            .unwrap_or_else(|| DEFAULT_DB.into()),
    )
}

/// The database must already exist: creating an empty one because of a
/// mistyped path would make the command look successful while the server
/// never sees the change.
fn require_db(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(format!("database {} is not a file", path.display())),
        Err(e) => Err(format!(
            "database {} not found ({e}); give the server's file with --db PATH or OPS_DB \
             (the Debian package uses /var/lib/ops-center/ops.db)",
            path.display()
        )),
    }
}

/// The value of `key` from the environment, else (or with `stdin`) one
/// line of input; with where it came from.
fn secret_or_line(
    io: &mut Io<'_>,
    key: &str,
    what: &str,
    stdin: bool,
) -> Result<(String, String), String> {
    if !stdin {
        if let Some(v) = env_value(io.env, key) {
            return Ok((v, key.to_string()));
        }
    }
    let line = read_line(io, what)?.ok_or_else(|| {
        if stdin {
            format!("no {what} given: --stdin reads it as one line of standard input")
        } else {
            format!("no {what} given: set {key} or write it as one line on standard input")
        }
    })?;
    Ok((line, "standard input".to_string()))
}

fn read_line(io: &mut Io<'_>, what: &str) -> Result<Option<String>, String> {
    if io.interactive {
        eprint!("{what}: ");
    }
    let mut line = String::new();
    io.input
        .read_line(&mut line)
        .map_err(|e| format!("cannot read {what} from standard input: {e}"))?;
    let line = line.trim_end_matches(['\n', '\r']).to_string();
    Ok(Some(line).filter(|l| !l.is_empty()))
}

fn open_db(path: &Path) -> Result<Db, String> {
    require_db(path)?;
    // Asked before this process opens the file with SQLite: closing the
    // descriptors this opens would drop the locks its connections held.
    let open_elsewhere = ops_store::db::lock_holder(path).ok().flatten().is_some();
    // Full: a rotation must survive a power loss right after it.
    let db = Db::open(path, Sync::Full, 2)
        .map_err(|e| format!("cannot open database {}: {e}", path.display()))?;
    // The server (and Litestream, if it replicates the file) has it open:
    // checkpoints are theirs. A checkpoint of this short-lived process could
    // land while Litestream builds a snapshot, or truncate the WAL behind
    // its back.
    if open_elsewhere {
        db.set_replicated();
    }
    Ok(db)
}

fn set_service_token(path: &Path, stdin: bool, mut io: Io<'_>) -> Result<(), String> {
    require_db(path)?;
    let (token, source) = secret_or_line(&mut io, "OPS_SERVICE_TOKEN", "service token", stdin)?;
    validate_token(&token).map_err(|e| format!("refusing the service token from {source}: {e}"))?;
    let db = open_db(path)?;
    let result = (|| {
        let before = ops_store::settings::get(&*db.read()?, SERVICE_API_TOKEN)?;
        if before.as_deref() == Some(token.as_str()) {
            return Ok(false);
        }
        settings_app::set_service_token(&db, token, "admin", "cli:admin")?;
        Ok(true)
    })();
    close(db, path);
    let changed =
        result.map_err(|e: ops_base::error::Error| format!("cannot set the service token: {e}"))?;
    let msg = if changed {
        format!(
            "service token from {source} set in {} (ops_settings.{SERVICE_API_TOKEN}); a \
             running server accepts it now and refuses the previous one",
            path.display()
        )
    } else {
        format!(
            "{} already holds the service token from {source}; nothing changed",
            path.display()
        )
    };
    writeln!(io.out, "{msg}").map_err(|e| e.to_string())
}

fn set_admin_password(
    path: &Path,
    user: Option<String>,
    stdin: bool,
    mut io: Io<'_>,
) -> Result<(), String> {
    require_db(path)?;
    let user = match user.or_else(|| env_value(io.env, "OPS_ADMIN_USER")) {
        Some(u) => u,
        None => read_line(&mut io, "admin user")?.ok_or(
            "no admin user given: use --user NAME, set OPS_ADMIN_USER, or write it as the first \
             line of standard input",
        )?,
    };
    accounts::check_username(&user).map_err(|e| format!("admin user {user:?}: {e}"))?;
    let (password, source) =
        secret_or_line(&mut io, "OPS_ADMIN_PASSWORD", "admin password", stdin)?;
    secrets::check_password_strength(&password)
        .map_err(|e| format!("refusing the password from {source}: {e}"))?;
    let db = open_db(path)?;
    let result = (|| {
        let before = ops_store::users::by_username(&*db.read()?, &user)?;
        accounts::ensure_admin(&db, &user, &password)?;
        let others: Vec<String> = ops_store::users::list(&*db.read()?)?
            .into_iter()
            .filter(|u| u.is_admin && u.username != user)
            .map(|u| u.username)
            .collect();
        Ok((before, others))
    })();
    close(db, path);
    let (before, others) = result
        .map_err(|e: ops_base::error::Error| format!("cannot set the admin password: {e}"))?;
    let what = match before {
        None => format!("global admin {user:?} created"),
        Some(u) if u.is_admin && secrets::verify_password(&password, &u.password_hash) => {
            format!("{user:?} is already a global admin with this password; nothing changed")
        }
        Some(u) if u.is_admin => {
            format!("password of global admin {user:?} changed; its sessions were ended")
        }
        Some(_) => {
            format!("{user:?} is now a global admin with the new password; its sessions were ended")
        }
    };
    writeln!(io.out, "{what} in {}", path.display()).map_err(|e| e.to_string())?;
    if !others.is_empty() {
        writeln!(
            io.out,
            "note: other global admins remain: {} (demote or delete them if this rotation \
             replaces them: PATCH or DELETE /api/users/:id as an admin)",
            others.join(", ")
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Stops the writer (checkpointing) and closes every connection, then gives
/// any `-wal`/`-shm` file this process created to the database's owner, so
/// that running this command as root never locks the service user out.
fn close(db: Db, path: &Path) {
    db.close();
    drop(db);
    let Ok(owner) = std::fs::metadata(path) else {
        return;
    };
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let side = PathBuf::from(side);
        if let Ok(m) = std::fs::metadata(&side) {
            if m.uid() != owner.uid() || m.gid() != owner.gid() {
                if let Err(e) =
                    std::os::unix::fs::chown(&side, Some(owner.uid()), Some(owner.gid()))
                {
                    eprintln!(
                        "ops-center: warning: {} belongs to another user than {} and cannot be \
                         given back ({e}); fix it with chown before the server starts",
                        side.display(),
                        path.display()
                    );
                }
            }
        }
    }
}

/// An online backup with `VACUUM INTO`: a consistent snapshot taken in one
/// read transaction, so the server keeps serving (and writing) meanwhile.
fn backup(path: &Path, to: &Path, out: &mut dyn Write) -> Result<(), String> {
    require_db(path)?;
    if to.exists() {
        return Err(format!(
            "{} exists; refusing to overwrite it (choose a new file name)",
            to.display()
        ));
    }
    if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(format!(
                "cannot write {}: folder {} does not exist",
                to.display(),
                dir.display()
            ));
        }
    }
    let to_text = to
        .to_str()
        .ok_or_else(|| format!("backup path {} is not valid UTF-8", to.display()))?;
    // Created first, empty and private (the copy holds the service token
    // and the password hashes); VACUUM INTO accepts an empty file.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let result = copy_into(path, to_text).and_then(|()| check_copy(to));
    match result {
        Ok((version, pages)) => {
            let bytes = std::fs::metadata(to).map(|m| m.len()).unwrap_or(0);
            writeln!(
                out,
                "backup of {} written to {} ({bytes} bytes, {pages} pages, schema version {version}, \
                 integrity check ok)",
                path.display(),
                to.display()
            )
            .map_err(|e| e.to_string())
        }
        Err(e) => {
            let _ = std::fs::remove_file(to);
            Err(e)
        }
    }
}

fn copy_into(path: &Path, to: &str) -> Result<(), String> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("cannot open database {}: {e}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    ops_store::backup::vacuum_into(&conn, to)
        .map_err(|e| format!("backup of {} failed: {e}", path.display()))
}

/// `admin restore`: checks the backup, makes sure no server holds the
/// database, moves the database (and its `-wal`/`-shm`) aside, puts a
/// fresh copy of the backup in its place, owned as the old one was, and
/// moves its task-id high-water mark past both files' and `margin` more,
/// so that no id given before the restore is given again.
fn restore(path: &Path, from: &Path, margin: i64, out: &mut dyn Write) -> Result<(), String> {
    if !from.is_file() {
        return Err(format!("{}: no such backup file", from.display()));
    }
    writeln!(out, "checking the backup first").map_err(|e| e.to_string())?;
    check(from, out).map_err(|e| format!("{e}; nothing was restored"))?;
    let side = |p: &Path, suffix: &str| {
        let mut s = p.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    // Held until the swap is done: no server may start on the file meanwhile.
    let _lock = match ops_store::db::FileLock::exclusive(path) {
        Ok(lock) => Some(lock),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            return Err(format!(
                "{} is in use by a running server: stop it first (systemctl stop ops-center), \
                 then restore",
                path.display()
            ))
        }
        Err(e) => return Err(format!("cannot lock {}: {e}", path.display())),
    };
    // Not only the server: any process with the file open (Litestream
    // replicating it, a sqlite3 shell) would go on with the old file, and
    // Litestream would replicate what it saw of it over the replica.
    match ops_store::db::lock_holder(path) {
        Ok(None) => {}
        Ok(Some(h)) => {
            return Err(format!(
                "{} is open in process {}{}: stop it first (with the package: systemctl stop \
                 ops-center-litestream.service ops-center.service), then restore; nothing was \
                 restored",
                path.display(),
                h.pid,
                h.name.map(|n| format!(" ({n})")).unwrap_or_default()
            ))
        }
        Err(e) => return Err(format!("cannot check the locks of {}: {e}", path.display())),
    }
    let owner = std::fs::metadata(path).ok();
    // The ids the replaced file gave, which the backup may not know of.
    let replaced_mark = owner.as_ref().and_then(|_| {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
        ops_store::tasks::id_high_water(&conn).ok()
    });
    let tmp = side(path, ".restoring");
    let _ = std::fs::remove_file(&tmp);
    copy_into(from, &tmp.display().to_string())?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot set the mode of {}: {e}", tmp.display()))?;
    if let Some(m) = &owner {
        if let Err(e) = std::os::unix::fs::chown(&tmp, Some(m.uid()), Some(m.gid())) {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!(
                "cannot give the restored file to the owner of {} ({e}); run as root or as that user",
                path.display()
            ));
        }
        let stamp = ops_base::time::rfc3339(ops_base::time::now_ms()).replace([':', '-'], "");
        let aside = side(path, &format!(".before-restore-{stamp}"));
        for suffix in ["", "-wal", "-shm"] {
            let (p, to) = (side(path, suffix), side(&aside, suffix));
            if p.exists() {
                std::fs::rename(&p, &to).map_err(|e| {
                    format!("cannot move {} aside to {}: {e}", p.display(), to.display())
                })?;
            }
        }
        writeln!(
            out,
            "the database it replaces is kept as {}",
            aside.display()
        )
        .map_err(|e| e.to_string())?;
    }
    std::fs::rename(&tmp, path)
        .map_err(|e| format!("cannot put {} in place: {e}", tmp.display()))?;
    let db = open_db(path)?;
    let raised = ops_app::serving::after_restore(&db, margin, replaced_mark.unwrap_or(0));
    close(db, path);
    let raised = raised.map_err(|e| {
        format!(
            "restored {} into {}, but cannot move its task ids forward: {e}; do not start the server on it \
             before this works (run the restore again)",
            from.display(),
            path.display()
        )
    })?;
    writeln!(
        out,
        "task ids: the next task gets an id above {} (the backup's highest was {}, the replaced file's {}, \
         margin {margin}), so that no id given before the restore is given again",
        raised.to,
        raised.from,
        replaced_mark.map_or("unknown".to_string(), |m| m.to_string())
    )
    .map_err(|e| e.to_string())?;
    writeln!(
        out,
        "restored {} into {}; start the server on it",
        from.display(),
        path.display()
    )
    .map_err(|e| e.to_string())
}

/// Litestream as the package runs it: its configuration, binary and the
/// environment the configuration expands.
struct Replica {
    config: PathBuf,
    bin: String,
    /// `OPS_DB`, `OPS_LITESTREAM_DIR` for the configuration (the replica URL
    /// and credentials come from this process's environment).
    env: Vec<(String, String)>,
}

impl Replica {
    /// `None` when replication is not configured (the server's rule:
    /// `OPS_REPLICA=litestream`, or `LITESTREAM_REPLICA_URL` set unless
    /// `OPS_REPLICA=none`).
    fn from_env(env: &dyn Fn(&str) -> Option<String>, db: &Path) -> Option<Replica> {
        let on = match env_value(env, "OPS_REPLICA").map(|v| v.to_ascii_lowercase()) {
            Some(v) if v == "litestream" => true,
            Some(_) => false,
            None => env_value(env, "LITESTREAM_REPLICA_URL").is_some(),
        };
        if !on {
            return None;
        }
        let db = std::path::absolute(db).unwrap_or_else(|_| db.to_path_buf());
        let dir = env_value(env, "OPS_LITESTREAM_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate::config::default_litestream_dir(&db));
        Some(Replica {
            config: env_value(env, "OPS_LITESTREAM_CONFIG")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(ops_store::db::replica::LITESTREAM_CONFIG)),
            bin: env_value(env, "OPS_LITESTREAM_BIN").unwrap_or_else(|| "litestream".into()),
            env: vec![
                ("OPS_DB".into(), db.display().to_string()),
                ("OPS_LITESTREAM_DIR".into(), dir.display().to_string()),
            ],
        })
    }

    /// `litestream restore -config CONFIG ARGS… DB`, its output passed on.
    fn restore(&self, db: &Path, args: &[&str]) -> Result<std::process::Output, String> {
        let db = std::path::absolute(db).unwrap_or_else(|_| db.to_path_buf());
        std::process::Command::new(&self.bin)
            .arg("restore")
            .arg("-config")
            .arg(&self.config)
            .args(args)
            .arg(&db)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| {
                format!(
                    "cannot run {} (replication is configured: install Litestream 0.5.9 or later, \
                     or set OPS_LITESTREAM_BIN): {e}",
                    self.bin
                )
            })
    }
}

fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
    .trim()
    .to_string()
}

/// Whether Litestream has ever replicated this file: it adds its own
/// table to every database it replicates (and so to every one restored
/// from a replica).
fn ever_replicated(path: &Path) -> Result<bool, String> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("cannot open database {}: {e}", path.display()))?;
    ops_store::backup::has_object(&conn, "_litestream_seq")
        .map_err(|e| format!("cannot read database {}: {e}", path.display()))
}

/// `restore-from-replica --if-missing`: the server's unit runs it before
/// the server starts.
fn restore_if_missing(path: &Path, replica: Option<&Replica>, io: Io<'_>) -> Result<(), String> {
    let Some(replica) = replica else {
        return writeln!(io.out, "replication is not configured: nothing to restore")
            .map_err(|e| e.to_string());
    };
    let side = |p: &Path, suffix: &str| {
        let mut s = p.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    let len = std::fs::metadata(path).map(|m| m.len()).ok();
    let wal = std::fs::metadata(side(path, "-wal")).map_or(0, |m| m.len());
    match len {
        Some(0) if wal == 0 => {
            // An empty file holds nothing; kept aside all the same.
            let stamp = ops_base::time::rfc3339(ops_base::time::now_ms()).replace([':', '-'], "");
            let aside = side(path, &format!(".empty-{stamp}"));
            std::fs::rename(path, &aside)
                .map_err(|e| format!("cannot move the empty {} aside: {e}", path.display()))?;
            for suffix in ["-wal", "-shm"] {
                let _ = std::fs::remove_file(side(path, suffix));
            }
            writeln!(
                io.out,
                "{} was empty (moved aside to {}): restoring it from the replica",
                path.display(),
                aside.display()
            )
            .map_err(|e| e.to_string())?;
        }
        Some(_) => {
            if ever_replicated(path)? {
                return writeln!(
                    io.out,
                    "{} exists and is replicated: nothing to restore",
                    path.display()
                )
                .map_err(|e| e.to_string());
            }
            // Never replicated: Litestream would make it the replica's
            // latest state. Fine when the replica is empty (replication
            // just turned on), not when it holds a database already.
            let plan = replica.restore(path, &["-dry-run"])?;
            let text = output_text(&plan);
            if !plan.status.success() {
                if text.contains("no matching backup files") {
                    return writeln!(
                        io.out,
                        "{} is not replicated yet and the replica is empty: Litestream starts it",
                        path.display()
                    )
                    .map_err(|e| e.to_string());
                }
                return Err(format!(
                    "cannot tell whether the replica already holds a database (litestream restore \
                     -dry-run failed: {text}); {} has never been replicated, so it is not started \
                     until that is known",
                    path.display()
                ));
            }
            if env_value(io.env, "OPS_DB_INIT").as_deref() == Some("1") {
                return writeln!(
                    io.out,
                    "{} has never been replicated and the replica already holds a database: \
                     OPS_DB_INIT=1, so this database will replace the replica's latest state",
                    path.display()
                )
                .map_err(|e| e.to_string());
            }
            return Err(format!(
                "{} has never been replicated, but the replica already holds a database: starting \
                 now would make this one the replica's latest state. To restore the replica's \
                 database here, move this file aside (mv {} {}.unreplicated) and start again: it is \
                 restored before the server starts. To replace the replica's latest state with \
                 this database on purpose, start once with OPS_DB_INIT=1",
                path.display(),
                path.display(),
                path.display()
            ));
        }
        None => {}
    }
    let o = replica.restore(path, &["-if-db-not-exists", "-if-replica-exists"])?;
    let text = output_text(&o);
    if !o.status.success() {
        return Err(format!(
            "litestream restore of {} failed: {text}",
            path.display()
        ));
    }
    if path.exists() {
        writeln!(io.out, "restored {} from the replica", path.display())
            .map_err(|e| e.to_string())?;
        give_to_folder_owner(path);
        check(path, io.out)
    } else {
        writeln!(
            io.out,
            "the replica holds no database: {} is not created here (the server refuses to start \
             a new one while replication is configured, unless told with --init or OPS_DB_INIT=1)",
            path.display()
        )
        .map_err(|e| e.to_string())
    }
}

/// Run as root (by hand), the restored file is made the folder's owner's,
/// as the server's files are: the server could not write a root-owned one.
fn give_to_folder_owner(path: &Path) {
    let Some(dir) = path.parent().and_then(|d| std::fs::metadata(d).ok()) else {
        return;
    };
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let p = PathBuf::from(p);
        if std::fs::metadata(&p).is_ok_and(|m| m.uid() != dir.uid()) {
            let _ = std::os::unix::fs::chown(&p, Some(dir.uid()), Some(dir.gid()));
        }
    }
}

/// `restore-from-replica`: the replica (at its latest state, or at a
/// point in time) into a new file beside the database, checked, then put
/// in place by `restore`.
fn restore_from_replica(
    path: &Path,
    replica: &Replica,
    timestamp: Option<String>,
    txid: Option<String>,
    out: &mut dyn Write,
) -> Result<(), String> {
    let mut side = path.as_os_str().to_owned();
    side.push(format!(".from-replica-{}", std::process::id()));
    let tmp = PathBuf::from(side);
    let _ = std::fs::remove_file(&tmp);
    let tmp_s = tmp.display().to_string();
    let mut args = vec!["-o", tmp_s.as_str()];
    if let Some(t) = &timestamp {
        args.extend(["-timestamp", t.as_str()]);
    }
    if let Some(t) = &txid {
        args.extend(["-txid", t.as_str()]);
    }
    writeln!(
        out,
        "restoring the replica{} into {}",
        match (&timestamp, &txid) {
            (Some(t), _) => format!(" as it was at {t}"),
            (_, Some(t)) => format!(" up to transaction {t}"),
            _ => " at its latest state".into(),
        },
        tmp.display()
    )
    .map_err(|e| e.to_string())?;
    let o = replica.restore(path, &args)?;
    if !o.status.success() || !tmp.exists() {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!(
            "litestream restore failed: {}; nothing was restored",
            output_text(&o)
        ));
    }
    let result = restore(path, &tmp, ops_app::serving::ID_MARGIN, out);
    for suffix in ["", "-wal", "-shm"] {
        let mut p = tmp.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    result
}

/// `admin check`: prints each check's result; any failure is the error.
fn check(path: &Path, out: &mut dyn Write) -> Result<(), String> {
    require_db(path)?;
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("cannot open database {}: {e}", path.display()))?;
    let fail = |what: &str, e: ops_base::error::Error| format!("{what}: {e}");
    let mut problems = Vec::new();
    let mut say = |line: String| writeln!(out, "{line}").map_err(|e| e.to_string());
    say(format!("database {}", path.display()))?;
    match ops_store::backup::check_copy(&conn) {
        Ok((version, pages)) => {
            say(format!("integrity check: ok ({pages} pages)"))?;
            let latest = ops_store::db::migrate::latest();
            if version == latest {
                say(format!("schema version: {version} (current)"))?;
            } else {
                say(format!(
                    "schema version: {version}, this binary expects {latest}"
                ))?;
                problems.push("schema version");
            }
        }
        Err(e) => {
            say(format!("integrity check: FAILED ({e})"))?;
            problems.push("integrity");
        }
    }
    let tasks = ops_store::backup::task_rows(&conn).map_err(|e| fail("cannot count tasks", e))?;
    let mismatches = ops_store::backup::task_count_mismatches(&conn)
        .map_err(|e| fail("cannot compare task counts", e))?;
    if mismatches.is_empty() {
        say(format!("task counts: ok ({tasks} tasks)"))?;
    } else {
        for (group, counted, rows) in &mismatches {
            say(format!(
                "task counts: {group}: task_counts says {counted}, the rows are {rows}"
            ))?;
        }
        problems.push("task counts");
    }
    // Not a fault of the file: what its next start will do about task ids.
    if let (Ok(serving), Ok(mark)) = (
        ops_store::serve_marker::serving(&conn),
        ops_store::tasks::id_high_water(&conn),
    ) {
        say(if serving {
            format!(
                "last stop: not clean (a crash, or a copy of a file a server was writing); the next start \
                 continues task ids above {} to skip any given since",
                mark + ops_app::serving::ID_MARGIN
            )
        } else {
            format!("last stop: clean (task ids continue above {mark})")
        })?;
    }
    if problems.is_empty() {
        say("all checks passed".into())
    } else {
        Err(format!(
            "{} failed its checks: {}",
            path.display(),
            problems.join(", ")
        ))
    }
}

/// Opens the copy on its own and checks it: (schema version, page count).
fn check_copy(to: &Path) -> Result<(i64, i64), String> {
    let conn = Connection::open_with_flags(to, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("the backup {} cannot be read back: {e}", to.display()))?;
    let (version, pages) = ops_store::backup::check_copy(&conn)
        .map_err(|e| format!("the backup {} is not usable: {e}", to.display()))?;
    if version == 0 {
        return Err(format!(
            "the backup {} holds no OPS Center schema",
            to.display()
        ));
    }
    Ok((version, pages))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str], accepted: &[&str]) -> Result<Options, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse_options("x", &args, accepted)
    }

    #[test]
    fn options_are_checked() {
        let o = opts(&["--db", "/a.db", "--to=/b.db"], &["--db", "--to"]).unwrap();
        assert_eq!(o.db.as_deref(), Some("/a.db"));
        assert_eq!(o.to.as_deref(), Some("/b.db"));
        assert!(opts(&["--user", "x"], &["--db"])
            .unwrap_err()
            .contains("unknown option"));
        assert!(opts(&["--db"], &["--db"])
            .unwrap_err()
            .contains("needs a value"));
        assert!(opts(&["--db", " "], &["--db"])
            .unwrap_err()
            .contains("needs a value"));
        for flag in ["--token", "--password=x", "--service-token"] {
            assert!(opts(&[flag, "v"], &["--db"])
                .unwrap_err()
                .contains("not taken from the command line"));
        }
    }

    #[test]
    fn db_path_precedence() {
        let none = |_: &str| None;
        let env = |k: &str| (k == "OPS_DB").then(|| "/env.db".to_string());
        assert_eq!(db_path(None, &none), PathBuf::from(DEFAULT_DB));
        assert_eq!(db_path(None, &env), PathBuf::from("/env.db"));
        assert_eq!(
            db_path(Some("/flag.db".into()), &env),
            PathBuf::from("/flag.db")
        );
    }

    #[test]
    fn secrets_come_from_env_before_stdin() {
        let env = |k: &str| (k == "OPS_SERVICE_TOKEN").then(|| "  from-env  ".to_string());
        let mut input: &[u8] = b"from-stdin\r\nsecond\nthird\n";
        let mut out = Vec::new();
        let mut io = Io {
            env: &env,
            input: &mut input,
            interactive: false,
            out: &mut out,
        };
        let mut get = |key: &str, stdin: bool| secret_or_line(&mut io, key, "secret", stdin);
        assert_eq!(
            get("OPS_SERVICE_TOKEN", false).unwrap(),
            ("from-env".into(), "OPS_SERVICE_TOKEN".into())
        );
        assert_eq!(
            get("OPS_ADMIN_PASSWORD", false).unwrap(),
            ("from-stdin".into(), "standard input".into())
        );
        // --stdin: standard input even though the variable is set.
        assert_eq!(
            get("OPS_SERVICE_TOKEN", true).unwrap(),
            ("second".into(), "standard input".into())
        );
        assert_eq!(get("OPS_ADMIN_PASSWORD", false).unwrap().0, "third");
        let err = get("OPS_ADMIN_PASSWORD", false).unwrap_err();
        assert!(err.contains("set OPS_ADMIN_PASSWORD"), "{err}");
        let err = get("OPS_SERVICE_TOKEN", true).unwrap_err();
        assert!(err.contains("--stdin"), "{err}");
    }

    #[test]
    fn stdin_is_a_flag_only_where_a_secret_is_read() {
        let o = opts(&["--stdin", "--db", "/a.db"], &["--db", "--stdin"]).unwrap();
        assert!(o.stdin);
        assert!(opts(&["--stdin=yes"], &["--stdin"])
            .unwrap_err()
            .contains("takes no value"));
        assert!(opts(&["--stdin"], &["--db", "--to"])
            .unwrap_err()
            .contains("unknown option"));
    }
}
