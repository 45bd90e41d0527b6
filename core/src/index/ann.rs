//! Approximate nearest-neighbour search: one HNSW graph (usearch) per collection, derived from
//! the collection's vec0 table.
//!
//! The graph holds int8 copies of the (unit) vectors, scaled per collection to use the whole
//! int8 range; it only proposes candidates. Each candidate is then scored exactly in f32 from
//! the index's own copy of the vectors ([`vectors`]), so the order returned is exact cosine
//! order and the int8 rounding costs no recall, only a few more candidates.
//!
//! Invariants:
//! - The SQLite file is the source of truth. An index holds nothing that is not in SQLite, its
//!   files can be deleted at any time, and a missing or unreadable file is rebuilt from SQLite.
//! - Every change of a chunk's vector appends the chunk's seq to `ann_log` in the same
//!   transaction (schema v5). An index records the last log id it applied; before each search it
//!   replays the log after that id, inside one read transaction, taking for each logged seq what
//!   the vec0 table holds now. A committed insert or delete is therefore in the next search's
//!   results, whichever connection or process wrote it.
//! - One index per (database file, database identity, collection) per process, shared by every
//!   [`Store`] on that file: readers in a pool search one graph.
//! - Saved as `<db>.ann/c<collection>-<device>-<applied log id>.usearch` with its f32 rows in
//!   `….vectors` beside it, each written under a temporary name and renamed (the rows first);
//!   the newest complete pair is loaded on start, and only the log after it is replayed. Both
//!   begin with the Outpost header (`index::header`; the graph's payload is usearch's own
//!   serialization): a file that fails its checks, or disagrees with the collection or with
//!   the other file, is named in one warning and the index rebuilt from SQLite; the rebuild's
//!   save supersedes it.
//! - Collections with fewer than [`MIN_VECTORS`] vectors are searched exactly by sqlite-vec.
//! - When to load, catch up, rebuild and save is `index::derived::current`'s, shared with the
//!   text index; this module says how (`Ann`'s `DerivedIndex` implementation).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, RwLock};

use rusqlite::Connection;
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::db::filter::SqlFilter;
use crate::db::index::{count_vectors, for_each_vector, log_after, trim_log, VectorRows};
use crate::db::log::{first_log_id, max_log_id};
use crate::db::{blob_to_vector, in_read_tx, Store};
use crate::error::{Error, Result};
use crate::model::Collection;

use super::derived::{self, DerivedIndex};
use super::header::{self, Rejected};
use super::vectors::{dot, dots_i8, Vectors};

/// Memory a database's loaded vector indexes take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct IndexMemory {
    /// Bytes of process memory: the graphs, and the f32 rows changed since the last save.
    pub resident: usize,
    /// Bytes of the saved f32 rows, memory-mapped: page cache that the system can reclaim.
    pub mapped: usize,
    /// Bytes of process memory the text index takes (its postings).
    pub text: usize,
}

/// Below this many vectors a collection is scanned exactly instead.
pub const MIN_VECTORS: usize = 2_000;

/// Candidates the graph search keeps (usearch's `expansion_search`) in a collection of `size`
/// vectors, unless a request says otherwise, for the graph a build at that size makes (see
/// [`connectivity_for`]).
#[must_use]
pub fn default_expansion(size: usize) -> usize {
    breadth(size, connectivity_for(size))
}

/// The default breadth for a graph of `size` vectors with `connectivity` links per node: 64 up
/// to about 300k, then growing as size^0.6 — from 32 · (size / 100k)^0.6 with 16 links (127 at
/// 1M), from 20 · … with 32 (79 at 1M). Measured: recall@10 ≥ 0.98 on SciFact's real
/// embeddings (16k chunks; 0.96 at 32) and on the clustered benchmark data at 100k and 1M.
fn breadth(size: usize, connectivity: usize) -> usize {
    let base = if connectivity >= 32 { 20.0 } else { 32.0 };
    let scaled = base * (size as f64 / 100_000.0).powf(0.6);
    (scaled as usize).clamp(64, 512)
}

/// Links per node (HNSW `M`) for a graph built over `size` vectors: 16, and 32 from
/// [`LARGE_GRAPH`] vectors on. Measured on the clustered benchmark data: at 100k, 32 links
/// were twice as slow for the same recall (twice the neighbours scored per hop); at 1M they
/// reached recall 0.989 at breadth 64 where 16 links needed 128 for 0.98, 22 % faster.
fn connectivity_for(size: usize) -> usize {
    if size >= LARGE_GRAPH.load(std::sync::atomic::Ordering::Relaxed) {
        32
    } else {
        16
    }
}

