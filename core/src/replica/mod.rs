//! The replication record of a store: HLC stamps, the outbox, change records and applying them.
//!
//! Every local write stamps its row with the device's hybrid logical clock and appends the entity
//! to `sync_outbox` in the same transaction (see [`crate::hlc`] and `docs/SYNC.md`). The sync
//! crate reads batches of [`Change`] records from the outbox, pushes them, and acknowledges them
//! only after the central store did; pulled records are applied here by the same
//! last-writer-wins rule the server uses, in one transaction with the pull cursor, so a crash
//! between two pages never applies a page twice or skips one.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::db::{
    blob_to_vector, create_collection, enqueue, put_meta, read_hlc, row_to_collection, vector_blob,
    write_hlc, Store,
};
use crate::error::{Error, Result};
use crate::hlc;
use crate::model::Collection;
pub use crate::model::Kind;

/// One replicated change: the whole current state of an entity, with its stamp.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Change {
    /// A document and all its chunks.
    Document(DocumentChange),
    /// A conversation.
    Conversation(ConversationChange),
    /// A message.
    Message(MessageChange),
}

/// A document as it travels (see `docs/SYNC.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentChange {
    /// UUID.
    pub id: String,
    /// HLC stamp of the last write.
    pub hlc: i64,
    /// Device of the last write.
    pub device: String,
    /// Tombstone.
    pub deleted: bool,
    /// Collection name.
    pub collection: String,
    /// Device that created the document; with `collection` and `source` it names it there.
    pub home_device: String,
    /// Source path or URI on the home device.
    pub source: String,
    /// Title.
    pub title: String,
    /// Content hash.
    pub content_hash: String,
    /// Metadata.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
    /// All chunks, in order; empty for a tombstone.
    #[serde(default)]
    pub chunks: Vec<ChunkChange>,
}

/// A chunk with its vector and the model that made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChange {
    /// UUID.
    pub id: String,
    /// Position in the document.
    pub ordinal: i64,
    /// Text.
    pub text: String,
    /// Tokens.
    pub token_count: i64,
    /// Byte span start in the document's text.
    pub byte_start: i64,
    /// Byte span end.
    pub byte_end: i64,
    /// Chunk metadata.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// Model id of `embedding`.
    pub model: String,
    /// The vector.
    pub embedding: Vec<f32>,
}

/// A conversation as it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationChange {
    /// UUID.
    pub id: String,
    /// HLC stamp.
    pub hlc: i64,
    /// Device of the last write.
    pub device: String,
    /// Tombstone.
    pub deleted: bool,
    /// Title.
    pub title: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
}

/// A message as it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageChange {
    /// UUID.
    pub id: String,
    /// HLC stamp.
    pub hlc: i64,
    /// Device of the last write.
    pub device: String,
    /// Tombstone.
    pub deleted: bool,
    /// Its conversation.
    pub conversation_id: String,
    /// Position (two devices may use the same one).
    pub seq: i64,
    /// Role.
    pub role: String,
    /// Text.
    pub content: String,
    /// Model of `embedding`.
    pub model: Option<String>,
    /// The message's vector, if it has one.
    pub embedding: Option<Vec<f32>>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
}

impl Change {
    /// The entity kind.
    pub fn kind(&self) -> Kind {
        match self {
            Change::Document(_) => Kind::Document,
            Change::Conversation(_) => Kind::Conversation,
            Change::Message(_) => Kind::Message,
        }
    }

    /// The entity id.
    pub fn id(&self) -> &str {
        match self {
            Change::Document(d) => &d.id,
            Change::Conversation(c) => &c.id,
            Change::Message(m) => &m.id,
        }
    }

    /// `(hlc, device)`, the last-writer-wins key.
    pub fn stamp(&self) -> (i64, &str) {
        match self {
            Change::Document(d) => (d.hlc, &d.device),
            Change::Conversation(c) => (c.hlc, &c.device),
            Change::Message(m) => (m.hlc, &m.device),
        }
    }

    /// Number of chunk rows this record carries.
    pub fn chunk_count(&self) -> usize {
        match self {
            Change::Document(d) => d.chunks.len(),
            _ => 0,
        }
    }
}

