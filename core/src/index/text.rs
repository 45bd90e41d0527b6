//! The text index: FTS5's BM25 over chunk text, answered by MaxScore top-k instead of scoring
//! every match.
//!
//! FTS5 answers `MATCH … ORDER BY rank` by computing bm25() for every row that any query word
//! matches: 7 ms for a ten-word query over 100k chunks, thirty times a vector search. This index
//! holds the same postings in memory (chunk, term frequency) and finds the top k with MaxScore
//! (Turtle & Flood, 1995): query terms whose summed upper bounds cannot lift a chunk past the
//! current k-th score are only probed for the chunks the others find, never walked.
//!
//! The scores are FTS5's bm25(): the tokens come from FTS5's own tokenizer, the one `chunks_fts`
//! declares (`porter unicode61 remove_diacritics 2`, called through FTS5's C API), and row count,
//! average length, IDF and the k1 = 1.2, b = 0.75 formula are FTS5's. A test compares the two
//! over a corpus with stemming, diacritics, repeats and deletions.
//!
//! Invariants:
//! - Derived from `chunks`, like the vector indexes ([`crate::ann`]): the SQLite file is the
//!   source of truth; one index per (database file, database identity) per process; caught up
//!   from `ann_log` inside one read transaction before each search, so a committed insert or
//!   delete is in the next search; saved as `<db>.ann/t-<device>-<applied log id>.lex` (temporary
//!   name, then rename; beginning with the Outpost header, `index::header`), and rebuilt when
//!   that file is missing, damaged or of another format version.
//! - That life cycle is `index::derived::current`'s, shared with the vector indexes; this
//!   module says how (`Lexicon`'s `DerivedIndex` implementation).
//! - Postings hold only live chunks: a catch-up that removes chunks compacts them, so a term's
//!   document frequency is the length of its postings.
//! - Chunk text is never updated in place (a changed document gets new chunks), so `ann_log`'s
//!   inserts and deletes are every change the index must see.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::ffi::{c_char, c_int, c_void};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};

use rusqlite::{ffi, Connection};

use super::ann::{ann_dir, device_tag};
use super::derived::{self, DerivedIndex};
use super::header::{self, Rejected};
use crate::db::filter::SqlFilter;
use crate::db::index::{count_chunks, for_each_chunk_text, fts5_api, log_after, ChunkTexts};
use crate::db::log::max_log_id;
use crate::db::Store;
use crate::error::{Error, Result};

/// Below this many chunks no query word is left out (see [`Store::informative_words`]; the
/// text index applies the same rule).
pub(crate) const PRUNE_FROM_CHUNKS: i64 = 5_000;

/// FTS5's bm25() constants.
const K1: f64 = 1.2;
const B: f64 = 0.75;
/// FTS5 keeps at most this many bytes of a token (`FTS5_MAX_TOKEN_SIZE`).
const MAX_TOKEN: usize = 32_768;
/// Marks a removed chunk's slot until the next renumbering.
const DEAD: i64 = i64::MIN;

fn err(what: impl std::fmt::Display) -> Error {
    Error::Index(format!("text index: {what}"))
}

/// FTS5's `porter unicode61 remove_diacritics 2` tokenizer, reached through the `fts5_api` of
/// a private in-memory connection that lives as long as the tokenizer.
struct Tokenizer {
    table: ffi::fts5_tokenizer,
    tok: *mut ffi::Fts5Tokenizer,
    _conn: Connection,
}

// FTS5's tokenizer is reached through its C API: the one place in this module with unsafe code.
#[allow(unsafe_code)]
impl Tokenizer {
    fn new() -> Result<Self> {
        let conn = Connection::open_in_memory()?;
        let api = fts5_api(&conn).ok_or_else(|| err("this SQLite has no FTS5"))?;
        // SAFETY: `api` is null or the fts5_api of `conn`, which this tokenizer keeps open. The
        // tokenizer it creates is used only through the function table FTS5 filled in, and
        // deleted (Drop) before the connection that owns the FTS5 module closes.
        unsafe {
            let find = api
                .as_ref()
                .and_then(|a| a.xFindTokenizer)
                .ok_or_else(|| err("FTS5 gave no tokenizer api"))?;
            let mut user: *mut c_void = std::ptr::null_mut();
            let mut table: ffi::fts5_tokenizer = std::mem::zeroed();
            if find(api, c"porter".as_ptr(), &raw mut user, &raw mut table) != ffi::SQLITE_OK {
                return Err(err("FTS5 has no porter tokenizer"));
            }
            let (Some(create), Some(_), Some(_)) = (table.xCreate, table.xDelete, table.xTokenize)
            else {
                return Err(err("FTS5's porter tokenizer is incomplete"));
            };
            let mut args = [
                c"unicode61".as_ptr(),
                c"remove_diacritics".as_ptr(),
                c"2".as_ptr(),
            ];
            let mut tok: *mut ffi::Fts5Tokenizer = std::ptr::null_mut();
            if create(user, args.as_mut_ptr(), 3, &raw mut tok) != ffi::SQLITE_OK || tok.is_null() {
                return Err(err("creating FTS5's porter tokenizer failed"));
            }
            Ok(Self {
                table,
                tok,
                _conn: conn,
            })
        }
    }