/// A graph of this many vectors is built with 32 links per node.
/// (A static only so that a unit test can lower it.)
static LARGE_GRAPH: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(250_000);

/// How many of the graph's candidates are rescored in f32 for a `depth`-deep answer.
fn rescored(ef: usize, depth: usize) -> usize {
    ef.min((4 * depth).max(ef / 2)).max(depth)
}
/// Candidates kept while inserting (HNSW `efConstruction`).
const EXPANSION_ADD: usize = 128;
/// A filter that keeps at most this many vectors is answered by scanning their int8 codes
/// (49 MB at 384 dimensions, about 5 ms) and rescoring the best in f32; above it, by the graph
/// search with the filter as a predicate, which needs a breadth of ef / share.
const EXACT_FILTER_MAX: usize = 128_000;
/// Rows of a filter's codes scored per block of its scan: 384 KB of codes at 384 dimensions,
/// whose dot products stay in L1 while the best are picked out.
const SCAN_BLOCK: usize = 1024;
/// Concurrent searches one index allows; usearch needs per-thread scratch reserved up front.
const SEARCH_THREADS: usize = 64;

fn err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Index(format!("{what}: {e}"))
}

/// One collection's graph, its f32 rows, and how far both have applied the log.
pub(super) struct Ann {
    index: Index,
    vectors: Vectors,
    applied: i64,
    unsaved: usize,
    /// usearch keeps the search breadth in the index, not in the call: a search holds this
    /// shared while it searches at the index's breadth, and only a search that needs another
    /// breadth takes it exclusively to change it, so no search sees its breadth changed under it.
    breadth: RwLock<()>,
}

impl Ann {
    fn new(index: Index, vectors: Vectors, applied: i64, unsaved: usize) -> Self {
        Self {
            index,
            vectors,
            applied,
            unsaved,
            breadth: RwLock::new(()),
        }
    }

    /// Runs `search` with the index's search breadth set to `ef` for its whole duration.
    fn with_breadth<T>(&self, ef: usize, search: impl FnOnce(&Index) -> T) -> Result<T> {
        fn poisoned<G>(_: G) -> Error {
            Error::Index("an index lock is poisoned".into())
        }
        {
            let _shared = self.breadth.read().map_err(poisoned)?;
            if self.index.expansion_search() == ef {
                return Ok(search(&self.index));
            }
        }
        let _exclusive = self.breadth.write().map_err(poisoned)?;
        if self.index.expansion_search() != ef {
            self.index.change_expansion_search(ef);
        }
        Ok(search(&self.index))
    }

    /// The `depth` best of `candidates` by exact f32 similarity to `q`, ties by seq.
    fn rescore(&self, q: &[f32], candidates: &[u64], depth: usize) -> Vec<(i64, f64)> {
        let mut exact: Vec<(i64, f64)> = candidates
            .iter()
            .filter_map(|&k| {
                let v = self.vectors.get(k as i64)?;
                Some((k as i64, f64::from(dot(q, v))))
            })
            .collect();
        exact.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        exact.truncate(depth);
        exact
    }
}

type Key = (PathBuf, String, i64);

/// The seqs of the `take` codes in `set` with the highest int8 dot product with `q8`, in no
/// particular order. The scan goes block by block and keeps only products above the running
/// `take`-th best, so no per-row buffer is allocated.
fn best_codes(set: &FilterSet, q8: &[i8], take: usize) -> Vec<u64> {
    let dims = q8.len().max(1);
    let mut dots = Vec::with_capacity(SCAN_BLOCK);
    let mut best: Vec<(i32, u64)> = Vec::with_capacity(2 * take + SCAN_BLOCK);
    let mut floor = i32::MIN;
    for (codes, seqs) in set
        .codes
        .chunks(SCAN_BLOCK * dims)
        .zip(set.seqs.chunks(SCAN_BLOCK))
    {
        dots.clear();
        dots_i8(codes, q8, &mut dots);
        best.extend(
            dots.iter()
                .zip(seqs)
                .filter(|(d, _)| **d >= floor)
                .map(|(&d, &s)| (d, s)),
        );
        if take > 0 && best.len() > 2 * take {
            best.select_nth_unstable_by(take - 1, |a, b| b.0.cmp(&a.0));
            best.truncate(take);
            floor = best[take - 1].0;
        }
    }
    if best.len() > take {
        best.select_nth_unstable_by(take.saturating_sub(1), |a, b| b.0.cmp(&a.0));
        best.truncate(take);
    }
    best.into_iter().map(|(_, s)| s).collect()
}

/// The chunks a filter keeps in a collection: their seqs (sorted) and, for a selective filter,
/// their int8 codes in the same order, scanned instead of the graph.
struct FilterSet {
    seqs: Vec<u64>,
    codes: Vec<i8>,
}

