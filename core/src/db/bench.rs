//! What benchmarks read from the SQLite file beyond the engine's own reads: a collection's
//! stored vectors in `seq` order with their chunk ids (the ground truth of an exact scan), a
//! short fingerprint of them (to recognise a database a benchmark built before), and sqlite-vec's
//! bare exact KNN over a collection's vec0 table (the peer a search benchmark compares with).
//!
//! Nothing here writes. Each read that takes several statements runs in one read snapshot.

use rusqlite::{params, OptionalExtension, Statement};

use super::{blob_to_vector, in_read_tx, Store};
use crate::error::Result;
use crate::model::Collection;

/// How many vectors a collection stores, and its first and last by `seq` (none when empty).
pub(crate) type VectorFingerprint = (usize, Option<Vec<f32>>, Option<Vec<f32>>);

/// sqlite-vec's exact KNN over one collection's vec0 table, prepared once.
pub(crate) struct ExactKnn<'a> {
    stmt: Statement<'a>,
}

impl ExactKnn<'_> {
    /// The `k` nearest rows to `blob` (a vector as [`super::vector_blob`] lays it out): (rowid,
    /// distance), nearest first, as sqlite-vec returns them.
    ///
    /// # Errors
    /// SQLite errors (a blob of the wrong size among them).
    pub(crate) fn run(&mut self, blob: &[u8], k: usize) -> Result<Vec<(i64, f64)>> {
        let rows = self
            .stmt
            .query_map(params![blob, k as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }
}

impl Store {
    /// The chunk ids of `coll`, in `seq` order (the order its vectors were stored in).
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn chunk_ids_in_seq_order(&self, coll: &Collection) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare(
            "SELECT k.id FROM chunks k JOIN documents d ON d.id = k.document_id
             WHERE d.collection_id = ?1 ORDER BY k.seq",
        )?;
        let ids = stmt
            .query_map([coll.id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(ids)
    }

    /// Every stored vector of `coll` with its chunk id, in `seq` order, from one snapshot.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn vectors_in_seq_order(
        &self,
        coll: &Collection,
    ) -> Result<Vec<(String, Vec<f32>)>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT k.id, v.embedding FROM chunks k JOIN {} v ON v.rowid = k.seq ORDER BY k.seq",
            coll.vec_table()
        ))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, blob_to_vector(&r.get::<_, Vec<u8>>(1)?)))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// How many vectors `coll` stores and its first and last, from one snapshot.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn vector_fingerprint(&self, coll: &Collection) -> Result<VectorFingerprint> {
        let table = coll.vec_table();
        in_read_tx(&self.conn, || {
            let count: i64 =
                self.conn
                    .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
            let end = |order: &str| -> Result<Option<Vec<f32>>> {
                let blob: Option<Vec<u8>> = self
                    .conn
                    .query_row(
                        &format!("SELECT embedding FROM {table} ORDER BY rowid {order} LIMIT 1"),
                        [],
                        |r| r.get(0),
                    )
                    .optional()?;
                Ok(blob.as_deref().map(blob_to_vector))
            };
            Ok((
                usize::try_from(count).unwrap_or(0),
                end("ASC")?,
                end("DESC")?,
            ))
        })
    }

    /// sqlite-vec's exact KNN over `coll`'s vec0 table, prepared on this connection.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn exact_knn(&self, coll: &Collection) -> Result<ExactKnn<'_>> {
        let stmt = self.conn.prepare(&format!(
            "SELECT rowid, distance FROM {} WHERE embedding MATCH ?1 AND k = ?2 ORDER BY distance",
            coll.vec_table()
        ))?;
        Ok(ExactKnn { stmt })
    }
}
