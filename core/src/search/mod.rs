//! Search: vector KNN through vec0, BM25 through FTS5, and hybrid by reciprocal rank fusion.
//!
//! Filters are applied inside each query — as a `rowid IN (...)` constraint of the vec0 KNN and as
//! a `WHERE` of the FTS5 query — so a search returns `k` results whenever at least `k` chunks
//! match, unlike peers that cut the KNN list first and filter after. A filter is a typed
//! expression ([`filter`]), checked against the store and compiled to SQL by `db::filter`.

pub mod eval;
pub mod filter;

pub use filter::{Condition, Field, Filter, FilterExpr, FilterOp, FilterValue};

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{LazyLock, Mutex};

use serde::Serialize;

use crate::db::index::count_chunks;
use crate::db::search::{nearest, Bm25Ranking, FtsMatches, HitRows};
use crate::db::{vector_blob, Store};
use crate::error::{Error, Result};
use crate::index::text::PRUNE_FROM_CHUNKS;
use crate::model::Collection;
use filter::CompiledFilter;

/// The largest `k` a search accepts.
pub const MAX_K: usize = 1000;

/// Which ranking to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Reciprocal rank fusion of vector and full-text results.
    #[default]
    Hybrid,
    /// Cosine KNN only.
    Vector,
    /// BM25 only.
    Text,
}

impl FromStr for SearchMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "hybrid" => Ok(Self::Hybrid),
            "vector" => Ok(Self::Vector),
            "text" => Ok(Self::Text),
            _ => Err(Error::invalid(
                "mode",
                format!("'{s}' is not one of hybrid, vector, text"),
            )),
        }
    }
}

impl fmt::Display for SearchMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Hybrid => "hybrid",
            Self::Vector => "vector",
            Self::Text => "text",
        })
    }
}

/// Reciprocal rank fusion parameters: `score = Σ weight / (k + rank)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RrfParams {
    /// The rank constant (60 in the original paper).
    pub k: f64,
    /// Weight of the vector ranking.
    pub vector_weight: f64,
    /// Weight of the full-text ranking.
    pub text_weight: f64,
}

impl Default for RrfParams {
    fn default() -> Self {
        Self {
            k: 60.0,
            vector_weight: 1.0,
            text_weight: 1.0,
        }
    }
}

/// A search over the store, with the query vector already computed.
#[derive(Debug, Clone)]
pub struct SearchRequest<'a> {
    /// The query text (used for full-text and hybrid).
    pub text: &'a str,
    /// The query vector and the model that made it (used for vector and hybrid).
    pub vector: Option<(&'a str, &'a [f32])>,
    /// Results wanted.
    pub k: usize,
    /// Ranking.
    pub mode: SearchMode,
    /// Filters, all of which must hold.
    pub filters: &'a [Filter],
    /// Fusion parameters for hybrid mode.
    pub rrf: RrfParams,
    /// Candidates fetched from each ranking before fusion (at least `k`).
    pub candidates: usize,
    /// Breadth of the approximate vector search (candidates the graph search keeps; more is
    /// slower and closer to exact); `None` for [`crate::index::ann::default_expansion`] of the
    /// collection's size.
    pub expansion: Option<usize>,
}

impl<'a> SearchRequest<'a> {
    /// A request with default mode, fusion and candidate depth.
    pub fn new(text: &'a str, k: usize) -> Self {
        Self {
            text,
            vector: None,
            k,
            mode: SearchMode::Hybrid,
            filters: &[],
            rrf: RrfParams::default(),
            candidates: 0,
            expansion: None,
        }
    }
}

/// One result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    /// Chunk UUID.
    pub chunk_id: String,
    /// Document UUID.
    pub document_id: String,
    /// Document title.
    pub title: String,
    /// Document source.
    pub source: String,
    /// Collection name.
    pub collection: String,
    /// Chunk text.
    pub text: String,
    /// Score: cosine similarity (vector), negated BM25 (text) or fused RRF score (hybrid);
    /// higher is better.
    pub score: f64,
    /// Position of the chunk in its document.
    pub ordinal: usize,
    /// Byte span of the chunk in the document's extracted text.
    pub byte_start: usize,
    /// End of the byte span (exclusive).
    pub byte_end: usize,
    /// Tokens in the chunk.
    pub token_count: usize,
}

