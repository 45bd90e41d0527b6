//! The HNSW vector index: recall against exact search on a fixed seed, the same results after a
//! restart (loaded from its file, not rebuilt), filtered searches, and deletes and inserts seen
//! by the very next search, from another connection too.

use outpost_core::{Collection, Filter, NewChunk, NewDocument, SearchMode, SearchRequest, Store};
use serde_json::{Map, Value};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const DIMS: usize = 32;
const DOCS: usize = 600;
const CHUNKS_PER_DOC: usize = 5;

/// A small deterministic generator (SplitMix64), so the data is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }

    /// A unit vector near one of 40 cluster centres.
    fn vector(&mut self, centres: &[Vec<f32>]) -> Vec<f32> {
        let c = &centres[((self.next() + 0.5) * centres.len() as f32) as usize % centres.len()];
        let v: Vec<f32> = c.iter().map(|x| x + 0.6 * self.next()).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    coll: Collection,
    /// (chunk text, vector, bucket) in insertion order.
    rows: Vec<(String, Vec<f32>, usize)>,
    queries: Vec<Vec<f32>>,
}

/// 3,000 chunks (above the exact-scan threshold) in 600 documents, `bucket` = doc number % 10.
fn fixture() -> Result<(Fixture, Store), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("ann.db");
    let mut store = Store::open(&path)?;
    let coll = store.ensure_collection("c", "m", DIMS)?;
    let mut rng = Rng(7);
    let centres: Vec<Vec<f32>> = (0..40)
        .map(|_| (0..DIMS).map(|_| 2.0 * rng.next()).collect())
        .collect();
    let mut rows = Vec::new();
    for d in 0..DOCS {
        let mut chunks = Vec::new();
        for j in 0..CHUNKS_PER_DOC {
            let text = format!("n{}", d * CHUNKS_PER_DOC + j);
            let v = rng.vector(&centres);
            rows.push((text.clone(), v.clone(), d % 10));
            chunks.push(NewChunk {
                byte_end: text.len(),
                text,
                embedding: v,
                ..Default::default()
            });
        }
        let mut metadata = Map::new();
        metadata.insert("bucket".into(), Value::from(d % 10));
        let doc = NewDocument {
            source: format!("doc{d}"),
            title: format!("doc {d}"),
            content_hash: d.to_string(),
            metadata,
        };
        store.put_document(&coll, &doc, &chunks)?;
    }
    let queries = (0..50).map(|_| rng.vector(&centres)).collect();
    Ok((
        Fixture {
            _dir: dir,
            path,
            coll,
            rows,
            queries,
        },
        store,
    ))
}

fn exact(f: &Fixture, q: &[f32], k: usize, keep: impl Fn(usize) -> bool) -> Vec<String> {
    let mut scored: Vec<(f32, &str)> = f
        .rows
        .iter()
        .filter(|(_, _, b)| keep(*b))
        .map(|(t, v, _)| (v.iter().zip(q).map(|(a, b)| a * b).sum(), t.as_str()))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored
        .into_iter()
        .take(k)
        .map(|(_, t)| t.to_string())
        .collect()
}

fn search(
    store: &Store,
    q: &[f32],
    k: usize,
    filters: &[Filter],
) -> Result<Vec<String>, outpost_core::Error> {
    let req = SearchRequest {
        mode: SearchMode::Vector,
        vector: Some(("m", q)),
        filters,
        ..SearchRequest::new("q", k)
    };
    Ok(store.search(&req)?.into_iter().map(|h| h.text).collect())
}

/// recall@10 of the index against exact search, at a given search breadth.
fn recall(
    f: &Fixture,
    store: &Store,
    expansion: Option<usize>,
) -> Result<f64, Box<dyn std::error::Error>> {
    let mut found = 0;
    for q in &f.queries {
        let truth = exact(f, q, 10, |_| true);
        let req = SearchRequest {
            mode: SearchMode::Vector,
            vector: Some(("m", q)),
            expansion,
            ..SearchRequest::new("q", 10)
        };
        let got: Vec<String> = store.search(&req)?.into_iter().map(|h| h.text).collect();
        assert_eq!(got.len(), 10);
        found += truth.iter().filter(|t| got.contains(t)).count();
    }
    Ok(found as f64 / (10 * f.queries.len()) as f64)
}