    /// Calls `each` with every token of `text`, as FTS5 indexes a document (`query` unset) or
    /// reads a query.
    fn tokenize<F: FnMut(&[u8])>(&mut self, text: &str, query: bool, mut each: F) -> Result<()> {
        unsafe extern "C" fn token<F: FnMut(&[u8])>(
            ctx: *mut c_void,
            _flags: c_int,
            tok: *const c_char,
            n: c_int,
            _start: c_int,
            _end: c_int,
        ) -> c_int {
            // SAFETY: `ctx` is the `&mut F` handed to xTokenize below, alive for the whole call,
            // and FTS5 passes `n` readable bytes at `tok`.
            let (each, bytes) = unsafe {
                (
                    &mut *ctx.cast::<F>(),
                    std::slice::from_raw_parts(tok.cast::<u8>(), usize::try_from(n).unwrap_or(0)),
                )
            };
            each(&bytes[..bytes.len().min(MAX_TOKEN)]);
            ffi::SQLITE_OK
        }
        let n = c_int::try_from(text.len()).map_err(|_| err("a text of 2 GiB or more"))?;
        let flags = if query {
            ffi::FTS5_TOKENIZE_QUERY
        } else {
            ffi::FTS5_TOKENIZE_DOCUMENT
        };
        let tokenize = self.table.xTokenize.ok_or_else(|| err("no xTokenize"))?;
        // SAFETY: `self.tok` came from this table's xCreate and is not yet deleted; the text
        // pointer and length describe `text`.
        let rc = unsafe {
            tokenize(
                self.tok,
                (&raw mut each).cast(),
                flags,
                text.as_ptr().cast(),
                n,
                Some(token::<F>),
            )
        };
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(err(format!("FTS5's tokenizer failed (code {rc})")))
        }
    }
}

#[allow(unsafe_code)]
impl Drop for Tokenizer {
    fn drop(&mut self) {
        if let Some(delete) = self.table.xDelete {
            // SAFETY: created by this table's xCreate, deleted once, before `_conn` closes.
            unsafe { delete(self.tok) };
        }
    }
}

thread_local! {
    /// FTS5's porter tokenizer keeps a buffer per instance: one instance per thread.
    static TOKENIZER: RefCell<Option<Tokenizer>> = const { RefCell::new(None) };
}

fn with_tokenizer<T>(f: impl FnOnce(&mut Tokenizer) -> Result<T>) -> Result<T> {
    TOKENIZER.with(|cell| {
        let mut slot = cell
            .try_borrow_mut()
            .map_err(|_| err("the tokenizer was re-entered"))?;
        let tok = match slot.as_mut() {
            Some(t) => t,
            None => slot.insert(Tokenizer::new()?),
        };
        f(tok)
    })
}

/// The tokens FTS5 makes of one query word: usually one; none for a word of separators only.
pub(crate) fn query_tokens(word: &str) -> Result<Vec<Vec<u8>>> {
    with_tokenizer(|t| {
        let mut out = Vec::new();
        t.tokenize(word, true, |tok| out.push(tok.to_vec()))?;
        Ok(out)
    })
}

/// The chunks (dense document numbers) that contain one term, ascending, with the term's
/// count in each.
#[derive(Default)]
struct Postings {
    docs: Vec<u32>,
    tfs: Vec<u16>,
}

impl Postings {
    fn push(&mut self, doc: u32, tf: u16) {
        self.docs.push(doc);
        self.tfs.push(tf);
    }
}

/// No bound computed yet (see [`Lexicon::bounds`]).
const UNKNOWN: u64 = u64::MAX;

