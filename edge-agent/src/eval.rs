//! `outpost eval beir`: retrieval quality on a BEIR-format dataset.
//!
//! The corpus is ingested through the normal ingest path (chunked, embedded, indexed) into a
//! database of its own — a temporary file, or `--index PATH`, which a later run reuses: content
//! hashes make re-ingesting an unchanged corpus nearly free, so parameter sweeps embed it once.
//! Each document is `title + "\n\n" + text`, as BEIR's own evaluations join them. Every query of
//! the split is searched through [`Store::search`] exactly as `outpost search` does; chunks are
//! folded into documents by their best-ranked chunk, and nDCG@10, recall@100 and MRR@10 are
//! averaged over the queries that have judgements.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::Value;

use outpost_core::eval::{dedup_keep_first, mrr_at, ndcg_at, recall_at, Qrels};
use outpost_core::{
    ChunkParams, Embedder, IngestOptions, RrfParams, SearchMode, SearchRequest, Store,
};

use crate::cli::EvalBeirArgs;

/// Documents ranked per query (recall@100 needs 100).
const DOCS_PER_QUERY: usize = 100;

/// Averages over the judged queries of one run.
#[derive(Debug, Serialize)]
struct Report {
    #[serde(rename = "ndcg@10")]
    ndcg_10: f64,
    #[serde(rename = "recall@100")]
    recall_100: f64,
    #[serde(rename = "mrr@10")]
    mrr_10: f64,
    dataset: String,
    split: String,
    mode: String,
    queries: usize,
    documents: usize,
    chunks: usize,
    chunk_tokens: usize,
    chunk_overlap: usize,
    rrf: RrfParams,
    candidates: usize,
    index_seconds: f64,
    search_seconds: f64,
}

