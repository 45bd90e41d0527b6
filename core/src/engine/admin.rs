//! The engine's calls for benchmarks, tests and tools, beside the calls an app makes
//! (`engine/mod.rs`): open over a single connection, store documents whose vectors were made
//! elsewhere, play a skewed clock, build and measure the derived indexes, run a search request
//! exactly as built, and read a collection's stored vectors (the ground truth of an exact scan)
//! or sqlite-vec's bare exact KNN over them (a search benchmark's peer).
//!
//! They go through the engine's writer and readers like every other call, so that nothing
//! outside `core` needs a `Store` or a connection. The SQL they need is in `db/bench.rs`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{pool, Engine};
use crate::db::bench::VectorFingerprint;
use crate::db::Store;
use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::index::ann::IndexMemory;
use crate::model::{Collection, NewChunk, NewDocument, PutOutcome};
use crate::rag::conversation::Message;
use crate::search::{SearchHit, SearchRequest};

impl Engine {
    /// Opens (or creates) the database at `path` over one connection, which serves reads and
    /// writes in turn, as [`Engine::new`] does: for one-shot tools, tests, and benchmarks that
    /// time a process opening its database (one connection, as a restart of a tool would).
    ///
    /// # Errors
    /// As [`Engine::open`].
    pub fn open_single(path: impl AsRef<Path>, embedder: Arc<dyn Embedder>) -> Result<Self> {
        Ok(Self::new(Store::open(path)?, embedder))
    }

    /// Refuses a collection whose vectors are not of this engine's model (id and dimension).
    fn check_collection_model(&self, collection: &Collection) -> Result<()> {
        let model = self.embedder.as_ref();
        if collection.model_id != model.model_id() || collection.dims != model.dims() {
            return Err(Error::ModelMismatch {
                collection: collection.name.clone(),
                stored: collection.model_id.clone(),
                stored_dims: collection.dims,
                current: model.model_id().to_string(),
                current_dims: model.dims(),
            });
        }
        Ok(())
    }

    /// Stores a document whose chunks come with their vectors, made elsewhere by this engine's
    /// model (or, in a benchmark, synthetic vectors standing in for it), in one transaction:
    /// the same write an ingest ends with, without chunking or embedding. The same source with
    /// the same content hash again changes nothing; with another hash the document keeps its
    /// id and its chunks are replaced.
    ///
    /// # Errors
    /// [`Error::ModelMismatch`] for a collection of another model than this engine's;
    /// [`Error::DimensionMismatch`] for a vector of another size and
    /// [`Error::InvalidArgument`] for a non-finite one (nothing is written); store failures.
    pub fn put_embedded(
        &self,
        collection: &Collection,
        doc: &NewDocument,
        chunks: &[NewChunk],
    ) -> Result<(String, PutOutcome)> {
        self.check_collection_model(collection)?;
        self.write(|store| store.put_document(collection, doc, chunks))
    }

    /// Appends a message to a conversation with its vector made elsewhere by this engine's
    /// model, or with none (a message that similarity recall will not find), where
    /// [`Engine::add_message`] embeds every message itself.
    ///
    /// # Errors
    /// [`Error::DimensionMismatch`] for a vector of another size; as [`Engine::add_message`].
    pub fn add_message_with_vector(
        &self,
        conversation_id: &str,
        role: &str,
        content: &str,
        vector: Option<&[f32]>,
    ) -> Result<Message> {
        if let Some(v) = vector {
            self.check_query_vector(v)?;
        }
        let model = self.embedder.model_id();
        self.write(|store| {
            store.add_message(conversation_id, role, content, vector.map(|v| (model, v)))
        })
    }

    /// Makes this engine's writes stamp their rows as if the wall clock were `ms` milliseconds
    /// ahead (behind, if negative): lets tests play a device whose clock is off. Other engines
    /// on the same file keep the true clock.
    pub fn set_clock_skew_ms(&self, ms: i64) {
        pool::lock(&self.writer).set_clock_skew_ms(ms);
    }