/// The in-memory postings of every chunk in the database, with what they applied of the log.
pub(crate) struct Lexicon {
    /// Chunk seq of each document number ([`DEAD`] for a removed one).
    seqs: Vec<i64>,
    /// Tokens in each chunk (FTS5's column size).
    lens: Vec<u32>,
    by_seq: HashMap<i64, u32>,
    terms: HashMap<Box<[u8]>, u32>,
    lists: Vec<Postings>,
    /// Per term, the most its BM25 term-frequency part reaches in any chunk at the current
    /// average length (f64 bits; [`UNKNOWN`] until a query needs it): MaxScore's bound, exact
    /// rather than from the highest count and the shortest chunk, which are rarely in the same
    /// chunk. Every change of the table forgets them.
    bounds: Vec<AtomicU64>,
    /// Live chunks and their tokens: FTS5's row count and total size.
    rows: u64,
    tokens: u64,
    applied: i64,
    unsaved: usize,
    /// Removed chunks whose document numbers still occur in `lists`.
    removed: usize,
}

/// A candidate in the top-k heap, ordered so that the heap's top is the worst kept one: lower
/// score, then higher seq.
#[derive(PartialEq)]
struct Kept {
    score: f64,
    seq: i64,
}

impl Eq for Kept {}

impl Ord for Kept {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.seq.cmp(&other.seq))
    }
}

impl PartialOrd for Kept {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One query term during a search.
struct Cursor<'a> {
    list: &'a Postings,
    pos: usize,
    /// IDF times the term's repeats in the query.
    weight: f64,
    /// The most this term adds to any chunk's score.
    bound: f64,
}

impl Lexicon {
    fn empty(applied: i64) -> Self {
        Self {
            seqs: Vec::new(),
            lens: Vec::new(),
            by_seq: HashMap::new(),
            terms: HashMap::new(),
            lists: Vec::new(),
            bounds: Vec::new(),
            rows: 0,
            tokens: 0,
            applied,
            unsaved: 0,
            removed: 0,
        }
    }

    /// Indexes chunk `seq`; `ids` is scratch space.
    fn add(&mut self, tok: &mut Tokenizer, seq: i64, text: &str, ids: &mut Vec<u32>) -> Result<()> {
        let doc = u32::try_from(self.seqs.len()).map_err(|_| err("more than 4 billion chunks"))?;
        ids.clear();
        let (terms, lists, bounds) = (&mut self.terms, &mut self.lists, &mut self.bounds);
        tok.tokenize(text, false, |t| {
            let id = match terms.get(t) {
                Some(&id) => id,
                None => {
                    let id = lists.len() as u32;
                    terms.insert(t.into(), id);
                    lists.push(Postings::default());
                    bounds.push(AtomicU64::new(UNKNOWN));
                    id
                }
            };
            ids.push(id);
        })?;
        let len = u32::try_from(ids.len()).unwrap_or(u32::MAX);
        ids.sort_unstable();
        for run in ids.chunk_by(|a, b| a == b) {
            let tf = u16::try_from(run.len()).unwrap_or(u16::MAX);
            lists[run[0] as usize].push(doc, tf);
        }
        self.seqs.push(seq);
        self.lens.push(len);
        self.by_seq.insert(seq, doc);
        self.rows += 1;
        self.tokens += u64::from(len);
        Ok(())
    }

    fn remove(&mut self, seq: i64) {
        if let Some(doc) = self.by_seq.remove(&seq) {
            let doc = doc as usize;
            self.seqs[doc] = DEAD;
            self.rows -= 1;
            self.tokens -= u64::from(self.lens[doc]);
            self.removed += 1;
        }
    }

    /// Drops removed chunks from the postings, and renumbers the chunks densely once a quarter
    /// of the numbers are free.
    fn compact(&mut self) {
        if self.removed == 0 {
            return;
        }
        let renumber = self.seqs.len() - self.rows as usize > self.seqs.len() / 4;
        let mut new_id = Vec::new();
        if renumber {
            let mut next = 0u32;
            new_id = self
                .seqs
                .iter()
                .map(|&s| {
                    let id = next;
                    next += u32::from(s != DEAD);
                    id
                })
                .collect();
        }
        let seqs = &self.seqs;
        for list in &mut self.lists {
            let mut kept = Postings {
                docs: Vec::with_capacity(list.docs.len()),
                tfs: Vec::with_capacity(list.tfs.len()),
            };
            for (&doc, &tf) in list.docs.iter().zip(&list.tfs) {
                if seqs[doc as usize] != DEAD {
                    kept.push(if renumber { new_id[doc as usize] } else { doc }, tf);
                }
            }
            *list = kept;
        }
        if renumber {
            let live: Vec<(i64, u32)> = self
                .seqs
                .iter()
                .zip(&self.lens)
                .filter(|(s, _)| **s != DEAD)
                .map(|(s, l)| (*s, *l))
                .collect();
            self.seqs = live.iter().map(|(s, _)| *s).collect();
            self.lens = live.iter().map(|(_, l)| *l).collect();
            self.by_seq = numbered(&self.seqs);
        }
        self.removed = 0;
    }

