//! Plain types that cross the engine's boundary: collections, documents and chunks as they are
//! stored and listed, and the kinds of replicated record. No behaviour beyond small accessors,
//! no SQL, no I/O: every layer may use them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A named set of documents embedded by one model, with its own vector index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Collection {
    /// Local integer id (names the vector table `vec_chunks_<id>`).
    pub id: i64,
    /// User-facing name.
    pub name: String,
    /// Model whose vectors this collection holds.
    pub model_id: String,
    /// Vector dimension.
    pub dims: usize,
}

impl Collection {
    /// The name of this collection's vec0 table.
    pub fn vec_table(&self) -> String {
        format!("vec_chunks_{}", self.id)
    }
}

/// A document to store.
#[derive(Debug, Clone, Default)]
pub struct NewDocument {
    /// Where it came from: a file path, or `file.jsonl#record-id`.
    pub source: String,
    /// Display title.
    pub title: String,
    /// Hash of the source content, to skip unchanged re-ingests.
    pub content_hash: String,
    /// Free-form metadata (filterable by key).
    pub metadata: Map<String, Value>,
}

/// A chunk of a document, with its embedding.
#[derive(Debug, Clone, Default)]
pub struct NewChunk {
    /// The chunk's text (a slice of the document's extracted text).
    pub text: String,
    /// Tokens in `text` by the model's tokenizer.
    pub token_count: usize,
    /// Start of the chunk in the document's extracted text, in bytes.
    pub byte_start: usize,
    /// End (exclusive) in bytes.
    pub byte_end: usize,
    /// Chunk-level metadata.
    pub metadata: Map<String, Value>,
    /// The chunk's vector; its length must equal the collection's dimension.
    pub embedding: Vec<f32>,
}

/// What storing a document did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PutOutcome {
    /// A new document (or a revived tombstone).
    Added,
    /// An existing document whose chunks were replaced.
    Updated,
    /// Same content hash as stored: nothing written.
    Unchanged,
    /// Deleted because its source no longer has it (a JSONL record removed from its file).
    Removed,
}

/// A stored document, without its chunks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DocumentSummary {
    /// UUIDv7.
    pub id: String,
    /// Collection name.
    pub collection: String,
    /// Source URI.
    pub source: String,
    /// Title.
    pub title: String,
    /// Number of chunks.
    pub chunks: usize,
    /// Last change, unix milliseconds.
    pub updated_at: i64,
    /// Tombstoned.
    pub deleted: bool,
}

/// A stored chunk.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChunkRow {
    /// UUIDv7.
    pub id: String,
    /// Position in the document.
    pub ordinal: usize,
    /// Text.
    pub text: String,
    /// Tokens.
    pub token_count: usize,
    /// Byte span start.
    pub byte_start: usize,
    /// Byte span end.
    pub byte_end: usize,
}

/// A stored document with its chunks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DocumentDetail {
    /// The summary fields.
    #[serde(flatten)]
    pub summary: DocumentSummary,
    /// Content hash.
    pub content_hash: String,
    /// Metadata.
    pub metadata: Value,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
    /// Revision counter, bumped on each change.
    pub rev: i64,
    /// Chunks in order.
    pub chunks: Vec<ChunkRow>,
}

/// Counts per collection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CollectionStats {
    /// The collection.
    #[serde(flatten)]
    pub collection: Collection,
    /// Live documents.
    pub documents: usize,
    /// Chunks (each has one vector).
    pub chunks: usize,
    /// Sum of chunk token counts.
    pub tokens: usize,
}

/// What the database holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// The database file.
    pub path: PathBuf,
    /// Schema version.
    pub schema_version: i64,
    /// Size of the database file plus its WAL, in bytes.
    pub size_bytes: u64,
    /// Per collection.
    pub collections: Vec<CollectionStats>,
    /// Tombstoned documents.
    pub deleted_documents: usize,
    /// Conversations.
    pub conversations: usize,
    /// Messages.
    pub messages: usize,
}

/// What an outbox row or a change record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A document with its chunks.
    Document,
    /// A conversation.
    Conversation,
    /// A message of a conversation.
    Message,
}

impl Kind {
    /// The name used in SQL and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Document => "document",
            Kind::Conversation => "conversation",
            Kind::Message => "message",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "document" => Some(Kind::Document),
            "conversation" => Some(Kind::Conversation),
            "message" => Some(Kind::Message),
            _ => None,
        }
    }
}
