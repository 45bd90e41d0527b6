//! Ingestion: walk paths, extract text, skip what is unchanged, chunk, embed, store.
//!
//! A file that fails is reported with its reason and the walk goes on; nothing already stored is
//! touched by a failure. Embedding happens before the write transaction, so a crash while
//! embedding leaves the previous version of the document in place. Ingestion reaches the store
//! through [`StoreAccess`], one short read or write at a time, so that no lock is held while the
//! model runs: a search, a sync pull or another ingest goes on meanwhile.

pub mod chroma;
pub mod chunk;
pub mod extract;
pub mod import;

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use self::chunk::{chunk, ChunkParams};
use self::extract::{extract, BadRecord, Extracted, Format};
use crate::db::Store;
use crate::embed::Embedder;
use crate::error::{Error, InputProblem, Result};
use crate::model::{Collection, NewChunk, NewDocument, PutOutcome};

/// How ingestion reaches the store: a read for what is stored (is this document unchanged?)
/// and a write per document. The engine hands out a reader or its writer for each call, so the
/// slow part, embedding, holds neither.
pub trait StoreAccess {
    /// Runs `f` on a connection that sees every write committed before it.
    ///
    /// # Errors
    /// What `f` returns.
    fn read<T>(&self, f: impl FnOnce(&Store) -> Result<T>) -> Result<T>;
    /// Runs `f` on the writer.
    ///
    /// # Errors
    /// What `f` returns.
    fn write<T>(&self, f: impl FnOnce(&mut Store) -> Result<T>) -> Result<T>;
}

/// One store used by one thread, for reads and writes in turn.
impl StoreAccess for std::cell::RefCell<&mut Store> {
    fn read<T>(&self, f: impl FnOnce(&Store) -> Result<T>) -> Result<T> {
        f(&self.borrow())
    }

    fn write<T>(&self, f: impl FnOnce(&mut Store) -> Result<T>) -> Result<T> {
        f(&mut self.borrow_mut())
    }
}

/// The default collection name.
pub const DEFAULT_COLLECTION: &str = "default";

/// How to ingest.
#[derive(Debug, Clone, Serialize)]
pub struct IngestOptions {
    /// Collection to put documents in (created for the embedder's model if missing).
    pub collection: String,
    /// Files larger than this are refused, in bytes.
    pub max_file_size: u64,
    /// Chunk size and overlap.
    pub chunking: ChunkParams,
    /// Chunks per embedding call; chunks of small documents share calls.
    pub batch_size: usize,
    /// Descend into hidden files and directories (names starting with '.').
    pub include_hidden: bool,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            collection: DEFAULT_COLLECTION.to_string(),
            max_file_size: 50 * 1024 * 1024,
            chunking: ChunkParams::default(),
            batch_size: 128,
            include_hidden: false,
        }
    }
}

/// One stored (or skipped) document.
#[derive(Debug, Clone, Serialize)]
pub struct IngestedDoc {
    /// Document id.
    pub id: String,
    /// Source URI.
    pub source: String,
    /// What happened.
    pub outcome: PutOutcome,
    /// Chunks written (0 if unchanged).
    pub chunks: usize,
}

/// A file (or JSONL line) that was not ingested.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The file, with `:LINE` for a JSONL record.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// What an ingest run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestReport {
    /// New documents.
    pub added: usize,
    /// Changed documents whose chunks were replaced.
    pub updated: usize,
    /// Documents whose content hash matched: not re-embedded.
    pub unchanged: usize,
    /// JSONL records gone from their file since the last ingest, now deleted.
    pub removed: usize,
    /// Files or records that failed.
    pub failed: usize,
    /// Chunks embedded and written.
    pub chunks: usize,
    /// Every document stored or found unchanged.
    pub documents: Vec<IngestedDoc>,
    /// Every failure with its reason.
    pub failures: Vec<Failure>,
}

/// Progress of an ingest run, for a progress bar.
#[derive(Debug, Clone)]
pub enum Progress<'a> {
    /// The walk found this many files.
    Files(u64),
    /// Starting on a file.
    Start(&'a Path),
    /// A file is finished (stored, skipped or failed).
    Done(&'a Path),
    /// Chunks embedded so far in the current file, and its total.
    Embedded(usize, usize),
}

/// The files under `paths`, walked recursively in name order, plus the walk's failures.
pub fn collect_files(paths: &[PathBuf], include_hidden: bool) -> (Vec<PathBuf>, Vec<Failure>) {
    let mut files = Vec::new();
    let mut failures = Vec::new();
    for root in paths {
        let walk = walkdir::WalkDir::new(root)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| include_hidden || e.depth() == 0 || !is_hidden(e.file_name()));
        for entry in walk {
            match entry {
                Ok(e) if e.file_type().is_dir() => {}
                Ok(e) => files.push(e.into_path()),
                Err(err) => {
                    let path = err.path().unwrap_or(root).to_path_buf();
                    let problem = if let Some(ancestor) = err.loop_ancestor() {
                        InputProblem::SymlinkLoop {
                            ancestor: ancestor.to_path_buf(),
                        }
                    } else {
                        match err.into_io_error() {
                            Some(io) => InputProblem::Unreadable(io),
                            None => InputProblem::NotAFile,
                        }
                    };
                    failures.push(Failure {
                        path: path.display().to_string(),
                        reason: problem.to_string(),
                    });
                }
            }
        }
    }
    (files, failures)
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.to_str().is_some_and(|n| n.starts_with('.'))
}

