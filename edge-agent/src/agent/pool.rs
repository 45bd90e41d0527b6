//! The agent's database connections: a few readers that serve searches and listings in
//! parallel (SQLite in WAL mode lets them read while one writes) and one writer for everything
//! that changes the database. Each call runs on a blocking thread, off the async runtime.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use outpost_core::{Embedder, Engine, Store};

/// Why a database call did not run.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The call panicked (a bug); its connection was replaced.
    #[error("internal error: {0}")]
    Panicked(String),
    /// The database could not be opened again after a panic.
    #[error(transparent)]
    Core(#[from] outpost_core::Error),
}

/// Readers and the writer.
pub struct Engines {
    path: PathBuf,
    embedder: Arc<dyn Embedder>,
    readers: Mutex<Vec<Engine>>,
    permits: Semaphore,
    writer: Arc<tokio::sync::Mutex<Engine>>,
}

impl Engines {
    /// Opens `readers` reading connections and one writing connection to the database at `path`.
    ///
    /// # Errors
    /// The database's own errors (corrupt, foreign, newer schema ...).
    pub fn open(
        path: PathBuf,
        embedder: Arc<dyn Embedder>,
        readers: usize,
    ) -> Result<Self, outpost_core::Error> {
        let writer = Engine::new(Store::open(&path)?, embedder.clone());
        let readers = (0..readers.max(1))
            .map(|_| Ok(Engine::new(Store::open(&path)?, embedder.clone())))
            .collect::<Result<Vec<_>, outpost_core::Error>>()?;
        Ok(Self {
            permits: Semaphore::new(readers.len()),
            readers: Mutex::new(readers),
            writer: Arc::new(tokio::sync::Mutex::new(writer)),
            path,
            embedder,
        })
    }

    /// The embedder every connection uses.
    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.embedder
    }

    /// Runs `f` on a reading connection.
    ///
    /// # Errors
    /// [`PoolError`] if `f` panicked.
    pub async fn read<T, F>(&self, f: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> T + Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| PoolError::Panicked(e.to_string()))?;
        let engine = self
            .readers
            .lock()
            .map_err(|e| PoolError::Panicked(e.to_string()))?
            .pop()
            .ok_or_else(|| PoolError::Panicked("no reader left".into()))?;
        let joined = tokio::task::spawn_blocking(move || {
            let out = f(&engine);
            (engine, out)
        })
        .await;
        let (engine, out) = match joined {
            Ok(pair) => pair,
            Err(e) => {
                // Replace the connection the panic took with it.
                let fresh = Engine::new(Store::open(&self.path)?, self.embedder.clone());
                self.give_back(fresh);
                return Err(PoolError::Panicked(e.to_string()));
            }
        };
        self.give_back(engine);
        Ok(out)
    }

    fn give_back(&self, engine: Engine) {
        if let Ok(mut readers) = self.readers.lock() {
            readers.push(engine);
        }
    }

    /// Runs `f` on the writing connection, after the writes queued before it.
    ///
    /// # Errors
    /// [`PoolError`] if `f` panicked.
    pub async fn write<T, F>(&self, f: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Engine) -> T + Send + 'static,
    {
        let mut guard = self.writer.clone().lock_owned().await;
        tokio::task::spawn_blocking(move || f(&mut guard))
            .await
            .map_err(|e| PoolError::Panicked(e.to_string()))
    }
}
