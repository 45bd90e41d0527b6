//! The plain records that cross the FFI: owned copies of the engine's results, with
//! fixed-width integers as UniFFI wants them.

// Fields whose names say what they hold are not documented one by one.
#![allow(missing_docs)]

/// How to open an engine.
#[derive(Debug, Clone, uniffi::Record)]
pub struct EngineConfig {
    /// The embedding model directory (Hugging Face layout); `None`: the fetched default under
    /// `OUTPOST_HOME`.
    #[uniffi(default = None)]
    pub model_dir: Option<String>,
    /// The collection texts and files go to; `None`: `default`.
    #[uniffi(default = None)]
    pub collection: Option<String>,
    /// Embed on the GPU where one is usable (builds with CUDA only).
    #[uniffi(default = false)]
    pub use_gpu: bool,
    /// Reading connections for parallel searches.
    #[uniffi(default = 2)]
    pub readers: u32,
    /// Load the model (tokenizer and weights, about 50 MiB) when the engine opens. By default
    /// it loads at its first use (the first ingest, text query or context): an app that opens
    /// early, or only lists, syncs or searches by vector, never pays for it.
    #[uniffi(default = false)]
    pub preload_model: bool,
}

/// Where the central store is: the Supabase REST API (`supabase_url`, `anon_key`, `jwt`), or
/// direct Postgres (`postgres_url` and the user id to act as, or the `jwt` whose subject it is).
#[derive(Debug, Clone, uniffi::Record)]
pub struct CentralConfig {
    #[uniffi(default = None)]
    pub supabase_url: Option<String>,
    #[uniffi(default = None)]
    pub anon_key: Option<String>,
    #[uniffi(default = None)]
    pub jwt: Option<String>,
    #[uniffi(default = None)]
    pub postgres_url: Option<String>,
    #[uniffi(default = None)]
    pub user_id: Option<String>,
    /// Seconds to wait for any one call.
    #[uniffi(default = 30)]
    pub timeout_s: u32,
}

impl From<CentralConfig> for outpost_sync::CentralSettings {
    fn from(c: CentralConfig) -> Self {
        Self {
            central_url: c.postgres_url,
            central_user: c.user_id,
            supabase_url: c.supabase_url,
            supabase_anon_key: c.anon_key,
            supabase_jwt: c.jwt,
        }
    }
}

/// A stored (or unchanged) document.
#[derive(Debug, Clone, uniffi::Record)]
pub struct IngestedDocument {
    pub document_id: String,
    pub source: String,
    /// `added`, `updated` or `unchanged`.
    pub outcome: String,
    /// Chunks embedded and written (0 if unchanged).
    pub chunks: u32,
}

/// What a file or folder ingest did.
#[derive(Debug, Clone, Default, uniffi::Record)]
pub struct IngestSummary {
    pub added: u32,
    pub updated: u32,
    pub unchanged: u32,
    pub failed: u32,
    pub chunks: u32,
    /// `path: reason` of each file that was not indexed.
    pub failures: Vec<String>,
}

impl IngestSummary {
    pub(crate) fn add(&mut self, r: &outpost_core::IngestReport) {
        self.added += r.added as u32;
        self.updated += r.updated as u32;
        self.unchanged += r.unchanged as u32;
        self.failed += r.failed as u32;
        self.chunks += r.chunks as u32;
        self.failures.extend(
            r.failures
                .iter()
                .map(|f| format!("{}: {}", f.path, f.reason)),
        );
    }
}

/// The embedding model an engine loaded.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ModelInfo {
    pub model_id: String,
    /// The size of its vectors.
    pub dims: u32,
}

/// A text with its vector, made elsewhere, to store unsplit as one chunk
/// (`Engine.put_text_with_vector`).
#[derive(Debug, Clone, uniffi::Record)]
pub struct VectorText {
    pub text: String,
    /// Its vector: the size of `model_id`'s vectors, the same for every text of that model.
    pub vector: Vec<f32>,
    /// The document's key in its collection: the same source again updates that document.
    pub source: String,
    /// `None`: the text's first line.
    #[uniffi(default = None)]
    pub title: Option<String>,
    /// A JSON object of string, number or boolean values, stored as given.
    #[uniffi(default = None)]
    pub metadata_json: Option<String>,
    /// `None`: the engine's collection. A collection holds the vectors of one model.
    #[uniffi(default = None)]
    pub collection: Option<String>,
    /// The model that made `vector`, named as the caller likes (`None`: the engine's own, as
    /// from `Engine.embed`). Only vectors of one model are compared with each other.
    #[uniffi(default = None)]
    pub model_id: Option<String>,
}

/// A stored document with its text and metadata.
#[derive(Debug, Clone, uniffi::Record)]
pub struct StoredDocument {
    pub document_id: String,
    pub source: String,
    pub collection: String,
    pub title: String,
    /// The text: its chunks joined in order, their overlaps removed (a text stored unsplit is
    /// given back as stored).
    pub text: String,
    /// The metadata as a JSON object (files and texts indexed by Outpost carry `format`).
    pub metadata_json: String,
    pub chunks: u32,
    pub updated_at_ms: i64,
}

impl From<outpost_core::DocumentDetail> for StoredDocument {
    fn from(d: outpost_core::DocumentDetail) -> Self {
        // Each chunk is a slice of the text; the next one may start inside the one before
        // (overlap) or after a gap the chunker skipped (whitespace), kept as one space.
        let mut text = String::new();
        let mut end = 0;
        for c in &d.chunks {
            if c.byte_start >= end {
                if !text.is_empty() && c.byte_start > end {
                    text.push(' ');
                }
                text.push_str(&c.text);
            } else {
                let skip = end - c.byte_start;
                text.push_str(c.text.get(skip..).unwrap_or_default());
            }
            end = end.max(c.byte_end);
        }
        Self {
            document_id: d.summary.id,
            source: d.summary.source,
            collection: d.summary.collection,
            title: d.summary.title,
            text,
            metadata_json: d.metadata.to_string(),
            chunks: d.chunks.len() as u32,
            updated_at_ms: d.summary.updated_at,
        }
    }
}

