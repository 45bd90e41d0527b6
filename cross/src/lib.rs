//! Outpost for mobile apps and other hosts: the engine behind a UniFFI interface, with bindings
//! for Kotlin, Swift and Python generated from this library (`cross/scripts/bindings.sh`).
//!
//! One [`Engine`] object per database file: open, ingest text or files, store texts with vectors
//! made elsewhere (the host's own model: what a LangChain `VectorStore` needs) and read documents
//! back, search, build RAG context, delete, conversations, sync with a central Supabase store (as the user of a session
//! the app owns and hands over with [`Engine::set_session`], refreshed here and handed back to
//! the app's [`SessionListener`] at every rotation), status and stats. It is
//! `Send + Sync`: searches run in parallel on reading connections while one writing connection
//! takes ingests and other writes. Every call returns owned records; every failure is an
//! [`OutpostError`] with a readable message, and a panic inside a call is caught and reported as
//! [`OutpostError::Internal`] instead of unwinding into the host. The long calls (ingesting a
//! folder, syncing) are async in the host language (`long_calls`), report progress to a
//! [`ProgressListener`], and stop early with [`OutpostError::Cancelled`] when the caller's
//! coroutine or task is cancelled or after [`Engine::cancel`]. After [`Engine::shutdown`] every
//! call is [`OutpostError::Closed`].

// The FFI scaffolding that `setup_scaffolding!` generates is `extern "C"` code.
#![allow(unsafe_code)]

uniffi::setup_scaffolding!();

mod long_calls;
mod records;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use outpost_core::{IngestOptions, SearchMode, SearchOptions};

pub use long_calls::ProgressListener;
use long_calls::{in_background, Stop};
pub use records::*;

/// What can go wrong, as the host language sees it: a small enum, each with a message that says
/// what and where (the `detail` field: not `message`, which Kotlin's exceptions have already).
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum OutpostError {
    /// A bad argument: an empty query, a filter that does not parse, a vector of the wrong
    /// dimension, a file that cannot be indexed.
    #[error("{detail}")]
    InvalidInput { detail: String },
    /// No such document or conversation.
    #[error("{detail}")]
    NotFound { detail: String },
    /// The database cannot be opened or used: unreadable, corrupt, another application's, newer.
    #[error("{detail}")]
    Database { detail: String },
    /// The embedding model is missing or failed.
    #[error("{detail}")]
    Model { detail: String },
    /// Sync failed: offline, refused credentials, a central schema to migrate, a bad answer.
    #[error("{detail}")]
    Sync { detail: String },
    /// The user's session is gone for good: the refresh token was spent elsewhere, revoked,
    /// signed out, or no session was set. Only a new sign-in helps; then `set_session` again.
    #[error("{detail}")]
    SignedOut { detail: String },
    /// The call was cancelled: its coroutine or task, `Engine.cancel()` or `Engine.shutdown()`.
    #[error("{detail}")]
    Cancelled { detail: String },
    /// The engine was shut down (`Engine.shutdown()`): open the database again.
    #[error("{detail}")]
    Closed { detail: String },
    /// No room left on the device for a write (the database, an index file, an export): the
    /// write was rolled back and nothing stored was lost; free space and call again.
    #[error("{detail}")]
    DiskFull { detail: String },
    /// A bug: a panic inside the library, caught at the boundary.
    #[error("{detail}")]
    Internal { detail: String },
}

impl From<outpost_core::Error> for OutpostError {
    fn from(e: outpost_core::Error) -> Self {
        use outpost_core::ErrorKind as K;
        let detail = e.to_string();
        match e.kind() {
            K::NotFound => Self::NotFound { detail },
            K::InvalidInput => Self::InvalidInput { detail },
            K::Model => Self::Model { detail },
            K::DiskFull => Self::DiskFull { detail },
            K::Database | K::Index | K::Export => Self::Database { detail },
        }
    }
}

