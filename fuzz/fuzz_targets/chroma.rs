//! The Chroma reader (`outpost import chroma`): a Chroma persistent directory generated from
//! structured fuzz input — `chroma.sqlite3` with the real schema of chromadb 1.5.9
//! (`fuzz/chroma/schema.sql`, its migrations listed), collections with their segments,
//! metadata, records, queue rows (any operation, vector bytes and encoding) and `max_seq_id`,
//! plus the first collection's HNSW segment files (`header.bin` as fuzz bytes or a sound header
//! with fuzzed fields, `data_level0.bin`, `index_metadata.pickle` from a fuzzed id-to-label map
//! or raw bytes) — read by `ingest::chroma::read_store`, whose records are then imported
//! through `Engine::import`. What must hold: an unknown layout or a damaged file is an error or
//! a warning naming it, never a panic or an out-of-bounds read; the import returns `Ok`.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use outpost_core::ingest::chroma::read_store;
use outpost_core::ingest::import::ImportOptions;
use outpost_fuzz::{template, Scratch};
use rusqlite::params;

const SCHEMA: &str = include_str!("../chroma/schema.sql");
const MIGRATIONS: &str = include_str!("../chroma/migrations.txt");
const DATABASE: &str = "00000000-0000-0000-0000-000000000000";

#[derive(Arbitrary, Debug)]
enum Meta {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
}

#[derive(Arbitrary, Debug)]
struct Record {
    id: String,
    seq_id: i64,
    document: Option<String>,
    metadata: Vec<(String, Meta)>,
}

#[derive(Arbitrary, Debug)]
struct Queued {
    operation: i8,
    id: String,
    vector: Option<Vec<u8>>,
    encoding: Option<String>,
    metadata: Option<String>,
}

#[derive(Arbitrary, Debug)]
struct Collection {
    name: String,
    dimension: Option<i64>,
    space: Option<String>,
    config_json: Option<String>,
    schema: Option<String>,
    records: Vec<Record>,
    queue: Vec<Queued>,
    max_seq_id: Option<i64>,
}

#[derive(Arbitrary, Debug)]
enum HeaderBin {
    Raw(Vec<u8>),
    /// hnswlib's header, version 1, with these fields.
    Sound {
        count: u64,
        size_per_element: u64,
        label_offset: u64,
        offset_data: u64,
    },
}

#[derive(Arbitrary, Debug)]
enum Pickle {
    Raw(Vec<u8>),
    /// Chroma's dict: `id_to_label`, `max_seq_id`.
    Map(Vec<(String, u64)>, Option<i64>),
}

#[derive(Arbitrary, Debug)]
struct ChromaDir {
    collections: Vec<Collection>,
    header: Option<HeaderBin>,
    data_level0: Option<Vec<u8>>,
    pickle: Option<Pickle>,
    /// Drops one table (by index into the schema's tables) to make an unknown layout.
    drop_table: Option<u8>,
    only: Option<String>,
}

static EMPTY: OnceLock<Scratch> = OnceLock::new();

fn write_db(path: &std::path::Path, store: &ChromaDir) -> rusqlite::Result<Vec<String>> {
    let db = rusqlite::Connection::open(path)?;
    db.execute_batch(SCHEMA)?;
    for line in MIGRATIONS.lines() {
        let f: Vec<&str> = line.split('|').collect();
        if let [dir, version, filename] = f[..] {
            db.execute(
                "INSERT INTO migrations VALUES (?1, ?2, ?3, '', '')",
                params![dir, version, filename],
            )?;
        }
    }
    db.execute("INSERT INTO tenants VALUES ('default_tenant')", [])?;
    db.execute(
        "INSERT INTO databases VALUES (?1, 'default_database', 'default_tenant')",
        [DATABASE],
    )?;
    let mut vector_segments = Vec::new();
    for (c, coll) in store.collections.iter().take(3).enumerate() {
        let id = format!("00000000-0000-0000-0000-00000000000{c}");
        let (vector, metadata) = (format!("{id}-v"), format!("{id}-m"));
        db.execute(
            "INSERT INTO collections VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                id,
                coll.name,
                coll.dimension,
                DATABASE,
                coll.config_json,
                coll.schema
            ],
        )?;
        db.execute(
            "INSERT INTO segments VALUES (?1, 'urn:chroma:segment/vector/hnsw-local-persisted', 'VECTOR', ?2)",
            params![vector, id],
        )?;
        db.execute(
            "INSERT INTO segments VALUES (?1, 'urn:chroma:segment/metadata/sqlite', 'METADATA', ?2)",
            params![metadata, id],
        )?;
        if let Some(space) = &coll.space {
            db.execute(
                "INSERT INTO collection_metadata VALUES (?1, 'hnsw:space', ?2, NULL, NULL, NULL)",
                params![id, space],
            )?;
        }
        if let Some(seq) = coll.max_seq_id {
            db.execute(
                "INSERT INTO max_seq_id VALUES (?1, ?2)",
                params![metadata, seq],
            )?;
        }
        for r in coll.records.iter().take(16) {
            db.execute(
                "INSERT OR IGNORE INTO embeddings (segment_id, embedding_id, seq_id) VALUES (?1, ?2, ?3)",
                params![metadata, r.id, r.seq_id],
            )?;
            let row = db.last_insert_rowid();
            let document = r
                .document
                .iter()
                .map(|d| ("chroma:document", Meta::Str(d.clone())));
            let mut meta: Vec<(&str, &Meta)> =
                r.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
            let document: Vec<(&str, Meta)> = document.collect();
            meta.extend(document.iter().map(|(k, v)| (*k, v)));
            for (key, value) in meta.into_iter().take(8) {
                let (s, i, f, b) = match value {
                    Meta::Str(s) => (Some(s.clone()), None, None, None),
                    Meta::Int(i) => (None, Some(*i), None, None),
                    Meta::Float(f) => (None, None, Some(*f), None),
                    Meta::Bool(b) => (None, None, None, Some(*b)),
                    Meta::Null => (None, None, None, None),
                };
                db.execute(
                    "INSERT OR IGNORE INTO embedding_metadata VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![row, key, s, i, f, b],
                )?;
            }
        }
        for q in coll.queue.iter().take(16) {
            db.execute(
                "INSERT INTO embeddings_queue (operation, topic, id, vector, encoding, metadata) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    q.operation,
                    format!("persistent://default/default/{id}"),
                    q.id,
                    q.vector,
                    q.encoding,
                    q.metadata
                ],
            )?;
        }
        vector_segments.push(vector);
    }
    if let Some(t) = store.drop_table {
        let tables: Vec<String> = db
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if let Some(name) = tables.get(usize::from(t)) {
            // A virtual table's shadow tables cannot be dropped alone: skip those.
            let _ = db.execute_batch(&format!("DROP TABLE \"{name}\""));
        }
    }
    Ok(vector_segments)
}

