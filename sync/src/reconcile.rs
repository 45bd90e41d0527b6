//! The reconciler: push the outbox, pull after the durable cursor, and compare replicas.
//!
//! Outbox rows are removed only after the server has answered for their batch, and a pulled
//! page is applied in one local transaction with the cursor that follows it. So a connection
//! cut at any point costs at most a repeated batch (which the server recognises as duplicates)
//! and never a lost or skipped change.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};

use outpost_core::{hlc, Change, DocumentChange, Engine, OutboxEntry};
use sha2::{Digest, Sha256};

use crate::backoff::Backoff;
use crate::central::{Central, CentralInfo, Outcome};
use crate::error::{Error, Result};

/// The default cap on a push call's records, 2 MiB of JSON: about 450 chunks of 384-d vectors,
/// well under a second of the server's work on the test Postgres, so that a small hosted project
/// stays inside the `authenticated` role's 8-second `statement_timeout`.
pub const DEFAULT_BATCH_BYTES: usize = 2 * 1024 * 1024;

/// The default cap on a pull page, 4 MiB of records: a page a phone parses and applies in one
/// transaction without holding much memory.
pub const DEFAULT_PULL_BYTES: usize = 4 * 1024 * 1024;

/// How to sync.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Outbox entities per push call.
    pub batch_size: usize,
    /// Most bytes of records (as JSON) per push call; a record larger than this goes alone.
    pub batch_bytes: usize,
    /// How long a change the server refused on its own is set aside before it is tried again
    /// (an edit of it is pushed at once).
    pub park_for: Duration,
    /// Records per pull call.
    pub pull_page: usize,
    /// Most bytes of records per pull page (a server before schema version 2 caps by rows
    /// only); a larger record comes alone.
    pub pull_bytes: usize,
    /// Retry policy for transient failures.
    pub backoff: Backoff,
    /// The local model id (pulled vectors of other models are re-embedded).
    pub model: String,
    /// The local model's dimension.
    pub dims: usize,
}

