//! The SQL of replication: the outbox queue, the re-embed queue, the rows a change record is read
//! from and written to, and the rows `checksums()` digests.
//!
//! Only statements live here; what they mean (last-writer-wins, which vectors are foreign, how
//! records and digests are assembled) is decided in `crate::replica`, which passes plain rows in
//! and gets plain rows back. Functions take a `&Connection`, so the caller's transaction (a
//! `Transaction` derefs to one) sets the boundaries.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::{blob_to_vector, row_to_collection, vector_blob, Store};
use crate::error::{Error, Result};
use crate::model::{Collection, Kind};

/// A `sync_outbox` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutboxRow {
    pub seq: i64,
    pub kind: Kind,
    pub entity_id: String,
    pub hlc: i64,
}

/// A `documents` row as it replicates (no `rev`).
#[derive(Debug, Clone)]
pub(crate) struct DocumentRow {
    pub id: String,
    pub hlc: i64,
    pub device: String,
    pub deleted: bool,
    pub collection_id: i64,
    pub home_device: String,
    pub source: String,
    pub title: String,
    pub content_hash: String,
    /// The JSON object as stored.
    pub metadata: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A `chunks` row as it replicates, with its vector.
#[derive(Debug, Clone)]
pub(crate) struct ChunkRecord {
    pub id: String,
    pub ordinal: i64,
    pub text: String,
    pub token_count: i64,
    pub byte_start: i64,
    pub byte_end: i64,
    /// The JSON object as stored.
    pub metadata: String,
    pub embedding: Vec<f32>,
}

/// A chunk to insert for a pulled document; `embedding` is `None` when the vector is not stored.
#[derive(Debug, Clone)]
pub(crate) struct NewChunkRow<'a> {
    pub id: &'a str,
    pub ordinal: i64,
    pub text: &'a str,
    pub token_count: i64,
    pub byte_start: i64,
    pub byte_end: i64,
    /// The JSON object to store.
    pub metadata: String,
    pub embedding: Option<&'a [f32]>,
}

/// A `conversations` row as it replicates.
#[derive(Debug, Clone)]
pub(crate) struct ConversationRow {
    pub id: String,
    pub hlc: i64,
    pub device: String,
    pub deleted: bool,
    pub title: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A `messages` row as it replicates.
#[derive(Debug, Clone)]
pub(crate) struct MessageRow {
    pub id: String,
    pub hlc: i64,
    pub device: String,
    pub deleted: bool,
    pub conversation_id: String,
    pub seq: i64,
    pub role: String,
    pub content: String,
    /// `model_id` as stored (set even where `embedding` is not, on read).
    pub model: Option<String>,
    pub embedding: Option<Vec<f32>>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A document line of `checksums()`.
#[derive(Debug, Clone)]
pub(crate) struct DocumentSumRow {
    pub id: String,
    pub hlc: i64,
    pub device: String,
    pub deleted: i64,
    pub content_hash: String,
}

/// A chunk line of `checksums()`; `embedding` is `None` for a chunk without a vector here.
#[derive(Debug, Clone)]
pub(crate) struct ChunkSumRow {
    pub id: String,
    pub document_id: String,
    pub ordinal: i64,
    pub text: String,
    pub embedding: Option<Vec<f32>>,
}

/// A conversation line of `checksums()`.
#[derive(Debug, Clone)]
pub(crate) struct ConversationSumRow {
    pub id: String,
    pub hlc: i64,
    pub device: String,
    pub deleted: i64,
    pub title: String,
}

/// A message line of `checksums()`.
#[derive(Debug, Clone)]
pub(crate) struct MessageSumRow {
    pub id: String,
    pub conversation_id: String,
    pub hlc: i64,
    pub device: String,
    pub deleted: i64,
    pub content: String,
}

/// Opens a (deferred) write transaction on the store's connection.
pub(crate) fn begin(store: &mut Store) -> Result<Transaction<'_>> {
    Ok(store.conn.transaction()?)
}

/// Rows in `sync_outbox`.
pub(crate) fn outbox_depth(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("SELECT count(*) FROM sync_outbox", [], |r| r.get(0))?)
}

