//! `Engine`: the one door to a database. The CLI, the agent, the FFI and sync call it and
//! nothing beneath it.
//!
//! An engine owns the embedder, one writing connection and a pool of reading connections; it
//! is `Send + Sync`, so one engine serves every thread of a process. Reads (search, context,
//! listings) run on a free reader, in parallel; writes (ingest, deletes, messages, applying
//! pulled changes) take the writer in turn, and only for their transactions: an ingest embeds
//! with no connection held and takes the writer once per document, so a search or a sync pull
//! never waits for the model. The derived indexes are shared by all of them (`crate::index`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::db::queue::{QueuedWork, WorkItem};
use crate::db::Store;
use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::ingest::extract::{Extracted, Format};
use crate::ingest::import::{
    export_jsonl, import_records, ExportReport, ImportOptions, ImportReport, Input, OnProgress,
};
use crate::ingest::{
    ingest_paths, IngestOptions, IngestReport, IngestedDoc, Progress, StoreAccess,
};
use crate::model::{
    Collection, DocumentDetail, DocumentSummary, Kind, NewChunk, NewDocument, PutOutcome, Stats,
};
use crate::rag::context::{Builder, Context};
use crate::rag::conversation::{Conversation, Message};
use crate::replica::{ApplyReport, Change, OutboxEntry, Parked, PushBatch};
use crate::search::{Filter, RrfParams, SearchHit, SearchMode, SearchRequest};

mod admin;
mod ask;
mod pool;
pub use ask::{Answer, AskEvent, AskOptions};
use pool::Readers;

/// How to search.
#[derive(Debug, Clone, Serialize)]
pub struct SearchOptions {
    /// Results wanted.
    pub k: usize,
    /// Ranking.
    pub mode: SearchMode,
    /// Filters, all of which must hold.
    pub filters: Vec<Filter>,
    /// Fusion parameters (hybrid).
    pub rrf: RrfParams,
}

impl Default for SearchOptions {
    fn default() -> Self {
        Self {
            k: 10,
            mode: SearchMode::Hybrid,
            filters: Vec::new(),
            rrf: RrfParams::default(),
        }
    }
}

/// How to build a context.
#[derive(Debug, Clone, Serialize)]
pub struct ContextOptions {
    /// Most tokens in the rendered context.
    pub budget: usize,
    /// Chunks retrieved before merging and fitting.
    pub candidates: usize,
    /// Search mode and filters for the document part.
    pub search: SearchOptions,
    /// A conversation whose memory to include.
    pub conversation_id: Option<String>,
    /// Most recent messages to include.
    pub recent_messages: usize,
    /// Earlier messages to recall by similarity.
    pub recalled_messages: usize,
}

impl Default for ContextOptions {
    fn default() -> Self {
        Self {
            budget: 1024,
            candidates: 20,
            search: SearchOptions::default(),
            conversation_id: None,
            recent_messages: 6,
            recalled_messages: 3,
        }
    }
}