/// One outbox row: an entity changed locally and not yet acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Outbox position; a newer edit of the same entity replaces the row with a new position.
    pub seq: i64,
    /// Entity kind.
    pub kind: Kind,
    /// Entity id.
    pub id: String,
    /// Stamp of the change queued.
    pub hlc: i64,
}

/// The oldest outbox rows with the records to push for them.
#[derive(Debug, Clone, Default)]
pub struct PushBatch {
    /// The rows, oldest first.
    pub entries: Vec<OutboxEntry>,
    /// The change records, in the same order (an entity that no longer exists has none).
    pub changes: Vec<Change>,
}

/// What applying a page of pulled changes did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    /// Records stored (newer than the local row, or new).
    pub applied: usize,
    /// Records skipped: the local row is as new or newer.
    pub skipped: usize,
    /// Documents whose vectors came from another model, queued to be embedded here.
    pub reembed: usize,
}

/// SHA-256 of `data` as lowercase hex.
fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// SHA-256 of a vector in pgvector's binary form (`vector_send`): big-endian i16 dimension, a
/// zero i16, then big-endian f32 values. The central store hashes the same bytes.
pub fn vector_digest(v: &[f32]) -> String {
    let mut bytes = Vec::with_capacity(4 + 4 * v.len());
    bytes.extend_from_slice(&(v.len() as i16).to_be_bytes());
    bytes.extend_from_slice(&0i16.to_be_bytes());
    for x in v {
        bytes.extend_from_slice(&x.to_be_bytes());
    }
    sha256_hex(&bytes)
}

/// The digest of sorted lines, as `outpost_checksums()` computes it.
fn lines_digest(mut lines: Vec<(String, String)>) -> String {
    lines.sort();
    let joined: Vec<String> = lines.into_iter().map(|(_, l)| l).collect();
    sha256_hex(joined.join("\n").as_bytes())
}

