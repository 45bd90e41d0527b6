//! The indexing worker: takes work from the durable queue, one file at a time, and removes it
//! only after the work has committed. A crash in between repeats the work on the next start,
//! which the content hash makes harmless (an unchanged file is not stored twice), so every
//! accepted file ends up indexed exactly once.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Notify};

use outpost_core::{Engine, IngestOptions, QueuedWork, WorkOp};

use super::metrics::Metrics;
use super::pool::Engines;
use super::watch::{Folders, WatchEvent};

/// Attempts before failing work is dropped (with an error in the log and the metrics).
const MAX_ATTEMPTS: u32 = 8;

/// What one piece of work did.
enum Done {
    /// Indexed: documents changed, chunks written.
    Indexed(usize, usize),
    /// Documents deleted.
    Deleted(usize),
    /// Nothing to do (unchanged, already gone).
    Nothing,
    /// The file cannot be indexed (bad input): reported, not retried.
    Refused(String),
}

/// Deletes the document of `path`, or every live document under it if it was a folder.
fn delete_path(engine: &Engine, collection: &str, path: &str) -> outpost_core::Result<usize> {
    let Some(coll) = engine.collection(collection)? else {
        return Ok(0);
    };
    let mut ids: Vec<String> = engine
        .live_sources_with_prefix(&coll, &format!("{path}/"))?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    if let Some((id, _)) = engine.document_by_source(collection, path)? {
        ids.push(id);
    }
    for id in &ids {
        engine.delete_document(id)?;
    }
    Ok(ids.len())
}

fn process(engine: &Engine, work: &QueuedWork, opts: &IngestOptions) -> outpost_core::Result<Done> {
    let item = &work.item;
    let mut opts = opts.clone();
    opts.collection.clone_from(&item.collection);
    if let WorkOp::Move { from } = &item.op {
        let coll = engine.ensure_collection(&item.collection)?;
        engine.move_document(&coll, from, &item.path)?;
    }
    if item.op == WorkOp::Delete || !Path::new(&item.path).exists() {
        let n = delete_path(engine, &item.collection, &item.path)?;
        return Ok(if n > 0 {
            Done::Deleted(n)
        } else {
            Done::Nothing
        });
    }
    // A file replaced by a link after it was queued: links could lead out of the watched
    // folder, and are never followed.
    if super::watch::is_symlink(Path::new(&item.path)) {
        return Ok(Done::Refused(format!(
            "{}: a symbolic link (not followed)",
            item.path
        )));
    }
    let report = engine.ingest(&[item.path.clone().into()], &opts, &mut |_| {})?;
    if let Some(f) = report.failures.first() {
        return Ok(Done::Refused(format!("{}: {}", f.path, f.reason)));
    }
    let changed = report.added + report.updated;
    Ok(if changed > 0 {
        Done::Indexed(changed, report.chunks)
    } else {
        Done::Nothing
    })
}

/// Runs the worker until `shutdown`; `wake` is notified when work is queued.
pub async fn run(
    engines: Arc<Engines>,
    metrics: Arc<Metrics>,
    opts: IngestOptions,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let work = match engines.read(|e| e.next_work(16)).await {
            Ok(Ok(work)) => work,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "reading the work queue");
                metrics.error("queue");
                Vec::new()
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the work queue");
                Vec::new()
            }
        };
        if work.is_empty() {
            // Woken by new work, or every second for work whose retry is due.
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
            continue;
        }
        for w in work {
            if *shutdown.borrow() {
                return;
            }
            let started = Instant::now();
            let opts = opts.clone();
            let result = engines
                .write(move |e| {
                    let done = process(e, &w, &opts);
                    let finished = match &done {
                        Ok(_) => e.finish_work(&w.item.path, w.seq),
                        Err(err) if w.attempts + 1 >= MAX_ATTEMPTS => {
                            tracing::error!(path = %w.item.path, error = %err, attempts = w.attempts + 1, "giving up on a file");
                            e.finish_work(&w.item.path, w.seq)
                        }
                        Err(err) => {
                            // 1 s, 2 s, 4 s ... up to 2 minutes.
                            let delay = 1000i64 << w.attempts.min(7);
                            e.retry_work(&w.item.path, w.seq, &err.to_string(), delay)
                                .map(|()| false)
                        }
                    };
                    (w.item.path, done, finished)
                })
                .await;
            match result {
                Ok((path, Ok(Done::Indexed(docs, chunks)), _)) => {
                    metrics.documents_ingested.inc_by(docs as u64);
                    metrics.chunks_ingested.inc_by(chunks as u64);
                    metrics
                        .ingest_seconds
                        .observe(started.elapsed().as_secs_f64());
                    tracing::info!(path = %path, chunks, "indexed");
                }
                Ok((path, Ok(Done::Deleted(n)), _)) => {
                    tracing::info!(path = %path, documents = n, "deleted");
                }
                Ok((_, Ok(Done::Nothing), _)) => {}
                Ok((path, Ok(Done::Refused(why)), _)) => {
                    metrics.error("ingest_input");
                    tracing::warn!(path = %path, reason = %why, "not indexed");
                }
                Ok((path, Err(e), _)) => {
                    metrics.error("ingest");
                    tracing::warn!(path = %path, error = %e, "indexing failed; will retry");
                }
                Err(e) => {
                    metrics.error("ingest");
                    tracing::error!(error = %e, "indexing panicked");
                }
            }
        }
    }
}

/// Queues what the watcher reports (and rescans when asked), then wakes the worker.
pub async fn enqueue(
    engines: Arc<Engines>,
    folders: Folders,
    metrics: Arc<Metrics>,
    mut events: mpsc::UnboundedReceiver<WatchEvent>,
    wake: Arc<Notify>,
) {
    while let Some(event) = events.recv().await {
        // Whatever else arrived meanwhile goes in the same transaction.
        let mut batch = vec![event];
        while let Ok(more) = events.try_recv() {
            batch.push(more);
        }
        let folders = folders.clone();
        let queued = engines
            .write(move |e| -> anyhow::Result<usize> {
                let mut work = Vec::new();
                if batch.iter().any(|b| matches!(b, WatchEvent::Rescan)) {
                    work = folders.scan(e)?;
                } else {
                    for b in batch {
                        if let WatchEvent::Work(w) = b {
                            work.extend(w);
                        }
                    }
                }
                e.enqueue_work(&work)?;
                Ok(work.len())
            })
            .await;
        match queued {
            Ok(Ok(n)) => {
                tracing::debug!(n, "queued");
                wake.notify_one();
            }
            Ok(Err(e)) => {
                metrics.error("queue");
                tracing::error!(error = %e, "queueing file events");
            }
            Err(e) => tracing::error!(error = %e, "queueing file events"),
        }
    }
}