    /// Builds the index from every chunk. The caller holds a read transaction.
    fn build(conn: &Connection) -> Result<Self> {
        let mut lex = Self::empty(max_log_id(conn)?);
        let mut ids = Vec::new();
        with_tokenizer(|tok| {
            for_each_chunk_text(conn, |seq, text| lex.add(tok, seq, text, &mut ids))
        })?;
        // Postings grew by doubling: up to half of their capacity is slack.
        for list in &mut lex.lists {
            list.docs.shrink_to_fit();
            list.tfs.shrink_to_fit();
        }
        lex.unsaved = lex.seqs.len();
        Ok(lex)
    }

    /// Applies the log after `applied`. The caller holds a read transaction.
    fn catch_up(&mut self, conn: &Connection) -> Result<()> {
        let log = log_after(conn, self.applied)?;
        let Some(&(last, _)) = log.last() else {
            return Ok(());
        };
        let mut seqs: Vec<i64> = log.into_iter().map(|(_, s)| s).collect();
        seqs.sort_unstable();
        seqs.dedup();
        let mut texts = ChunkTexts::new(conn)?;
        // Removals first: a seq that SQLite reused for a new chunk is removed, then added.
        for &seq in &seqs {
            self.remove(seq);
        }
        self.compact();
        let mut ids = Vec::new();
        with_tokenizer(|tok| {
            for &seq in &seqs {
                if let Some(text) = texts.get(seq)? {
                    self.add(tok, seq, &text, &mut ids)?;
                }
            }
            Ok(())
        })?;
        self.applied = last;
        self.unsaved += seqs.len();
        // The average length moved, and with it every bound.
        for b in &self.bounds {
            b.store(UNKNOWN, AtomicOrdering::Relaxed);
        }
        Ok(())
    }

    /// Bytes of memory the index takes (approximately: containers at their capacity).
    pub(crate) fn heap_bytes(&self) -> usize {
        let lists: usize = self
            .lists
            .iter()
            .map(|l| l.docs.capacity() * 4 + l.tfs.capacity() * 2 + size_of::<Postings>() + 8)
            .sum();
        let terms: usize = self.terms.keys().map(|k| k.len() + 24).sum();
        lists
            + terms
            + self.seqs.capacity() * 8
            + self.lens.capacity() * 4
            + self.by_seq.capacity() * 16
    }