fn metadata_map(text: &str) -> Map<String, Value> {
    match serde_json::from_str(text) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

fn collection_by_id(conn: &Connection, id: i64) -> Result<Collection> {
    Ok(conn.query_row(
        "SELECT id, name, model_id, dims FROM collections WHERE id = ?1",
        [id],
        row_to_collection,
    )?)
}

/// Whether a remote `(hlc, device)` beats the local one.
fn newer(remote: (i64, &str), local: Option<(i64, String)>) -> bool {
    match local {
        None => true,
        Some((h, d)) => (remote.0, remote.1) > (h, d.as_str()),
    }
}

impl Store {
    /// Entities waiting to be pushed.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn outbox_depth(&self) -> Result<usize> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM sync_outbox", [], |r| {
                r.get::<_, i64>(0)
            })? as usize)
    }

    /// The stamp of the oldest change waiting to be pushed.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn outbox_oldest(&self) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row("SELECT min(hlc) FROM sync_outbox", [], |r| r.get(0))?)
    }

    /// Documents waiting to be embedded locally.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn pending_reembed_count(&self) -> Result<usize> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM sync_reembed", [], |r| {
                r.get::<_, i64>(0)
            })? as usize)
    }

    /// The oldest `max` outbox rows and their change records, read in one snapshot.
    ///
    /// # Errors
    /// SQLite errors; [`Error::Corrupt`] for an outbox row of unknown kind.
    pub fn outbox_batch(&mut self, max: usize) -> Result<PushBatch> {
        let path = self.path().to_path_buf();
        let tx = self.conn.transaction()?;
        let entries: Vec<OutboxEntry> = {
            let mut stmt = tx.prepare(
                "SELECT seq, kind, entity_id, hlc FROM sync_outbox ORDER BY seq LIMIT ?1",
            )?;
            let rows = stmt.query_map([max as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get(2)?,
                    r.get(3)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, kind, id, hlc) = row?;
                let kind = Kind::parse(&kind).ok_or_else(|| Error::Corrupt {
                    path: path.clone(),
                    detail: format!("outbox row {seq} has unknown kind '{kind}'"),
                })?;
                out.push(OutboxEntry { seq, kind, id, hlc });
            }
            out
        };
        let mut changes = Vec::with_capacity(entries.len());
        for e in &entries {
            if let Some(c) = export(&tx, e.kind, &e.id)? {
                changes.push(c);
            }
        }
        tx.commit()?;
        Ok(PushBatch { entries, changes })
    }

    /// The change record of one entity as it is stored now.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn change_record(&self, kind: Kind, id: &str) -> Result<Option<Change>> {
        export(&self.conn, kind, id)
    }

    /// Removes acknowledged outbox rows. A row that was re-queued by a newer edit since it was
    /// read (new position) stays, so that edit is pushed too. Returns the rows removed.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn acknowledge(&mut self, entries: &[OutboxEntry]) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let mut removed = 0;
        {
            let mut stmt = tx.prepare("DELETE FROM sync_outbox WHERE seq = ?1 AND hlc = ?2")?;
            for e in entries {
                removed += stmt.execute(params![e.seq, e.hlc])?;
            }
        }
        tx.commit()?;
        Ok(removed)
    }

    /// Queues every document, conversation and message for push (backfill of a central store).
    /// Returns the entities queued.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn enqueue_all(&mut self) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let mut n = 0;
        for (kind, sql) in [
            (
                Kind::Conversation,
                "SELECT id, hlc FROM conversations ORDER BY created_at, id",
            ),
            (
                Kind::Document,
                "SELECT id, hlc FROM documents ORDER BY created_at, id",
            ),
            (
                Kind::Message,
                "SELECT id, hlc FROM messages ORDER BY created_at, seq, id",
            ),
        ] {
            let rows: Vec<(String, i64)> = {
                let mut stmt = tx.prepare(sql)?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<std::result::Result<_, _>>()?
            };
            for (id, stamp) in rows {
                enqueue(&tx, kind, &id, stamp)?;
                n += 1;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    /// A value of the sync state (`outpost_meta` keys under `sync.`).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn sync_state(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT value FROM outpost_meta WHERE key = ?1",
                [format!("sync.{key}")],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Sets a value of the sync state.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn set_sync_state(&mut self, key: &str, value: &str) -> Result<()> {
        set_state(&self.conn, key, value)
    }

    /// Applies a page of pulled changes by last-writer-wins and stores `next_cursor` under
    /// `cursor_key`, all in one transaction.
    ///
    /// A collection that does not exist here is created for `local_model` (`(id, dims)`); chunks
    /// whose vectors came from another model are stored without vectors and their document is
    /// queued in `sync_reembed` instead of mixing foreign vectors into the index.
    ///
    /// # Errors
    /// SQLite errors; [`Error::InvalidArgument`] for a record that cannot be stored (a non-finite
    /// vector value, say); nothing of the page is applied then.
    pub fn apply_pulled(
        &mut self,
        changes: &[Change],
        cursor_key: &str,
        next_cursor: &str,
        local_model: (&str, usize),
    ) -> Result<ApplyReport> {
        let tx = self.conn.transaction()?;
        let mut report = ApplyReport::default();
        let mut clock = read_hlc(&tx)?;
        for change in changes {
            clock = hlc::observe(clock, change.stamp().0);
            let applied = match change {
                Change::Document(d) => apply_document(&tx, d, local_model, &mut report)?,
                Change::Conversation(c) => apply_conversation(&tx, c)?,
                Change::Message(m) => apply_message(&tx, m)?,
            };
            if applied {
                report.applied += 1;
                // The remote write won: a queued local version of it is moot.
                tx.execute(
                    "DELETE FROM sync_outbox WHERE kind = ?1 AND entity_id = ?2",
                    params![change.kind().as_str(), change.id()],
                )?;
            } else {
                report.skipped += 1;
            }
        }
        write_hlc(&tx, clock)?;
        set_state(&tx, cursor_key, next_cursor)?;
        tx.commit()?;
        Ok(report)
    }

    /// Documents waiting to be embedded locally (pulled with another model's vectors).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn pending_reembed(&self) -> Result<Vec<(String, Vec<String>)>> {
        let ids: Vec<String> = {
            let mut stmt = self
                .conn
                .prepare("SELECT document_id FROM sync_reembed ORDER BY document_id")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<std::result::Result<_, _>>()?
        };
        let mut out = Vec::with_capacity(ids.len());
        let mut stmt = self
            .conn
            .prepare("SELECT text FROM chunks WHERE document_id = ?1 ORDER BY ordinal")?;
        for id in ids {
            let texts = stmt
                .query_map([&id], |r| r.get(0))?
                .collect::<std::result::Result<Vec<String>, _>>()?;
            out.push((id, texts));
        }
        Ok(out)
    }

    /// Stores locally made vectors for a document queued in `sync_reembed` (one per chunk, in
    /// order) and takes it off the queue. The document's stamp is unchanged: re-embedding is a
    /// local derivation, not an edit to replicate.
    ///
    /// # Errors
    /// [`Error::DimensionMismatch`] or a wrong vector count as [`Error::InvalidArgument`].
    pub fn store_reembedded(&mut self, document_id: &str, vectors: &[Vec<f32>]) -> Result<()> {
        let tx = self.conn.transaction()?;
        let coll_id: i64 = tx.query_row(
            "SELECT collection_id FROM documents WHERE id = ?1",
            [document_id],
            |r| r.get(0),
        )?;
        let coll = collection_by_id(&tx, coll_id)?;
        let seqs: Vec<i64> = {
            let mut stmt =
                tx.prepare("SELECT seq FROM chunks WHERE document_id = ?1 ORDER BY ordinal")?;
            let rows = stmt.query_map([document_id], |r| r.get(0))?;
            rows.collect::<std::result::Result<_, _>>()?
        };
        if seqs.len() != vectors.len() {
            return Err(Error::invalid(
                "vectors",
                format!(
                    "document {document_id} has {} chunks, got {} vectors",
                    seqs.len(),
                    vectors.len()
                ),
            ));
        }
        let table = coll.vec_table();
        for (seq, v) in seqs.iter().zip(vectors) {
            if v.len() != coll.dims {
                return Err(Error::DimensionMismatch {
                    collection: coll.name.clone(),
                    expected: coll.dims,
                    got: v.len(),
                });
            }
            tx.execute(&format!("DELETE FROM {table} WHERE rowid = ?1"), [seq])?;
            tx.execute(
                &format!("INSERT INTO {table} (rowid, embedding) VALUES (?1, ?2)"),
                params![seq, vector_blob(v)],
            )?;
            // The chunk row is unchanged, so its triggers did not log the new vector.
            tx.execute("INSERT INTO ann_log (chunk_seq) VALUES (?1)", [seq])?;
        }
        tx.execute(
            "DELETE FROM sync_reembed WHERE document_id = ?1",
            [document_id],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Per-collection counts and digests, computed as the central `outpost_checksums()` does
    /// (see `docs/SYNC.md`), for `outpost verify`.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn checksums(&self) -> Result<Map<String, Value>> {
        let mut out = Map::new();
        for c in self.collections()? {
            let mut docs = Vec::new();
            let (mut live, mut tombstones) = (0usize, 0usize);
            {
                let mut stmt = self.conn.prepare(
                    "SELECT id, hlc, device, deleted, content_hash FROM documents WHERE collection_id = ?1",
                )?;
                let mut rows = stmt.query([c.id])?;
                while let Some(r) = rows.next()? {
                    let id: String = r.get(0)?;
                    let deleted: i64 = r.get(3)?;
                    if deleted != 0 {
                        tombstones += 1;
                    } else {
                        live += 1;
                    }
                    let line = format!(
                        "{id}|{}|{}|{deleted}|{}",
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(4)?
                    );
                    docs.push((id, line));
                }
            }
            let mut chunks = Vec::new();
            {
                let mut stmt = self.conn.prepare(&format!(
                    "SELECT k.id, k.document_id, k.ordinal, k.text, v.embedding
                     FROM chunks k JOIN documents d ON d.id = k.document_id
                     LEFT JOIN {} v ON v.rowid = k.seq
                     WHERE d.collection_id = ?1 AND d.deleted = 0",
                    c.vec_table()
                ))?;
                let mut rows = stmt.query([c.id])?;
                while let Some(r) = rows.next()? {
                    let id: String = r.get(0)?;
                    let text: String = r.get(3)?;
                    let vector = r
                        .get::<_, Option<Vec<u8>>>(4)?
                        .map(|b| vector_digest(&blob_to_vector(&b)))
                        .unwrap_or_default();
                    let line = format!(
                        "{id}|{}|{}|{}|{}|{vector}",
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        sha256_hex(text.as_bytes()),
                        c.model_id
                    );
                    chunks.push((id, line));
                }
            }
            let n_chunks = chunks.len();
            out.insert(
                c.name.clone(),
                serde_json::json!({
                    "documents": live,
                    "tombstones": tombstones,
                    "chunks": n_chunks,
                    "documents_sha256": lines_digest(docs),
                    "chunks_sha256": lines_digest(chunks),
                }),
            );
        }
        let mut convs = Vec::new();
        {
            let mut stmt = self
                .conn
                .prepare("SELECT id, hlc, device, deleted, title FROM conversations")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let id: String = r.get(0)?;
                let line = format!(
                    "{id}|{}|{}|{}|{}",
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    sha256_hex(r.get::<_, String>(4)?.as_bytes())
                );
                convs.push((id, line));
            }
        }
        let mut msgs = Vec::new();
        {
            let mut stmt = self.conn.prepare(
                "SELECT id, conversation_id, hlc, device, deleted, content FROM messages",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let id: String = r.get(0)?;
                let line = format!(
                    "{id}|{}|{}|{}|{}|{}",
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    sha256_hex(r.get::<_, String>(5)?.as_bytes())
                );
                msgs.push((id, line));
            }
        }
        if !convs.is_empty() || !msgs.is_empty() {
            let (nc, nm) = (convs.len(), msgs.len());
            out.insert(
                "_conversations".into(),
                serde_json::json!({
                    "conversations": nc,
                    "messages": nm,
                    "conversations_sha256": lines_digest(convs),
                    "messages_sha256": lines_digest(msgs),
                }),
            );
        }
        Ok(out)
    }
}

