//! Reading a Chroma persistent directory (the folder of a `chromadb.PersistentClient`), for
//! `outpost import chroma PATH`. Nothing is written and Chroma need not be installed.
//!
//! Everything but the vectors is in `chroma.sqlite3`: collections and their segments; each
//! record's id, document (metadata key `chroma:document`) and metadata (lists in
//! `embedding_metadata_array`); and `embeddings_queue`, the log of every add, update, upsert and
//! delete with its vector. The vectors are in one hnswlib index per collection, in the folder
//! named after the collection's VECTOR segment, which Chroma saves only every `sync_threshold`
//! changes. So a record's vector is the saved index's (`index_metadata.pickle` maps ids to
//! labels, `data_level0.bin` holds the labelled vectors) brought up to date by replaying the
//! queue from the operation the index was saved at. A collection whose index was never saved
//! has its vectors only in the queue.
//!
//! The layout is recognised by the tables and columns that are there rather than by Chroma's
//! version, so the optional parts (arrays in metadata, collection configuration, several
//! databases) are read when present; a missing required part is an error that says what was
//! found. A damaged index file is not fatal: the collection's records are read without vectors
//! (a warning says which file and why), so an import embeds their documents instead of mixing
//! Chroma's vectors with its own.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::db::chroma::{ChromaDb, CollectionRow, Layout, MetadataRow, QueueRow};
use crate::error::{Error, Result};
use crate::ingest::import::{Input, Record};

/// One Chroma collection's records, read from disk.
#[derive(Debug, Clone)]
pub struct ChromaCollection {
    /// The collection's name (`tenant/database/name` for a collection outside the default
    /// database of a store that has several).
    pub name: String,
    /// The dimension of its vectors, when the store knows it.
    pub dims: Option<usize>,
    /// "l2", "cosine" or "ip".
    pub space: String,
    /// The embedding function the collection was configured with, when the store says (e.g.
    /// "default"), else None.
    pub embedding_function: Option<String>,
    /// Its live records in the store's order: `("<collection>/<id>", record)`, or why the record
    /// cannot be imported.
    pub records: Vec<Input>,
}

/// The metadata key under which Chroma keeps a record's document.
const DOCUMENT_KEY: &str = "chroma:document";

/// Tables and columns without which a store cannot be read.
const REQUIRED: &[(&str, &[&str])] = &[
    ("collections", &["id", "name"]),
    ("segments", &["id", "scope", "collection"]),
    ("embeddings", &["id", "segment_id", "embedding_id"]),
    (
        "embedding_metadata",
        &[
            "id",
            "key",
            "string_value",
            "int_value",
            "float_value",
            "bool_value",
        ],
    ),
    (
        "embeddings_queue",
        &["seq_id", "operation", "topic", "id", "vector", "encoding"],
    ),
];

/// Reads the collections of the Chroma store in `dir`, or only those named in `only`.
///
/// # Errors
/// [`Error::InvalidArgument`] when `dir` is not a Chroma store, its layout is not one this
/// reader knows (the message names what was found), or `only` names a collection the store does
/// not have (the message lists those it has); SQLite's errors, naming `chroma.sqlite3`.
pub fn read_store(dir: &Path, only: &[String]) -> Result<Vec<ChromaCollection>> {
    let db_path = dir.join("chroma.sqlite3");
    if !db_path.is_file() {
        return Err(Error::invalid(
            "Chroma directory",
            format!(
                "no chroma.sqlite3 in {} (not a Chroma store)",
                dir.display()
            ),
        ));
    }
    let store = ChromaStore::open(dir, &db_path)?;
    let all = store.collections()?;
    let mut chosen = Vec::new();
    for name in only {
        if !all.iter().any(|c| &c.name == name) {
            let names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
            let has = if names.is_empty() {
                "it has none".to_string()
            } else {
                format!("it has: {}", names.join(", "))
            };
            return Err(Error::invalid(
                "collection",
                format!(
                    "no collection '{name}' in the Chroma store {}; {has}",
                    dir.display()
                ),
            ));
        }
    }
    for c in all {
        if only.is_empty() || only.contains(&c.name) {
            chosen.push(store.read_collection(c)?);
        }
    }
    Ok(chosen)
}

/// An open `chroma.sqlite3` and what its layout has.
struct ChromaStore<'a> {
    dir: &'a Path,
    db: ChromaDb,
    layout: Layout,
}