    /// The `depth` best chunks for the query terms (with repeats) by FTS5's bm25(), best first,
    /// ties by seq; only chunks in `keep` (sorted seqs) when given. With `informative` set and
    /// at least [`PRUNE_FROM_CHUNKS`] chunks, terms that half the chunks contain are left out
    /// unless all are such: they have FTS5's floor IDF of 1e-6, and a chunk that shares only
    /// them with the query carries no evidence to fuse.
    fn top(
        &self,
        query: &[Vec<u8>],
        depth: usize,
        informative: bool,
        keep: Option<&[i64]>,
    ) -> Vec<(i64, f64)> {
        if self.rows == 0 || depth == 0 {
            return Vec::new();
        }
        let n = self.rows as f64;
        let avgdl = self.tokens as f64 / n;
        // FTS5's IDF, from the chunks that contain the term.
        let idf = |df: usize| {
            let df = df as f64;
            let idf = ((n - df + 0.5) / (df + 0.5)).ln();
            if idf <= 0.0 {
                1e-6
            } else {
                idf
            }
        };
        let mut weights: Vec<(u32, f64)> = Vec::new();
        let mut all_common = true;
        let mut present = Vec::new();
        for t in query {
            // A word no chunk contains still counts as informative, as it did for FTS5.
            let df = self
                .terms
                .get(t.as_slice())
                .map_or(0, |&id| self.lists[id as usize].docs.len());
            let common = self.rows >= PRUNE_FROM_CHUNKS as u64 && 2 * df as u64 >= self.rows;
            all_common &= common;
            present.push((t, df, common));
        }
        for (t, df, common) in present {
            if informative && common && !all_common {
                continue;
            }
            let Some(&id) = self.terms.get(t.as_slice()) else {
                continue;
            };
            match weights.iter_mut().find(|(i, _)| *i == id) {
                Some((_, w)) => *w += idf(df),
                None => weights.push((id, idf(df))),
            }
        }
        let norm = |doc: u32| K1 * (1.0 - B + B * f64::from(self.lens[doc as usize]) / avgdl);
        let part = |tf: u16, norm: f64| {
            let tf = f64::from(tf);
            (tf * (K1 + 1.0)) / (tf + norm)
        };
        let mut cursors: Vec<Cursor<'_>> = weights
            .iter()
            .map(|&(id, weight)| {
                let list = &self.lists[id as usize];
                let cached = &self.bounds[id as usize];
                let most = match cached.load(AtomicOrdering::Relaxed) {
                    UNKNOWN => {
                        let most = list
                            .docs
                            .iter()
                            .zip(&list.tfs)
                            .map(|(&d, &tf)| part(tf, norm(d)))
                            .fold(0.0, f64::max);
                        cached.store(most.to_bits(), AtomicOrdering::Relaxed);
                        most
                    }
                    bits => f64::from_bits(bits),
                };
                // Rounding in the sums must never make a bound fall short.
                let bound = weight * most * (1.0 + 1e-9);
                Cursor {
                    list,
                    pos: 0,
                    weight,
                    bound,
                }
            })
            .filter(|c| !c.list.docs.is_empty())
            .collect();
        cursors.sort_by(|a, b| a.bound.total_cmp(&b.bound));
        // prefix[i]: the most terms 0..=i can add together.
        let prefix: Vec<f64> = cursors
            .iter()
            .scan(0.0, |sum, c| {
                *sum += c.bound;
                Some(*sum)
            })
            .collect();
        let mut heap: BinaryHeap<Kept> = BinaryHeap::with_capacity(depth + 1);
        // Terms before `essential` cannot by themselves lift a chunk into the heap.
        let mut essential = 0;
        let mut threshold = f64::NEG_INFINITY;
        while let Some(doc) = cursors[essential..]
            .iter()
            .filter_map(|c| c.list.docs.get(c.pos).copied())
            .min()
        {
            let seq = self.seqs[doc as usize];
            let allowed = keep.is_none_or(|k| k.binary_search(&seq).is_ok());
            let d_norm = norm(doc);
            let mut score = 0.0;
            for c in &mut cursors[essential..] {
                if c.list.docs.get(c.pos) == Some(&doc) {
                    score += c.weight * part(c.list.tfs[c.pos], d_norm);
                    c.pos += 1;
                }
            }
            if !allowed {
                continue;
            }
            let mut reachable = true;
            for i in (0..essential).rev() {
                if score + prefix[i] < threshold {
                    reachable = false;
                    break;
                }
                let c = &mut cursors[i];
                c.pos = seek(&c.list.docs, c.pos, doc);
                if c.list.docs.get(c.pos) == Some(&doc) {
                    score += c.weight * part(c.list.tfs[c.pos], d_norm);
                }
            }
            if !reachable {
                continue;
            }
            let entry = Kept { score, seq };
            if heap.len() < depth {
                heap.push(entry);
            } else if heap.peek().is_some_and(|worst| entry < *worst) {
                heap.pop();
                heap.push(entry);
            } else {
                continue;
            }
            if heap.len() == depth {
                threshold = heap.peek().map_or(threshold, |w| w.score);
                while essential < cursors.len() && prefix[essential] < threshold {
                    essential += 1;
                }
            }
        }
        heap.into_sorted_vec()
            .into_iter()
            .map(|k| (k.seq, k.score))
            .collect()
    }

    fn save(&mut self, dir: &Path, prefix: &str) -> Result<()> {
        std::fs::create_dir_all(dir)
            .map_err(|e| err(format!("creating {}: {e}", dir.display())))?;
        let name = format!("{prefix}{}.lex", self.applied);
        let path = dir.join(&name);
        header::write_file(&path, |file| self.write(file))?;
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let n = e.file_name().to_string_lossy().to_string();
                if n != name && n.starts_with(prefix) && n.ends_with(".lex") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        self.unsaved = 0;
        Ok(())
    }

