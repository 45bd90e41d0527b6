//! The derived indexes' shared life cycle (`index::derived`): `Store::verify_indexes` finds the
//! vector and text indexes sound after a build, a catch-up, a reload and a rebuild forced by a
//! trimmed log, and the searches they answer stay right through each step.

mod common;
use common::Rng;
use outpost_core::{Collection, NewChunk, NewDocument, SearchMode, SearchRequest, Store};
use serde_json::Map;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const DIMS: usize = 24;
const CHUNKS_PER_DOC: usize = 10;

impl Rng {
    fn vector(&mut self) -> Vec<f32> {
        (0..DIMS).map(|_| self.next()).collect()
    }
}

/// Adds documents `from..to` of `CHUNKS_PER_DOC` chunks each, named `<tag><doc>x<chunk>`;
/// returns each chunk's text and vector.
fn add_docs(
    store: &mut Store,
    coll: &Collection,
    rng: &mut Rng,
    tag: &str,
    docs: std::ops::Range<usize>,
) -> Result<Vec<(String, Vec<f32>)>, outpost_core::Error> {
    let mut added = Vec::new();
    for d in docs {
        let chunks: Vec<NewChunk> = (0..CHUNKS_PER_DOC)
            .map(|j| {
                let text = format!("{tag}{d}x{j} common word{}", (d + j) % 13);
                let v = rng.vector();
                added.push((text.clone(), v.clone()));
                NewChunk {
                    byte_end: text.len(),
                    text,
                    embedding: v,
                    ..Default::default()
                }
            })
            .collect();
        let doc = NewDocument {
            source: format!("{tag}{d}"),
            title: String::new(),
            content_hash: format!("{tag}{d}"),
            metadata: Map::new(),
        };
        store.put_document(coll, &doc, &chunks)?;
    }
    Ok(added)
}

fn nearest(store: &Store, q: &[f32], k: usize) -> Result<Vec<String>, outpost_core::Error> {
    let req = SearchRequest {
        mode: SearchMode::Vector,
        vector: Some(("m", q)),
        ..SearchRequest::new("q", k)
    };
    Ok(store.search(&req)?.into_iter().map(|h| h.text).collect())
}

fn text_hits(store: &Store, q: &str) -> Result<Vec<String>, outpost_core::Error> {
    Ok(store
        .search(&SearchRequest {
            mode: SearchMode::Text,
            ..SearchRequest::new(q, 10)
        })?
        .into_iter()
        .map(|h| h.text)
        .collect())
}