/// A record as the METADATA segment holds it.
struct RecordRow {
    id: String,
    document: Option<String>,
    metadata: Map<String, Value>,
}

impl<'a> ChromaStore<'a> {
    fn open(dir: &'a Path, db_path: &Path) -> Result<Self> {
        let mut store = Self {
            dir,
            db: ChromaDb::open(db_path)?,
            layout: Layout::default(),
        };
        store.layout = store.detect_layout()?;
        Ok(store)
    }

    /// The columns of `table`, or None when there is no such table.
    fn columns(&self, table: &str) -> Result<Option<HashSet<String>>> {
        self.db.columns(table)
    }

    /// Chroma's migration versions, for error messages: `sysdb=10 metadb=6 ...`.
    fn migrations(&self) -> Result<String> {
        if self.columns("migrations")?.is_none() {
            return Ok("none (no table 'migrations')".into());
        }
        let found: Vec<String> = self
            .db
            .migrations()?
            .into_iter()
            .map(|(dir, version)| format!("{dir}={version}"))
            .collect();
        Ok(if found.is_empty() {
            "none".into()
        } else {
            found.join(" ")
        })
    }

    fn detect_layout(&self) -> Result<Layout> {
        for (table, required) in REQUIRED {
            let problem = match self.columns(table)? {
                None => format!("no table '{table}'"),
                Some(cols) => match required.iter().find(|c| !cols.contains(**c)) {
                    Some(col) => format!("table '{table}' has no column '{col}'"),
                    None => continue,
                },
            };
            return Err(self.unknown_layout(&problem));
        }
        let has = |table: &str, cols: &[&str]| -> Result<bool> {
            Ok(self
                .columns(table)?
                .is_some_and(|have| cols.iter().all(|c| have.contains(*c))))
        };
        let collection_cols = self.columns("collections")?.unwrap_or_default();
        Ok(Layout {
            dimension: collection_cols.contains("dimension"),
            config_json: collection_cols.contains("config_json_str"),
            schema: collection_cols.contains("schema_str"),
            databases: collection_cols.contains("database_id")
                && has("databases", &["id", "name", "tenant_id"])?,
            collection_metadata: has(
                "collection_metadata",
                &["collection_id", "key", "str_value"],
            )?,
            metadata_arrays: has(
                "embedding_metadata_array",
                &[
                    "id",
                    "key",
                    "string_value",
                    "int_value",
                    "float_value",
                    "bool_value",
                ],
            )?,
            max_seq_id: has("max_seq_id", &["segment_id", "seq_id"])?,
        })
    }

    fn unknown_layout(&self, problem: &str) -> Error {
        let found = self
            .migrations()
            .unwrap_or_else(|e| format!("unreadable ({e})"));
        Error::invalid(
            "Chroma directory",
            format!(
                "unknown Chroma layout in {}: found migrations {found}, {problem}",
                self.dir.display()
            ),
        )
    }

    /// Every collection, by name. A store with several databases may hold one name in each, so
    /// there a collection outside the default database is named `tenant/database/name`.
    fn collections(&self) -> Result<Vec<CollectionRow>> {
        let rows = self.db.collections(&self.layout)?;
        let databases: HashSet<_> = rows.iter().map(|c| (&c.tenant, &c.database)).collect();
        let several = databases.len() > 1;
        let mut collections: Vec<CollectionRow> = rows
            .into_iter()
            .map(|mut c| {
                if let (true, Some(tenant), Some(database)) = (several, &c.tenant, &c.database) {
                    if tenant != "default_tenant" || database != "default_database" {
                        c.name = format!("{tenant}/{database}/{}", c.name);
                    }
                }
                c
            })
            .collect();
        collections.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(collections)
    }