/// The lowest stamp in `sync_outbox`.
pub(crate) fn outbox_oldest(conn: &Connection) -> Result<Option<i64>> {
    Ok(conn.query_row("SELECT min(hlc) FROM sync_outbox", [], |r| r.get(0))?)
}

/// The first `max` outbox rows by position that are not parked at `now_ms` (a park holds until
/// its `retry_after`, and only the row it was made for). `path` names the database in the
/// [`Error::Corrupt`] of a row whose kind is unknown; rows after it are not read.
pub(crate) fn outbox_rows(
    conn: &Connection,
    max: usize,
    now_ms: i64,
    path: &Path,
) -> Result<Vec<OutboxRow>> {
    let mut stmt = conn.prepare(
        "SELECT o.seq, o.kind, o.entity_id, o.hlc FROM sync_outbox o
         WHERE NOT EXISTS (SELECT 1 FROM sync_parked p
                           WHERE p.seq = o.seq AND p.hlc = o.hlc AND p.retry_after > ?2)
         ORDER BY o.seq LIMIT ?1",
    )?;
    let rows = stmt.query_map(params![max as i64, now_ms], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get(2)?,
            r.get(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, kind, entity_id, hlc) = row?;
        let kind = Kind::parse(&kind).ok_or_else(|| Error::Corrupt {
            path: path.to_path_buf(),
            detail: format!("outbox row {seq} has unknown kind '{kind}'"),
        })?;
        out.push(OutboxRow {
            seq,
            kind,
            entity_id,
            hlc,
        });
    }
    Ok(out)
}

/// Deletes each outbox row `(seq, hlc)` that still has that stamp; returns the rows deleted.
pub(crate) fn delete_outbox_rows(
    conn: &Connection,
    rows: impl IntoIterator<Item = (i64, i64)>,
) -> Result<usize> {
    let mut removed = 0;
    let mut stmt = conn.prepare("DELETE FROM sync_outbox WHERE seq = ?1 AND hlc = ?2")?;
    let mut unpark = conn.prepare("DELETE FROM sync_parked WHERE seq = ?1")?;
    for (seq, hlc) in rows {
        removed += stmt.execute(params![seq, hlc])?;
        unpark.execute([seq])?;
    }
    Ok(removed)
}

/// Sets an outbox row aside until `retry_after` (Unix ms) with the server's `reason`, and
/// forgets the parks of rows that are gone (pushed, or replaced by a newer edit).
pub(crate) fn park_outbox_row(
    conn: &Connection,
    seq: i64,
    hlc: i64,
    reason: &str,
    now_ms: i64,
    retry_after: i64,
) -> Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO sync_parked (seq, hlc, reason, parked_at, retry_after)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![seq, hlc, reason, now_ms, retry_after],
    )?;
    conn.execute(
        "DELETE FROM sync_parked WHERE NOT EXISTS
         (SELECT 1 FROM sync_outbox o WHERE o.seq = sync_parked.seq AND o.hlc = sync_parked.hlc)",
        [],
    )?;
    Ok(())
}

/// A parked outbox row, as `outpost sync status` lists it.
#[derive(Debug, Clone)]
pub(crate) struct ParkedRow {
    pub kind: String,
    pub entity_id: String,
    pub reason: String,
    pub parked_at: i64,
    pub retry_after: i64,
}