/// One search result.
#[derive(Debug, Clone, uniffi::Record)]
pub struct SearchHit {
    pub chunk_id: String,
    pub document_id: String,
    pub title: String,
    pub source: String,
    pub collection: String,
    pub text: String,
    /// Higher is better (cosine similarity, negated BM25, or fused RRF score).
    pub score: f64,
    pub ordinal: u32,
    pub byte_start: u64,
    pub byte_end: u64,
}

impl From<outpost_core::SearchHit> for SearchHit {
    fn from(h: outpost_core::SearchHit) -> Self {
        Self {
            chunk_id: h.chunk_id,
            document_id: h.document_id,
            title: h.title,
            source: h.source,
            collection: h.collection,
            text: h.text,
            score: h.score,
            ordinal: h.ordinal as u32,
            byte_start: h.byte_start as u64,
            byte_end: h.byte_end as u64,
        }
    }
}

/// A passage cited in a context.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Citation {
    /// The number in the text (`[n]`).
    pub n: u32,
    pub document_id: String,
    pub title: String,
    pub source: String,
    pub truncated: bool,
}

/// A RAG context block.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Context {
    /// The text to hand to a language model.
    pub text: String,
    /// Its tokens, by the model's tokenizer.
    pub tokens: u32,
    pub budget: u32,
    pub citations: Vec<Citation>,
    /// Conversation messages included (recent, then recalled).
    pub messages: Vec<Message>,
}

impl From<outpost_core::Context> for Context {
    fn from(c: outpost_core::Context) -> Self {
        Self {
            text: c.text,
            tokens: c.tokens as u32,
            budget: c.budget as u32,
            citations: c
                .citations
                .into_iter()
                .map(|x| Citation {
                    n: x.n as u32,
                    document_id: x.document_id,
                    title: x.title,
                    source: x.source,
                    truncated: x.truncated,
                })
                .collect(),
            messages: c
                .recent_messages
                .into_iter()
                .chain(c.recalled_messages)
                .map(Message::from)
                .collect(),
        }
    }
}

/// A conversation.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Conversation {
    pub id: String,
    pub title: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub messages: u32,
}

impl From<outpost_core::Conversation> for Conversation {
    fn from(c: outpost_core::Conversation) -> Self {
        Self {
            id: c.id,
            title: c.title,
            created_at_ms: c.created_at,
            updated_at_ms: c.updated_at,
            messages: c.messages as u32,
        }
    }
}

/// A message.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Message {
    pub id: String,
    pub conversation_id: String,
    pub seq: i64,
    pub role: String,
    pub content: String,
    pub created_at_ms: i64,
}

impl From<outpost_core::Message> for Message {
    fn from(m: outpost_core::Message) -> Self {
        Self {
            id: m.id,
            conversation_id: m.conversation_id,
            seq: m.seq,
            role: m.role,
            content: m.content,
            created_at_ms: m.created_at,
        }
    }
}

/// What a sync did.
#[derive(Debug, Clone, uniffi::Record)]
pub struct SyncReport {
    pub pushed: u64,
    pub pulled: u64,
    pub push_applied: u64,
    pub push_duplicate: u64,
    pub push_stale: u64,
    pub pull_applied: u64,
    pub pull_skipped: u64,
    pub reembedded: u64,
}

impl From<outpost_sync::SyncReport> for SyncReport {
    fn from(r: outpost_sync::SyncReport) -> Self {
        Self {
            pushed: r.pushed as u64,
            pulled: r.pulled as u64,
            push_applied: r.push_applied as u64,
            push_duplicate: r.push_duplicate as u64,
            push_stale: r.push_stale as u64,
            pull_applied: r.pull_applied as u64,
            pull_skipped: r.pull_skipped as u64,
            reembedded: r.reembed as u64,
        }
    }
}

/// The state of sync on this device.
#[derive(Debug, Clone, uniffi::Record)]
pub struct SyncStatus {
    pub device_id: String,
    /// Changes waiting to be pushed.
    pub outbox_depth: u64,
    /// Age of the oldest unpushed change, in milliseconds.
    pub lag_ms: i64,
    pub last_push_ms: Option<i64>,
    pub last_pull_ms: Option<i64>,
}

impl From<outpost_sync::SyncStatus> for SyncStatus {
    fn from(s: outpost_sync::SyncStatus) -> Self {
        Self {
            device_id: s.device_id,
            outbox_depth: s.outbox_depth as u64,
            lag_ms: s.lag_ms,
            last_push_ms: s.last_push_ms,
            last_pull_ms: s.last_pull_ms,
        }
    }
}

/// What the database holds.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Stats {
    pub path: String,
    pub schema_version: i64,
    pub size_bytes: u64,
    pub documents: u64,
    pub chunks: u64,
    pub conversations: u64,
    pub messages: u64,
    pub collections: Vec<String>,
}

impl From<outpost_core::Stats> for Stats {
    fn from(s: outpost_core::Stats) -> Self {
        Self {
            path: s.path.display().to_string(),
            schema_version: s.schema_version,
            size_bytes: s.size_bytes,
            documents: s.collections.iter().map(|c| c.documents as u64).sum(),
            chunks: s.collections.iter().map(|c| c.chunks as u64).sum(),
            conversations: s.conversations as u64,
            messages: s.messages as u64,
            collections: s
                .collections
                .into_iter()
                .map(|c| c.collection.name)
                .collect(),
        }
    }
}
