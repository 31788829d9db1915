//! Opening the SQLite file: pragmas, migrations, the reader pool and the
//! single writer thread.

pub mod bus;
pub mod cache;
mod checkpoint;
pub mod migrate;
pub mod replica;
pub mod space;
pub mod startup;
pub use writer::panic_text;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::Connection;

use ops_base::error::{Error, Result, Storage};
pub use writer::Writer;

/// How durable a commit is. `Normal` survives a crash of the process;
/// `Full` also survives a power loss, at the cost of an fsync per commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sync {
    Normal,
    Full,
}

impl Sync {
    pub fn parse(s: &str) -> Option<Sync> {
        match s.to_ascii_lowercase().as_str() {
            "normal" => Some(Sync::Normal),
            "full" => Some(Sync::Full),
            _ => None,
        }
    }
}

pub type Pool = r2d2::Pool<SqliteConnectionManager>;
pub type PooledConn = r2d2::PooledConnection<SqliteConnectionManager>;

/// The database: many readers, one writer.
pub struct Db {
    readers: Pool,
    pub writer: Writer,
    /// Where the writer publishes committed events.
    pub bus: Arc<bus::Bus>,
    /// The workers as health lists them, parsed once per heartbeat.
    pub workers: cache::WorkerCache<ops_protocol::health::WorkerListing>,
    /// The settings as the writer last read them (for the claim path).
    pub settings: Arc<cache::SettingsCache>,
    /// The claim path's stale-dispatching scan, at most once a second.
    pub stale_scan: Arc<ops_base::time::Throttle>,
    /// How far behind the replica is (off unless `serve` starts it).
    pub replica: replica::Monitor,
    /// The space kept for a full disk (none unless `serve` starts it).
    pub space: Arc<space::Space>,
    checkpointer: checkpoint::Checkpointer,
    /// Litestream replicates the file: the writer never truncates the WAL.
    replicated: Arc<std::sync::atomic::AtomicBool>,
    path: PathBuf,
}

/// What health reports about the file.
pub struct StorageStatus {
    /// Why writes fail, while they do.
    pub fault: Option<Storage>,
    pub db_bytes: u64,
    pub wal_bytes: u64,
}

pub(crate) const BUSY_TIMEOUT_MS: u32 = 5_000;
/// Page cache of each reader connection, in KiB. The pool holds one reader
/// per handler thread plus two, and a reader that pages through a large
/// table fills its cache, so this bounds the server's memory: 10 readers
/// of 2 MiB and the writer's 8 MiB. Reads that miss it are served from the
/// operating system's file cache.
const READER_CACHE_KIB: u32 = 2000;
/// The writer's automatic checkpoint, when the WAL holds this many pages
/// (16 MiB of 4 KiB pages; SQLite's default is 1000), is the backstop of
/// the checkpointer thread (`checkpoint.rs`), which has by then copied all
/// but the last frames: it completes at once, and the WAL starts again
/// from its head (a checkpoint run beside a writer that never pauses
/// would never catch up with it).
const WAL_AUTOCHECKPOINT_PAGES: u32 = 4000;
/// The claim path scans for stale `dispatching` tasks at most this often;
/// the watchdog's timer and `POST /api/dispatch/reconcile-stale` still scan
/// whenever they run. Staleness is counted in minutes, so a second late
/// changes nothing a worker or an operator can see.
const STALE_SCAN_EVERY_MS: i64 = 1000;
/// Prepared statements kept per connection. The writer runs every use
/// case's statements; with rusqlite's default of 16 they pushed each other
/// out and were parsed again on every request.
const STATEMENT_CACHE: usize = 128;

impl Db {
    /// Opens (creating if needed) the file, migrates it and starts the
    /// writer thread. `readers` is the size of the read pool.
    pub fn open(path: &Path, sync: Sync, readers: u32) -> Result<Db> {
        // An operator's error to fix, not a bug: said as plainly as a bad
        // setting is.
        let not_writable = |cause: String| Error::BadRequest {
            code: "database_not_writable",
            message: not_writable(path, &cause),
        };
        let mut conn = Connection::open(path).map_err(|e| match Storage::of(&e) {
            Some(s) if s != Storage::Corrupt => not_writable(e.to_string()),
            _ => Error::Internal(format!("cannot open database {}: {e}", path.display())),
        })?;
        // SQLite opens a file it may read but not write read-only, silently.
        if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
            return Err(not_writable("the file is read-only for this user".into()));
        }
        let setup = incremental_vacuum(&conn)
            .and_then(|()| configure_writer(&conn, sync))
            .and_then(|()| migrate::run(&mut conn));
        match setup {
            Err(Error::StorageUnavailable(Storage::Corrupt)) => {
                return Err(Error::Internal(format!(
                    "database {} is damaged: {}",
                    path.display(),
                    Storage::Corrupt.describe()
                )))
            }
            Err(Error::StorageUnavailable(s)) => return Err(not_writable(s.describe().into())),
            _ => {}
        }
        setup?;

