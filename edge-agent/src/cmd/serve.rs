//! `outpost serve` and `outpost config show`: starting the agent (`crate::agent`) with the
//! configuration that its file, the environment and the flags make, and printing that
//! configuration.

use std::path::Path;

use anyhow::{Context as _, Result};

use super::open::default_db;
use crate::agent;
use crate::cli::{Cli, ServeArgs};
use crate::output::{print_json, write_str};

/// The agent's configuration for `outpost serve`.
pub fn config(cli: &Cli, args: &ServeArgs) -> Result<agent::config::Config> {
    agent::config::Config::load(args.config.as_deref(), agent_overrides(cli, Some(args)))
}

/// The agent settings the command line gives.
fn agent_overrides(cli: &Cli, args: Option<&ServeArgs>) -> agent::config::Overrides {
    let mut o = agent::config::Overrides {
        db: cli.db.clone(),
        model_dir: cli.model_dir.clone(),
        cpu: cli.cpu,
        log_format: cli.log_format.clone(),
        ..Default::default()
    };
    if let Some(a) = args {
        o.addr.clone_from(&a.addr);
        o.watch.clone_from(&a.watch);
        o.collection.clone_from(&a.collection);
        o.sync_interval = a.sync_interval;
    }
    o
}

/// `outpost serve`.
pub fn serve(cli: &Cli, config: agent::config::Config) -> Result<i32> {
    let db = config.db.clone().unwrap_or_else(default_db);
    if let Some(parent) = db.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let embedder = super::open::embedder_for(
        cli.embedder,
        config.model_dir.as_deref(),
        config.cpu || cli.cpu,
        cli.quantize,
    )?;
    let llm_args = match &cli.command {
        crate::cli::Command::Serve(a) => a.llm.clone(),
        _ => crate::cli::LlmArgs::default(),
    };
    let cpu = config.cpu || cli.cpu;
    let queue = config.serve.llm_queue;
    agent::run(config, db, embedder, llm(llm_args, cpu, queue))
}

/// The agent's language model, opened at its first use: `--llm-url`'s server, or the GGUF of
/// `--llm-model` (or the fetched default; none installed: the chat API answers 503).
fn llm(args: crate::cli::LlmArgs, cpu: bool, queue: usize) -> agent::llm::Llm {
    let id = match (
        &args.llm_url,
        outpost_models::resolve_llm(args.llm_model.as_deref()),
    ) {
        (Some(_), _) => Some(args.llm_name.clone().unwrap_or_else(|| "default".into())),
        (None, Ok(path)) => Some(outpost_models::llm::model_id_for(&path)),
        (None, Err(e)) => {
            tracing::info!("no language model, the chat API is off: {e}");
            None
        }
    };
    let loader: agent::llm::Loader = Box::new(move || super::open::open_llm(&args, cpu));
    agent::llm::Llm::new(id, loader, queue)
}

/// `outpost config show`.
pub fn config_show(cli: &Cli, config: Option<&Path>, json: bool) -> Result<i32> {
    let c = agent::config::Config::load(config, agent_overrides(cli, None))?;
    let masked = c.masked();
    if json {
        print_json(&serde_json::to_value(&masked)?)?;
    } else {
        write_str(&toml::to_string_pretty(&masked)?)?;
    }
    Ok(0)
}
