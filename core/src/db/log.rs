//! `ann_log`, the log of changed chunk vectors that every derived index catches up from: its
//! head, its first row left after a trim, and whether it still covers an index's position.

use rusqlite::Connection;

use crate::error::Result;

/// The last `ann_log` id: every chunk insert and delete moves it.
pub(crate) fn max_log_id(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT coalesce(max(id), 0) FROM ann_log")?
        .query_row([], |r| r.get(0))?)
}

/// Whether the log still holds every row after `applied`: `Store::trim_index_log` may have
/// removed rows that an index saved (or loaded in another process) before the trim needs, and
/// such an index is rebuilt instead of caught up. Log ids have no gaps (AUTOINCREMENT, and a
/// trim keeps the newest row), so the first id left says what is gone.
pub(crate) fn log_covers(conn: &Connection, applied: i64) -> Result<bool> {
    let first = first_log_id(conn)?;
    Ok(first == 0 || first <= applied + 1)
}

/// The oldest `ann_log` id left (0 for an empty log).
pub(crate) fn first_log_id(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT coalesce(min(id), 0) FROM ann_log")?
        .query_row([], |r| r.get(0))?)
}