/// A filter's kept chunks with the data version they were read at: (last `ann_log` id,
/// persisted HLC, int8 scale). Every chunk change moves the first, every document write the
/// second and an index rebuild the third, so an entry is used only while all are unchanged.
type FilterEntry = ((i64, i64, u32), Arc<FilterSet>);

static FILTER_CACHE: LazyLock<Mutex<HashMap<String, FilterEntry>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
/// The cache is emptied when its codes pass this many bytes.
const FILTER_CACHE_BYTES: usize = 256 << 20;

static REGISTRY: LazyLock<Mutex<HashMap<Key, Arc<RwLock<Ann>>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn options(dims: usize, connectivity: usize) -> IndexOptions {
    IndexOptions {
        dimensions: dims,
        // Inner product of unit vectors is their cosine, 30–45 % cheaper to compute: vectors
        // are normalised on the way in (`unit`).
        metric: MetricKind::IP,
        // A quarter of f32's memory and the fastest kernels; the vectors are quantised by
        // `Vectors::quantize` (usearch's own f32 → int8 cast assumes components near ±1 and
        // left unit 384-d vectors about three bits, capping recall@10 at 0.89).
        quantization: ScalarKind::I8,
        connectivity,
        expansion_add: EXPANSION_ADD,
        expansion_search: breadth(0, connectivity),
        multi: false,
    }
}

/// The folder beside the database that holds its saved indexes.
pub(crate) fn ann_dir(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".ann");
    db.with_file_name(name)
}

fn file_prefix(collection_id: i64, device: &str) -> String {
    format!("c{collection_id}-{}-", device_tag(device))
}

/// The database identity as it appears in index file names.
pub(crate) fn device_tag(device: &str) -> String {
    device
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect()
}

/// The log is trimmed once it holds this many rows.
const TRIM_FROM: i64 = 10_000;

fn grow(index: &Index, extra: usize) -> Result<()> {
    let need = index.size() + extra;
    if need > index.capacity() {
        let cap = need.max(index.capacity() * 3 / 2).max(1024);
        index
            .reserve_capacity_and_threads(cap, SEARCH_THREADS)
            .map_err(|e| err("reserving index capacity", e))?;
    }
    Ok(())
}

/// `v` scaled to unit length (a zero vector stays zero).
fn unit(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter().map(|x| x / norm).collect()
    } else {
        v.to_vec()
    }
}

/// Sets (or with `None` removes) the vector of `seq` in the graph and the f32 rows.
fn put(ann: &mut Ann, seq: i64, vector: Option<&[f32]>) -> Result<()> {
    let key = seq as u64;
    if ann.index.contains(key) {
        ann.index
            .remove(key)
            .map_err(|e| err("removing from the index", e))?;
    }
    let v = vector.map(unit);
    if let Some(v) = &v {
        grow(&ann.index, 1)?;
        ann.index
            .add(key, &ann.vectors.quantize(v))
            .map_err(|e| err("adding to the index", e))?;
    }
    ann.vectors.set(seq, v.as_deref());
    Ok(())
}

/// Builds the graph from the vec0 table. The caller holds a read transaction.
fn build(conn: &Connection, coll: &Collection) -> Result<Ann> {
    let applied = max_log_id(conn)?;
    let mut vectors = Vectors::new(coll.dims);
    let mut seqs: Vec<i64> = Vec::new();
    for_each_vector(conn, coll, |seq, blob| {
        vectors.set(seq, Some(&unit(&blob_to_vector(blob))));
        seqs.push(seq);
        Ok(())
    })?;
    vectors.fit_scale();
    let index = Index::new(&options(coll.dims, connectivity_for(seqs.len())))
        .map_err(|e| err("creating an index", e))?;
    index
        .reserve_capacity_and_threads(seqs.len().max(1024), SEARCH_THREADS)
        .map_err(|e| err("reserving index capacity", e))?;
    // One thread inserts. usearch 2.26's concurrent `add` strands some nodes (stored, but no
    // search reaches them: usearch issue #735): measured on 3,000 SciFact vectors, a build on 2
    // threads lost up to 2 of 225 queries' exact top 10 from a top 100 searched at breadth 3,000,
    // on 8 threads 22, on 1 thread none.
    for seq in &seqs {
        let v = vectors.get(*seq).ok_or_else(|| {
            Error::Index(format!(
                "building the index of collection '{}' failed",
                coll.name
            ))
        })?;
        index.add(*seq as u64, &vectors.quantize(v)).map_err(|e| {
            err(
                &format!("building the index of collection '{}'", coll.name),
                e,
            )
        })?;
    }
    Ok(Ann::new(index, vectors, applied, seqs.len()))
}

