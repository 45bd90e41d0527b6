//! `outpost search`, `context` and `embed`: what the index and the model answer.

use anyhow::Result;
use serde_json::json;

use outpost_core::{ContextOptions, Filter, RrfParams, SearchMode, SearchOptions};

use super::open::{engine, load_embedder, open_store};
use crate::cli::{Cli, ContextArgs, EmbedArgs, SearchArgs};
use crate::output::{outln, print_json};

/// `outpost search`.
pub fn search(cli: &Cli, args: &SearchArgs) -> Result<i32> {
    let mode: SearchMode = args.mode.parse()?;
    let opts = SearchOptions {
        k: args.k,
        mode,
        filters: parse_filters(&args.filter)?,
        rrf: RrfParams {
            k: args.rrf_k,
            vector_weight: args.vector_weight,
            text_weight: args.text_weight,
        },
    };
    let query = args.query.join(" ");
    let hits = if mode == SearchMode::Text {
        // Full-text search needs no model; don't load one.
        open_store(cli)?.search(&query, &opts)?
    } else {
        engine(cli)?.0.search(&query, &opts)?
    };
    if args.json {
        let results: Vec<_> = hits
            .iter()
            .map(|h| {
                json!({
                    "chunk_id": h.chunk_id, "document_id": h.document_id, "title": h.title,
                    "source": h.source, "text": h.text, "score": h.score,
                    "collection": h.collection, "byte_start": h.byte_start, "byte_end": h.byte_end,
                })
            })
            .collect();
        print_json(&json!({ "query": query, "mode": mode, "results": results }))?;
    } else if hits.is_empty() {
        outln!("no results")?;
    } else {
        for (i, h) in hits.iter().enumerate() {
            outln!("{:>2}. {:.4}  {} — {}", i + 1, h.score, h.title, h.source)?;
            outln!("    {}", snippet(&h.text, 160))?;
        }
    }
    Ok(0)
}

/// `outpost context`.
pub fn context(cli: &Cli, args: &ContextArgs) -> Result<i32> {
    let (engine, _) = engine(cli)?;
    let opts = ContextOptions {
        budget: args.budget,
        candidates: args.candidates,
        search: SearchOptions {
            mode: args.mode.parse()?,
            filters: parse_filters(&args.filter)?,
            ..Default::default()
        },
        conversation_id: args.conversation.clone(),
        ..Default::default()
    };
    let ctx = engine.context(&args.query.join(" "), &opts)?;
    if args.json {
        print_json(&serde_json::to_value(&ctx)?)?;
    } else {
        outln!("{}", ctx.text)?;
        eprintln!("({} of {} tokens)", ctx.tokens, ctx.budget);
    }
    Ok(0)
}

/// `outpost embed`.
pub fn embed(cli: &Cli, args: &EmbedArgs) -> Result<i32> {
    let model = load_embedder(cli)?;
    let texts: Vec<&str> = args.texts.iter().map(String::as_str).collect();
    let vectors = model.embed(&texts)?;
    let model_id = model.model_id();
    let dims = model.dims();
    if args.json {
        outln!(
            "{}",
            serde_json::to_string(&json!({ "model": model_id, "dims": dims, "vectors": vectors }))?
        )?;
    } else {
        for (t, v) in texts.iter().zip(&vectors) {
            let head: Vec<String> = v.iter().take(6).map(|x| format!("{x:.4}")).collect();
            outln!(
                "{} [{} …] ({dims}-d, {model_id})",
                snippet(t, 40),
                head.join(", ")
            )?;
        }
    }
    if model.truncated_count() > 0 {
        eprintln!(
            "note: {} text(s) longer than {} tokens were truncated",
            model.truncated_count(),
            model.max_tokens()
        );
    }
    Ok(0)
}

pub(super) fn parse_filters(raw: &[String]) -> Result<Vec<Filter>> {
    Ok(raw
        .iter()
        .map(|f| f.parse::<Filter>())
        .collect::<Result<Vec<_>, _>>()?)
}

/// One line of a chunk, whitespace collapsed, at most `max` characters.
fn snippet(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}…")
    }
}