fn set_state(conn: &Connection, key: &str, value: &str) -> Result<()> {
    put_meta(conn, &format!("sync.{key}"), value)
}

/// Reads one entity's current state as a change record.
fn export(conn: &Connection, kind: Kind, id: &str) -> Result<Option<Change>> {
    match kind {
        Kind::Document => export_document(conn, id),
        Kind::Conversation => Ok(conn
            .query_row(
                "SELECT id, hlc, device, deleted, title, created_at, updated_at FROM conversations WHERE id = ?1",
                [id],
                |r| {
                    Ok(Change::Conversation(ConversationChange {
                        id: r.get(0)?,
                        hlc: r.get(1)?,
                        device: r.get(2)?,
                        deleted: r.get::<_, i64>(3)? != 0,
                        title: r.get(4)?,
                        created_at: r.get(5)?,
                        updated_at: r.get(6)?,
                    }))
                },
            )
            .optional()?),
        Kind::Message => Ok(conn
            .query_row(
                "SELECT id, hlc, device, deleted, conversation_id, seq, role, content, model_id, embedding,
                        created_at, updated_at FROM messages WHERE id = ?1",
                [id],
                |r| {
                    let model: Option<String> = r.get(8)?;
                    let blob: Option<Vec<u8>> = r.get(9)?;
                    let embedding = blob.map(|b| blob_to_vector(&b));
                    Ok(Change::Message(MessageChange {
                        id: r.get(0)?,
                        hlc: r.get(1)?,
                        device: r.get(2)?,
                        deleted: r.get::<_, i64>(3)? != 0,
                        conversation_id: r.get(4)?,
                        seq: r.get(5)?,
                        role: r.get(6)?,
                        content: r.get(7)?,
                        model: if embedding.is_some() { model } else { None },
                        embedding,
                        created_at: r.get(10)?,
                        updated_at: r.get(11)?,
                    }))
                },
            )
            .optional()?),
    }
}

