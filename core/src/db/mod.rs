//! The SQLite file: opening it safely, collections, documents and their chunks.
//!
//! Every write that changes a document (its row, its chunks, their vectors and full-text rows)
//! happens in one transaction, so readers and a crash see either the old or the new version.

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, ErrorCode, OptionalExtension};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::{
    ChunkRow, Collection, CollectionStats, DocumentDetail, DocumentSummary, Kind, NewChunk,
    NewDocument, PutOutcome, Stats,
};

pub(crate) mod bench;
pub(crate) mod chroma;
pub(crate) mod conversation;
pub(crate) mod filter;
pub(crate) mod index;
pub(crate) mod log;
mod outbox;
pub mod queue;
pub(crate) mod replica;
pub mod schema;
pub(crate) mod search;
pub(crate) mod transfer;

pub(crate) use outbox::{enqueue, next_hlc, put_meta, read_hlc, write_hlc};

/// An open Outpost database.
pub struct Store {
    pub(crate) conn: Connection,
    path: PathBuf,
    /// This database's device id (empty below schema version 3).
    pub(crate) device: String,
    /// Added to the wall clock when stamping writes: lets tests play a skewed clock.
    pub(crate) clock_skew_ms: i64,
    /// The file's canonical path, resolved once at open: the key of its vector indexes.
    pub(crate) canonical: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A new UUIDv7 as text.
pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Reads a little-endian f32 blob (sqlite-vec's layout).
pub fn blob_to_vector(blob: &[u8]) -> Vec<f32> {
    blob.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Little-endian f32 bytes, the layout sqlite-vec reads.
pub fn vector_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Makes sqlite-vec available to every connection opened after this call.
fn register_sqlite_vec() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        #[allow(unsafe_code)]
        // SAFETY: `sqlite3_vec_init` is an SQLite extension entry point; the crate declares it
        // without arguments, but it has exactly the signature `sqlite3_auto_extension` expects.
        unsafe {
            type EntryPoint = unsafe extern "C" fn(
                *mut rusqlite::ffi::sqlite3,
                *mut *mut std::os::raw::c_char,
                *const rusqlite::ffi::sqlite3_api_routines,
            ) -> std::os::raw::c_int;
            let entry: EntryPoint = std::mem::transmute(sqlite_vec::sqlite3_vec_init as *const ());
            rusqlite::ffi::sqlite3_auto_extension(Some(entry));
        }
    });
}

/// Turns SQLite's "not a database" and "corrupt" codes into errors that name the file.
pub(crate) fn classify(path: &Path, err: rusqlite::Error) -> Error {
    match err.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => Error::NotADatabase {
            path: path.to_path_buf(),
        },
        Some(ErrorCode::DatabaseCorrupt) => Error::Corrupt {
            path: path.to_path_buf(),
            detail: err.to_string(),
        },
        Some(ErrorCode::DiskFull) => Error::DiskFull {
            path: path.to_path_buf(),
            detail: err.to_string(),
        },
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => {
            Error::CannotOpen {
                path: path.to_path_buf(),
                detail: err.to_string(),
            }
        }
        _ => Error::Sqlite(err),
    }
}

