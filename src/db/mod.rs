//! Opening the SQLite file: pragmas, migrations, the reader pool and the
//! single writer thread.

mod migrate;
pub(crate) use writer::panic_text;
mod writer;

use std::path::Path;
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::Connection;

use crate::error::{Error, Result};
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
}

const BUSY_TIMEOUT_MS: u32 = 5_000;

impl Db {
    /// Opens (creating if needed) the file, migrates it and starts the
    /// writer thread. `readers` is the size of the read pool.
    pub fn open(path: &Path, sync: Sync, readers: u32) -> Result<Db> {
        let mut conn = Connection::open(path).map_err(|e| {
            Error::Internal(format!("cannot open database {}: {e}", path.display()))
        })?;
        configure_writer(&conn, sync)?;
        migrate::run(&mut conn)?;

        let manager = SqliteConnectionManager::file(path).with_init(|c| {
            c.execute_batch(&format!(
                "PRAGMA busy_timeout={BUSY_TIMEOUT_MS};
                 PRAGMA foreign_keys=ON;
                 PRAGMA cache_size=-4000;
                 PRAGMA query_only=ON;"
            ))
        });
        let readers = r2d2::Pool::builder()
            .max_size(readers.max(1))
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(10))
            .build(manager)?;
        Ok(Db {
            readers,
            writer: Writer::start(conn),
        })
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
        self.writer.stop();
    }
}

fn configure_writer(conn: &Connection, sync: Sync) -> Result<()> {
    let sync = match sync {
        Sync::Normal => "NORMAL",
        Sync::Full => "FULL",
    };
    // journal_mode answers with a row, so it is queried, not batched.
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
         PRAGMA journal_size_limit=67108864;"
    ))?;
    Ok(())
}
