//! `outpost eval beir`: retrieval quality on a BEIR-format dataset; `outpost eval grounding`:
//! whether `ask`'s citations name what the model was given, and how often what they name is
//! relevant.
//!
//! The corpus is indexed as [`crate::beir::index_corpus`] describes. Every query of the split is
//! searched through [`Engine::search_with_vector`](outpost_core::Engine::search_with_vector) as `outpost search` searches; chunks are folded into
//! documents by their best-ranked chunk, and nDCG@10, recall@100 and MRR@10 are averaged over
//! the queries that have judgements.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};
use serde::Serialize;

use outpost_core::search::eval::{dedup_keep_first, mrr_at, ndcg_at, recall_at, Qrels};
use outpost_core::{ChunkParams, Embedder, RrfParams, SearchMode, SearchOptions};

use crate::beir::{index_corpus, progress_bar, read_qrels, read_queries};
use crate::cli::{EvalBeirArgs, EvalGroundingArgs};
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
    let judged = judged(&qrels, &queries, &args.split, dir)?;

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

/// The queries of `qrels` that judge at least one document relevant, in query-id order; each must
/// be in `queries`.
fn judged<'a>(
    qrels: &'a BTreeMap<String, Qrels>,
    queries: &HashMap<String, String>,
    split: &str,
    dir: &Path,
) -> Result<Vec<(&'a String, &'a Qrels)>> {
    let judged: Vec<(&String, &Qrels)> = qrels
        .iter()
        .filter(|(_, q)| q.values().any(|&g| g > 0))
        .collect();
    if judged.is_empty() {
        bail!(
            "qrels/{split}.tsv in {} judges no document relevant",
            dir.display()
        );
    }
    for (qid, _) in &judged {
        if !queries.contains_key(*qid) {
            bail!(
                "qrels/{split}.tsv names query '{qid}', which queries.jsonl in {} does not have",
                dir.display()
            );
        }
    }
    Ok(judged)
}

/// The BEIR id of a stored record: its source is `<file>#<id>`.
fn record_id(source: &str) -> String {
    source
        .rsplit_once('#')
        .map_or(source, |(_, id)| id)
        .to_string()
}

/// What `eval grounding` measured.
#[derive(Debug, Serialize)]
struct Grounding {
    dataset: String,
    split: String,
    model: String,
    queries: usize,
    /// Answers given from sources (the rest said nothing relevant was found).
    answered: usize,
    /// Answers whose model wrote at least one valid `[n]`.
    model_cited: usize,
    /// Answers citing by similarity (the model cited nothing valid).
    similarity_cited: usize,
    /// Citations the model wrote that named no source (left out of the answer's citations).
    invalid_citations: usize,
    /// Citations naming a passage that was not in the prompt: must be 0.
    ungrounded: usize,
    /// Of the answers with a citation, those whose first citation is of a relevant document.
    cited_relevant: usize,
    /// Answers with a citation.
    cited: usize,
    /// Share of cited answers whose first citation is relevant.
    cited_relevant_rate: f64,
    /// Share of answered questions with at least one relevant document among the sources (what
    /// retrieval gave the model to cite).
    relevant_in_context_rate: f64,
    /// Medians: milliseconds to the first token (retrieval included) and tokens/s.
    ttft_ms_p50: f64,
    tokens_per_s_p50: f64,
    seconds: f64,
}