/// The parked outbox rows that still stand for their entity's queued change, oldest first.
pub(crate) fn parked_rows(conn: &Connection) -> Result<Vec<ParkedRow>> {
    let mut stmt = conn.prepare(
        "SELECT o.kind, o.entity_id, p.reason, p.parked_at, p.retry_after
         FROM sync_parked p JOIN sync_outbox o ON o.seq = p.seq AND o.hlc = p.hlc
         ORDER BY p.parked_at, p.seq",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(ParkedRow {
            kind: r.get(0)?,
            entity_id: r.get(1)?,
            reason: r.get(2)?,
            parked_at: r.get(3)?,
            retry_after: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Drops the queued outbox row of an entity, if any.
pub(crate) fn delete_outbox_entity(conn: &Connection, kind: Kind, id: &str) -> Result<()> {
    conn.execute(
        "DELETE FROM sync_outbox WHERE kind = ?1 AND entity_id = ?2",
        params![kind.as_str(), id],
    )?;
    Ok(())
}

/// Every entity of a kind with its stamp, oldest first (tombstones included).
pub(crate) fn entity_stamps(conn: &Connection, kind: Kind) -> Result<Vec<(String, i64)>> {
    let sql = match kind {
        Kind::Conversation => "SELECT id, hlc FROM conversations ORDER BY created_at, id",
        Kind::Document => "SELECT id, hlc FROM documents ORDER BY created_at, id",
        Kind::Message => "SELECT id, hlc FROM messages ORDER BY created_at, seq, id",
    };
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

/// A value of `outpost_meta`.
pub(crate) fn get_meta(conn: &Connection, key: &str) -> Result<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT value FROM outpost_meta WHERE key = ?1",
            [key],
            |r| r.get(0),
        )
        .optional()?)
}

/// A collection by its local id.
pub(crate) fn collection_by_id(conn: &Connection, id: i64) -> Result<Collection> {
    Ok(conn.query_row(
        "SELECT id, name, model_id, dims FROM collections WHERE id = ?1",
        [id],
        row_to_collection,
    )?)
}

/// The local id of a collection by name.
pub(crate) fn collection_id_by_name(conn: &Connection, name: &str) -> Result<Option<i64>> {
    Ok(conn
        .query_row("SELECT id FROM collections WHERE name = ?1", [name], |r| {
            r.get::<_, i64>(0)
        })
        .optional()?)
}

/// A document row, tombstone or not.
pub(crate) fn document(conn: &Connection, id: &str) -> Result<Option<DocumentRow>> {
    Ok(conn
        .query_row(
            "SELECT d.id, d.hlc, d.device, d.deleted, c.id, d.home_device, d.source, d.title,
                    d.content_hash, d.metadata, d.created_at, d.updated_at
             FROM documents d JOIN collections c ON c.id = d.collection_id WHERE d.id = ?1",
            [id],
            |r| {
                Ok(DocumentRow {
                    id: r.get(0)?,
                    hlc: r.get(1)?,
                    device: r.get(2)?,
                    deleted: r.get::<_, i64>(3)? != 0,
                    home_device: r.get(5)?,
                    source: r.get(6)?,
                    title: r.get(7)?,
                    content_hash: r.get(8)?,
                    metadata: r.get(9)?,
                    created_at: r.get(10)?,
                    updated_at: r.get(11)?,
                    collection_id: r.get(4)?,
                })
            },
        )
        .optional()?)
}

/// A document's chunks in order, each with its vector from `coll`'s table; `None` as soon as a
/// chunk has no vector there.
pub(crate) fn chunks_with_vectors(
    conn: &Connection,
    coll: &Collection,
    document_id: &str,
) -> Result<Option<Vec<ChunkRecord>>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, id, ordinal, text, token_count, byte_start, byte_end, metadata
             FROM chunks WHERE document_id = ?1 ORDER BY ordinal",
    )?;
    let mut vec_stmt = conn.prepare_cached(&format!(
        "SELECT embedding FROM {} WHERE rowid = ?1",
        coll.vec_table()
    ))?;
    let mut out = Vec::new();
    let mut rows = stmt.query([document_id])?;
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        let Some(blob) = vec_stmt
            .query_row([seq], |v| v.get::<_, Vec<u8>>(0))
            .optional()?
        else {
            return Ok(None);
        };
        out.push(ChunkRecord {
            id: r.get(1)?,
            ordinal: r.get(2)?,
            text: r.get(3)?,
            token_count: r.get(4)?,
            byte_start: r.get(5)?,
            byte_end: r.get(6)?,
            metadata: r.get(7)?,
            embedding: blob_to_vector(&blob),
        });
    }
    Ok(Some(out))
}

