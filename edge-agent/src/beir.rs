//! BEIR-format datasets (corpus.jsonl, queries.jsonl, qrels/<split>.tsv): reading them, and
//! indexing a corpus into a database of its own, for `outpost eval beir` and
//! `outpost bench search --beir`.
//!
//! The corpus is ingested through the normal ingest path (chunked, embedded, indexed) into a
//! database of its own — a temporary file, or `--index PATH`, which a later run reuses: content
//! hashes make re-ingesting an unchanged corpus nearly free, so parameter sweeps embed it once.
//! Each document is `title + "\n\n" + text`, as BEIR's own evaluations join them.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use outpost_core::search::eval::Qrels;
use outpost_core::{ChunkParams, Embedder, Engine, IngestOptions};

/// A BEIR corpus indexed into an Outpost database (collection `beir`).
pub(crate) struct IndexedCorpus {
    pub engine: Engine,
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
    model: std::sync::Arc<dyn Embedder>,
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
    let engine = Engine::open(&db, model, 1)?;
    let opts = IngestOptions {
        collection: "beir".into(),
        chunking,
        ..IngestOptions::default()
    };
    let started = Instant::now();
    let bar = progress_bar(0, json, "indexing (chunks)");
    let report = engine.ingest(std::slice::from_ref(&records), &opts, &mut |p| {
        if let outpost_core::Progress::Embedded(done, total) = p {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
    })?;
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
    let chunks = engine
        .stats()?
        .collections
        .iter()
        .filter(|c| c.collection.name == "beir")
        .map(|c| c.chunks)
        .sum();
    Ok(IndexedCorpus {
        engine,
        documents,
        chunks,
        seconds: index_seconds,
        _work: work,
    })
}

/// A progress bar on stderr; hidden under `--json` or when stderr is not a terminal.
pub(crate) fn progress_bar(len: u64, json: bool, what: &str) -> ProgressBar {
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
pub(crate) fn read_qrels(path: &Path) -> Result<BTreeMap<String, Qrels>> {
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