        let manager = SqliteConnectionManager::file(path).with_init(|c| {
            c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            c.execute_batch(&format!(
                "PRAGMA busy_timeout={BUSY_TIMEOUT_MS};
                 PRAGMA foreign_keys=ON;
                 PRAGMA cache_size=-{READER_CACHE_KIB};
                 PRAGMA query_only=ON;"
            ))
        });
        let readers = r2d2::Pool::builder()
            .max_size(readers.max(1))
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(10))
            .build(manager)?;
        let bus = Arc::new(bus::Bus::default());
        let commits = checkpoint::Commits::default();
        let space = Arc::new(space::Space::default());
        let replicated = Arc::new(std::sync::atomic::AtomicBool::new(false));
        Ok(Db {
            readers,
            checkpointer: checkpoint::Checkpointer::start(
                path,
                commits.clone(),
                replicated.clone(),
            )?,
            writer: Writer::start(
                conn,
                bus.clone(),
                commits,
                space.clone(),
                replicated.clone(),
            )?,
            bus,
            workers: Default::default(),
            settings: Default::default(),
            stale_scan: Arc::new(ops_base::time::Throttle::new(STALE_SCAN_EVERY_MS)),
            replica: replica::Monitor::default(),
            space,
            replicated,
            path: path.to_path_buf(),
        })
    }

    /// Litestream replicates this file: from now on this process never
    /// checkpoints it (no checkpointer thread, no automatic checkpoint, none
    /// after a full disk or at shutdown); Litestream's checkpoints do.
    pub fn set_replicated(&self) {
        self.replicated
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether writes currently fail, and the size of the file and its WAL.
    pub fn storage(&self) -> StorageStatus {
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        StorageStatus {
            // Writes held for space count as a full disk even before one
            // is refused.
            fault: self
                .writer
                .fault()
                .or(self.space.gated().then_some(Storage::DiskFull)),
            db_bytes: size(&self.path),
            wal_bytes: size(Path::new(&wal)),
        }
    }

    /// A read-only connection from the pool (`query_only` is on: a write
    /// through it fails, so every write goes through the writer).
    pub fn read(&self) -> Result<PooledConn> {
        Ok(self.readers.get()?)
    }

    /// Runs `f` in the writer thread inside its own savepoint of the next
    /// group commit and returns its result once that commit is durable.
    pub fn write<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.writer.run(f)
    }

    /// Finishes every queued write, checkpoints the WAL into the main file
    /// and stops the writer thread.
    pub fn close(&self) {
        self.replica.stop();
        self.space.stop();
        self.checkpointer.stop();
        self.writer.stop();
    }
}

/// The start-up error for a database this process cannot write: names the
/// file, the user and the fix.
fn not_writable(path: &Path, cause: &str) -> String {
    let user = ops_base::os_user::current_user();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    format!(
        "database {} cannot be written by user {user} ({cause}). The file, its -wal and -shm \
         files and the folder {} must be writable by the user the server runs as: e.g. \
         `chown -R {user} {}`, or run the server as the file's owner",
        path.display(),
        dir.display(),
        dir.display()
    )
}

/// A shared `flock` on the database file, held by a running server for its
/// whole life, so that `admin restore` can tell that a server holds the
/// file (it asks for an exclusive one). `flock` locks are independent of
/// SQLite's own (`fcntl`) locks.
pub struct FileLock {
    /// The lock lives as long as this descriptor.
    _file: std::fs::File,
}

impl FileLock {
    /// The server's lock: shared, so nothing but a restore is refused.
    pub fn shared(path: &Path) -> std::io::Result<FileLock> {
        FileLock::take(path, libc::LOCK_SH)
    }

    /// An exclusive lock, or `WouldBlock` while a server holds the file.
    pub fn exclusive(path: &Path) -> std::io::Result<FileLock> {
        FileLock::take(path, libc::LOCK_EX)
    }

    fn take(path: &Path, how: libc::c_int) -> std::io::Result<FileLock> {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(path)?;
        // SAFETY: flock on a descriptor this function owns; the lock goes
        // with the descriptor when the file is dropped.
        if unsafe { libc::flock(f.as_raw_fd(), how | libc::LOCK_NB) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(FileLock { _file: f })
    }
}

/// A process that holds one of SQLite's locks on a database: any open
/// connection (the server, Litestream, a `sqlite3` shell) holds at least
/// the shared "dead man switch" lock of its `-shm` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    pub pid: i32,
    /// `/proc/<pid>/comm`, when it can be read.
    pub name: Option<String>,
}

