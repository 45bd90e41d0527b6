//! `outpost ask`: a question answered from the documents by the language model, streamed to
//! stdout, then its numbered sources (or, with `--json`, one document with the answer, its
//! citations and timings).

use std::time::Instant;

use anyhow::Result;
use serde_json::json;

use outpost_core::{AskEvent, AskOptions, ContextOptions, GenerateOptions, SearchOptions};

use super::open::{engine, open_llm};
use super::query::parse_filters;
use crate::cli::{AskArgs, Cli};
use crate::output::{flush, outln, print_json, write_str};

/// `outpost ask`.
pub fn ask(cli: &Cli, args: &AskArgs) -> Result<i32> {
    let question = args.question.join(" ");
    let opts = AskOptions {
        context: ContextOptions {
            budget: args.budget,
            candidates: args.candidates,
            search: SearchOptions {
                mode: args.mode.parse()?,
                filters: parse_filters(&args.filter)?,
                ..Default::default()
            },
            conversation_id: args.conversation.clone(),
            ..Default::default()
        },
        generate: GenerateOptions {
            max_tokens: args.max_tokens,
            temperature: args.temperature,
            top_p: args.top_p,
            seed: args.seed,
            stop: args.stop.clone(),
            repeat_penalty: args.repeat_penalty,
        },
        min_relevance: args.min_relevance,
        ..Default::default()
    };
    let (engine, _) = engine(cli)?;
    let started = Instant::now();
    let llm = open_llm(&args.llm, cli.cpu)?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let streaming = !args.json;
    let mut write_error = None;
    let answer = engine.ask(&question, &opts, llm.as_ref(), &mut |event| {
        if let (true, AskEvent::Text(piece)) = (streaming, event) {
            if let Err(e) = write_str(piece).and_then(|()| flush()) {
                // A closed stdout (`| head`) stops the answer.
                write_error = Some(e);
                return false;
            }
        }
        true
    });
    if let Some(e) = write_error {
        return Err(e.into());
    }
    let answer = answer?;
    let generation = answer.generation.as_ref();
    let first_token_ms = answer.retrieval_ms + generation.map_or(0.0, |g| g.first_token_ms);
    if args.json {
        let citations: Vec<_> = answer
            .sources
            .iter()
            .map(|c| {
                json!({ "n": c.n, "document_id": c.document_id, "title": c.title,
                        "source": c.source, "chunk_ids": c.chunk_ids, "byte_start": c.byte_start,
                        "byte_end": c.byte_end, "text": c.text, "truncated": c.truncated,
                        "cited": answer.cited.contains(&c.n) })
            })
            .collect();
        let decode_ms = generation.map_or(0.0, |g| g.total_ms - g.first_token_ms);
        let tokens = generation.map_or(0, |g| g.completion_tokens);
        print_json(&json!({
            "question": answer.question,
            "answer": answer.text,
            "found": answer.found,
            "model": llm.model_id(),
            "citations": citations,
            "cited": answer.cited,
            "cited_by": answer.cited_by,
            "invalid_citations": answer.invalid_citations,
            "best_similarity": answer.best_similarity,
            "conversation_id": answer.conversation_id,
            "finish_reason": generation.map(|g| g.finish_reason.as_str()),
            "usage": {
                "prompt_tokens": generation.map_or(0, |g| g.prompt_tokens),
                "cached_tokens": generation.map_or(0, |g| g.cached_tokens),
                "completion_tokens": tokens,
                "context_tokens": answer.context_tokens,
            },
            "timings": {
                "load_ms": load_ms,
                "retrieval_ms": answer.retrieval_ms,
                "prompt_ms": generation.map_or(0.0, |g| g.prompt_ms),
                "time_to_first_token_ms": first_token_ms,
                "generation_ms": generation.map_or(0.0, |g| g.total_ms),
                "tokens_per_s": if decode_ms > 0.0 && tokens > 1 {
                    (tokens - 1) as f64 / (decode_ms / 1e3)
                } else {
                    0.0
                },
            },
        }))?;
        return Ok(0);
    }
    outln!("")?;
    if !answer.sources.is_empty() {
        outln!("")?;
        outln!("Sources:")?;
        for c in &answer.sources {
            let mark = if answer.cited.contains(&c.n) {
                ""
            } else {
                " (not cited)"
            };
            outln!(
                "[{}] {} — {} (bytes {}–{}){mark}",
                c.n,
                c.title,
                c.source,
                c.byte_start,
                c.byte_end
            )?;
        }
    }
    if let Some(g) = generation {
        eprintln!(
            "({} prompt tokens, {} reused; {} generated; first token after {:.0} ms, {:.1} tokens/s)",
            g.prompt_tokens,
            g.cached_tokens,
            g.completion_tokens,
            first_token_ms,
            if g.total_ms > g.first_token_ms && g.completion_tokens > 1 {
                (g.completion_tokens - 1) as f64 / ((g.total_ms - g.first_token_ms) / 1e3)
            } else {
                0.0
            }
        );
    }
    Ok(0)
}
