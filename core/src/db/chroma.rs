//! The queries against a Chroma store's `chroma.sqlite3`, for `ingest::chroma`: [`ChromaDb`]
//! opens the file read-only (an import never changes it, and may run beside a Chroma using it)
//! and returns plain rows: tables' columns, collections, segments, records and their metadata,
//! and the operations of `embeddings_queue`.
//!
//! Which parts of the layout are there, what the rows mean and the vectors of the hnswlib files
//! are `ingest::chroma`'s business. Every SQLite error names the file.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde_json::{Number, Value};

use crate::db::classify;
use crate::error::Result;

/// The optional parts of the layout that are present.
#[derive(Debug, Default)]
pub(crate) struct Layout {
    /// `collections.dimension`.
    pub dimension: bool,
    /// `collections.config_json_str` (Chroma 0.6, 1.0).
    pub config_json: bool,
    /// `collections.schema_str` (Chroma 1.x).
    pub schema: bool,
    /// `collections.database_id` and the `databases` table.
    pub databases: bool,
    /// The `collection_metadata` table.
    pub collection_metadata: bool,
    /// The `embedding_metadata_array` table (list values).
    pub metadata_arrays: bool,
    /// The `max_seq_id` table.
    pub max_seq_id: bool,
}

/// A collection as listed in `collections`, with its database where the layout has them.
#[derive(Debug)]
pub(crate) struct CollectionRow {
    /// Chroma's id (a UUID).
    pub id: String,
    /// Its name within its database.
    pub name: String,
    /// `dimension`, when the layout has it and it is set.
    pub dims: Option<i64>,
    /// `config_json_str`, when the layout has it.
    pub config_json: Option<String>,
    /// `schema_str`, when the layout has it.
    pub schema: Option<String>,
    /// The tenant of its database.
    pub tenant: Option<String>,
    /// The name of its database.
    pub database: Option<String>,
}

/// A row of `embedding_metadata` or `embedding_metadata_array`.
#[derive(Debug)]
pub(crate) struct MetadataRow {
    /// The record's `embeddings.id`.
    pub id: i64,
    /// The key.
    pub key: String,
    /// The value, from whichever of the four value columns is set.
    pub value: Value,
}

/// A row of `embeddings_queue`.
#[derive(Debug)]
pub(crate) struct QueueRow {
    /// The operation's position in the log.
    pub seq_id: i64,
    /// 0 ADD, 1 UPDATE, 2 UPSERT, 3 DELETE.
    pub operation: i64,
    /// The record's id.
    pub id: String,
    /// Its encoded vector, if the operation carries one.
    pub vector: Option<Vec<u8>>,
    /// The vector's encoding (`FLOAT32`, `INT32`).
    pub encoding: Option<String>,
}

/// An open `chroma.sqlite3`, read-only.
pub(crate) struct ChromaDb {
    path: PathBuf,
    conn: Connection,
}

