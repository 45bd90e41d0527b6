//! The queries a search runs when its derived indexes do not answer: sqlite-vec's exact KNN over
//! a collection's vec0 table, FTS5's BM25 ranking and match counts over `chunks_fts`; and the
//! read of the rows behind ranked chunk seqs that every search ends with.
//!
//! A filter ([`SqlFilter`]) is applied inside each query, as a `rowid IN (...)` constraint of the
//! KNN and as a `WHERE` of the FTS5 query, so a query returns `k` rows whenever `k` match.
//! Results stream to a callback rather than into a vector of their own, and statements run once
//! per word or per hit are wrapped in a type that prepares them once.

use rusqlite::{CachedStatement, Connection, OptionalExtension, ToSql};

use super::filter::{kept_chunks_sql, SqlFilter};
use crate::error::Result;
use crate::model::Collection;

/// Binds `?1` and `?2` of a statement that embeds a filter, then the filter's own parameters
/// (`?3` on), borrowing every value.
fn bind<'a>(
    first: &'a dyn ToSql,
    second: &'a dyn ToSql,
    filter: Option<&'a SqlFilter>,
) -> impl Iterator<Item = &'a dyn ToSql> {
    let rest = filter.map_or(&[][..], |f| &f.params[..]);
    [first, second]
        .into_iter()
        .chain(rest.iter().map(|p| p as &dyn ToSql))
}

/// sqlite-vec's exact `k` nearest neighbours of `vector` (a little-endian f32 blob) in `coll`,
/// among the chunks that `filter` keeps (all with `None`): calls `each` with every (chunk seq,
/// cosine distance), nearest first.
pub(crate) fn nearest(
    conn: &Connection,
    coll: &Collection,
    vector: &[u8],
    k: usize,
    filter: Option<&SqlFilter>,
    mut each: impl FnMut(i64, f64),
) -> Result<()> {
    let sql = match filter {
        Some(f) => format!(
            "SELECT rowid, distance FROM {t} WHERE embedding MATCH ?1 AND k = ?2
             AND rowid IN ({kept}) ORDER BY distance",
            t = coll.vec_table(),
            kept = kept_chunks_sql(Some(coll.id), &f.sql),
        ),
        None => format!(
            "SELECT rowid, distance FROM {} WHERE embedding MATCH ?1 AND k = ?2 ORDER BY distance",
            coll.vec_table()
        ),
    };
    let mut stmt = conn.prepare_cached(&sql)?;
    let k = k as i64;
    let rows = stmt.query_map(rusqlite::params_from_iter(bind(&vector, &k, filter)), |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?))
    })?;
    for row in rows {
        let (seq, distance) = row?;
        each(seq, distance);
    }
    Ok(())
}

/// FTS5's BM25 ranking of live chunks, prepared once for a search that may run it twice (with
/// its informative words, then with all of them).
pub(crate) struct Bm25Ranking<'a> {
    stmt: CachedStatement<'a>,
    filter: &'a SqlFilter,
}

impl<'a> Bm25Ranking<'a> {
    /// The ranking among the chunks that `filter` keeps (an empty filter keeps all).
    pub(crate) fn new(conn: &'a Connection, filter: &'a SqlFilter) -> Result<Self> {
        // Without filters the FTS5 table answers alone: tombstoned documents have no chunks,
        // and FTS5 keeps only the top `limit` while scoring when ordered by `rank` alone.
        let stmt = if filter.sql.is_empty() {
            conn.prepare_cached(
                "SELECT rowid, rank FROM chunks_fts WHERE chunks_fts MATCH ?1 ORDER BY rank LIMIT ?2",
            )?
        } else {
            conn.prepare_cached(&format!(
                "SELECT f.rowid, bm25(chunks_fts) AS rank FROM chunks_fts f
                 JOIN chunks k ON k.seq = f.rowid JOIN documents d ON d.id = k.document_id
                 WHERE chunks_fts MATCH ?1 AND d.deleted = 0{}
                 ORDER BY rank LIMIT ?2",
                filter.sql
            ))?
        };
        Ok(Self { stmt, filter })
    }

    /// Calls `each` with the (chunk seq, BM25 rank) of the `limit` best matches of `query` (an
    /// FTS5 query), best (lowest rank) first.
    pub(crate) fn run(
        &mut self,
        query: &str,
        limit: usize,
        mut each: impl FnMut(i64, f64),
    ) -> Result<()> {
        let limit = limit as i64;
        let rows = self.stmt.query_map(
            rusqlite::params_from_iter(bind(&query, &limit, Some(self.filter))),
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?)),
        )?;
        for row in rows {
            let (seq, rank) = row?;
            each(seq, rank);
        }
        Ok(())
    }
}

/// Counts the chunks that FTS5 queries match, with one prepared statement.
pub(crate) struct FtsMatches<'c>(CachedStatement<'c>);

impl<'c> FtsMatches<'c> {
    pub(crate) fn new(conn: &'c Connection) -> Result<Self> {
        Ok(Self(conn.prepare_cached(
            "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?1",
        )?))
    }

    /// The chunks that `query` (an FTS5 query) matches.
    pub(crate) fn count(&mut self, query: &str) -> Result<i64> {
        Ok(self.0.query_row([query], |r| r.get(0))?)
    }
}

/// A chunk as a search returns it: the chunk, its document and collection.
pub(crate) struct HitRow {
    pub(crate) chunk_id: String,
    pub(crate) document_id: String,
    pub(crate) title: String,
    pub(crate) source: String,
    pub(crate) collection: String,
    pub(crate) text: String,
    pub(crate) ordinal: usize,
    pub(crate) byte_start: usize,
    pub(crate) byte_end: usize,
    pub(crate) token_count: usize,
}

/// Reads [`HitRow`]s by chunk seq, with one prepared statement.
pub(crate) struct HitRows<'c>(CachedStatement<'c>);

impl<'c> HitRows<'c> {
    pub(crate) fn new(conn: &'c Connection) -> Result<Self> {
        Ok(Self(conn.prepare_cached(
            "SELECT k.id, d.id, d.title, d.source, c.name, k.text, k.ordinal, k.byte_start, k.byte_end, k.token_count
             FROM chunks k JOIN documents d ON d.id = k.document_id JOIN collections c ON c.id = d.collection_id
             WHERE k.seq = ?1",
        )?))
    }

    /// The row of chunk `seq`, if it is still there.
    pub(crate) fn get(&mut self, seq: i64) -> Result<Option<HitRow>> {
        Ok(self
            .0
            .query_row([seq], |r| {
                Ok(HitRow {
                    chunk_id: r.get(0)?,
                    document_id: r.get(1)?,
                    title: r.get(2)?,
                    source: r.get(3)?,
                    collection: r.get(4)?,
                    text: r.get(5)?,
                    ordinal: r.get::<_, i64>(6)? as usize,
                    byte_start: r.get::<_, i64>(7)? as usize,
                    byte_end: r.get::<_, i64>(8)? as usize,
                    token_count: r.get::<_, i64>(9)? as usize,
                })
            })
            .optional()?)
    }
}
