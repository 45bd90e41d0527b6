//! `Engine`: a store plus an embedder — the API that the CLI, the daemon and the FFI call.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::db::Store;
use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::ingest::{ingest_paths, IngestOptions, IngestReport, Progress};
use crate::rag::context::{Builder, Context};
use crate::rag::conversation::Message;
use crate::search::{Filter, RrfParams, SearchHit, SearchMode, SearchRequest};

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

/// The engine.
pub struct Engine {
    store: Store,
    embedder: Arc<dyn Embedder>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("store", &self.store)
            .field("model", &self.embedder.model_id())
            .finish()
    }
}

impl Engine {
    /// An engine over `store` that embeds with `embedder`.
    pub fn new(store: Store, embedder: Arc<dyn Embedder>) -> Self {
        Self { store, embedder }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The store, for writes.
    pub fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    /// The embedder.
    pub fn embedder(&self) -> &dyn Embedder {
        self.embedder.as_ref()
    }

    /// Ingests files and directories (see [`crate::ingest`]).
    ///
    /// # Errors
    /// Store and model failures; bad inputs are listed in the report.
    pub fn ingest(
        &mut self,
        paths: &[PathBuf],
        opts: &IngestOptions,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<IngestReport> {
        ingest_paths(
            &mut self.store,
            self.embedder.as_ref(),
            paths,
            opts,
            progress,
        )
    }

    fn embed_one(&self, text: &str) -> Result<Vec<f32>> {
        let mut v = self.embedder.embed(&[text])?;
        let v = v
            .pop()
            .ok_or_else(|| crate::error::EmbedError("model returned no vector".into()))?;
        if v.len() != self.embedder.dims() {
            return Err(Error::DimensionMismatch {
                collection: "(query)".into(),
                expected: self.embedder.dims(),
                got: v.len(),
            });
        }
        Ok(v)
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

    fn search_with_vector(
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
        self.store.search(&req)
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
        if opts.budget == 0 {
            return Err(Error::invalid("--budget", "must be at least 1 token"));
        }
        let vector = if opts.search.mode == SearchMode::Text {
            None
        } else {
            Some(self.embed_one(query)?)
        };
        let mut b = Builder::new(self.embedder.tokenizer(), opts.budget);
        let (mut recent, mut recalled) = (Vec::new(), Vec::new());
        if let Some(conv) = &opts.conversation_id {
            let msgs = self.store.recent_messages(conv, opts.recent_messages)?;
            let first_recent = msgs.first().map_or(i64::MAX, |m| m.seq);
            let similar: Vec<Message> = match &vector {
                Some(v) if opts.recalled_messages > 0 => self
                    .store
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
            // Recent turns matter most but must leave room for sources: at most 40% of the
            // budget, then recalled messages up to 55%, newest recent turns first.
            let mut newest_first: Vec<Message> = msgs.into_iter().rev().collect();
            let limit = opts.budget * 2 / 5;
            let kept = {
                let mut probe = Builder::new(self.embedder.tokenizer(), opts.budget);
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
    pub fn add_message(
        &mut self,
        conversation_id: &str,
        role: &str,
        content: &str,
    ) -> Result<Message> {
        let v = if content.trim().is_empty() {
            None
        } else {
            Some(self.embed_one(content)?)
        };
        let model = self.embedder.model_id().to_string();
        self.store.add_message(
            conversation_id,
            role,
            content,
            v.as_deref().map(|v| (model.as_str(), v)),
        )
    }
}