/// Runs the evaluation and prints the report.
pub fn beir(args: &EvalBeirArgs, model: Arc<dyn Embedder>) -> Result<i32> {
    let mode: SearchMode = args.mode.parse()?;
    let dir = &args.dir;
    let queries = read_queries(&dir.join("queries.jsonl"))?;
    let qrels = read_qrels(&dir.join("qrels").join(format!("{}.tsv", args.split)))?;
    let judged: Vec<(&String, &Qrels)> = qrels
        .iter()
        .filter(|(_, q)| q.values().any(|&g| g > 0))
        .collect();
    if judged.is_empty() {
        bail!(
            "qrels/{}.tsv in {} judges no document relevant",
            args.split,
            dir.display()
        );
    }
    for (qid, _) in &judged {
        if !queries.contains_key(*qid) {
            bail!(
                "qrels/{}.tsv names query '{qid}', which queries.jsonl in {} does not have",
                args.split,
                dir.display()
            );
        }
    }

    let corpus = index_corpus(
        dir,
        args.index.as_deref(),
        ChunkParams {
            max_tokens: args.chunk_tokens,
            overlap: args.chunk_overlap,
        },
        model.as_ref(),
        args.json,
    )?;
    let (store, documents, chunks, index_seconds) = (
        &corpus.store,
        corpus.documents,
        corpus.chunks,
        corpus.seconds,
    );

    // Queries are embedded in one batch: the model sorts and batches them by length.
    let texts: Vec<&str> = judged
        .iter()
        .map(|(qid, _)| queries[*qid].as_str())
        .collect();
    let vectors = if mode == SearchMode::Text {
        vec![Vec::new(); texts.len()]
    } else {
        model.embed(&texts)?
    };
    let rrf = RrfParams {
        k: args.rrf_k,
        vector_weight: args.vector_weight,
        text_weight: args.text_weight,
    };
    let chunk_k = args
        .candidates
        .clamp(DOCS_PER_QUERY, outpost_core::search::MAX_K);
    let (mut ndcg, mut recall, mut mrr) = (0.0, 0.0, 0.0);
    let started = Instant::now();
    let bar = progress_bar(judged.len() as u64, args.json, "searching");
    for (((_, q), text), vector) in judged.iter().zip(&texts).zip(&vectors) {
        let req = SearchRequest {
            vector: (mode != SearchMode::Text).then(|| (model.model_id(), vector.as_slice())),
            mode,
            rrf,
            candidates: chunk_k,
            ..SearchRequest::new(text, chunk_k)
        };
        let hits = store.search(&req)?;
        let ranked = dedup_keep_first(hits.into_iter().map(|h| record_id(&h.source)));
        let ranked = &ranked[..ranked.len().min(DOCS_PER_QUERY)];
        ndcg += ndcg_at(ranked, q, 10);
        recall += recall_at(ranked, q, 100);
        mrr += mrr_at(ranked, q, 10);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let n = judged.len() as f64;
    let out = Report {
        ndcg_10: ndcg / n,
        recall_100: recall / n,
        mrr_10: mrr / n,
        dataset: dir.display().to_string(),
        split: args.split.clone(),
        mode: mode.to_string(),
        queries: judged.len(),
        documents,
        chunks,
        chunk_tokens: args.chunk_tokens,
        chunk_overlap: args.chunk_overlap,
        rrf,
        candidates: chunk_k,
        index_seconds,
        search_seconds: started.elapsed().as_secs_f64(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!(
            "{} ({} split, {} queries, {} documents in {} chunks), mode {}",
            out.dataset, out.split, out.queries, out.documents, out.chunks, out.mode
        );
        println!("nDCG@10     {:.4}", out.ndcg_10);
        println!("recall@100  {:.4}", out.recall_100);
        println!("MRR@10      {:.4}", out.mrr_10);
        println!(
            "indexed in {:.1} s, searched in {:.1} s",
            out.index_seconds, out.search_seconds
        );
    }
    Ok(0)
}

/// A BEIR corpus indexed into an Outpost database (collection `beir`).
pub(crate) struct IndexedCorpus {
    pub store: Store,
    pub documents: usize,
    pub chunks: usize,
    /// Seconds the indexing took (little when `index` already held the corpus).
    pub seconds: f64,
    /// Holds the temporary database when no `index` was given.
    _work: tempfile::TempDir,
}

/// Indexes `dir`'s corpus.jsonl into `index` (reused if it holds it already) or a temporary
/// database.
pub(crate) fn index_corpus(
    dir: &Path,
    index: Option<&Path>,
    chunking: ChunkParams,
    model: &dyn Embedder,
    json: bool,
) -> Result<IndexedCorpus> {
    let corpus_path = dir.join("corpus.jsonl");
    // The corpus, rewritten as Outpost JSONL records (id, title, text). With --index it sits
    // beside the database under a fixed name: records are keyed by file and id, so a reused
    // index recognises them as unchanged.
    let work = tempfile::tempdir().context("creating a temporary directory")?;
    let (db, records) = match index {
        Some(db) => {
            let mut records = db.as_os_str().to_os_string();
            records.push(".corpus.jsonl");
            (db.to_path_buf(), PathBuf::from(records))
        }
        None => (
            work.path().join("eval.db"),
            work.path().join("corpus.jsonl"),
        ),
    };
    let documents = rewrite_corpus(&corpus_path, &records)?;
    let mut store = Store::open(&db)?;
    let opts = IngestOptions {
        collection: "beir".into(),
        chunking,
        ..IngestOptions::default()
    };
    let started = Instant::now();
    let bar = progress_bar(0, json, "indexing (chunks)");
    let report = outpost_core::ingest::ingest_paths(
        &mut store,
        model,
        std::slice::from_ref(&records),
        &opts,
        &mut |p| {
            if let outpost_core::Progress::Embedded(done, total) = p {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            }
        },
    )?;
    bar.finish_and_clear();
    if report.failed > 0 {
        let first = &report.failures[0];
        bail!(
            "{} corpus records could not be indexed; first: {}: {}",
            report.failed,
            first.path,
            first.reason
        );
    }
    let index_seconds = started.elapsed().as_secs_f64();
    let chunks = store
        .stats()?
        .collections
        .iter()
        .filter(|c| c.collection.name == "beir")
        .map(|c| c.chunks)
        .sum();
    Ok(IndexedCorpus {
        store,
        documents,
        chunks,
        seconds: index_seconds,
        _work: work,
    })
}

fn progress_bar(len: u64, json: bool, what: &str) -> ProgressBar {
    if json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} {eta}") {
        bar.set_style(style);
    }
    bar.set_message(what.to_string());
    bar
}