impl Store {
    /// Runs a search.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty query, `k` of 0 or above [`MAX_K`], a vector
    /// search without a vector, or a malformed filter; [`Error::UnknownFilterKey`];
    /// [`Error::DimensionMismatch`] / [`Error::ModelMismatch`] if the query vector does not fit
    /// the collection it searches.
    pub fn search(&self, req: &SearchRequest<'_>) -> Result<Vec<SearchHit>> {
        self.search_where(req, &FilterExpr::And(Vec::new()))
    }

    /// Runs a search among the chunks that `filter` keeps, as well as `req.filters`: the way to
    /// search with `or` and `not`.
    ///
    /// # Errors
    /// As [`Store::search`].
    pub fn search_where(
        &self,
        req: &SearchRequest<'_>,
        filter: &FilterExpr,
    ) -> Result<Vec<SearchHit>> {
        if req.text.trim().is_empty() {
            return Err(Error::invalid("query", "the query is empty"));
        }
        if req.k == 0 || req.k > MAX_K {
            return Err(Error::invalid(
                "k",
                format!("must be between 1 and {MAX_K}, not {}", req.k),
            ));
        }
        let expr = FilterExpr::from_filters(req.filters)?.and(filter.clone());
        let filters = self.compile_filter(&expr)?;
        let depth = req.candidates.max(req.k).max(match req.mode {
            SearchMode::Hybrid => (req.k * 4).max(40),
            _ => req.k,
        });
        let depth = depth.min(4 * MAX_K);
        let ranked: Vec<(i64, f64)> = match req.mode {
            SearchMode::Vector => {
                let (model, v) = req
                    .vector
                    .ok_or_else(|| Error::invalid("mode", "vector search needs a query vector"))?;
                self.vector_ranking(&filters, model, v, depth, req.expansion)?
            }
            SearchMode::Text => self.text_ranking(&filters, req.text, depth, true)?,
            SearchMode::Hybrid => {
                let vector = match req.vector {
                    Some((model, v)) => {
                        self.vector_ranking(&filters, model, v, depth, req.expansion)?
                    }
                    None => Vec::new(),
                };
                // Fused with a vector ranking, the text ranking stops at what its informative
                // words match: chunks that only share "the" and "of" with the query carry no
                // evidence, and finding them walks the longest posting lists.
                let text = self.text_ranking(&filters, req.text, depth, req.vector.is_none())?;
                fuse(&vector, &text, &req.rrf)
            }
        };
        self.hydrate(&ranked, req.k)
    }

    /// Chunk rowids by cosine similarity, best first, across the collections that `filters`
    /// selects and that hold vectors of `model`.
    fn vector_ranking(
        &self,
        filters: &CompiledFilter,
        model: &str,
        vector: &[f32],
        depth: usize,
        expansion: Option<usize>,
    ) -> Result<Vec<(i64, f64)>> {
        let mut targets: Vec<&Collection> = filters
            .collections
            .iter()
            .filter(|c| c.model_id == model)
            .collect();
        if targets.is_empty() {
            // Only an explicitly chosen collection of another model is an error; otherwise there
            // is simply nothing of this model to search yet.
            if let [only] = filters.collections.as_slice() {
                if filters.explicit {
                    return Err(Error::ModelMismatch {
                        collection: only.name.clone(),
                        stored: only.model_id.clone(),
                        stored_dims: only.dims,
                        current: model.to_string(),
                        current_dims: vector.len(),
                    });
                }
            }
            return Ok(Vec::new());
        }
        targets.sort_by_key(|c| c.id);
        let blob = vector_blob(vector);
        let mut all = Vec::new();
        for c in targets {
            if vector.len() != c.dims {
                return Err(Error::DimensionMismatch {
                    collection: c.name.clone(),
                    expected: c.dims,
                    got: vector.len(),
                });
            }
            // A filter that only chose the collections leaves each one's own index to answer.
            let filtered = filters.narrows;
            let cond = &filters.cond;
            // The collection's HNSW graph, unless it is small enough to scan.
            let ranked = if filtered {
                self.ann_filtered_ranking(c, vector, depth, expansion, cond)?
            } else {
                self.ann_ranking(c, vector, depth, expansion)?
            };
            if let Some(ranked) = ranked {
                all.extend(ranked);
                continue;
            }
            // Small enough to scan: sqlite-vec's exact KNN.
            let filter = filtered.then_some(cond);
            nearest(&self.conn, c, &blob, depth, filter, |seq, distance| {
                all.push((seq, 1.0 - distance));
            })?;
        }
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(depth);
        Ok(all)
    }