impl ChromaDb {
    /// Opens `path` read-only.
    ///
    /// # Errors
    /// [`NotADatabase`](crate::error::Error::NotADatabase), [`Corrupt`](crate::error::Error::Corrupt)
    /// or [`CannotOpen`](crate::error::Error::CannotOpen) naming the file.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| classify(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            conn,
        })
    }

    /// The file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn sql<T>(&self, r: rusqlite::Result<T>) -> Result<T> {
        r.map_err(|e| classify(&self.path, e))
    }

    /// The columns of `table`, or None when there is no such table.
    pub(crate) fn columns(&self, table: &str) -> Result<Option<HashSet<String>>> {
        let mut stmt = self.sql(self.conn.prepare("SELECT name FROM pragma_table_info(?1)"))?;
        let cols = self.sql(
            stmt.query_map([table], |r| r.get::<_, String>(0))
                .and_then(Iterator::collect::<rusqlite::Result<HashSet<_>>>),
        )?;
        Ok((!cols.is_empty()).then_some(cols))
    }

    /// Chroma's migrations: each folder's highest version, by folder (the caller has checked
    /// that the `migrations` table exists).
    pub(crate) fn migrations(&self) -> Result<Vec<(String, i64)>> {
        let mut stmt = self.sql(
            self.conn
                .prepare("SELECT dir, MAX(version) FROM migrations GROUP BY dir ORDER BY dir"),
        )?;
        self.sql(
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>),
        )
    }

    /// Every collection, in the file's order; the columns `layout` lacks read as None.
    pub(crate) fn collections(&self, layout: &Layout) -> Result<Vec<CollectionRow>> {
        let opt = |present: bool, col: &str| {
            if present {
                format!("c.{col}")
            } else {
                "NULL".to_string()
            }
        };
        let (db_cols, join) = if layout.databases {
            (
                "d.tenant_id, d.name",
                "LEFT JOIN databases d ON d.id = c.database_id",
            )
        } else {
            ("NULL, NULL", "")
        };
        let query = format!(
            "SELECT c.id, c.name, {}, {}, {}, {db_cols} FROM collections c {join}",
            opt(layout.dimension, "dimension"),
            opt(layout.config_json, "config_json_str"),
            opt(layout.schema, "schema_str"),
        );
        let mut stmt = self.sql(self.conn.prepare(&query))?;
        self.sql(
            stmt.query_map([], |r| {
                Ok(CollectionRow {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    dims: r.get(2)?,
                    config_json: r.get(3)?,
                    schema: r.get(4)?,
                    tenant: r.get(5)?,
                    database: r.get(6)?,
                })
            })
            .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>),
        )
    }

    /// The segments of a collection: `(scope, id)`, by id.
    pub(crate) fn segments(&self, collection_id: &str) -> Result<Vec<(String, String)>> {
        let mut stmt = self.sql(
            self.conn
                .prepare("SELECT scope, id FROM segments WHERE collection = ?1 ORDER BY id"),
        )?;
        self.sql(
            stmt.query_map([collection_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>),
        )
    }

    /// A collection's `hnsw:space` in `collection_metadata` (the caller has checked that the
    /// table exists).
    pub(crate) fn collection_space(&self, collection_id: &str) -> Result<Option<String>> {
        let space: Option<Option<String>> = self.sql(
            self.conn
                .query_row(
                    "SELECT str_value FROM collection_metadata \
                     WHERE collection_id = ?1 AND key = 'hnsw:space'",
                    [collection_id],
                    |r| r.get(0),
                )
                .optional(),
        )?;
        Ok(space.flatten())
    }

    /// The records of a METADATA segment, in the order they were added: `(embeddings.id,
    /// record id)`.
    pub(crate) fn embeddings(&self, segment: &str) -> Result<Vec<(i64, String)>> {
        let mut stmt = self.sql(self.conn.prepare(
            "SELECT id, embedding_id FROM embeddings WHERE segment_id = ?1 ORDER BY id",
        ))?;
        self.sql(
            stmt.query_map([segment], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(Iterator::collect),
        )
    }

    /// Calls `f` with each `embedding_metadata` row of `segment`'s records.
    pub(crate) fn metadata(&self, segment: &str, f: impl FnMut(MetadataRow)) -> Result<()> {
        self.each_metadata("embedding_metadata", "", segment, f)
    }

    /// Calls `f` with each `embedding_metadata_array` row of `segment`'s records: one row per
    /// element, in the list's order (the caller has checked that the table exists).
    pub(crate) fn metadata_arrays(&self, segment: &str, f: impl FnMut(MetadataRow)) -> Result<()> {
        self.each_metadata("embedding_metadata_array", " ORDER BY m.rowid", segment, f)
    }

    /// The rows of `table`, which `embedding_metadata` and `embedding_metadata_array` share
    /// the columns of.
    fn each_metadata(
        &self,
        table: &str,
        order: &str,
        segment: &str,
        mut f: impl FnMut(MetadataRow),
    ) -> Result<()> {
        let mut stmt = self.sql(self.conn.prepare(&format!(
            "SELECT m.id, m.key, m.string_value, m.int_value, m.float_value, m.bool_value \
             FROM {table} m JOIN embeddings e ON e.id = m.id WHERE e.segment_id = ?1{order}"
        )))?;
        let mut q = self.sql(stmt.query([segment]))?;
        while let Some(r) = self.sql(q.next())? {
            f(MetadataRow {
                id: self.sql(r.get(0))?,
                key: self.sql(r.get(1))?,
                value: self.sql(metadata_value(r))?,
            });
        }
        Ok(())
    }

    /// The operation up to which a segment has applied the queue (0 when it never recorded
    /// one; the caller has checked that the `max_seq_id` table exists). Chroma before 0.5
    /// stored it as a big-endian blob.
    pub(crate) fn max_seq_id(&self, segment: &str) -> Result<i64> {
        let value: Option<Sql> = self.sql(
            self.conn
                .query_row(
                    "SELECT seq_id FROM max_seq_id WHERE segment_id = ?1",
                    [segment],
                    |r| r.get(0),
                )
                .optional(),
        )?;
        Ok(match value {
            Some(Sql::Integer(n)) => n,
            Some(Sql::Blob(b)) => b.iter().fold(0i64, |acc, &x| {
                acc.checked_mul(256)
                    .and_then(|a| a.checked_add(i64::from(x)))
                    .unwrap_or(i64::MAX)
            }),
            _ => 0,
        })
    }

    /// Calls `f` with the queue's operations on `collection_id` from `from` on, in order, until
    /// it breaks.
    pub(crate) fn queue(
        &self,
        collection_id: &str,
        from: i64,
        mut f: impl FnMut(QueueRow) -> ControlFlow<()>,
    ) -> Result<()> {
        // A topic ends in `/<collection id>`; the id is matched literally.
        let topic = format!(
            "%/{}",
            collection_id
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let mut stmt = self.sql(self.conn.prepare(
            "SELECT seq_id, operation, id, vector, encoding FROM embeddings_queue \
             WHERE topic LIKE ?1 ESCAPE '\\' AND seq_id >= ?2 ORDER BY seq_id",
        ))?;
        let mut q = self.sql(stmt.query(rusqlite::params![topic, from]))?;
        while let Some(r) = self.sql(q.next())? {
            let row = QueueRow {
                seq_id: self.sql(r.get(0))?,
                operation: self.sql(r.get(1))?,
                id: self.sql(r.get(2))?,
                vector: self.sql(r.get(3))?,
                encoding: self.sql(r.get(4))?,
            };
            if f(row).is_break() {
                break;
            }
        }
        Ok(())
    }
}

/// A metadata value from the `string_value, int_value, float_value, bool_value` columns at 2..6
/// (the one that is set).
fn metadata_value(r: &rusqlite::Row<'_>) -> rusqlite::Result<Value> {
    let (s, i, f, b): (Sql, Sql, Sql, Sql) = (r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?);
    Ok(match (s, i, f, b) {
        (Sql::Text(s), ..) => Value::String(s),
        (_, Sql::Integer(n), ..) => Value::Number(n.into()),
        (_, _, Sql::Real(x), _) => Number::from_f64(x).map_or(Value::Null, Value::Number),
        // A REAL column holds an integral float as an integer when SQLite can.
        (_, _, Sql::Integer(n), _) => Number::from_f64(n as f64).map_or(Value::Null, Value::Number),
        (_, _, _, Sql::Integer(n)) => Value::Bool(n != 0),
        _ => Value::Null,
    })
}