/// The rows file saved with the index file `path`.
fn vectors_path(path: &Path) -> PathBuf {
    path.with_extension("vectors")
}

/// The graph saved at `path` with the rows beside it, if both are sound and agree with `coll`
/// and with each other.
fn load(path: &Path, applied: i64, coll: &Collection) -> std::result::Result<Ann, Rejected> {
    let reject = |why: String| Rejected::new(path, why);
    let index = {
        // Mapped rather than read: usearch copies the graph out, and the map costs no heap.
        let map = header::map(path, false).map_err(|e| reject(format!("reading: {e}")))?;
        let (graph, _) = header::read(&header::GRAPH, &map).map_err(reject)?;
        Index::restore_from_buffer(graph).map_err(|e| reject(format!("usearch: {e}")))?
    };
    if index.dimensions() != coll.dims {
        return Err(reject(format!(
            "holds {}-d vectors, expected {}-d",
            index.dimensions(),
            coll.dims
        )));
    }
    let vectors = Vectors::open(&vectors_path(path), coll.dims)?;
    if vectors.len() != index.size() {
        return Err(reject(format!(
            "{} vectors in the graph, {} rows beside it",
            index.size(),
            vectors.len()
        )));
    }
    index
        .reserve_capacity_and_threads(index.size().max(1024), SEARCH_THREADS)
        .map_err(|e| reject(format!("reserving capacity: {e}")))?;
    Ok(Ann::new(index, vectors, applied, 0))
}

/// Replays the log after `ann.applied`. The caller holds a read transaction.
fn catch_up(conn: &Connection, coll: &Collection, ann: &mut Ann) -> Result<()> {
    let log = log_after(conn, ann.applied)?;
    let Some(&(last, _)) = log.last() else {
        return Ok(());
    };
    let mut seqs: Vec<i64> = log.into_iter().map(|(_, s)| s).collect();
    seqs.sort_unstable();
    seqs.dedup();
    let mut rows = VectorRows::new(conn, coll)?;
    for seq in &seqs {
        let blob = rows.get(*seq)?;
        let v = blob.map(|b| blob_to_vector(&b));
        put(ann, *seq, v.as_deref())?;
    }
    ann.applied = last;
    ann.unsaved += seqs.len();
    Ok(())
}

fn save(dir: &Path, prefix: &str, ann: &mut Ann) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| err(&format!("creating {}", dir.display()), e))?;
    let name = format!("{prefix}{}.usearch", ann.applied);
    let path = dir.join(&name);
    let rows = vectors_path(&path);
    // The rows first: an index file is only loaded with its rows beside it.
    ann.vectors.save(&rows)?;
    // usearch serialises into memory so that the file can begin with our header: while it is
    // written, the graph takes twice its memory.
    let mut graph = vec![0u8; ann.index.serialized_length()];
    ann.index
        .save_to_buffer(&mut graph)
        .map_err(|e| err("saving the index", e))?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&graph);
    let head = header::write(&header::GRAPH, graph.len() as u64, &crc);
    header::write_file(&path, |f| {
        f.write_all(&head)?;
        f.write_all(&graph)
    })?;
    drop(graph);
    // Older files of this collection are superseded.
    let keep = rows.file_name().map(|n| n.to_string_lossy().to_string());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            let ours = n.ends_with(".usearch") || n.ends_with(".vectors");
            if n != name && Some(&n) != keep.as_ref() && n.starts_with(prefix) && ours {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    ann.unsaved = 0;
    Ok(())
}

impl DerivedIndex for Ann {
    type Source = Collection;
    const SUFFIX: &'static str = ".usearch";

    fn build(conn: &Connection, coll: &Collection) -> Result<Self> {
        build(conn, coll)
    }

    fn catch_up(&mut self, conn: &Connection, coll: &Collection) -> Result<()> {
        catch_up(conn, coll, self)
    }

    fn save(&mut self, dir: &Path, prefix: &str) -> Result<()> {
        save(dir, prefix, self)
    }

    fn load(path: &Path, applied: i64, coll: &Collection) -> std::result::Result<Self, Rejected> {
        load(path, applied, coll)
    }

    fn verify(&self, conn: &Connection, coll: &Collection) -> Result<Vec<String>> {
        let name = Self::name(coll);
        let rows = count_vectors(conn, coll)?;
        let mut problems = derived::verify_counts(
            conn,
            &name,
            self.applied,
            self.index.size(),
            usize::try_from(rows).unwrap_or(0),
        )?;
        if self.vectors.len() != self.index.size() {
            problems.push(format!(
                "{name}: {} vectors in the graph, {} f32 rows",
                self.index.size(),
                self.vectors.len()
            ));
        }
        if self.vectors.dims() != coll.dims {
            problems.push(format!(
                "{name}: {}-d rows, the collection is {}-d",
                self.vectors.dims(),
                coll.dims
            ));
        }
        Ok(problems)
    }

