//! Outpost for mobile apps and other hosts: the engine behind a UniFFI interface, with bindings
//! for Kotlin, Swift and Python generated from this library (`cross/scripts/bindings.sh`).
//!
//! One [`Engine`] object per database file: open, ingest text or files, search, build RAG
//! context, delete, conversations, sync with a central Supabase store, status and stats. It is
//! `Send + Sync`: searches run in parallel on reading connections while one writing connection
//! takes ingests and other writes. Every call returns owned records; every failure is an
//! [`OutpostError`] with a readable message, and a panic inside a call is caught and reported as
//! [`OutpostError::Internal`] instead of unwinding into the host. Long calls (ingesting a folder,
//! syncing) stop early with [`OutpostError::Cancelled`] after [`Engine::cancel`].

// The FFI scaffolding that `setup_scaffolding!` generates is `extern "C"` code.
#![allow(unsafe_code)]

uniffi::setup_scaffolding!();

mod records;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use outpost_core::{IngestOptions, SearchMode, SearchOptions};

pub use records::*;

/// What can go wrong, as the host language sees it: a small enum, each with a message that says
/// what and where (the `message` field).
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum OutpostError {
    /// A bad argument: an empty query, a filter that does not parse, a vector of the wrong
    /// dimension, a file that cannot be indexed.
    #[error("{message}")]
    InvalidInput { message: String },
    /// No such document or conversation.
    #[error("{message}")]
    NotFound { message: String },
    /// The database cannot be opened or used: unreadable, corrupt, another application's, newer.
    #[error("{message}")]
    Database { message: String },
    /// The embedding model is missing or failed.
    #[error("{message}")]
    Model { message: String },
    /// Sync failed: offline, refused credentials, a central schema to migrate, a bad answer.
    #[error("{message}")]
    Sync { message: String },
    /// The call was cancelled with `Engine.cancel()`.
    #[error("{message}")]
    Cancelled { message: String },
    /// A bug: a panic inside the library, caught at the boundary.
    #[error("{message}")]
    Internal { message: String },
}

impl From<outpost_core::Error> for OutpostError {
    fn from(e: outpost_core::Error) -> Self {
        use outpost_core::ErrorKind as K;
        let message = e.to_string();
        match e.kind() {
            K::NotFound => Self::NotFound { message },
            K::InvalidInput => Self::InvalidInput { message },
            K::Model => Self::Model { message },
            K::Database | K::Index | K::Export => Self::Database { message },
        }
    }
}

impl From<outpost_sync::Error> for OutpostError {
    fn from(e: outpost_sync::Error) -> Self {
        match e {
            outpost_sync::Error::Local(inner) => inner.into(),
            other => Self::Sync {
                message: other.to_string(),
            },
        }
    }
}

type Result<T> = std::result::Result<T, OutpostError>;

/// Runs `f`, turning a panic into [`OutpostError::Internal`]: nothing unwinds into the host.
fn guard<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(panic) => {
            let detail = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(OutpostError::Internal {
                message: format!("internal error in {what}: {detail}"),
            })
        }
    }
}

/// An open Outpost database with its embedding model.
#[derive(uniffi::Object)]
pub struct Engine {
    collection: String,
    /// The engine: its model, its writer, its readers, its derived indexes.
    inner: outpost_core::Engine,
    /// Bumped by [`Engine::cancel`]; a long call stops when it changes under it.
    cancel_epoch: AtomicU64,
}

fn mode(name: &str) -> Result<SearchMode> {
    name.parse()
        .map_err(|e: outpost_core::Error| OutpostError::InvalidInput {
            message: e.to_string(),
        })
}

fn filters(raw: &[String]) -> Result<Vec<outpost_core::Filter>> {
    raw.iter()
        .map(|f| f.parse())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e: outpost_core::Error| OutpostError::InvalidInput {
            message: e.to_string(),
        })
}

#[uniffi::export]
impl Engine {
    /// Opens (or creates) the database at `path` and loads the embedding model (`config`).
    #[uniffi::constructor]
    pub fn open(path: String, config: EngineConfig) -> Result<Arc<Self>> {
        guard("open", || {
            let dir = outpost_models::resolve_model_dir(
                config.model_dir.as_deref().map(std::path::Path::new),
            )
            .map_err(|e| OutpostError::Model {
                message: e.to_string(),
            })?;
            let device = outpost_models::select_device(config.use_gpu);
            let model = outpost_models::BertEmbedder::load(&dir, &device).map_err(|e| {
                OutpostError::Model {
                    message: format!("loading the model from {}: {e}", dir.display()),
                }
            })?;
            let inner = outpost_core::Engine::open(
                PathBuf::from(path),
                Arc::new(model),
                config.readers.clamp(1, 16) as usize,
            )?;
            Ok(Arc::new(Self {
                collection: config
                    .collection
                    .unwrap_or_else(|| outpost_core::DEFAULT_COLLECTION.into()),
                inner,
                cancel_epoch: AtomicU64::new(0),
            }))
        })
    }

