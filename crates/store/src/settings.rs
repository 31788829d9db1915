use std::collections::HashMap;

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