    fn read_collection(&self, c: CollectionRow) -> Result<ChromaCollection> {
        let segments = self.db.segments(&c.id)?;
        let segment = |scope: &str| segments.iter().find(|(s, _)| s == scope).map(|(_, id)| id);
        let Some(metadata_segment) = segment("METADATA") else {
            return Err(
                self.unknown_layout(&format!("collection '{}' has no METADATA segment", c.name))
            );
        };
        let config = |text: &Option<String>| {
            text.as_deref()
                .and_then(|t| serde_json::from_str::<Value>(t).ok())
        };
        let (schema, config_json) = (config(&c.schema), config(&c.config_json));
        let space = self.space(&c, schema.as_ref(), config_json.as_ref())?;
        let embedding_function = embedding_function(schema.as_ref(), config_json.as_ref());

        let rows = self.records(metadata_segment)?;
        let vectors = self.vectors(&c, segment("VECTOR").map(String::as_str), space == "cosine")?;
        let dims = c
            .dims
            .and_then(|d| usize::try_from(d).ok())
            .or_else(|| vectors.as_ref()?.values().next().map(Vec::len));
        // A damaged index was warned about already.
        let damaged = vectors.is_none();
        let mut vectors = vectors.unwrap_or_default();
        let mut without_vector = 0;
        let records = rows
            .into_iter()
            .map(|row| {
                let at = format!("{}/{}", c.name, row.id);
                let embedding = vectors.remove(&row.id);
                without_vector += usize::from(embedding.is_none());
                let Some(text) = row.document else {
                    return (at, Err("it has no document".to_string()));
                };
                let record = Record {
                    title: row.id.clone(),
                    id: row.id,
                    text,
                    metadata: row.metadata,
                    model: None,
                    embedding,
                    chunks: None,
                    content_hash: None,
                    collection: Some(c.name.clone()),
                };
                (at, Ok(record))
            })
            .collect();
        if without_vector > 0 && !damaged {
            tracing::warn!(
                "Chroma collection '{}': {without_vector} records have no vector in the store",
                c.name
            );
        }
        Ok(ChromaCollection {
            name: c.name,
            dims,
            space,
            embedding_function,
            records,
        })
    }

    /// The distance space: the collection's schema (Chroma 1.x), else its configuration (0.6,
    /// 1.0), else the `hnsw:space` metadata (older), else Chroma's default, l2.
    fn space(
        &self,
        c: &CollectionRow,
        schema: Option<&Value>,
        config_json: Option<&Value>,
    ) -> Result<String> {
        let configured = schema
            .and_then(|s| vector_index_config(s)?.get("space"))
            .or_else(|| {
                let cfg = config_json?;
                cfg.pointer("/hnsw/space")
                    .or_else(|| cfg.pointer("/hnsw_configuration/space"))
            })
            .and_then(Value::as_str);
        if let Some(space) = configured {
            return Ok(space.to_string());
        }
        if self.layout.collection_metadata {
            if let Some(space) = self.db.collection_space(&c.id)? {
                return Ok(space);
            }
        }
        Ok("l2".into())
    }

    /// The records of a METADATA segment, in the order they were added.
    fn records(&self, segment: &str) -> Result<Vec<RecordRow>> {
        let ids = self.db.embeddings(segment)?;
        let at: HashMap<i64, usize> = ids
            .iter()
            .enumerate()
            .map(|(i, (row, _))| (*row, i))
            .collect();
        let mut rows: Vec<RecordRow> = ids
            .into_iter()
            .map(|(_, id)| RecordRow {
                id,
                document: None,
                metadata: Map::new(),
            })
            .collect();

        // `at` maps an `embeddings.id` to its record's index.
        let index = |row: &MetadataRow| at.get(&row.id).copied();
        self.db.metadata(segment, |row| {
            let Some(i) = index(&row) else { return };
            let MetadataRow { key, value, .. } = row;
            if key == DOCUMENT_KEY {
                rows[i].document = match value {
                    Value::String(s) => Some(s),
                    _ => None,
                };
            } else {
                rows[i].metadata.insert(key, value);
            }
        })?;
        if self.layout.metadata_arrays {
            // One row per element, in the list's order.
            self.db.metadata_arrays(segment, |row| {
                let Some(i) = index(&row) else { return };
                let list = rows[i]
                    .metadata
                    .entry(row.key)
                    .or_insert_with(|| Value::Array(Vec::new()));
                match list {
                    Value::Array(items) => items.push(row.value),
                    other => *other = Value::Array(vec![row.value]),
                }
            })?;
        }
        Ok(rows)
    }

    /// The operation up to which a segment has applied the queue (0 when it never recorded
    /// one).
    fn max_seq_id(&self, segment: &str) -> Result<i64> {
        if !self.layout.max_seq_id {
            return Ok(0);
        }
        self.db.max_seq_id(segment)
    }