    /// Indexes a text under `source` (the same source again updates that document; `None`
    /// makes a new one). `metadata_json` is a JSON object of string, number or boolean values.
    pub fn ingest_text(
        &self,
        text: String,
        title: Option<String>,
        source: Option<String>,
        metadata_json: Option<String>,
    ) -> Result<IngestedDocument> {
        guard("ingest_text", || {
            let metadata = match metadata_json.as_deref() {
                None | Some("") => serde_json::Map::new(),
                Some(raw) => match serde_json::from_str(raw) {
                    Ok(serde_json::Value::Object(m)) => m,
                    Ok(_) => {
                        return Err(OutpostError::InvalidInput {
                            message: "metadata_json must be a JSON object".into(),
                        })
                    }
                    Err(e) => {
                        return Err(OutpostError::InvalidInput {
                            message: format!("metadata_json: {e}"),
                        })
                    }
                },
            };
            let input = outpost_core::TextInput {
                text,
                title,
                source: source.unwrap_or_else(|| format!("app:{}", unique_suffix())),
                metadata,
            };
            let done = self.inner.ingest_text(input, &self.ingest_options())?;
            Ok(IngestedDocument {
                document_id: done.id,
                source: done.source,
                outcome: format!("{:?}", done.outcome).to_lowercase(),
                chunks: done.chunks as u32,
            })
        })
    }

    /// Indexes a file, or every file under a folder (text, Markdown, HTML, PDF, JSONL). Files
    /// that cannot be indexed are listed in the report; the call stops between files when
    /// cancelled.
    pub fn ingest_path(&self, path: String) -> Result<IngestSummary> {
        guard("ingest_path", || {
            let epoch = self.cancel_epoch.load(Ordering::SeqCst);
            let (files, walk_failures) =
                outpost_core::ingest::collect_files(&[PathBuf::from(&path)], false);
            if files.is_empty() && walk_failures.is_empty() {
                return Err(OutpostError::InvalidInput {
                    message: format!("{path}: no files to index"),
                });
            }
            let opts = self.ingest_options();
            let mut summary = IngestSummary::default();
            summary.failed += walk_failures.len() as u32;
            summary.failures.extend(
                walk_failures
                    .iter()
                    .map(|f| format!("{}: {}", f.path, f.reason)),
            );
            for file in files {
                if self.cancel_epoch.load(Ordering::SeqCst) != epoch {
                    return Err(OutpostError::Cancelled {
                        message: format!(
                            "ingest of {path} cancelled after {} files",
                            summary.added + summary.updated + summary.unchanged
                        ),
                    });
                }
                let report = self.inner.ingest(&[file], &opts, &mut |_| {})?;
                summary.add(&report);
            }
            Ok(summary)
        })
    }

    /// Searches: `mode` is `hybrid`, `vector` or `text`; `filters` as on the command line
    /// (`topic=bees`, `year>=2023`, `source=PREFIX`, `collection=NAME`).
    pub fn search(
        &self,
        query: String,
        k: u32,
        mode_name: String,
        filter_list: Vec<String>,
    ) -> Result<Vec<SearchHit>> {
        guard("search", || {
            let opts = SearchOptions {
                k: k as usize,
                mode: mode(&mode_name)?,
                filters: filters(&filter_list)?,
                ..Default::default()
            };
            let hits = self.inner.search(&query, &opts)?;
            Ok(hits.into_iter().map(SearchHit::from).collect())
        })
    }

    /// Searches by a vector made elsewhere by the same model (its dimension must match).
    pub fn search_vector(&self, vector: Vec<f32>, k: u32) -> Result<Vec<SearchHit>> {
        guard("search_vector", || {
            let opts = SearchOptions {
                k: k as usize,
                ..Default::default()
            };
            let hits = self.inner.search_by_vector(&vector, &opts)?;
            Ok(hits.into_iter().map(SearchHit::from).collect())
        })
    }

    /// A RAG context block with numbered citations, within `budget` tokens, with the memory of
    /// `conversation_id` if given.
    pub fn context(
        &self,
        query: String,
        budget: u32,
        conversation_id: Option<String>,
    ) -> Result<Context> {
        guard("context", || {
            let opts = outpost_core::ContextOptions {
                budget: budget as usize,
                conversation_id,
                ..Default::default()
            };
            let ctx = self.inner.context(&query, &opts)?;
            Ok(Context::from(ctx))
        })
    }