/// Runs the grounding evaluation and prints the report.
pub fn grounding(
    args: &EvalGroundingArgs,
    model: Arc<dyn Embedder>,
    llm: &dyn outpost_core::Generator,
) -> Result<i32> {
    let dir = &args.dir;
    let queries = read_queries(&dir.join("queries.jsonl"))?;
    let qrels = read_qrels(&dir.join("qrels").join(format!("{}.tsv", args.split)))?;
    anyhow::ensure!(args.limit != Some(0), "--limit must be at least 1");
    // In query-id order (the qrels are a sorted map).
    let mut judged = judged(&qrels, &queries, &args.split, dir)?;
    if let Some(n) = args.limit {
        judged.truncate(n);
    }
    let corpus = index_corpus(
        dir,
        args.index.as_deref(),
        ChunkParams::default(),
        model,
        args.json,
    )?;
    let engine = &corpus.engine;
    let started = Instant::now();
    let bar = progress_bar(judged.len() as u64, args.json, "answering");
    let mut r = Grounding {
        dataset: dir.display().to_string(),
        split: args.split.clone(),
        model: llm.model_id().to_owned(),
        queries: judged.len(),
        answered: 0,
        model_cited: 0,
        similarity_cited: 0,
        invalid_citations: 0,
        ungrounded: 0,
        cited_relevant: 0,
        cited: 0,
        cited_relevant_rate: 0.0,
        relevant_in_context_rate: 0.0,
        ttft_ms_p50: 0.0,
        tokens_per_s_p50: 0.0,
        seconds: 0.0,
    };
    let (mut ttft, mut speed, mut relevant_in_context) = (Vec::new(), Vec::new(), 0);
    for (qid, q) in &judged {
        let question = &queries[*qid];
        let opts = outpost_core::AskOptions {
            context: outpost_core::ContextOptions {
                budget: args.budget,
                candidates: 8,
                ..Default::default()
            },
            generate: outpost_core::GenerateOptions {
                max_tokens: args.max_tokens,
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = engine.ask(question, &opts, llm, &mut |_| true)?;
        bar.inc(1);
        if !answer.found {
            continue;
        }
        r.answered += 1;
        let relevant =
            |c: &outpost_core::Citation| q.get(&record_id(&c.source)).is_some_and(|&g| g > 0);
        if answer.sources.iter().any(relevant) {
            relevant_in_context += 1;
        }
        r.invalid_citations += answer.invalid_citations.len();
        match answer.cited_by {
            "model" => r.model_cited += 1,
            "similarity" => r.similarity_cited += 1,
            _ => {}
        }
        for n in &answer.cited {
            // A citation is grounded when it names a source whose passage the prompt held.
            let grounded = answer.sources.iter().find(|c| c.n == *n).is_some_and(|c| {
                !c.chunk_ids.is_empty() && answer.user_message.contains(c.text.as_str())
            });
            if !grounded {
                r.ungrounded += 1;
            }
        }
        if let Some(first) = answer
            .cited
            .first()
            .and_then(|n| answer.sources.iter().find(|c| c.n == *n))
        {
            r.cited += 1;
            if relevant(first) {
                r.cited_relevant += 1;
            }
        }
        if let Some(g) = &answer.generation {
            ttft.push(answer.retrieval_ms + g.first_token_ms);
            let decode_s = (g.total_ms - g.first_token_ms) / 1e3;
            if g.completion_tokens > 1 && decode_s > 0.0 {
                speed.push((g.completion_tokens - 1) as f64 / decode_s);
            }
        }
    }
    bar.finish_and_clear();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            0.0
        } else {
            v[v.len() / 2]
        }
    };
    r.cited_relevant_rate = r.cited_relevant as f64 / r.cited.max(1) as f64;
    r.relevant_in_context_rate = f64::from(relevant_in_context) / r.answered.max(1) as f64;
    r.ttft_ms_p50 = median(&mut ttft);
    r.tokens_per_s_p50 = median(&mut speed);
    r.seconds = started.elapsed().as_secs_f64();
    if args.json {
        outln!("{}", serde_json::to_string(&r)?)?;
    } else {
        outln!(
            "{} ({} split, {} questions, model {}): {} answered; citations by the model in {}, by \
             similarity in {}; {} invalid, {} ungrounded; first citation relevant in {}/{} ({:.1} %); \
             a relevant document among the sources in {:.1} %; first token {:.0} ms, {:.1} tokens/s \
             (medians)",
            r.dataset, r.split, r.queries, r.model, r.answered, r.model_cited,
            r.similarity_cited, r.invalid_citations, r.ungrounded, r.cited_relevant, r.cited,
            100.0 * r.cited_relevant_rate, 100.0 * r.relevant_in_context_rate, r.ttft_ms_p50,
            r.tokens_per_s_p50
        )?;
    }
    Ok(0)
}
