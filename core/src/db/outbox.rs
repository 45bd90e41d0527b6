//! The outbox side of every local write: the device's hybrid logical clock, kept in
//! `outpost_meta` and advanced in the writing transaction, and the `sync_outbox` row that queues
//! the written entity for push. Writes of documents, conversations and messages call these in
//! their own transaction, so the outbox never misses a committed change.

use rusqlite::{params, Connection, OptionalExtension};

use super::now_ms;
use crate::error::Result;
use crate::hlc;
use crate::model::Kind;

/// The stamp for a local write: reads and advances the clock kept in `outpost_meta`.
pub(crate) fn next_hlc(tx: &Connection, skew_ms: i64) -> Result<i64> {
    let last = read_hlc(tx)?;
    let next = hlc::tick(last, now_ms() + skew_ms);
    write_hlc(tx, next)?;
    Ok(next)
}

pub(crate) fn read_hlc(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT CAST(value AS INTEGER) FROM outpost_meta WHERE key = 'hlc'")?
        .query_row([], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

pub(crate) fn write_hlc(conn: &Connection, stamp: i64) -> Result<()> {
    put_meta(conn, "hlc", &stamp.to_string())
}

/// Sets a key of `outpost_meta`.
pub(crate) fn put_meta(conn: &Connection, key: &str, value: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO outpost_meta (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// Queues an entity for push (a newer edit replaces an older queued one).
pub(crate) fn enqueue(tx: &Connection, kind: Kind, id: &str, hlc: i64) -> Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO sync_outbox (kind, entity_id, hlc) VALUES (?1, ?2, ?3)",
        params![kind.as_str(), id, hlc],
    )?;
    Ok(())
}