    /// Every live record's vector by id: the saved index, then the queue from where it was
    /// saved. None when the index is damaged (a warning says why).
    fn vectors(
        &self,
        c: &CollectionRow,
        segment: Option<&str>,
        cosine: bool,
    ) -> Result<Option<HashMap<String, Vec<f32>>>> {
        let mut vectors = HashMap::new();
        let mut from = 0;
        if let Some(segment) = segment {
            from = self.max_seq_id(segment)?;
            let folder = self.dir.join(segment);
            let dims = c.dims.and_then(|d| usize::try_from(d).ok());
            match read_index(&folder, cosine, dims) {
                Ok(Some(saved)) => {
                    vectors = saved.vectors;
                    // Chroma before 1.0 kept the position in the pickle instead.
                    from = from.max(saved.max_seq_id.unwrap_or(0));
                }
                Ok(None) if from > 0 => {
                    let damage = Damaged {
                        file: folder.join("index_metadata.pickle"),
                        reason: format!(
                            "missing, though chroma.sqlite3 says the index was saved up to operation {from}"
                        ),
                    };
                    damage.warn(&c.name);
                    return Ok(None);
                }
                Ok(None) => {}
                Err(damage) => {
                    damage.warn(&c.name);
                    return Ok(None);
                }
            }
        }
        // From the saved position itself, not after it: replaying an operation already applied
        // changes nothing, and this holds whichever way a version counts the position.
        let mut damage = None;
        self.db.queue(&c.id, from, |row| {
            let QueueRow {
                seq_id: seq,
                operation: op,
                id,
                vector: blob,
                encoding,
            } = row;
            let vector = match blob {
                None => None,
                Some(b) => match decode_vector(&b, encoding.as_deref()) {
                    Ok(v) => Some(v),
                    Err(reason) => {
                        damage = Some(format!("embeddings_queue operation {seq}: {reason}"));
                        return ControlFlow::Break(());
                    }
                },
            };
            match (op, vector) {
                // ADD, of an id not there yet (Chroma ignores adding an id twice).
                (0, Some(v)) => {
                    vectors.entry(id).or_insert(v);
                }
                // UPDATE, of an id that is there.
                (1, Some(v)) => {
                    if let Some(old) = vectors.get_mut(&id) {
                        *old = v;
                    }
                }
                // UPSERT.
                (2, Some(v)) => {
                    vectors.insert(id, v);
                }
                // DELETE.
                (3, _) => {
                    vectors.remove(&id);
                }
                (0..=2, None) => {}
                (op, _) => {
                    damage = Some(format!(
                        "embeddings_queue operation {seq} has unknown type {op}"
                    ));
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        })?;
        if let Some(reason) = damage {
            Damaged::new(self.db.path(), reason).warn(&c.name);
            return Ok(None);
        }
        Ok(Some(vectors))
    }
}

/// `keys["#embedding"].float_list.vector_index.config` of a Chroma 1.x schema.
fn vector_index_config(schema: &Value) -> Option<&Value> {
    schema.pointer("/keys/#embedding/float_list/vector_index/config")
}

/// The name of a known embedding function in the schema or configuration
/// (`{"type": "known", "name": "default", ...}`); None for legacy or custom ones.
fn embedding_function(schema: Option<&Value>, config_json: Option<&Value>) -> Option<String> {
    let ef = schema
        .and_then(|s| vector_index_config(s)?.get("embedding_function"))
        .or_else(|| config_json?.get("embedding_function"))?;
    if ef.get("type").and_then(Value::as_str) != Some("known") {
        return None;
    }
    ef.get("name").and_then(Value::as_str).map(str::to_string)
}

/// A queue vector: little-endian `f32` (FLOAT32, Chroma's only encoding for dense vectors) or
/// `i32` (INT32).
fn decode_vector(blob: &[u8], encoding: Option<&str>) -> std::result::Result<Vec<f32>, String> {
    if !blob.len().is_multiple_of(4) {
        return Err(format!(
            "a vector of {} bytes, not a multiple of 4",
            blob.len()
        ));
    }
    let words = blob.chunks_exact(4).map(|w| [w[0], w[1], w[2], w[3]]);
    match encoding {
        None | Some("FLOAT32") => Ok(words.map(f32::from_le_bytes).collect()),
        Some("INT32") => Ok(words.map(|w| i32::from_le_bytes(w) as f32).collect()),
        Some(other) => Err(format!("unknown vector encoding '{other}'")),
    }
}

/// What is wrong with an index file.
struct Damaged {
    file: PathBuf,
    reason: String,
}

impl Damaged {
    fn new(file: &Path, reason: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            reason: reason.into(),
        }
    }

    fn warn(&self, collection: &str) {
        tracing::warn!(
            "Chroma collection '{collection}': {}: {}; reading its records without vectors",
            self.file.display(),
            self.reason
        );
    }
}

/// A saved hnswlib index.
struct SavedIndex {
    vectors: HashMap<String, Vec<f32>>,
    /// Where in the queue it was saved, when the pickle says (Chroma before 1.0).
    max_seq_id: Option<i64>,
}

/// `index_metadata.pickle`: Chroma's `PersistentData` (a plain dict since 1.0, an instance
/// before, whose state serde-pickle reads the same way).
#[derive(Deserialize)]
struct PersistentData {
    id_to_label: HashMap<String, u64>,
    #[serde(default)]
    max_seq_id: Option<i64>,
}

/// hnswlib's `header.bin` (100 packed little-endian bytes), the fields used here.
struct Header {
    cur_element_count: u64,
    size_data_per_element: u64,
    label_offset: u64,
    offset_data: u64,
}

impl Header {
    const LEN: usize = 100;