    fn applied(&self) -> i64 {
        self.applied
    }

    fn unsaved(&self) -> usize {
        self.unsaved
    }

    fn len(&self) -> usize {
        self.index.size()
    }

    fn memory(&self) -> usize {
        self.index.memory_usage() + self.vectors.heap_bytes()
    }

    fn fits(&self, coll: &Collection) -> bool {
        self.vectors.dims() == coll.dims
    }

    fn name(coll: &Collection) -> String {
        format!("the vector index of collection '{}'", coll.name)
    }
}

impl Store {
    /// The current index of `coll`, loaded or built on first use and caught up with the log
    /// (see `derived::current`).
    pub(super) fn ann(&self, coll: &Collection) -> Result<Arc<RwLock<Ann>>> {
        let key: Key = (self.canonical.clone(), self.device.clone(), coll.id);
        let prefix = file_prefix(coll.id, &self.device);
        derived::current(
            self,
            &REGISTRY,
            key,
            &ann_dir(&self.canonical),
            &prefix,
            coll,
        )
    }

    /// Chunk seqs of `coll` nearest to `vector` with their cosine similarity, best first, or
    /// `None` when the collection is small enough to scan exactly.
    pub(crate) fn ann_ranking(
        &self,
        coll: &Collection,
        vector: &[f32],
        depth: usize,
        expansion: Option<usize>,
    ) -> Result<Option<Vec<(i64, f64)>>> {
        let entry = self.ann(coll)?;
        let ann = entry
            .read()
            .map_err(|_| Error::Index("an index lock is poisoned".into()))?;
        let size = ann.index.size();
        if size < MIN_VECTORS {
            return Ok(None);
        }
        let ef = expansion
            .unwrap_or_else(|| breadth(size, ann.index.connectivity()))
            .max(depth);
        let q = unit(vector);
        let q8 = ann.vectors.quantize(&q);
        let found = ann
            .with_breadth(ef, |index| index.search(&q8, rescored(ef, depth)))?
            .map_err(|e| err("searching the index", e))?;
        Ok(Some(ann.rescore(&q, &found.keys, depth)))
    }

    /// The chunks of `coll` that `filter` (conditions over `documents d`) keeps, as of log id
    /// `applied`; with their int8 codes when there are few enough to scan.
    fn filter_set(
        &self,
        coll: &Collection,
        ann: &Ann,
        filter: &SqlFilter,
    ) -> Result<Arc<FilterSet>> {
        let version = (
            ann.applied,
            crate::db::read_hlc(&self.conn)?,
            ann.vectors.scale().to_bits(),
        );
        let key = format!(
            "{}|{}|{}|{}|{:?}",
            self.canonical.display(),
            self.device,
            coll.id,
            filter.sql,
            filter.params
        );
        let cached = FILTER_CACHE
            .lock()
            .map_err(|_| Error::Index("the filter cache is poisoned".into()))?
            .get(&key)
            .filter(|(v, _)| *v == version)
            .map(|(_, set)| set.clone());
        if let Some(set) = cached {
            return Ok(set);
        }
        let mut seqs: Vec<u64> = self
            .filtered_chunks(Some(coll.id), &filter.sql, &filter.params)?
            .into_iter()
            .map(|s| s as u64)
            .collect();
        let mut codes = Vec::new();
        if seqs.len() <= EXACT_FILTER_MAX {
            // Chunks the index has not seen (a write after its catch-up) are left out, as the
            // graph search would leave them out.
            codes.reserve(seqs.len() * ann.vectors.dims());
            seqs.retain(|s| match ann.vectors.get(*s as i64) {
                Some(v) => {
                    codes.extend(ann.vectors.quantize(v));
                    true
                }
                None => false,
            });
        }
        let set = Arc::new(FilterSet { seqs, codes });
        let mut cache = FILTER_CACHE
            .lock()
            .map_err(|_| Error::Index("the filter cache is poisoned".into()))?;
        let held: usize = cache.values().map(|(_, s)| s.codes.len()).sum();
        if cache.len() >= 256 || held + set.codes.len() > FILTER_CACHE_BYTES {
            cache.clear();
        }
        cache.insert(key, (version, set.clone()));
        Ok(set)
    }