    /// The file: the Outpost header, then applied log id, live chunks (seqs, then lengths),
    /// terms (bytes, then postings with dense chunk numbers); little-endian.
    fn write(&mut self, file: &mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()> {
        self.compact();
        // The header holds the payload's length and checksum: room for it now, written last.
        file.write_all(&[0; header::LEN])?;
        let mut out = Crc(file, crc32fast::Hasher::new());
        out.write_all(&self.applied.to_le_bytes())?;
        // Numbers after dropping the removed ones (none are left in the postings).
        let mut number = Vec::with_capacity(self.seqs.len());
        let mut next = 0u32;
        for &s in &self.seqs {
            number.push(next);
            next += u32::from(s != DEAD);
        }
        out.write_all(&u64::from(next).to_le_bytes())?;
        for &s in self.seqs.iter().filter(|s| **s != DEAD) {
            out.write_all(&s.to_le_bytes())?;
        }
        for (l, _) in self
            .lens
            .iter()
            .zip(&self.seqs)
            .filter(|(_, s)| **s != DEAD)
        {
            out.write_all(&l.to_le_bytes())?;
        }
        let live = self
            .terms
            .iter()
            .filter(|(_, id)| !self.lists[**id as usize].docs.is_empty());
        out.write_all(&(live.clone().count() as u64).to_le_bytes())?;
        for (term, &id) in live {
            let list = &self.lists[id as usize];
            out.write_all(&(term.len() as u32).to_le_bytes())?;
            out.write_all(term)?;
            out.write_all(&(list.docs.len() as u32).to_le_bytes())?;
            for &d in &list.docs {
                out.write_all(&number[d as usize].to_le_bytes())?;
            }
            for &tf in &list.tfs {
                out.write_all(&tf.to_le_bytes())?;
            }
        }
        let Crc(file, crc) = out;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&header::write(&header::TEXT, crc.total_len(), &crc))
    }

    /// Reads a file [`Lexicon::write`] wrote, checking everything that a damaged or foreign
    /// file could get wrong.
    fn read(path: &Path) -> std::result::Result<Self, Rejected> {
        let reject = |why: String| Rejected::new(path, why);
        let bytes = std::fs::read(path).map_err(|e| reject(format!("reading: {e}")))?;
        let (body, _) = header::read(&header::TEXT, &bytes).map_err(reject)?;
        Self::parse(body).map_err(|why| reject(format!("damaged: {why}")))
    }

    /// The index in a payload [`Lexicon::write`] wrote (its checksum already verified: these
    /// checks are for a file that a bug, not the disk, made wrong).
    fn parse(body: &[u8]) -> std::result::Result<Self, String> {
        let mut r = Reader(body);
        let applied = r.i64()?;
        let docs = usize::try_from(r.u64()?).map_err(|e| e.to_string())?;
        if docs > body.len() / 12 {
            return Err("chunk count larger than the file".into());
        }
        let mut lex = Self::empty(applied);
        lex.seqs = (0..docs)
            .map(|_| r.i64())
            .collect::<std::result::Result<_, _>>()?;
        lex.lens = (0..docs)
            .map(|_| r.u32())
            .collect::<std::result::Result<_, _>>()?;
        lex.by_seq = numbered(&lex.seqs);
        if lex.by_seq.len() != docs {
            return Err("a chunk listed twice".into());
        }
        lex.rows = docs as u64;
        lex.tokens = lex.lens.iter().map(|l| u64::from(*l)).sum();
        let terms = r.u64()?;
        for id in 0..terms {
            let len = r.u32()? as usize;
            let term: Box<[u8]> = r.take(len)?.into();
            let count = r.u32()? as usize;
            let doc_bytes = r.take(count.checked_mul(4).ok_or("postings too long")?)?;
            let tf_bytes = r.take(count.checked_mul(2).ok_or("postings too long")?)?;
            let mut list = Postings::default();
            let mut last = None;
            for (d, tf) in doc_bytes.chunks_exact(4).zip(tf_bytes.chunks_exact(2)) {
                let d = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
                let tf = u16::from_le_bytes([tf[0], tf[1]]);
                if d as usize >= docs || last.is_some_and(|l| l >= d) || tf == 0 {
                    return Err("postings out of order or out of range".into());
                }
                last = Some(d);
                list.push(d, tf);
            }
            if count == 0 || lex.terms.insert(term, id as u32).is_some() {
                return Err("an empty or repeated term".into());
            }
            lex.lists.push(list);
            lex.bounds.push(AtomicU64::new(UNKNOWN));
        }
        if !r.0.is_empty() {
            return Err("trailing bytes".into());
        }
        Ok(lex)
    }
}

impl DerivedIndex for Lexicon {
    type Source = ();
    const SUFFIX: &'static str = ".lex";

    fn build(conn: &Connection, (): &()) -> Result<Self> {
        Self::build(conn)
    }