fn export_document(conn: &Connection, id: &str) -> Result<Option<Change>> {
    let row = conn
        .query_row(
            "SELECT d.id, d.hlc, d.device, d.deleted, c.id, d.home_device, d.source, d.title,
                    d.content_hash, d.metadata, d.created_at, d.updated_at
             FROM documents d JOIN collections c ON c.id = d.collection_id WHERE d.id = ?1",
            [id],
            |r| {
                Ok((
                    DocumentChange {
                        id: r.get(0)?,
                        hlc: r.get(1)?,
                        device: r.get(2)?,
                        deleted: r.get::<_, i64>(3)? != 0,
                        collection: String::new(),
                        home_device: r.get(5)?,
                        source: r.get(6)?,
                        title: r.get(7)?,
                        content_hash: r.get(8)?,
                        metadata: metadata_map(&r.get::<_, String>(9)?),
                        created_at: r.get(10)?,
                        updated_at: r.get(11)?,
                        chunks: Vec::new(),
                    },
                    r.get::<_, i64>(4)?,
                ))
            },
        )
        .optional()?;
    let Some((mut doc, coll_id)) = row else {
        return Ok(None);
    };
    let coll = collection_by_id(conn, coll_id)?;
    doc.collection = coll.name.clone();
    if !doc.deleted {
        let mut stmt = conn.prepare_cached(
            "SELECT seq, id, ordinal, text, token_count, byte_start, byte_end, metadata
             FROM chunks WHERE document_id = ?1 ORDER BY ordinal",
        )?;
        let mut vec_stmt = conn.prepare_cached(&format!(
            "SELECT embedding FROM {} WHERE rowid = ?1",
            coll.vec_table()
        ))?;
        let mut rows = stmt.query([id])?;
        while let Some(r) = rows.next()? {
            let seq: i64 = r.get(0)?;
            let Some(blob) = vec_stmt
                .query_row([seq], |v| v.get::<_, Vec<u8>>(0))
                .optional()?
            else {
                // Pulled with another model's vectors and not yet embedded here: there is
                // nothing of ours to push for it.
                tracing::warn!(
                    document = id,
                    "not pushed: its chunks still wait to be embedded here"
                );
                return Ok(None);
            };
            doc.chunks.push(ChunkChange {
                id: r.get(1)?,
                ordinal: r.get(2)?,
                text: r.get(3)?,
                token_count: r.get(4)?,
                byte_start: r.get(5)?,
                byte_end: r.get(6)?,
                metadata: metadata_map(&r.get::<_, String>(7)?),
                model: coll.model_id.clone(),
                embedding: blob_to_vector(&blob),
            });
        }
    }
    Ok(Some(Change::Document(doc)))
}