impl From<outpost_sync::Error> for OutpostError {
    fn from(e: outpost_sync::Error) -> Self {
        match e {
            outpost_sync::Error::Local(inner) => inner.into(),
            // Not sync's own text, which tells a CLI user to run `outpost login`.
            outpost_sync::Error::SignedOut {
                endpoint,
                code,
                detail,
            } => Self::SignedOut {
                detail: format!(
                    "{endpoint}: signed out ({code}: {detail}): sign the user in again and call set_session"
                ),
            },
            other => Self::Sync {
                detail: other.to_string(),
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
                detail: format!("internal error in {what}: {detail}"),
            })
        }
    }
}

/// What the app is told at every rotation of the session it handed over with
/// [`Engine::set_session`]: the new pair, before its access token is used. Store the refresh
/// token (the old one is spent) and update the app's own Supabase client with it.
#[uniffi::export(callback_interface)]
pub trait SessionListener: Send + Sync {
    /// The new access token, the new refresh token, and when the access token expires (Unix
    /// seconds, its `exp`).
    fn on_session(&self, access_token: String, refresh_token: String, expires_at_s: i64);
}

/// The session the app handed over: its tokens until the first REST sync names the project,
/// then the session refreshing itself.
enum AppLogin {
    None,
    Pending {
        access_token: String,
        refresh_token: String,
        listener: Option<Box<dyn SessionListener>>,
    },
    Open(Arc<outpost_sync::AppSession>),
}

/// An open Outpost database with its embedding model.
#[derive(uniffi::Object)]
pub struct Engine {
    collection: String,
    /// The engine: its model, its writer, its readers, its derived indexes; `None` once shut
    /// down. Each call holds its own `Arc` while it runs, so shutting down never pulls the
    /// database from under a running call: the file is closed when the last one returns.
    inner: RwLock<Option<Arc<outpost_core::Engine>>>,
    /// Bumped by [`Engine::cancel`] and [`Engine::shutdown`]; a long call stops when it changes
    /// under it.
    cancel_epoch: Arc<AtomicU64>,
    /// The app's session, if it set one.
    login: Mutex<AppLogin>,
    /// The runtime syncs run on, made at the first sync and kept: the session's HTTP client
    /// keeps its connections across syncs.
    runtime: OnceLock<tokio::runtime::Runtime>,
    /// The engine's model, which loads at its first use.
    model: Arc<outpost_models::LazyBertEmbedder>,
}

fn mode(name: &str) -> Result<SearchMode> {
    name.parse()
        .map_err(|e: outpost_core::Error| OutpostError::InvalidInput {
            detail: e.to_string(),
        })
}

/// A `metadata_json` argument: absent or empty for none, else a JSON object.
fn metadata(json: Option<&str>) -> Result<serde_json::Map<String, serde_json::Value>> {
    match json {
        None | Some("") => Ok(serde_json::Map::new()),
        Some(raw) => match serde_json::from_str(raw) {
            Ok(serde_json::Value::Object(m)) => Ok(m),
            Ok(_) => Err(OutpostError::InvalidInput {
                detail: "metadata_json must be a JSON object".into(),
            }),
            Err(e) => Err(OutpostError::InvalidInput {
                detail: format!("metadata_json: {e}"),
            }),
        },
    }
}

