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
        BenchCommand::Llm(args) => {
            if let Some(n) = args.threads {
                // Read by candle's thread pool at its first use, which is after this.
                std::env::set_var("RAYON_NUM_THREADS", n.to_string());
            }
            let load = || -> Result<outpost_models::LlamaGenerator> {
                let path = outpost_models::resolve_llm(args.llm_model.as_deref())?;
                let device = outpost_models::select_device(!cli.cpu);
                let window = outpost_models::llm::DEFAULT_WINDOW;
                Ok(outpost_models::LlamaGenerator::open(
                    &path, &device, window, None,
                )?)
            };
            bench::llm::run(args, &load)
        }
        BenchCommand::Sync(args) => bench::sync::run(args),
        BenchCommand::Http(args) => bench::http::run(args),
    }
}
