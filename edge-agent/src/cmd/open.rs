//! What the commands work on, as the global flags name it: the database file (`--db`,
//! `OUTPOST_DB`), the embedder (`--embedder`, `--model-dir`, `--cpu`) and the language model
//! (`--llm-model`, `--llm-url`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result};

use outpost_core::{Embedder, Engine, Generator, HashEmbedder};

use crate::cli::{Cli, EmbedderKind, LlmArgs, QuantizeKind};

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

/// The embedding model, loaded on the GPU unless `cpu` (or none is available), from
/// `model_dir` or the fetched default, its dense layers as `quantize` says: what the
/// benchmarks and `eval` measure.
pub fn load_model(
    model_dir: Option<&std::path::Path>,
    cpu: bool,
    quantize: QuantizeKind,
) -> Result<Arc<outpost_models::BertEmbedder>> {
    let dir = outpost_models::resolve_model_dir(model_dir)?;
    // int8 is a CPU path: asking for it chooses the CPU.
    let device = outpost_models::select_device(!cpu && quantize == QuantizeKind::None);
    let model = outpost_models::BertEmbedder::load_with(&dir, &device, quantize.into())
        .with_context(|| format!("loading model from {}", dir.display()))?;
    Ok(Arc::new(model))
}

/// The embedding model as `--model-dir` and `--cpu` name it.
pub fn load_bert(cli: &Cli) -> Result<Arc<outpost_models::BertEmbedder>> {
    load_model(cli.model_dir.as_deref(), cli.cpu, cli.quantize)
}

/// The embedder `--embedder` names: the model ([`load_model`]) or the hash embedder.
pub fn embedder_for(
    kind: EmbedderKind,
    model_dir: Option<&std::path::Path>,
    cpu: bool,
    quantize: QuantizeKind,
) -> Result<Arc<dyn Embedder>> {
    Ok(match kind {
        EmbedderKind::Minilm => load_model(model_dir, cpu, quantize)?,
        EmbedderKind::Hash => Arc::new(HashEmbedder::new(HASH_DIMS)),
    })
}

/// The dimension of `--embedder hash`: MiniLM's, so that a test database has the same shape.
pub const HASH_DIMS: usize = 384;

/// The embedder the global flags name.
pub fn load_embedder(cli: &Cli) -> Result<Arc<dyn Embedder>> {
    embedder_for(
        cli.embedder,
        cli.model_dir.as_deref(),
        cli.cpu,
        cli.quantize,
    )
}

/// An engine over the database and the embedder; the embedder also on its own, for its
/// counters and its model id.
pub fn engine(cli: &Cli) -> Result<(Engine, Arc<dyn Embedder>)> {
    let model = load_embedder(cli)?;
    // A command is one caller: one reader beside the writer is enough.
    let engine = Engine::open(db_path(cli), model.clone(), 1)?;
    Ok((engine, model))
}

/// The language model `--llm-model` / `--llm-url` name: a local GGUF (on the GPU unless `cpu`)
/// or an OpenAI-compatible server (its key from `OUTPOST_LLM_API_KEY`).
pub fn open_llm(args: &LlmArgs, cpu: bool) -> Result<Arc<dyn Generator>> {
    if let Some(url) = &args.llm_url {
        let key = std::env::var("OUTPOST_LLM_API_KEY")
            .ok()
            .filter(|k| !k.is_empty());
        let name = args.llm_name.as_deref().unwrap_or("default");
        let window = args.llm_window.unwrap_or(8192);
        return Ok(Arc::new(outpost_models::remote::OpenAiGenerator::new(
            url, name, key, window,
        )?));
    }
    let path = outpost_models::resolve_llm(args.llm_model.as_deref())?;
    let device = outpost_models::select_device(!cpu);
    let window = args
        .llm_window
        .unwrap_or(outpost_models::llm::DEFAULT_WINDOW);
    let model = outpost_models::LlamaGenerator::open(&path, &device, window, None)?;
    Ok(Arc::new(model))
}