/// A text to index, as an app or an HTTP client hands it over (files go through
/// [`Engine::ingest`]).
#[derive(Debug, Clone, Default)]
pub struct TextInput {
    /// The text.
    pub text: String,
    /// Its title; `None` for its first non-empty line (Markdown `#` removed, 80 characters).
    pub title: Option<String>,
    /// Where it came from: the same source again updates that document. Required: the caller
    /// names sources the way its users know them (`api:<uuid>`, `app:<id>`).
    pub source: String,
    /// Metadata: string, number or boolean values (filterable by key).
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl TextInput {
    /// The document this text becomes, with its source: metadata checked, `format` = `text`,
    /// the title defaulted, and the hash input covering the metadata too (so a metadata edit
    /// is a change).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty text or source, or a metadata value that is an
    /// object or an array.
    pub fn into_document(self) -> Result<(String, Extracted)> {
        if self.text.trim().is_empty() {
            return Err(Error::invalid(
                "text",
                "the text is empty: nothing to index",
            ));
        }
        if self.source.trim().is_empty() {
            return Err(Error::invalid("source", "the source is empty"));
        }
        let mut metadata = self.metadata;
        if let Some((k, _)) = metadata.iter().find(|(_, v)| v.is_object() || v.is_array()) {
            return Err(Error::invalid(
                "metadata",
                format!("'{k}' is an object or array; values are strings, numbers or booleans"),
            ));
        }
        let mut raw = self.text.clone().into_bytes();
        raw.extend_from_slice(
            serde_json::Value::Object(metadata.clone())
                .to_string()
                .as_bytes(),
        );
        metadata.insert("format".into(), "text".into());
        let doc = Extracted {
            key: None,
            title: self.title.unwrap_or_else(|| first_line_title(&self.text)),
            text: self.text,
            metadata,
            format: Format::Text,
            raw,
        };
        Ok((self.source, doc))
    }
}

/// An open database with its embedding model: the engine.
pub struct Engine {
    path: PathBuf,
    /// The database's device id, fixed when the file was made: read once, so asking for it
    /// never waits for the writer.
    device: String,
    embedder: Arc<dyn Embedder>,
    writer: Mutex<Store>,
    readers: Readers,
}

/// Engines open in this process, by database (path and device id). The derived indexes are
/// kept in a process-wide registry shared by every connection to a file; the last engine on a
/// file frees them as it is dropped. Without this, a process that opened and dropped engines on
/// many databases (an app with one per account, a fuzzer) kept every one's indexes until exit:
/// about 1 MiB of usearch's locks each even for one vector, and a fuzzer ran out of 4 GB.
static OPEN_ENGINES: std::sync::LazyLock<
    Mutex<std::collections::HashMap<(PathBuf, String), usize>>,
> = std::sync::LazyLock::new(|| Mutex::new(std::collections::HashMap::new()));

impl Engine {
    /// Counts this engine among those open on its database.
    fn register(self) -> Self {
        let key = (self.path.clone(), self.device.clone());
        *OPEN_ENGINES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(key)
            .or_default() += 1;
        self
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let last = {
            let mut open = OPEN_ENGINES
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let key = (self.path.clone(), self.device.clone());
            let left = open.get(&key).map_or(0, |n| n.saturating_sub(1));
            if left == 0 {
                open.remove(&key);
            } else {
                open.insert(key, left);
            }
            left == 0
        };
        if last {
            pool::lock(&self.writer).evict_indexes();
        }
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("path", &self.path)
            .field("model", &self.embedder.model_id())
            .field("readers", &self.readers.size())
            .finish()
    }
}

/// The engine's connections as ingestion reaches them: each read on a reader, each write on
/// the writer, and nothing held in between (so not while the model embeds).
struct Access<'a>(&'a Engine);

impl StoreAccess for Access<'_> {
    fn read<T>(&self, f: impl FnOnce(&Store) -> Result<T>) -> Result<T> {
        self.0.read(f)
    }

    fn write<T>(&self, f: impl FnOnce(&mut Store) -> Result<T>) -> Result<T> {
        self.0.write(f)
    }
}

