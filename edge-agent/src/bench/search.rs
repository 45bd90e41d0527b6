//! `outpost bench search`: latency of vector, filtered vector, text and hybrid search over a
//! synthetic index built through the engine (one connection, as a one-shot command opens it).
//!
//! The vectors are clustered like real embeddings (2,000 Gaussian centres, each vector a centre
//! plus noise of σ 0.6 per dimension, L2-normalised), so that results are comparable with the
//! figures in `docs/BENCHMARKS.md`. Chunk texts are Zipf-distributed words from a fixed
//! vocabulary, so full-text queries have realistic posting-list lengths.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::{Map, Value};

use outpost_core::{
    Collection, Embedder, Engine, Filter, IndexMemory, NewChunk, NewDocument, SearchMode,
    SearchRequest,
};
use outpost_models::BertEmbedder;

use super::report::percentile;
use super::synth::{synthetic_model, Synth, CENTRES, NOISE};
use crate::cli::BenchSearchArgs;
use crate::output::outln;

const WORDS_PER_CHUNK: usize = 40;
const CHUNKS_PER_DOC: usize = 100;
const BUCKETS: usize = 10;
/// The model id of the synthetic vectors (that of the collection they are stored in).
const SYNTHETIC: &str = "synthetic";

/// Latency of one mode.
#[derive(Debug, Serialize)]
struct ModeResult {
    mode: String,
    p50_ms: f64,
    p99_ms: f64,
    mean_ms: f64,
    recall_at_k: Option<f64>,
    mean_results: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    /// `synthetic`, or the BEIR folder the vectors were embedded from.
    data: String,
    n: usize,
    dims: usize,
    k: usize,
    queries: usize,
    seed: u64,
    build_seconds: f64,
    index_seconds: f64,
    cold_start_seconds: f64,
    /// Process memory of the loaded index (graph, and rows changed since its save).
    index_bytes: usize,
    /// The index's saved f32 rows, memory-mapped (page cache).
    index_mapped_bytes: usize,
    /// Building and saving the text index (BM25 postings).
    text_index_seconds: f64,
    /// Loading the saved text index after the restart.
    text_cold_start_seconds: f64,
    /// Process memory of the text index.
    text_index_bytes: usize,
    results: Vec<ModeResult>,
}

/// What the rows search: the engine over the index, its vectors, the queries, and how to find a
/// hit's row.
struct BenchData {
    engine: Engine,
    /// Keeps a temporary database alive.
    _tmp: Option<tempfile::TempDir>,
    /// The searched collection, for the sqlite-vec peer.
    collection: Collection,
    model_id: String,
    dims: usize,
    vectors: Vec<Vec<f32>>,
    /// The document number of each row, for the filtered rows (synthetic data only).
    doc_of: Option<Vec<usize>>,
    queries: Vec<(String, Vec<f32>)>,
    row_of: Rows,
    build_seconds: f64,
    indexing: Indexing,
}

/// What building the indexes, saving them and loading them again took.
struct Indexing {
    index_seconds: f64,
    memory: IndexMemory,
    cold_start_seconds: f64,
    /// Seconds to build and to load the text index.
    text_index_seconds: (f64, f64),
}

/// Builds the text index and then the vector indexes (timed apart: the text index is current
/// when the vector indexes are refreshed), saves them, and reopens the database as a restart
/// would.
fn index_and_reopen(engine: Engine) -> Result<(Engine, Indexing)> {
    let started = Instant::now();
    engine.refresh_text_index()?;
    let text_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    engine.refresh_indexes()?;
    let index_seconds = started.elapsed().as_secs_f64();
    let memory = engine.index_memory()?;
    reopen(engine, Some((text_seconds, index_seconds, memory)))
}

/// Drops `engine` (saving its indexes) and opens its database again as a restart would, over
/// one connection, timing how long the indexes take to come back from their files. `built`: the
/// seconds the text and vector indexes took to build and the memory they held then; `None` for
/// a reused database, whose indexes were not built in this run (its memory is measured once
/// they are loaded).
fn reopen(engine: Engine, built: Option<(f64, f64, IndexMemory)>) -> Result<(Engine, Indexing)> {
    engine.unload_indexes()?;
    let path = engine.path().to_path_buf();
    let model = engine.embedder_arc().clone();
    drop(engine);
    let started = Instant::now();
    let engine = Engine::open_single(&path, model)?;
    engine.refresh_text_index()?;
    let text_reopen = started.elapsed().as_secs_f64();
    let started = Instant::now();
    engine.refresh_indexes()?;
    let cold_start_seconds = started.elapsed().as_secs_f64();
    let (text_seconds, index_seconds, memory) = match built {
        Some(built) => built,
        None => (0.0, 0.0, engine.index_memory()?),
    };
    let indexing = Indexing {
        index_seconds,
        memory,
        cold_start_seconds,
        text_index_seconds: (text_seconds, text_reopen),
    };
    Ok((engine, indexing))
}