fn pickle(map: &[(String, u64)], max_seq_id: Option<i64>) -> Vec<u8> {
    use serde_pickle::{HashableValue as H, Value as V};
    let id_to_label: BTreeMap<H, V> = map
        .iter()
        .take(64)
        .map(|(id, label)| (H::String(id.clone()), V::I64(*label as i64)))
        .collect();
    let mut dict = BTreeMap::new();
    dict.insert(H::String("id_to_label".into()), V::Dict(id_to_label));
    dict.insert(
        H::String("max_seq_id".into()),
        max_seq_id.map_or(V::None, V::I64),
    );
    serde_pickle::value_to_vec(&V::Dict(dict), serde_pickle::SerOptions::new()).expect("a pickle")
}

fn header(count: u64, size: u64, label: u64, data: u64) -> Vec<u8> {
    let mut h = vec![0u8; 100];
    h[..4].copy_from_slice(&1i32.to_le_bytes());
    for (at, v) in [
        (4, 0u64),
        (12, count),
        (20, count),
        (28, size),
        (36, label),
        (44, data),
    ] {
        h[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
    h
}

fuzz_target!(|store: ChromaDir| {
    let scratch = Scratch::copy_of(template(&EMPTY, |_| {}));
    let dir = scratch.dir().join("chroma");
    std::fs::create_dir_all(&dir).expect("the store folder");
    let Ok(vector_segments) = write_db(&dir.join("chroma.sqlite3"), &store) else {
        return;
    };
    if let Some(segment) = vector_segments.first() {
        let folder = dir.join(segment);
        std::fs::create_dir_all(&folder).expect("the segment folder");
        let write = |name: &str, bytes: &[u8]| {
            std::fs::write(folder.join(name), bytes).expect("a segment file");
        };
        match &store.header {
            None => {}
            Some(HeaderBin::Raw(b)) => write("header.bin", b),
            Some(HeaderBin::Sound {
                count,
                size_per_element,
                label_offset,
                offset_data,
            }) => write(
                "header.bin",
                &header(*count, *size_per_element, *label_offset, *offset_data),
            ),
        }
        if let Some(data) = &store.data_level0 {
            write("data_level0.bin", data);
        }
        match &store.pickle {
            None => {}
            Some(Pickle::Raw(b)) => write("index_metadata.pickle", b),
            Some(Pickle::Map(map, seq)) => write("index_metadata.pickle", &pickle(map, *seq)),
        }
        write("link_lists.bin", b"");
    }
    let only: Vec<String> = store.only.iter().cloned().collect();
    let Ok(collections) = read_store(&dir, &only) else {
        return;
    };
    let records = collections
        .into_iter()
        .flat_map(|c| c.records)
        .map(|(at, r)| {
            // As `outpost import chroma` without --keep-vectors: embedded anew.
            (
                at,
                r.map(|mut r| {
                    r.embedding = None;
                    r
                }),
            )
        });
    let engine = scratch.engine();
    if let Err(e) = engine.import(records, &ImportOptions::default(), &mut |_| {}) {
        panic!("the import failed as a whole: {e}");
    }
    outpost_fuzz::close(engine);
});
