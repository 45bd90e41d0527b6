//! What every request handler and middleware of the agent reaches: the configuration, the
//! database connections, the metrics, the background sync and the language model.

use std::sync::Arc;

use outpost_core::IngestOptions;

use super::config::Config;
use super::llm::Llm;
use super::metrics::Metrics;
use super::pool::Engines;
use super::syncer::SyncHandle;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The effective configuration.
    pub config: Arc<Config>,
    /// Database connections.
    pub engines: Arc<Engines>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Background sync.
    pub sync: SyncHandle,
    /// The language model (loaded at its first use).
    pub llm: Arc<Llm>,
}

impl AppState {
    /// Ingest options for API uploads and watched files.
    pub fn ingest_options(&self) -> IngestOptions {
        IngestOptions {
            collection: self.config.watch.collection.clone(),
            max_file_size: self.config.watch.max_file_size,
            include_hidden: self.config.watch.include_hidden,
            ..Default::default()
        }
    }
}
