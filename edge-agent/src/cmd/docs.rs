//! `outpost init`, `ingest`, `docs` and `stats`: creating the database, putting documents in,
//! and looking at what it holds.

use std::io::IsTerminal;
use std::time::Instant;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use outpost_core::{IngestOptions, Progress};

use super::open::{engine, open_store};
use crate::cli::{Cli, DocsCommand, IngestArgs};
use crate::output::{outln, print_json};

/// `outpost init`.
pub fn init(cli: &Cli) -> Result<i32> {
    let store = open_store(cli)?;
    outln!(
        "initialised {} (schema version {})",
        store.path().display(),
        store.schema_version()?
    )?;
    Ok(0)
}

/// `outpost ingest`.
pub fn ingest(cli: &Cli, args: &IngestArgs) -> Result<i32> {
    let (engine, model) = engine(cli)?;
    let opts = IngestOptions {
        collection: args.collection.clone(),
        max_file_size: args.max_file_size,
        chunking: outpost_core::ChunkParams {
            max_tokens: args.chunk_tokens,
            overlap: args.chunk_overlap,
        },
        batch_size: args.batch,
        include_hidden: args.hidden,
    };
    let bar = if std::io::stderr().is_terminal() && !args.json {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} files {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let started = Instant::now();
    let mut on_progress = |p: Progress<'_>| match p {
        Progress::Files(n) => bar.set_length(n),
        Progress::Start(path) => bar.set_message(
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
        Progress::Embedded(done, total) if total > 1 => {
            bar.set_message(format!("{done}/{total} chunks"));
        }
        Progress::Embedded(..) => {}
        Progress::Done(_) => bar.inc(1),
    };
    let report = engine.ingest(&args.paths, &opts, &mut on_progress)?;
    bar.set_message("updating the search indexes");
    // The batch job pays for the index, so that the next search starts warm.
    let indexing = Instant::now();
    engine.refresh_indexes()?;
    let index_secs = indexing.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let truncated = model.truncated_count();
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        v["seconds"] = json!(secs);
        // The vector indexes and the text index (the name predates the latter).
        v["vector_index_seconds"] = json!(index_secs);
        v["truncated_inputs"] = json!(truncated);
        print_json(&v)?;
    } else {
        outln!(
            "{} added, {} updated, {} unchanged, {} removed, {} failed; {} chunks embedded in {:.1}s ({:.2}s of it updating the search indexes)",
            report.added,
            report.updated,
            report.unchanged,
            report.removed,
            report.failed,
            report.chunks,
            secs,
            index_secs
        )?;
        for f in &report.failures {
            // The library names its option; the user knows the flag.
            let reason = f
                .reason
                .replace("(max_file_size)", "(raise it with --max-file-size)");
            outln!("  failed: {}: {reason}", f.path)?;
        }
    }
    Ok(if report.failed > 0 { 2 } else { 0 })
}

/// `outpost docs`.
pub fn docs(cli: &Cli, cmd: &DocsCommand) -> Result<i32> {
    let store = open_store(cli)?;
    match cmd {
        DocsCommand::List {
            collection,
            all,
            limit,
            json,
        } => {
            let docs = store.list_documents(collection.as_deref(), *all, *limit)?;
            if *json {
                print_json(&json!({ "documents": docs }))?;
            } else {
                for d in &docs {
                    let mark = if d.deleted { " (deleted)" } else { "" };
                    outln!(
                        "{}  {:>4} chunks  {} — {}{}",
                        d.id,
                        d.chunks,
                        d.title,
                        d.source,
                        mark
                    )?;
                }
                if docs.is_empty() {
                    outln!("no documents")?;
                }
            }
        }
        DocsCommand::Show { id, json } => {
            let d = store.get_document(id)?;
            if *json {
                print_json(&serde_json::to_value(&d)?)?;
            } else {
                outln!("id:         {}", d.summary.id)?;
                outln!("title:      {}", d.summary.title)?;
                outln!("source:     {}", d.summary.source)?;
                outln!("collection: {}", d.summary.collection)?;
                outln!("metadata:   {}", d.metadata)?;
                outln!(
                    "revision:   {}{}",
                    d.rev,
                    if d.summary.deleted { " (deleted)" } else { "" }
                )?;
                for c in &d.chunks {
                    outln!(
                        "--- chunk {} ({} tokens, bytes {}..{})",
                        c.ordinal,
                        c.token_count,
                        c.byte_start,
                        c.byte_end
                    )?;
                    outln!("{}", c.text)?;
                }
            }
        }
        DocsCommand::Rm { id } => {
            let d = store.delete_document(id)?;
            outln!("deleted {} ({})", d.id, d.source)?;
        }
    }
    Ok(0)
}

/// `outpost stats`.
pub fn stats(cli: &Cli, json: bool) -> Result<i32> {
    let store = open_store(cli)?;
    let stats = store.stats()?;
    if json {
        print_json(&serde_json::to_value(&stats)?)?;
    } else {
        outln!(
            "database: {} (schema v{}, {} bytes)",
            stats.path.display(),
            stats.schema_version,
            stats.size_bytes
        )?;
        for c in &stats.collections {
            outln!(
                "collection {}: {} documents, {} chunks, {} tokens; model {} ({}-d)",
                c.collection.name,
                c.documents,
                c.chunks,
                c.tokens,
                c.collection.model_id,
                c.collection.dims
            )?;
        }
        outln!(
            "{} deleted documents, {} conversations, {} messages",
            stats.deleted_documents,
            stats.conversations,
            stats.messages
        )?;
    }
    Ok(0)
}
