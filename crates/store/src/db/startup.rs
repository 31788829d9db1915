//! What `serve` checks of the database file before it serves it: a file
//! that is missing or empty is created only when that cannot replace a
//! replica's data, and a damaged file is refused with what is wrong and
//! how to recover, instead of being served and written.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

/// What the start-up check is told.
pub struct StartCheck<'a> {
    pub path: &'a Path,
    /// `--init` / `OPS_DB_INIT=1`.
    pub init: bool,
    /// A replica is kept (Litestream): a new, empty database would become
    /// its latest state.
    pub replicated: bool,
    /// `--check-full`: `integrity_check` instead of `quick_check`.
    pub full: bool,
}

/// What the file turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// No file (or an empty one, with `--init`): the server creates the
    /// schema.
    New,
    /// A database that passed the check.
    Checked,
    /// A database that could not be opened read-only to be checked (its
    /// folder is not writable for the `-shm`, say): the server opens it,
    /// which says what is wrong, then checks it with [`check_open`].
    Unchecked,
}

/// The most lines of a failed check quoted in the refusal.
const DAMAGE_LINES: usize = 8;

/// Checks the file at `c.path`; an `Err` is the whole refusal, for the
/// operator, naming the file, what is wrong and what to do.
pub fn check(c: &StartCheck<'_>) -> Result<Found, String> {
    let path = c.path;
    let meta = match std::fs::metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("cannot read database {}: {e}", path.display())),
    };
    match meta {
        None if c.replicated && !c.init => Err(format!(
            "database {} does not exist, and replication is configured (OPS_REPLICA / \
             LITESTREAM_REPLICA_URL): a new, empty database would become the replica's latest \
             state. Restore it from the replica first: {} (the shipped unit does this before \
             starting). To start a new database on purpose, run `ops-center serve --init` once, \
             or set OPS_DB_INIT=1 for one start",
            path.display(),
            litestream_restore(path)
        )),
        None => Ok(Found::New),
        Some(m) if !m.is_file() => Err(format!(
            "database {} is not a regular file; give the database file with --db PATH or OPS_DB",
            path.display()
        )),
        Some(m) if m.len() == 0 && !has_wal_frames(path) => {
            if c.init {
                log::warn!(
                    "database {} is an empty file: initializing it (--init / OPS_DB_INIT=1)",
                    path.display()
                );
                return Ok(Found::New);
            }
            let replica = if c.replicated {
                format!(
                    " Replication is configured: starting on it would replace the replica's \
                     latest state with an empty database. Move the empty file aside and restore \
                     from the replica: {} (the shipped unit restores a missing file before \
                     starting).",
                    litestream_restore(path)
                )
            } else {
                String::new()
            };
            Err(format!(
                "database {} is an empty (zero-length) file: it holds no data, and it is not \
                 treated as a new database, since an empty file usually means a lost or cut \
                 one.{replica} Restore a backup with `ops-center admin restore --from BACKUP`. \
                 To start a new database in its place on purpose, run `ops-center serve --init` \
                 once, or set OPS_DB_INIT=1 for one start",
                path.display()
            ))
        }
        Some(_) => {
            let conn = Connection::open_with_flags(
                path,
                // Read-only: a damaged file is left exactly as it was found.
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            );
            match conn.and_then(|conn| integrity(&conn, path, c.full)) {
                Ok(lines) if lines == ["ok"] => Ok(Found::Checked),
                Ok(lines) => Err(damaged(path, c.full, &lines, c.replicated)),
                Err(e) if is_damage(&e) => {
                    Err(damaged(path, c.full, &[e.to_string()], c.replicated))
                }
                Err(e) => {
                    log::debug!(
                        "database {}: not checked before opening: {e}",
                        path.display()
                    );
                    Ok(Found::Unchecked)
                }
            }
        }
    }
}

/// Whether the file's `-wal` holds anything: a main file cut to zero
/// with its WAL beside it may still hold data, so it is checked, not
/// refused as empty.
fn has_wal_frames(path: &Path) -> bool {
    std::fs::metadata(side(path, "-wal")).is_ok_and(|m| m.len() > 0)
}

