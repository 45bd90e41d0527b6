//! Records from elsewhere in, everything out: the engine side of `outpost import` and
//! `outpost export`.
//!
//! A [`Record`] is one document as another store holds it: an id, a title, its text, metadata
//! and, optionally, a vector computed elsewhere, or (from Outpost's own export) its chunks with
//! their vectors. [`import_records`] stores records as documents whose source is the record id,
//! with a content hash of the record, in a transaction each: an import run again, or after an
//! interruption, finds what it already stored unchanged and adds nothing twice. A record that
//! cannot be stored (a vector of the wrong size or model, no text) is reported with where it came
//! from and the rest go on; nothing already stored is touched by a failure.
//! [`export_jsonl`] writes every live document in the format [`parse_jsonl_record`] reads.

use std::collections::HashMap;
use std::io::Write;

use serde::Serialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::db::{blob_to_vector, Store};
use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::ingest::chunk::{chunk, ChunkParams};
use crate::model::{Collection, NewChunk, NewDocument, PutOutcome};

/// One record to import.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    /// Stable id in the origin; becomes the document's source.
    pub id: String,
    /// Display title (the id when the origin has none).
    pub title: String,
    /// The document text.
    pub text: String,
    /// Metadata (JSON object).
    pub metadata: Map<String, Value>,
    /// The model that made the input's vectors (`embedding` or the chunks').
    pub model: Option<String>,
    /// A vector computed elsewhere for the whole text.
    pub embedding: Option<Vec<f32>>,
    /// The document's chunks as Outpost stored them (its own export), stored as they are.
    pub chunks: Option<Vec<RecordChunk>>,
    /// Outpost's content hash (its own export); otherwise one is computed from the record.
    pub content_hash: Option<String>,
    /// The collection this record came from, where the origin says.
    pub collection: Option<String>,
}

/// A chunk of an exported document.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordChunk {
    /// The chunk's text.
    pub text: String,
    /// Byte range in the document text.
    pub byte_start: usize,
    /// End of that range.
    pub byte_end: usize,
    /// Tokens by the model's tokenizer.
    pub token_count: usize,
    /// Chunk metadata.
    pub metadata: Map<String, Value>,
    /// Its vector, when exported with embeddings (of the record's `model`).
    pub embedding: Option<Vec<f32>>,
}

/// What to do with a vector in the input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Vectors {
    /// Store vectors of the collection's model and size as they are; a record whose vector is
    /// of another model or size fails.
    #[default]
    Keep,
    /// Keep vectors of the collection's model and size; embed the text of the others.
    ReembedMismatched,
    /// Ignore every vector in the input and embed the texts.
    ReembedAll,
}

/// How to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The collection for records that do not name one, or for all with `force_collection`.
    pub collection: String,
    /// Put every record in `collection`, whatever the record says.
    pub force_collection: bool,
    /// Chunking of texts that are embedded here.
    pub chunking: ChunkParams,
    /// Chunks per embedding call.
    pub batch_size: usize,
    /// What to do with vectors in the input.
    pub vectors: Vectors,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            collection: super::DEFAULT_COLLECTION.to_string(),
            force_collection: false,
            chunking: ChunkParams::default(),
            batch_size: 128,
            vectors: Vectors::Keep,
        }
    }
}

/// A record that was not imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportFailure {
    /// Where: `FILE:LINE`, or the origin's collection and id.
    pub at: String,
    /// Why.
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    /// New documents.
    pub added: usize,
    /// Documents whose record changed since an earlier import: chunks replaced.
    pub updated: usize,
    /// Records stored before, unchanged: nothing written.
    pub unchanged: usize,
    /// Records not imported.
    pub failed: usize,
    /// Chunks written.
    pub chunks: usize,
    /// Of those, chunks whose vector came with the input.
    pub vectors_kept: usize,
    /// Of those, chunks embedded here.
    pub embedded: usize,
    /// Why each failed record failed.
    pub failures: Vec<ImportFailure>,
}

/// A record's place in the input and the record, or why it could not be read.
pub type Input = (String, std::result::Result<Record, String>);

/// Progress of an import: records read so far.
pub type OnProgress<'a> = &'a mut dyn FnMut(usize);