/// [`classify`] for the SQLite errors inside an engine error.
pub(crate) fn reclassify(path: &Path, err: Error) -> Error {
    match err {
        Error::Sqlite(e) => classify(path, e),
        other => other,
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    ///
    /// # Errors
    /// [`Error::NotADatabase`] for a file that is not SQLite, [`Error::ForeignDatabase`] for
    /// another application's SQLite file, [`Error::SchemaTooNew`] for a newer Outpost's file,
    /// [`Error::Corrupt`] if SQLite finds corruption; none of these modify the file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Error::CannotOpen {
                path: path.to_path_buf(),
                detail: format!("cannot create directory {}: {e}", parent.display()),
            })?;
        }
        register_sqlite_vec();
        let conn = Connection::open(path).map_err(|e| classify(path, e))?;
        Self::setup(conn, path)
    }

    /// Opens a private in-memory database (for tests and benchmarks).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn open_in_memory() -> Result<Self> {
        register_sqlite_vec();
        let conn = Connection::open_in_memory()?;
        Self::setup(conn, Path::new(":memory:"))
    }

    /// Opens `path` with its schema at exactly `version` (for migration tests).
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_at_version(path: impl AsRef<Path>, version: i64) -> Result<Self> {
        let path = path.as_ref();
        register_sqlite_vec();
        let mut conn = Connection::open(path).map_err(|e| classify(path, e))?;
        schema::migrate_to(&mut conn, path, version).map_err(|e| reclassify(path, e))?;
        let device = read_device_id(&conn)?;
        Ok(Self {
            conn,
            path: path.to_path_buf(),
            device,
            clock_skew_ms: 0,
            canonical: std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
        })
    }

    fn setup(mut conn: Connection, path: &Path) -> Result<Self> {
        let wrap = |e: rusqlite::Error| classify(path, e);
        // Read before writing anything: a file that is not SQLite fails here, untouched.
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(wrap)?;
        schema::check(&conn, path).map_err(|e| reclassify(path, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(wrap)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(wrap)?;
        // Room for every statement a search or an ingest prepares (rusqlite keeps 16), so that
        // none is compiled again per call.
        conn.set_prepared_statement_cache_capacity(64);
        if path != Path::new(":memory:") {
            let mode: String = conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                .map_err(wrap)?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(path = %path.display(), mode, "could not switch to WAL journal");
            }
            // In WAL mode NORMAL keeps every commit atomic and consistent across a crash.
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(wrap)?;
        }
        schema::migrate(&mut conn, path).map_err(|e| reclassify(path, e))?;
        let device = read_device_id(&conn).map_err(|e| reclassify(path, e))?;
        Ok(Self {
            conn,
            path: path.to_path_buf(),
            device,
            clock_skew_ms: 0,
            canonical: std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
        })
    }

    /// Rolls back a transaction that a panicking caller left open on this connection.
    pub(crate) fn end_abandoned_transaction(&self) {
        if !self.conn.is_autocommit() {
            tracing::warn!("rolling back a transaction left open by a failed call");
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }

    /// This database's device id: made once, when the database was created (or upgraded to
    /// schema version 3), and stamped on every write it makes.
    pub fn device_id(&self) -> &str {
        &self.device
    }

    /// Shifts the clock this store stamps writes with by `ms` (tests of clock skew).
    pub fn set_clock_skew_ms(&mut self, ms: i64) {
        self.clock_skew_ms = ms;
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying connection, for read-only inspection (schema dumps, integrity checks).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The schema version of the open file.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// Runs `PRAGMA integrity_check` and returns its lines (`["ok"]` when healthy).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn integrity_check(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// What is wrong with the file itself, empty when sound: SQLite's `integrity_check`,
    /// broken foreign keys, and FTS5's own check of the full-text index against the chunks.
    ///
    /// # Errors
    /// SQLite errors (other than the problems it reports).
    pub fn consistency_problems(&self) -> Result<Vec<String>> {
        let mut problems: Vec<String> = self
            .integrity_check()?
            .into_iter()
            .filter(|l| l != "ok")
            .map(|l| format!("integrity_check: {l}"))
            .collect();
        let mut stmt = self.conn.prepare("PRAGMA foreign_key_check")?;
        let broken = stmt.query_map([], |r| {
            Ok(format!(
                "foreign key: row {} of {} points to a missing {} row",
                r.get::<_, Option<i64>>(1)?.unwrap_or(-1),
                r.get::<_, String>(0)?,
                r.get::<_, String>(2)?
            ))
        })?;
        for b in broken {
            problems.push(b?);
        }
        // `rank = 1` also compares the index with its content table, `chunks`.
        if let Err(e) = self.conn.execute(
            "INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)",
            [],
        ) {
            match e.sqlite_error_code() {
                Some(ErrorCode::DatabaseCorrupt) => {
                    problems.push(format!("full-text index: {e}"));
                }
                _ => return Err(e.into()),
            }
        }
        Ok(problems)
    }

    /// The collection called `name`, if it exists.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn collection(&self, name: &str) -> Result<Option<Collection>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, name, model_id, dims FROM collections WHERE name = ?1",
                [name],
                row_to_collection,
            )
            .optional()?)
    }

    /// All collections, by name.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn collections(&self) -> Result<Vec<Collection>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, name, model_id, dims FROM collections ORDER BY name")?;
        let rows = stmt.query_map([], row_to_collection)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The collection `name`, created for `model_id` / `dims` if it does not exist.
    ///
    /// # Errors
    /// [`Error::ModelMismatch`] if it exists for another model or dimension;
    /// [`Error::InvalidArgument`] for an empty or over-long name.
    pub fn ensure_collection(
        &mut self,
        name: &str,
        model_id: &str,
        dims: usize,
    ) -> Result<Collection> {
        if name.trim().is_empty() || name.len() > 128 {
            return Err(Error::invalid(
                "collection",
                "a collection name has 1 to 128 characters",
            ));
        }
        if dims == 0 || dims > 8192 {
            return Err(Error::invalid(
                "dims",
                format!("{dims} is not a usable vector dimension"),
            ));
        }
        if let Some(c) = self.collection(name)? {
            if c.model_id != model_id || c.dims != dims {
                return Err(Error::ModelMismatch {
                    collection: c.name,
                    stored: c.model_id,
                    stored_dims: c.dims,
                    current: model_id.to_string(),
                    current_dims: dims,
                });
            }
            return Ok(c);
        }
        let tx = self.conn.transaction()?;
        let c = create_collection(&tx, name, model_id, dims)?;
        tx.commit()?;
        Ok(c)
    }

    /// The live or tombstoned document at `source` in `collection`: `(id, content_hash, deleted)`.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn document_by_source(
        &self,
        collection: &Collection,
        source: &str,
    ) -> Result<Option<(String, String, bool)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, content_hash, deleted FROM documents
                 WHERE collection_id = ?1 AND source = ?2 AND home_device = ?3",
                params![collection.id, source, self.device],
                |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? != 0)),
            )
            .optional()?)
    }

    /// Live documents of `collection` whose source starts with `prefix`: `(id, source)`.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn live_sources_with_prefix(
        &self,
        collection: &Collection,
        prefix: &str,
    ) -> Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, source FROM documents WHERE collection_id = ?1 AND deleted = 0
             AND home_device = ?3 AND substr(source, 1, length(?2)) = ?2 ORDER BY source",
        )?;
        let rows = stmt.query_map(params![collection.id, prefix, self.device], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Stores a document and replaces its chunks, all in one transaction.
    ///
    /// A document is identified by `(collection, source)`: storing the same source again with the
    /// same content hash is a no-op, with another hash it keeps the document id, bumps its
    /// revision and replaces every chunk.
    ///
    /// # Errors
    /// [`Error::DimensionMismatch`] if any vector is not `collection.dims` long (nothing is
    /// written), [`Error::InvalidArgument`] for non-finite vector values, SQLite errors.
    pub fn put_document(
        &mut self,
        collection: &Collection,
        doc: &NewDocument,
        chunks: &[NewChunk],
    ) -> Result<(String, PutOutcome)> {
        for c in chunks {
            if c.embedding.len() != collection.dims {
                return Err(Error::DimensionMismatch {
                    collection: collection.name.clone(),
                    expected: collection.dims,
                    got: c.embedding.len(),
                });
            }
            if c.embedding.iter().any(|x| !x.is_finite()) {
                return Err(Error::invalid("vector", "contains NaN or infinite values"));
            }
        }
        let existing = self.document_by_source(collection, &doc.source)?;
        if let Some((id, hash, false)) = &existing {
            if *hash == doc.content_hash {
                return Ok((id.clone(), PutOutcome::Unchanged));
            }
        }
        let now = now_ms();
        let metadata = Value::Object(doc.metadata.clone()).to_string();
        let vec_table = collection.vec_table();
        let device = self.device.clone();
        let tx = self.conn.transaction()?;
        let hlc = next_hlc(&tx, self.clock_skew_ms)?;
        let (id, outcome) = match existing {
            Some((id, _, deleted)) => {
                tx.execute(
                    &format!("DELETE FROM {vec_table} WHERE rowid IN (SELECT seq FROM chunks WHERE document_id = ?1)"),
                    [&id],
                )?;
                tx.execute("DELETE FROM chunks WHERE document_id = ?1", [&id])?;
                tx.execute(
                    "UPDATE documents SET title = ?2, content_hash = ?3, metadata = ?4, updated_at = ?5,
                     rev = rev + 1, deleted = 0, hlc = ?6, device = ?7 WHERE id = ?1",
                    params![id, doc.title, doc.content_hash, metadata, now, hlc, device],
                )?;
                (
                    id,
                    if deleted {
                        PutOutcome::Added
                    } else {
                        PutOutcome::Updated
                    },
                )
            }
            None => {
                let id = new_id();
                tx.execute(
                    "INSERT INTO documents (id, collection_id, source, title, content_hash, metadata, created_at, updated_at,
                                            hlc, device, home_device)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?9)",
                    params![id, collection.id, doc.source, doc.title, doc.content_hash, metadata, now, hlc, device],
                )?;
                (id, PutOutcome::Added)
            }
        };
        {
            let mut insert_chunk = tx.prepare(
                "INSERT INTO chunks (id, document_id, ordinal, text, token_count, byte_start, byte_end, metadata)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            let mut insert_vec = tx.prepare(&format!(
                "INSERT INTO {vec_table} (rowid, embedding) VALUES (?1, ?2)"
            ))?;
            for (ordinal, c) in chunks.iter().enumerate() {
                #[cfg(feature = "failpoints")]
                failpoint("put-document-mid-tx", ordinal == chunks.len() / 2);
                insert_chunk.execute(params![
                    new_id(),
                    id,
                    ordinal as i64,
                    c.text,
                    c.token_count as i64,
                    c.byte_start as i64,
                    c.byte_end as i64,
                    Value::Object(c.metadata.clone()).to_string(),
                ])?;
                let seq = tx.last_insert_rowid();
                insert_vec.execute(params![seq, vector_blob(&c.embedding)])?;
            }
            let mut insert_key = tx.prepare(
                "INSERT OR IGNORE INTO metadata_keys (collection_id, key) VALUES (?1, ?2)",
            )?;
            for key in doc.metadata.keys() {
                insert_key.execute(params![collection.id, key])?;
            }
        }
        enqueue(&tx, Kind::Document, &id, hlc)?;
        tx.commit()?;
        Ok((id, outcome))
    }

    /// Tombstones a document: its chunks and vectors go, its row stays with `deleted = 1` so that
    /// sync can carry the deletion.
    ///
    /// # Errors
    /// [`Error::NotFound`] if no live document has this id (or unique id prefix).
    pub fn delete_document(&mut self, id: &str) -> Result<DocumentSummary> {
        let doc = self.resolve_document(id)?;
        if doc.deleted {
            return Err(Error::NotFound {
                what: "document",
                id: id.to_string(),
            });
        }
        let coll = self
            .collection(&doc.collection)?
            .ok_or_else(|| Error::NotFound {
                what: "collection",
                id: doc.collection.clone(),
            })?;
        let device = self.device.clone();
        let tx = self.conn.transaction()?;
        let hlc = next_hlc(&tx, self.clock_skew_ms)?;
        tx.execute(
            &format!(
                "DELETE FROM {} WHERE rowid IN (SELECT seq FROM chunks WHERE document_id = ?1)",
                coll.vec_table()
            ),
            [&doc.id],
        )?;
        tx.execute("DELETE FROM chunks WHERE document_id = ?1", [&doc.id])?;
        tx.execute(
            "UPDATE documents SET deleted = 1, rev = rev + 1, updated_at = ?2, hlc = ?3, device = ?4
             WHERE id = ?1",
            params![doc.id, now_ms(), hlc, device],
        )?;
        enqueue(&tx, Kind::Document, &doc.id, hlc)?;
        tx.commit()?;
        Ok(DocumentSummary {
            deleted: true,
            chunks: 0,
            ..doc
        })
    }

    /// Moves the live document at `from` to the source `to` (a renamed file), keeping its id,
    /// chunks and vectors; a title that was the old file name follows the new one. Returns the
    /// document id, or `None` when nothing moved: no live document at `from`, or a document
    /// (live or tombstone) at `to` already.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn move_document(
        &mut self,
        collection: &Collection,
        from: &str,
        to: &str,
    ) -> Result<Option<String>> {
        let Some((id, _, false)) = self.document_by_source(collection, from)? else {
            return Ok(None);
        };
        if self.document_by_source(collection, to)?.is_some() {
            return Ok(None);
        }
        let stem = |s: &str| {
            Path::new(s)
                .file_stem()
                .map(|x| x.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let device = self.device.clone();
        let tx = self.conn.transaction()?;
        let hlc = next_hlc(&tx, self.clock_skew_ms)?;
        tx.execute(
            "UPDATE documents SET source = ?2,
                 title = CASE WHEN title = ?3 THEN ?4 ELSE title END,
                 rev = rev + 1, updated_at = ?5, hlc = ?6, device = ?7
             WHERE id = ?1",
            params![id, to, stem(from), stem(to), now_ms(), hlc, device],
        )?;
        enqueue(&tx, Kind::Document, &id, hlc)?;
        tx.commit()?;
        Ok(Some(id))
    }

    /// Documents, newest first.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn list_documents(
        &self,
        collection: Option<&str>,
        include_deleted: bool,
        limit: usize,
    ) -> Result<Vec<DocumentSummary>> {
        let mut stmt = self.conn.prepare(
            "SELECT d.id, c.name, d.source, d.title,
                    (SELECT count(*) FROM chunks k WHERE k.document_id = d.id), d.updated_at, d.deleted
             FROM documents d JOIN collections c ON c.id = d.collection_id
             WHERE (?1 IS NULL OR c.name = ?1) AND (?2 OR d.deleted = 0)
             ORDER BY d.updated_at DESC, d.id DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            params![
                collection,
                include_deleted,
                limit.min(i64::MAX as usize) as i64
            ],
            row_to_summary,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn resolve_document(&self, id: &str) -> Result<DocumentSummary> {
        let id = id.trim();
        if id.len() < 4 || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(Error::invalid(
                "document id",
                format!(
                    "'{id}' is not a document id (a UUID, or at least 4 of its leading characters)"
                ),
            ));
        }
        let mut stmt = self.conn.prepare(
            "SELECT d.id, c.name, d.source, d.title,
                    (SELECT count(*) FROM chunks k WHERE k.document_id = d.id), d.updated_at, d.deleted
             FROM documents d JOIN collections c ON c.id = d.collection_id
             WHERE d.id = ?1 OR substr(d.id, 1, length(?1)) = ?1 LIMIT 2",
        )?;
        let found: Vec<DocumentSummary> = stmt
            .query_map([id], row_to_summary)?
            .collect::<Result<_, _>>()?;
        match found.len() {
            0 => Err(Error::NotFound {
                what: "document",
                id: id.to_string(),
            }),
            1 => Ok(found.into_iter().next().expect("one row")),
            _ => Err(Error::invalid(
                "document id",
                format!("'{id}' matches more than one document; give more characters"),
            )),
        }
    }

    /// One document with its chunks, by id or unique id prefix.
    ///
    /// # Errors
    /// [`Error::NotFound`], or an ambiguous prefix as [`Error::InvalidArgument`].
    pub fn get_document(&self, id: &str) -> Result<DocumentDetail> {
        let summary = self.resolve_document(id)?;
        let (content_hash, metadata, created_at, rev): (String, String, i64, i64) =
            self.conn.query_row(
                "SELECT content_hash, metadata, created_at, rev FROM documents WHERE id = ?1",
                [&summary.id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?;
        let mut stmt = self.conn.prepare(
            "SELECT id, ordinal, text, token_count, byte_start, byte_end FROM chunks
             WHERE document_id = ?1 ORDER BY ordinal",
        )?;
        let chunks = stmt
            .query_map([&summary.id], |r| {
                Ok(ChunkRow {
                    id: r.get(0)?,
                    ordinal: r.get::<_, i64>(1)? as usize,
                    text: r.get(2)?,
                    token_count: r.get::<_, i64>(3)? as usize,
                    byte_start: r.get::<_, i64>(4)? as usize,
                    byte_end: r.get::<_, i64>(5)? as usize,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(DocumentDetail {
            summary,
            content_hash,
            metadata: serde_json::from_str(&metadata).unwrap_or(Value::Null),
            created_at,
            rev,
            chunks,
        })
    }

    /// Counts of what the database holds.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn stats(&self) -> Result<Stats> {
        let mut collections = Vec::new();
        for c in self.collections()? {
            let (documents, chunks, tokens): (i64, i64, i64) = self.conn.query_row(
                "SELECT (SELECT count(*) FROM documents WHERE collection_id = ?1 AND deleted = 0),
                        count(k.seq), coalesce(sum(k.token_count), 0)
                 FROM chunks k JOIN documents d ON d.id = k.document_id WHERE d.collection_id = ?1",
                [c.id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            collections.push(CollectionStats {
                collection: c,
                documents: documents as usize,
                chunks: chunks as usize,
                tokens: tokens as usize,
            });
        }
        let count = |sql: &str| -> Result<usize> {
            Ok(self.conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as usize)
        };
        let size = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        Ok(Stats {
            path: self.path.clone(),
            schema_version: self.schema_version()?,
            size_bytes: size(self.path.clone()) + size(PathBuf::from(wal)),
            collections,
            deleted_documents: count("SELECT count(*) FROM documents WHERE deleted = 1")?,
            conversations: count("SELECT count(*) FROM conversations WHERE deleted = 0")?,
            messages: count("SELECT count(*) FROM messages WHERE deleted = 0")?,
        })
    }
}

/// Creates a collection and its vec0 table; the caller owns the transaction.
pub(crate) fn create_collection(
    conn: &Connection,
    name: &str,
    model_id: &str,
    dims: usize,
) -> Result<Collection> {
    conn.execute(
        "INSERT INTO collections (name, model_id, dims, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
        params![name, model_id, dims as i64, now_ms()],
    )?;
    let c = Collection {
        id: conn.last_insert_rowid(),
        name: name.to_string(),
        model_id: model_id.to_string(),
        dims,
    };
    conn.execute_batch(&format!(
        "CREATE VIRTUAL TABLE {} USING vec0(embedding float[{dims}] distance_metric=cosine)",
        c.vec_table()
    ))?;
    Ok(c)
}

/// The device id stored in the file, or empty below schema version 3.
fn read_device_id(conn: &Connection) -> Result<String> {
    let has_meta: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_schema WHERE name = 'outpost_meta'",
        [],
        |r| r.get(0),
    )?;
    if !has_meta {
        return Ok(String::new());
    }
    Ok(conn
        .query_row(
            "SELECT value FROM outpost_meta WHERE key = 'device_id'",
            [],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or_default())
}

pub(crate) fn row_to_collection(r: &rusqlite::Row<'_>) -> rusqlite::Result<Collection> {
    Ok(Collection {
        id: r.get(0)?,
        name: r.get(1)?,
        model_id: r.get(2)?,
        dims: r.get::<_, i64>(3)? as usize,
    })
}

fn row_to_summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<DocumentSummary> {
    Ok(DocumentSummary {
        id: r.get(0)?,
        collection: r.get(1)?,
        source: r.get(2)?,
        title: r.get(3)?,
        chunks: r.get::<_, i64>(4)? as usize,
        updated_at: r.get(5)?,
        deleted: r.get::<_, i64>(6)? != 0,
    })
}

/// Runs `f` inside a read transaction unless one is open already, so that the log and the
/// vectors it points at are read from one snapshot.
pub(crate) fn in_read_tx<T>(conn: &Connection, f: impl FnOnce() -> Result<T>) -> Result<T> {
    if !conn.is_autocommit() {
        return f();
    }
    conn.execute_batch("BEGIN")?;
    let out = f();
    conn.execute_batch("COMMIT")?;
    out
}

/// Crashes the process at a named point when `OUTPOST_FAILPOINT` names it (crash tests only).
#[cfg(feature = "failpoints")]
pub(crate) fn failpoint(name: &str, here: bool) {
    if here && std::env::var("OUTPOST_FAILPOINT").as_deref() == Ok(name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}
