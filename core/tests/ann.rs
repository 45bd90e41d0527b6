//! The HNSW vector index: recall against exact search on a fixed seed, the same results after a
//! restart (loaded from its file, not rebuilt), filtered searches, and deletes and inserts seen
//! by the very next search, from another connection too.

mod common;
use common::Rng;
use outpost_core::{Collection, Filter, NewChunk, NewDocument, SearchMode, SearchRequest, Store};
use serde_json::{Map, Value};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const DIMS: usize = 32;
const DOCS: usize = 600;
const CHUNKS_PER_DOC: usize = 5;

impl Rng {
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

#[test]
fn concurrent_searches_at_different_breadths_each_get_their_own_breadth() -> TestResult {
    // usearch keeps the search breadth in the shared index: a search that set it and another
    // that changed it before the first one ran would return the other breadth's results.
    let (f, store) = fixture()?;
    let breadths = [10usize, 12, 16, 24, 40, 64, 160, 400];
    let search_at =
        |store: &Store, q: &[f32], ef: usize| -> Result<Vec<String>, outpost_core::Error> {
            let req = SearchRequest {
                mode: SearchMode::Vector,
                vector: Some(("m", q)),
                expansion: Some(ef),
                ..SearchRequest::new("q", 10)
            };
            Ok(store.search(&req)?.into_iter().map(|h| h.text).collect())
        };
    // The answers of one thread alone, per breadth and query.
    let mut alone = Vec::new();
    for &ef in &breadths {
        let per_query: Vec<Vec<String>> = f
            .queries
            .iter()
            .map(|q| search_at(&store, q, ef))
            .collect::<Result<_, _>>()?;
        alone.push(per_query);
    }
    assert_ne!(
        alone[0], alone[7],
        "the breadths must give different answers to tell them apart"
    );
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let searches = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| -> TestResult {
        let handles: Vec<_> = breadths
            .iter()
            .enumerate()
            .map(|(t, &ef)| {
                let (f, alone, searches) = (&f, &alone, &searches);
                s.spawn(move || -> Result<(), String> {
                    let store = Store::open(&f.path).map_err(|e| e.to_string())?;
                    while std::time::Instant::now() < until {
                        for (i, q) in f.queries.iter().enumerate() {
                            let got = search_at(&store, q, ef).map_err(|e| e.to_string())?;
                            if got != alone[t][i] {
                                return Err(format!(
                                    "breadth {ef}, query {i}: {got:?} != {:?}",
                                    alone[t][i]
                                ));
                            }
                            searches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| "a search thread panicked")??;
        }
        Ok(())
    })?;
    eprintln!("{} concurrent searches matched", searches.into_inner());
    Ok(())
}

/// Writes `files` text files of about `paragraphs` paragraphs each into `dir`, their words drawn
/// from a fixed vocabulary by `rng`.
fn write_corpus(
    dir: &std::path::Path,
    first: usize,
    files: usize,
    rng: &mut Rng,
) -> Result<Vec<std::path::PathBuf>, Box<dyn std::error::Error>> {
    const WORDS: &[&str] = &[
        "river", "delta", "mountain", "glacier", "harbour", "signal", "engine", "protein", "cell",
        "membrane", "orbit", "planet", "comet", "granite", "basalt", "forest", "canopy", "root",
        "fungus", "spore", "tide", "current", "salt", "brine", "valley", "ridge", "summit",
        "thermal", "vector", "matrix", "kernel", "lattice", "crystal", "quartz", "amber", "resin",
        "pollen", "nectar", "hive", "colony", "archive", "ledger", "market", "harvest", "grain",
    ];
    let mut paths = Vec::new();
    for f in first..first + files {
        let mut text = String::new();
        for _ in 0..6 {
            for _ in 0..90 {
                let w = WORDS[((rng.next() + 0.5) * WORDS.len() as f32) as usize % WORDS.len()];
                text.push_str(w);
                text.push(' ');
            }
            text.push_str(&format!("note{f}\n\n"));
        }
        let path = dir.join(format!("f{f:05}.txt"));
        std::fs::write(&path, text)?;
        paths.push(path);
    }
    Ok(paths)
}

/// A chunk's text and its stored vector.
type TextAndVector = (String, Vec<f32>);

/// Every chunk's text and stored vector, read from the collection's vec0 table.
fn stored_vectors(store: &Store) -> Result<Vec<TextAndVector>, Box<dyn std::error::Error>> {
    let coll = store
        .collection(outpost_core::DEFAULT_COLLECTION)?
        .ok_or("no default collection")?;
    let mut stmt = store.connection().prepare(&format!(
        "SELECT c.text, v.embedding FROM {} v JOIN chunks c ON c.seq = v.rowid",
        coll.vec_table()
    ))?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                outpost_core::db::blob_to_vector(&r.get::<_, Vec<u8>>(1)?),
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Queries whose exact top 10 is not all in the index's top 100 at a breadth as wide as the
/// collection, where a search visits every vector it can reach at all (this data is so
/// clustered that a narrower search may miss a reachable one): with every vector reachable,
/// there are none.
fn unreached(
    engine: &outpost_core::Engine,
    queries: &[String],
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    // A connection of the test's own, for its SQL and the search breadth; the index it
    // searches is the one the engine built (one per database per process).
    let store = Store::open(engine.path())?;
    let rows = stored_vectors(&store)?;
    let mut bad = Vec::new();
    for q in queries {
        let qv = engine.embedder().embed(&[q.as_str()])?.remove(0);
        let mut exact: Vec<(f32, &str)> = rows
            .iter()
            .map(|(t, v)| (v.iter().zip(&qv).map(|(a, b)| a * b).sum(), t.as_str()))
            .collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0));
        let req = SearchRequest {
            mode: SearchMode::Vector,
            vector: Some((engine.embedder().model_id(), &qv)),
            expansion: Some(rows.len()),
            ..SearchRequest::new(q, 100)
        };
        let got: Vec<String> = store.search(&req)?.into_iter().map(|h| h.text).collect();
        let missing = exact[..10]
            .iter()
            .filter(|(_, t)| !got.iter().any(|g| g == t))
            .count();
        if missing > 0 {
            bad.push(format!(
                "{q:?}: {missing} of its exact top 10 not in the index's top 100"
            ));
        }
    }
    Ok(bad)
}

#[test]
fn every_vector_is_reachable_after_a_build_a_catch_up_and_a_reload() -> TestResult {
    // Built by concurrent inserts, usearch's graph stranded some vectors (usearch issue #735):
    // stored, but found by no search however wide.
    let dir = tempfile::tempdir()?;
    let files = dir.path().join("files");
    std::fs::create_dir(&files)?;
    let mut rng = Rng(11);
    let embedder = std::sync::Arc::new(outpost_core::HashEmbedder::new(384));
    let db = dir.path().join("reach.db");
    let engine = outpost_core::Engine::open(&db, embedder.clone(), 2)?;
    let opts = outpost_core::IngestOptions::default();
    let first = write_corpus(&files, 0, 1_000, &mut rng)?;
    let report = engine.ingest(&first, &opts, &mut |_| {})?;
    assert_eq!(report.failed, 0);
    engine.refresh_indexes()?;
    let queries: Vec<String> = (0..150)
        .map(|i| {
            let words = write_corpus_words(&mut rng);
            format!("{words} note{}", i * 7)
        })
        .collect();
    let chunks = stored_vectors(&Store::open(&db)?)?.len();
    assert!(chunks >= 2_500, "{chunks} chunks: the graph must be in use");
    let bad = unreached(&engine, &queries)?;
    assert!(bad.is_empty(), "after the build: {bad:#?}");

    // More files, caught up from ann_log by the next search.
    let more = write_corpus(&files, 1_000, 200, &mut rng)?;
    engine.ingest(&more, &opts, &mut |_| {})?;
    let bad = unreached(&engine, &queries)?;
    assert!(bad.is_empty(), "after the catch-up: {bad:#?}");

    // Saved, dropped, and loaded from the files by a new engine.
    engine.save_indexes()?;
    engine.unload_indexes()?;
    drop(engine);
    let engine = outpost_core::Engine::open(&db, embedder, 2)?;
    let bad = unreached(&engine, &queries)?;
    assert!(bad.is_empty(), "after the reload: {bad:#?}");
    Ok(())
}

/// A few words of the corpus vocabulary, as a query.
fn write_corpus_words(rng: &mut Rng) -> String {
    const Q: &[&str] = &[
        "river", "glacier", "protein", "orbit", "basalt", "spore", "brine", "lattice", "amber",
        "ledger",
    ];
    (0..4)
        .map(|_| Q[((rng.next() + 0.5) * Q.len() as f32) as usize % Q.len()])
        .collect::<Vec<_>>()
        .join(" ")
}
