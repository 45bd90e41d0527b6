//! The agent's door to the database: one [`Engine`] (its writer, its readers, its derived
//! indexes), with each call run on a blocking thread, off the async runtime.

use std::path::PathBuf;
use std::sync::Arc;

use outpost_core::{Embedder, Engine};

/// Why a database call did not run.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The call panicked (a bug); the engine rolled back what it left open.
    #[error("internal error: {0}")]
    Panicked(String),
    /// The database could not be opened.
    #[error(transparent)]
    Core(#[from] outpost_core::Error),
}

/// The engine, shared by the API, the worker and the syncer.
pub struct Engines {
    engine: Arc<Engine>,
}

impl Engines {
    /// Opens the database at `path` with one writer and `readers` readers.
    ///
    /// # Errors
    /// The database's own errors (corrupt, foreign, newer schema ...).
    pub fn open(
        path: PathBuf,
        embedder: Arc<dyn Embedder>,
        readers: usize,
    ) -> Result<Self, outpost_core::Error> {
        Ok(Self {
            engine: Arc::new(Engine::open(&path, embedder, readers)?),
        })
    }

    /// The embedder every connection uses.
    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        self.engine.embedder_arc()
    }

    /// The engine itself, for work that holds it across awaits (sync).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Runs `f` (a read: the engine hands it a reader) on a blocking thread.
    ///
    /// # Errors
    /// [`PoolError`] if `f` panicked.
    pub async fn read<T, F>(&self, f: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> T + Send + 'static,
    {
        self.run(f).await
    }

    /// Runs `f` (a write: the engine's writer takes writes in turn) on a blocking thread.
    ///
    /// # Errors
    /// [`PoolError`] if `f` panicked.
    pub async fn write<T, F>(&self, f: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> T + Send + 'static,
    {
        self.run(f).await
    }

    async fn run<T, F>(&self, f: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> T + Send + 'static,
    {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || f(&engine))
            .await
            .map_err(|e| PoolError::Panicked(e.to_string()))
    }
}
