//! The commands: one module per group of `outpost` subcommands, and [`run`], which sets up
//! logging and hands a parsed command line to its module. They share `open` (the database and
//! the model the global flags name); the agent and the benchmarks they start live in
//! `crate::agent` and `crate::bench`.

mod ask;
mod bench;
mod conv;
mod docs;
mod eval;
mod models;
mod open;
mod query;
mod serve;
mod sync;
mod transfer;

use anyhow::Result;

use crate::cli::{Cli, Command, ConfigCommand, EvalCommand};

/// Runs the command; its exit status.
pub fn run(cli: Cli) -> Result<i32> {
    // The agent reads its log format (and everything else) from its configuration too.
    let agent_config = match &cli.command {
        Command::Serve(args) => Some(serve::config(&cli, args)?),
        _ => None,
    };
    let (format, default_level) = match &agent_config {
        Some(c) => (c.log_format.clone(), "info"),
        None => (cli.log_format.clone(), "warn"),
    };
    init_tracing(
        cli.verbose,
        format.as_deref().unwrap_or("text"),
        default_level,
    );
    match agent_config {
        Some(config) => serve::serve(&cli, config),
        None => dispatch(&cli),
    }
}

fn init_tracing(verbose: u8, format: &str, default_level: &str) {
    let level = match verbose {
        0 => default_level,
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("OUTPOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn dispatch(cli: &Cli) -> Result<i32> {
    match &cli.command {
        Command::Init => docs::init(cli),
        Command::Ingest(args) => docs::ingest(cli, args),
        Command::Search(args) => query::search(cli, args),
        Command::Context(args) => query::context(cli, args),
        Command::Ask(args) => ask::ask(cli, args),
        Command::Docs(cmd) => docs::docs(cli, cmd),
        Command::Stats { json } => docs::stats(cli, *json),
        Command::Conv(cmd) => conv::conv(cli, cmd),
        Command::Models(cmd) => models::models(cmd),
        Command::Embed(args) => query::embed(cli, args),
        Command::Bench(cmd) => bench::run(cli, cmd),
        Command::Eval(EvalCommand::Beir(args)) => eval::beir(args, open::load_bert(cli)?),
        Command::Eval(EvalCommand::Grounding(args)) => {
            let llm = open::open_llm(&args.llm, cli.cpu)?;
            eval::grounding(args, open::load_bert(cli)?, llm.as_ref())
        }
        Command::Import(cmd) => transfer::import(cli, cmd),
        Command::Export(cmd) => transfer::export(cli, cmd),
        Command::Login(args) => sync::login(args),
        Command::Logout(args) => sync::logout(args),
        Command::Sync(args) => sync::sync(cli, args),
        Command::Backfill(job) => sync::backfill(cli, job),
        Command::Bootstrap(job) => sync::bootstrap(cli, job),
        Command::Verify(args) if args.local => sync::verify_local(cli, args.job.json),
        Command::Verify(args) => sync::verify(cli, &args.job),
        Command::Serve(_) => unreachable!("served by run"),
        Command::Config(ConfigCommand::Show { config, json }) => {
            serve::config_show(cli, config.as_deref(), *json)
        }
    }
}