impl Engine {
    /// Opens (or creates) the database at `path` with one writing and `readers` reading
    /// connections (at least one), embedding with `embedder`.
    ///
    /// # Errors
    /// The database's own errors: not SQLite, another application's, newer, corrupt,
    /// unopenable.
    pub fn open(
        path: impl AsRef<Path>,
        embedder: Arc<dyn Embedder>,
        readers: usize,
    ) -> Result<Self> {
        let path = path.as_ref();
        let writer = Store::open(path)?;
        let readers = (0..readers.max(1))
            .map(|_| Store::open(path))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            path: path.to_path_buf(),
            device: writer.device_id().to_string(),
            embedder,
            writer: Mutex::new(writer),
            readers: Readers::new(readers),
        }
        .register())
    }

    /// An engine over one connection (`store`), which serves reads and writes in turn: for an
    /// in-memory database, tests and one-shot commands.
    pub fn new(store: Store, embedder: Arc<dyn Embedder>) -> Self {
        Self {
            path: store.path().to_path_buf(),
            device: store.device_id().to_string(),
            embedder,
            writer: Mutex::new(store),
            readers: Readers::new(Vec::new()),
        }
        .register()
    }

    /// Opens the database without a model, for what needs none (listings, stats, deletes,
    /// sync status): no model is read from disk. Whatever would embed fails with
    /// [`Error::Embed`] saying that no model was loaded.
    ///
    /// # Errors
    /// As [`Engine::open`].
    pub fn open_without_model(path: impl AsRef<Path>) -> Result<Self> {
        Self::open(path, Arc::new(crate::embed::NoModel::default()), 1)
    }

    /// Refuses what needs a model in an engine opened without one.
    fn needs_model(&self) -> Result<()> {
        if self.embedder.dims() == 0 {
            return Err(Error::Embed(crate::error::EmbedError(
                crate::embed::NO_MODEL.into(),
            )));
        }
        Ok(())
    }

    /// Runs `f` on a reader (the writer when there are none).
    fn read<T>(&self, f: impl FnOnce(&Store) -> Result<T>) -> Result<T> {
        if self.readers.size() == 0 {
            return f(&pool::lock(&self.writer));
        }
        self.readers.with(f)
    }

    /// Runs `f` on the writer, after the writes before it. SQLite's "disk full" (and its other
    /// codes that are about the file) come back naming the database.
    fn write<T>(&self, f: impl FnOnce(&mut Store) -> Result<T>) -> Result<T> {
        f(&mut pool::lock(&self.writer)).map_err(|e| crate::db::reclassify(&self.path, e))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The embedder.
    pub fn embedder(&self) -> &dyn Embedder {
        self.embedder.as_ref()
    }

    /// The embedder, shared.
    pub fn embedder_arc(&self) -> &Arc<dyn Embedder> {
        &self.embedder
    }

    /// This database's device id.
    pub fn device_id(&self) -> &str {
        &self.device
    }

    /// Ingests files and directories (see [`crate::ingest`]).
    ///
    /// # Errors
    /// Store and model failures; bad inputs are listed in the report.
    pub fn ingest(
        &self,
        paths: &[PathBuf],
        opts: &IngestOptions,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<IngestReport> {
        self.needs_model()?;
        ingest_paths(&Access(self), self.embedder.as_ref(), paths, opts, progress)
    }

    /// Indexes one text into `opts.collection` (created for the embedder's model if missing).
    /// The same source with the same text and metadata again changes nothing.
    ///
    /// # Errors
    /// As [`TextInput::into_document`]; store and model failures.
    pub fn ingest_text(&self, input: TextInput, opts: &IngestOptions) -> Result<IngestedDoc> {
        let (source, doc) = input.into_document()?;
        self.ingest_document(&source, doc, opts)
    }

    /// Indexes one extracted document under `source` into `opts.collection` (created for the
    /// embedder's model if missing): what a file upload or a text becomes.
    ///
    /// # Errors
    /// Store and model failures.
    pub fn ingest_document(
        &self,
        source: &str,
        doc: Extracted,
        opts: &IngestOptions,
    ) -> Result<IngestedDoc> {
        self.needs_model()?;
        let collection = self.write(|store| {
            store.ensure_collection(
                &opts.collection,
                self.embedder.model_id(),
                self.embedder.dims(),
            )
        })?;
        crate::ingest::ingest_text(
            &Access(self),
            self.embedder.as_ref(),
            &collection,
            source,
            doc,
            opts,
            &mut |_| {},
        )
    }

    fn embed_one(&self, text: &str) -> Result<Vec<f32>> {
        let mut v = self.embedder.embed(&[text])?;
        let v = v
            .pop()
            .ok_or_else(|| crate::error::EmbedError("model returned no vector".into()))?;
        self.check_query_vector(&v)?;
        Ok(v)
    }

    /// Refuses a query vector that is not of this engine's model's size.
    fn check_query_vector(&self, v: &[f32]) -> Result<()> {
        if v.len() != self.embedder.dims() {
            return Err(Error::DimensionMismatch {
                collection: "(query)".into(),
                expected: self.embedder.dims(),
                got: v.len(),
            });
        }
        Ok(())
    }

    /// Searches for `query`.
    ///
    /// # Errors
    /// As [`Store::search`], plus model failures.
    pub fn search(&self, query: &str, opts: &SearchOptions) -> Result<Vec<SearchHit>> {
        let vector = if opts.mode == SearchMode::Text || query.trim().is_empty() {
            None
        } else {
            Some(self.embed_one(query)?)
        };
        self.search_with_vector(query, vector.as_deref(), opts, 0)
    }

    /// Searches by a vector made elsewhere by this engine's model (vector mode; `opts.mode`
    /// is ignored).
    ///
    /// # Errors
    /// [`Error::DimensionMismatch`] for a vector of another size; search errors.
    pub fn search_by_vector(&self, vector: &[f32], opts: &SearchOptions) -> Result<Vec<SearchHit>> {
        self.check_query_vector(vector)?;
        let opts = SearchOptions {
            mode: SearchMode::Vector,
            ..opts.clone()
        };
        // Vector mode reads no text; the request wants one.
        self.search_with_vector("(vector query)", Some(vector), &opts, 0)
    }

    /// Searches for `query` with its vector already made by this engine's model (`None` for
    /// text mode), fetching `candidates` from each ranking before fusion (0 for the default):
    /// for callers that embed many queries in one batch, as an evaluation does.
    ///
    /// # Errors
    /// As [`Engine::search`].
    pub fn search_with_vector(
        &self,
        query: &str,
        vector: Option<&[f32]>,
        opts: &SearchOptions,
        candidates: usize,
    ) -> Result<Vec<SearchHit>> {
        let req = SearchRequest {
            text: query,
            vector: vector.map(|v| (self.embedder.model_id(), v)),
            k: opts.k,
            mode: opts.mode,
            filters: &opts.filters,
            rrf: opts.rrf,
            candidates,
            expansion: None,
        };
        self.read(|store| store.search(&req))
    }

    /// Stores a text with a vector that the caller made with a model of its own (named by
    /// `model_id`: a LangChain `Embeddings`, a server's model, or this engine's), unsplit, as
    /// one chunk, in `collection` (created for that model and the vector's size if missing).
    /// A document is its source within the collection: the same source again with the same
    /// text, title, metadata and vector changes nothing; with any of them changed it keeps its
    /// id and its chunk is replaced; a deleted source comes back. The metadata is stored as
    /// given (no `format` key is added). Unlike [`Engine::ingest_text`], this embeds nothing;
    /// the engine's tokenizer still counts the text's tokens (a model that loads at first use
    /// loads for that).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty source or model id, an empty or non-finite
    /// vector, or a metadata value that is an object or an array; [`Error::ModelMismatch`] for
    /// a collection of another model or size; store failures.
    pub fn put_text_with_vector(
        &self,
        collection: &str,
        model_id: &str,
        input: TextInput,
        vector: Vec<f32>,
    ) -> Result<IngestedDoc> {
        if input.source.trim().is_empty() {
            return Err(Error::invalid("source", "the source is empty"));
        }
        if model_id.trim().is_empty() {
            return Err(Error::invalid("model", "the model id is empty"));
        }
        if let Some((k, _)) = input
            .metadata
            .iter()
            .find(|(_, v)| v.is_object() || v.is_array())
        {
            return Err(Error::invalid(
                "metadata",
                format!("'{k}' is an object or array; values are strings, numbers or booleans"),
            ));
        }
        let collection =
            self.write(|store| store.ensure_collection(collection, model_id, vector.len()))?;
        let title = input.title.unwrap_or_else(|| first_line_title(&input.text));
        let metadata = serde_json::Value::Object(input.metadata);
        let mut h = Sha256::new();
        h.update(format!("outpost/vector/1\0{model_id}\0{title}\0{metadata}\0").as_bytes());
        h.update(input.text.as_bytes());
        h.update(b"\0");
        for x in &vector {
            h.update(x.to_le_bytes());
        }
        let serde_json::Value::Object(metadata) = metadata else {
            unreachable!("made from a map above")
        };
        let doc = NewDocument {
            source: input.source,
            title,
            content_hash: hex::encode(h.finalize()),
            metadata,
        };
        let chunk = NewChunk {
            token_count: crate::embed::count_tokens(self.embedder.tokenizer()?, &input.text),
            byte_start: 0,
            byte_end: input.text.len(),
            text: input.text,
            metadata: serde_json::Map::new(),
            embedding: vector,
        };
        let (id, outcome) = self
            .write(|store| store.put_document(&collection, &doc, std::slice::from_ref(&chunk)))?;
        Ok(IngestedDoc {
            id,
            source: doc.source,
            outcome,
            chunks: usize::from(outcome != PutOutcome::Unchanged),
        })
    }

    /// Searches by a vector of `model_id` (as stored with [`Engine::put_text_with_vector`], or
    /// this engine's own model) among the collections of that model that `opts.filters`
    /// keeps, best cosine similarity first (vector mode; `opts.mode` is ignored). No collection
    /// of that model yet is no hits.
    ///
    /// # Errors
    /// [`Error::DimensionMismatch`] for a vector of another size than the model's collections;
    /// [`Error::ModelMismatch`] when a `collection=` filter names a collection of another
    /// model; search errors.
    pub fn search_by_vector_of(
        &self,
        model_id: &str,
        vector: &[f32],
        opts: &SearchOptions,
    ) -> Result<Vec<SearchHit>> {
        if model_id == self.embedder.model_id() {
            self.check_query_vector(vector)?;
        }
        let req = SearchRequest {
            text: "(vector query)",
            vector: Some((model_id, vector)),
            k: opts.k,
            mode: SearchMode::Vector,
            filters: &opts.filters,
            rrf: opts.rrf,
            candidates: 0,
            expansion: None,
        };
        self.read(|store| store.search(&req))
    }

    /// Builds a RAG context for `query` within `opts.budget` tokens: with a conversation, its
    /// recent messages and the earlier messages closest to the query come first, then the best
    /// document passages with numbered citations.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty query or a zero budget, [`Error::NotFound`] for an
    /// unknown conversation, and search errors.
    pub fn context(&self, query: &str, opts: &ContextOptions) -> Result<Context> {
        if query.trim().is_empty() {
            return Err(Error::invalid("query", "the query is empty"));
        }
        let vector = if opts.search.mode == SearchMode::Text {
            None
        } else {
            Some(self.embed_one(query)?)
        };
        self.context_with_vector(query, vector, opts)
    }

    /// [`Engine::context`] with the query's vector already made (`None` for a text search).
    fn context_with_vector(
        &self,
        query: &str,
        vector: Option<Vec<f32>>,
        opts: &ContextOptions,
    ) -> Result<Context> {
        if opts.budget == 0 {
            return Err(Error::invalid("budget", "must be at least 1 token"));
        }
        let mut b = Builder::new(self.embedder.tokenizer()?, opts.budget);
        let (mut recent, mut recalled) = (Vec::new(), Vec::new());
        if let Some(conv) = &opts.conversation_id {
            // The conversation is read from one snapshot, and the reader given back before the
            // search below takes one.
            let (msgs, similar) = self.read(|store| {
                let msgs = store.recent_messages(conv, opts.recent_messages)?;
                let first_recent = msgs.first().map_or(i64::MAX, |m| m.seq);
                let similar: Vec<Message> = match &vector {
                    Some(v) if opts.recalled_messages > 0 => store
                        .similar_messages(
                            conv,
                            self.embedder.model_id(),
                            v,
                            first_recent,
                            opts.recalled_messages,
                        )?
                        .into_iter()
                        .map(|(m, _)| m)
                        .collect(),
                    _ => Vec::new(),
                };
                Ok((msgs, similar))
            })?;
            // Recent turns matter most but must leave room for sources: at most 40% of the
            // budget, then recalled messages up to 55%, newest recent turns first.
            let mut newest_first: Vec<Message> = msgs.into_iter().rev().collect();
            let limit = opts.budget * 2 / 5;
            let kept = {
                let mut probe = Builder::new(self.embedder.tokenizer()?, opts.budget);
                probe.messages("Conversation:", &newest_first, limit)
            };
            newest_first.retain(|m| kept.iter().any(|k| k.id == m.id));
            newest_first.reverse();
            recent = b.messages("Conversation:", &newest_first, limit);
            recalled = b.messages(
                "Earlier in this conversation:",
                &similar,
                opts.budget * 11 / 20,
            );
        }
        let mut search = opts.search.clone();
        search.k = opts.candidates.max(1);
        let hits = self.search_with_vector(query, vector.as_deref(), &search, 0)?;
        let has_messages = !recent.is_empty() || !recalled.is_empty();
        let citations = b.passages(&hits, has_messages);
        Ok(b.finish(citations, recent, recalled))
    }

    /// Appends a message to a conversation, embedding it for later recall.
    ///
    /// # Errors
    /// As [`Store::add_message`], plus model failures.
    pub fn add_message(&self, conversation_id: &str, role: &str, content: &str) -> Result<Message> {
        let v = if content.trim().is_empty() {
            None
        } else {
            Some(self.embed_one(content)?)
        };
        let model = self.embedder.model_id().to_string();
        self.write(|store| {
            store.add_message(
                conversation_id,
                role,
                content,
                v.as_deref().map(|v| (model.as_str(), v)),
            )
        })
    }

    /// Stores records from elsewhere (see [`crate::ingest::import`]); a batch import then calls
    /// [`Engine::refresh_indexes`].
    ///
    /// # Errors
    /// As [`crate::ingest::import::import_records`].
    pub fn import(
        &self,
        records: impl IntoIterator<Item = Input>,
        opts: &ImportOptions,
        progress: OnProgress<'_>,
    ) -> Result<ImportReport> {
        self.needs_model()?;
        import_records(
            &Access(self),
            self.embedder.as_ref(),
            records,
            opts,
            progress,
        )
    }

    /// Writes every live document (of `collection`, or of all) as JSONL to `out`, from one
    /// read snapshot (see [`crate::ingest::import::export_jsonl`]).
    ///
    /// # Errors
    /// As [`crate::ingest::import::export_jsonl`].
    pub fn export_jsonl(
        &self,
        out: &mut dyn std::io::Write,
        collection: Option<&str>,
        with_embeddings: bool,
        progress: OnProgress<'_>,
    ) -> Result<ExportReport> {
        self.read(|store| export_jsonl(store, out, collection, with_embeddings, progress))
    }

    /// Creates a conversation.
    ///
    /// # Errors
    /// Store failures.
    pub fn create_conversation(&self, title: &str) -> Result<Conversation> {
        self.write(|store| store.create_conversation(title))
    }

    /// One conversation.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id.
    pub fn conversation(&self, id: &str) -> Result<Conversation> {
        self.read(|store| store.conversation(id))
    }

    /// Conversations, newest first, optionally those with `title`.
    ///
    /// # Errors
    /// Store failures.
    pub fn conversations(&self, title: Option<&str>, limit: usize) -> Result<Vec<Conversation>> {
        self.read(|store| store.conversations(title, limit))
    }

    /// The `n` latest messages of a conversation, oldest first.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown conversation.
    pub fn recent_messages(&self, conversation_id: &str, n: usize) -> Result<Vec<Message>> {
        self.read(|store| store.recent_messages(conversation_id, n))
    }

    /// Documents, newest first.
    ///
    /// # Errors
    /// Store failures.
    pub fn list_documents(
        &self,
        collection: Option<&str>,
        include_deleted: bool,
        limit: usize,
    ) -> Result<Vec<DocumentSummary>> {
        self.read(|store| store.list_documents(collection, include_deleted, limit))
    }

    /// One document with its chunks, by id or unique id prefix.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id.
    pub fn get_document(&self, id: &str) -> Result<DocumentDetail> {
        self.read(|store| store.get_document(id))
    }

    /// The live document of `collection` stored under `source`: its id and content hash.
    ///
    /// # Errors
    /// Store failures.
    pub fn document_by_source(
        &self,
        collection: &str,
        source: &str,
    ) -> Result<Option<(String, String)>> {
        self.read(|store| {
            let Some(coll) = store.collection(collection)? else {
                return Ok(None);
            };
            Ok(store
                .document_by_source(&coll, source)?
                .filter(|(_, _, deleted)| !deleted)
                .map(|(id, hash, _)| (id, hash)))
        })
    }

    /// Live documents of `collection` whose source starts with `prefix`: (id, source).
    ///
    /// # Errors
    /// Store failures.
    pub fn live_sources_with_prefix(
        &self,
        collection: &Collection,
        prefix: &str,
    ) -> Result<Vec<(String, String)>> {
        self.read(|store| store.live_sources_with_prefix(collection, prefix))
    }

    /// Tombstones a document (by id or unique id prefix).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown or already deleted document.
    pub fn delete_document(&self, id: &str) -> Result<DocumentSummary> {
        self.write(|store| store.delete_document(id))
    }

    /// Moves the document of `collection` stored under `from` to `to`, keeping its id; `None`
    /// when there is none.
    ///
    /// # Errors
    /// Store failures.
    pub fn move_document(
        &self,
        collection: &Collection,
        from: &str,
        to: &str,
    ) -> Result<Option<String>> {
        self.write(|store| store.move_document(collection, from, to))
    }

    /// The collection called `name`, created for this engine's model if missing.
    ///
    /// # Errors
    /// [`Error::ModelMismatch`] for a collection of another model; a bad name.
    pub fn ensure_collection(&self, name: &str) -> Result<Collection> {
        self.needs_model()?;
        self.write(|store| {
            store.ensure_collection(name, self.embedder.model_id(), self.embedder.dims())
        })
    }

    /// The collection called `name`.
    ///
    /// # Errors
    /// Store failures.
    pub fn collection(&self, name: &str) -> Result<Option<Collection>> {
        self.read(|store| store.collection(name))
    }

    /// Every collection.
    ///
    /// # Errors
    /// Store failures.
    pub fn collections(&self) -> Result<Vec<Collection>> {
        self.read(|store| store.collections())
    }

    /// What the database holds.
    ///
    /// # Errors
    /// Store failures.
    pub fn stats(&self) -> Result<Stats> {
        self.read(|store| store.stats())
    }

    /// The schema version of the file.
    ///
    /// # Errors
    /// Store failures.
    pub fn schema_version(&self) -> Result<i64> {
        self.read(|store| store.schema_version())
    }

    /// SQLite's `PRAGMA integrity_check`: `["ok"]` for a sound file.
    ///
    /// # Errors
    /// Store failures.
    pub fn integrity_check(&self) -> Result<Vec<String>> {
        self.read(|store| store.integrity_check())
    }

    /// Checks the database on its own, without a central store: the file (SQLite's integrity
    /// check, foreign keys, the full-text index against the chunks) and every derived index
    /// against SQLite. What `outpost verify --local` prints: the problems, empty when sound.
    ///
    /// # Errors
    /// Store failures, and [`Error::Index`] if an index can be neither loaded nor built.
    pub fn check(&self) -> Result<Vec<String>> {
        // The full-text check is an `INSERT` in SQLite's grammar: it runs on the writer.
        let mut problems = self.write(|store| store.consistency_problems())?;
        if problems.is_empty() {
            problems.extend(self.read(|store| store.verify_indexes())?);
        }
        Ok(problems)
    }

    /// Brings every derived index up to date and saves it, so that the next process starts
    /// warm: what the end of a batch ingest calls.
    ///
    /// # Errors
    /// [`Error::Index`] if an index cannot be built or saved.
    pub fn refresh_indexes(&self) -> Result<()> {
        self.read(|store| store.refresh_vector_indexes())
    }

    /// Saves the derived indexes that changed since their last save.
    ///
    /// # Errors
    /// [`Error::Index`] if an index cannot be saved.
    pub fn save_indexes(&self) -> Result<()> {
        self.read(|store| store.save_vector_indexes())
    }

    /// Drops this database's derived indexes from memory (they load again on the next search).
    ///
    /// # Errors
    /// [`Error::Index`] if an index cannot be saved first.
    pub fn unload_indexes(&self) -> Result<()> {
        self.read(|store| store.unload_vector_indexes())
    }

    /// Queues paths for the agent's worker (coalescing with work already queued).
    ///
    /// # Errors
    /// Store failures.
    pub fn enqueue_work(&self, items: &[WorkItem]) -> Result<()> {
        self.write(|store| store.enqueue_work(items))
    }

    /// Up to `limit` queued paths that are due, oldest first.
    ///
    /// # Errors
    /// Store failures.
    pub fn next_work(&self, limit: usize) -> Result<Vec<QueuedWork>> {
        self.read(|store| store.next_work(limit))
    }

    /// Removes queued work `(path, seq)`, unless it was queued again meanwhile.
    ///
    /// # Errors
    /// Store failures.
    pub fn finish_work(&self, path: &str, seq: i64) -> Result<bool> {
        self.write(|store| store.finish_work(path, seq))
    }

    /// Records a failed attempt at queued work, to retry after `delay_ms`.
    ///
    /// # Errors
    /// Store failures.
    pub fn retry_work(&self, path: &str, seq: i64, error: &str, delay_ms: i64) -> Result<()> {
        self.write(|store| store.retry_work(path, seq, error, delay_ms))
    }

    /// Queued paths.
    ///
    /// # Errors
    /// Store failures.
    pub fn work_depth(&self) -> Result<usize> {
        self.read(|store| store.work_depth())
    }

    /// Entities waiting to be pushed.
    ///
    /// # Errors
    /// Store failures.
    pub fn outbox_depth(&self) -> Result<usize> {
        self.read(|store| store.outbox_depth())
    }

    /// When the oldest entity waiting to be pushed was written (its HLC), if any.
    ///
    /// # Errors
    /// Store failures.
    pub fn outbox_oldest(&self) -> Result<Option<i64>> {
        self.read(|store| store.outbox_oldest())
    }

    /// Pulled documents waiting to be embedded with this engine's model.
    ///
    /// # Errors
    /// Store failures.
    pub fn pending_reembed_count(&self) -> Result<usize> {
        self.read(|store| store.pending_reembed_count())
    }

    /// The next batch of at most `max` change records to push.
    ///
    /// # Errors
    /// Store failures.
    pub fn outbox_batch(&self, max: usize) -> Result<PushBatch> {
        self.write(|store| store.outbox_batch(max))
    }

    /// The current change record of an entity.
    ///
    /// # Errors
    /// Store failures.
    pub fn change_record(&self, kind: Kind, id: &str) -> Result<Option<Change>> {
        self.read(|store| store.change_record(kind, id))
    }

    /// Removes pushed entries from the outbox, unless written again since.
    ///
    /// # Errors
    /// Store failures.
    pub fn acknowledge(&self, entries: &[OutboxEntry]) -> Result<usize> {
        self.write(|store| store.acknowledge(entries))
    }

    /// Sets an outbox entry aside until `retry_after_ms` (Unix ms) with the server's reason:
    /// the central store refused it even on its own, and it must not block the rest.
    ///
    /// # Errors
    /// Store failures.
    pub fn park(&self, entry: &OutboxEntry, reason: &str, retry_after_ms: i64) -> Result<()> {
        self.write(|store| store.park(entry, reason, retry_after_ms))
    }

    /// The outbox entries set aside, oldest first.
    ///
    /// # Errors
    /// Store failures.
    pub fn parked(&self) -> Result<Vec<Parked>> {
        self.read(|store| store.parked())
    }

    /// Queues every live entity for push (a first sync, or a central store started over).
    ///
    /// # Errors
    /// Store failures.
    pub fn enqueue_all(&self) -> Result<usize> {
        self.write(|store| store.enqueue_all())
    }

    /// A value of the sync state (cursors, last push and pull).
    ///
    /// # Errors
    /// Store failures.
    pub fn sync_state(&self, key: &str) -> Result<Option<String>> {
        self.read(|store| store.sync_state(key))
    }

    /// Sets a value of the sync state.
    ///
    /// # Errors
    /// Store failures.
    pub fn set_sync_state(&self, key: &str, value: &str) -> Result<()> {
        self.write(|store| store.set_sync_state(key, value))
    }

    /// Applies a pulled page by last-writer-wins and stores its cursor, in one transaction;
    /// chunks whose vectors are not of `local_model` (id, dimension) are queued to be embedded
    /// again.
    ///
    /// # Errors
    /// Store failures; a record that does not fit (its error names it).
    pub fn apply_pulled(
        &self,
        changes: &[Change],
        cursor_key: &str,
        next_cursor: &str,
        local_model: (&str, usize),
    ) -> Result<ApplyReport> {
        self.write(|store| store.apply_pulled(changes, cursor_key, next_cursor, local_model))
    }

    /// Embeds, with this engine's model, the pulled documents that came with another model's
    /// vectors (or none), one document per transaction; returns how many. `cancelled` is asked
    /// between documents. A document in a collection of another model than this engine's (one
    /// that holds the caller's vectors: [`Engine::put_text_with_vector`]) is left queued, without
    /// a vector: this engine cannot make that model's vectors, and only the caller can.
    ///
    /// # Errors
    /// Store and model failures; what was embedded before stays.
    pub fn reembed_pending(&self, cancelled: &dyn Fn() -> bool) -> Result<usize> {
        let pending = self.read(|store| store.pending_reembed())?;
        if !pending.is_empty() {
            self.needs_model()?;
        }
        let (model, dims) = (self.embedder.model_id(), self.embedder.dims());
        let mut done = 0;
        for (id, texts) in &pending {
            if cancelled() {
                break;
            }
            let ours = self.read(|store| {
                let doc = store.get_document(id)?;
                Ok(store
                    .collection(&doc.summary.collection)?
                    .is_some_and(|c| c.model_id == model && c.dims == dims))
            })?;
            if !ours {
                continue;
            }
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let vectors = crate::embed::embed_all(self.embedder.as_ref(), &refs)?;
            self.write(|store| store.store_reembedded(id, &vectors))?;
            done += 1;
        }
        Ok(done)
    }

    /// Checksums of the live entities, as the central store computes them (`verify`).
    ///
    /// # Errors
    /// Store failures.
    pub fn checksums(&self) -> Result<serde_json::Map<String, serde_json::Value>> {
        self.read(|store| store.checksums())
    }
}

/// A text's first non-empty line, without Markdown heading marks, at most 80 characters.
fn first_line_title(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("untitled");
    line.trim_start_matches('#')
        .trim()
        .chars()
        .take(80)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_is_send_and_sync() {
        fn shared<T: Send + Sync>() {}
        shared::<Engine>();
    }
}
