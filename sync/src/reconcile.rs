//! The reconciler: push the outbox, pull after the durable cursor, and compare replicas.
//!
//! Outbox rows are removed only after the server has answered for their batch, and a pulled
//! page is applied in one local transaction with the cursor that follows it. So a connection
//! cut at any point costs at most a repeated batch (which the server recognises as duplicates)
//! and never a lost or skipped change.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};

use outpost_core::{hlc, Engine};

use crate::backoff::Backoff;
use crate::central::{Central, CentralInfo, Outcome};
use crate::error::Result;

/// How to sync.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Outbox entities per push call.
    pub batch_size: usize,
    /// Records per pull call.
    pub pull_page: usize,
    /// Retry policy for transient failures.
    pub backoff: Backoff,
    /// The local model id (pulled vectors of other models are re-embedded).
    pub model: String,
    /// The local model's dimension.
    pub dims: usize,
}

impl SyncOptions {
    /// Defaults for `model` / `dims`: batches of 100, pull pages of 1,000.
    pub fn new(model: impl Into<String>, dims: usize) -> Self {
        Self {
            batch_size: 100,
            pull_page: 1000,
            backoff: Backoff::default(),
            model: model.into(),
            dims,
        }
    }
}

/// Progress of a long push or pull, for progress bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Records pushed so far, of the outbox depth at the start.
    Pushed {
        /// Done.
        done: usize,
        /// Total at the start.
        total: usize,
    },
    /// Records pulled so far.
    Pulled {
        /// Done.
        done: usize,
    },
}

/// What a sync did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncReport {
    /// Records pushed.
    pub pushed: usize,
    /// Chunk rows carried by them.
    pub pushed_chunks: usize,
    /// Pushed records the server stored.
    pub push_applied: usize,
    /// Pushed records it already had (replays).
    pub push_duplicate: usize,
    /// Pushed records it had newer versions of.
    pub push_stale: usize,
    /// Records pulled.
    pub pulled: usize,
    /// Chunk rows carried by them.
    pub pulled_chunks: usize,
    /// Pulled records stored here.
    pub pull_applied: usize,
    /// Pulled records skipped (ours is as new or newer).
    pub pull_skipped: usize,
    /// Pulled documents queued to be embedded here (another model's vectors).
    pub reembed: usize,
    /// Seconds spent pushing.
    pub push_seconds: f64,
    /// Seconds spent pulling.
    pub pull_seconds: f64,
}