/// Stores `records` (see the module doc).
///
/// # Errors
/// Failures of the store or the model, and [`Error::ModelMismatch`] when a target collection
/// holds another model's vectors. A bad record is reported in the [`ImportReport`] instead.
pub fn import_records(
    store: &mut Store,
    embedder: &dyn Embedder,
    records: impl IntoIterator<Item = Input>,
    opts: &ImportOptions,
    progress: OnProgress<'_>,
) -> Result<ImportReport> {
    opts.chunking.validate(embedder.max_tokens())?;
    let mut report = ImportReport::default();
    let mut collections: HashMap<String, Collection> = HashMap::new();
    let mut queue: Vec<(Collection, NewDocument, Vec<NewChunk>)> = Vec::new();
    let mut queued_texts = 0;
    // Ids seen in this run, per collection: a second record with the same id would silently
    // replace the first.
    let mut seen: std::collections::HashSet<(i64, String)> = std::collections::HashSet::new();
    for (i, (at, record)) in records.into_iter().enumerate() {
        progress(i + 1);
        let record = match record {
            Ok(r) => r,
            Err(reason) => {
                report.fail(at, reason);
                continue;
            }
        };
        let name = match &record.collection {
            Some(c) if !opts.force_collection => c.clone(),
            _ => opts.collection.clone(),
        };
        let coll = match collections.get(&name) {
            Some(c) => c.clone(),
            None => {
                let c = store.ensure_collection(&name, embedder.model_id(), embedder.dims())?;
                collections.insert(name, c.clone());
                c
            }
        };
        if !seen.insert((coll.id, record.id.clone())) {
            report.fail(
                at,
                format!("duplicate id '{}' (an earlier record has it)", record.id),
            );
            continue;
        }
        let hash = record
            .content_hash
            .clone()
            .unwrap_or_else(|| record_hash(&record, embedder.model_id(), opts));
        if let Some((_, stored, false)) = store.document_by_source(&coll, &record.id)? {
            if stored == hash {
                report.unchanged += 1;
                continue;
            }
        }
        let chunks = match chunks_of(&record, embedder, &coll, opts) {
            Ok(c) => c,
            Err(reason) => {
                report.fail(at, reason);
                continue;
            }
        };
        queued_texts += chunks.iter().filter(|c| c.embedding.is_empty()).count();
        let doc = NewDocument {
            source: record.id,
            title: record.title,
            content_hash: hash,
            metadata: record.metadata,
        };
        queue.push((coll, doc, chunks));
        if queued_texts >= opts.batch_size.max(1) || queue.len() >= 1024 {
            flush(store, embedder, &mut queue, &mut report)?;
            queued_texts = 0;
        }
    }
    flush(store, embedder, &mut queue, &mut report)?;
    Ok(report)
}

impl ImportReport {
    fn fail(&mut self, at: String, reason: String) {
        self.failed += 1;
        self.failures.push(ImportFailure { at, reason });
    }
}

/// Embeds the queued chunks that have no vector in one call, then stores each document in its
/// own transaction.
fn flush(
    store: &mut Store,
    embedder: &dyn Embedder,
    queue: &mut Vec<(Collection, NewDocument, Vec<NewChunk>)>,
    report: &mut ImportReport,
) -> Result<()> {
    let mut docs = std::mem::take(queue);
    let texts: Vec<&str> = docs
        .iter()
        .flat_map(|(_, _, chunks)| chunks.iter())
        .filter(|c| c.embedding.is_empty())
        .map(|c| c.text.as_str())
        .collect();
    let vectors = crate::embed::embed_all(embedder, &texts)?;
    report.embedded += vectors.len();
    let mut vectors = vectors.into_iter();
    for (coll, doc, chunks) in &mut docs {
        for c in chunks.iter_mut().filter(|c| c.embedding.is_empty()) {
            c.embedding = vectors.next().unwrap_or_default();
        }
        let (_, outcome) = store.put_document(coll, doc, chunks)?;
        match outcome {
            PutOutcome::Added => report.added += 1,
            PutOutcome::Updated => report.updated += 1,
            PutOutcome::Unchanged | PutOutcome::Removed => report.unchanged += 1,
        }
        if outcome != PutOutcome::Unchanged {
            report.chunks += chunks.len();
        }
    }
    report.vectors_kept = report.chunks.saturating_sub(report.embedded);
    Ok(())
}

