//! `outpost eval beir`: retrieval quality on a BEIR-format dataset.
//!
//! The corpus is indexed as [`crate::beir::index_corpus`] describes. Every query of the split is
//! searched through [`Engine::search_with_vector`](outpost_core::Engine::search_with_vector) as `outpost search` searches; chunks are folded into
//! documents by their best-ranked chunk, and nDCG@10, recall@100 and MRR@10 are averaged over
//! the queries that have judgements.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};
use serde::Serialize;

use outpost_core::search::eval::{dedup_keep_first, mrr_at, ndcg_at, recall_at, Qrels};
use outpost_core::{ChunkParams, Embedder, RrfParams, SearchMode, SearchOptions};

use crate::beir::{index_corpus, progress_bar, read_qrels, read_queries};
use crate::cli::EvalBeirArgs;
use crate::output::outln;

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
        model.clone(),
        args.json,
    )?;
    let (engine, documents, chunks, index_seconds) = (
        &corpus.engine,
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
        let opts = SearchOptions {
            k: chunk_k,
            mode,
            rrf,
            ..SearchOptions::default()
        };
        let vector = (mode != SearchMode::Text).then_some(vector.as_slice());
        let hits = engine.search_with_vector(text, vector, &opts, chunk_k)?;
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
        outln!("{}", serde_json::to_string(&out)?)?;
    } else {
        outln!(
            "{} ({} split, {} queries, {} documents in {} chunks), mode {}",
            out.dataset,
            out.split,
            out.queries,
            out.documents,
            out.chunks,
            out.mode
        )?;
        outln!("nDCG@10     {:.4}", out.ndcg_10)?;
        outln!("recall@100  {:.4}", out.recall_100)?;
        outln!("MRR@10      {:.4}", out.mrr_10)?;
        outln!(
            "indexed in {:.1} s, searched in {:.1} s",
            out.index_seconds,
            out.search_seconds
        )?;
    }
    Ok(0)
}

/// The BEIR id of a stored record: its source is `<file>#<id>`.
fn record_id(source: &str) -> String {
    source
        .rsplit_once('#')
        .map_or(source, |(_, id)| id)
        .to_string()
}