impl SyncOptions {
    /// Defaults for `model` / `dims`: batches of 100 records and at most
    /// [`DEFAULT_BATCH_BYTES`], pull pages of 1,000, refused changes set aside for 15 minutes.
    pub fn new(model: impl Into<String>, dims: usize) -> Self {
        Self {
            batch_size: 100,
            batch_bytes: DEFAULT_BATCH_BYTES,
            park_for: Duration::from_secs(15 * 60),
            pull_page: 1000,
            pull_bytes: DEFAULT_PULL_BYTES,
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
    /// Records the server refused even alone, set aside (see [`SyncStatus::parked`]).
    pub parked: usize,
    /// Push calls made (each within the batch's row and byte caps, or a part of a refused one),
    /// staging calls included.
    pub push_calls: usize,
    /// Documents too large for one call, pushed in staged parts and committed at once.
    pub push_staged: usize,
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

impl SyncReport {
    /// Counts one pushed record's outcome.
    fn tally(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Applied => self.push_applied += 1,
            Outcome::Duplicate => self.push_duplicate += 1,
            Outcome::Stale => self.push_stale += 1,
        }
    }
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
    /// Changes the central store refused even alone, with its reason: they stay in the
    /// outbox, do not hold up the rest, and are tried again when due or when edited.
    pub parked: Vec<outpost_core::Parked>,
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
        parked: engine.parked()?,
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
        let items = pair(batch);
        // The longest prefix within the byte cap, and at least one record; a document over
        // the cap goes alone, in staged parts where the server takes them.
        let mut bytes = 0;
        let mut take = 0;
        let mut staged = false;
        for (_, change) in &items {
            let size = match change {
                Some(c) => central.push_size(c).await,
                None => 0,
            };
            if size > opts.batch_bytes && stageable(change) && central.staged_push().await {
                staged = take == 0;
                take += usize::from(staged);
                break;
            }
            if take > 0 && bytes + size > opts.batch_bytes {
                break;
            }
            bytes += size;
            take += 1;
        }
        if staged {
            let (entry, change) = &items[0];
            if let Some(Change::Document(doc)) = change {
                push_staged(engine, central, opts, report, entry, doc, opts.batch_bytes).await?;
            }
        } else {
            push_split(engine, central, opts, report, &items[..take]).await?;
        }
        done += take;
        progress(Step::Pushed {
            done: done.min(total.max(done)),
            total: total.max(done),
        });
    }
    engine.set_sync_state("last_push_ms", &now_ms().to_string())?;
    report.push_seconds += start.elapsed().as_secs_f64();
    Ok(())
}

/// Each outbox entry with its change record (`None` for an entity that no longer exists: its
/// entry is only acknowledged).
fn pair(batch: outpost_core::PushBatch) -> Vec<(OutboxEntry, Option<Change>)> {
    let mut changes: std::collections::HashMap<(outpost_core::Kind, String), Change> = batch
        .changes
        .into_iter()
        .map(|c| ((c.kind(), c.id().to_string()), c))
        .collect();
    batch
        .entries
        .into_iter()
        .map(|e| {
            let change = changes.remove(&(e.kind, e.id.clone()));
            (e, change)
        })
        .collect()
}

/// Pushes `items`, splitting a part the server refuses as too large or malformed into halves
/// until the one record it cannot take is alone; that record is set aside
/// ([`Engine::park`]) with the server's reason, and the rest goes on.
async fn push_split(
    engine: &Engine,
    central: &Central,
    opts: &SyncOptions,
    report: &mut SyncReport,
    items: &[(OutboxEntry, Option<Change>)],
) -> Result<()> {
    // Parts still to push, the next one last, so that records go in outbox order.
    let mut parts = vec![items];
    while let Some(part) = parts.pop() {
        let entries: Vec<OutboxEntry> = part.iter().map(|(e, _)| e.clone()).collect();
        let changes: Vec<Change> = part.iter().filter_map(|(_, c)| c.clone()).collect();
        if changes.is_empty() {
            engine.acknowledge(&entries)?;
            continue;
        }
        report.push_calls += 1;
        match opts.backoff.retry("push", || central.push(&changes)).await {
            Ok(outcomes) => {
                for o in &outcomes {
                    report.tally(o.outcome);
                }
                report.pushed += changes.len();
                report.pushed_chunks += changes.iter().map(Change::chunk_count).sum::<usize>();
                engine.acknowledge(&entries)?;
            }
            Err(e) if refused_as_sent(&e) => {
                if let [(entry, change)] = part {
                    match change {
                        // Too large or too slow even alone: in parts, each half the size.
                        Some(Change::Document(doc))
                            if matches!(e, Error::TooLarge { .. })
                                && stageable(change)
                                && central.staged_push().await =>
                        {
                            let size = central.push_size(&changes[0]).await;
                            let part_bytes = (size / 2).min(opts.batch_bytes);
                            push_staged(engine, central, opts, report, entry, doc, part_bytes)
                                .await?;
                        }
                        _ => park(engine, opts, report, entry, &e)?,
                    }
                } else {
                    let (first, second) = part.split_at(part.len() / 2);
                    parts.push(second);
                    parts.push(first);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sets `entry` aside with the server's reason `e`, to be tried again after
/// [`SyncOptions::park_for`] or when edited.
fn park(
    engine: &Engine,
    opts: &SyncOptions,
    report: &mut SyncReport,
    entry: &OutboxEntry,
    e: &Error,
) -> Result<()> {
    let until = now_ms() + opts.park_for.as_millis() as i64;
    tracing::warn!(kind = entry.kind.as_str(), id = %entry.id, error = %e, "set aside: the server refuses this change even alone");
    engine.park(entry, &e.to_string(), until)?;
    report.parked += 1;
    Ok(())
}

/// Whether `change` can go in staged parts: a live document of more than one chunk.
fn stageable(change: &Option<Change>) -> bool {
    matches!(change, Some(Change::Document(d)) if !d.deleted && d.chunks.len() > 1)
}

/// The staging upload of one version of a document: derived from its id and stamp, so that a
/// push resumed after a crash or a cut restages into the same upload (parts already there are
/// replaced, not duplicated), while a newer version gets a new one.
pub fn upload_id(doc: &DocumentChange) -> String {
    let digest = Sha256::new()
        .chain_update(b"outpost-staged-upload\0")
        .chain_update(doc.id.as_bytes())
        .chain_update(b"\0")
        .chain_update(doc.hlc.to_be_bytes())
        .chain_update(doc.device.as_bytes())
        .finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    // A version-8 (custom), RFC 9562 variant UUID.
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Pushes one document too large for a call: its chunks staged in parts of at most
/// `part_bytes` (at least one chunk each; a part the server refuses as too large is halved),
/// then committed in one server transaction ([`Central::push_staged`]). A chunk the server
/// refuses even alone, or a commit it refuses, sets the document aside as [`push_split`] does.
async fn push_staged(
    engine: &Engine,
    central: &Central,
    opts: &SyncOptions,
    report: &mut SyncReport,
    entry: &OutboxEntry,
    doc: &DocumentChange,
    part_bytes: usize,
) -> Result<()> {
    let upload = upload_id(doc);
    let mut sizes = Vec::with_capacity(doc.chunks.len());
    for chunk in &doc.chunks {
        sizes.push(central.chunk_size(chunk).await);
    }
    let mut part_bytes = part_bytes.max(1);
    let mut first = 0;
    while first < doc.chunks.len() {
        let mut end = first + 1;
        let mut bytes = sizes[first];
        while end < doc.chunks.len() && bytes + sizes[end] <= part_bytes {
            bytes += sizes[end];
            end += 1;
        }
        report.push_calls += 1;
        let part = &doc.chunks[first..end];
        match opts
            .backoff
            .retry("stage", || central.stage(&upload, first, part))
            .await
        {
            Ok(_) => first = end,
            Err(Error::TooLarge { .. }) if end - first > 1 => part_bytes = bytes / 2,
            Err(e) if refused_as_sent(&e) => return park(engine, opts, report, entry, &e),
            Err(e) => return Err(e),
        }
    }
    report.push_calls += 1;
    let n = doc.chunks.len();
    match opts
        .backoff
        .retry("push", || central.push_staged(&upload, doc, n))
        .await
    {
        Ok(o) => {
            report.tally(o.outcome);
            report.pushed += 1;
            report.pushed_chunks += n;
            report.push_staged += 1;
            engine.acknowledge(std::slice::from_ref(entry))?;
            Ok(())
        }
        Err(e) if refused_as_sent(&e) => park(engine, opts, report, entry, &e),
        Err(e) => Err(e),
    }
}

/// Whether the server refused this call for what it carried (too large, too slow, or a record
/// it rejects), so that smaller calls may pass; not the network, the credentials or the schema.
fn refused_as_sent(e: &Error) -> bool {
    matches!(
        e,
        Error::TooLarge { .. }
            | Error::Server {
                transient: false,
                ..
            }
    )
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
                central.pull(
                    &cursor,
                    opts.pull_page.max(1),
                    Some(opts.pull_bytes),
                    device,
                )
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