    /// Chunk rowids by BM25, best first: up to `depth` of them, or with `fill` unset only those
    /// that match a word outside the most frequent (see [`Store::informative_words`]).
    fn text_ranking(
        &self,
        filters: &CompiledFilter,
        text: &str,
        depth: usize,
        fill: bool,
    ) -> Result<Vec<(i64, f64)>> {
        if filters.collections.is_empty() {
            return Ok(Vec::new());
        }
        let cond = &filters.cond;
        let words = fts_words(text);
        if let Some(ranked) = self.lexical_ranking(&words, depth, !fill, cond)? {
            return Ok(ranked);
        }
        // A word that FTS5 reads as a phrase of several tokens: FTS5 answers.
        let all_words = words.len();
        let words = self.informative_words(words)?;
        let Some(query) = or_query(&words) else {
            return Ok(Vec::new());
        };
        let mut bm25 = Bm25Ranking::new(&self.conn, cond)?;
        // BM25 ranks best lowest; a score is best highest.
        let mut run = |query: &str| -> Result<Vec<(i64, f64)>> {
            let mut ranked = Vec::new();
            bm25.run(query, depth, |seq, rank| ranked.push((seq, -rank)))?;
            Ok(ranked)
        };
        let ranked = run(&query)?;
        // Fewer than asked for: the rest match only the dropped words, and come from the whole
        // query when `fill` asks for them.
        if fill && ranked.len() < depth && words.len() < all_words {
            return run(&fts_query(text).unwrap_or_default());
        }
        Ok(ranked)
    }

    /// `words` without those that at least half of all chunks contain, unless that would leave
    /// none or the table holds fewer than [`PRUNE_FROM_CHUNKS`] chunks. FTS5's BM25 clamps such
    /// a word's IDF to 1e-6, so it changes no score by more than that, yet scoring it walks a
    /// posting list as long as half the table: dropping "of", "the", "and" made SciFact's text
    /// queries three times faster with identical top-10s.
    /// Document frequencies are cached per database until a chunk is added or removed.
    fn informative_words(&self, words: Vec<String>) -> Result<Vec<String>> {
        if words.len() < 2 {
            return Ok(words);
        }
        let version = crate::db::log::max_log_id(&self.conn)?;
        let mut cache = DF_CACHE
            .lock()
            .map_err(|_| Error::Index("the word-frequency cache is poisoned".into()))?;
        let key = (self.canonical.clone(), self.device.clone());
        let stale = cache.get(&key).is_none_or(|c| c.version != version);
        if stale || cache.get(&key).is_some_and(|c| c.df.len() > 100_000) {
            let chunks = count_chunks(&self.conn)?;
            cache.insert(
                key.clone(),
                DocFrequencies {
                    version,
                    chunks,
                    df: HashMap::new(),
                },
            );
        }
        let Some(entry) = cache.get_mut(&key) else {
            return Ok(words);
        };
        // In a small table every posting list is short, and the order BM25 still gives the
        // chunks that share only such words with the query (by their frequency and length)
        // is worth keeping.
        if entry.chunks < PRUNE_FROM_CHUNKS {
            return Ok(words);
        }
        let mut matches = FtsMatches::new(&self.conn)?;
        let mut kept = Vec::with_capacity(words.len());
        for w in &words {
            let df = match entry.df.get(w) {
                Some(n) => *n,
                None => {
                    let n = matches.count(&format!("\"{w}\""))?;
                    entry.df.insert(w.clone(), n);
                    n
                }
            };
            if 2 * df < entry.chunks {
                kept.push(w.clone());
            }
        }
        Ok(if kept.is_empty() { words } else { kept })
    }

