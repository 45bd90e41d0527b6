//! `outpost import` and `outpost export`: reading the inputs, progress and reports; the
//! storing is `outpost_core::ingest::import`.

use std::io::{BufRead, IsTerminal as _};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use outpost_core::ingest::import::{self, ImportOptions, ImportReport, Input, Vectors};

use super::open::{db_path, load_embedder, open_store};
use crate::cli::{Cli, ExportCommand, ImportArgs, ImportCommand, Reembed};
use crate::output::{outln, PipeWatch};

/// Runs an `outpost import` subcommand.
pub fn import(cli: &Cli, cmd: &ImportCommand) -> Result<i32> {
    match cmd {
        ImportCommand::Jsonl {
            file,
            collection,
            args,
        } => {
            let records = jsonl_records(file)?;
            run_import(cli, args, collection.as_deref(), records)
        }
        ImportCommand::Chroma {
            path,
            collection,
            into,
            keep_vectors,
            args,
        } => {
            let model = load_embedder(cli)?;
            let model_id = model.model_id().to_string();
            let records = outpost_core::ingest::chroma::read_store(path, collection)?
                .into_iter()
                .flat_map(|c| c.records)
                .map(move |(at, r)| {
                    let r = r.map(|mut r| {
                        // Chroma does not record which model made its vectors: kept only when
                        // the user says they are this model's, and embedded anew otherwise.
                        if *keep_vectors && r.embedding.is_some() {
                            r.model = Some(model_id.clone());
                        } else {
                            r.embedding = None;
                        }
                        r
                    });
                    (at, r)
                });
            run_import_with(cli, model, args, into.as_deref(), records)
        }
        ImportCommand::Sqlite {
            source_db,
            table,
            id_col,
            text_col,
            title_col,
            meta_cols,
            collection,
            args,
        } => {
            let spec = import::TableSpec {
                table: table.clone(),
                id_column: id_col.clone(),
                text_column: text_col.clone(),
                title_column: title_col.clone(),
                metadata_columns: meta_cols.clone(),
            };
            let records = import::sqlite_records(source_db, &spec)?;
            run_import(cli, args, Some(collection), records.into_iter())
        }
    }
}

/// The records of a JSONL file, read line by line as the import goes; each with `FILE:LINE`.
fn jsonl_records(path: &Path) -> Result<impl Iterator<Item = Input>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let name = path.display().to_string();
    let lines = std::io::BufReader::new(file).split(b'\n');
    Ok(lines.enumerate().filter_map(move |(i, line)| {
        let at = format!("{name}:{}", i + 1);
        let record = match line {
            Err(e) => Err(format!("unreadable: {e}")),
            Ok(bytes) => match std::str::from_utf8(&bytes) {
                Err(e) => Err(format!("invalid UTF-8 at byte {}", e.valid_up_to())),
                Ok(text) if text.trim().is_empty() => return None,
                Ok(text) => import::parse_jsonl_record(text),
            },
        };
        Some((at, record))
    }))
}

fn options(args: &ImportArgs, collection: Option<&str>) -> ImportOptions {
    ImportOptions {
        collection: collection
            .unwrap_or(outpost_core::DEFAULT_COLLECTION)
            .to_string(),
        force_collection: collection.is_some(),
        chunking: outpost_core::ChunkParams {
            max_tokens: args.chunk_tokens,
            overlap: args.chunk_overlap,
        },
        batch_size: args.batch,
        vectors: match args.reembed {
            None => Vectors::Keep,
            Some(Reembed::Mismatched) => Vectors::ReembedMismatched,
            Some(Reembed::All) => Vectors::ReembedAll,
        },
    }
}

fn bar(hidden: bool, template: &str) -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() && !hidden {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar
}

/// Imports `records` (into `collection`, or the ones they name), brings the search indexes up
/// to date and reports.
fn run_import(
    cli: &Cli,
    args: &ImportArgs,
    collection: Option<&str>,
    records: impl Iterator<Item = Input>,
) -> Result<i32> {
    run_import_with(cli, load_embedder(cli)?, args, collection, records)
}