/// A conversation row, tombstone or not.
pub(crate) fn conversation(conn: &Connection, id: &str) -> Result<Option<ConversationRow>> {
    Ok(conn
        .query_row(
            "SELECT id, hlc, device, deleted, title, created_at, updated_at FROM conversations WHERE id = ?1",
            [id],
            |r| {
                Ok(ConversationRow {
                    id: r.get(0)?,
                    hlc: r.get(1)?,
                    device: r.get(2)?,
                    deleted: r.get::<_, i64>(3)? != 0,
                    title: r.get(4)?,
                    created_at: r.get(5)?,
                    updated_at: r.get(6)?,
                })
            },
        )
        .optional()?)
}

/// A message row, tombstone or not.
pub(crate) fn message(conn: &Connection, id: &str) -> Result<Option<MessageRow>> {
    Ok(conn
        .query_row(
            "SELECT id, hlc, device, deleted, conversation_id, seq, role, content, model_id, embedding,
                        created_at, updated_at FROM messages WHERE id = ?1",
            [id],
            |r| {
                let model: Option<String> = r.get(8)?;
                let blob: Option<Vec<u8>> = r.get(9)?;
                Ok(MessageRow {
                    id: r.get(0)?,
                    hlc: r.get(1)?,
                    device: r.get(2)?,
                    deleted: r.get::<_, i64>(3)? != 0,
                    conversation_id: r.get(4)?,
                    seq: r.get(5)?,
                    role: r.get(6)?,
                    content: r.get(7)?,
                    model,
                    embedding: blob.map(|b| blob_to_vector(&b)),
                    created_at: r.get(10)?,
                    updated_at: r.get(11)?,
                })
            },
        )
        .optional()?)
}

