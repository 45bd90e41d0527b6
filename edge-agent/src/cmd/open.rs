//! What the commands work on, as the global flags name it: the database file (`--db`,
//! `OUTPOST_DB`) and the embedding model (`--model-dir`, `--cpu`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result};

use outpost_core::Engine;

use crate::cli::Cli;

/// `<user data dir>/outpost/outpost.db`.
pub fn default_db() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("outpost")
        .join("outpost.db")
}

/// The database path: `--db`, `OUTPOST_DB`, or [`default_db`].
pub fn db_path(cli: &Cli) -> PathBuf {
    cli.db.clone().unwrap_or_else(default_db)
}

/// The database at [`db_path`], for commands that embed nothing (no model is loaded).
pub fn open_store(cli: &Cli) -> Result<Engine> {
    // The engine's errors name the file already.
    Ok(Engine::open_without_model(db_path(cli))?)
}

/// The embedding model, loaded on the GPU unless `--cpu` (or none is available).
pub fn load_embedder(cli: &Cli) -> Result<Arc<outpost_models::BertEmbedder>> {
    let dir = outpost_models::resolve_model_dir(cli.model_dir.as_deref())?;
    let device = outpost_models::select_device(!cli.cpu);
    let model = outpost_models::BertEmbedder::load(&dir, &device)
        .with_context(|| format!("loading model from {}", dir.display()))?;
    Ok(Arc::new(model))
}

/// An engine over the database and the model; the model also on its own, for its counters.
pub fn engine(cli: &Cli) -> Result<(Engine, Arc<outpost_models::BertEmbedder>)> {
    let model = load_embedder(cli)?;
    // A command is one caller: one reader beside the writer is enough.
    let engine = Engine::open(db_path(cli), model.clone(), 1)?;
    Ok((engine, model))
}
