//! The conversation tables: `conversations` and `messages`, each message with its embedding
//! (model id and little-endian f32 blob) so that later turns can recall the closest earlier ones.
//!
//! Every write stamps the row with the device's clock and queues it in the outbox in the same
//! transaction, as document writes do. What a valid message is (its role, non-empty text) is
//! decided above, in `rag::conversation`.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use crate::db::{enqueue, new_id, next_hlc, now_ms, vector_blob, Store};
use crate::error::{Error, Result};
use crate::model::Kind;

/// A conversation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conversation {
    /// UUIDv7.
    pub id: String,
    /// Title.
    pub title: String,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
    /// Last message time, unix milliseconds.
    pub updated_at: i64,
    /// Messages in it.
    pub messages: usize,
}

/// One message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    /// UUIDv7.
    pub id: String,
    /// Its conversation.
    pub conversation_id: String,
    /// Position in the conversation, from 1.
    pub seq: i64,
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Text.
    pub content: String,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
}

fn row_to_conversation(r: &rusqlite::Row<'_>) -> rusqlite::Result<Conversation> {
    Ok(Conversation {
        id: r.get(0)?,
        title: r.get(1)?,
        created_at: r.get(2)?,
        updated_at: r.get(3)?,
        messages: r.get::<_, i64>(4)? as usize,
    })
}

fn row_to_message(r: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        id: r.get(0)?,
        conversation_id: r.get(1)?,
        seq: r.get(2)?,
        role: r.get(3)?,
        content: r.get(4)?,
        created_at: r.get(5)?,
    })
}

impl Store {
    /// Starts a conversation.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn create_conversation(&mut self, title: &str) -> Result<Conversation> {
        let now = now_ms();
        let id = new_id();
        let device = self.device.clone();
        let tx = self.conn.transaction()?;
        let hlc = next_hlc(&tx, self.clock_skew_ms)?;
        tx.execute(
            "INSERT INTO conversations (id, title, created_at, updated_at, hlc, device)
             VALUES (?1, ?2, ?3, ?3, ?4, ?5)",
            params![id, title, now, hlc, device],
        )?;
        enqueue(&tx, Kind::Conversation, &id, hlc)?;
        tx.commit()?;
        Ok(Conversation {
            id,
            title: title.to_string(),
            created_at: now,
            updated_at: now,
            messages: 0,
        })
    }

    /// A live conversation by id.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    pub fn conversation(&self, id: &str) -> Result<Conversation> {
        self.conn
            .query_row(
                "SELECT c.id, c.title, c.created_at, c.updated_at,
                        (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id AND m.deleted = 0)
                 FROM conversations c WHERE c.id = ?1 AND c.deleted = 0",
                [id],
                row_to_conversation,
            )
            .optional()?
            .ok_or_else(|| Error::NotFound {
                what: "conversation",
                id: id.to_string(),
            })
    }

    /// Live conversations, most recently active first; `title` filters by substring.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn conversations(&self, title: Option<&str>, limit: usize) -> Result<Vec<Conversation>> {
        let mut stmt = self.conn.prepare(
            "SELECT c.id, c.title, c.created_at, c.updated_at,
                    (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id AND m.deleted = 0)
             FROM conversations c
             WHERE c.deleted = 0 AND (?1 IS NULL OR instr(lower(c.title), lower(?1)) > 0)
             ORDER BY c.updated_at DESC, c.id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![title, limit as i64], row_to_conversation)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Appends a message to a conversation the caller has checked exists, in one transaction:
    /// the next sequence number, the row (with its embedding, `(model id, vector)`, if given),
    /// its outbox entry and the conversation's new `updated_at`.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn insert_message(
        &mut self,
        conversation_id: &str,
        role: &str,
        content: &str,
        embedding: Option<(&str, &[f32])>,
    ) -> Result<Message> {
        let now = now_ms();
        let id = new_id();
        let device = self.device.clone();
        let tx = self.conn.transaction()?;
        let hlc = next_hlc(&tx, self.clock_skew_ms)?;
        let seq: i64 = tx.query_row(
            "SELECT coalesce(max(seq), 0) + 1 FROM messages WHERE conversation_id = ?1",
            [conversation_id],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO messages (id, conversation_id, seq, role, content, model_id, embedding, created_at, updated_at,
                                   hlc, device)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10)",
            params![
                id,
                conversation_id,
                seq,
                role,
                content,
                embedding.map(|(m, _)| m),
                embedding.map(|(_, v)| vector_blob(v)),
                now,
                hlc,
                device
            ],
        )?;
        enqueue(&tx, Kind::Message, &id, hlc)?;
        tx.execute(
            "UPDATE conversations SET updated_at = ?2, rev = rev + 1 WHERE id = ?1",
            params![conversation_id, now],
        )?;
        tx.commit()?;
        Ok(Message {
            id,
            conversation_id: conversation_id.to_string(),
            seq,
            role: role.to_string(),
            content: content.to_string(),
            created_at: now,
        })
    }

    /// The last `n` messages of a conversation, oldest first.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown conversation.
    pub fn recent_messages(&self, conversation_id: &str, n: usize) -> Result<Vec<Message>> {
        self.conversation(conversation_id)?;
        let mut stmt = self.conn.prepare(
            "SELECT id, conversation_id, seq, role, content, created_at FROM messages
             WHERE conversation_id = ?1 AND deleted = 0 ORDER BY seq DESC, created_at DESC, id DESC LIMIT ?2",
        )?;
        let mut msgs: Vec<Message> = stmt
            .query_map(params![conversation_id, n as i64], row_to_message)?
            .collect::<Result<_, _>>()?;
        msgs.reverse();
        Ok(msgs)
    }

    /// The `n` messages before `before_seq` closest to `vector` (embedded by `model`), best first,
    /// with their cosine similarity.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn similar_messages(
        &self,
        conversation_id: &str,
        model: &str,
        vector: &[f32],
        before_seq: i64,
        n: usize,
    ) -> Result<Vec<(Message, f64)>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, conversation_id, seq, role, content, created_at,
                    vec_distance_cosine(embedding, ?3) AS d FROM messages
             WHERE conversation_id = ?1 AND model_id = ?2 AND deleted = 0 AND seq < ?4
               AND length(embedding) = ?6
             ORDER BY d, seq LIMIT ?5",
        )?;
        let rows = stmt.query_map(
            params![
                conversation_id,
                model,
                vector_blob(vector),
                before_seq,
                n as i64,
                (vector.len() * 4) as i64
            ],
            |r| Ok((row_to_message(r)?, 1.0 - r.get::<_, f64>(6)?)),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