/// Each of `chunks`, searched by its own vector and by its own name, is found first.
fn finds_each(store: &Store, chunks: &[(String, Vec<f32>)]) -> TestResult {
    for (text, v) in chunks {
        assert_eq!(
            nearest(store, v, 1)?.first(),
            Some(text),
            "vector of {text}"
        );
        let name = text.split(' ').next().unwrap_or_default();
        assert_eq!(
            text_hits(store, name)?.first(),
            Some(text),
            "text of {text}"
        );
    }
    Ok(())
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

fn deleted(store: &mut Store, coll: &Collection, source: &str) -> TestResult {
    let (id, _, _) = store
        .document_by_source(coll, source)?
        .ok_or("the document is missing")?;
    store.delete_document(&id)?;
    Ok(())
}

#[test]
fn indexes_verify_after_build_catch_up_reload_and_a_forced_rebuild() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("d.db");
    let mut store = Store::open(&path)?;
    let coll = store.ensure_collection("c", "m", DIMS)?;
    let mut rng = Rng(3);
    // 3,000 chunks: above the exact-scan threshold, so the graph answers.
    let first = add_docs(&mut store, &coll, &mut rng, "a", 0..300)?;

    // Built from SQLite on first use.
    assert_eq!(store.verify_indexes()?, Vec::<String>::new());
    assert_eq!(
        store.index_origins().built,
        2,
        "{:?}",
        store.index_origins()
    );
    finds_each(&store, &first[..20])?;

    // Caught up from the log: deletes and inserts.
    for d in 0..30 {
        deleted(&mut store, &coll, &format!("a{d}"))?;
    }
    let more = add_docs(&mut store, &coll, &mut rng, "b", 0..50)?;
    assert_eq!(store.verify_indexes()?, Vec::<String>::new());
    assert_eq!(store.index_origins().built, 2, "caught up, not rebuilt");
    let (gone, v) = &first[5];
    assert!(!nearest(&store, v, 10)?.contains(gone));
    assert!(text_hits(&store, "a0x5")?.is_empty());
    finds_each(&store, &more[..20])?;
    finds_each(&store, &first[300..320])?;

    // Saved, then loaded by a new store.
    store.refresh_vector_indexes()?;
    let ann_dir = path.with_file_name("d.db.ann");
    let saved = tempfile::tempdir()?;
    for e in std::fs::read_dir(&ann_dir)? {
        let e = e?;
        std::fs::copy(e.path(), saved.path().join(e.file_name()))?;
    }
    store.unload_vector_indexes()?;
    drop(store);
    let mut store = Store::open(&path)?;
    assert_eq!(store.verify_indexes()?, Vec::<String>::new());
    assert_eq!(
        store.index_origins().loaded,
        2,
        "{:?}",
        store.index_origins()
    );
    finds_each(&store, &more[20..40])?;

    // 10,000 more chunks pass the log's trim threshold; the save trims it.
    let late = add_docs(&mut store, &coll, &mut rng, "c", 0..1_000)?;
    deleted(&mut store, &coll, "b3")?;
    store.refresh_vector_indexes()?;
    let log: i64 = store
        .connection()
        .query_row("SELECT count(*) FROM ann_log", [], |r| r.get(0))?;
    assert_eq!(log, 1, "the log was trimmed");
    store.unload_vector_indexes()?;
    drop(store);

    // The files from before the trim cannot be caught up over the gap: the generic life cycle
    // rebuilds both indexes, which then verify and answer as before.
    for e in std::fs::read_dir(&ann_dir)? {
        std::fs::remove_file(e?.path())?;
    }
    for e in std::fs::read_dir(saved.path())? {
        let e = e?;
        std::fs::copy(e.path(), ann_dir.join(e.file_name()))?;
    }
    let store = Store::open(&path)?;
    let built = store.index_origins().built;
    assert_eq!(store.verify_indexes()?, Vec::<String>::new());
    assert_eq!(
        store.index_origins().built,
        built + 2,
        "rebuilt, not loaded"
    );
    // Against exact search over the live chunks.
    let live: Vec<&(String, Vec<f32>)> = first[300..]
        .iter()
        .chain(more.iter().filter(|(t, _)| !t.starts_with("b3x")))
        .chain(&late)
        .collect();
    let mut found = 0;
    for q in (0..20).map(|_| rng.vector()) {
        let mut exact: Vec<(f32, &String)> = live.iter().map(|(t, v)| (cosine(v, &q), t)).collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0));
        let got = nearest(&store, &q, 10)?;
        found += exact[..10].iter().filter(|(_, t)| got.contains(t)).count();
    }
    assert!(found >= 180, "recall@10 {found}/200");
    finds_each(&store, &late[5_000..5_020])?;
    assert!(text_hits(&store, "b3x4")?.is_empty());
    assert!(!nearest(&store, &more[34].1, 10)?.contains(&more[34].0));
    Ok(())
}

#[test]
fn a_small_or_in_memory_database_verifies() -> TestResult {
    let mut store = Store::open(":memory:")?;
    assert_eq!(store.verify_indexes()?, Vec::<String>::new());
    let coll = store.ensure_collection("c", "m", DIMS)?;
    let mut rng = Rng(5);
    let chunks = add_docs(&mut store, &coll, &mut rng, "s", 0..20)?;
    assert_eq!(store.verify_indexes()?, Vec::<String>::new());
    deleted(&mut store, &coll, "s4")?;
    assert_eq!(store.verify_indexes()?, Vec::<String>::new());
    finds_each(&store, &chunks[..10])?;
    Ok(())
}

#[test]
fn a_change_that_bypassed_the_log_is_reported() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut store = Store::open(dir.path().join("b.db"))?;
    let coll = store.ensure_collection("c", "m", DIMS)?;
    add_docs(&mut store, &coll, &mut Rng(9), "z", 0..30)?;
    assert_eq!(store.verify_indexes()?, Vec::<String>::new());
    // A chunk deleted behind the log's back: the text index still counts it.
    store.connection().execute_batch(
        "DROP TRIGGER ann_log_chunk_delete;
         DELETE FROM chunks WHERE seq = (SELECT max(seq) FROM chunks);",
    )?;
    let problems = store.verify_indexes()?;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("the text index: 300 entries, but SQLite holds 299 rows"),
        "{problems:?}"
    );
    Ok(())
}
