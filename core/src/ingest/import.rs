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
//! The queries of both, on this store and on another application's SQLite file, are in
//! `db::transfer`.

use std::collections::HashMap;
use std::io::Write;

use serde::Serialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::StoreAccess;
use crate::db::transfer::{Cell, RowsSource};
use crate::db::Store;
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
    store: &impl StoreAccess,
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
                let c = store
                    .write(|s| s.ensure_collection(&name, embedder.model_id(), embedder.dims()))?;
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
        if let Some((_, stored, false)) = store.read(|s| s.document_by_source(&coll, &record.id))? {
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
    store: &impl StoreAccess,
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
        let (_, outcome) = store.write(|s| s.put_document(coll, doc, chunks))?;
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
                token_count: crate::embed::count_tokens(
                    embedder.tokenizer().map_err(|e| e.to_string())?,
                    &record.text,
                ),
                byte_start: 0,
                byte_end: record.text.len(),
                metadata: Map::new(),
                embedding,
            }]);
        }
    }
    let tokenizer = embedder.tokenizer().map_err(|e| e.to_string())?;
    let pieces = chunk(tokenizer, &record.text, false, opts.chunking)
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

/// The rows of a table in another SQLite database as records, in id order. The file is opened
/// read-only and never changed; a row whose text is not text is reported, not imported.
///
/// # Errors
/// [`Error::NotADatabase`], [`Error::Corrupt`] or [`Error::CannotOpen`] (also for a database
/// that another process holds locked) naming the file; [`Error::InvalidArgument`] for a table
/// or column that is not there, naming those that are.
pub fn sqlite_records(path: &std::path::Path, spec: &TableSpec) -> Result<Vec<Input>> {
    if !path.is_file() {
        return Err(Error::CannotOpen {
            path: path.to_path_buf(),
            detail: "no such file".into(),
        });
    }
    let source = RowsSource::open(path)?;
    let columns = source.columns(&spec.table)?;
    if columns.is_empty() {
        let tables = source.tables()?;
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
    // Id, text, title (NULL without a title column), then the metadata columns.
    let mut select = vec![
        Some(spec.id_column.as_str()),
        Some(spec.text_column.as_str()),
    ];
    select.push(spec.title_column.as_deref());
    select.extend(spec.metadata_columns.iter().map(|c| Some(c.as_str())));
    let mut out = Vec::new();
    let as_text = |v: &Cell| -> Option<String> {
        match v {
            Cell::Text(t) => std::str::from_utf8(t).ok().map(str::to_string),
            Cell::Integer(i) => Some(i.to_string()),
            Cell::Real(f) => Some(f.to_string()),
            Cell::Null | Cell::Blob(_) => None,
        }
    };
    source.rows(&spec.table, &select, |row| {
        let Some(id) = as_text(&row[0]) else {
            out.push((
                format!("{} row {}", spec.table, out.len() + 1),
                Err(format!("its '{}' is NULL or a blob", spec.id_column)),
            ));
            return;
        };
        let at = format!("{} {}={id}", spec.table, spec.id_column);
        let record = match &row[1] {
            Cell::Text(t) => match std::str::from_utf8(t) {
                Ok(text) => {
                    let mut metadata = Map::new();
                    for (name, cell) in spec.metadata_columns.iter().zip(&row[3..]) {
                        let value = match cell {
                            Cell::Null => continue,
                            Cell::Integer(n) => Value::from(*n),
                            Cell::Real(f) => Value::from(*f),
                            Cell::Text(t) => Value::from(String::from_utf8_lossy(t).into_owned()),
                            Cell::Blob(b) => Value::from(hex::encode(b)),
                        };
                        metadata.insert(name.clone(), value);
                    }
                    let id = format!("{}/{id}", spec.table);
                    Ok(Record {
                        title: as_text(&row[2]).unwrap_or_else(|| id.clone()),
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
            Cell::Null => Err(format!("its '{}' is NULL", spec.text_column)),
            _ => Err(format!("its '{}' is not text", spec.text_column)),
        };
        out.push((at, record));
    })?;
    Ok(out)
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
    let mut report = ExportReport::default();
    store.export_documents(&collections, with_embeddings, &mut |coll, doc| {
        let mut text = String::new();
        let mut list = Vec::with_capacity(doc.chunks.len());
        for c in doc.chunks {
            let start = c.byte_start as usize;
            join_at(&mut text, &c.text, start);
            let mut item = json!({
                "text": c.text,
                "byte_start": start,
                "byte_end": c.byte_end,
                "token_count": c.token_count,
                "metadata": stored_json(&c.metadata, &doc.id)?,
            });
            if let Some(v) = c.embedding {
                item["embedding"] = json!(v);
            }
            list.push(item);
        }
        report.chunks += list.len();
        let line = json!({
            "id": doc.source,
            "title": doc.title,
            "text": text,
            "metadata": stored_json(&doc.metadata, &doc.id)?,
            "collection": coll.name,
            "content_hash": doc.content_hash,
            "model": coll.model_id,
            "chunks": list,
        });
        serde_json::to_writer(&mut *out, &line).map_err(write_failed)?;
        out.write_all(b"\n").map_err(write_failed)?;
        report.documents += 1;
        progress(report.documents);
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