/// A document's `(hlc, device, collection_id)`, if it exists.
pub(crate) fn document_stamp(conn: &Connection, id: &str) -> Result<Option<(i64, String, i64)>> {
    Ok(conn
        .query_row(
            "SELECT hlc, device, collection_id FROM documents WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?)
}

/// A conversation's `(hlc, device)`, if it exists.
pub(crate) fn conversation_stamp(conn: &Connection, id: &str) -> Result<Option<(i64, String)>> {
    Ok(conn
        .query_row(
            "SELECT hlc, device FROM conversations WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// A message's `(hlc, device)`, if it exists.
pub(crate) fn message_stamp(conn: &Connection, id: &str) -> Result<Option<(i64, String)>> {
    Ok(conn
        .query_row(
            "SELECT hlc, device FROM messages WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// Deletes a document's chunks and their vectors in `coll`, the collection that holds them.
pub(crate) fn delete_document_chunks(
    conn: &Connection,
    coll: &Collection,
    document_id: &str,
) -> Result<()> {
    conn.execute(
        &format!(
            "DELETE FROM {} WHERE rowid IN (SELECT seq FROM chunks WHERE document_id = ?1)",
            coll.vec_table()
        ),
        [document_id],
    )?;
    conn.execute("DELETE FROM chunks WHERE document_id = ?1", [document_id])?;
    Ok(())
}

/// Inserts or replaces a document row (its `rev` goes up on replace).
pub(crate) fn upsert_document(conn: &Connection, d: &DocumentRow) -> Result<()> {
    conn.execute(
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
            d.collection_id,
            d.source,
            d.title,
            d.content_hash,
            d.metadata,
            d.created_at,
            d.updated_at,
            d.deleted as i64,
            d.hlc,
            d.device,
            d.home_device
        ],
    )?;
    Ok(())
}

/// Inserts a document's chunks in order, each with its vector in `coll`'s table where it has
/// one.
pub(crate) fn insert_chunks(
    conn: &Connection,
    coll: &Collection,
    document_id: &str,
    chunks: &[NewChunkRow<'_>],
) -> Result<()> {
    let mut insert_chunk = conn.prepare_cached(
        "INSERT INTO chunks (id, document_id, ordinal, text, token_count, byte_start, byte_end, metadata)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let mut insert_vec = conn.prepare(&format!(
        "INSERT INTO {} (rowid, embedding) VALUES (?1, ?2)",
        coll.vec_table()
    ))?;
    for c in chunks {
        insert_chunk.execute(params![
            c.id,
            document_id,
            c.ordinal,
            c.text,
            c.token_count,
            c.byte_start,
            c.byte_end,
            c.metadata
        ])?;
        if let Some(embedding) = c.embedding {
            insert_vec.execute(params![conn.last_insert_rowid(), vector_blob(embedding)])?;
        }
    }
    Ok(())
}

/// Records metadata keys as used in a collection (for filters).
pub(crate) fn insert_metadata_keys<'a>(
    conn: &Connection,
    collection_id: i64,
    keys: impl IntoIterator<Item = &'a String>,
) -> Result<()> {
    let mut insert_key = conn.prepare_cached(
        "INSERT OR IGNORE INTO metadata_keys (collection_id, key) VALUES (?1, ?2)",
    )?;
    for key in keys {
        insert_key.execute(params![collection_id, key])?;
    }
    Ok(())
}

/// Queues a document to be embedded locally.
pub(crate) fn queue_reembed(conn: &Connection, document_id: &str) -> Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO sync_reembed (document_id) VALUES (?1)",
        [document_id],
    )?;
    Ok(())
}

/// Takes a document off the re-embed queue.
pub(crate) fn unqueue_reembed(conn: &Connection, document_id: &str) -> Result<()> {
    conn.execute(
        "DELETE FROM sync_reembed WHERE document_id = ?1",
        [document_id],
    )?;
    Ok(())
}

/// Rows in `sync_reembed`.
pub(crate) fn reembed_count(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("SELECT count(*) FROM sync_reembed", [], |r| r.get(0))?)
}

/// Each queued document's id with its chunk texts in order.
pub(crate) fn reembed_texts(conn: &Connection) -> Result<Vec<(String, Vec<String>)>> {
    let ids: Vec<String> = {
        let mut stmt = conn.prepare("SELECT document_id FROM sync_reembed ORDER BY document_id")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect::<std::result::Result<_, _>>()?
    };
    let mut out = Vec::with_capacity(ids.len());
    let mut stmt =
        conn.prepare("SELECT text FROM chunks WHERE document_id = ?1 ORDER BY ordinal")?;
    for id in ids {
        let texts = stmt
            .query_map([&id], |r| r.get(0))?
            .collect::<std::result::Result<Vec<String>, _>>()?;
        out.push((id, texts));
    }
    Ok(out)
}

/// A document's collection id; `QueryReturnedNoRows` (as [`Error`]) if there is no document.
pub(crate) fn document_collection_id(conn: &Connection, document_id: &str) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT collection_id FROM documents WHERE id = ?1",
        [document_id],
        |r| r.get(0),
    )?)
}

