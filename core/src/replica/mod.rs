//! The replication record of a store: HLC stamps, the outbox, change records and applying them.
//!
//! Every local write stamps its row with the device's hybrid logical clock and appends the entity
//! to `sync_outbox` in the same transaction (see [`crate::hlc`] and `docs/SYNC.md`). The sync
//! crate reads batches of [`Change`] records from the outbox, pushes them, and acknowledges them
//! only after the central store did; pulled records are applied here by the same
//! last-writer-wins rule the server uses, in one transaction with the pull cursor, so a crash
//! between two pages never applies a page twice or skips one.

use rusqlite::{Connection, Transaction};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::db::replica::{self as sql, ConversationRow, DocumentRow, MessageRow, NewChunkRow};
use crate::db::{create_collection, enqueue, put_meta, read_hlc, write_hlc, Store};
use crate::error::{Error, Result};
use crate::hlc;
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

/// An outbox entry set aside because the central store refused it on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Parked {
    /// Entity kind (`document`, `conversation`, `message`).
    pub kind: String,
    /// Entity id.
    pub id: String,
    /// What the server said.
    pub reason: String,
    /// When it was set aside, Unix ms.
    pub parked_at_ms: i64,
    /// When it is tried again (sooner if the entity changes), Unix ms.
    pub retry_after_ms: i64,
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
        Ok(sql::outbox_depth(self.connection())? as usize)
    }

    /// The stamp of the oldest change waiting to be pushed.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn outbox_oldest(&self) -> Result<Option<i64>> {
        sql::outbox_oldest(self.connection())
    }

    /// Documents waiting to be embedded locally.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn pending_reembed_count(&self) -> Result<usize> {
        Ok(sql::reembed_count(self.connection())? as usize)
    }

    /// Sets `entry` aside until `retry_after_ms` (Unix ms) because the central store refused it
    /// on its own, with the server's `reason`: later batches skip it, its outbox row stays, and
    /// a newer edit of the entity (a new row) is pushed as usual.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn park(&mut self, entry: &OutboxEntry, reason: &str, retry_after_ms: i64) -> Result<()> {
        let tx = sql::begin(self)?;
        sql::park_outbox_row(
            &tx,
            entry.seq,
            entry.hlc,
            reason,
            crate::db::now_ms(),
            retry_after_ms,
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The outbox entries set aside (see [`Store::park`]) whose change is still the one
    /// queued, oldest first.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn parked(&self) -> Result<Vec<Parked>> {
        Ok(sql::parked_rows(self.connection())?
            .into_iter()
            .map(|r| Parked {
                kind: r.kind,
                id: r.entity_id,
                reason: r.reason,
                parked_at_ms: r.parked_at,
                retry_after_ms: r.retry_after,
            })
            .collect())
    }

    /// The oldest `max` outbox rows and their change records, read in one snapshot.
    ///
    /// # Errors
    /// SQLite errors; [`Error::Corrupt`] for an outbox row of unknown kind.
    pub fn outbox_batch(&mut self, max: usize) -> Result<PushBatch> {
        let path = self.path().to_path_buf();
        let tx = sql::begin(self)?;
        let entries: Vec<OutboxEntry> = sql::outbox_rows(&tx, max, crate::db::now_ms(), &path)?
            .into_iter()
            .map(|r| OutboxEntry {
                seq: r.seq,
                kind: r.kind,
                id: r.entity_id,
                hlc: r.hlc,
            })
            .collect();
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
        export(self.connection(), kind, id)
    }

    /// Removes acknowledged outbox rows. A row that was re-queued by a newer edit since it was
    /// read (new position) stays, so that edit is pushed too. Returns the rows removed.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn acknowledge(&mut self, entries: &[OutboxEntry]) -> Result<usize> {
        let tx = sql::begin(self)?;
        let removed = sql::delete_outbox_rows(&tx, entries.iter().map(|e| (e.seq, e.hlc)))?;
        tx.commit()?;
        Ok(removed)
    }

    /// Queues every document, conversation and message for push (backfill of a central store).
    /// Returns the entities queued.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn enqueue_all(&mut self) -> Result<usize> {
        let tx = sql::begin(self)?;
        let mut n = 0;
        for kind in [Kind::Conversation, Kind::Document, Kind::Message] {
            for (id, stamp) in sql::entity_stamps(&tx, kind)? {
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
        sql::get_meta(self.connection(), &format!("sync.{key}"))
    }

    /// Sets a value of the sync state.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn set_sync_state(&mut self, key: &str, value: &str) -> Result<()> {
        set_state(self.connection(), key, value)
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
        let tx = sql::begin(self)?;
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
                sql::delete_outbox_entity(&tx, change.kind(), change.id())?;
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
        sql::reembed_texts(self.connection())
    }

    /// Stores locally made vectors for a document queued in `sync_reembed` (one per chunk, in
    /// order) and takes it off the queue. The document's stamp is unchanged: re-embedding is a
    /// local derivation, not an edit to replicate.
    ///
    /// # Errors
    /// [`Error::DimensionMismatch`] or a wrong vector count as [`Error::InvalidArgument`].
    pub fn store_reembedded(&mut self, document_id: &str, vectors: &[Vec<f32>]) -> Result<()> {
        let tx = sql::begin(self)?;
        let coll_id = sql::document_collection_id(&tx, document_id)?;
        let coll = sql::collection_by_id(&tx, coll_id)?;
        let seqs = sql::chunk_seqs(&tx, document_id)?;
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
        for (seq, v) in seqs.iter().zip(vectors) {
            if v.len() != coll.dims {
                return Err(Error::DimensionMismatch {
                    collection: coll.name.clone(),
                    expected: coll.dims,
                    got: v.len(),
                });
            }
            sql::replace_chunk_vector(&tx, &coll, *seq, v)?;
        }
        sql::unqueue_reembed(&tx, document_id)?;
        tx.commit()?;
        Ok(())
    }

    /// Per-collection counts and digests, computed as the central `outpost_checksums()` does
    /// (see `docs/SYNC.md`), for `outpost verify`.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn checksums(&self) -> Result<Map<String, Value>> {
        let conn = self.connection();
        let mut out = Map::new();
        for c in self.collections()? {
            let mut docs = Vec::new();
            let (mut live, mut tombstones) = (0usize, 0usize);
            sql::each_document_sum(conn, c.id, |r| {
                if r.deleted != 0 {
                    tombstones += 1;
                } else {
                    live += 1;
                }
                let line = format!(
                    "{}|{}|{}|{}|{}",
                    r.id, r.hlc, r.device, r.deleted, r.content_hash
                );
                docs.push((r.id, line));
            })?;
            let mut chunks = Vec::new();
            sql::each_chunk_sum(conn, &c, |r| {
                let vector = r.embedding.map(|v| vector_digest(&v)).unwrap_or_default();
                let line = format!(
                    "{}|{}|{}|{}|{}|{vector}",
                    r.id,
                    r.document_id,
                    r.ordinal,
                    sha256_hex(r.text.as_bytes()),
                    c.model_id
                );
                chunks.push((r.id, line));
            })?;
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
        sql::each_conversation_sum(conn, |r| {
            let line = format!(
                "{}|{}|{}|{}|{}",
                r.id,
                r.hlc,
                r.device,
                r.deleted,
                sha256_hex(r.title.as_bytes())
            );
            convs.push((r.id, line));
        })?;
        let mut msgs = Vec::new();
        sql::each_message_sum(conn, |r| {
            let line = format!(
                "{}|{}|{}|{}|{}|{}",
                r.id,
                r.conversation_id,
                r.hlc,
                r.device,
                r.deleted,
                sha256_hex(r.content.as_bytes())
            );
            msgs.push((r.id, line));
        })?;
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
        Kind::Conversation => Ok(sql::conversation(conn, id)?.map(|r| {
            Change::Conversation(ConversationChange {
                id: r.id,
                hlc: r.hlc,
                device: r.device,
                deleted: r.deleted,
                title: r.title,
                created_at: r.created_at,
                updated_at: r.updated_at,
            })
        })),
        Kind::Message => Ok(sql::message(conn, id)?.map(|r| {
            Change::Message(MessageChange {
                id: r.id,
                hlc: r.hlc,
                device: r.device,
                deleted: r.deleted,
                conversation_id: r.conversation_id,
                seq: r.seq,
                role: r.role,
                content: r.content,
                // A model id only travels with the vector it made.
                model: if r.embedding.is_some() { r.model } else { None },
                embedding: r.embedding,
                created_at: r.created_at,
                updated_at: r.updated_at,
            })
        })),
    }
}