    /// Builds (or loads) the text index, catches it up with the log and saves it if it
    /// changed: the text part of [`Engine::refresh_indexes`] alone, so that a benchmark can
    /// time the two indexes apart (text first, then `refresh_indexes` for the vector indexes,
    /// the text index then being current).
    ///
    /// # Errors
    /// [`Error::Index`] if the index cannot be built or saved; store failures.
    pub fn refresh_text_index(&self) -> Result<()> {
        self.read(|store| store.refresh_text_index())
    }

    /// Memory this database's derived indexes take in this process now: the vector indexes'
    /// graphs and unsaved rows, their memory-mapped saved rows, and the text index.
    pub fn index_memory(&self) -> Result<IndexMemory> {
        self.read(|store| Ok(store.vector_index_memory()))
    }

    /// Runs a search request as the caller built it, on a reader: the path
    /// [`Engine::search_with_vector`] takes, for a caller that sets what [`super::SearchOptions`]
    /// does not, such as the search breadth (`expansion`) a benchmark sweeps. The request's
    /// vector must be of this engine's model; a search refuses one of another model than the
    /// collection's.
    ///
    /// # Errors
    /// As [`Engine::search`].
    pub fn search_request(&self, req: &SearchRequest<'_>) -> Result<Vec<SearchHit>> {
        self.read(|store| store.search(req))
    }

    /// The chunk ids of `collection` in the order its vectors were stored (`seq`).
    ///
    /// # Errors
    /// Store failures.
    pub fn chunk_ids(&self, collection: &Collection) -> Result<Vec<String>> {
        self.read(|store| store.chunk_ids_in_seq_order(collection))
    }

    /// Every stored vector of `collection` with its chunk id, in the order they were stored
    /// (`seq`), from one snapshot: what an exact scan, the ground truth of a recall figure,
    /// runs over.
    ///
    /// # Errors
    /// Store failures.
    pub fn stored_vectors(&self, collection: &Collection) -> Result<Vec<(String, Vec<f32>)>> {
        self.read(|store| store.vectors_in_seq_order(collection))
    }

    /// How many vectors `collection` stores, with its first and last in stored order (`None`
    /// when it has none), from one snapshot: enough for a benchmark to recognise a database it
    /// built before.
    ///
    /// # Errors
    /// Store failures.
    pub fn vector_fingerprint(&self, collection: &Collection) -> Result<VectorFingerprint> {
        self.read(|store| store.vector_fingerprint(collection))
    }

