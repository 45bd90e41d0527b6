//! What the derived indexes (the HNSW graphs and the text index in `index/`) read from SQLite:
//! a collection's vec0 rows and the chunks' text, whole for a build or by seq for a catch-up;
//! the `ann_log` rows after an index's position and the trim of those every index applied; the
//! row counts a verify compares; and FTS5's C API, through which the text index tokenizes as
//! `chunks_fts` does.
//!
//! Every read expects the caller to hold a read transaction, so that one build or catch-up sees
//! one snapshot. Statements run once per chunk are wrapped in a type that prepares them once.

use rusqlite::{ffi, CachedStatement, Connection, ErrorCode, OptionalExtension};

use crate::error::Result;
use crate::model::Collection;

/// The `ann_log` rows after id `applied`, as (log id, chunk seq), in log order.
pub(crate) fn log_after(conn: &Connection, applied: i64) -> Result<Vec<(i64, i64)>> {
    let mut stmt =
        conn.prepare_cached("SELECT id, chunk_seq FROM ann_log WHERE id > ?1 ORDER BY id")?;
    let log = stmt
        .query_map([applied], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<std::result::Result<_, _>>()?;
    Ok(log)
}

/// Deletes the `ann_log` rows through id `through`: the rows deleted, or `None` when the
/// database is busy (a trim is never worth waiting for; the next save tries again).
pub(crate) fn trim_log(conn: &Connection, through: i64) -> Result<Option<usize>> {
    match conn.execute("DELETE FROM ann_log WHERE id <= ?1", [through]) {
        Ok(n) => Ok(Some(n)),
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == ErrorCode::DatabaseBusy => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Calls `each` with the seq and the embedding blob (little-endian f32) of every row of
/// `coll`'s vec0 table, streaming: a build reads the whole table once.
pub(crate) fn for_each_vector(
    conn: &Connection,
    coll: &Collection,
    mut each: impl FnMut(i64, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut stmt = conn.prepare(&format!(
        "SELECT rowid, embedding FROM {}",
        coll.vec_table()
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        // Borrowed from the row: no copy of the blob.
        each(
            r.get(0)?,
            r.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?,
        )?;
    }
    Ok(())
}

/// Reads single rows of a collection's vec0 table by seq, with one prepared statement.
pub(crate) struct VectorRows<'c>(CachedStatement<'c>);

impl<'c> VectorRows<'c> {
    pub(crate) fn new(conn: &'c Connection, coll: &Collection) -> Result<Self> {
        Ok(Self(conn.prepare_cached(&format!(
            "SELECT embedding FROM {} WHERE rowid = ?1",
            coll.vec_table()
        ))?))
    }

    /// The embedding blob of chunk `seq`, or `None` when the table has no such row.
    pub(crate) fn get(&mut self, seq: i64) -> Result<Option<Vec<u8>>> {
        Ok(self.0.query_row([seq], |r| r.get(0)).optional()?)
    }
}

/// Rows in `coll`'s vec0 table.
pub(crate) fn count_vectors(conn: &Connection, coll: &Collection) -> Result<i64> {
    Ok(conn
        .prepare_cached(&format!("SELECT count(*) FROM {}", coll.vec_table()))?
        .query_row([], |r| r.get(0))?)
}

/// Calls `each` with the seq and text of every chunk, by seq, streaming: the text index's build
/// reads the whole table once.
pub(crate) fn for_each_chunk_text(
    conn: &Connection,
    mut each: impl FnMut(i64, &str) -> Result<()>,
) -> Result<()> {
    let mut stmt = conn.prepare("SELECT seq, text FROM chunks ORDER BY seq")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        // Borrowed from the row: no copy of the text.
        each(
            r.get(0)?,
            r.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?,
        )?;
    }
    Ok(())
}

/// Reads single chunks' text by seq, with one prepared statement.
pub(crate) struct ChunkTexts<'c>(CachedStatement<'c>);

impl<'c> ChunkTexts<'c> {
    pub(crate) fn new(conn: &'c Connection) -> Result<Self> {
        Ok(Self(conn.prepare_cached(
            "SELECT text FROM chunks WHERE seq = ?1",
        )?))
    }

    /// The text of chunk `seq`, or `None` when there is no such chunk.
    pub(crate) fn get(&mut self, seq: i64) -> Result<Option<String>> {
        Ok(self.0.query_row([seq], |r| r.get(0)).optional()?)
    }
}

/// Rows in `chunks`.
pub(crate) fn count_chunks(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM chunks")?
        .query_row([], |r| r.get(0))?)
}

/// `conn`'s `fts5_api`, the way fts5.h documents: `SELECT fts5(?1)` with a pointer bound as
/// "fts5_api_ptr" writes the api through it. `None` when this SQLite has no FTS5; the pointer
/// (null if FTS5 wrote none) is valid as long as `conn` is open.
#[allow(unsafe_code)]
pub(crate) fn fts5_api(conn: &Connection) -> Option<*mut ffi::fts5_api> {
    let mut api: *mut ffi::fts5_api = std::ptr::null_mut();
    // SAFETY: `conn.handle()` is an open connection for the whole block; the statement is
    // finalized before it ends, and FTS5 writes through the bound pointer only during the step,
    // while `api` is alive.
    unsafe {
        let db = conn.handle();
        let mut stmt: *mut ffi::sqlite3_stmt = std::ptr::null_mut();
        let sql = c"SELECT fts5(?1)";
        if ffi::sqlite3_prepare_v2(db, sql.as_ptr(), -1, &raw mut stmt, std::ptr::null_mut())
            != ffi::SQLITE_OK
        {
            return None;
        }
        ffi::sqlite3_bind_pointer(
            stmt,
            1,
            (&raw mut api).cast(),
            c"fts5_api_ptr".as_ptr(),
            None,
        );
        ffi::sqlite3_step(stmt);
        ffi::sqlite3_finalize(stmt);
    }
    Some(api)
}