fn side(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Whether `e` says the file is not a sound database.
fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

/// The check of a file that could only be checked once open (see
/// [`Found::Unchecked`]), on one of the server's connections.
pub fn check_open(conn: &Connection, c: &StartCheck<'_>) -> Result<(), String> {
    match integrity(conn, c.path, c.full) {
        Ok(lines) if lines == ["ok"] => Ok(()),
        Ok(lines) => Err(damaged(c.path, c.full, &lines, c.replicated)),
        Err(e) => Err(damaged(c.path, c.full, &[e.to_string()], c.replicated)),
    }
}

/// `PRAGMA quick_check` (or `integrity_check`): its lines, `["ok"]` when
/// nothing is wrong, or the error that stopped it.
fn integrity(conn: &Connection, path: &Path, full: bool) -> rusqlite::Result<Vec<String>> {
    let pragma = if full {
        "integrity_check"
    } else {
        "quick_check"
    };
    conn.busy_timeout(std::time::Duration::from_millis(
        super::BUSY_TIMEOUT_MS.into(),
    ))?;
    let started = std::time::Instant::now();
    let mut stmt = conn.prepare(&format!("PRAGMA {pragma}({})", DAMAGE_LINES + 1))?;
    let lines = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    log::info!(
        "database {}: {pragma} {} in {} ms",
        path.display(),
        if lines == ["ok"] { "ok" } else { "FAILED" },
        started.elapsed().as_millis()
    );
    Ok(lines)
}

/// The refusal of a damaged file.
fn damaged(path: &Path, full: bool, lines: &[String], replicated: bool) -> String {
    let mut shown: Vec<String> = lines
        .iter()
        .flat_map(|l| l.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if shown.len() > DAMAGE_LINES {
        shown.truncate(DAMAGE_LINES);
        shown.push("…".into());
    }
    let check = if full {
        "integrity_check"
    } else {
        "quick_check"
    };
    let replica = if replicated {
        format!(
            "; or from the replica: {}, then `ops-center admin restore --from FILE`",
            litestream_restore_to(path, "FILE")
        )
    } else {
        String::from("; or from a Litestream replica: `litestream restore -config CONFIG -o FILE DB`, then `ops-center admin restore --from FILE`")
    };
    format!(
        "database {} is damaged and is not served ({check} found: {}). Nothing was written \
         to it. `ops-center admin check --db {}` shows the damage. Restore the last good copy, \
         with the server stopped: a backup with `ops-center admin restore --from BACKUP`{replica}",
        path.display(),
        shown.join("; "),
        path.display()
    )
}

/// The Litestream command that restores `path` in place.
fn litestream_restore(path: &Path) -> String {
    format!(
        "`litestream restore -config {} -if-replica-exists {}`",
        super::replica::LITESTREAM_CONFIG,
        path.display()
    )
}

/// The Litestream command that restores `path`'s replica into `to`.
fn litestream_restore_to(path: &Path, to: &str) -> String {
    format!(
        "`litestream restore -config {} -o {to} {}`",
        super::replica::LITESTREAM_CONFIG,
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_at(path: &Path, init: bool, replicated: bool) -> Result<Found, String> {
        check(&StartCheck {
            path,
            init,
            replicated,
            full: false,
        })
    }

    #[test]
    fn missing_and_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ops.db");
        assert_eq!(check_at(&db, false, false), Ok(Found::New));
        let e = check_at(&db, false, true).unwrap_err();
        assert!(e.contains("does not exist") && e.contains("--init"), "{e}");
        assert!(
            e.contains("OPS_DB_INIT=1") && e.contains("litestream restore"),
            "{e}"
        );
        assert_eq!(check_at(&db, true, true), Ok(Found::New));
        std::fs::write(&db, b"").unwrap();
        for replicated in [false, true] {
            let e = check_at(&db, false, replicated).unwrap_err();
            assert!(
                e.contains("empty (zero-length)") && e.contains("--init"),
                "{e}"
            );
            assert_eq!(e.contains("replica"), replicated, "{e}");
        }
        assert_eq!(check_at(&db, true, false), Ok(Found::New));
    }

    #[test]
    fn a_damaged_file_is_refused_with_the_damage_and_the_way_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ops.db");
        {
            let c = Connection::open(&db).unwrap();
            c.execute_batch("CREATE TABLE t(x); CREATE INDEX tx ON t(x);")
                .unwrap();
            for i in 0..2000 {
                c.execute("INSERT INTO t VALUES (?1)", [format!("{i:0>200}")])
                    .unwrap();
            }
        }
        assert_eq!(check_at(&db, false, false), Ok(Found::Checked));
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
            for page in [3u64, 7, 11] {
                f.seek(SeekFrom::Start(page * 4096)).unwrap();
                f.write_all(&[0x5a; 4096]).unwrap();
            }
        }
        let e = check_at(&db, false, false).unwrap_err();
        assert!(e.contains("is damaged"), "{e}");
        assert!(e.contains("admin restore --from"), "{e}");
        assert!(e.contains("litestream restore"), "{e}");
        assert!(!e.contains("internal error"), "{e}");
        // --init never initializes a damaged file.
        assert!(check_at(&db, true, false).is_err());
    }
}