fn export_document(conn: &Connection, id: &str) -> Result<Option<Change>> {
    let Some(row) = sql::document(conn, id)? else {
        return Ok(None);
    };
    let coll = sql::collection_by_id(conn, row.collection_id)?;
    let mut doc = DocumentChange {
        id: row.id,
        hlc: row.hlc,
        device: row.device,
        deleted: row.deleted,
        collection: coll.name.clone(),
        home_device: row.home_device,
        source: row.source,
        title: row.title,
        content_hash: row.content_hash,
        metadata: metadata_map(&row.metadata),
        created_at: row.created_at,
        updated_at: row.updated_at,
        chunks: Vec::new(),
    };
    if !doc.deleted {
        let Some(chunks) = sql::chunks_with_vectors(conn, &coll, id)? else {
            // Pulled with another model's vectors and not yet embedded here: there is
            // nothing of ours to push for it.
            tracing::warn!(
                document = id,
                "not pushed: its chunks still wait to be embedded here"
            );
            return Ok(None);
        };
        doc.chunks = chunks
            .into_iter()
            .map(|c| ChunkChange {
                id: c.id,
                ordinal: c.ordinal,
                text: c.text,
                token_count: c.token_count,
                byte_start: c.byte_start,
                byte_end: c.byte_end,
                metadata: metadata_map(&c.metadata),
                model: coll.model_id.clone(),
                embedding: c.embedding,
            })
            .collect();
    }
    Ok(Some(Change::Document(doc)))
}

