//! The queries of `outpost import sqlite` and `outpost export`: the rows of a table in another
//! application's SQLite file ([`RowsSource`], opened read-only), and every live document of
//! this store with its chunks and vectors, read in one snapshot ([`Store::export_documents`]).
//!
//! Turning those rows into records and JSONL lines is `ingest::import`'s work; this module only
//! reads, and hands back values as SQLite stored them.

use std::path::{Path, PathBuf};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::db::{blob_to_vector, classify, in_read_tx, Store};
use crate::error::{Error, Result};
use crate::model::Collection;

/// One value of a foreign row, as SQLite stored it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    /// NULL.
    Null,
    /// INTEGER.
    Integer(i64),
    /// REAL.
    Real(f64),
    /// TEXT, as its bytes: another application's file need not hold UTF-8.
    Text(Vec<u8>),
    /// BLOB.
    Blob(Vec<u8>),
}

impl From<ValueRef<'_>> for Cell {
    fn from(v: ValueRef<'_>) -> Self {
        match v {
            ValueRef::Null => Self::Null,
            ValueRef::Integer(n) => Self::Integer(n),
            ValueRef::Real(f) => Self::Real(f),
            ValueRef::Text(t) => Self::Text(t.to_vec()),
            ValueRef::Blob(b) => Self::Blob(b.to_vec()),
        }
    }
}

/// Another application's SQLite file, open read-only: it is never changed.
pub(crate) struct RowsSource {
    path: PathBuf,
    conn: Connection,
}

/// SQLite's errors on a foreign file, naming it; a lock held by another process says so.
fn foreign_error(path: &Path, e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::CannotOpen {
            path: path.to_path_buf(),
            detail: format!("it is locked by another process ({e}); try again when it is done"),
        },
        _ => classify(path, e),
    }
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quoted_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl RowsSource {
    /// Opens `path` read-only, waiting up to 5 s for another process's write lock.
    ///
    /// # Errors
    /// [`Error::NotADatabase`], [`Error::Corrupt`] or [`Error::CannotOpen`] naming the file.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let fail = |e| foreign_error(path, e);
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(fail)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(fail)?;
        Ok(Self {
            path: path.to_path_buf(),
            conn,
        })
    }

    fn fail(&self, e: rusqlite::Error) -> Error {
        foreign_error(&self.path, e)
    }

    /// The columns of `table` (a table or view), in order; empty when there is none.
    ///
    /// # Errors
    /// SQLite's errors, naming the file.
    pub(crate) fn columns(&self, table: &str) -> Result<Vec<String>> {
        self.conn
            .prepare(&format!(
                "SELECT name FROM pragma_table_info({})",
                quoted_literal(table)
            ))
            .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| self.fail(e))
    }

    /// The file's tables and views, by name, SQLite's own left out.
    ///
    /// # Errors
    /// SQLite's errors, naming the file.
    pub(crate) fn tables(&self) -> Result<Vec<String>> {
        self.conn
            .prepare("SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| self.fail(e))
    }

    /// Calls `each` with every row of `table`, in the order of its first column, as the values
    /// of `columns` (each a column name, or None for a NULL in that place). The caller has
    /// checked that the columns exist.
    ///
    /// # Errors
    /// SQLite's errors, naming the file.
    pub(crate) fn rows(
        &self,
        table: &str,
        columns: &[Option<&str>],
        mut each: impl FnMut(Vec<Cell>),
    ) -> Result<()> {
        let select: Vec<String> = columns
            .iter()
            .map(|c| c.map_or("NULL".into(), quoted))
            .collect();
        let sql = format!(
            "SELECT {} FROM {} ORDER BY 1",
            select.join(", "),
            quoted(table)
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.fail(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.fail(e))?;
        while let Some(row) = rows.next().map_err(|e| self.fail(e))? {
            let cells = (0..columns.len())
                .map(|i| row.get_ref(i).map(Cell::from))
                .collect::<rusqlite::Result<_>>()
                .map_err(|e| self.fail(e))?;
            each(cells);
        }
        Ok(())
    }
}

/// A live document as exported: its row and its chunks in order.
pub(crate) struct ExportDocument {
    /// The document id.
    pub id: String,
    /// Its source.
    pub source: String,
    /// Its title.
    pub title: String,
    /// Its metadata, as stored (JSON text).
    pub metadata: String,
    /// Its content hash.
    pub content_hash: String,
    /// Its chunks, by ordinal.
    pub chunks: Vec<ExportChunk>,
}

/// A chunk of an exported document.
pub(crate) struct ExportChunk {
    /// The chunk's text.
    pub text: String,
    /// Its byte range in the document text.
    pub byte_start: i64,
    /// End of that range.
    pub byte_end: i64,
    /// Its token count.
    pub token_count: i64,
    /// Its metadata, as stored (JSON text).
    pub metadata: String,
    /// Its vector, when asked for.
    pub embedding: Option<Vec<f32>>,
}

impl Store {
    /// Calls `each` with every live document of `collections`, collection by collection and in
    /// source order within one, with their chunks (and vectors when `with_embeddings`). All of
    /// it is read in one snapshot, so that a concurrent ingest cannot tear a document; an error
    /// of `each` stops the reading and is returned.
    ///
    /// # Errors
    /// SQLite errors, and those of `each`.
    pub(crate) fn export_documents(
        &self,
        collections: &[Collection],
        with_embeddings: bool,
        each: &mut dyn FnMut(&Collection, ExportDocument) -> Result<()>,
    ) -> Result<()> {
        let conn = &self.conn;
        in_read_tx(conn, || {
            for coll in collections {
                let mut docs = conn.prepare(
                    "SELECT id, source, title, metadata, content_hash FROM documents
                     WHERE collection_id = ?1 AND deleted = 0 ORDER BY source, home_device",
                )?;
                let mut chunks = conn.prepare_cached(
                    "SELECT seq, text, byte_start, byte_end, token_count, metadata FROM chunks
                     WHERE document_id = ?1 ORDER BY ordinal",
                )?;
                let mut vector = conn.prepare(&format!(
                    "SELECT embedding FROM {} WHERE rowid = ?1",
                    coll.vec_table()
                ))?;
                let mut rows = docs.query([coll.id])?;
                while let Some(row) = rows.next()? {
                    let id: String = row.get(0)?;
                    let mut list = Vec::new();
                    let mut crows = chunks.query([&id])?;
                    while let Some(c) = crows.next()? {
                        let seq: i64 = c.get(0)?;
                        let embedding = if with_embeddings {
                            let blob: Vec<u8> = vector.query_row([seq], |r| r.get(0))?;
                            Some(blob_to_vector(&blob))
                        } else {
                            None
                        };
                        list.push(ExportChunk {
                            text: c.get(1)?,
                            byte_start: c.get(2)?,
                            byte_end: c.get(3)?,
                            token_count: c.get(4)?,
                            metadata: c.get(5)?,
                            embedding,
                        });
                    }
                    let doc = ExportDocument {
                        id,
                        source: row.get(1)?,
                        title: row.get(2)?,
                        metadata: row.get(3)?,
                        content_hash: row.get(4)?,
                        chunks: list,
                    };
                    each(coll, doc)?;
                }
            }
            Ok(())
        })
    }
}