    /// Deletes a document (a tombstone that sync carries to other devices).
    pub fn delete_document(&self, document_id: String) -> Result<()> {
        guard("delete_document", || {
            self.inner.delete_document(&document_id)?;
            Ok(())
        })
    }

    /// Starts a conversation.
    pub fn create_conversation(&self, title: String) -> Result<Conversation> {
        guard("create_conversation", || {
            Ok(self.inner.create_conversation(&title)?.into())
        })
    }

    /// Adds a message (embedded, for recall by similarity in contexts).
    pub fn add_message(
        &self,
        conversation_id: String,
        role: String,
        content: String,
    ) -> Result<Message> {
        guard("add_message", || {
            Ok(self
                .inner
                .add_message(&conversation_id, &role, &content)?
                .into())
        })
    }

    /// The `n` most recent messages, oldest first.
    pub fn recent_messages(&self, conversation_id: String, n: u32) -> Result<Vec<Message>> {
        guard("recent_messages", || {
            self.inner.conversation(&conversation_id)?;
            Ok(self
                .inner
                .recent_messages(&conversation_id, n as usize)?
                .into_iter()
                .map(Message::from)
                .collect())
        })
    }

    /// Pushes local changes to the central store and pulls the others'; stops early when
    /// cancelled (what was acknowledged stays acknowledged).
    pub fn sync_now(&self, central: CentralConfig) -> Result<SyncReport> {
        guard("sync_now", || {
            let epoch = self.cancel_epoch.load(Ordering::SeqCst);
            let settings = outpost_sync::CentralSettings::from(central.clone());
            let config = outpost_sync::CentralConfig::from_settings(&settings)?;
            let central_store =
                config.open(Duration::from_secs(u64::from(central.timeout_s.max(1))))?;
            let mut opts = outpost_sync::SyncOptions::new(
                self.inner.embedder().model_id(),
                self.inner.embedder().dims(),
            );
            // An app calls again later: ride over a blip, but give up within the timeout.
            opts.backoff = outpost_sync::Backoff {
                initial: Duration::from_millis(200),
                max: Duration::from_secs(2),
                give_up_after: Some(Duration::from_secs(u64::from(central.timeout_s.max(1)))),
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| OutpostError::Internal {
                    message: format!("starting the sync runtime: {e}"),
                })?;
            // Sync takes the writer only for each batch it applies: searches and writes go
            // on meanwhile.
            let report = rt.block_on(async {
                let mut quiet = |_| {};
                let sync = outpost_sync::sync_once(&self.inner, &central_store, &opts, &mut quiet);
                let cancelled = async {
                    while self.cancel_epoch.load(Ordering::SeqCst) == epoch {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                };
                tokio::select! {
                    r = sync => r.map_err(OutpostError::from),
                    () = cancelled => Err(OutpostError::Cancelled {
                        message: "sync cancelled".into(),
                    }),
                }
            })?;
            self.inner
                .reembed_pending(&|| self.cancel_epoch.load(Ordering::SeqCst) != epoch)?;
            Ok(report.into())
        })
    }

    /// The outbox and the last push and pull (no network).
    pub fn sync_status(&self) -> Result<SyncStatus> {
        guard("sync_status", || {
            Ok(outpost_sync::status(&self.inner)?.into())
        })
    }

    /// What the database holds.
    pub fn stats(&self) -> Result<Stats> {
        guard("stats", || Ok(self.inner.stats()?.into()))
    }

    /// Cancels the long calls (folder ingests, syncs) running now; later calls are unaffected.
    pub fn cancel(&self) {
        self.cancel_epoch.fetch_add(1, Ordering::SeqCst);
    }
}

impl Engine {
    fn ingest_options(&self) -> IngestOptions {
        IngestOptions {
            collection: self.collection.clone(),
            ..Default::default()
        }
    }
}

/// A time-ordered suffix, unique within this process, for the source of a text given none (the
/// document id itself is a UUIDv7 made by core).
fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!("{nanos:x}-{:x}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_is_an_internal_error_not_an_abort() {
        let caught: Result<()> = guard("a call", || panic!("boom at the boundary"));
        match caught {
            Err(OutpostError::Internal { message }) => {
                assert!(message.contains("boom at the boundary"), "{message}");
                assert!(message.contains("a call"), "{message}");
            }
            other => panic!("expected an internal error, got {other:?}"),
        }
        // A formatted panic message (a String payload) comes through too.
        let caught: Result<()> = guard("another", || panic!("code {}", 7));
        assert!(
            matches!(caught, Err(OutpostError::Internal { message }) if message.contains("code 7"))
        );
        // The boundary still works afterwards.
        assert_eq!(guard("after", || Ok(3)).ok(), Some(3));
    }
}