    /// As [`Store::ann_ranking`], among the chunks that `filter` keeps. A selective filter
    /// is answered by scanning the kept chunks' int8 codes (cached per filter and data version)
    /// and rescoring the best in f32; a broad one by a graph search that skips the rest,
    /// searching wider the fewer it keeps.
    pub(crate) fn ann_filtered_ranking(
        &self,
        coll: &Collection,
        vector: &[f32],
        depth: usize,
        expansion: Option<usize>,
        filter: &SqlFilter,
    ) -> Result<Option<Vec<(i64, f64)>>> {
        let entry = self.ann(coll)?;
        let ann = entry
            .read()
            .map_err(|_| Error::Index("an index lock is poisoned".into()))?;
        let size = ann.index.size();
        if size < MIN_VECTORS {
            return Ok(None);
        }
        let set = self.filter_set(coll, &ann, filter)?;
        let q = unit(vector);
        let q8 = ann.vectors.quantize(&q);
        let base = expansion
            .unwrap_or_else(|| breadth(size, ann.index.connectivity()))
            .max(depth);
        let take = rescored(base, depth);
        if set.seqs.len() <= EXACT_FILTER_MAX {
            let keys = best_codes(&set, &q8, take);
            return Ok(Some(ann.rescore(&q, &keys, depth)));
        }
        let share = set.seqs.len() as f64 / size.max(1) as f64;
        let ef = ((base as f64 / share.max(1e-3)) as usize).clamp(base, 4096);
        let found = ann
            .with_breadth(ef, |index| {
                index.filtered_search(&q8, take, |k| set.seqs.binary_search(&k).is_ok())
            })?
            .map_err(|e| err("searching the index", e))?;
        Ok(Some(ann.rescore(&q, &found.keys, depth)))
    }

    /// Brings the vector index of every collection up to date and saves it: what the end of
    /// `outpost ingest` calls, so that the next process starts warm.
    ///
    /// # Errors
    /// Store errors, and [`Error::Index`] if an index cannot be built or saved.
    pub fn refresh_vector_indexes(&self) -> Result<()> {
        for coll in self.collections()? {
            let entry = self.ann(&coll)?;
            // A graph that grew past LARGE_GRAPH vector by vector keeps the links it was built
            // with; it is rebuilt here, at the end of an ingest, not in a search.
            let grown = entry
                .read()
                .map_err(|_| Error::Index("an index lock is poisoned".into()))
                .map(|a| a.index.connectivity() < connectivity_for(a.index.size()))?;
            if grown {
                let mut ann = entry
                    .write()
                    .map_err(|_| Error::Index("an index lock is poisoned".into()))?;
                self.note_index(false);
                *ann = in_read_tx(&self.conn, || build(&self.conn, &coll))?;
            }
        }
        self.refresh_text_index()?;
        self.save_vector_indexes()
    }

    /// Saves this database's loaded vector indexes that changed since their last save, as they
    /// are (a consistent snapshot at the log id each applied): what a daemon does on shutdown,
    /// so that its next start loads instead of rebuilding or replaying.
    ///
    /// # Errors
    /// [`Error::Index`] if an index cannot be saved.
    pub fn save_vector_indexes(&self) -> Result<()> {
        if !self.path().is_file() {
            return Ok(());
        }
        let path = self.canonical.clone();
        let loaded: Vec<(i64, Arc<RwLock<Ann>>)> = REGISTRY
            .lock()
            .map_err(|_| Error::Index("the index registry is poisoned".into()))?
            .iter()
            .filter(|((p, d, _), _)| *p == path && *d == self.device)
            .map(|((_, _, c), e)| (*c, e.clone()))
            .collect();
        for (coll, entry) in loaded {
            let mut ann = entry
                .write()
                .map_err(|_| Error::Index("an index lock is poisoned".into()))?;
            if ann.unsaved > 0 {
                save(&ann_dir(&path), &file_prefix(coll, &self.device), &mut ann)?;
            }
        }
        self.save_text_index(false)?;
        self.trim_index_log()
    }

    /// Saves this database's vector indexes if they changed and frees their memory in this
    /// process; the next search loads them again from their files. Also what a restart does.
    ///
    /// # Errors
    /// As [`Store::save_vector_indexes`].
    pub fn unload_vector_indexes(&self) -> Result<()> {
        self.save_vector_indexes()?;
        let path = self.canonical.clone();
        REGISTRY
            .lock()
            .map_err(|_| Error::Index("the index registry is poisoned".into()))?
            .retain(|(p, d, _), _| !(*p == path && *d == self.device));
        self.save_text_index(true)
    }

    /// Frees this database's derived indexes in this process without saving them: what the
    /// last engine on a file does as it goes. Whoever opens the file next loads the saved files
    /// and catches up from `ann_log`, as a new process would (the log is never trimmed past a
    /// saved file's position).
    pub(crate) fn evict_indexes(&self) {
        if let Ok(mut registry) = REGISTRY.lock() {
            registry.retain(|(p, d, _), _| !(*p == self.canonical && *d == self.device));
        }
        self.evict_text_index();
    }

