//! The life cycle every derived index shares, written once: [`DerivedIndex`] is what an index
//! does (build from SQLite, catch up from `ann_log`, save, load, verify), and [`current`] is
//! when it does it (load the newest saved file or build; catch up; rebuild when the log was
//! trimmed past the index or went backwards; save when due). The HNSW graph of each collection
//! ([`super::ann`]) and the text index ([`super::text`]) implement the trait; each keeps its own
//! registry, file names and locks.

use std::collections::HashMap;
use std::hash::Hash;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rusqlite::Connection;

use super::header::Rejected;
use crate::db::log::{log_covers, max_log_id};
use crate::db::{in_read_tx, Store};
use crate::error::{Error, Result};

/// Save after this many changed entries, or a tenth of the index, whichever is more.
const SAVE_EVERY: usize = 1_000;

/// An index derived from SQLite and kept current from `ann_log`. Every method that reads
/// SQLite expects the caller to hold a read transaction, so that what it reads is one snapshot.
pub(crate) trait DerivedIndex: Sized {
    /// What the index is derived from besides the database: a collection, or nothing.
    type Source: ?Sized;
    /// How its saved files end (`.usearch`, `.lex`); they are named
    /// `<prefix><applied log id><SUFFIX>`.
    const SUFFIX: &'static str;

    /// The index of everything `source` holds now, at the log's head.
    fn build(conn: &Connection, source: &Self::Source) -> Result<Self>;
    /// Applies the log after [`DerivedIndex::applied`].
    fn catch_up(&mut self, conn: &Connection, source: &Self::Source) -> Result<()>;
    /// Writes the index under a temporary name, renames it to its final name in `dir`, and
    /// removes this index's older files there.
    fn save(&mut self, dir: &Path, prefix: &str) -> Result<()>;
    /// The index saved at `path` (having applied the log through `applied`), or why not.
    fn load(
        path: &Path,
        applied: i64,
        source: &Self::Source,
    ) -> std::result::Result<Self, Rejected>;
    /// What is wrong with this index against SQLite, checked cheaply (log coverage and entry
    /// counts, not every entry); empty when sound.
    fn verify(&self, conn: &Connection, source: &Self::Source) -> Result<Vec<String>>;
    /// The last log id applied.
    fn applied(&self) -> i64;
    /// Entries changed since the last save.
    fn unsaved(&self) -> usize;
    /// Entries the index holds: sets the save interval.
    fn len(&self) -> usize;
    /// Bytes of process memory the index takes.
    fn memory(&self) -> usize;
    /// Whether the index still fits `source` (a collection's dimensions); one that does not is
    /// rebuilt.
    fn fits(&self, _source: &Self::Source) -> bool {
        true
    }
    /// Names the index in warnings: "the text index", "the vector index of collection 'c'".
    fn name(source: &Self::Source) -> String;
}

/// The problems [`DerivedIndex::verify`] reports for the log and an index's entry count: the
/// applied log id must be within the log and covered by it, and, when nothing is left to
/// apply, `entries` must equal `rows` (the rows the index derives from).
pub(crate) fn verify_counts(
    conn: &Connection,
    name: &str,
    applied: i64,
    entries: usize,
    rows: usize,
) -> Result<Vec<String>> {
    let head = max_log_id(conn)?;
    let mut problems = Vec::new();
    if applied > head {
        problems.push(format!(
            "{name}: applied log id {applied}, past the log's last id {head}"
        ));
    } else if !log_covers(conn, applied)? {
        problems.push(format!(
            "{name}: applied log id {applied}, but the log was trimmed past it"
        ));
    } else if applied == head && entries != rows {
        // Behind the log, the counts may differ by what is still to apply.
        problems.push(format!(
            "{name}: {entries} entries, but SQLite holds {rows} rows"
        ));
    }
    Ok(problems)
}

pub(crate) fn poisoned<G>(_: G) -> Error {
    Error::Index("an index lock is poisoned".into())
}