    /// Runs sqlite-vec's bare exact KNN (`k` nearest, no filters, no fusion, no loading of
    /// result rows) over `collection`'s vec0 table for each query, one at a time on one
    /// reader with the statement prepared once, and returns each query's time and result
    /// count: the peer a search benchmark compares with. Only the statement is timed, not
    /// turning the query into a blob.
    ///
    /// # Errors
    /// Store failures; a query of another size than the collection's.
    pub fn time_exact_knn(
        &self,
        collection: &Collection,
        queries: &[Vec<f32>],
        k: usize,
    ) -> Result<Vec<(Duration, usize)>> {
        self.read(|store| {
            let mut knn = store.exact_knn(collection)?;
            let mut out = Vec::with_capacity(queries.len());
            for q in queries {
                let blob = crate::db::vector_blob(q);
                let started = Instant::now();
                let rows = knn.run(&blob, k)?;
                out.push((started.elapsed(), rows.len()));
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::HashEmbedder;
    use crate::model::Kind;
    use crate::replica::Change;
    use crate::search::SearchMode;

    const DIMS: usize = 16;

    fn engine(dir: &tempfile::TempDir) -> Engine {
        let model: Arc<dyn Embedder> = Arc::new(HashEmbedder::new(DIMS));
        Engine::open_single(dir.path().join("admin.db"), model).expect("open")
    }

    /// Stores `n` one-chunk documents embedded by the engine's model; returns their vectors.
    fn put(engine: &Engine, coll: &Collection, n: usize) -> Vec<Vec<f32>> {
        (0..n)
            .map(|i| {
                let text = format!("note {i} about topic{}", i % 3);
                let v = engine.embedder().embed(&[text.as_str()]).expect("embed")[0].clone();
                let doc = NewDocument {
                    source: format!("n/{i}"),
                    title: format!("n{i}"),
                    content_hash: format!("h{i}"),
                    ..NewDocument::default()
                };
                let chunk = NewChunk {
                    byte_end: text.len(),
                    token_count: 4,
                    text,
                    embedding: v.clone(),
                    ..NewChunk::default()
                };
                engine.put_embedded(coll, &doc, &[chunk]).expect("put");
                v
            })
            .collect()
    }

    #[test]
    fn stored_vectors_come_back_in_stored_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = engine(&dir);
        let coll = engine.ensure_collection("notes").expect("collection");
        assert_eq!(
            engine.vector_fingerprint(&coll).expect("empty"),
            (0, None, None)
        );
        let made = put(&engine, &coll, 5);
        let stored = engine.stored_vectors(&coll).expect("vectors");
        let vectors: Vec<Vec<f32>> = stored.iter().map(|(_, v)| v.clone()).collect();
        assert_eq!(vectors, made);
        let ids: Vec<String> = stored.into_iter().map(|(id, _)| id).collect();
        assert_eq!(engine.chunk_ids(&coll).expect("ids"), ids);
        let (count, first, last) = engine.vector_fingerprint(&coll).expect("fingerprint");
        assert_eq!(
            (count, first.as_ref(), last.as_ref()),
            (5, made.first(), made.last())
        );
    }

    #[test]
    fn vectors_of_another_model_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = engine(&dir);
        let other = Engine::new(
            Store::open(engine.path()).expect("store"),
            Arc::new(HashEmbedder::new(DIMS + 1)),
        );
        let theirs = other.ensure_collection("theirs").expect("collection");
        let err = engine
            .put_embedded(&theirs, &NewDocument::default(), &[])
            .expect_err("another model");
        assert!(matches!(err, Error::ModelMismatch { .. }), "{err}");
        let err = engine
            .add_message_with_vector("nope", "user", "hi", Some(&[0.0; DIMS + 1]))
            .expect_err("another size");
        assert!(matches!(err, Error::DimensionMismatch { .. }), "{err}");
    }

    #[test]
    fn a_search_request_runs_as_built_and_the_peer_finds_k() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = engine(&dir);
        let coll = engine.ensure_collection("notes").expect("collection");
        let made = put(&engine, &coll, 12);
        engine.refresh_text_index().expect("text index");
        engine.refresh_indexes().expect("indexes");
        assert!(engine.index_memory().expect("memory").text > 0);
        let req = SearchRequest {
            mode: SearchMode::Vector,
            vector: Some((engine.embedder().model_id(), made[4].as_slice())),
            expansion: Some(8),
            ..SearchRequest::new("note 4", 3)
        };
        let hits = engine.search_request(&req).expect("search");
        assert_eq!(hits.len(), 3);
        assert_eq!(hits[0].source, "n/4");
        let timed = engine.time_exact_knn(&coll, &made[..2], 3).expect("knn");
        assert_eq!(
            timed.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
            vec![3, 3]
        );
    }

    #[test]
    fn messages_keep_the_vector_given_or_none_and_the_clock_can_be_skewed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = engine(&dir);
        let conv = engine.create_conversation("chat").expect("conversation");
        let v = engine
            .embedder()
            .embed(&["hello"])
            .expect("embed")
            .remove(0);
        let with = engine
            .add_message_with_vector(&conv.id, "user", "hello", Some(&v))
            .expect("with a vector");
        let without = engine
            .add_message_with_vector(&conv.id, "user", "bye", None)
            .expect("without");
        let record = |id: &str| match engine.change_record(Kind::Message, id) {
            Ok(Some(Change::Message(m))) => m,
            other => panic!("no message record: {other:?}"),
        };
        assert_eq!(record(&with.id).embedding, Some(v));
        assert_eq!(record(&without.id).embedding, None);

        let day = 86_400_000;
        engine.set_clock_skew_ms(day);
        let later = engine
            .add_message_with_vector(&conv.id, "user", "tomorrow", None)
            .expect("skewed");
        let gap = crate::hlc::physical_ms(record(&later.id).hlc)
            - crate::hlc::physical_ms(record(&without.id).hlc);
        assert!(gap >= day, "the skewed write is {gap} ms later");
    }
}