    fn parse(file: &Path, b: &[u8]) -> std::result::Result<Self, Damaged> {
        if b.len() != Self::LEN {
            return Err(Damaged::new(
                file,
                format!("{} bytes, not {}", b.len(), Self::LEN),
            ));
        }
        let u64_at = |at: usize| {
            let mut w = [0; 8];
            w.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let version = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if version != 1 {
            return Err(Damaged::new(
                file,
                format!("format version {version}, only 1 is known"),
            ));
        }
        // version i32, offset_level0, max_elements, cur_element_count, size_data_per_element,
        // label_offset, offset_data (u64 each), then fields of the graph.
        let h = Self {
            cur_element_count: u64_at(20),
            size_data_per_element: u64_at(28),
            label_offset: u64_at(36),
            offset_data: u64_at(44),
        };
        let sane = h.offset_data >= 4
            && h.label_offset > h.offset_data
            && (h.label_offset - h.offset_data).is_multiple_of(4)
            && h.label_offset.checked_add(8) <= Some(h.size_data_per_element)
            && h.size_data_per_element <= 1 << 24;
        if !sane {
            return Err(Damaged::new(
                file,
                format!(
                    "inconsistent layout (element size {}, vector at {}, label at {})",
                    h.size_data_per_element, h.offset_data, h.label_offset
                ),
            ));
        }
        Ok(h)
    }

    fn dims(&self) -> usize {
        ((self.label_offset - self.offset_data) / 4) as usize
    }
}

fn read_all(file: &Path) -> std::result::Result<Vec<u8>, Damaged> {
    std::fs::read(file).map_err(|e| Damaged::new(file, format!("unreadable: {e}")))
}

/// The saved index in `folder`, or None when it was never saved (no pickle).
fn read_index(
    folder: &Path,
    cosine: bool,
    dims: Option<usize>,
) -> std::result::Result<Option<SavedIndex>, Damaged> {
    let pickle = folder.join("index_metadata.pickle");
    if !pickle.exists() {
        return Ok(None);
    }
    let meta: PersistentData =
        serde_pickle::from_slice(&read_all(&pickle)?, serde_pickle::DeOptions::new())
            .map_err(|e| Damaged::new(&pickle, format!("unreadable pickle: {e}")))?;
    let header_file = folder.join("header.bin");
    let h = Header::parse(&header_file, &read_all(&header_file)?)?;
    if let Some(d) = dims.filter(|&d| d != h.dims()) {
        return Err(Damaged::new(
            &header_file,
            format!(
                "vectors of {} dimensions, the collection's have {d}",
                h.dims()
            ),
        ));
    }
    let count = h.cur_element_count;

    let data = folder.join("data_level0.bin");
    let file = File::open(&data).map_err(|e| Damaged::new(&data, format!("unreadable: {e}")))?;
    let len = file
        .metadata()
        .map_err(|e| Damaged::new(&data, format!("unreadable: {e}")))?
        .len();
    let needed = count.checked_mul(h.size_data_per_element);
    if needed.is_none_or(|n| len < n) {
        return Err(Damaged::new(
            &data,
            format!(
                "{len} bytes, too short for the {count} elements of {} bytes in header.bin",
                h.size_data_per_element
            ),
        ));
    }
    // Cosine indexes hold unit vectors; length.bin has each one's original norm.
    let norms = if cosine {
        let file = folder.join("length.bin");
        let bytes = read_all(&file)?;
        if (bytes.len() as u64) < count * 4 {
            return Err(Damaged::new(
                &file,
                format!("{} bytes, too short for {count} norms", bytes.len()),
            ));
        }
        let norms: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|w| f32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        Some(norms)
    } else {
        None
    };

    let by_label: HashMap<u64, &str> = meta
        .id_to_label
        .iter()
        .map(|(id, &label)| (label, id.as_str()))
        .collect();
    let (dims, size) = (h.dims(), h.size_data_per_element as usize);
    let (at_vector, at_label) = (h.offset_data as usize, h.label_offset as usize);
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut slot = vec![0u8; size];
    let mut vectors = HashMap::with_capacity(by_label.len());
    for i in 0..count as usize {
        reader
            .read_exact(&mut slot)
            .map_err(|e| Damaged::new(&data, format!("unreadable: {e}")))?;
        // Byte 2 of the element's link-list header is hnswlib's "deleted" mark.
        if slot[2] & 1 != 0 {
            continue;
        }
        let mut label = [0; 8];
        label.copy_from_slice(&slot[at_label..at_label + 8]);
        let Some(id) = by_label.get(&u64::from_le_bytes(label)) else {
            continue;
        };
        let scale = norms.as_ref().map_or(1.0, |n| n[i]);
        let v: Vec<f32> = slot[at_vector..at_vector + dims * 4]
            .chunks_exact(4)
            .map(|w| f32::from_le_bytes([w[0], w[1], w[2], w[3]]) * scale)
            .collect();
        vectors.insert((*id).to_string(), v);
    }
    if vectors.len() != by_label.len() {
        return Err(Damaged::new(
            &data,
            format!(
                "{} of the {} ids in index_metadata.pickle have no vector in it",
                by_label.len() - vectors.len(),
                by_label.len()
            ),
        ));
    }
    Ok(Some(SavedIndex {
        vectors,
        max_seq_id: meta.max_seq_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `index_metadata.pickle` as Chroma 1.x writes it: a dict (protocol 3).
    const DICT_PICKLE: &[u8] =
        b"\x80\x03}(X\x0e\x00\x00\x00dimensionalityNX\x14\x00\x00\x00total_elements_addedJ\x01\
        \x00\x00\x00X\x0a\x00\x00\x00max_seq_idNX\x0b\x00\x00\x00id_to_label}(X\x01\x00\x00\
        \x00aJ\x01\x00\x00\x00uX\x0b\x00\x00\x00label_to_id}(J\x01\x00\x00\x00X\x01\x00\x00\
        \x00auX\x0c\x00\x00\x00id_to_seq_id}u.";

    /// As Chroma before 1.0 wrote it: an instance of its `PersistentData` class (protocol 5,
    /// memoised strings), made here with Python's pickle.
    const INSTANCE_PICKLE: &[u8] =
        b"\x80\x05\x95\xdf\x00\x00\x00\x00\x00\x00\x00\x8c2chromadb.segment.impl.vector.local_pe\
        rsistent_hnsw\x94\x8c\x0ePersistentData\x94\x93\x94)\x81\x94}\x94(\x8c\x0edimensionali\
        ty\x94K\x02\x8c\x14total_elements_added\x94K\x02\x8c\x0amax_seq_id\x94K*\x8c\x0bid_to_\
        label\x94}\x94(\x8c\x01a\x94K\x01\x8c\x01b\x94K\x02u\x8c\x0blabel_to_id\x94}\x94(K\x01\
        h\x0aK\x02h\x0bu\x8c\x0cid_to_seq_id\x94}\x94(h\x0aK)h\x0bK*uub.";

    fn parse(bytes: &[u8]) -> serde_pickle::Result<PersistentData> {
        serde_pickle::from_slice(bytes, serde_pickle::DeOptions::new())
    }

    #[test]
    fn index_pickles_of_both_forms_give_the_id_to_label_map() -> serde_pickle::Result<()> {
        let new = parse(DICT_PICKLE)?;
        assert_eq!(new.id_to_label, HashMap::from([("a".to_string(), 1)]));
        assert_eq!(new.max_seq_id, None);

        let old = parse(INSTANCE_PICKLE)?;
        let labels = HashMap::from([("a".to_string(), 1), ("b".to_string(), 2)]);
        assert_eq!(old.id_to_label, labels);
        assert_eq!(old.max_seq_id, Some(42));
        Ok(())
    }
}