fn run_import_with(
    cli: &Cli,
    model: std::sync::Arc<dyn outpost_core::Embedder>,
    args: &ImportArgs,
    collection: Option<&str>,
    records: impl Iterator<Item = Input>,
) -> Result<i32> {
    let store = outpost_core::Engine::open(db_path(cli), model, 1)?;
    let opts = options(args, collection);
    let bar = bar(args.json, "{spinner} {pos} records read {per_sec}");
    let started = Instant::now();
    let report = store.import(records, &opts, &mut |n| bar.set_position(n as u64))?;
    bar.set_message("updating the search indexes");
    let indexing = Instant::now();
    store.refresh_indexes()?;
    let index_secs = indexing.elapsed().as_secs_f64();
    bar.finish_and_clear();
    print_report(
        &report,
        started.elapsed().as_secs_f64(),
        index_secs,
        args.json,
    )?;
    Ok(if report.failed > 0 { 2 } else { 0 })
}

fn print_report(report: &ImportReport, secs: f64, index_secs: f64, as_json: bool) -> Result<()> {
    let records = report.added + report.updated + report.unchanged + report.failed;
    if as_json {
        let mut v = serde_json::to_value(report)?;
        v["records"] = json!(records);
        v["seconds"] = json!(secs);
        v["records_per_second"] = json!(records as f64 / secs.max(1e-9));
        v["index_seconds"] = json!(index_secs);
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        outln!(
            "{} added, {} updated, {} unchanged, {} failed; {} chunks ({} vectors kept, {} embedded) in {:.1}s ({:.0} records/s; {:.2}s of it updating the search indexes)",
            report.added,
            report.updated,
            report.unchanged,
            report.failed,
            report.chunks,
            report.vectors_kept,
            report.embedded,
            secs,
            records as f64 / secs.max(1e-9),
            index_secs
        )?;
        for f in &report.failures {
            outln!("  failed: {}: {}", f.at, f.reason)?;
        }
    }
    Ok(())
}

/// Runs an `outpost export` subcommand.
pub fn export(cli: &Cli, cmd: &ExportCommand) -> Result<i32> {
    let ExportCommand::Jsonl {
        file,
        collection,
        with_embeddings,
        json: as_json,
    } = cmd;
    let store = open_store(cli)?;
    let bar = bar(*as_json, "{spinner} {pos} documents written {per_sec}");
    let started = Instant::now();
    let to_stdout = file.as_os_str() == "-";
    let report = if to_stdout {
        let mut out = PipeWatch::new(std::io::BufWriter::new(std::io::stdout().lock()));
        let exported = store.export_jsonl(
            &mut out,
            collection.as_deref(),
            *with_embeddings,
            &mut |n| bar.set_position(n as u64),
        );
        // A reader that stopped reading is not a failed export (see `main`).
        out.check()?;
        exported?
    } else {
        // Written beside the target and renamed into place, so that an interrupted export never
        // leaves a truncated file where a complete one is expected.
        let tmp = file.with_extension("jsonl.partial");
        let written = (|| -> Result<import::ExportReport> {
            let mut out = std::io::BufWriter::new(
                std::fs::File::create(&tmp)
                    .with_context(|| format!("creating {}", tmp.display()))?,
            );
            let report = store.export_jsonl(
                &mut out,
                collection.as_deref(),
                *with_embeddings,
                &mut |n| bar.set_position(n as u64),
            )?;
            out.into_inner()
                .map_err(|e| e.into_error())
                .and_then(|f| f.sync_all())
                .with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, file).with_context(|| format!("writing {}", file.display()))?;
            Ok(report)
        })();
        if written.is_err() {
            // Nothing half-written is left behind (the target itself was never touched).
            let _ = std::fs::remove_file(&tmp);
        }
        written?
    };
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    if *as_json {
        let mut v = serde_json::to_value(&report)?;
        v["seconds"] = json!(secs);
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
    } else if !to_stdout {
        outln!(
            "{} documents, {} chunks written to {} in {:.1}s",
            report.documents,
            report.chunks,
            file.display(),
            secs
        )?;
    }
    Ok(0)
}
