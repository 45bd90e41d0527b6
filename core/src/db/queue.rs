//! The durable work queue: files accepted for indexing (a watched folder changed, a scan found
//! them) and not yet indexed, kept in the database itself so that a crash or a restart loses
//! none of them.
//!
//! One row per path. Enqueuing a path again replaces its row (a burst of events for one file is
//! one piece of work) and gives it a new sequence number; [`Store::finish_work`] removes a row
//! only if its number is unchanged, so work that was re-queued while it ran is done again.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use crate::db::{now_ms, Store};
use crate::error::Result;

/// What to do with a path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum WorkOp {
    /// (Re)index the file; if it is gone by then, delete its document.
    Index,
    /// Delete the document of the file.
    Delete,
    /// The file was renamed from `from`: move its document (keeping id and vectors), then index.
    Move {
        /// The path it had.
        from: String,
    },
}

/// A piece of work to queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkItem {
    /// The file's path (absolute: it is the document's source).
    pub path: String,
    /// What to do.
    #[serde(flatten)]
    pub op: WorkOp,
    /// The collection the file belongs to.
    pub collection: String,
}

/// A queued piece of work, as handed to a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueuedWork {
    /// The work.
    #[serde(flatten)]
    pub item: WorkItem,
    /// Its sequence number, for [`Store::finish_work`].
    pub seq: i64,
    /// Failed attempts so far.
    pub attempts: u32,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

impl Store {
    /// Queues `items` in one transaction, replacing any queued work for the same paths.
    ///
    /// A delete replacing a queued move also queues the delete of the move's origin, whose
    /// document was never moved. An index replacing a queued move keeps the move, which indexes
    /// too.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn enqueue_work(&mut self, items: &[WorkItem]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let tx = self.conn.transaction()?;
        {
            let mut next_seq: i64 =
                tx.query_row("SELECT coalesce(max(seq), 0) FROM work_queue", [], |r| {
                    r.get(0)
                })?;
            let mut existing =
                tx.prepare("SELECT op, from_path, collection FROM work_queue WHERE path = ?1")?;
            let mut upsert = tx.prepare(
                "INSERT INTO work_queue (path, op, from_path, collection, seq, enqueued_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (path) DO UPDATE SET op = excluded.op, from_path = excluded.from_path,
                     collection = excluded.collection, seq = excluded.seq,
                     enqueued_at = excluded.enqueued_at, attempts = 0, not_before = 0,
                     last_error = NULL",
            )?;
            let mut put = |path: &str, op: &WorkOp, collection: &str| -> Result<()> {
                next_seq += 1;
                let (name, from) = match op {
                    WorkOp::Index => ("index", None),
                    WorkOp::Delete => ("delete", None),
                    WorkOp::Move { from } => ("move", Some(from.as_str())),
                };
                upsert.execute(params![path, name, from, collection, next_seq, now])?;
                Ok(())
            };
            for item in items {
                let queued: Option<(String, Option<String>, String)> = existing
                    .query_row([&item.path], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()?;
                match (queued, &item.op) {
                    (Some((op, Some(from), _)), WorkOp::Index) if op == "move" => {
                        put(&item.path, &WorkOp::Move { from }, &item.collection)?;
                    }
                    (Some((op, Some(from), collection)), WorkOp::Delete) if op == "move" => {
                        put(&from, &WorkOp::Delete, &collection)?;
                        put(&item.path, &WorkOp::Delete, &item.collection)?;
                    }
                    _ => put(&item.path, &item.op, &item.collection)?,
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Up to `limit` pieces of work that are due, oldest first.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn next_work(&self, limit: usize) -> Result<Vec<QueuedWork>> {
        let mut stmt = self.conn.prepare(
            "SELECT path, op, from_path, collection, seq, attempts, last_error FROM work_queue
             WHERE not_before <= ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![now_ms(), limit as i64], |r| {
            let op: String = r.get(1)?;
            let from: Option<String> = r.get(2)?;
            Ok(QueuedWork {
                item: WorkItem {
                    path: r.get(0)?,
                    op: match (op.as_str(), from) {
                        ("move", Some(from)) => WorkOp::Move { from },
                        ("delete", _) => WorkOp::Delete,
                        _ => WorkOp::Index,
                    },
                    collection: r.get(3)?,
                },
                seq: r.get(4)?,
                attempts: r.get(5)?,
                last_error: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Removes finished work, unless the path was queued again since it was handed out; returns
    /// whether it was removed.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn finish_work(&mut self, path: &str, seq: i64) -> Result<bool> {
        Ok(self.conn.execute(
            "DELETE FROM work_queue WHERE path = ?1 AND seq = ?2",
            params![path, seq],
        )? > 0)
    }

    /// Records a failed attempt and puts the work off for `delay_ms` (unless it was queued
    /// again meanwhile).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn retry_work(&mut self, path: &str, seq: i64, error: &str, delay_ms: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE work_queue SET attempts = attempts + 1, last_error = ?3, not_before = ?4
             WHERE path = ?1 AND seq = ?2",
            params![path, seq, error, now_ms() + delay_ms],
        )?;
        Ok(())
    }

    /// Queued pieces of work, due or not.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn work_depth(&self) -> Result<usize> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM work_queue", [], |r| r.get(0))?;
        Ok(n as usize)
    }
}
