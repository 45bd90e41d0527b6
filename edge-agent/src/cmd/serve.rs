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
    )?;
    agent::run(config, db, embedder)
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