/// The content hash of a record that brings none: everything that shapes what is stored.
fn record_hash(record: &Record, model_id: &str, opts: &ImportOptions) -> String {
    let mut h = Sha256::new();
    h.update(format!(
        "outpost-import/1\0{model_id}\0{}\0{}\0{:?}\0",
        opts.chunking.max_tokens, opts.chunking.overlap, opts.vectors
    ));
    for part in [&record.id, &record.title, &record.text] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.update(
        Value::Object(record.metadata.clone())
            .to_string()
            .as_bytes(),
    );
    h.update(record.model.as_deref().unwrap_or_default().as_bytes());
    if let Some(v) = &record.embedding {
        for x in v {
            h.update(x.to_le_bytes());
        }
    }
    hex::encode(h.finalize())
}

/// Whether a vector from the input can be stored in `coll` as it is.
fn fits(model: &str, v: &[f32], coll: &Collection) -> std::result::Result<(), String> {
    if model != coll.model_id {
        return Err(format!(
            "its vector is of model '{model}', the collection '{}' holds '{}'",
            coll.name, coll.model_id
        ));
    }
    if v.len() != coll.dims {
        return Err(format!(
            "its vector has {} dimensions, the collection '{}' holds {}",
            v.len(),
            coll.name,
            coll.dims
        ));
    }
    Ok(())
}

/// What to do with a vector from the input, as `vectors` says: `Ok(Some(_))` store it as it
/// is, `Ok(None)` embed the text instead, `Err` refuse the record.
fn input_vector(
    model: &str,
    v: &[f32],
    coll: &Collection,
    vectors: Vectors,
) -> std::result::Result<Option<Vec<f32>>, String> {
    if vectors == Vectors::ReembedAll {
        return Ok(None);
    }
    match fits(model, v, coll) {
        Ok(()) => Ok(Some(v.to_vec())),
        Err(e) if vectors == Vectors::Keep => Err(format!(
            "{e} (import with Vectors::ReembedMismatched to embed its text instead)"
        )),
        Err(_) => Ok(None),
    }
}

/// The chunks to store for `record`; those with an empty embedding are to be embedded.
fn chunks_of(
    record: &Record,
    embedder: &dyn Embedder,
    coll: &Collection,
    opts: &ImportOptions,
) -> std::result::Result<Vec<NewChunk>, String> {
    let model = record.model.as_deref().unwrap_or_default();
    if let Some(chunks) = &record.chunks {
        // Outpost's own export: the chunks as they were, with their vectors where they fit.
        let mut out = Vec::with_capacity(chunks.len());
        for (i, c) in chunks.iter().enumerate() {
            let embedding = match &c.embedding {
                Some(v) => input_vector(model, v, coll, opts.vectors)
                    .map_err(|e| format!("chunk {i}: {e}"))?
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            out.push(NewChunk {
                text: c.text.clone(),
                token_count: c.token_count,
                byte_start: c.byte_start,
                byte_end: c.byte_end,
                metadata: c.metadata.clone(),
                embedding,
            });
        }
        return Ok(out);
    }
    if record.text.trim().is_empty() {
        return Err("it has no text".into());
    }
    if let Some(v) = &record.embedding {
        if let Some(embedding) = input_vector(model, v, coll, opts.vectors)? {
            return Ok(vec![NewChunk {
                text: record.text.clone(),
                token_count: crate::embed::count_tokens(embedder.tokenizer(), &record.text),
                byte_start: 0,
                byte_end: record.text.len(),
                metadata: Map::new(),
                embedding,
            }]);
        }
    }
    let pieces = chunk(embedder.tokenizer(), &record.text, false, opts.chunking)
        .map_err(|e| format!("chunking: {e}"))?;
    Ok(pieces.into_iter().map(NewChunk::from).collect())
}

fn string_field(
    obj: &Map<String, Value>,
    key: &str,
) -> std::result::Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("'{key}' is not a string")),
    }
}

fn object_field(
    obj: &Map<String, Value>,
    key: &str,
) -> std::result::Result<Map<String, Value>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(format!("'{key}' is not an object")),
    }
}