/// Whether two vectors are the same bit for bit.
fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Fails unless the reused database holds exactly the chunks this run generated (count, first
/// and last vector), so that recall is measured against the right truth.
fn check_reused(engine: &Engine, coll: &Collection, vectors: &[Vec<f32>]) -> Result<()> {
    let (count, first, last) = engine.vector_fingerprint(coll)?;
    let same = count == vectors.len()
        && coll.dims == vectors.first().map_or(0, Vec::len)
        && [(vectors.first(), first), (vectors.last(), last)]
            .iter()
            .all(|(made, stored)| matches!((made, stored), (Some(a), Some(b)) if same_bits(a, b)));
    anyhow::ensure!(
        same,
        "--reuse: the database holds {count} vectors that are not this run's (--n {}, --seed); run without --reuse to rebuild it",
        vectors.len()
    );
    Ok(())
}

/// Chunk id → row.
type Rows = std::collections::HashMap<String, usize>;

/// Chunk id → row, rows in seq order, and the vectors in that order.
fn rows_of(engine: &Engine, coll: &Collection) -> Result<(Rows, Vec<Vec<f32>>)> {
    let stored = engine.stored_vectors(coll)?;
    let (mut ids, mut vectors) = (Rows::with_capacity(stored.len()), Vec::new());
    for (id, v) in stored {
        ids.insert(id, vectors.len());
        vectors.push(v);
    }
    Ok((ids, vectors))
}

/// The BEIR corpus in `dir`, chunked and embedded with the model (into `--index` when given,
/// reused if it holds the corpus already), and its first `--queries` queries embedded.
fn beir_data(
    dir: &Path,
    args: &BenchSearchArgs,
    load_model: &dyn Fn() -> Result<Arc<BertEmbedder>>,
) -> Result<BenchData> {
    let model: Arc<dyn Embedder> = load_model()?;
    let corpus = crate::beir::index_corpus(
        dir,
        args.index.as_deref(),
        outpost_core::ChunkParams::default(),
        model.clone(),
        args.json,
    )?;
    let build_seconds = corpus.seconds;
    let coll = corpus
        .engine
        .collections()?
        .into_iter()
        .find(|c| c.name == "beir")
        .context("the indexed corpus has no 'beir' collection")?;
    // The bench times the indexes itself, on an engine of one connection of its own.
    let path = corpus.engine.path().to_path_buf();
    drop(corpus.engine);
    let (engine, indexing) = index_and_reopen(Engine::open_single(&path, model.clone())?)?;
    let mut queries: Vec<(String, String)> = crate::beir::read_queries(&dir.join("queries.jsonl"))?
        .into_iter()
        .collect();
    queries.sort();
    queries.truncate(args.queries);
    let texts: Vec<&str> = queries.iter().map(|(_, t)| t.as_str()).collect();
    let embedded = model.embed(&texts)?;
    let (row_of, vectors) = rows_of(&engine, &coll)?;
    Ok(BenchData {
        _tmp: None,
        model_id: coll.model_id.clone(),
        dims: coll.dims,
        collection: coll,
        vectors,
        doc_of: None,
        queries: texts.iter().map(|t| t.to_string()).zip(embedded).collect(),
        row_of,
        build_seconds,
        indexing,
        engine,
    })
}

/// Runs the bench.
pub fn run(
    args: &BenchSearchArgs,
    load_model: &dyn Fn() -> Result<Arc<BertEmbedder>>,
) -> Result<i32> {
    anyhow::ensure!(
        args.n > 0 && args.dims > 0 && args.queries > 0,
        "--n, --dims and --queries must be positive"
    );
    let data = match &args.beir {
        Some(dir) => beir_data(dir, args, load_model)?,
        None => synthetic_data(args)?,
    };
    measure(args, data)
}

/// `--n` synthetic vectors (see the module's doc) stored through the engine, in documents of
/// [`CHUNKS_PER_DOC`] chunks, with `bucket` (10 %) and `pct` (1 %) metadata for the filters.
fn synthetic_data(args: &BenchSearchArgs) -> Result<BenchData> {
    let tmp = tempfile::tempdir()?;
    let path = args
        .index
        .clone()
        .unwrap_or_else(|| tmp.path().join("bench.db"));
    let reuse = args.reuse && path.exists();
    // A fresh database each run, unless reused: the file, its WAL and its index folder.
    for suffix in ["", "-wal", "-shm", ".ann"].iter().filter(|_| !reuse) {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let p = PathBuf::from(p);
        let removed = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        if let Err(e) = removed {
            anyhow::ensure!(
                e.kind() == std::io::ErrorKind::NotFound,
                "removing old index {}: {e}",
                p.display()
            );
        }
    }
    let engine = Engine::open_single(&path, synthetic_model(SYNTHETIC, args.dims))?;
    let coll = engine.ensure_collection("bench")?;
    let mut synth = Synth::new(args.seed, args.dims)?;
    let mut vectors: Vec<Vec<f32>> = Vec::with_capacity(args.n);
    let mut doc_of: Vec<usize> = Vec::with_capacity(args.n);

    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) && !args.json {
        ProgressBar::new(args.n as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("storing [{bar:30}] {pos}/{len} vectors {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let mut i = 0;
    while i < args.n {
        let doc_no = i / CHUNKS_PER_DOC;
        let count = CHUNKS_PER_DOC.min(args.n - i);
        let mut chunks = Vec::with_capacity(count);
        for j in 0..count {
            let v = synth.vector();
            let text = format!("n{} {}", i + j, synth.text(WORDS_PER_CHUNK));
            chunks.push(NewChunk {
                token_count: WORDS_PER_CHUNK + 1,
                byte_start: 0,
                byte_end: text.len(),
                text,
                metadata: Map::new(),
                embedding: v.clone(),
            });
            vectors.push(v);
            doc_of.push(doc_no);
        }
        let mut metadata = Map::new();
        metadata.insert("bucket".into(), Value::from(doc_no % BUCKETS));
        metadata.insert("pct".into(), Value::from(doc_no % 100));
        let doc = NewDocument {
            source: format!("synthetic://{doc_no}"),
            title: format!("doc {doc_no}"),
            content_hash: format!("{doc_no}"),
            metadata,
        };
        if !reuse {
            engine.put_embedded(&coll, &doc, &chunks)?;
        }
        i += count;
        bar.inc(count as u64);
    }
    bar.finish_and_clear();
    let (build_seconds, (engine, indexing)) = if reuse {
        check_reused(&engine, &coll, &vectors)?;
        (0.0, reopen(engine, None)?)
    } else {
        let build_seconds = started.elapsed().as_secs_f64();
        (build_seconds, index_and_reopen(engine)?)
    };
    let queries: Vec<(String, Vec<f32>)> = (0..args.queries)
        .map(|_| (synth.text(3), synth.vector()))
        .collect();
    let row_of = engine
        .chunk_ids(&coll)?
        .into_iter()
        .enumerate()
        .map(|(i, id)| (id, i))
        .collect();
    Ok(BenchData {
        _tmp: Some(tmp),
        collection: coll,
        model_id: SYNTHETIC.into(),
        dims: args.dims,
        vectors,
        doc_of: Some(doc_of),
        queries,
        row_of,
        build_seconds,
        indexing,
        engine,
    })
}

/// Runs every mode over `data` and prints the report.
fn measure(args: &BenchSearchArgs, data: BenchData) -> Result<i32> {
    let BenchData {
        engine,
        collection,
        model_id,
        vectors,
        doc_of,
        queries,
        row_of,
        ..
    } = &data;
    let truth: Vec<Vec<usize>> = queries
        .iter()
        .map(|(_, q)| exact_top_k(vectors, q, args.k, |_| true))
        .collect();
    if let Some(dir) = &args.export {
        export(dir, args, data.dims, vectors, queries, &truth)?;
    }
    let bucket_filter: Vec<Filter> = vec!["bucket=3".parse()?];
    let pct_filter: Vec<Filter> = vec!["pct=7".parse()?];
    // The breadth sweep first: it also warms the index's pages for the default row.
    let mut runs: Vec<(String, SearchMode, &[Filter], Option<usize>)> = args
        .expansion
        .iter()
        .map(|&e| {
            (
                format!("vector ef={e}"),
                SearchMode::Vector,
                &[][..],
                Some(e),
            )
        })
        .collect();
    runs.extend([
        ("vector".to_string(), SearchMode::Vector, &[][..], None),
        (
            "vector+filter(10%)".to_string(),
            SearchMode::Vector,
            &bucket_filter[..],
            None,
        ),
        (
            "vector+filter(1%)".to_string(),
            SearchMode::Vector,
            &pct_filter[..],
            None,
        ),
        ("text".to_string(), SearchMode::Text, &[][..], None),
        ("hybrid".to_string(), SearchMode::Hybrid, &[][..], None),
    ]);
    if args.vector_only {
        runs.retain(|(_, mode, _, _)| *mode == SearchMode::Vector);
    }
    if doc_of.is_none() {
        runs.retain(|(_, _, filters, _)| filters.is_empty());
    }
    // Each row's requests, and for vector rows the exact answers to score recall against.
    let mut rows = Vec::with_capacity(runs.len());
    for (name, mode, filters, expansion) in runs {
        let share = if name.ends_with("(10%)") {
            Some((BUCKETS, 3))
        } else if name.ends_with("(1%)") {
            Some((100, 7))
        } else {
            None
        };
        let keep =
            |i: usize| share.is_none_or(|(m, r)| doc_of.as_ref().is_some_and(|d| d[i] % m == r));
        let exact: Option<Vec<Vec<usize>>> = (mode == SearchMode::Vector).then(|| {
            if share.is_none() {
                truth.clone()
            } else {
                queries
                    .iter()
                    .map(|(_, v)| exact_top_k(vectors, v, args.k, keep))
                    .collect()
            }
        });
        let requests: Vec<SearchRequest<'_>> = queries
            .iter()
            .map(|(text, v)| SearchRequest {
                mode,
                filters,
                vector: Some((model_id.as_str(), v.as_slice())),
                expansion,
                ..SearchRequest::new(text, args.k)
            })
            .collect();
        rows.push((name, requests, exact));
    }
    // One untimed pass over every query of every row first, so that no row is timed over pages
    // (of the index, the rows file or SQLite) that an earlier row happened to warm. Then the rows
    // take turns in blocks of TURN queries, so that the machine's slow phases (seconds long
    // here) fall on all of them alike, while each row still runs mostly on its own working set
    // as it would alone. At each turn every row has different queries, so that none finds the
    // graph nodes of its queries already in the CPU caches from the row before.
    const TURN: usize = 20;
    let stride = (queries.len() / rows.len().max(1)).max(1);
    let query_at = |i: usize, ri: usize| (i + ri * stride) % queries.len();
    for i in 0..queries.len() {
        for (ri, (_, requests, _)) in rows.iter().enumerate() {
            engine.search_request(&requests[query_at(i, ri)])?;
        }
    }
    let mut times = vec![Vec::with_capacity(queries.len()); rows.len()];
    let mut found = vec![(0usize, 0usize, 0usize); rows.len()];
    let n = queries.len();
    let schedule = (0..n).step_by(TURN).flat_map(|start| {
        (0..rows.len()).flat_map(move |ri| (start..(start + TURN).min(n)).map(move |i| (ri, i)))
    });
    for (ri, i) in schedule {
        let (_, requests, exact) = &rows[ri];
        let qi = query_at(i, ri);
        let t = Instant::now();
        let hits = engine.search_request(&requests[qi])?;
        times[ri].push(t.elapsed().as_secs_f64() * 1000.0);
        found[ri].0 += hits.len();
        if let Some(exact) = exact {
            let exact = &exact[qi];
            found[ri].1 += hits
                .iter()
                .filter_map(|h| row_of.get(&h.chunk_id))
                .filter(|r| exact.contains(r))
                .count();
            found[ri].2 += exact.len();
        }
    }
    let mut results = Vec::new();
    for ((name, _, exact), (mut times, (returned, hit, relevant))) in
        rows.into_iter().zip(times.into_iter().zip(found))
    {
        times.sort_by(f64::total_cmp);
        results.push(ModeResult {
            mode: name,
            p50_ms: percentile(&times, 0.5),
            p99_ms: percentile(&times, 0.99),
            mean_ms: times.iter().sum::<f64>() / times.len() as f64,
            recall_at_k: exact.map(|_| hit as f64 / relevant.max(1) as f64),
            mean_results: returned as f64 / queries.len() as f64,
        });
    }
    // The peer in the same run: a bare sqlite-vec KNN on the same table (exact), without
    // Outpost's filtering, fusion or loading of result rows.
    if !args.vector_only {
        let vectors: Vec<Vec<f32>> = queries.iter().map(|(_, v)| v.clone()).collect();
        let timed = engine.time_exact_knn(collection, &vectors, args.k)?;
        let mut times: Vec<f64> = timed
            .iter()
            .map(|(t, _)| t.as_secs_f64() * 1000.0)
            .collect();
        let returned: usize = timed.iter().map(|(_, n)| n).sum();
        times.sort_by(f64::total_cmp);
        results.push(ModeResult {
            mode: "peer: sqlite-vec knn".to_string(),
            p50_ms: percentile(&times, 0.5),
            p99_ms: percentile(&times, 0.99),
            mean_ms: times.iter().sum::<f64>() / times.len() as f64,
            recall_at_k: None,
            mean_results: returned as f64 / queries.len() as f64,
        });
    }
    let report = Report {
        data: args.beir.as_ref().map_or_else(
            || "synthetic".to_string(),
            |d| format!("{} (embedded with {model_id})", d.display()),
        ),
        n: vectors.len(),
        dims: data.dims,
        k: args.k,
        queries: queries.len(),
        seed: args.seed,
        build_seconds: data.build_seconds,
        index_seconds: data.indexing.index_seconds,
        cold_start_seconds: data.indexing.cold_start_seconds,
        index_bytes: data.indexing.memory.resident,
        index_mapped_bytes: data.indexing.memory.mapped,
        text_index_seconds: data.indexing.text_index_seconds.0,
        text_cold_start_seconds: data.indexing.text_index_seconds.1,
        text_index_bytes: data.indexing.memory.text,
        results,
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        outln!(
            "{}: {} vectors x {} dims, k={}, {} queries; stored in {:.1}s, vector index built and saved in {:.1}s ({:.0} MiB resident, {:.0} MiB of rows mapped), reopened in {:.2}s; text index built in {:.1}s ({:.0} MiB), reopened in {:.2}s",
            report.data,
            report.n,
            report.dims,
            report.k,
            report.queries,
            report.build_seconds,
            report.index_seconds,
            report.index_bytes as f64 / (1024.0 * 1024.0),
            report.index_mapped_bytes as f64 / (1024.0 * 1024.0),
            report.cold_start_seconds,
            report.text_index_seconds,
            report.text_index_bytes as f64 / (1024.0 * 1024.0),
            report.text_cold_start_seconds
        )?;
        outln!(
            "{:<22} {:>9} {:>9} {:>9} {:>9}",
            "mode",
            "p50 ms",
            "p99 ms",
            "recall",
            "results"
        )?;
        for r in &report.results {
            let recall = r.recall_at_k.map_or("-".to_string(), |x| format!("{x:.3}"));
            outln!(
                "{:<22} {:>9.3} {:>9.3} {:>9} {:>9.1}",
                r.mode,
                r.p50_ms,
                r.p99_ms,
                recall,
                r.mean_results
            )?;
        }
    }
    Ok(0)
}

/// Writes the bench data for `bench/peers.py`: `vectors.f32` (n × dims), `queries.f32`
/// (queries × dims), `truth.u32` (queries × k exact neighbours, as row numbers) and `meta.json`.
fn export(
    dir: &Path,
    args: &BenchSearchArgs,
    dims: usize,
    vectors: &[Vec<f32>],
    queries: &[(String, Vec<f32>)],
    truth: &[Vec<usize>],
) -> Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let write = |name: &str, bytes: &mut dyn Iterator<Item = [u8; 4]>| -> Result<()> {
        let path = dir.join(name);
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?,
        );
        for b in bytes {
            f.write_all(&b)?;
        }
        f.flush()?;
        Ok(())
    };
    write(
        "vectors.f32",
        &mut vectors.iter().flatten().map(|x| x.to_le_bytes()),
    )?;
    write(
        "queries.f32",
        &mut queries.iter().flat_map(|(_, q)| q).map(|x| x.to_le_bytes()),
    )?;
    write(
        "truth.u32",
        &mut truth.iter().flatten().map(|&i| (i as u32).to_le_bytes()),
    )?;
    let meta = serde_json::json!({
        "n": vectors.len(), "dims": dims, "queries": queries.len(), "k": args.k,
        "seed": args.seed, "centres": CENTRES, "noise": NOISE,
    });
    std::fs::write(dir.join("meta.json"), serde_json::to_string_pretty(&meta)?)?;
    Ok(())
}

/// Indices of the `k` vectors (among those `keep` accepts) with the highest cosine similarity
/// to `q` (all are unit length), best first.
fn exact_top_k(
    vectors: &[Vec<f32>],
    q: &[f32],
    k: usize,
    keep: impl Fn(usize) -> bool,
) -> Vec<usize> {
    let mut scored: Vec<(f32, usize)> = vectors
        .iter()
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(i, v)| (v.iter().zip(q).map(|(a, b)| a * b).sum::<f32>(), i))
        .collect();
    let k = k.min(scored.len());
    scored.select_nth_unstable_by(k.saturating_sub(1), |a, b| b.0.total_cmp(&a.0));
    scored.truncate(k);
    scored.into_iter().map(|(_, i)| i).collect()
}
