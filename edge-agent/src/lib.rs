//! `outpost`: the command line and HTTP agent of the embedded RAG engine, as a library.
//!
//! Every command opens the database (`--db`, `OUTPOST_DB`), does one job and exits; `--json`
//! switches a command's output to one JSON document on stdout. The embedding model is loaded
//! only by commands that embed (ingest, vector and hybrid search, context, messages).
//!
//! [`main`] parses the arguments (`cli`) and hands them to `cmd`, one module per group of
//! commands; below `cmd` are the HTTP agent (`agent`) and the benchmarks (`bench`), and below
//! those what they share: `beir` (BEIR datasets) and `output` (stdout). Modules import only
//! downwards. The binary (`src/main.rs`) adds only the allocator and its options; in-process
//! callers (the fuzz targets) reach the agent's router through [`agent_router`].

mod agent;
mod beir;
mod bench;
mod cli;
mod cmd;
mod output;

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;

use cli::Cli;

/// Runs the command line: parses the process's arguments, runs the command and returns the
/// process's exit code, having printed any error on stderr.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = cmd::run(cli).and_then(|code| {
        output::flush()?;
        Ok(code)
    });
    match result {
        Ok(code) => code,
        // The reader of stdout has gone (`outpost search … | head`): it has what it wanted, so
        // the command ends there, quietly and successfully, as ripgrep does.
        Err(e) if output::is_broken_pipe(&e) => 0,
        Err(e) => {
            eprintln!("error: {e:#}{}", flag_hint(&e));
            1
        }
    }
}

/// The agent's HTTP API (every route, with its middleware) over the database at `db`, as
/// `outpost serve` serves it with the default configuration: no token, no folder watched, sync
/// off, no language model (chat answers 503). No worker or listener is started: the caller
/// drives the router (`tower::ServiceExt::oneshot`) inside a Tokio runtime.
///
/// # Errors
/// The database's own errors (corrupt, foreign, newer schema ...).
pub fn agent_router(
    db: PathBuf,
    embedder: Arc<dyn outpost_core::Embedder>,
) -> anyhow::Result<axum::Router> {
    let config = agent::config::Config::default();
    let engines = agent::pool::Engines::open(db, embedder, config.serve.readers)?;
    let loader: agent::llm::Loader =
        Box::new(|| Err(anyhow::anyhow!("no language model is configured")));
    let state = agent::state::AppState {
        config: Arc::new(config),
        engines: Arc::new(engines),
        metrics: Arc::new(agent::metrics::Metrics::new()),
        sync: agent::syncer::SyncHandle::off(),
        llm: Arc::new(agent::llm::Llm::new(None, loader, 1)),
    };
    Ok(agent::app(state))
}

/// The command-line flag behind a library argument that was refused: core names its own
/// arguments (`mode`, `filter`, `max_tokens` ...), which the user knows by their flags.
fn flag_hint(e: &anyhow::Error) -> String {
    let Some(outpost_core::Error::InvalidArgument { name, .. }) = e.downcast_ref() else {
        return String::new();
    };
    let flag = match name.as_str() {
        "k" => "-k",
        "mode" => "--mode",
        "filter" => "--filter",
        "budget" => "--budget",
        "collection" => "--collection",
        "max_tokens" => "--chunk-tokens",
        "overlap" => "--chunk-overlap",
        "table" => "--table",
        _ => return String::new(),
    };
    format!(" (see {flag})")
}
