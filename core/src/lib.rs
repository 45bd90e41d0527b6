//! Outpost's embedded engine: a SQLite file with a sqlite-vec index per collection and an FTS5
//! index of chunk text, ingestion of text, Markdown, HTML, PDF and JSONL, hybrid search and
//! RAG context with conversation memory.
//!
//! The key design decision: everything lives in one SQLite file and every change to a document
//! is one transaction, so a device can be switched off at any moment and the file stays
//! consistent. The engine does no network I/O and loads no model: embeddings come through the
//! [`Embedder`] trait, implemented with candle in `outpost-models`.

//! Layers, top to bottom; a module imports only from the layers below it
//! (`scripts/check-layers.py` checks this):
//! - [`engine`]: `Engine`, the one door the CLI, the agent and the FFI call.
//! - [`rag`]: context within a token budget, conversation memory.
//! - [`search`]: vector, text and hybrid search, filters, evaluation metrics.
//! - [`ingest`]: walk, extract, chunk, embed and store; imports (JSONL, SQLite rows, Chroma).
//! - [`replica`]: change records, applying pulled changes, checksums.
//! - [`index`]: the derived indexes (HNSW, text), rebuilt from SQLite whenever in doubt.
//! - [`db`]: the SQLite file: schema, migrations, collections, documents, outbox, work queue.
//! - [`embed`], [`generate`], [`hlc`], [`model`], [`error`]: the embedder and generator traits,
//!   the clock, plain types, errors.

pub mod db;
pub mod embed;
pub mod engine;
pub mod error;
pub mod generate;
pub mod hlc;
pub mod index;
pub mod ingest;
pub mod model;
pub mod rag;
pub mod replica;
pub mod search;

pub use db::queue::{QueuedWork, WorkItem, WorkOp};
pub use db::Store;
pub use embed::{count_tokens, EmbedError, Embedder, HashEmbedder};
pub use engine::{Answer, AskEvent, AskOptions, ContextOptions, Engine, SearchOptions, TextInput};
pub use error::{Error, ErrorKind, InputProblem, Result};
pub use generate::{
    ChatMessage, FinishReason, GenerateError, GenerateOptions, Generation, Generator,
};
pub use index::ann::IndexMemory;
pub use ingest::chunk::ChunkParams;
pub use ingest::{IngestOptions, IngestReport, Progress, DEFAULT_COLLECTION};
pub use model::{
    ChunkRow, Collection, CollectionStats, DocumentDetail, DocumentSummary, Kind, NewChunk,
    NewDocument, PutOutcome, Stats,
};
pub use rag::context::{Citation, Context};
pub use rag::conversation::{Conversation, Message};
pub use replica::{
    ApplyReport, Change, ChunkChange, DocumentChange, OutboxEntry, Parked, PushBatch,
};
pub use search::{Filter, FilterOp, RrfParams, SearchHit, SearchMode, SearchRequest};
