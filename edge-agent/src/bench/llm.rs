//! `outpost bench llm`: the language model's prompt reading and generation speed, time to first
//! token and peak memory, on a prompt given exactly as the model reads it: the same work
//! `scripts/bench-llm.sh` has llama.cpp do on the same GGUF, so the two compare.

use std::time::Instant;

use anyhow::{Context as _, Result};
use serde::Serialize;

use outpost_models::LlamaGenerator;

use super::report::{candle_threads, percentile};
use crate::cli::BenchLlmArgs;
use crate::output::outln;

#[derive(Debug, Serialize)]
struct LlmReport {
    engine: String,
    model: String,
    threads: usize,
    prompt_tokens: usize,
    prompt_tok_s: f64,
    gen_tokens: usize,
    gen_tok_s: f64,
    ttft_ms: f64,
    load_ms: f64,
    peak_rss_mib: Option<f64>,
    runs: usize,
}

/// Peak resident memory of this process in MiB (Linux).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Runs the bench. `threads` must be set before the model loads: candle's thread pool reads
/// `RAYON_NUM_THREADS` once, at its first use.
pub fn run(args: &BenchLlmArgs, load: &dyn Fn() -> Result<LlamaGenerator>) -> Result<i32> {
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    anyhow::ensure!(args.tokens > 0, "--tokens must be at least 1");
    let prompt = std::fs::read_to_string(&args.prompt_file)
        .with_context(|| format!("reading {}", args.prompt_file.display()))?;
    let started = Instant::now();
    let model = load()?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let ids = model.encode(&prompt)?;
    anyhow::ensure!(
        !ids.is_empty(),
        "{}: an empty prompt",
        args.prompt_file.display()
    );
    // One warm-up run, then the measured ones.
    model.bench(&ids, args.tokens.min(8))?;
    let (mut prompt_s, mut gen_s, mut first) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.runs {
        let (p, f, g) = model.bench(&ids, args.tokens)?;
        prompt_s.push(ids.len() as f64 / (p / 1e3));
        gen_s.push(args.tokens as f64 / (g / 1e3));
        first.push(f);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        percentile(v, 0.5)
    };
    let report = LlmReport {
        engine: "outpost (candle)".into(),
        model: outpost_core::Generator::model_id(&model).to_owned(),
        threads: candle_threads(),
        prompt_tokens: ids.len(),
        prompt_tok_s: median(&mut prompt_s),
        gen_tokens: args.tokens,
        gen_tok_s: median(&mut gen_s),
        ttft_ms: median(&mut first),
        load_ms,
        peak_rss_mib: peak_rss_mib(),
        runs: args.runs,
    };
    if args.json {
        outln!("{}", serde_json::to_string(&report)?)?;
    } else {
        outln!(
            "{}: prompt {} tokens at {:.0} tokens/s, generation {:.1} tokens/s, first token {:.0} ms, \
             peak {:.0} MiB ({} threads, median of {} runs; load {:.0} ms)",
            report.model,
            report.prompt_tokens,
            report.prompt_tok_s,
            report.gen_tok_s,
            report.ttft_ms,
            report.peak_rss_mib.unwrap_or(0.0),
            report.threads,
            report.runs,
            report.load_ms
        )?;
    }
    Ok(0)
}