fn filters(raw: &[String]) -> Result<Vec<outpost_core::Filter>> {
    raw.iter()
        .map(|f| f.parse())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e: outpost_core::Error| OutpostError::InvalidInput {
            detail: e.to_string(),
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
                detail: e.to_string(),
            })?;
            let device = outpost_models::select_device(config.use_gpu);
            let model = outpost_models::LazyBertEmbedder::open(&dir, &device)
                .and_then(|m| {
                    if config.preload_model {
                        m.model()?;
                    }
                    Ok(Arc::new(m))
                })
                .map_err(|e| OutpostError::Model {
                    detail: format!("loading the model from {}: {e}", dir.display()),
                })?;
            let inner = Arc::new(outpost_core::Engine::open(
                PathBuf::from(path),
                model.clone(),
                config.readers.clamp(1, 16) as usize,
            )?);
            Ok(Arc::new(Self {
                collection: config
                    .collection
                    .unwrap_or_else(|| outpost_core::DEFAULT_COLLECTION.into()),
                inner: RwLock::new(Some(inner)),
                model,
                cancel_epoch: Arc::new(AtomicU64::new(0)),
                login: Mutex::new(AppLogin::None),
                runtime: OnceLock::new(),
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
            let metadata = metadata(metadata_json.as_deref())?;
            let input = outpost_core::TextInput {
                text,
                title,
                source: source.unwrap_or_else(|| format!("app:{}", unique_suffix())),
                metadata,
            };
            let done = self.core()?.ingest_text(input, &self.ingest_options())?;
            Ok(IngestedDocument {
                document_id: done.id,
                source: done.source,
                outcome: format!("{:?}", done.outcome).to_lowercase(),
                chunks: done.chunks as u32,
            })
        })
    }

    /// Indexes a file, or every file under a folder (text, Markdown, HTML, PDF, JSONL). Files
    /// that cannot be indexed are listed in the summary. Async: it runs on a thread of its own,
    /// tells `listener` each finished file (`files`, done of total), and stops between files
    /// when the caller is cancelled (its coroutine or task) or after [`Engine::cancel`]: the
    /// files indexed so far stay, each one whole.
    #[uniffi::method(default(listener = None))]
    pub async fn ingest_path(
        self: Arc<Self>,
        path: String,
        listener: Option<Box<dyn ProgressListener>>,
    ) -> Result<IngestSummary> {
        let core = self.core()?;
        let stop = Stop::new(&self.cancel_epoch);
        let opts = self.ingest_options();
        in_background("ingest_path", stop, move |stop| {
            let (files, walk_failures) =
                outpost_core::ingest::collect_files(&[PathBuf::from(&path)], false);
            if files.is_empty() && walk_failures.is_empty() {
                return Err(OutpostError::InvalidInput {
                    detail: format!("{path}: no files to index"),
                });
            }
            let mut summary = IngestSummary::default();
            summary.failed += walk_failures.len() as u32;
            summary.failures.extend(
                walk_failures
                    .iter()
                    .map(|f| format!("{}: {}", f.path, f.reason)),
            );
            let total = files.len() as u64;
            for (done, file) in files.into_iter().enumerate() {
                if stop.requested() {
                    return Err(OutpostError::Cancelled {
                        detail: format!("ingest of {path} cancelled after {done} of {total} files"),
                    });
                }
                let report = core.ingest(&[file], &opts, &mut |_| {})?;
                summary.add(&report);
                if let Some(l) = &listener {
                    l.on_progress("files".into(), done as u64 + 1, total);
                }
            }
            Ok(summary)
        })
        .await
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
            let hits = self.core()?.search(&query, &opts)?;
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
            let hits = self.core()?.search_by_vector(&vector, &opts)?;
            Ok(hits.into_iter().map(SearchHit::from).collect())
        })
    }

    /// The embedding model the engine loaded: its id and the size of its vectors.
    pub fn model(&self) -> Result<ModelInfo> {
        guard("model", || {
            let core = self.core()?;
            Ok(ModelInfo {
                model_id: core.embedder().model_id().to_string(),
                dims: core.embedder().dims() as u32,
            })
        })
    }

    /// Embeds `texts` with the engine's model, one unit vector per text, in order: for a host
    /// that wants the vectors themselves (LangChain's `Embeddings`). Texts longer than the
    /// model's window are cut to it.
    pub fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        guard("embed", || {
            let core = self.core()?;
            let mut vectors = Vec::with_capacity(texts.len());
            for batch in texts.chunks(32) {
                let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
                vectors.extend(
                    core.embedder()
                        .embed(&refs)
                        .map_err(|e| OutpostError::Model {
                            detail: e.to_string(),
                        })?,
                );
            }
            Ok(vectors)
        })
    }

    /// Stores a text with a vector made elsewhere (by the caller's own model, named in
    /// `model_id`, or by [`Engine::embed`]), unsplit, as one chunk: see [`VectorText`]. The
    /// same source again with anything changed updates that document, keeping its id.
    pub fn put_text_with_vector(&self, input: VectorText) -> Result<IngestedDocument> {
        guard("put_text_with_vector", || {
            let core = self.core()?;
            let model_id = input
                .model_id
                .unwrap_or_else(|| core.embedder().model_id().to_string());
            let text = outpost_core::TextInput {
                text: input.text,
                title: input.title,
                source: input.source,
                metadata: metadata(input.metadata_json.as_deref())?,
            };
            let collection = input.collection.unwrap_or_else(|| self.collection.clone());
            let done = core.put_text_with_vector(&collection, &model_id, text, input.vector)?;
            Ok(IngestedDocument {
                document_id: done.id,
                source: done.source,
                outcome: format!("{:?}", done.outcome).to_lowercase(),
                chunks: done.chunks as u32,
            })
        })
    }

    /// Searches by a vector of `model_id` (`None`: the engine's model) among the collections
    /// of that model, with filters as in [`Engine::search`] (`collection=NAME` to search one).
    /// No collection of that model yet is no hits.
    pub fn search_vector_of(
        &self,
        model_id: Option<String>,
        vector: Vec<f32>,
        k: u32,
        filter_list: Vec<String>,
    ) -> Result<Vec<SearchHit>> {
        guard("search_vector_of", || {
            let core = self.core()?;
            let model_id = model_id.unwrap_or_else(|| core.embedder().model_id().to_string());
            let opts = SearchOptions {
                k: k as usize,
                filters: filters(&filter_list)?,
                ..Default::default()
            };
            let hits = core.search_by_vector_of(&model_id, &vector, &opts)?;
            Ok(hits.into_iter().map(SearchHit::from).collect())
        })
    }

    /// The live documents this device stored under `sources` in `collection` (`None`: the
    /// engine's), in the order asked, with their text and metadata; a source with none (never
    /// stored here, or deleted) is left out, as is every source when the collection does not
    /// exist. (A source is a document's key on the device that made it: the same source on two
    /// devices is two documents, each found by its id with [`Engine::documents`].)
    pub fn documents_by_source(
        &self,
        collection: Option<String>,
        sources: Vec<String>,
    ) -> Result<Vec<StoredDocument>> {
        guard("documents_by_source", || {
            let core = self.core()?;
            let collection = collection.unwrap_or_else(|| self.collection.clone());
            let mut found = Vec::new();
            for source in &sources {
                if let Some((id, _)) = core.document_by_source(&collection, source)? {
                    found.push(StoredDocument::from(core.get_document(&id)?));
                }
            }
            Ok(found)
        })
    }

    /// The live documents with these ids (as in search hits: any device's), in the order
    /// asked, with their text and metadata; an unknown or deleted id is left out.
    pub fn documents(&self, document_ids: Vec<String>) -> Result<Vec<StoredDocument>> {
        guard("documents", || {
            let core = self.core()?;
            let mut found = Vec::new();
            for id in &document_ids {
                match core.get_document(id) {
                    Ok(doc) if !doc.summary.deleted => found.push(StoredDocument::from(doc)),
                    Ok(_) => {}
                    Err(e) if e.kind() == outpost_core::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(found)
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
            let ctx = self.core()?.context(&query, &opts)?;
            Ok(Context::from(ctx))
        })
    }

    /// Deletes a document (a tombstone that sync carries to other devices).
    pub fn delete_document(&self, document_id: String) -> Result<()> {
        guard("delete_document", || {
            self.core()?.delete_document(&document_id)?;
            Ok(())
        })
    }

    /// Starts a conversation.
    pub fn create_conversation(&self, title: String) -> Result<Conversation> {
        guard("create_conversation", || {
            Ok(self.core()?.create_conversation(&title)?.into())
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
                .core()?
                .add_message(&conversation_id, &role, &content)?
                .into())
        })
    }

    /// The `n` most recent messages, oldest first.
    pub fn recent_messages(&self, conversation_id: String, n: u32) -> Result<Vec<Message>> {
        guard("recent_messages", || {
            self.core()?.conversation(&conversation_id)?;
            Ok(self
                .core()?
                .recent_messages(&conversation_id, n as usize)?
                .into_iter()
                .map(Message::from)
                .collect())
        })
    }

    /// Hands over the user's Supabase session, as the app's own Supabase client holds it
    /// (supabase-kt's `currentSessionOrNull()`, supabase-swift's `auth.session`): REST syncs
    /// whose [`CentralConfig`] has no `jwt` then act as this user. Outpost refreshes the
    /// session as it expires (or when the server refuses its token), one refresh at a time,
    /// and hands each new pair to `listener` before using it: store the refresh token there,
    /// since the old one is spent. The project is the one the next sync names
    /// (`supabase_url`, `anon_key`). Replaces any session set before.
    ///
    /// Leave the refreshing to Outpost while it holds the session (or call `set_session` again
    /// after every refresh of the app's own): two clients spending one refresh token make the
    /// server revoke the session.
    pub fn set_session(
        &self,
        access_token: String,
        refresh_token: String,
        listener: Option<Box<dyn SessionListener>>,
    ) -> Result<()> {
        guard("set_session", || {
            self.core()?;
            let valid = |t: &str| !t.trim().is_empty();
            if !valid(&access_token) || !valid(&refresh_token) {
                return Err(OutpostError::InvalidInput {
                    detail: "set_session needs the access token and the refresh token".into(),
                });
            }
            if outpost_sync::claims::access_claims(&access_token).is_none() {
                return Err(OutpostError::InvalidInput {
                    detail: "the access token is not a JWT with `sub` and `exp` claims (pass the session's access token, not the refresh token or the anon key)".into(),
                });
            }
            *self.login_slot() = AppLogin::Pending {
                access_token,
                refresh_token,
                listener,
            };
            Ok(())
        })
    }

    /// Forgets the session set with [`Engine::set_session`] (the app signed out): REST syncs
    /// without a `jwt` then fail with `OutpostError.SignedOut`. A sync already running
    /// finishes with it.
    pub fn clear_session(&self) {
        *self.login_slot() = AppLogin::None;
    }

    /// Pushes local changes to the central store and pulls the others'. Through the REST API
    /// (`supabase_url`, `anon_key`) without a `jwt`, as the user of the session set with
    /// [`Engine::set_session`]; a session that has ended is `OutpostError.SignedOut`. Async: it
    /// runs on a thread of its own, tells `listener` the records pushed (`push`) and pulled
    /// (`pull`), and stops early when the caller is cancelled or after [`Engine::cancel`] (what
    /// the central store acknowledged stays acknowledged; the rest is pushed next time).
    #[uniffi::method(default(listener = None))]
    pub async fn sync_now(
        self: Arc<Self>,
        central: CentralConfig,
        listener: Option<Box<dyn ProgressListener>>,
    ) -> Result<SyncReport> {
        let core = self.core()?;
        let stop = Stop::new(&self.cancel_epoch);
        let engine = self.clone();
        in_background("sync_now", stop, move |stop| {
            engine.sync_blocking(&core, &central, listener, stop)
        })
        .await
    }

    /// The outbox and the last push and pull (no network).
    pub fn sync_status(&self) -> Result<SyncStatus> {
        guard("sync_status", || {
            Ok(outpost_sync::status(&*self.core()?)?.into())
        })
    }

    /// What the database holds.
    pub fn stats(&self) -> Result<Stats> {
        guard("stats", || Ok(self.core()?.stats()?.into()))
    }

    /// Cancels the long calls (folder ingests, syncs) running now; later calls are unaffected.
    pub fn cancel(&self) {
        self.cancel_epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether the embedding model is loaded (see [`EngineConfig::preload_model`]): an app can
    /// show that its first text query will take a moment longer.
    pub fn model_loaded(&self) -> bool {
        self.model.is_loaded()
    }

    /// Closes the database: the long calls running now stop as after [`Engine::cancel`], and
    /// every later call is `OutpostError.Closed`. The file is released once the calls in flight
    /// return. Shutting down twice is harmless. (Kotlin's `close()` and `use {}` release the
    /// object itself, and Swift does when the last reference goes.)
    pub fn shutdown(&self) {
        let closed = self.inner.write().unwrap_or_else(|p| p.into_inner()).take();
        self.cancel_epoch.fetch_add(1, Ordering::SeqCst);
        *self.login_slot() = AppLogin::None;
        drop(closed);
    }
}

impl Engine {
    /// The open engine, for one call; [`OutpostError::Closed`] after [`Engine::shutdown`].
    fn core(&self) -> Result<Arc<outpost_core::Engine>> {
        // Nothing panics while holding it; a poisoned lock still holds a valid engine.
        let slot = self.inner.read().unwrap_or_else(|p| p.into_inner());
        slot.clone().ok_or_else(|| OutpostError::Closed {
            detail: "the engine was shut down: open the database again".into(),
        })
    }

    /// [`Engine::sync_now`]'s work, on its own thread: the sync runs on the engine's runtime
    /// until it ends or `stop` says so, then the re-embedding of pulled records whose vectors
    /// came from another model.
    fn sync_blocking(
        &self,
        core: &outpost_core::Engine,
        central: &CentralConfig,
        listener: Option<Box<dyn ProgressListener>>,
        stop: &Stop,
    ) -> Result<SyncReport> {
        let timeout = Duration::from_secs(u64::from(central.timeout_s.max(1)));
        let central_store = match self.app_session(central, timeout)? {
            Some((url, anon_key, session)) => outpost_sync::Central::new(
                outpost_sync::rest::RestTransport::with_tokens(&url, &anon_key, session, timeout)?,
            ),
            None => {
                let settings = outpost_sync::CentralSettings::from(central.clone());
                outpost_sync::CentralConfig::from_settings(&settings)?.open(timeout)?
            }
        };
        let mut opts =
            outpost_sync::SyncOptions::new(core.embedder().model_id(), core.embedder().dims());
        // An app calls again later: ride over a blip, but give up within the timeout.
        opts.backoff = outpost_sync::Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(2),
            give_up_after: Some(timeout),
        };
        let rt = self.runtime()?;
        // Sync takes the writer only for each batch it applies: searches and writes go on
        // meanwhile.
        let report = rt.block_on(async {
            let mut progress = |step| {
                if let Some(l) = &listener {
                    match step {
                        outpost_sync::Step::Pushed { done, total } => {
                            l.on_progress("push".into(), done as u64, total as u64)
                        }
                        outpost_sync::Step::Pulled { done } => {
                            l.on_progress("pull".into(), done as u64, 0)
                        }
                    }
                }
            };
            let sync = outpost_sync::sync_once(core, &central_store, &opts, &mut progress);
            let cancelled = async {
                while !stop.requested() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            tokio::select! {
                r = sync => r.map_err(OutpostError::from),
                () = cancelled => Err(OutpostError::Cancelled {
                    detail: "sync cancelled".into(),
                }),
            }
        })?;
        core.reembed_pending(&|| stop.requested())?;
        Ok(report.into())
    }

    fn login_slot(&self) -> std::sync::MutexGuard<'_, AppLogin> {
        // Nothing panics while holding it; a poisoned slot is still a valid one.
        self.login.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The runtime syncs run on: one worker thread for the HTTP connections' tasks; each sync
    /// runs on its caller's thread.
    fn runtime(&self) -> Result<&tokio::runtime::Runtime> {
        if let Some(rt) = self.runtime.get() {
            return Ok(rt);
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("outpost-sync")
            .enable_all()
            .build()
            .map_err(|e| OutpostError::Internal {
                detail: format!("starting the sync runtime: {e}"),
            })?;
        // Two first syncs at once: one runtime is kept, the other dropped here, unused.
        Ok(self.runtime.get_or_init(|| rt))
    }

    /// The app's session for a sync to `central`, when `central` names the REST API without a
    /// `jwt`: (project URL, key, session), the session opened for that project at its first
    /// sync. `None` for direct Postgres or a fixed JWT.
    #[allow(clippy::type_complexity)]
    fn app_session(
        &self,
        central: &CentralConfig,
        timeout: Duration,
    ) -> Result<Option<(String, String, Arc<dyn outpost_sync::TokenProvider>)>> {
        let set = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
        let (Some(url), Some(anon_key), None, None) = (
            set(&central.supabase_url),
            set(&central.anon_key),
            set(&central.jwt),
            set(&central.postgres_url),
        ) else {
            return Ok(None);
        };
        let mut slot = self.login_slot();
        let session = match std::mem::replace(&mut *slot, AppLogin::None) {
            AppLogin::None => {
                return Err(OutpostError::SignedOut {
                    detail: format!(
                        "no session for {url}: sign the user in with the app's Supabase client and call set_session (or pass a jwt)"
                    ),
                })
            }
            AppLogin::Open(session) => {
                *slot = AppLogin::Open(session.clone());
                let wanted = url.trim_end_matches('/');
                if session.url() != wanted {
                    return Err(OutpostError::Sync {
                        detail: format!(
                            "the session was set for {} but this sync names {wanted}: call set_session with a session of that project",
                            session.url()
                        ),
                    });
                }
                session
            }
            AppLogin::Pending {
                access_token,
                refresh_token,
                listener,
            } => {
                let auth = match outpost_sync::AuthClient::new(&url, &anon_key, timeout) {
                    Ok(auth) => auth,
                    Err(e) => {
                        // A bad URL or key: the session waits for a sync that names a good one.
                        *slot = AppLogin::Pending {
                            access_token,
                            refresh_token,
                            listener,
                        };
                        return Err(e.into());
                    }
                };
                let rotated = listener.map(|l| {
                    Box::new(move |pair: outpost_sync::TokenPair| {
                        l.on_session(pair.access_token, pair.refresh_token, pair.expires_at)
                    }) as outpost_sync::RotationListener
                });
                // Tokens that cannot be a session leave none (set_session checked the claims).
                let session = Arc::new(outpost_sync::AppSession::new(
                    auth,
                    &access_token,
                    &refresh_token,
                    rotated,
                )?);
                *slot = AppLogin::Open(session.clone());
                session
            }
        };
        Ok(Some((url, anon_key, session)))
    }

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
            Err(OutpostError::Internal { detail }) => {
                assert!(detail.contains("boom at the boundary"), "{detail}");
                assert!(detail.contains("a call"), "{detail}");
            }
            other => panic!("expected an internal error, got {other:?}"),
        }
        // A formatted panic message (a String payload) comes through too.
        let caught: Result<()> = guard("another", || panic!("code {}", 7));
        assert!(
            matches!(caught, Err(OutpostError::Internal { detail }) if detail.contains("code 7"))
        );
        // The boundary still works afterwards.
        assert_eq!(guard("after", || Ok(3)).ok(), Some(3));
    }

    #[test]
    fn a_signed_out_session_says_what_the_app_should_do() {
        let e = OutpostError::from(outpost_sync::Error::SignedOut {
            endpoint: "https://p.supabase.co".into(),
            code: "refresh_token_already_used".into(),
            detail: "Invalid Refresh Token: Already Used".into(),
        });
        match e {
            OutpostError::SignedOut { detail } => {
                assert!(detail.contains("refresh_token_already_used"), "{detail}");
                assert!(detail.contains("set_session"), "{detail}");
                assert!(!detail.contains("outpost login"), "{detail}");
            }
            other => panic!("expected SignedOut, got {other:?}"),
        }
    }
}