fn vector_field(value: &Value, what: &str) -> std::result::Result<Vec<f32>, String> {
    let Value::Array(items) = value else {
        return Err(format!("{what} is not an array of numbers"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, x)| match x.as_f64() {
            Some(f) if f.is_finite() => Ok(f as f32),
            _ => Err(format!("{what}[{i}] is not a finite number")),
        })
        .collect()
}

fn usize_field(obj: &Map<String, Value>, key: &str) -> std::result::Result<usize, String> {
    obj.get(key)
        .and_then(Value::as_u64)
        .map(|n| n as usize)
        .ok_or_else(|| format!("'{key}' is not a non-negative integer"))
}

/// Reads one JSONL line: `id`, `title`, `text`, `metadata`, optionally `embedding` with
/// `model`, and the fields of Outpost's own export (`collection`, `content_hash`, `chunks`).
///
/// # Errors
/// Why the line is not a record, in words.
pub fn parse_jsonl_record(line: &str) -> std::result::Result<Record, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(obj) = value else {
        return Err("not a JSON object".into());
    };
    let id = match obj.get("id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        None | Some(Value::Null) => return Err("no 'id' field".into()),
        Some(_) => return Err("'id' is not a non-empty string or a number".into()),
    };
    let text = string_field(&obj, "text")?.unwrap_or_default();
    let model = string_field(&obj, "model")?;
    let needs_model = |what: &str| -> std::result::Result<(), String> {
        match model {
            Some(_) => Ok(()),
            None => Err(format!("{what} without 'model': say which model made it")),
        }
    };
    let embedding = match obj.get("embedding") {
        None | Some(Value::Null) => None,
        Some(v) => {
            needs_model("'embedding'")?;
            Some(vector_field(v, "'embedding'")?)
        }
    };
    let chunks = match obj.get("chunks") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let mut chunks = Vec::with_capacity(items.len());
            for (i, c) in items.iter().enumerate() {
                let at = |e: String| format!("chunks[{i}]: {e}");
                let Value::Object(c) = c else {
                    return Err(at("not an object".into()));
                };
                let embedding = match c.get("embedding") {
                    None | Some(Value::Null) => None,
                    Some(v) => {
                        needs_model("'embedding'").map_err(at)?;
                        Some(vector_field(v, "'embedding'").map_err(at)?)
                    }
                };
                chunks.push(RecordChunk {
                    text: string_field(c, "text")
                        .map_err(at)?
                        .ok_or_else(|| at("no 'text'".into()))?,
                    byte_start: usize_field(c, "byte_start").map_err(at)?,
                    byte_end: usize_field(c, "byte_end").map_err(at)?,
                    token_count: usize_field(c, "token_count").map_err(at)?,
                    metadata: object_field(c, "metadata").map_err(at)?,
                    embedding,
                });
            }
            Some(chunks)
        }
        Some(_) => return Err("'chunks' is not an array".into()),
    };
    Ok(Record {
        title: string_field(&obj, "title")?.unwrap_or_else(|| id.clone()),
        id,
        text,
        metadata: object_field(&obj, "metadata")?,
        model,
        embedding,
        chunks,
        content_hash: string_field(&obj, "content_hash")?,
        collection: string_field(&obj, "collection")?,
    })
}

