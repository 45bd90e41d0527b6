//! `outpost bench embed`: embedding throughput over a file of texts (sorted and batched as
//! sentence-transformers does), single-query latency and the process's memory.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result};
use indicatif::ProgressBar;
use serde::Serialize;

use outpost_models::BertEmbedder;

use super::report::{candle_threads, percentile};
use crate::cli::BenchEmbedArgs;
use crate::output::outln;

/// Resident and peak resident memory of this process, in bytes (Linux; `None` elsewhere).
fn memory() -> (Option<u64>, Option<u64>) {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return (None, None);
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Writes `rows` (all of one length) as a NumPy `.npy` file of little-endian f32, atomically.
fn write_npy(path: &std::path::Path, rows: &[Vec<f32>]) -> Result<()> {
    let dims = rows.first().map_or(0, Vec::len);
    anyhow::ensure!(
        rows.iter().all(|r| r.len() == dims),
        "vectors of different lengths"
    );
    // Format 1.0: magic, version, header length, then a Python dict literal padded with spaces
    // to a multiple of 64 bytes and ended by a newline.
    let dict = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {dims}), }}",
        rows.len()
    );
    let unpadded = 10 + dict.len() + 1;
    let header = format!(
        "{dict}{}\n",
        " ".repeat(unpadded.next_multiple_of(64) - unpadded)
    );
    let mut bytes = Vec::with_capacity(10 + header.len() + rows.len() * dims * 4);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&u16::try_from(header.len())?.to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in rows.iter().flatten() {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let tmp = path.with_extension("npy.tmp");
    std::fs::write(&tmp, &bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[derive(Debug, Serialize)]
struct EmbedReport {
    model: String,
    device: String,
    threads: usize,
    texts: usize,
    batch: usize,
    tokens: usize,
    truncated: usize,
    seconds: f64,
    texts_per_second: f64,
    tokens_per_second: f64,
    query_p50_ms: f64,
    query_p99_ms: f64,
    rss_after_load_bytes: Option<u64>,
    peak_rss_bytes: Option<u64>,
}

/// Runs the bench.
pub fn run(args: &BenchEmbedArgs, model: Arc<BertEmbedder>) -> Result<i32> {
    anyhow::ensure!(args.batch > 0, "--batch must be at least 1");
    let (rss_after_load, _) = memory();
    let content = std::fs::read_to_string(&args.input)
        .with_context(|| format!("reading {}", args.input.display()))?;
    let mut texts: Vec<&str> = content.lines().filter(|l| !l.trim().is_empty()).collect();
    if let Some(limit) = args.limit {
        texts.truncate(limit);
    }
    anyhow::ensure!(!texts.is_empty(), "{}: no texts", args.input.display());
    // Tokens the model reads: special tokens included, capped at its window.
    let window = model.max_seq_length();
    let tokenizer = outpost_core::Embedder::tokenizer(model.as_ref())?;
    let lengths: Vec<usize> = texts
        .iter()
        .map(|t| outpost_core::count_tokens(tokenizer, t) + 2)
        .collect();
    let tokens: usize = lengths.iter().map(|&n| n.min(window)).sum();
    let truncated = lengths.iter().filter(|&&n| n > window).count();
    // Like sentence-transformers' encode: longest first, then fixed-size batches.
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    let sorted: Vec<&str> = order.iter().map(|&i| texts[i]).collect();

    // One warm-up batch so that lazy initialisation (on a GPU: context, kernel loading, the
    // memory pool) is not timed.
    outpost_core::Embedder::embed(model.as_ref(), &sorted[..args.batch.min(sorted.len())])?;
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) && !args.json {
        ProgressBar::new(sorted.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    let mut vectors = Vec::with_capacity(sorted.len());
    let started = Instant::now();
    for batch in sorted.chunks(args.batch) {
        let v = outpost_core::Embedder::embed(model.as_ref(), batch)?;
        anyhow::ensure!(
            v.len() == batch.len(),
            "model returned {} vectors for {} texts",
            v.len(),
            batch.len()
        );
        vectors.extend(v);
        bar.inc(batch.len() as u64);
    }
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    if let Some(path) = &args.save_vectors {
        let mut in_order = vec![Vec::new(); vectors.len()];
        for (&i, v) in order.iter().zip(vectors) {
            in_order[i] = v;
        }
        write_npy(path, &in_order).with_context(|| format!("writing {}", path.display()))?;
    }

    let query = "how do I keep a sourdough starter alive";
    let mut times = Vec::with_capacity(args.queries);
    for _ in 0..args.queries.max(1) {
        let t = Instant::now();
        outpost_core::Embedder::embed(model.as_ref(), &[query])?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let (_, peak) = memory();
    let report = EmbedReport {
        model: outpost_core::Embedder::model_id(model.as_ref()).to_string(),
        device: format!("{:?}", model.device()),
        threads: candle_threads(),
        texts: texts.len(),
        batch: args.batch,
        tokens,
        truncated,
        seconds,
        texts_per_second: texts.len() as f64 / seconds,
        tokens_per_second: tokens as f64 / seconds,
        query_p50_ms: percentile(&times, 0.5),
        query_p99_ms: percentile(&times, 0.99),
        rss_after_load_bytes: rss_after_load,
        peak_rss_bytes: peak,
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        let mib =
            |b: Option<u64>| b.map_or("?".into(), |b| format!("{:.0} MiB", b as f64 / 1048576.0));
        outln!(
            "{}: {} texts ({} tokens, {} truncated) in {:.2}s on {} with {} threads",
            report.model,
            report.texts,
            report.tokens,
            report.truncated,
            report.seconds,
            report.device,
            report.threads
        )?;
        outln!(
            "{:.1} texts/s, {:.0} tokens/s; single query p50 {:.2} ms, p99 {:.2} ms",
            report.texts_per_second,
            report.tokens_per_second,
            report.query_p50_ms,
            report.query_p99_ms
        )?;
        outln!(
            "memory: {} resident after loading the model, {} peak",
            mib(report.rss_after_load_bytes),
            mib(report.peak_rss_bytes)
        )?;
    }
    Ok(0)
}
