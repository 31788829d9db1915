use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

use ops_base::error::Result;
use ops_domain::settings::Settings;

pub fn load(conn: &Connection) -> Result<Settings> {
    Ok(Settings::from_map(&all(conn)?))
}

pub fn all(conn: &Connection) -> Result<HashMap<String, String>> {
    let mut stmt = conn.prepare_cached("SELECT key, value FROM ops_settings")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn get(conn: &Connection, key: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT value FROM ops_settings WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

pub fn set(conn: &Connection, key: &str, value: &str, now: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO ops_settings(key, value, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )?
    .execute(params![key, value, now])?;
    Ok(())
}

/// The settings as the writer's connection last read them, so that a claim
/// does not read and parse every row of `ops_settings`.
///
/// It is right whoever wrote: this process's settings writes (all in
/// `app::settings`) call [`Cache::forget`], and a commit by any other
/// connection — `ops-center admin` in another process, a test writing
/// behind the server — moves the connection's `PRAGMA data_version`, which
/// is checked on every use. Migrations run before the cache exists.
/// Only the writer's connection may use it: `data_version` is per
/// connection.
#[derive(Default)]
pub struct Cache(Mutex<Option<(i64, Arc<Settings>)>>);

impl Cache {
    pub fn load(&self, conn: &Connection) -> Result<Arc<Settings>> {
        let version: i64 = conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?;
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((v, s)) = &*slot {
            if *v == version {
                return Ok(s.clone());
            }
        }
        let s = Arc::new(load(conn)?);
        *slot = Some((version, s.clone()));
        Ok(s)
    }

    /// The next [`Cache::load`] reads the table again.
    pub fn forget(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}