/// The newest sound saved index in `dir` that the log still covers, caught up; else one built
/// from SQLite. The caller holds a read transaction.
fn open<I: DerivedIndex>(store: &Store, dir: &Path, prefix: &str, source: &I::Source) -> Result<I> {
    let head = max_log_id(&store.conn)?;
    let loaded = newest_file(dir, prefix, I::SUFFIX)
        .filter(|(_, applied)| {
            *applied <= head && log_covers(&store.conn, *applied).unwrap_or(false)
        })
        .and_then(|(p, applied)| {
            I::load(&p, applied, source)
                .map_err(|r| {
                    tracing::warn!("rebuilding {}: {r}", I::name(source));
                    store.note_rejected(&r);
                })
                .ok()
        });
    store.note_index(loaded.is_some());
    match loaded {
        Some(mut index) => {
            index.catch_up(&store.conn, source)?;
            Ok(index)
        }
        None => I::build(&store.conn, source),
    }
}

/// The index under `key` in `registry`, loaded from `dir` (files named `prefix`…) or built on
/// first use, caught up with the log, rebuilt when the log went backwards or was trimmed past
/// it, and saved when enough changed.
pub(crate) fn current<I: DerivedIndex, K: Eq + Hash>(
    store: &Store,
    registry: &Mutex<HashMap<K, Arc<RwLock<I>>>>,
    key: K,
    dir: &Path,
    prefix: &str,
    source: &I::Source,
) -> Result<Arc<RwLock<I>>> {
    let entry = registry
        .lock()
        .map_err(|_| Error::Index("the index registry is poisoned".into()))?
        .get(&key)
        .cloned();
    let entry = match entry {
        Some(e) => e,
        None => {
            // Opened without the registry's lock: another database's search need not wait. A
            // concurrent first use may open it too; the first one registered wins.
            let index = in_read_tx(&store.conn, || open::<I>(store, dir, prefix, source))?;
            registry
                .lock()
                .map_err(|_| Error::Index("the index registry is poisoned".into()))?
                .entry(key)
                .or_insert_with(|| Arc::new(RwLock::new(index)))
                .clone()
        }
    };
    // The common case, nothing applied and nothing to save, needs only the read lock, so
    // concurrent searches do not queue behind each other.
    let head = max_log_id(&store.conn)?;
    // An in-memory database has nowhere to save to: its index is never due, or every search
    // would take the write lock.
    let persistent = store.path() != Path::new(":memory:");
    let save_due = |i: &I| persistent && i.unsaved() >= SAVE_EVERY.max(i.len() / 10);
    {
        let index = entry.read().map_err(poisoned)?;
        if index.applied() == head && index.fits(source) && !save_due(&index) {
            return Ok(entry.clone());
        }
    }
    let mut index = entry.write().map_err(poisoned)?;
    // Another search may have caught up meanwhile: look at the log again under the lock.
    let head = max_log_id(&store.conn)?;
    if head < index.applied() || !index.fits(source) || !log_covers(&store.conn, index.applied())? {
        // The log went backwards (the file was replaced), or was trimmed past this index (in
        // another process): rebuild.
        store.note_index(false);
        *index = in_read_tx(&store.conn, || I::build(&store.conn, source))?;
    } else if head > index.applied() {
        in_read_tx(&store.conn, || index.catch_up(&store.conn, source))?;
    }
    if save_due(&index) && store.path().is_file() {
        if let Err(e) = index.save(dir, prefix) {
            tracing::warn!("{} not saved: {e}", I::name(source));
        }
    }
    drop(index);
    Ok(entry)
}

/// The newest saved index file named `<prefix><applied log id><suffix>`, with that log id.
pub(crate) fn newest_file(dir: &Path, prefix: &str, suffix: &str) -> Option<(PathBuf, i64)> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            let applied = name
                .strip_prefix(prefix)?
                .strip_suffix(suffix)?
                .parse()
                .ok()?;
            Some((e.path(), applied))
        })
        .max_by_key(|(_, applied)| *applied)
}