/// Which rows of which table become records (`outpost import sqlite`).
#[derive(Debug, Clone, Default)]
pub struct TableSpec {
    /// The table (or view).
    pub table: String,
    /// The column whose value identifies a row; the record id is `TABLE/VALUE`.
    pub id_column: String,
    /// The column holding the text.
    pub text_column: String,
    /// A column holding the title (default: the record id).
    pub title_column: Option<String>,
    /// Columns copied into the metadata under their own names.
    pub metadata_columns: Vec<String>,
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The rows of a table in another SQLite database as records, in id order. The file is opened
/// read-only and never changed; a row whose text is not text is reported, not imported.
///
/// # Errors
/// [`Error::NotADatabase`], [`Error::Corrupt`] or [`Error::CannotOpen`] (also for a database
/// that another process holds locked) naming the file; [`Error::InvalidArgument`] for a table
/// or column that is not there, naming those that are.
pub fn sqlite_records(path: &std::path::Path, spec: &TableSpec) -> Result<Vec<Input>> {
    use rusqlite::types::ValueRef;
    use rusqlite::{ErrorCode, OpenFlags};
    let fail = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::CannotOpen {
            path: path.to_path_buf(),
            detail: format!("it is locked by another process ({e}); try again when it is done"),
        },
        _ => crate::db::classify(path, e),
    };
    if !path.is_file() {
        return Err(Error::CannotOpen {
            path: path.to_path_buf(),
            detail: "no such file".into(),
        });
    }
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(fail)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(fail)?;
    let columns: Vec<String> = conn
        .prepare(&format!(
            "SELECT name FROM pragma_table_info({})",
            quoted_literal(&spec.table)
        ))
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
        .map_err(fail)?;
    if columns.is_empty() {
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
            .map_err(fail)?;
        return Err(Error::invalid(
            "table",
            format!(
                "{}: no table '{}'; it has: {}",
                path.display(),
                spec.table,
                tables.join(", ")
            ),
        ));
    }
    let wanted = [&spec.id_column, &spec.text_column]
        .into_iter()
        .chain(spec.title_column.as_ref())
        .chain(&spec.metadata_columns);
    for c in wanted {
        if !columns.iter().any(|have| have == c) {
            return Err(Error::invalid(
                "column",
                format!(
                    "table '{}' has no column '{c}'; it has: {}",
                    spec.table,
                    columns.join(", ")
                ),
            ));
        }
    }
    let mut select = vec![quoted(&spec.id_column), quoted(&spec.text_column)];
    select.push(spec.title_column.as_deref().map_or("NULL".into(), quoted));
    select.extend(spec.metadata_columns.iter().map(|c| quoted(c)));
    let sql = format!(
        "SELECT {} FROM {} ORDER BY 1",
        select.join(", "),
        quoted(&spec.table)
    );
    let mut stmt = conn.prepare(&sql).map_err(fail)?;
    let mut rows = stmt.query([]).map_err(fail)?;
    let mut out = Vec::new();
    let as_text = |v: ValueRef<'_>| -> Option<String> {
        match v {
            ValueRef::Text(t) => std::str::from_utf8(t).ok().map(str::to_string),
            ValueRef::Integer(i) => Some(i.to_string()),
            ValueRef::Real(f) => Some(f.to_string()),
            ValueRef::Null | ValueRef::Blob(_) => None,
        }
    };
    while let Some(row) = rows.next().map_err(fail)? {
        let Some(id) = as_text(row.get_ref(0).map_err(fail)?) else {
            out.push((
                format!("{} row {}", spec.table, out.len() + 1),
                Err(format!("its '{}' is NULL or a blob", spec.id_column)),
            ));
            continue;
        };
        let at = format!("{} {}={id}", spec.table, spec.id_column);
        let record = match row.get_ref(1).map_err(fail)? {
            ValueRef::Text(t) => match std::str::from_utf8(t) {
                Ok(text) => {
                    let mut metadata = Map::new();
                    for (i, name) in spec.metadata_columns.iter().enumerate() {
                        let value = match row.get_ref(3 + i).map_err(fail)? {
                            ValueRef::Null => continue,
                            ValueRef::Integer(n) => Value::from(n),
                            ValueRef::Real(f) => Value::from(f),
                            ValueRef::Text(t) => {
                                Value::from(String::from_utf8_lossy(t).into_owned())
                            }
                            ValueRef::Blob(b) => Value::from(hex::encode(b)),
                        };
                        metadata.insert(name.clone(), value);
                    }
                    let id = format!("{}/{id}", spec.table);
                    Ok(Record {
                        title: as_text(row.get_ref(2).map_err(fail)?).unwrap_or_else(|| id.clone()),
                        id,
                        text: text.to_string(),
                        metadata,
                        ..Record::default()
                    })
                }
                Err(e) => Err(format!(
                    "its '{}' is not UTF-8 (byte {})",
                    spec.text_column,
                    e.valid_up_to()
                )),
            },
            ValueRef::Null => Err(format!("its '{}' is NULL", spec.text_column)),
            _ => Err(format!("its '{}' is not text", spec.text_column)),
        };
        out.push((at, record));
    }
    Ok(out)
}

fn quoted_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// What an export wrote.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExportReport {
    /// Documents (lines).
    pub documents: usize,
    /// Chunks.
    pub chunks: usize,
}

