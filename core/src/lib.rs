//! Outpost's embedded engine: a SQLite file with a sqlite-vec index per collection and an FTS5
//! index of chunk text, ingestion of text, Markdown, HTML, PDF and JSONL, hybrid search and
//! RAG context with conversation memory.
//!
//! The key design decision: everything lives in one SQLite file and every change to a document
//! is one transaction, so a device can be switched off at any moment and the file stays
//! consistent. The engine does no network I/O and loads no model: embeddings come through the
//! [`Embedder`] trait, implemented with candle in `outpost-models`.

pub mod ann;
pub mod chroma;
pub mod chunk;
pub mod context;
pub mod conversation;
pub mod embed;
pub mod engine;
pub mod error;
pub mod eval;
pub mod extract;
pub mod hlc;
pub mod import;
pub mod ingest;
mod lexical;
pub mod queue;
pub mod replica;
pub mod schema;
pub mod search;
pub mod store;

pub use chunk::ChunkParams;
pub use context::{Citation, Context};
pub use conversation::{Conversation, Message};
pub use embed::{count_tokens, EmbedError, Embedder, HashEmbedder};
pub use engine::{ContextOptions, Engine, SearchOptions};
pub use error::{Error, InputProblem, Result};
pub use ingest::{IngestOptions, IngestReport, Progress, DEFAULT_COLLECTION};
pub use queue::{QueuedWork, WorkItem, WorkOp};
pub use replica::{ApplyReport, Change, Kind, OutboxEntry, PushBatch};
pub use search::{Filter, FilterOp, RrfParams, SearchHit, SearchMode, SearchRequest};
pub use store::{
    Collection, DocumentDetail, DocumentSummary, NewChunk, NewDocument, PutOutcome, Stats, Store,
};

/// Crashes the process at a named point when `OUTPOST_FAILPOINT` names it (crash tests only).
#[cfg(feature = "failpoints")]
pub(crate) fn failpoint(name: &str, here: bool) {
    if here && std::env::var("OUTPOST_FAILPOINT").as_deref() == Ok(name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}