/// Ingests every file under `paths` into `opts.collection`.
///
/// Documents are chunked as files are read and embedded together in calls of up to
/// `opts.batch_size` chunks, so that many small documents (JSONL records, short notes) fill the
/// model's batches; each document is then written in its own transaction.
///
/// # Errors
/// Only for failures of the store or the model ([`Error::Sqlite`], [`Error::Embed`],
/// [`Error::ModelMismatch`] ...); a bad input file is reported in the [`IngestReport`] instead.
pub fn ingest_paths(
    store: &impl StoreAccess,
    embedder: &dyn Embedder,
    paths: &[PathBuf],
    opts: &IngestOptions,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<IngestReport> {
    opts.chunking.validate(embedder.max_tokens())?;
    let collection = store
        .write(|s| s.ensure_collection(&opts.collection, embedder.model_id(), embedder.dims()))?;
    let (files, walk_failures) = collect_files(paths, opts.include_hidden);
    let mut report = IngestReport {
        failed: walk_failures.len(),
        failures: walk_failures,
        ..Default::default()
    };
    let mut queue = Queue::default();
    progress(Progress::Files(files.len() as u64));
    for path in &files {
        progress(Progress::Start(path));
        match read_file(store, embedder, &collection, path, opts, &mut queue) {
            Ok((unchanged, bad)) => {
                report.record(unchanged);
                for b in bad.iter() {
                    report.failed += 1;
                    report.failures.push(Failure {
                        path: format!("{}:{}", path.display(), b.line),
                        reason: b.reason.clone(),
                    });
                }
                if queue.chunks >= opts.batch_size.max(1) {
                    report.record(queue.flush(store, embedder, &collection, progress)?);
                }
                // Records gone from a JSONL file are deleted once the file's other records are
                // stored — and only when every line parsed, so a malformed line never deletes
                // its stored record.
                if Format::of(path) == Format::Jsonl && bad.is_empty() {
                    report.record(queue.flush(store, embedder, &collection, progress)?);
                    report.record(prune_jsonl(store, &collection, path, &report)?);
                }
            }
            Err(e @ Error::Input { .. }) => {
                report.failed += 1;
                report.failures.push(Failure {
                    path: path.display().to_string(),
                    reason: match &e {
                        Error::Input { problem, .. } => problem.to_string(),
                        other => other.to_string(),
                    },
                });
            }
            Err(e) => return Err(e),
        }
        progress(Progress::Done(path));
    }
    report.record(queue.flush(store, embedder, &collection, progress)?);
    Ok(report)
}

impl IngestReport {
    fn record(&mut self, docs: Vec<IngestedDoc>) {
        for d in docs {
            match d.outcome {
                PutOutcome::Added => self.added += 1,
                PutOutcome::Updated => self.updated += 1,
                PutOutcome::Unchanged => self.unchanged += 1,
                PutOutcome::Removed => self.removed += 1,
            }
            self.chunks += d.chunks;
            self.documents.push(d);
        }
    }
}

/// A chunked document waiting for its embeddings.
struct Pending {
    doc: NewDocument,
    chunks: Vec<NewChunk>,
}

/// Chunked documents whose chunks are embedded together.
#[derive(Default)]
struct Queue {
    docs: Vec<Pending>,
    chunks: usize,
}

impl Queue {
    fn push(&mut self, p: Pending) {
        self.chunks += p.chunks.len();
        self.docs.push(p);
    }

    /// Embeds every queued chunk in one call, then stores each document in its own
    /// transaction.
    fn flush(
        &mut self,
        store: &impl StoreAccess,
        embedder: &dyn Embedder,
        collection: &Collection,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<Vec<IngestedDoc>> {
        let docs = std::mem::take(&mut self.docs);
        let total = std::mem::take(&mut self.chunks);
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let texts: Vec<&str> = docs
            .iter()
            .flat_map(|d| d.chunks.iter().map(|c| c.text.as_str()))
            .collect();
        let vectors = crate::embed::embed_all(embedder, &texts)?;
        progress(Progress::Embedded(total, total));
        let mut vectors = vectors.into_iter();
        let mut out = Vec::with_capacity(docs.len());
        for mut p in docs {
            for (c, v) in p.chunks.iter_mut().zip(vectors.by_ref()) {
                c.embedding = v;
            }
            let (id, outcome) = store.write(|s| s.put_document(collection, &p.doc, &p.chunks))?;
            out.push(IngestedDoc {
                id,
                source: p.doc.source,
                outcome,
                chunks: if outcome == PutOutcome::Unchanged {
                    0
                } else {
                    p.chunks.len()
                },
            });
        }
        Ok(out)
    }
}

/// Deletes the records of `path` that this run did not see.
fn prune_jsonl(
    store: &impl StoreAccess,
    collection: &Collection,
    path: &Path,
    report: &IngestReport,
) -> Result<Vec<IngestedDoc>> {
    let prefix = format!("{}#", source_of(path));
    let seen: std::collections::HashSet<&str> = report
        .documents
        .iter()
        .filter(|d| d.source.starts_with(&prefix))
        .map(|d| d.source.as_str())
        .collect();
    // The listing and the deletes share one write, so nothing stored in between is deleted.
    store.write(|s| {
        let mut removed = Vec::new();
        for (id, source) in s.live_sources_with_prefix(collection, &prefix)? {
            if !seen.contains(source.as_str()) {
                s.delete_document(&id)?;
                removed.push(IngestedDoc {
                    id,
                    source,
                    outcome: PutOutcome::Removed,
                    chunks: 0,
                });
            }
        }
        Ok(removed)
    })
}

/// The source URI of a file: its absolute path (symbolic links resolved).
pub fn source_of(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

fn read_checked(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let meta =
        std::fs::metadata(path).map_err(|e| Error::input(path, InputProblem::Unreadable(e)))?;
    if !meta.is_file() {
        return Err(Error::input(path, InputProblem::NotAFile));
    }
    if meta.len() > limit {
        return Err(Error::input(
            path,
            InputProblem::TooLarge {
                size: meta.len(),
                limit,
            },
        ));
    }
    std::fs::read(path).map_err(|e| Error::input(path, InputProblem::Unreadable(e)))
}

/// Reads, extracts and chunks one file into `queue`; returns its unchanged documents and its
/// bad JSONL lines.
fn read_file(
    store: &impl StoreAccess,
    embedder: &dyn Embedder,
    collection: &Collection,
    path: &Path,
    opts: &IngestOptions,
    queue: &mut Queue,
) -> Result<(Vec<IngestedDoc>, Vec<BadRecord>)> {
    let bytes = read_checked(path, opts.max_file_size)?;
    let (docs, bad) = extract(path, &bytes)?;
    let file_source = source_of(path);
    let mut unchanged = Vec::new();
    for doc in docs {
        let source = match &doc.key {
            Some(key) => format!("{file_source}#{key}"),
            None => file_source.clone(),
        };
        match prepare(store, embedder, collection, &source, doc, opts)? {
            Prepared::Unchanged(d) => unchanged.push(d),
            Prepared::Ready(p) => queue.push(p),
        }
    }
    Ok((unchanged, bad))
}

enum Prepared {
    Unchanged(IngestedDoc),
    Ready(Pending),
}

/// Hashes and chunks one document; an unchanged one needs no embedding.
fn prepare(
    store: &impl StoreAccess,
    embedder: &dyn Embedder,
    collection: &Collection,
    source: &str,
    doc: Extracted,
    opts: &IngestOptions,
) -> Result<Prepared> {
    let hash = content_hash(&doc, embedder.model_id(), opts.chunking);
    if let Some((id, stored, false)) = store.read(|s| s.document_by_source(collection, source))? {
        if stored == hash {
            return Ok(Prepared::Unchanged(IngestedDoc {
                id,
                source: source.to_string(),
                outcome: PutOutcome::Unchanged,
                chunks: 0,
            }));
        }
    }
    let chunks = chunk(
        embedder.tokenizer()?,
        &doc.text,
        doc.format == Format::Markdown,
        opts.chunking,
    )?
    .into_iter()
    .map(NewChunk::from)
    .collect();
    Ok(Prepared::Ready(Pending {
        doc: NewDocument {
            source: source.to_string(),
            title: doc.title,
            content_hash: hash,
            metadata: doc.metadata,
        },
        chunks,
    }))
}

/// The content hash: the source bytes plus everything that shapes the stored chunks, so that a
/// new model or chunk size re-ingests an unchanged file.
fn content_hash(doc: &Extracted, model_id: &str, params: ChunkParams) -> String {
    let mut h = Sha256::new();
    h.update(format!(
        "outpost/1\0{model_id}\0{}\0{}\0",
        params.max_tokens, params.overlap
    ));
    h.update(&doc.raw);
    hex::encode(h.finalize())
}

/// Chunks, embeds and stores one extracted document under `source`.
///
/// # Errors
/// Store and model failures.
pub fn ingest_text(
    store: &impl StoreAccess,
    embedder: &dyn Embedder,
    collection: &Collection,
    source: &str,
    doc: Extracted,
    opts: &IngestOptions,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<IngestedDoc> {
    match prepare(store, embedder, collection, source, doc, opts)? {
        Prepared::Unchanged(d) => Ok(d),
        Prepared::Ready(p) => {
            let mut queue = Queue::default();
            queue.push(p);
            let mut done = queue.flush(store, embedder, collection, progress)?;
            done.pop()
                .ok_or_else(|| Error::Embed(crate::error::EmbedError("nothing was stored".into())))
        }
    }
}