/// A document's chunk `seq`s in order.
pub(crate) fn chunk_seqs(conn: &Connection, document_id: &str) -> Result<Vec<i64>> {
    let mut stmt =
        conn.prepare("SELECT seq FROM chunks WHERE document_id = ?1 ORDER BY ordinal")?;
    let rows = stmt.query_map([document_id], |r| r.get(0))?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

/// Stores a chunk's vector in `coll`'s table, replacing any, and logs it in `ann_log`.
pub(crate) fn replace_chunk_vector(
    conn: &Connection,
    coll: &Collection,
    seq: i64,
    v: &[f32],
) -> Result<()> {
    let table = coll.vec_table();
    conn.execute(&format!("DELETE FROM {table} WHERE rowid = ?1"), [seq])?;
    conn.execute(
        &format!("INSERT INTO {table} (rowid, embedding) VALUES (?1, ?2)"),
        params![seq, vector_blob(v)],
    )?;
    // The chunk row is unchanged, so its triggers did not log the new vector.
    conn.execute("INSERT INTO ann_log (chunk_seq) VALUES (?1)", [seq])?;
    Ok(())
}

/// Calls `f` with each document row of a collection, tombstones included.
pub(crate) fn each_document_sum(
    conn: &Connection,
    collection_id: i64,
    mut f: impl FnMut(DocumentSumRow),
) -> Result<()> {
    let mut stmt = conn.prepare(
        "SELECT id, hlc, device, deleted, content_hash FROM documents WHERE collection_id = ?1",
    )?;
    let mut rows = stmt.query([collection_id])?;
    while let Some(r) = rows.next()? {
        f(DocumentSumRow {
            id: r.get(0)?,
            deleted: r.get(3)?,
            hlc: r.get(1)?,
            device: r.get(2)?,
            content_hash: r.get(4)?,
        });
    }
    Ok(())
}

/// Calls `f` with each chunk of a collection's live documents, with its vector if it has one.
/// Streamed rather than collected: the texts and vectors of a collection may not fit in memory.
pub(crate) fn each_chunk_sum(
    conn: &Connection,
    coll: &Collection,
    mut f: impl FnMut(ChunkSumRow),
) -> Result<()> {
    let mut stmt = conn.prepare(&format!(
        "SELECT k.id, k.document_id, k.ordinal, k.text, v.embedding
                     FROM chunks k JOIN documents d ON d.id = k.document_id
                     LEFT JOIN {} v ON v.rowid = k.seq
                     WHERE d.collection_id = ?1 AND d.deleted = 0",
        coll.vec_table()
    ))?;
    let mut rows = stmt.query([coll.id])?;
    while let Some(r) = rows.next()? {
        f(ChunkSumRow {
            id: r.get(0)?,
            text: r.get(3)?,
            embedding: r.get::<_, Option<Vec<u8>>>(4)?.map(|b| blob_to_vector(&b)),
            document_id: r.get(1)?,
            ordinal: r.get(2)?,
        });
    }
    Ok(())
}

/// Calls `f` with each conversation row, tombstones included.
pub(crate) fn each_conversation_sum(
    conn: &Connection,
    mut f: impl FnMut(ConversationSumRow),
) -> Result<()> {
    let mut stmt = conn.prepare("SELECT id, hlc, device, deleted, title FROM conversations")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        f(ConversationSumRow {
            id: r.get(0)?,
            hlc: r.get(1)?,
            device: r.get(2)?,
            deleted: r.get(3)?,
            title: r.get(4)?,
        });
    }
    Ok(())
}

/// Calls `f` with each message row, tombstones included.
pub(crate) fn each_message_sum(conn: &Connection, mut f: impl FnMut(MessageSumRow)) -> Result<()> {
    let mut stmt =
        conn.prepare("SELECT id, conversation_id, hlc, device, deleted, content FROM messages")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        f(MessageSumRow {
            id: r.get(0)?,
            conversation_id: r.get(1)?,
            hlc: r.get(2)?,
            device: r.get(3)?,
            deleted: r.get(4)?,
            content: r.get(5)?,
        });
    }
    Ok(())
}

/// Inserts or replaces a conversation row; `updated_at` never goes back.
pub(crate) fn upsert_conversation(conn: &Connection, c: &ConversationRow) -> Result<()> {
    conn.execute(
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
    Ok(())
}

/// Inserts a placeholder conversation with the lowest stamp unless the conversation exists.
pub(crate) fn insert_placeholder_conversation(
    conn: &Connection,
    id: &str,
    created_at: i64,
) -> Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO conversations (id, title, created_at, updated_at, hlc, device)
         VALUES (?1, '', ?2, ?2, 0, '')",
        params![id, created_at],
    )?;
    Ok(())
}

/// Inserts or replaces a message row.
pub(crate) fn upsert_message(conn: &Connection, m: &MessageRow) -> Result<()> {
    conn.execute(
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
    Ok(())
}

/// Moves a conversation's `updated_at` up to `at` (never back).
pub(crate) fn touch_conversation(conn: &Connection, id: &str, at: i64) -> Result<()> {
    conn.execute(
        "UPDATE conversations SET updated_at = max(updated_at, ?2) WHERE id = ?1",
        params![id, at],
    )?;
    Ok(())
}
