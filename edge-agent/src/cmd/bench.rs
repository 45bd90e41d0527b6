//! `outpost bench`: hands each benchmark (`crate::bench`) its arguments, and the model to the
//! ones that embed.

use anyhow::Result;

use super::open::load_bert;
use crate::bench;
use crate::cli::{BenchCommand, Cli};

/// Runs a benchmark command.
pub fn run(cli: &Cli, cmd: &BenchCommand) -> Result<i32> {
    // `bench search` loads the model only with --beir: it gets a loader, not a model.
    let load_model = || load_bert(cli);
    match cmd {
        BenchCommand::Search(args) => bench::search::run(args, &load_model),
        BenchCommand::Embed(args) => bench::embed::run(args, load_model()?),
        BenchCommand::Sync(args) => bench::sync::run(args),
        BenchCommand::Http(args) => bench::http::run(args),
    }
}