    fn catch_up(&mut self, conn: &Connection, (): &()) -> Result<()> {
        Self::catch_up(self, conn)
    }

    fn save(&mut self, dir: &Path, prefix: &str) -> Result<()> {
        Self::save(self, dir, prefix)
    }

    fn load(path: &Path, _applied: i64, (): &()) -> std::result::Result<Self, Rejected> {
        // The file says itself what it applied.
        Self::read(path)
    }

    fn verify(&self, conn: &Connection, (): &()) -> Result<Vec<String>> {
        let name = Self::name(&());
        let rows = count_chunks(conn)?;
        let mut problems = derived::verify_counts(
            conn,
            &name,
            self.applied,
            self.rows as usize,
            usize::try_from(rows).unwrap_or(0),
        )?;
        if self.by_seq.len() as u64 != self.rows {
            problems.push(format!(
                "{name}: {} chunks numbered, {} live",
                self.by_seq.len(),
                self.rows
            ));
        }
        let tokens: u64 = self
            .by_seq
            .values()
            .map(|&d| u64::from(self.lens[d as usize]))
            .sum();
        if tokens != self.tokens {
            problems.push(format!(
                "{name}: {tokens} tokens in its chunks, {} counted",
                self.tokens
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
        self.rows as usize
    }

    fn memory(&self) -> usize {
        self.heap_bytes()
    }

    fn name((): &()) -> String {
        "the text index".into()
    }
}

/// The first position from `pos` on whose chunk number is at least `target`: galloping, so
/// that a short step (the usual case in a long list) costs a few comparisons in cache instead
/// of a binary search over the whole rest of the list.
fn seek(docs: &[u32], pos: usize, target: u32) -> usize {
    if docs.get(pos).is_none_or(|&d| d >= target) {
        return pos;
    }
    // docs[lo] < target throughout.
    let (mut lo, mut step) = (pos, 1);
    loop {
        let hi = lo + step;
        match docs.get(hi) {
            Some(&d) if d < target => {
                lo = hi;
                step *= 2;
            }
            _ => {
                let end = hi.min(docs.len());
                return lo + 1 + docs[lo + 1..end].partition_point(|&d| d < target);
            }
        }
    }
}

/// Each seq's document number (its position in `seqs`).
fn numbered(seqs: &[i64]) -> HashMap<i64, u32> {
    seqs.iter()
        .enumerate()
        .map(|(i, s)| (*s, i as u32))
        .collect()
}

/// A writer that checksums what passes through it.
struct Crc<W>(W, crc32fast::Hasher);

impl<W: Write> Write for Crc<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(buf)?;
        self.1.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        if n > self.0.len() {
            return Err("truncated".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u32(&mut self) -> std::result::Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> std::result::Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn i64(&mut self) -> std::result::Result<i64, String> {
        Ok(self.u64()? as i64)
    }
}

type Key = (PathBuf, String);

static REGISTRY: LazyLock<Mutex<HashMap<Key, Arc<RwLock<Lexicon>>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// A filter's kept chunk seqs (sorted), with the (log id, HLC) they were read at.
type KeptEntry = ((i64, i64), Arc<Vec<i64>>);

static KEPT_CACHE: LazyLock<Mutex<HashMap<String, KeptEntry>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn poisoned() -> Error {
    err("a lock is poisoned")
}

impl Store {
    fn lexicon_prefix(&self) -> String {
        format!("t-{}-", device_tag(&self.device))
    }

    /// The text index of this database, loaded or built on first use and caught up with the
    /// log (see `derived::current`).
    pub(super) fn lexicon(&self) -> Result<Arc<RwLock<Lexicon>>> {
        derived::current(
            self,
            &REGISTRY,
            self.lexicon_key(),
            &ann_dir(&self.canonical),
            &self.lexicon_prefix(),
            &(),
        )
    }

    /// Chunk seqs by FTS5's BM25 for `words` (each a query word, as FTS5 would read it
    /// quoted), best first; `None` when a word is several tokens to FTS5 (a phrase, which this
    /// index cannot match) and FTS5 must answer. `filter` (conditions over `documents d`)
    /// restricts the chunks.
    pub(crate) fn lexical_ranking(
        &self,
        words: &[String],
        depth: usize,
        informative: bool,
        filter: &SqlFilter,
    ) -> Result<Option<Vec<(i64, f64)>>> {
        let mut query = Vec::with_capacity(words.len());
        for w in words {
            let mut tokens = query_tokens(w)?;
            match tokens.len() {
                0 => {}
                1 => query.extend(tokens.pop()),
                _ => return Ok(None),
            }
        }
        let keep = if filter.sql.is_empty() {
            None
        } else {
            Some(self.kept_chunks(filter)?)
        };
        let entry = self.lexicon()?;
        let lex = entry.read().map_err(|_| poisoned())?;
        Ok(Some(lex.top(
            &query,
            depth,
            informative,
            keep.as_deref().map(Vec::as_slice),
        )))
    }

    /// The seqs of live chunks that `filter` keeps, sorted; cached per filter until a chunk or
    /// document changes.
    fn kept_chunks(&self, filter: &SqlFilter) -> Result<Arc<Vec<i64>>> {
        let version = (max_log_id(&self.conn)?, crate::db::read_hlc(&self.conn)?);
        let key = format!(
            "{}|{}|{}|{:?}",
            self.canonical.display(),
            self.device,
            filter.sql,
            filter.params
        );
        let cached = KEPT_CACHE
            .lock()
            .map_err(|_| poisoned())?
            .get(&key)
            .filter(|(v, _)| *v == version)
            .map(|(_, s)| s.clone());
        if let Some(set) = cached {
            return Ok(set);
        }
        let seqs = self.filtered_chunks(None, &filter.sql, &filter.params)?;
        let set = Arc::new(seqs);
        let mut cache = KEPT_CACHE.lock().map_err(|_| poisoned())?;
        let held: usize = cache.values().map(|(_, s)| s.len()).sum();
        if cache.len() >= 256 || held + set.len() > 32 << 20 {
            cache.clear();
        }
        cache.insert(key, (version, set.clone()));
        Ok(set)
    }

    /// Builds (or loads) the text index, catches it up and saves it if it changed; part of
    /// [`Store::refresh_vector_indexes`].
    ///
    /// # Errors
    /// Store errors, and [`Error::Index`] if the index cannot be built or saved.
    pub fn refresh_text_index(&self) -> Result<()> {
        let entry = self.lexicon()?;
        self.save_text_index_entry(&entry)
    }

    fn save_text_index_entry(&self, entry: &RwLock<Lexicon>) -> Result<()> {
        if !self.path().is_file() {
            return Ok(());
        }
        let mut lex = entry.write().map_err(|_| poisoned())?;
        if lex.unsaved > 0 {
            lex.save(&ann_dir(&self.canonical), &self.lexicon_prefix())?;
        }
        Ok(())
    }

    fn lexicon_key(&self) -> Key {
        (self.canonical.clone(), self.device.clone())
    }

    /// Frees this database's text index in this process without saving it.
    pub(crate) fn evict_text_index(&self) {
        if let Ok(mut registry) = REGISTRY.lock() {
            registry.remove(&self.lexicon_key());
        }
    }

    /// This database's text index if this process has it loaded (without loading it).
    fn loaded_lexicon(&self) -> Result<Option<Arc<RwLock<Lexicon>>>> {
        Ok(REGISTRY
            .lock()
            .map_err(|_| poisoned())?
            .get(&self.lexicon_key())
            .cloned())
    }

    /// Saves the loaded text index if it changed, and with `unload` frees it.
    pub(crate) fn save_text_index(&self, unload: bool) -> Result<()> {
        if let Some(entry) = self.loaded_lexicon()? {
            self.save_text_index_entry(&entry)?;
            if unload {
                REGISTRY
                    .lock()
                    .map_err(|_| poisoned())?
                    .remove(&self.lexicon_key());
            }
        }
        Ok(())
    }

    /// The log id the loaded text index has applied, if one is loaded.
    pub(crate) fn text_index_applied(&self) -> Option<i64> {
        let entry = self.loaded_lexicon().ok()??;
        let applied = entry.read().ok()?.applied;
        Some(applied)
    }

    /// Memory the loaded text index of this database takes.
    pub(crate) fn text_index_memory(&self) -> usize {
        let Some(entry) = self.loaded_lexicon().ok().flatten() else {
            return 0;
        };
        entry.read().map_or(0, |l| l.memory())
    }
}

#[cfg(test)]
mod tests {
    use super::seek;

    #[test]
    fn seek_finds_the_first_chunk_at_or_after_the_target() {
        let docs = [2, 3, 5, 8, 13, 21, 34, 55, 89];
        for pos in 0..=docs.len() {
            for target in 0..100 {
                let want = pos + docs[pos..].partition_point(|&d| d < target);
                assert_eq!(seek(&docs, pos, target), want, "pos {pos} target {target}");
            }
        }
    }
}