/// SQLite's lock bytes (os_unix.c): in the `-shm` file, the eight WAL
/// locks at 120..128 and the dead-man switch at 128 that every connection
/// holds shared while it is open; in the database file, the pending,
/// reserved and shared bytes from 1 GiB on.
const SHM_LOCKS: (i64, i64) = (120, 9);
const DB_LOCKS: (i64, i64) = (0x4000_0000, 512);

/// The first other process holding a lock on `path` or its `-shm`, if any.
/// `fcntl(F_GETLK)` reports the locks of other processes only, which is
/// what a restore must know. Call it only while this process has no SQLite
/// connection to the file: closing the descriptors it opens drops every
/// fcntl lock this process holds on those files.
pub fn lock_holder(path: &Path) -> std::io::Result<Option<LockHolder>> {
    let mut shm = path.as_os_str().to_owned();
    shm.push("-shm");
    for (file, (start, len)) in [
        (PathBuf::from(shm), SHM_LOCKS),
        (path.to_path_buf(), DB_LOCKS),
    ] {
        let f = match std::fs::File::open(&file) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if let Some(pid) = fcntl_holder(&f, start, len)? {
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .ok()
                .map(|s| s.trim().to_string());
            return Ok(Some(LockHolder { pid, name }));
        }
    }
    Ok(None)
}

fn fcntl_holder(f: &std::fs::File, start: i64, len: i64) -> std::io::Result<Option<i32>> {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain struct for fcntl, zeroed, then filled in.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = start as libc::off_t;
    lock.l_len = len as libc::off_t;
    // SAFETY: F_GETLK on a descriptor this function borrows, with a valid
    // flock it only reads and writes.
    if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETLK, &mut lock) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((lock.l_type != libc::F_UNLCK as libc::c_short).then_some(lock.l_pid))
}

/// Pages freed by deletions (event retention) go back to the file system
/// in small steps (`PRAGMA incremental_vacuum`), so the file shrinks. A new
/// file gets the mode before anything is written to it (WAL mode too); an
/// older one is rebuilt once by a `VACUUM`, as the mode requires.
fn incremental_vacuum(conn: &Connection) -> Result<()> {
    const INCREMENTAL: i64 = 2;
    let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
    if mode == INCREMENTAL {
        return Ok(());
    }
    conn.execute_batch("PRAGMA auto_vacuum=INCREMENTAL")?;
    // The pragma alone sets the mode until a table exists (a new file may
    // already hold its first page, written by WAL mode); after, only a
    // VACUUM applies it.
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
    if tables > 0 {
        log::info!("database: switching to incremental auto-vacuum (a one-time VACUUM)");
        conn.execute_batch("VACUUM")?;
    }
    Ok(())
}

fn configure_writer(conn: &Connection, sync: Sync) -> Result<()> {
    let sync = match sync {
        Sync::Normal => "NORMAL",
        Sync::Full => "FULL",
    };
    // journal_mode answers with a row, so it is queried, not batched.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Internal(format!(
            "database refused WAL mode (got {mode})"
        )));
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous={sync};
         PRAGMA busy_timeout={BUSY_TIMEOUT_MS};
         PRAGMA foreign_keys=ON;
         PRAGMA cache_size=-8000;
         PRAGMA journal_size_limit=67108864;
         PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES};"
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_and_older_files_end_in_incremental_auto_vacuum() {
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| -> i64 {
            Connection::open(p)
                .unwrap()
                .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
                .unwrap()
        };
        let fresh = dir.path().join("new.db");
        Db::open(&fresh, Sync::Normal, 1).unwrap().close();
        assert_eq!(mode(&fresh), 2);
        // A file made before, in WAL mode without auto-vacuum, with data.
        let old = dir.path().join("old.db");
        {
            let c = Connection::open(&old).unwrap();
            c.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
                .unwrap();
            c.execute_batch("CREATE TABLE keep(x); INSERT INTO keep VALUES (42);")
                .unwrap();
        }
        assert_eq!(mode(&old), 0);
        Db::open(&old, Sync::Normal, 1).unwrap().close();
        assert_eq!(mode(&old), 2);
        let x: i64 = Connection::open(&old)
            .unwrap()
            .query_row("SELECT x FROM keep", [], |r| r.get(0))
            .unwrap();
        assert_eq!(x, 42);
    }
}