fn apply_document(
    tx: &Transaction<'_>,
    d: &DocumentChange,
    local_model: (&str, usize),
    report: &mut ApplyReport,
) -> Result<bool> {
    let local: Option<(i64, String, i64)> = tx
        .query_row(
            "SELECT hlc, device, collection_id FROM documents WHERE id = ?1",
            [&d.id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    if !newer(
        (d.hlc, &d.device),
        local.as_ref().map(|l| (l.0, l.1.clone())),
    ) {
        return Ok(false);
    }
    for c in &d.chunks {
        if c.embedding.iter().any(|x| !x.is_finite()) {
            return Err(Error::invalid(
                "pulled chunk",
                format!(
                    "chunk {} of document {} has a NaN or infinite value",
                    c.id, d.id
                ),
            ));
        }
    }
    // Drop the old version's chunks and vectors (from whichever collection held them).
    if let Some((_, _, old_coll)) = &local {
        let old = collection_by_id(tx, *old_coll)?;
        tx.execute(
            &format!(
                "DELETE FROM {} WHERE rowid IN (SELECT seq FROM chunks WHERE document_id = ?1)",
                old.vec_table()
            ),
            [&d.id],
        )?;
        tx.execute("DELETE FROM chunks WHERE document_id = ?1", [&d.id])?;
    }
    let coll = match tx
        .query_row(
            "SELECT id FROM collections WHERE name = ?1",
            [&d.collection],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
    {
        Some(id) => collection_by_id(tx, id)?,
        None => create_collection(tx, &d.collection, local_model.0, local_model.1)?,
    };
    let metadata = Value::Object(d.metadata.clone()).to_string();
    tx.execute(
        "INSERT INTO documents (id, collection_id, source, title, content_hash, metadata, created_at,
                                updated_at, deleted, hlc, device, home_device)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT(id) DO UPDATE SET collection_id = excluded.collection_id, source = excluded.source,
             title = excluded.title, content_hash = excluded.content_hash, metadata = excluded.metadata,
             created_at = excluded.created_at, updated_at = excluded.updated_at, deleted = excluded.deleted,
             hlc = excluded.hlc, device = excluded.device, home_device = excluded.home_device,
             rev = rev + 1",
        params![
            d.id,
            coll.id,
            d.source,
            d.title,
            d.content_hash,
            metadata,
            d.created_at,
            d.updated_at,
            d.deleted as i64,
            d.hlc,
            d.device,
            d.home_device
        ],
    )?;
    let mut foreign = false;
    if !d.deleted {
        let mut insert_chunk = tx.prepare_cached(
            "INSERT INTO chunks (id, document_id, ordinal, text, token_count, byte_start, byte_end, metadata)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        let mut insert_vec = tx.prepare(&format!(
            "INSERT INTO {} (rowid, embedding) VALUES (?1, ?2)",
            coll.vec_table()
        ))?;
        for c in &d.chunks {
            insert_chunk.execute(params![
                c.id,
                d.id,
                c.ordinal,
                c.text,
                c.token_count,
                c.byte_start,
                c.byte_end,
                Value::Object(c.metadata.clone()).to_string()
            ])?;
            if c.model == coll.model_id && c.embedding.len() == coll.dims {
                insert_vec.execute(params![tx.last_insert_rowid(), vector_blob(&c.embedding)])?;
            } else {
                foreign = true;
            }
        }
        let mut insert_key = tx.prepare_cached(
            "INSERT OR IGNORE INTO metadata_keys (collection_id, key) VALUES (?1, ?2)",
        )?;
        for key in d.metadata.keys() {
            insert_key.execute(params![coll.id, key])?;
        }
    }
    if foreign {
        tx.execute(
            "INSERT OR IGNORE INTO sync_reembed (document_id) VALUES (?1)",
            [&d.id],
        )?;
        report.reembed += 1;
    } else {
        tx.execute("DELETE FROM sync_reembed WHERE document_id = ?1", [&d.id])?;
    }
    Ok(true)
}

fn apply_conversation(tx: &Transaction<'_>, c: &ConversationChange) -> Result<bool> {
    let local: Option<(i64, String)> = tx
        .query_row(
            "SELECT hlc, device FROM conversations WHERE id = ?1",
            [&c.id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if !newer((c.hlc, &c.device), local) {
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO conversations (id, title, created_at, updated_at, deleted, hlc, device)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(id) DO UPDATE SET title = excluded.title, created_at = excluded.created_at,
             updated_at = max(updated_at, excluded.updated_at), deleted = excluded.deleted,
             hlc = excluded.hlc, device = excluded.device, rev = rev + 1",
        params![
            c.id,
            c.title,
            c.created_at,
            c.updated_at,
            c.deleted as i64,
            c.hlc,
            c.device
        ],
    )?;
    Ok(true)
}

fn apply_message(tx: &Transaction<'_>, m: &MessageChange) -> Result<bool> {
    let local: Option<(i64, String)> = tx
        .query_row(
            "SELECT hlc, device FROM messages WHERE id = ?1",
            [&m.id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if !newer((m.hlc, &m.device), local) {
        return Ok(false);
    }
    if let Some(v) = &m.embedding {
        if v.iter().any(|x| !x.is_finite()) {
            return Err(Error::invalid(
                "pulled message",
                format!("message {} has a NaN or infinite value in its vector", m.id),
            ));
        }
    }
    // Its conversation normally arrives first; if not, a placeholder with the lowest stamp holds
    // the message until the real record replaces it.
    tx.execute(
        "INSERT OR IGNORE INTO conversations (id, title, created_at, updated_at, hlc, device)
         VALUES (?1, '', ?2, ?2, 0, '')",
        params![m.conversation_id, m.created_at],
    )?;
    tx.execute(
        "INSERT INTO messages (id, conversation_id, seq, role, content, model_id, embedding, created_at,
                               updated_at, deleted, hlc, device)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT(id) DO UPDATE SET conversation_id = excluded.conversation_id, seq = excluded.seq,
             role = excluded.role, content = excluded.content, model_id = excluded.model_id,
             embedding = excluded.embedding, created_at = excluded.created_at,
             updated_at = excluded.updated_at, deleted = excluded.deleted, hlc = excluded.hlc,
             device = excluded.device",
        params![
            m.id,
            m.conversation_id,
            m.seq,
            m.role,
            m.content,
            m.model,
            m.embedding.as_deref().map(vector_blob),
            m.created_at,
            m.updated_at,
            m.deleted as i64,
            m.hlc,
            m.device
        ],
    )?;
    tx.execute(
        "UPDATE conversations SET updated_at = max(updated_at, ?2) WHERE id = ?1",
        params![m.conversation_id, m.created_at],
    )?;
    Ok(true)
}