/// The state of sync on this device, for `outpost sync status`.
#[derive(Debug, Clone, Serialize)]
pub struct SyncStatus {
    /// This device.
    pub device_id: String,
    /// Entities waiting to be pushed.
    pub outbox_depth: usize,
    /// Age of the oldest unpushed change, in milliseconds (0 when the outbox is empty).
    pub lag_ms: i64,
    /// Last completed push, Unix milliseconds.
    pub last_push_ms: Option<i64>,
    /// Last completed pull, Unix milliseconds.
    pub last_pull_ms: Option<i64>,
    /// Pulled documents still waiting to be embedded here.
    pub pending_reembed: usize,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The sync state of `engine`'s database.
///
/// # Errors
/// Local store errors.
pub fn status(engine: &Engine) -> Result<SyncStatus> {
    let read =
        |k: &str| -> Result<Option<i64>> { Ok(engine.sync_state(k)?.and_then(|v| v.parse().ok())) };
    Ok(SyncStatus {
        device_id: engine.device_id().to_string(),
        outbox_depth: engine.outbox_depth()?,
        lag_ms: engine
            .outbox_oldest()?
            .map(|h| (now_ms() - hlc::physical_ms(h)).max(0))
            .unwrap_or(0),
        last_push_ms: read("last_push_ms")?,
        last_pull_ms: read("last_pull_ms")?,
        pending_reembed: engine.pending_reembed_count()?,
    })
}

/// Pushes the whole outbox in batches.
///
/// # Errors
/// The first error that retrying did not cure; what was acknowledged before it stays
/// acknowledged.
pub async fn push(
    engine: &Engine,
    central: &Central,
    opts: &SyncOptions,
    report: &mut SyncReport,
    progress: &mut (dyn FnMut(Step) + Send),
) -> Result<()> {
    let start = Instant::now();
    let total = engine.outbox_depth()?;
    let mut done = 0;
    loop {
        let batch = engine.outbox_batch(opts.batch_size.max(1))?;
        if batch.entries.is_empty() {
            break;
        }
        if !batch.changes.is_empty() {
            let outcomes = opts
                .backoff
                .retry("push", || central.push(&batch.changes))
                .await?;
            for o in &outcomes {
                match o.outcome {
                    Outcome::Applied => report.push_applied += 1,
                    Outcome::Duplicate => report.push_duplicate += 1,
                    Outcome::Stale => report.push_stale += 1,
                }
            }
            report.pushed += batch.changes.len();
            report.pushed_chunks += batch.changes.iter().map(|c| c.chunk_count()).sum::<usize>();
        }
        engine.acknowledge(&batch.entries)?;
        done += batch.entries.len();
        progress(Step::Pushed {
            done: done.min(total.max(done)),
            total: total.max(done),
        });
    }
    engine.set_sync_state("last_push_ms", &now_ms().to_string())?;
    report.push_seconds += start.elapsed().as_secs_f64();
    Ok(())
}

/// The key of the pull cursor for `central` (endpoint and user) in the local sync state.
pub fn cursor_key(central: &Central) -> String {
    format!("cursor:{}", central.identity())
}

/// Pulls everything after the stored cursor and applies it.
///
/// # Errors
/// The first error that retrying did not cure; pages applied before it stay applied, with
/// their cursor.
pub async fn pull(
    engine: &Engine,
    central: &Central,
    opts: &SyncOptions,
    report: &mut SyncReport,
    progress: &mut (dyn FnMut(Step) + Send),
) -> Result<()> {
    let start = Instant::now();
    let key = cursor_key(central);
    let device = engine.device_id();
    loop {
        let cursor = engine.sync_state(&key)?.unwrap_or_default();
        let page = opts
            .backoff
            .retry("pull", || {
                central.pull(&cursor, opts.pull_page.max(1), device)
            })
            .await?;
        let applied = engine.apply_pulled(
            &page.changes,
            &key,
            &page.next_cursor,
            (&opts.model, opts.dims),
        )?;
        report.pulled += page.changes.len();
        report.pulled_chunks += page.changes.iter().map(|c| c.chunk_count()).sum::<usize>();
        report.pull_applied += applied.applied;
        report.pull_skipped += applied.skipped;
        report.reembed += applied.reembed;
        progress(Step::Pulled {
            done: report.pulled,
        });
        if !page.more {
            break;
        }
    }
    engine.set_sync_state("last_pull_ms", &now_ms().to_string())?;
    report.pull_seconds += start.elapsed().as_secs_f64();
    Ok(())
}

/// Checks the central schema and its dimension against `opts`, retrying transient failures.
///
/// # Errors
/// As [`Central::check`].
pub async fn check(central: &Central, opts: &SyncOptions) -> Result<CentralInfo> {
    opts.backoff
        .retry("check", || central.check(&opts.model, opts.dims))
        .await
}

/// One full round: check the central schema, push the outbox, pull what is new.
///
/// # Errors
/// Schema and dimension mismatches before anything moves; then as [`push`] and [`pull`].
pub async fn sync_once(
    engine: &Engine,
    central: &Central,
    opts: &SyncOptions,
    progress: &mut (dyn FnMut(Step) + Send),
) -> Result<SyncReport> {
    check(central, opts).await?;
    let mut report = SyncReport::default();
    push(engine, central, opts, &mut report, progress).await?;
    pull(engine, central, opts, &mut report, progress).await?;
    Ok(report)
}

/// One collection's comparison.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyRow {
    /// Collection name (`_conversations` for conversations and messages).
    pub collection: String,
    /// Local counts and digests.
    pub local: Value,
    /// Central counts and digests.
    pub central: Value,
    /// Whether they are identical.
    pub equal: bool,
}

/// Local vs central, per collection.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Every collection on either side.
    pub collections: Vec<VerifyRow>,
    /// Whether all are identical.
    pub equal: bool,
}

/// Compares the local store with the central one (counts and content checksums).
///
/// # Errors
/// Transport and local errors.
pub async fn verify(engine: &Engine, central: &Central, backoff: &Backoff) -> Result<VerifyReport> {
    let local = engine.checksums()?;
    let remote = backoff.retry("verify", || central.checksums()).await?;
    Ok(compare(&local, &remote))
}

/// Compares two checksum maps; a collection missing on one side counts as empty there.
pub fn compare(local: &Map<String, Value>, central: &Map<String, Value>) -> VerifyReport {
    let mut names: Vec<&String> = local.keys().chain(central.keys()).collect();
    names.sort();
    names.dedup();
    let collections: Vec<VerifyRow> = names
        .into_iter()
        .map(|name| {
            let l = local.get(name).cloned().unwrap_or(Value::Null);
            let c = central.get(name).cloned().unwrap_or(Value::Null);
            let equal = l == c || (is_empty(&l) && is_empty(&c));
            VerifyRow {
                collection: name.clone(),
                local: l,
                central: c,
                equal,
            }
        })
        .collect();
    let equal = collections.iter().all(|r| r.equal);
    VerifyReport { collections, equal }
}

/// A missing collection, or one whose counts are all zero.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m
            .iter()
            .filter(|(k, _)| !k.ends_with("_sha256"))
            .all(|(_, v)| v.as_u64() == Some(0)),
        _ => false,
    }
}

/// Time since `ms` (Unix milliseconds), for status output.
pub fn age(ms: i64) -> Duration {
    Duration::from_millis((now_ms() - ms).max(0) as u64)
}