fn apply_document(
    tx: &Transaction<'_>,
    d: &DocumentChange,
    local_model: (&str, usize),
    report: &mut ApplyReport,
) -> Result<bool> {
    let local = sql::document_stamp(tx, &d.id)?;
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
        let old = sql::collection_by_id(tx, *old_coll)?;
        sql::delete_document_chunks(tx, &old, &d.id)?;
    }
    let coll = match sql::collection_id_by_name(tx, &d.collection)? {
        Some(id) => sql::collection_by_id(tx, id)?,
        None => create_collection(tx, &d.collection, local_model.0, local_model.1)?,
    };
    sql::upsert_document(
        tx,
        &DocumentRow {
            id: d.id.clone(),
            hlc: d.hlc,
            device: d.device.clone(),
            deleted: d.deleted,
            collection_id: coll.id,
            home_device: d.home_device.clone(),
            source: d.source.clone(),
            title: d.title.clone(),
            content_hash: d.content_hash.clone(),
            metadata: Value::Object(d.metadata.clone()).to_string(),
            created_at: d.created_at,
            updated_at: d.updated_at,
        },
    )?;
    let mut foreign = false;
    if !d.deleted {
        let mut rows = Vec::with_capacity(d.chunks.len());
        for c in &d.chunks {
            // A vector from another model (or of another size) would corrupt the index: the
            // chunk is stored without one and the document is re-embedded here.
            let ours = c.model == coll.model_id && c.embedding.len() == coll.dims;
            foreign |= !ours;
            rows.push(NewChunkRow {
                id: &c.id,
                ordinal: c.ordinal,
                text: &c.text,
                token_count: c.token_count,
                byte_start: c.byte_start,
                byte_end: c.byte_end,
                metadata: Value::Object(c.metadata.clone()).to_string(),
                embedding: ours.then_some(c.embedding.as_slice()),
            });
        }
        sql::insert_chunks(tx, &coll, &d.id, &rows)?;
        sql::insert_metadata_keys(tx, coll.id, d.metadata.keys())?;
    }
    if foreign {
        sql::queue_reembed(tx, &d.id)?;
        report.reembed += 1;
    } else {
        sql::unqueue_reembed(tx, &d.id)?;
    }
    Ok(true)
}

fn apply_conversation(tx: &Transaction<'_>, c: &ConversationChange) -> Result<bool> {
    let local = sql::conversation_stamp(tx, &c.id)?;
    if !newer((c.hlc, &c.device), local) {
        return Ok(false);
    }
    sql::upsert_conversation(
        tx,
        &ConversationRow {
            id: c.id.clone(),
            hlc: c.hlc,
            device: c.device.clone(),
            deleted: c.deleted,
            title: c.title.clone(),
            created_at: c.created_at,
            updated_at: c.updated_at,
        },
    )?;
    Ok(true)
}

fn apply_message(tx: &Transaction<'_>, m: &MessageChange) -> Result<bool> {
    let local = sql::message_stamp(tx, &m.id)?;
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
    sql::insert_placeholder_conversation(tx, &m.conversation_id, m.created_at)?;
    sql::upsert_message(
        tx,
        &MessageRow {
            id: m.id.clone(),
            hlc: m.hlc,
            device: m.device.clone(),
            deleted: m.deleted,
            conversation_id: m.conversation_id.clone(),
            seq: m.seq,
            role: m.role.clone(),
            content: m.content.clone(),
            model: m.model.clone(),
            embedding: m.embedding.clone(),
            created_at: m.created_at,
            updated_at: m.updated_at,
        },
    )?;
    sql::touch_conversation(tx, &m.conversation_id, m.created_at)?;
    Ok(true)
}