/// The BEIR id of a stored record: its source is `<file>#<id>`.
fn record_id(source: &str) -> String {
    source
        .rsplit_once('#')
        .map_or(source, |(_, id)| id)
        .to_string()
}

fn open_lines(path: &Path) -> Result<impl Iterator<Item = (usize, std::io::Result<String>)>> {
    let file = std::fs::File::open(path).with_context(|| {
        format!(
            "cannot read {} (a BEIR folder has corpus.jsonl, queries.jsonl and qrels/<split>.tsv)",
            path.display()
        )
    })?;
    Ok(BufReader::new(file)
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l)))
}

/// The non-blank lines of a JSON-lines file, parsed, with their line numbers.
fn json_lines(path: &Path) -> Result<impl Iterator<Item = Result<(usize, Value)>> + '_> {
    Ok(open_lines(path)?.filter_map(move |(line, text)| {
        let text = match text.with_context(|| format!("reading {}", path.display())) {
            Ok(t) if t.trim().is_empty() => return None,
            Ok(t) => t,
            Err(e) => return Some(Err(e)),
        };
        Some(
            serde_json::from_str(&text)
                .map(|v| (line, v))
                .with_context(|| format!("{}:{line}: invalid JSON", path.display())),
        )
    }))
}

fn field<'a>(obj: &'a Value, key: &str, path: &Path, line: usize) -> Result<&'a str> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) if key == "title" => Ok(""),
        _ => bail!(
            "{}:{line}: '{key}' is missing or not a string",
            path.display()
        ),
    }
}

/// Writes the corpus as Outpost JSONL; returns the number of documents.
fn rewrite_corpus(from: &Path, to: &PathBuf) -> Result<usize> {
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(to).with_context(|| format!("creating {}", to.display()))?,
    );
    let mut n = 0;
    for record in json_lines(from)? {
        let (line, v) = record?;
        let id = field(&v, "_id", from, line)?;
        let title = field(&v, "title", from, line)?;
        let body = field(&v, "text", from, line)?;
        let joined = match (title.trim().is_empty(), body.trim().is_empty()) {
            (true, _) => body.to_string(),
            (false, true) => title.to_string(),
            (false, false) => format!("{title}\n\n{body}"),
        };
        if joined.trim().is_empty() {
            continue;
        }
        let record = serde_json::json!({"id": id, "title": title, "text": joined});
        writeln!(out, "{record}")?;
        n += 1;
    }
    out.flush()?;
    if n == 0 {
        bail!("{} holds no documents", from.display());
    }
    Ok(n)
}

pub(crate) fn read_queries(path: &Path) -> Result<HashMap<String, String>> {
    let mut queries = HashMap::new();
    for record in json_lines(path)? {
        let (line, v) = record?;
        queries.insert(
            field(&v, "_id", path, line)?.to_string(),
            field(&v, "text", path, line)?.to_string(),
        );
    }
    Ok(queries)
}

/// `query-id \t corpus-id \t score`, with an optional header line.
fn read_qrels(path: &Path) -> Result<BTreeMap<String, Qrels>> {
    let mut qrels: BTreeMap<String, Qrels> = BTreeMap::new();
    for (line, text) in open_lines(path)? {
        let text = text.with_context(|| format!("reading {}", path.display()))?;
        let cols: Vec<&str> = text.split('\t').map(str::trim).collect();
        if text.trim().is_empty() || (line == 1 && cols.first() == Some(&"query-id")) {
            continue;
        }
        let [q, d, g] = cols[..] else {
            bail!(
                "{}:{line}: expected 3 tab-separated columns (query-id, corpus-id, score)",
                path.display()
            );
        };
        let g: i32 = g
            .parse()
            .with_context(|| format!("{}:{line}: score '{g}' is not an integer", path.display()))?;
        qrels
            .entry(q.to_string())
            .or_default()
            .insert(d.to_string(), g);
    }
    Ok(qrels)
}