#[test]
fn recall_against_exact_search_on_a_fixed_seed() -> TestResult {
    let (f, store) = fixture()?;
    // The graph is built by several threads, so it differs a little from run to run and
    // between architectures: the bars leave room for that.
    let default = recall(&f, &store, None)?;
    let wide = recall(&f, &store, Some(128))?;
    eprintln!("recall@10: {default:.3} at the default breadth, {wide:.3} at 128");
    assert!(
        default >= 0.95,
        "recall@10 {default} at the default breadth"
    );
    assert!(wide >= 0.98, "recall@10 {wide} at breadth 128");
    assert!(
        store.vector_index_memory().resident > 0,
        "the graph index answered, not the exact scan"
    );
    Ok(())
}

#[test]
fn the_same_results_after_a_restart_from_the_saved_index() -> TestResult {
    let (f, store) = fixture()?;
    let before: Vec<Vec<String>> = f
        .queries
        .iter()
        .map(|q| search(&store, q, 10, &[]))
        .collect::<Result<_, _>>()?;
    // What closing the process does: save, then forget the in-memory graph.
    store.unload_vector_indexes()?;
    drop(store);
    let mut saved: Vec<_> = std::fs::read_dir(f.path.with_file_name("ann.db.ann"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    saved.sort();
    // The graph and its f32 rows, saved as one pair for the one collection.
    assert_eq!(saved.len(), 2, "{saved:?}");
    let stem = saved[0].strip_suffix(".usearch").unwrap_or_default();
    assert!(stem.starts_with(&format!("c{}-", f.coll.id)), "{saved:?}");
    assert_eq!(saved[1], format!("{stem}.vectors"));

    let store = Store::open(&f.path)?;
    let after: Vec<Vec<String>> = f
        .queries
        .iter()
        .map(|q| search(&store, q, 10, &[]))
        .collect::<Result<_, _>>()?;
    assert_eq!(before, after);
    Ok(())
}

#[test]
fn a_corrupt_index_file_is_rebuilt_from_the_database() -> TestResult {
    let (f, store) = fixture()?;
    let before = search(&store, &f.queries[0], 10, &[])?;
    store.unload_vector_indexes()?;
    drop(store);
    let dir = f.path.with_file_name("ann.db.ann");
    // The f32 rows alone missing: the graph beside them is not used without them.
    for e in std::fs::read_dir(&dir)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "vectors") {
            std::fs::remove_file(p)?;
        }
    }
    let store = Store::open(&f.path)?;
    assert_eq!(search(&store, &f.queries[0], 10, &[])?, before);
    store.unload_vector_indexes()?;
    drop(store);
    // Both files damaged.
    for e in std::fs::read_dir(&dir)? {
        std::fs::write(e?.path(), b"not an index")?;
    }
    let store = Store::open(&f.path)?;
    assert_eq!(search(&store, &f.queries[0], 10, &[])?, before);
    Ok(())
}

#[test]
fn filtered_searches_return_k_results_that_pass_the_filter() -> TestResult {
    let (f, store) = fixture()?;
    let filter: Vec<Filter> = vec!["bucket=3".parse()?];
    for q in f.queries.iter().take(10) {
        let got = search(&store, q, 10, &filter)?;
        assert_eq!(
            got,
            exact(&f, q, 10, |b| b == 3),
            "filtered search is exact"
        );
    }
    Ok(())
}