    /// Deletes the `ann_log` rows that every saved index file of this database, and every index
    /// loaded in this process, has applied, once the log holds [`TRIM_FROM`] rows; the newest
    /// row always stays. An index that needed a deleted row (one loaded in another process
    /// before the trim) sees the gap ([`log_covers`]) and is rebuilt from SQLite.
    ///
    /// # Errors
    /// SQLite errors from the delete (a busy database is not one: the trim waits for the
    /// next save).
    pub fn trim_index_log(&self) -> Result<()> {
        if !self.path().is_file() || !self.conn.is_autocommit() {
            return Ok(());
        }
        let head = max_log_id(&self.conn)?;
        let first = first_log_id(&self.conn)?;
        if first == 0 || head - first + 1 < TRIM_FROM {
            return Ok(());
        }
        let mut through = head - 1;
        let tag = device_tag(&self.device);
        if let Ok(entries) = std::fs::read_dir(ann_dir(&self.canonical)) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let Some(stem) = [".usearch", ".vectors", ".lex"]
                    .iter()
                    .find_map(|x| name.strip_suffix(x))
                else {
                    continue;
                };
                let mut parts = stem.rsplitn(3, '-');
                let (Some(applied), Some(device)) = (parts.next(), parts.next()) else {
                    continue;
                };
                if device == tag {
                    if let Ok(applied) = applied.parse::<i64>() {
                        through = through.min(applied);
                    }
                }
            }
        }
        let path = self.canonical.clone();
        for ((p, d, _), e) in REGISTRY
            .lock()
            .map_err(|_| Error::Index("the index registry is poisoned".into()))?
            .iter()
        {
            if *p == path && *d == self.device {
                if let Ok(a) = e.read() {
                    through = through.min(a.applied);
                }
            }
        }
        if let Some(applied) = self.text_index_applied() {
            through = through.min(applied);
        }
        if through < first {
            return Ok(());
        }
        if let Some(n) = trim_log(&self.conn, through)? {
            tracing::debug!(rows = n, through, "trimmed the index log");
        }
        Ok(())
    }

    /// Memory the loaded vector indexes of this database take.
    pub fn vector_index_memory(&self) -> IndexMemory {
        let path = self.canonical.clone();
        let mut out = IndexMemory {
            text: self.text_index_memory(),
            ..IndexMemory::default()
        };
        if let Ok(map) = REGISTRY.lock() {
            for ((p, d, _), e) in map.iter() {
                if *p != path || *d != self.device {
                    continue;
                }
                if let Ok(a) = e.read() {
                    out.resident += a.memory();
                    out.mapped += a.vectors.mapped_bytes();
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NewChunk, NewDocument};

    #[test]
    fn a_graph_that_grows_past_the_large_size_is_rebuilt_with_more_links() -> Result<()> {
        // The only test in this binary that builds a graph: lowering the size is safe here.
        LARGE_GRAPH.store(3_000, std::sync::atomic::Ordering::Relaxed);
        let dir = tempfile::tempdir().map_err(|e| Error::Index(e.to_string()))?;
        let mut store = Store::open(dir.path().join("g.db"))?;
        let coll = store.ensure_collection("c", "m", 8)?;
        let put = |store: &mut Store, d: usize| -> Result<()> {
            let chunks: Vec<NewChunk> = (0..100)
                .map(|j| {
                    let x = (d * 100 + j) as f32;
                    NewChunk {
                        text: format!("c{d}x{j}"),
                        byte_end: 1,
                        embedding: (0..8).map(|i| (x * (i + 1) as f32).sin()).collect(),
                        ..Default::default()
                    }
                })
                .collect();
            let doc = NewDocument {
                source: format!("d{d}"),
                title: String::new(),
                content_hash: d.to_string(),
                metadata: serde_json::Map::new(),
            };
            store.put_document(&coll, &doc, &chunks)?;
            Ok(())
        };
        let links = |store: &Store| -> Result<usize> {
            let entry = store.ann(&coll)?;
            let ann = entry.read().map_err(|_| Error::Index("poisoned".into()))?;
            Ok(ann.index.connectivity())
        };
        for d in 0..25 {
            put(&mut store, d)?;
        }
        store.refresh_vector_indexes()?;
        assert_eq!(links(&store)?, 16);
        // Grown one chunk at a time past the size: a search catches up without a rebuild…
        for d in 25..35 {
            put(&mut store, d)?;
        }
        assert_eq!(links(&store)?, 16);
        // …and the end of an ingest rebuilds it with 32 links, holding every chunk.
        store.refresh_vector_indexes()?;
        assert_eq!(links(&store)?, 32);
        let entry = store.ann(&coll)?;
        let size = entry
            .read()
            .map_err(|_| Error::Index("poisoned".into()))?
            .index
            .size();
        assert_eq!(size, 3_500);
        Ok(())
    }

    /// What checksumming a `.vectors` file's rows would add to an index's load (why the rows
    /// are left out of its checksum). Run with
    /// `cargo test -p outpost-core --features measurements --lib -- --nocapture load_cost`.
    /// Compiled only with that feature: a figure to read, not a check, so it is not in the
    /// suite.
    #[cfg(feature = "measurements")]
    #[test]
    fn load_cost_of_checksumming_the_rows() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let (n, dims) = (100_000, 384);
        let coll = Collection {
            id: 1,
            name: "m".into(),
            model_id: "m".into(),
            dims,
        };
        let mut state = 7u64;
        let mut vectors = Vectors::new(dims);
        for seq in 0..n {
            let v: Vec<f32> = (0..dims)
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1);
                    (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect();
            vectors.set(seq as i64, Some(&unit(&v)));
        }
        vectors.fit_scale();
        let index = Index::new(&options(dims, 16))?;
        index.reserve_capacity_and_threads(n, 2)?;
        std::thread::scope(|s| {
            for t in 0..2 {
                let (index, vectors) = (&index, &vectors);
                s.spawn(move || {
                    for seq in (t..n).step_by(2) {
                        if let Some(v) = vectors.get(seq as i64) {
                            let _ = index.add(seq as u64, &vectors.quantize(v));
                        }
                    }
                });
            }
        });
        let mut ann = Ann::new(index, vectors, 1, n);
        let dir = tempfile::tempdir()?;
        save(dir.path(), "c1-x-", &mut ann)?;
        drop(ann);
        let path = dir.path().join("c1-x-1.usearch");
        let rows = vectors_path(&path);
        let best = |f: &mut dyn FnMut() -> std::result::Result<(), Box<dyn std::error::Error>>| {
            let mut best = f64::MAX;
            for _ in 0..7 {
                let t = std::time::Instant::now();
                f()?;
                best = best.min(t.elapsed().as_secs_f64() * 1e3);
            }
            Ok::<f64, Box<dyn std::error::Error>>(best)
        };
        let whole = best(&mut || {
            load(&path, 1, &coll)?;
            Ok(())
        })?;
        let open_rows = best(&mut || {
            Vectors::open(&rows, dims)?;
            Ok(())
        })?;
        let map = header::map(&rows, true)?;
        let crc_rows = best(&mut || {
            std::hint::black_box(crc32fast::hash(&map[header::LEN + 16 + 8 * n..]));
            Ok(())
        })?;
        let graph = header::map(&path, true)?;
        let crc_graph = best(&mut || {
            std::hint::black_box(crc32fast::hash(&graph[header::LEN..]));
            Ok(())
        })?;
        eprintln!(
            "{n} x {dims}: graph {} MB, rows {} MB; load {whole:.1} ms (the rows alone \
             {open_rows:.1} ms, the graph's CRC {crc_graph:.1} ms); a CRC of the rows would add \
             {crc_rows:.1} ms, {:.0} % of the load",
            graph.len() >> 20,
            map.len() >> 20,
            100.0 * crc_rows / whole
        );
        Ok(())
    }

    #[test]
    fn the_scan_keeps_the_best_codes_across_blocks() {
        // Several blocks, with ties, and the best codes spread over all of them.
        let dims = 32;
        let rows = 3 * SCAN_BLOCK + 77;
        let mut codes = Vec::with_capacity(rows * dims);
        for r in 0..rows {
            codes.extend((0..dims).map(|j| (((r * 7919 + j * 104_729) % 251) as i32 - 125) as i8));
        }
        let set = FilterSet {
            seqs: (0..rows as u64).map(|s| s * 3 + 1).collect(),
            codes,
        };
        let q: Vec<i8> = (0..dims)
            .map(|j| ((j * 37 % 200) as i32 - 100) as i8)
            .collect();
        let mut dots = Vec::new();
        dots_i8(&set.codes, &q, &mut dots);
        for take in [1, 40, 400] {
            let mut got: Vec<i32> = best_codes(&set, &q, take)
                .iter()
                .map(|s| dots[((s - 1) / 3) as usize])
                .collect();
            let mut all = dots.clone();
            all.sort_unstable_by(|a, b| b.cmp(a));
            got.sort_unstable_by(|a, b| b.cmp(a));
            assert_eq!(got, all[..take], "take {take}");
        }
    }
}