    /// Loads the rows behind ranked chunk rowids, keeping the order.
    /// The rows of the first `k` ranked chunks that are still there. The derived indexes are
    /// shared by every connection and may have applied a newer write than this connection's
    /// snapshot (or a write may have replaced a document since the ranking): a chunk gone by
    /// the time its row is read is no longer a hit, and the next ranked one takes its place.
    fn hydrate(&self, ranked: &[(i64, f64)], k: usize) -> Result<Vec<SearchHit>> {
        let mut rows = HitRows::new(&self.conn)?;
        let mut hits = Vec::with_capacity(k.min(ranked.len()));
        for &(seq, score) in ranked {
            if hits.len() == k {
                break;
            }
            let Some(r) = rows.get(seq)? else {
                continue;
            };
            hits.push(SearchHit {
                chunk_id: r.chunk_id,
                document_id: r.document_id,
                title: r.title,
                source: r.source,
                collection: r.collection,
                text: r.text,
                score,
                ordinal: r.ordinal,
                byte_start: r.byte_start,
                byte_end: r.byte_end,
                token_count: r.token_count,
            });
        }
        Ok(hits)
    }
}

/// Reciprocal rank fusion of two rankings of chunk rowids.
pub(crate) fn fuse(vector: &[(i64, f64)], text: &[(i64, f64)], p: &RrfParams) -> Vec<(i64, f64)> {
    let mut scores: HashMap<i64, f64> = HashMap::new();
    for (rank, (seq, _)) in vector.iter().enumerate() {
        *scores.entry(*seq).or_default() += p.vector_weight / (p.k + rank as f64 + 1.0);
    }
    for (rank, (seq, _)) in text.iter().enumerate() {
        *scores.entry(*seq).or_default() += p.text_weight / (p.k + rank as f64 + 1.0);
    }
    let mut fused: Vec<(i64, f64)> = scores.into_iter().collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    fused
}

/// Turns free text into an FTS5 query: every word quoted (so punctuation and FTS5 operators in
/// user input are inert), joined by OR so BM25 ranks partial matches. `None` if no words.
pub fn fts_query(text: &str) -> Option<String> {
    or_query(&fts_words(text))
}

/// The words of `text`: runs of letters and digits.
fn fts_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// `words` quoted (so none is an FTS5 operator) and joined with OR.
fn or_query(words: &[String]) -> Option<String> {
    if words.is_empty() {
        return None;
    }
    let quoted: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
    Some(quoted.join(" OR "))
}

/// One database's cached document frequencies of query words.
struct DocFrequencies {
    /// The last `ann_log` id when counted: every chunk insert and delete moves it.
    version: i64,
    chunks: i64,
    df: HashMap<String, i64>,
}

static DF_CACHE: LazyLock<Mutex<HashMap<(PathBuf, String), DocFrequencies>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fts_query_quotes_words_and_drops_operators() {
        assert_eq!(
            fts_query("bees AND \"wax\"*").as_deref(),
            Some("\"bees\" OR \"AND\" OR \"wax\"")
        );
        assert_eq!(fts_query(" ?! "), None);
    }

    #[test]
    fn a_ranked_chunk_gone_before_its_row_is_read_is_skipped() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Index(e.to_string()))?;
        let path = dir.path().join("x.db");
        let engine = crate::Engine::open(
            &path,
            std::sync::Arc::new(crate::embed::HashEmbedder::new(16)),
            1,
        )?;
        let input = crate::TextInput {
            text: "Glaciers carve valleys.".into(),
            title: None,
            source: "notes/ice".into(),
            metadata: serde_json::Map::new(),
        };
        engine.ingest_text(input, &crate::IngestOptions::default())?;
        drop(engine);
        let store = Store::open(&path)?;
        let all = store.compile_filter(&FilterExpr::And(Vec::new()))?;
        let (seq, _) = store.text_ranking(&all, "glaciers", 10, true)?[0];
        // Chunk 999999 was ranked by an index that had applied a newer write (or one that
        // has since been replaced): it is passed over, and the next ranked chunk fills the k.
        let hits = store.hydrate(&[(999_999, 0.9), (seq, 0.5)], 1)?;
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].source, "notes/ice");
        Ok(())
    }

    #[test]
    fn rrf_prefers_items_in_both_lists() {
        let fused = fuse(
            &[(1, 0.9), (2, 0.8)],
            &[(2, 5.0), (3, 4.0)],
            &RrfParams::default(),
        );
        assert_eq!(fused[0].0, 2);
    }
}