#[test]
fn deletes_and_inserts_are_seen_by_the_next_search_from_any_connection() -> TestResult {
    let (f, mut writer) = fixture()?;
    let reader = Store::open(&f.path)?;
    let q = &f.queries[0];
    let top = search(&reader, q, 10, &[])?;
    // Delete the document that holds the best hit.
    let best: usize = top[0].trim_start_matches('n').parse()?;
    let doc = format!("doc{}", best / CHUNKS_PER_DOC);
    let id = writer
        .list_documents(None, false, 10_000)?
        .into_iter()
        .find(|d| d.source == doc)
        .ok_or("document not found")?
        .id;
    writer.delete_document(&id)?;
    let gone: Vec<String> = (0..CHUNKS_PER_DOC)
        .map(|j| format!("n{}", (best / CHUNKS_PER_DOC) * CHUNKS_PER_DOC + j))
        .collect();
    for store in [&reader, &writer] {
        let now = search(store, q, 10, &[])?;
        assert!(
            now.iter().all(|t| !gone.contains(t)),
            "deleted chunk still found: {now:?}"
        );
        assert_eq!(now.len(), 10);
    }
    // A new chunk equal to the query is the best hit at once.
    let doc = NewDocument {
        source: "new".into(),
        title: "new".into(),
        content_hash: "new".into(),
        metadata: Map::new(),
    };
    let chunk = NewChunk {
        text: "fresh".into(),
        byte_end: 5,
        embedding: q.clone(),
        ..Default::default()
    };
    writer.put_document(&f.coll, &doc, &[chunk])?;
    assert_eq!(search(&reader, q, 1, &[])?, vec!["fresh".to_string()]);
    Ok(())
}

#[test]
fn the_index_log_is_trimmed_and_an_index_saved_before_the_trim_is_rebuilt() -> TestResult {
    let (f, mut store) = fixture()?;
    store.refresh_vector_indexes()?;
    let dir = f.path.with_file_name("ann.db.ann");
    let before_trim = tempfile::tempdir()?;
    for e in std::fs::read_dir(&dir)? {
        let e = e?;
        std::fs::copy(e.path(), before_trim.path().join(e.file_name()))?;
    }
    // The best match of the first query goes; 10,000 new chunks pass the trim threshold.
    let gone = search(&store, &f.queries[0], 1, &[])?.remove(0);
    let doc_no: usize = gone.trim_start_matches('n').parse::<usize>()? / CHUNKS_PER_DOC;
    let (doc_id, _, _) = store
        .document_by_source(&f.coll, &format!("doc{doc_no}"))?
        .ok_or("the document is missing")?;
    store.delete_document(&doc_id)?;
    let mut rng = Rng(11);
    for d in 0..100 {
        let chunks: Vec<NewChunk> = (0..100)
            .map(|j| {
                let text = format!("extra{d}x{j}");
                let v: Vec<f32> = (0..DIMS).map(|_| rng.next()).collect();
                NewChunk {
                    byte_end: text.len(),
                    text,
                    embedding: v,
                    ..Default::default()
                }
            })
            .collect();
        let doc = NewDocument {
            source: format!("extra{d}"),
            title: String::new(),
            content_hash: d.to_string(),
            metadata: Map::new(),
        };
        store.put_document(&f.coll, &doc, &chunks)?;
    }
    let text_hits = |store: &Store, q: &str| -> Result<usize, outpost_core::Error> {
        Ok(store
            .search(&SearchRequest {
                mode: SearchMode::Text,
                ..SearchRequest::new(q, 10)
            })?
            .len())
    };
    assert_eq!(text_hits(&store, &gone)?, 0);
    assert_eq!(text_hits(&store, "extra7x7")?, 1);
    store.refresh_vector_indexes()?;
    let log: i64 = store
        .connection()
        .query_row("SELECT count(*) FROM ann_log", [], |r| r.get(0))?;
    assert_eq!(
        log, 1,
        "the saved indexes applied the whole log: only the newest row stays"
    );
    let current = search(&store, &f.queries[0], 10, &[])?;
    assert!(!current.contains(&gone));

    // Indexes saved before the trim, as another process may still hold them, cannot be caught
    // up over the gap: they are rebuilt, and know of the delete and the new chunks.
    store.unload_vector_indexes()?;
    drop(store);
    for e in std::fs::read_dir(&dir)? {
        std::fs::remove_file(e?.path())?;
    }
    for e in std::fs::read_dir(before_trim.path())? {
        let e = e?;
        std::fs::copy(e.path(), dir.join(e.file_name()))?;
    }
    let store = Store::open(&f.path)?;
    assert_eq!(search(&store, &f.queries[0], 10, &[])?, current);
    assert_eq!(text_hits(&store, &gone)?, 0);
    assert_eq!(text_hits(&store, "extra7x7")?, 1);
    Ok(())
}