/// Writes every live document (of `collection`, or of all) as one JSONL line in the format
/// [`parse_jsonl_record`] reads: its source as `id`, title, text (its chunks joined at their
/// byte offsets), metadata, collection, content hash, model and chunks, with each chunk's
/// vector when `with_embeddings`. Documents in collection then source order.
///
/// # Errors
/// Store errors, [`Error::NotFound`] for an unknown collection, and write errors.
pub fn export_jsonl(
    store: &Store,
    out: &mut dyn Write,
    collection: Option<&str>,
    with_embeddings: bool,
    progress: OnProgress<'_>,
) -> Result<ExportReport> {
    let collections: Vec<Collection> = match collection {
        Some(name) => vec![store.collection(name)?.ok_or_else(|| Error::NotFound {
            what: "collection",
            id: name.to_string(),
        })?],
        None => store.collections()?,
    };
    let conn = store.connection();
    let mut report = ExportReport::default();
    // One read snapshot, so that a concurrent ingest cannot tear a document.
    crate::db::in_read_tx(conn, || {
        for coll in &collections {
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
                let metadata: String = row.get(3)?;
                let mut text = String::new();
                let mut list = Vec::new();
                let mut crows = chunks.query([&id])?;
                while let Some(c) = crows.next()? {
                    let seq: i64 = c.get(0)?;
                    let chunk_text: String = c.get(1)?;
                    let start = c.get::<_, i64>(2)? as usize;
                    join_at(&mut text, &chunk_text, start);
                    let mut item = json!({
                        "text": chunk_text,
                        "byte_start": start,
                        "byte_end": c.get::<_, i64>(3)?,
                        "token_count": c.get::<_, i64>(4)?,
                        "metadata": stored_json(&c.get::<_, String>(5)?, &id)?,
                    });
                    if with_embeddings {
                        let blob: Vec<u8> = vector.query_row([seq], |r| r.get(0))?;
                        item["embedding"] = json!(blob_to_vector(&blob));
                    }
                    list.push(item);
                }
                report.chunks += list.len();
                let line = json!({
                    "id": row.get::<_, String>(1)?,
                    "title": row.get::<_, String>(2)?,
                    "text": text,
                    "metadata": stored_json(&metadata, &id)?,
                    "collection": coll.name,
                    "content_hash": row.get::<_, String>(4)?,
                    "model": coll.model_id,
                    "chunks": list,
                });
                serde_json::to_writer(&mut *out, &line).map_err(write_failed)?;
                out.write_all(b"\n").map_err(write_failed)?;
                report.documents += 1;
                progress(report.documents);
            }
        }
        Ok(())
    })?;
    out.flush().map_err(write_failed)?;
    Ok(report)
}

fn write_failed(e: impl std::fmt::Display) -> Error {
    Error::Export(e.to_string())
}

/// Stored metadata, parsed back (the schema checks it is JSON when written).
fn stored_json(text: &str, document: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| {
        Error::Export(format!(
            "document {document}: stored metadata is not JSON: {e}"
        ))
    })
}

/// Appends `chunk` (which starts at byte `start` of the document) to the text rebuilt so far:
/// the part past what overlapping chunks already gave, after spaces for any gap, so that the
/// chunks' byte offsets stay true of the rebuilt text.
fn join_at(text: &mut String, chunk: &str, start: usize) {
    if start >= text.len() {
        text.extend(std::iter::repeat_n(' ', start - text.len()));
        text.push_str(chunk);
        return;
    }
    let skip = text.len() - start;
    if skip < chunk.len() && chunk.is_char_boundary(skip) {
        text.push_str(&chunk[skip..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_what_is_wrong() {
        let bad = |line: &str| parse_jsonl_record(line).err().unwrap_or_default();
        assert!(bad("{").contains("invalid JSON"));
        assert!(bad("[1]").contains("not a JSON object"));
        assert!(bad(r#"{"text":"a"}"#).contains("no 'id'"));
        assert!(bad(r#"{"id":"a","text":"b","embedding":[1,2]}"#).contains("without 'model'"));
        assert!(
            bad(r#"{"id":"a","text":"b","model":"m","embedding":[1,"x"]}"#)
                .contains("'embedding'[1] is not a finite number")
        );
        assert!(bad(r#"{"id":"a","metadata":[1]}"#).contains("'metadata' is not an object"));
        let ok = parse_jsonl_record(
            r#"{"id":7,"text":"hi","model":"m","embedding":[0.5,1],"metadata":{"k":true}}"#,
        );
        assert_eq!(
            ok,
            Ok(Record {
                id: "7".into(),
                title: "7".into(),
                text: "hi".into(),
                metadata: serde_json::from_str(r#"{"k":true}"#).unwrap_or_default(),
                model: Some("m".into()),
                embedding: Some(vec![0.5, 1.0]),
                ..Record::default()
            })
        );
    }

    #[test]
    fn chunks_rebuild_the_text_at_their_offsets() {
        let mut text = String::new();
        for (chunk, start) in [("alpha beta", 0), ("beta gamma", 6), ("delta", 18)] {
            join_at(&mut text, chunk, start);
        }
        assert_eq!(text, "alpha beta gamma  delta");
        assert_eq!(&text[18..23], "delta");
    }
}
